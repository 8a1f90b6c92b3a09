"""Any Triton codebase: the project a checkout holds, and spec inference families met outside vLLM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritriage.discover.inventory import discover
from tritriage.specs.catalog import checkout_project
from tritriage.specs.infer import infer_spec
from testkit import write_source  # noqa: E402 - shared test helpers

CACHE = Path(os.environ.get("TRITRIAGE_TEST_CACHE", Path.home() / ".cache" / "tritriage-tests"))


def _spec(root: Path, name: str):
    inv = discover(root)
    return infer_spec(next(k for k in inv.kernels if k.qualname == name), inv, root)


def test_project_name_and_version_come_from_the_checkout(tmp_path):
    vllm = tmp_path / "v"
    write_source(vllm, "vllm/_version.py", "__version__ = version = '0.8.5'\n")
    assert checkout_project(vllm) == ("vllm", "0.8.5")
    dist = tmp_path / "d"
    write_source(dist, "liger_kernel/__init__.py", "")
    write_source(dist, "liger_kernel-0.8.5.dist-info/METADATA", "Metadata-Version: 2.1\nName: liger_kernel\nVersion: 0.8.5\n")
    assert checkout_project(dist) == ("liger_kernel", "0.8.5")
    fetched = tmp_path / "fla-core-0.6.0"  # what `tritriage fetch fla-core==0.6.0` leaves
    write_source(fetched, "fla/__init__.py", "")
    (fetched / ".complete").write_text("0.6.0")
    assert checkout_project(fetched) == ("fla-core", "0.6.0")
    bare = tmp_path / "b"
    write_source(bare, "kern/__init__.py", "")
    write_source(bare, "kern/version.py", "__version__ = '1.2'\n")
    assert checkout_project(bare) == ("kern", "1.2")
    assert checkout_project(tmp_path / "nothing") == ("", "")


def test_markdown_title_names_the_project(tmp_path, monkeypatch, capsys):
    from tritriage.cli import main
    from tritriage.store import Store

    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    store = Store.open()
    run = store.new_run(checkout=str(tmp_path / "liger-kernel-0.8.5"), commit="", triton_ascend="3.2.0", cann="",
                        arch="Ascend910B", python="/usr/bin/python3", stages_available=["frontend"],
                        argv=["tritriage", "scan"],
                        settings={"vllm_version": "", "project": {"name": "liger-kernel", "version": "0.8.5"}})
    store.finish_run(run, "complete")
    store.close()
    try:
        main(["report", "--md"])
    except SystemExit as e:
        assert not e.code
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "# Triton kernels on Ascend: liger-kernel 0.8.5"


def test_a_parameter_rebound_by_unpacking_is_not_its_default(tmp_path):
    # llama4_rope_forward(..., BLOCK_SIZE=None): `if BLOCK_SIZE is None: BLOCK_SIZE, w = pick(d)`.
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(x_ptr, n, BLOCK_SIZE: tl.constexpr):
            offs = tl.arange(0, BLOCK_SIZE)
            tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)

        def pick(d):
            return 32, 4

        def launch(x, BLOCK_SIZE=None):
            if BLOCK_SIZE is None:
                BLOCK_SIZE, num_warps = pick(x.shape[-1])
            k[(1,)](x, x.numel(), BLOCK_SIZE)
    ''')
    s = _spec(tmp_path, "k")
    assert s.constexprs["BLOCK_SIZE"] is not None and "caller constant" not in s.rules["BLOCK_SIZE"]


def test_strides_are_integers_and_codes_compared_with_ints_are_ints(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(y_ptr, x_ptr, Scale_ptr, Scale_row_stride, beta_stride_b, LOSS_TYPE: tl.constexpr, BLOCK: tl.constexpr):
            row = tl.program_id(0)
            offs = tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * beta_stride_b + offs).to(tl.float32)
            s = tl.load(Scale_ptr + row * Scale_row_stride + offs)
            if LOSS_TYPE == 0:
                x = x * s
            elif LOSS_TYPE == 1:
                x = x + s
            tl.store(y_ptr + offs, x)
    ''')
    s = _spec(tmp_path, "k")
    assert s.signature["Scale_row_stride"] == "i32" and s.signature["beta_stride_b"] == "i32"
    assert s.constexprs["LOSS_TYPE"] == 0


def test_values_added_to_an_int_initialized_loop_variable_are_integers(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(partial_sum_ptr, n_tiles, BLOCK_M: tl.constexpr):
            curr_sum = 0
            for start in range(0, n_tiles, BLOCK_M):
                offs = start + tl.arange(0, BLOCK_M)
                counts = tl.load(partial_sum_ptr + offs, mask=offs < n_tiles, other=0)
                excl = tl.cumsum(counts, 0) - counts + curr_sum
                curr_sum += tl.sum(counts, 0)
                tl.store(partial_sum_ptr + offs, excl, mask=offs < n_tiles)
    ''')
    assert _spec(tmp_path, "k").signature["partial_sum_ptr"].startswith("*i")


def _sources(project: str, version: str) -> Path:
    from tritriage.discover.fetch import fetch_vllm

    return fetch_vllm(version, CACHE / f"{project}-{version}", project=project)


@pytest.mark.slow
@pytest.mark.parametrize("project,version,limit", [("liger-kernel", "0.8.5", 0.05)])
def test_inferred_specs_the_frontend_rejects_stay_rare(project, version, limit):
    from tritriage.specs.resolve import specs_for, validate

    root = _sources(project, version)
    inv = discover(root)
    entries = [k for k in inv.kernels if k.kind == "entry" and not k.platform_only]
    pairs = [(k, s) for k in entries for s in specs_for(k, inv, root)]
    rejected = [(k.id, v.reason) for (k, s), v in zip(pairs, validate(pairs, root)) if not v.valid]
    assert len({k for k, _ in rejected}) < limit * len(entries), rejected


def test_a_load_rebinding_an_fp32_accumulator_reads_fp32(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(z, o, T, BK: tl.constexpr):
            offs = tl.arange(0, BK)
            b_zp = tl.zeros([BK], dtype=tl.float32)
            for i in range(0, T):
                b_zc = tl.load(z + i * BK + offs)
                b_o = tl.exp(b_zp - b_zc)
                b_zp = tl.load(z + i * BK + offs)
                tl.store(o + i * BK + offs, b_o)
    ''')
    assert _spec(tmp_path, "k").signature["z"] == "*fp32"


def test_an_fp32_accumulator_stored_through_a_block_pointer_is_fp32(tmp_path):
    write_source(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(q, Akk, T, BC: tl.constexpr):
            p_q = tl.make_block_ptr(q, (T, BC), (BC, 1), (0, 0), (BC, BC), (1, 0))
            b_A = tl.zeros([BC, BC], dtype=tl.float32)
            b_A += tl.dot(tl.load(p_q), tl.trans(tl.load(p_q)))
            p_A = tl.make_block_ptr(Akk, (T, BC), (BC, 1), (0, 0), (BC, BC), (1, 0))
            tl.store(p_A, b_A, boundary_check=(0, 1))
    ''')
    s = _spec(tmp_path, "k")
    assert s.signature["Akk"] == "*fp32" and s.signature["q"] != "*fp32"


def test_each_value_a_launch_can_pass_on_ascend_is_its_own_spec(tmp_path):
    # A dtype test and a caller's bool flag: fp16 and fp32, with and without
    # the flag are all reachable; the tensors follow the dtype the test names.
    write_source(tmp_path, "m.py", '''
        import torch
        import triton
        import triton.language as tl

        @triton.jit
        def k(x_ptr, y_ptr, n, BLOCK: tl.constexpr, SKIP: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            x = tl.load(x_ptr + offs, mask=offs < n)
            if not SKIP:
                x = x * 2
            tl.store(y_ptr + offs, x, mask=offs < n)

        def launch(x, y, skip=False):
            BLOCK = 32 if x.dtype == torch.float32 else 64
            k[(1,)](x, y, x.numel(), BLOCK=BLOCK, SKIP=skip)
    ''')
    from tritriage.specs.infer import MAX_SPECS_PER_KERNEL, infer_specs

    inv = discover(tmp_path)
    specs = infer_specs(next(k for k in inv.kernels if k.qualname == "k"), inv, tmp_path)
    assert 2 < len(specs) <= MAX_SPECS_PER_KERNEL
    assert len({s.name for s in specs}) == len(specs)
    first = specs[0]
    assert first.name == "inferred" and first.constexprs == {"BLOCK": 64, "SKIP": False}
    assert first.signature["x_ptr"] != "*fp32"
    seen = {(s.signature["x_ptr"], s.constexprs["BLOCK"], s.constexprs["SKIP"]) for s in specs}
    assert ("*fp32", 32, False) in seen and (first.signature["x_ptr"], 64, True) in seen
    skip = next(s for s in specs if s.constexprs["SKIP"] is True)
    assert "SKIP=True" in skip.name and "launch(skip=True)" in skip.rules["SKIP"]
    fp32 = next(s for s in specs if s.signature["x_ptr"] == "*fp32")
    assert "fp32" in fp32.name and "x.dtype == torch.float32" in fp32.rules["x_ptr"]
    assert fp32.signature["y_ptr"] == "*fp32"  # the model's tensors move together


def test_prefix_prefill_alibi_specs_cover_both_dtypes_and_skip_decode(vllm085):
    from tritriage.specs.infer import infer_specs

    inv = discover(vllm085)
    k = next(k for k in inv.kernels if k.id.endswith("prefix_prefill._fwd_kernel_alibi"))
    specs = infer_specs(k, inv, vllm085)
    by = {(s.signature["Q"], s.constexprs["SKIP_DECODE"]): s for s in specs}
    assert {("*fp16", False), ("*fp16", True), ("*fp32", False)} <= set(by)
    # BLOCK = BASE_BLOCK // 2 if q_dtype_is_f32 else BASE_BLOCK: halved only with fp32 queries.
    assert by[("*fp32", False)].constexprs["BLOCK_M"] * 2 == by[("*fp16", False)].constexprs["BLOCK_M"]
    assert all(s.constexprs["IN_PRECISION"] is None for s in specs)  # IS_TURING is False on Ascend

"""Specs: the catalog, inference from source, and validation on triton-ascend (and the reference)."""

from __future__ import annotations

import ast
import json
import re
import os
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from tritriage.specs.catalog import PACKAGE_CATALOG, check_catalog, load_catalog, params_fingerprint
from tritriage.discover.inventory import discover
from tritriage.specs.constexprs import CallerEnv
from tritriage.specs.infer import infer_spec
from tritriage.commands.specs import specs_command
from tritriage.specs.resolve import specs_for, validate
from tritriage.errors import UserError

# The conftest points TRITRIAGE_HOME at a throwaway directory; the reference
# venv (150 MB) lives in the user's own one.
REFERENCE_VENV = Path(os.environ.get("TRITRIAGE_REFERENCE")
                      or Path.home() / ".local" / "share" / "tritriage" / "reference-venv")
REFERENCE_PY = REFERENCE_VENV / "bin" / "python"
needs_reference = pytest.mark.skipif(not REFERENCE_PY.exists(),
                                     reason="reference not set up (tritriage reference setup)")


def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def _by_name(inv, name):
    return next(k for k in inv.kernels if k.qualname == name)


# --------------------------------------------------------------------------
# a small checkout with one kernel per rule

KERNELS = '''
import triton
import triton.language as tl

BLOCK_DEFAULT = 256


@triton.jit
def rules_kernel(x_ptr, out_ptr, idx_ptr, w_ptr, cnt_ptr, desc_base, n_elements, stride_x, sm_scale,
                 flag_val, q_weight, temperature,
                 LIT: tl.constexpr, CALLER: tl.constexpr,
                 BLOCK_Q: tl.constexpr, IS_FOO: tl.constexpr, HEAD_SIZE: tl.constexpr,
                 compute_type: tl.constexpr, DEF: tl.constexpr = 3):
    pid = tl.program_id(0)
    offs = pid * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rows = tl.load(idx_ptr + offs)                       # loaded values used as offsets: integer
    x = tl.load(x_ptr + rows * stride_x, mask=offs < n_elements)
    w = tl.load(w_ptr + offs[:, None] * 16 + tl.arange(0, 16)[None, :])
    y = tl.exp(x.to(tl.float32)) * sm_scale
    acc = tl.dot(w, tl.trans(w))                         # float data
    tl.store(out_ptr + offs, y)
    tl.atomic_add(cnt_ptr + pid, 1)                      # pointer from an atomic; an int counter
    bp = tl.make_block_ptr(desc_base, (n_elements,), (1,), (0,), (BLOCK_Q,), (0,))
    z = tl.load(bp)
    tl.store(bp, z + tl.sum(acc, axis=1).to(z.dtype))


@triton.autotune(configs=[triton.Config({"BLOCK_A": 32}, num_warps=2, num_stages=1),
                          triton.Config({"BLOCK_A": 64}, num_warps=4)], key=["n"])
@triton.heuristics({"EVEN_N": lambda args: args["n"] % args["BLOCK_A"] == 0})
@triton.jit
def tuned_kernel(a_ptr, n, BLOCK_A: tl.constexpr, EVEN_N: tl.constexpr):
    offs = tl.arange(0, BLOCK_A)
    v = tl.load(a_ptr + offs)
    tl.store(a_ptr + offs, v + 1.0)


def launch(x, out, idx, w, cnt, desc, n):
    CALLER = 2 * 8
    grid = (triton.cdiv(n, 64),)
    rules_kernel[grid](x, out, idx, w, cnt, desc, n, x.stride(0), 0.5, 0, w, 1.0, LIT=32, CALLER=CALLER,
                       BLOCK_Q=64, IS_FOO=True, HEAD_SIZE=128, compute_type=tl.float16, num_warps=8)
    tuned_kernel[grid](x, n)
'''


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    _write(root, "pkg/__init__.py", "")
    _write(root, "pkg/kern.py", KERNELS)
    inv = discover(root)
    return root, inv


def test_pointer_and_element_types_come_from_use(small):
    root, inv = small
    s = infer_spec(_by_name(inv, "rules_kernel"), inv, root)
    sig, rules = s.signature, s.rules
    assert sig["x_ptr"].startswith("*") and "tl.load" in rules["x_ptr"]
    assert sig["out_ptr"].startswith("*") and "tl.store" in rules["out_ptr"]
    assert sig["cnt_ptr"] == "*i32" and "tl.atomic_add" in rules["cnt_ptr"]
    assert sig["desc_base"].startswith("*") and "make_block_ptr" in rules["desc_base"]
    # Loaded values used as offsets: an integer pointer.
    assert sig["idx_ptr"] in ("*i32", "*i64") and "offset" in rules["idx_ptr"]
    # Loaded values fed to tl.dot: floating point.
    assert sig["w_ptr"] in ("*fp16", "*bf16", "*fp32") and "tl.dot" in rules["w_ptr"]
    # Scalars: an offset multiplier and a comparison bound are integers.
    assert sig["stride_x"] == "i32"
    assert sig["n_elements"] == "i32"


def test_float_from_exp_and_name_hints(small):
    root, inv = small
    s = infer_spec(_by_name(inv, "rules_kernel"), inv, root)
    # x's values reach tl.exp (after a cast): float.
    assert s.signature["x_ptr"] in ("*fp16", "*fp32") and "float" in s.rules["x_ptr"]
    # sm_scale multiplies a float: fp32 from use.
    assert s.signature["sm_scale"] == "fp32" and s.rules["sm_scale"].startswith("use:")
    # Never used: only the name speaks.
    assert s.signature["temperature"] == "fp32" and s.rules["temperature"].startswith("name:")
    assert s.signature["q_weight"] == "i32" and s.rules["q_weight"] == "name:. → i32"


def test_constexpr_sources_in_order(small):
    root, inv = small
    s = infer_spec(_by_name(inv, "rules_kernel"), inv, root)
    c, r = s.constexprs, s.rules
    assert c["LIT"] == 32 and r["LIT"].startswith("launch-site literal pkg/kern.py:")
    assert c["CALLER"] == 16 and r["CALLER"].startswith("caller constant pkg/kern.py:")
    assert c["DEF"] == 3 and r["DEF"] == "default 3"
    assert c["compute_type"] == "tl.float16"
    assert s.options["num_warps"] == 8 and r["num_warps"].startswith("launch-site literal")


def test_constexpr_from_autotune_and_heuristics(small):
    root, inv = small
    s = infer_spec(_by_name(inv, "tuned_kernel"), inv, root)
    assert s.constexprs["BLOCK_A"] == 32 and s.rules["BLOCK_A"] == "autotune: first config"
    assert s.options == {"num_warps": 2, "num_stages": 1}
    # n is a plausible 256, 256 % 32 == 0.
    assert s.constexprs["EVEN_N"] is True and s.rules["EVEN_N"].startswith("heuristics:")


def test_name_defaults_for_constexprs(tmp_path):
    _write(tmp_path, "m.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def k(p, BLOCK_M: tl.constexpr, IS_CAUSAL: tl.constexpr, HEAD_SIZE: tl.constexpr,
              out_dtype: tl.constexpr, MODE: tl.constexpr):
            o = tl.arange(0, BLOCK_M)
            if MODE == "gelu":
                tl.store(p + o, tl.load(p + o).to(out_dtype))
        ''')
    inv = discover(tmp_path)
    s = infer_spec(_by_name(inv, "k"), inv, tmp_path)
    assert s.constexprs["BLOCK_M"] == 64 and s.rules["BLOCK_M"].startswith("name:")
    assert s.constexprs["IS_CAUSAL"] is True
    assert s.constexprs["HEAD_SIZE"] == 128
    assert s.constexprs["out_dtype"] == "tl.float16"
    # No name rule: the literal it is compared with.
    assert s.constexprs["MODE"] == "gelu" and s.rules["MODE"].startswith("use:compared")


def test_inferred_specs_pass_the_frontend(small):
    root, inv = small
    pairs = [(k, infer_spec(k, inv, root)) for k in inv.kernels if k.kind == "entry"]
    verdicts = validate(pairs, root, jobs=2)
    assert [v.frontend for v in verdicts] == [True] * len(pairs), [v.reason for v in verdicts]


def test_a_bad_spec_is_a_spec_problem_not_an_ascend_failure(small):
    root, inv = small
    k = _by_name(inv, "tuned_kernel")
    s = infer_spec(k, inv, root)
    bad = type(s)(**{**s.__dict__, "signature": {"a_ptr": "i32", "n": "i32"}})  # a pointer given as an int
    (v,) = validate([(k, bad)], root, jobs=1)
    assert v.frontend is False and v.valid is False
    assert "frontend rejects it" in v.reason


def test_a_check_that_hangs_or_crashes_costs_that_check_only(tmp_path, monkeypatch):
    # Spec checks run on the compile workers: their timeout and crash isolation hold here too.
    from tritriage.specs import resolve

    for name, act in (("hang", "time.sleep(600)"), ("crash", "os.kill(os.getpid(), signal.SIGSEGV)")):
        _write(tmp_path, f"{name}.py", f'''
            import os
            import signal
            import time

            import triton
            import triton.language as tl


            def _scale():
                {act}
                return 2


            SCALE = tl.constexpr(_scale())


            @triton.jit
            def {name}(x_ptr, BLOCK: tl.constexpr):
                o = tl.arange(0, BLOCK)
                tl.store(x_ptr + o, tl.load(x_ptr + o) * SCALE)
            ''')
    _write(tmp_path, "fine.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def fine(x_ptr, BLOCK: tl.constexpr):
            o = tl.arange(0, BLOCK)
            tl.store(x_ptr + o, tl.load(x_ptr + o))
        ''')
    inv = discover(tmp_path)
    pairs = [(k, infer_spec(k, inv, tmp_path)) for k in (_by_name(inv, n) for n in ("hang", "crash", "fine"))]
    monkeypatch.setattr(resolve, "CHECK_TIMEOUT", 3.0)
    hang, crash, fine = validate(pairs, tmp_path, jobs=2)
    assert (hang.frontend, hang.error) == (False, "timeout: frontend ran past 3 s")
    assert (crash.frontend, crash.error) == (False, "crash: frontend died by signal 11")
    assert fine.frontend is True and fine.valid is True


# --------------------------------------------------------------------------
# the catalog: loading, errors, staleness


def _catalog_file(d: Path, kernel_body: dict, file="pkg/kern.py") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "kern.yaml"
    p.write_text(yaml.safe_dump({"file": file, "tests": ["pytest -x tests/test_kern.py"], "kernels": kernel_body}))
    return p


def _good_entry(inv):
    k = _by_name(inv, "tuned_kernel")
    return {"tuned_kernel": {"params_fingerprint": params_fingerprint(k),
                             "specs": [{"name": "fp16", "signature": {"a_ptr": "*fp16", "n": "i32"},
                                        "constexprs": {"BLOCK_A": 64, "EVEN_N": True},
                                        "options": {"num_warps": 4}}]}}


def test_catalog_specs_come_first(small, tmp_path):
    root, inv = small
    _catalog_file(tmp_path / "cat", _good_entry(inv))
    cat = load_catalog([tmp_path / "cat"])
    k = _by_name(inv, "tuned_kernel")
    specs = specs_for(k, inv, root, catalog=cat)
    assert [(s.name, s.source, s.stale) for s in specs] == [("fp16", "catalog", "")]
    assert cat.get(k).tests == ("pytest -x tests/test_kern.py",)
    # A kernel the catalog does not know gets one inferred spec.
    other = specs_for(_by_name(inv, "rules_kernel"), inv, root, catalog=cat)
    assert [s.source for s in other] == ["inferred"]


def test_wrong_type_name_names_file_kernel_and_field(small, tmp_path):
    root, inv = small
    body = _good_entry(inv)
    body["tuned_kernel"]["specs"][0]["signature"]["a_ptr"] = "*float16"
    path = _catalog_file(tmp_path / "cat", body)
    with pytest.raises(UserError) as e:
        load_catalog([tmp_path / "cat"])
    msg = str(e.value)
    assert msg.startswith(f"{path}: tuned_kernel: specs[fp16].signature.a_ptr: unknown type '*float16'")


def test_missing_constexpr_names_file_kernel_and_field(small, tmp_path):
    root, inv = small
    body = _good_entry(inv)
    del body["tuned_kernel"]["specs"][0]["constexprs"]["BLOCK_A"]
    path = _catalog_file(tmp_path / "cat", body)
    cat = load_catalog([tmp_path / "cat"])
    with pytest.raises(UserError) as e:
        specs_for(_by_name(inv, "tuned_kernel"), inv, root, catalog=cat)
    assert str(e.value).startswith(f"{path}: tuned_kernel: specs[fp16].constexprs.BLOCK_A: missing value")


def test_unknown_kernel_names_file_kernel_and_field(small, tmp_path):
    root, inv = small
    body = _good_entry(inv)
    body["tuned_kernal"] = body.pop("tuned_kernel")
    path = _catalog_file(tmp_path / "cat", body)
    cat = load_catalog([tmp_path / "cat"])
    with pytest.raises(UserError) as e:
        check_catalog(cat, inv, root)
    assert str(e.value).startswith(f"{path}: tuned_kernal: kernels: unknown kernel")
    assert "tuned_kernel" in str(e.value)  # says what the file does define


def test_unknown_kernel_of_another_version_is_a_note(small, tmp_path):
    root, inv = small
    body = _good_entry(inv)
    body["renamed_since"] = body.pop("tuned_kernel")
    d = tmp_path / "cat"
    d.mkdir()
    (d / "kern.yaml").write_text(yaml.safe_dump({"file": "pkg/kern.py", "vllm": "0.0.1", "kernels": body}))
    notes = check_catalog(load_catalog([d]), inv, root)
    assert len(notes) == 1 and "renamed_since" in notes[0] and "0.0.1" in notes[0]


def test_stale_entry_is_detected_not_used(small, tmp_path):
    root, inv = small
    _catalog_file(tmp_path / "cat", _good_entry(inv))
    cat = load_catalog([tmp_path / "cat"])
    # vLLM changes the kernel's parameters in a later version.
    copy = tmp_path / "checkout"
    shutil.copytree(root, copy)
    src = (copy / "pkg/kern.py").read_text()
    (copy / "pkg/kern.py").write_text(src.replace("def tuned_kernel(a_ptr, n,", "def tuned_kernel(a_ptr, n, m,"))
    inv2 = discover(copy)
    k2 = _by_name(inv2, "tuned_kernel")
    assert params_fingerprint(k2) != params_fingerprint(_by_name(inv, "tuned_kernel"))
    specs = specs_for(k2, inv2, copy, catalog=cat)
    assert [s.source for s in specs] == ["inferred"]  # the stale spec is never compiled
    assert "catalog stale" in specs[0].origin
    with_stale = specs_for(k2, inv2, copy, catalog=cat, include_stale=True)
    stale = [s for s in with_stale if s.stale]
    assert [s.name for s in stale] == ["fp16"] and "params_fingerprint" not in stale[0].stale
    assert params_fingerprint(k2) in stale[0].stale


def test_specs_json_reports_staleness_and_validation(small, tmp_path, capsys):
    root, inv = small
    body = _good_entry(inv)
    body["tuned_kernel"]["params_fingerprint"] = "0" * 12
    _catalog_file(tmp_path / "cat", body)
    out = tmp_path / "written"
    import io

    buf = io.StringIO()
    assert specs_command(root, as_json=True, catalog_dirs=[str(tmp_path / "cat")], write=out, jobs=2, out=buf) == 0
    rows = {r["name"]: r for r in json.loads(buf.getvalue())}
    specs = rows["tuned_kernel"]["specs"]
    assert [(s["source"], s["stale"]) for s in specs] == [("catalog", True), ("inferred", False)]
    assert specs[0]["valid"] is False and specs[0]["reason"].startswith("stale:")
    assert specs[1]["valid"] is True and specs[1]["frontend"] is True
    assert rows["rules_kernel"]["file"] == "pkg/kern.py"
    # --write: the inferred specs, as catalog YAML that loads back.
    written = load_catalog([out])
    assert {q for _, q in written.entries} == {"tuned_kernel", "rules_kernel"}


# --------------------------------------------------------------------------
# the package catalog against vLLM 0.8.5


@pytest.mark.vllm
@pytest.mark.slow
def test_every_085_entry_kernel_has_a_passing_catalog_spec_or_a_reason(vllm085):
    inv = discover(vllm085)
    cat = load_catalog()
    assert check_catalog(cat, inv, vllm085) == []
    entries = [k for k in inv.kernels if k.kind == "entry"]
    pairs = []
    for k in entries:
        entry = cat.get(k)
        assert entry is not None, f"{k.file}: {k.qualname} has no catalog entry"
        assert entry.params_fingerprint == params_fingerprint(k), f"{k.qualname}: stale catalog entry"
        specs = specs_for(k, inv, vllm085, catalog=cat)
        assert specs and all(s.source == "catalog" for s in specs)
        pairs += [(k, s) for s in specs]
    verdicts = validate(pairs, vllm085, jobs=2)
    passing = {k.id for (k, _), v in zip(pairs, verdicts) if v.frontend}
    for k in entries:
        if k.id not in passing:
            assert cat.get(k).unsupported, f"{k.qualname}: no spec passes the frontend and no reason is given"
    # Kernels with more than one behaviour have more than one spec.
    assert sum(1 for k in entries if len(cat.get(k).specs) > 1) >= 35


def _passed(site, names):
    """Parameter name -> source text the launch passes (positional then keyword)."""
    out = {}
    for i, a in enumerate(site.args):
        if a.startswith("*"):
            break
        if i < len(names):
            out[names[i]] = a
    out.update(site.kwargs)
    return out


@pytest.mark.vllm
def test_catalog_values_match_the_launch_sites(vllm085):
    """Literals at a launch site are the catalog's values; tensors go to pointer params."""
    inv = discover(vllm085)
    cat = load_catalog()
    checked_literals = checked_pointers = 0
    for k in inv.kernels:
        entry = cat.get(k)
        if entry is None or not k.launch_sites:
            continue
        names = [p.name for p in k.params]
        site = k.launch_sites[0]
        passed = _passed(site, names)
        for spec in entry.specs:
            for name, src in passed.items():
                try:
                    lit = ast.literal_eval(src)
                except (ValueError, SyntaxError):
                    lit = None
                if lit is None and name in spec.constexprs and re.fullmatch(r"[A-Za-z_]\w*", src):
                    # A name the launching function binds to one literal, once.
                    env = CallerEnv(vllm085, site)
                    # (Not a parameter default: callers of the wrapper pass other values.)
                    binds = env.assigns.get(src, [])
                    if len(binds) == 1 and binds[0][0] != env.fn.lineno and isinstance(binds[0][1], ast.Constant):
                        lit = binds[0][1].value
                if name in spec.constexprs and isinstance(lit, (int, float, bool, str)):
                    # A variant may only change a literal where the launch is one of several.
                    if len(k.launch_sites) == 1 and spec is entry.specs[0]:
                        assert spec.constexprs[name] == lit, f"{k.qualname}.{name}: catalog {spec.constexprs[name]!r}, launch {lit!r}"
                        checked_literals += 1
                if name in spec.signature and spec.signature[name].startswith("*"):
                    # What the launch passes a pointer is a tensor expression, never a number.
                    assert lit is None, f"{k.qualname}.{name}: pointer in the catalog, {src!r} at the launch"
                    checked_pointers += 1
        for name, v in site.literal_kwargs.items():
            if name in ("num_warps", "num_stages") and isinstance(v, int):
                assert entry.specs[0].options.get(name) == v, f"{k.qualname}: {name}"
    assert checked_literals >= 10 and checked_pointers >= 150


def test_package_catalog_loads():
    cat = load_catalog()
    assert len(cat) >= 40
    assert all(e.specs for e in cat.entries.values())
    assert (PACKAGE_CATALOG / "vllm/attention/ops/prefix_prefill.yaml").exists()


# --------------------------------------------------------------------------
# the reference


@needs_reference
def test_reference_tells_an_ascend_gap_from_a_spec_error(tmp_path):
    _write(tmp_path, "g.py", '''
        import triton
        import triton.language as tl

        @triton.jit
        def gap(x_ptr, y_ptr, BLOCK: tl.constexpr):
            o = tl.arange(0, BLOCK)
            tl.store(y_ptr + o, tl.load(x_ptr + o).to(tl.float8e4nv))

        @triton.jit
        def wrong(x_ptr, BLOCK: tl.constexpr):
            o = tl.arange(0, BLOCK)
            tl.store(x_ptr + o, tl.load(x_ptr + o))
        ''')
    inv = discover(tmp_path)
    gap, wrong = _by_name(inv, "gap"), _by_name(inv, "wrong")
    s_gap = infer_spec(gap, inv, tmp_path)
    s_gap = type(s_gap)(**{**s_gap.__dict__, "signature": {"x_ptr": "*fp16", "y_ptr": "*fp8e4nv"}})
    s_wrong = infer_spec(wrong, inv, tmp_path)
    s_wrong = type(s_wrong)(**{**s_wrong.__dict__, "signature": {"x_ptr": "i32"}})
    v_gap, v_wrong = validate([(gap, s_gap), (wrong, s_wrong)], tmp_path, reference=True,
                              reference_python=str(REFERENCE_PY), jobs=2)
    assert (v_gap.frontend, v_gap.valid, v_gap.cross_checked, v_gap.reference) == (False, True, True, True)
    assert v_gap.reason.startswith("Ascend gap")
    assert (v_wrong.frontend, v_wrong.valid, v_wrong.cross_checked, v_wrong.reference) == (False, False, True, False)
    assert v_wrong.reason.startswith("spec:")

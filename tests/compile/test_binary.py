"""The binary stage without CANN: bishengir-compile from the ascendnpu-ir wheel.

These run the real compilers: triton-ascend up to linalg, then the real
bishengir-compile pipeline.  Only its last step, hivmc (CANN's ISA code
generator), is a stand-in, and every verdict says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritriage.classify import classify
from tritriage.compile.scan import run_scan
from tritriage.model import Spec
from tritriage.sandbox.stages import HIVMC_NOT_RUN, HIVMC_STANDIN_BANNER, binary_plan
from tritriage.store import Store

FIXTURES = Path(__file__).parents[1] / "fixtures"
TILES = FIXTURES / "binary"
PUBLIC = FIXTURES / "classify" / "public"

pytestmark = pytest.mark.skipif(binary_plan()["mode"] is None,
                                reason="no bishengir-compile here (pip install ascendnpu-ir)")

# 64K fp32 per tile, a few tiles live at once: far beyond 192 KB.  1K fits.
BIG, SMALL = 65536, 1024


def tile_specs(kernel, inventory, root):
    if kernel.name != "softmax_row_kernel":
        return []
    sig = {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32"}
    return [Spec(kernel=kernel.id, name=f"block{b}", source="catalog", signature=sig, constexprs={"BLOCK": b})
            for b in (BIG, SMALL)]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    import os
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("TRITRIAGE_HOME")
    os.environ["TRITRIAGE_HOME"] = str(home)
    os.environ.pop("ASCEND_HOME_PATH", None)
    store = Store.open()
    try:
        summary = run_scan(TILES, store=store, specs_fn=tile_specs, jobs=2, timeout=120)
        yield store, summary, {r.spec_name: r for r in store.results(summary.run_id)}
    finally:
        store.close()
        if old is None:
            os.environ.pop("TRITRIAGE_HOME", None)
        else:
            os.environ["TRITRIAGE_HOME"] = old


def stage(r, name):
    return next(s for s in r.result.stages if s.stage == name)


def test_a_tile_too_big_for_the_unified_buffer_fails_at_the_binary_stage(scanned):
    _, _, by_spec = scanned
    big = by_spec[f"block{BIG}"]
    assert big.outcome == "failed"
    assert big.result.failed_stage == "binary"
    assert big.diagnosis.cls == "ConvertLinalgRToBinary"
    assert "ub overflow" in big.diagnosis.subclass.lower()
    assert "bits available" in big.result.error
    # Its artifacts: the adapter's output that bishengir-compile got, and the
    # exact command triton-ascend built for it.
    s = stage(big, "binary")
    assert s.artifact and Path(s.artifact).read_text().lstrip().startswith(("module", "#"))
    assert Path(s.command[0]).name == "bishengir-compile"
    assert "--target=Ascend910B3" in s.command and "--enable-hivm-compile=true" in s.command
    assert stage(big, "hivmc").status == "not-run"


def test_the_same_kernel_with_a_small_tile_passes_the_binary_stage_and_hivmc_is_not_run(scanned):
    _, _, by_spec = scanned
    small = by_spec[f"block{SMALL}"]
    assert small.outcome == "passed-to-binary", small.result.error
    assert [(s.stage, s.status) for s in small.result.stages] == [
        ("frontend", "passed"), ("ttir", "passed"), ("linalg", "passed"), ("binary", "passed"),
        ("hivmc", "not-run"), ("launch", "not-run")]
    # The stand-in says what it is wherever its effect shows, and claims no object file.
    assert stage(small, "hivmc").reason == HIVMC_NOT_RUN and "stand-in" in HIVMC_NOT_RUN
    assert not any(p.suffix == ".o" for p in Path(small.result.artifacts_dir or "/nonexistent").rglob("*"))


def test_the_run_record_says_which_compiler_ran_each_stage(scanned):
    store, summary, _ = scanned
    run = store.run(summary.run_id)
    assert run.stages_available == ("frontend", "ttir", "linalg", "binary") or \
        list(run.stages_available) == ["frontend", "ttir", "linalg", "binary"]
    compilers = run.settings["compilers"]
    assert compilers["binary"].startswith("bishengir-compile ")
    assert "ascendnpu-ir" in compilers["binary"]
    assert compilers["hivmc"].startswith("not run")


def test_a_real_cann_hosts_ub_overflow_gets_the_local_class_and_fingerprint(scanned):
    _, _, by_spec = scanned
    local = by_spec[f"block{BIG}"].diagnosis
    cann_logs = [p for p in sorted(PUBLIC.glob("*.log")) if "ub overflow" in p.read_text().lower()
                 and "ConvertLinalgRToBinary" in p.read_text()]
    assert cann_logs, "the public corpus holds UB overflows from real CANN hosts"
    for p in cann_logs:
        text = p.read_text()
        d = classify(text)
        assert (d.cls, d.subclass) == (local.cls, local.subclass), p.name
        if d.location is None:
            # Where a log names the kernel's source line, that line is part of
            # the root cause; where it does not, the cause alone is.
            assert d.fingerprint == local.fingerprint, p.name


def test_repro_compile_only_and_ir_replay_reproduce_the_binary_failure(scanned, tmp_path):
    import subprocess

    from tritriage.commands.repro import repro_command
    from tritriage.repro.build import run_script

    store, _, by_spec = scanned
    big = by_spec[f"block{BIG}"]
    script = tmp_path / "repro.py"
    repro_command(kernel="softmax_row_kernel", spec=f"block{BIG}", output=str(script), store=store,
                  compile_only=True, out=open(os.devnull, "w"))
    code, output, got = run_script(script)
    assert got is not None, output
    assert (got["stage"], got["class"], got["fingerprint"]) == ("binary", big.diagnosis.cls, big.diagnosis.fingerprint)

    shell = tmp_path / "repro.sh"
    repro_command(kernel="softmax_row_kernel", spec=f"block{BIG}", output=str(shell), store=store, ir=True,
                  out=open(os.devnull, "w"))
    proc = subprocess.run(["bash", str(shell)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    replay = classify(proc.stdout + proc.stderr, stage="binary")
    assert (replay.cls, replay.fingerprint) == (big.diagnosis.cls, big.diagnosis.fingerprint)


def test_a_bishengir_that_cannot_read_the_adapters_output_is_an_environment_verdict(tmp_path, monkeypatch):
    # A stand-in for a bishengir-compile of another release (fault handling):
    # the failure is the pairing's, and the verdict names both releases.
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    standin = FIXTURES / "standin" / "mismatched-bishengir"

    def small_only(kernel, inventory, root):
        return [s for s in tile_specs(kernel, inventory, root) if s.constexprs["BLOCK"] == SMALL]

    with Store.open() as store:
        summary = run_scan(TILES, store=store, specs_fn=small_only, jobs=1, timeout=60, bishengir=str(standin))
        (r,) = store.results(summary.run_id)
        assert r.outcome == "failed" and r.failed_stage == "binary"
        assert r.diagnosis.cls == "environment"
        assert "triton-ascend 3.2.0 with bishengir-compile 0.9.0 from --bishengir" in r.diagnosis.subclass
        assert stage(r, "binary").command[0] == str(standin)
        assert store.run(summary.run_id).settings["compilers"]["binary"].startswith("bishengir-compile 0.9.0")


def test_a_hint_finds_the_largest_tile_that_fits_and_its_spec_compiles(tmp_path, monkeypatch):
    from tritriage.commands.repro import repro_command
    from tritriage.compile.scan import search_hints  # noqa: F401 - the search run_scan calls with hints=N
    from tritriage.repro.build import run_script
    from tritriage.report.view import build_view

    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))

    def rowsum(kernel, inventory, root, block=BIG):
        if kernel.name != "row_sum_kernel":
            return []
        return [Spec(kernel=kernel.id, name=f"block{block}", source="catalog",
                     signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "n_cols": "i32"}, constexprs={"BLOCK": block})]

    with Store.open() as store:
        summary = run_scan(TILES, store=store, specs_fn=rowsum, jobs=2, timeout=120, hints=8)
        (verdict,) = store.results(summary.run_id)
        # The kernel as written still fails: a hint never changes the verdict.
        assert verdict.outcome == "failed" and verdict.diagnosis.pattern == "ub-overflow"
        assert summary.hints.kernels == 1 and summary.hints.found == 1
        view = build_view(store, store.run(summary.run_id))
        kv = view.by_id()[verdict.kernel]
        assert kv.status == "failed"
        (h,) = kv.hints
        assert h.found and set(h.change) <= {"BLOCK", "multibuffer"} and h.change.get("BLOCK", BIG) < BIG
        assert h.ub_bits and h.ub_available_bits == 1572864 and h.ub_bits <= h.ub_available_bits
        assert f"passes the binary stage with BLOCK={h.change['BLOCK']}" in h.text
        best = h.change["BLOCK"]

        # The hint's spec is stored like any spec: repro --compile-only replays its passing compile.
        script = tmp_path / "hint.py"
        repro_command(kernel="row_sum_kernel", spec=h.spec, output=str(script), store=store, compile_only=True,
                      out=open(os.devnull, "w"))
        code, output, got = run_script(script)
        assert code == 0 and got["outcome"] == "passed-to-binary", output

    # Largest: twice the hint's tile (with the hint's multibuffer) does not fit.
    if best * 2 < BIG:
        monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home2"))
        with Store.open() as store:
            def doubled(kernel, inventory, root):
                specs = rowsum(kernel, inventory, root, best * 2)
                if h.change.get("multibuffer") is False:
                    specs = [Spec(**{**s.__dict__, "options": {"multibuffer": False}}) for s in specs]
                return specs
            again = run_scan(TILES, store=store, specs_fn=doubled, jobs=1, timeout=120)
            (r,) = store.results(again.run_id)
            assert r.outcome == "failed" and r.diagnosis.pattern == "ub-overflow"


def test_a_kernel_that_fails_only_for_fp8_gets_a_hint_naming_the_dtype(tmp_path, monkeypatch):
    # triton-ascend lowers no fp8 on a 910B: compiled with bf16 inputs
    # instead, the kernel passes, so the gap is the dtype, not the kernel.
    from tritriage.report.view import build_view

    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))

    def fp8(kernel, inventory, root):
        if kernel.name != "row_sum_kernel":
            return []
        return [Spec(kernel=kernel.id, name="fp8", source="catalog",
                     signature={"x_ptr": "*fp8e4nv", "y_ptr": "*fp32", "n_cols": "i32"}, constexprs={"BLOCK": 1024})]

    with Store.open() as store:
        summary = run_scan(TILES, store=store, specs_fn=fp8, jobs=1, timeout=120, hints=8)
        (verdict,) = store.results(summary.run_id)
        assert verdict.outcome == "failed" and verdict.diagnosis.pattern == "frontend-fp8-unsupported"
        kv = build_view(store, store.run(summary.run_id)).by_id()[verdict.kernel]
        assert kv.status == "failed", "a hint never changes the verdict"
        (h,) = kv.hints
        assert h.found and h.change == {"x_ptr": "*bf16"}
        assert "bf16 in place of fp8" in h.text and "that is the gap, not the kernel" in h.text


def test_bishengir_is_asked_for_its_options_once_per_worker_not_per_compile(tmp_path, monkeypatch):
    # triton-ascend runs `bishengir-compile --help` two or three times per
    # compile to choose its options; a worker asks once and its compiles reuse
    # the answer.  A shim in front of the real bishengir-compile logs the calls.
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    log = tmp_path / "calls.log"
    shim = tmp_path / "bin" / "bishengir-compile"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{binary_plan()["bishengir"]}" "$@"\n')
    shim.chmod(0o755)

    def three(kernel, inventory, root):
        return [Spec(kernel=kernel.id, name=f"small{i}", source="catalog", signature=s.signature,
                     constexprs={"BLOCK": SMALL >> i})
                for s in tile_specs(kernel, inventory, root) if s.constexprs["BLOCK"] == SMALL for i in range(3)]

    with Store.open() as store:
        summary = run_scan(TILES, store=store, specs_fn=three, jobs=1, timeout=60, bishengir=str(shim))
        outcomes = [r.outcome for r in store.results(summary.run_id)]
    assert outcomes == ["passed-to-binary"] * 3
    calls = log.read_text().splitlines()
    assert calls.count("--help") == 1, calls
    assert sum(1 for c in calls if "kernel.ttadapter.mlir" in c) == 3, "each compile ran bishengir-compile"

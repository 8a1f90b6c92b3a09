"""The compile engine: real compiles with triton-ascend, and stand-in compilers
that crash, hang, print garbage or eat memory.

The fixture checkout ``tests/fixtures/engine`` holds three kernels that compile
up to linalg (``scale_kernel`` calls the jit helper ``_twice``), one the
frontend rejects and one the loader cannot load.  ``tests/fixtures/standin``
holds the stand-ins, substituted for ``triton-adapter-opt``; with
``TRITRIAGE_STANDIN_ONLY=add_kernel`` they misbehave only for ``add_kernel``
and run the real adapter for the others, which shows the scan going on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritriage.commands.scan import scan_command
from tritriage.compile.scan import _source_lines, rerun, run_scan, select_results
from tritriage.errors import UserError
from tritriage.model import CompileResult, Spec
from tritriage.store import Store, StoredResult
from testkit import fixture_specs, real_adapter  # noqa: E402 - shared test helpers

FIXTURES = Path(__file__).parents[1] / "fixtures"
CHECKOUT = FIXTURES / "engine"
STANDIN = FIXTURES / "standin"
PASSING = {"scale_kernel", "add_kernel", "relu_kernel"}




@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    monkeypatch.delenv("TRITRIAGE_STANDIN_ONLY", raising=False)
    monkeypatch.setenv("TRITRIAGE_REAL_ADAPTER", real_adapter())
    s = Store.open()
    yield s
    s.close()


def scan(store, root=CHECKOUT, **kw):
    kw.setdefault("specs_fn", fixture_specs)
    kw.setdefault("timeout", 60)
    kw.setdefault("jobs", 2)
    return run_scan(root, store=store, **kw)


def results(store, run_id) -> dict[str, StoredResult]:
    return {r.kernel.rsplit(".", 1)[-1]: r for r in store.results(run_id)}


def stage_status(r: StoredResult) -> dict[str, str]:
    return {s.stage: s.status for s in r.result.stages}


def standin(name: str) -> str:
    return str(STANDIN / f"{name}-adapter")


# --------------------------------------------------------------------------
# real compiles


def test_scan_records_how_far_each_kernel_got(store):
    summary = scan(store)
    got = results(store, summary.run_id)
    assert set(got) == PASSING | {"frontend_error_kernel", "loader_error_kernel"}, "helpers are not compiled"

    ok = got["scale_kernel"]
    # No CANN here: the binary stage runs on the ascendnpu-ir wheel's
    # bishengir-compile; hivmc (CANN) and launch (an NPU) do not run.
    assert ok.outcome == "passed-to-binary"
    assert stage_status(ok) == {"frontend": "passed", "ttir": "passed", "linalg": "passed", "binary": "passed",
                                "hivmc": "not-run", "launch": "not-run"}
    assert "CANN's hivmc is not installed" in ok.result.stage("hivmc").reason
    assert ok.result.compiler_seconds > 0 and ok.diagnosis is None

    fe = got["frontend_error_kernel"]
    assert fe.outcome == "failed" and fe.failed_stage == "frontend"
    assert "no_such_function" in fe.result.error
    assert "broken.py\", line 10" in fe.result.error  # the line in the checkout, not in the function
    assert stage_status(fe)["ttir"] == "not-run"
    assert fe.diagnosis is not None and fe.diagnosis.cls == "frontend"

    le = got["loader_error_kernel"]
    assert le.outcome == "loader-error"
    assert "SCALE_SET_AT_RUNTIME" in le.result.error
    assert le.diagnosis is not None and le.diagnosis.cls == "loader"

    assert summary.counts == {"passed-to-binary": 3, "failed": 1, "loader-error": 1}
    assert summary.failed_at == {"frontend": 1}
    run = store.run(summary.run_id)
    assert run.status == "complete" and run.cann is None and run.checkout == str(CHECKOUT.resolve())
    assert list(run.stages_available) == ["frontend", "ttir", "linalg", "binary"], "hivmc needs CANN"
    kinds = {k.name: k.kind for k in store.kernels(summary.run_id)}
    assert kinds["_twice"] == "helper", "the store lists helpers too"


def test_spec_that_does_not_fit_is_a_spec_error(store):
    def bad_specs(kernel, inventory, root):
        return [Spec(kernel=kernel.id, name="wrong", signature={"x_ptr": "*fp32"}, constexprs={"BLOCK": 64})]

    summary = scan(store, specs_fn=bad_specs, kernels_filter=["relu_kernel"])
    r = results(store, summary.run_id)["relu_kernel"]
    assert r.outcome == "spec-error"
    assert "no type for parameter y_ptr" in r.result.error


def test_explicit_python_is_used_and_recorded(store):
    python = str(Path(sys.executable).absolute())
    summary = scan(store, python=python, kernels_filter=["scale_kernel"])
    assert store.run(summary.run_id).python == python
    assert results(store, summary.run_id)["scale_kernel"].outcome == "passed-to-binary"


def test_python_without_triton_is_reported_once_before_compiling(store, tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    with pytest.raises(UserError, match="triton-ascend is not importable"):
        scan(store, python=str(venv / "bin" / "python"))
    assert store.latest_run() is None, "nothing was compiled or recorded"


def test_unknown_arch_and_broken_adapter_stop_the_scan_once(store, tmp_path):
    with pytest.raises(UserError, match="unknown SoC target 'Ascend999'.*Ascend910B1"):
        scan(store, arch="Ascend999")
    not_exec = tmp_path / "triton-adapter-opt"
    not_exec.write_text("#!/bin/sh\n")
    with pytest.raises(UserError, match="not executable"):
        scan(store, adapter=str(not_exec))
    assert store.latest_run() is None


# --------------------------------------------------------------------------
# stand-in compilers: each misbehaviour is recorded and the scan goes on


def test_segfaulting_adapter_is_recorded_and_scan_goes_on(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("segfault"), jobs=1)
    got = results(store, summary.run_id)
    r = got["add_kernel"]
    assert r.outcome == "failed" and r.failed_stage == "linalg"
    assert r.result.signal == 11 and not r.result.flaky, "it crashed again on the retry: a verdict"
    assert "SIGSEGV" in r.result.error and "PLEASE submit a bug report" in r.result.error
    # The failing stage's input and command line are kept for a compiler engineer.
    art = Path(r.result.artifacts_dir)
    assert "tt.func public @add_kernel" in (art / "kernel.ttir.mlir").read_text()
    command = (art / "command.txt").read_text()
    assert standin("segfault") in command and "--triton-to-linalg" in command
    assert str(art / "kernel.ttir.mlir") in command, "the command is also given on the saved input"
    assert r.result.stage("linalg").artifact == str(art / "kernel.ttir.mlir")
    assert (art / "log.txt").exists()
    for name in ("scale_kernel", "relu_kernel"):
        assert got[name].outcome == "passed-to-binary"
        assert got[name].result.artifacts_dir is None, "passes keep no artifacts"


def test_aborting_adapter_keeps_the_malloc_message(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("abort"), kernels_filter=["add_kernel", "relu_kernel"])
    got = results(store, summary.run_id)
    assert got["add_kernel"].result.signal == 6
    assert "malloc(): corrupted top size" in got["add_kernel"].result.error
    assert got["relu_kernel"].outcome == "passed-to-binary"


def test_hanging_adapter_times_out_and_is_killed(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("hang"), timeout=3)
    got = results(store, summary.run_id)
    r = got["add_kernel"]
    assert r.outcome == "timeout" and r.failed_stage == "linalg"
    assert "timed out after 3 s" in r.result.error
    assert "stand-in adapter: hanging" in r.result.log, "output seen before the timeout is kept"
    assert (Path(r.result.artifacts_dir) / "kernel.ttir.mlir").exists()
    assert {got[n].outcome for n in ("scale_kernel", "relu_kernel")} == {"passed-to-binary"}
    assert not _running("hang-adapter"), "the timed-out tool was killed with its compile"


def _running(text: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd:
            pids.append(int(pid))
    return pids


def test_garbage_printing_adapter_fails_at_linalg_with_its_text(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("garbage"), kernels_filter=["add_kernel", "scale_kernel"])
    got = results(store, summary.run_id)
    r = got["add_kernel"]
    assert r.outcome == "failed" and r.failed_stage == "linalg" and r.result.signal is None
    assert "exited with status 1" in r.result.error
    assert "stand-in garbage \\x00\\x01" in r.result.error, "binary output is kept, escaped"
    assert "stdout garbage" in r.result.error
    assert got["scale_kernel"].outcome == "passed-to-binary"


def test_runaway_memory_is_stopped_at_the_limit(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("hog"), memory_mb=400, kernels_filter=["add_kernel", "relu_kernel"])
    got = results(store, summary.run_id)
    r = got["add_kernel"]
    assert r.outcome == "oom" and r.failed_stage == "linalg"
    assert "400 MiB" in r.result.error
    assert got["relu_kernel"].outcome == "passed-to-binary"


def test_worker_death_is_a_crash_and_the_worker_is_replaced(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("killworker"), jobs=1)
    got = results(store, summary.run_id)
    assert got["add_kernel"].outcome == "crash"
    assert "compile worker died again" in got["add_kernel"].result.error
    assert {got[n].outcome for n in ("scale_kernel", "relu_kernel")} == {"passed-to-binary"}


def test_crash_that_does_not_reproduce_is_flaky(store, monkeypatch, tmp_path):
    monkeypatch.setenv("TRITRIAGE_STANDIN_COUNTER", str(tmp_path / "count"))
    summary = scan(store, adapter=standin("flaky"), kernels_filter=["add_kernel"])
    r = results(store, summary.run_id)["add_kernel"]
    assert (tmp_path / "count").read_text().strip() == "2", "crashed once, passed on the retry"
    assert r.outcome == "passed-to-binary" and r.result.flaky
    art = Path(r.result.artifacts_dir)
    assert "malloc(): corrupted top size" in (art / "first-attempt.log.txt").read_text()
    assert (art / "first-attempt.kernel.ttir.mlir").exists()
    assert summary.flaky == 1


# --------------------------------------------------------------------------
# resume, cache, rerun


def test_interrupted_scan_resumes_where_it_stopped(store):
    seen = []

    def stop_after_two(result: CompileResult):
        seen.append(result.kernel)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(store, use_cache=False, jobs=1, on_result=stop_after_two)
    run = store.latest_run()
    assert run.status == "interrupted"
    assert len(store.results(run.id)) == 2, "what finished before Ctrl-C is stored"

    summary = scan(store, use_cache=False, jobs=1)
    assert summary.run_id == run.id and summary.resumed == 2
    assert len(summary.compiled) == 3
    assert not {k for k, _ in summary.compiled} & set(seen), "finished pairs are not compiled again"
    assert store.run(run.id).status == "complete"
    assert len(store.results(run.id)) == 5


def test_compiles_start_while_later_kernels_specs_are_still_being_inferred(store):
    # Spec inference of a large checkout takes seconds: the first kernels'
    # compiles do not wait for the last kernel's specs.
    events = []

    def slow_specs(kernel, inventory, root):
        if events:
            time.sleep(1.0)  # inference of a kernel with many launch sites
        events.append("specs")
        return fixture_specs(kernel, inventory, root)

    summary = scan(store, specs_fn=slow_specs, jobs=1, on_result=lambda r: events.append("result"))
    assert len(summary.compiled) == 5
    last_specs = len(events) - 1 - events[::-1].index("specs")
    assert "result" in events[:last_specs], events


def test_unchanged_kernels_come_from_the_cache(store, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(CHECKOUT, checkout)
    first = scan(store, root=checkout)
    assert len(first.compiled) == 5

    second = scan(store, root=checkout)
    assert second.compiled == [] and second.cached == 5
    assert second.run_id != first.run_id and second.counts == first.counts

    # Editing a jit helper invalidates exactly the kernels that call it.
    src = checkout / "kernels" / "elementwise.py"
    src.write_text(src.read_text().replace("return x * 2", "return x * 3"))
    third = scan(store, root=checkout)
    assert [k.rsplit(".", 1)[-1] for k, _ in third.compiled] == ["scale_kernel"]

    forced = scan(store, root=checkout, use_cache=False)
    assert len(forced.compiled) == 5


def test_rerun_prints_before_and_after(store, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("segfault"))
    lines: list[str] = []
    # "" asks for the real adapter: the fix a compiler engineer would try.
    rerun(kernel="add_kernel", adapter="", store=store, specs_fn=fixture_specs, out=lines.append)
    assert len(lines) == 1, lines
    assert lines[0].startswith("kernels.elementwise.add_kernel [default]: failed at linalg (signal SIGSEGV)")
    assert lines[0].endswith(" -> passed-to-binary")
    assert results(store, summary.run_id)["add_kernel"].outcome == "passed-to-binary", "the store is updated"

    lines.clear()
    rerun(failed=True, store=store, specs_fn=fixture_specs, out=lines.append)
    assert sorted(line.split(" [")[0] for line in lines) == [
        "kernels.broken.frontend_error_kernel", "kernels.broken.loader_error_kernel"]
    assert all(" = " in line for line in lines), "unchanged verdicts say so"

    lines.clear()
    rerun(cls="loader", store=store, specs_fn=fixture_specs, out=lines.append)
    assert [line.split(" [")[0] for line in lines] == ["kernels.broken.loader_error_kernel"]

    with pytest.raises(UserError, match="say what to rerun"):
        rerun(store=store)


def test_rerun_rejects_an_ambiguous_bare_name():
    def stored(kid):
        return StoredResult(run_id=1, result=CompileResult(kernel=kid, spec="default", outcome="failed"),
                            spec=Spec(kernel=kid), diagnosis=None, cache_key=None, cached_from=None, recorded=0)

    rs = [stored("a.x.fwd_kernel"), stored("b.y.fwd_kernel"), stored("a.x.other")]
    with pytest.raises(UserError, match="ambiguous.*a.x.fwd_kernel, b.y.fwd_kernel"):
        select_results(rs, kernel="fwd_kernel")
    assert [r.kernel for r in select_results(rs, kernel="b.y.fwd_kernel")] == ["b.y.fwd_kernel"]
    # --kernel repeated: every one named, not the last only.
    assert [r.kernel for r in select_results(rs, kernel=["b.y.fwd_kernel", "other"])] == \
        ["b.y.fwd_kernel", "a.x.other"]
    assert [r.kernel for r in select_results(rs, file="b/y.py", files={"b.y.fwd_kernel": "b/y.py"})] == \
        ["b.y.fwd_kernel"]


def test_scan_command_prints_the_count_of_each_outcome(store, capsys, monkeypatch):
    import tritriage.compile.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_default_specs_fn", lambda: fixture_specs)
    assert scan_command(str(CHECKOUT), quiet=True, jobs=2) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "quiet prints the final line only"
    assert "passed-to-binary 3" in out[0] and "failed 1 (frontend 1)" in out[0] and "loader-error 1" in out[0]


# --------------------------------------------------------------------------
# vLLM


@pytest.mark.vllm
@pytest.mark.slow
def test_every_vllm_085_entry_kernel_ends_in_an_explained_state(store, vllm085):
    summary = run_scan(vllm085, store=store, timeout=120)
    rs = store.results(summary.run_id)
    assert rs and len(rs) == summary.pairs
    explained = {"passed-to-binary", "failed", "loader-error", "timeout", "crash", "oom"}
    unexplained = [(r.kernel, r.outcome) for r in rs if r.outcome not in explained]
    assert not unexplained
    for r in rs:
        if r.outcome == "failed":
            assert r.failed_stage in ("frontend", "ttir", "linalg", "binary") and r.result.error
        if r.outcome != "passed-to-binary":
            assert r.diagnosis is not None and r.diagnosis.cls
        if r.result.stage("linalg").status == "passed":
            # Every spec that passes linalg goes through the binary stage.
            assert r.result.stage("binary").status in ("passed", "failed"), r.kernel
        assert r.result.stage("hivmc").status == "not-run"
    assert summary.counts["passed-to-binary"] > len(rs) // 3
    assert any(r.failed_stage == "binary" for r in rs), "vLLM's GPU tile sizes overflow the unified buffer"
    line = summary.line()
    for outcome in ("passed-to-binary", "failed", "loader-error", "timeout", "crash"):
        assert f"{outcome} {summary.counts.get(outcome, 0)}" in line


def test_black_box_fallback_still_tells_the_stages_apart(store, monkeypatch):
    """Where triton-ascend's internals differ, the worker calls triton.compile in one piece."""
    from tritriage.compile.pool import Job, Settings, WorkerPool
    from tritriage.discover.inventory import discover

    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    inv = discover(CHECKOUT)
    ks = {k.name: k for k in inv.kernels}
    jobs = [Job(kernel=ks[n], spec=fixture_specs(ks[n], inv, CHECKOUT)[0], checkout=inv.root, id=i)
            for i, n in enumerate(["scale_kernel", "frontend_error_kernel", "add_kernel"])]
    with WorkerPool(Settings(blackbox=True, adapter=standin("garbage"), timeout=60), 2) as pool:
        got = {job.kernel.name: r for job, r in pool.run(jobs)}
    assert got["scale_kernel"].outcome == "passed-to-linalg"
    assert got["scale_kernel"].stage("binary").status == "not-run"
    assert (got["frontend_error_kernel"].outcome, got["frontend_error_kernel"].failed_stage) == ("failed", "frontend")
    assert "no_such_function" in got["frontend_error_kernel"].error
    assert (got["add_kernel"].outcome, got["add_kernel"].failed_stage) == ("failed", "linalg")
    assert got["add_kernel"].stage("linalg").command[0] == standin("garbage")


def test_doctor_reports_what_a_scan_can_run_here(capsys, monkeypatch):
    import json

    from tritriage.commands.doctor import doctor_command

    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    assert doctor_command(json_out=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["triton_ascend_version"] == "3.2.0"
    assert report["adapter_executable"] and report["adapter_runs"]
    assert report["cann_available"] is False and "ASCEND_HOME_PATH is not set" in report["cann_reason"]
    assert report["stages"] == ["frontend", "ttir", "linalg", "binary"]
    assert report["binary"]["mode"] == "bishengir" and "ascendnpu-ir" in report["binary"]["source"]
    assert "Ascend910B3" in report["archs"]
    assert report["torch_npu"] is None and report["torch_npu_error"], "no torch_npu on this host, and it says why"

    assert doctor_command(arch="Ascend999") == 1
    assert "unknown SoC target" in capsys.readouterr().out


def test_rerun_gives_an_inferred_spec_the_verdict_the_scan_gave(store):
    # An inferred spec the frontend rejects for no known Ascend gap is a spec
    # error in the scan; a rerun of it once recorded an Ascend failure instead.
    def inferred(kernel, inventory, root):
        # Wrong on purpose, as inference can be: every parameter an integer.
        sig = {p.name: "i32" for p in kernel.params if not p.constexpr}
        return [Spec(kernel=kernel.id, name="default", source="inferred", signature=sig, constexprs={"BLOCK": 128})]

    summary = scan(store, specs_fn=inferred, kernels_filter=["add_kernel"])
    before = results(store, summary.run_id)["add_kernel"]
    assert before.outcome == "spec-error", before.result.error
    lines: list[str] = []
    rerun(kernel="add_kernel", store=store, specs_fn=inferred, out=lines.append)
    after = results(store, summary.run_id)["add_kernel"]
    assert after.outcome == "spec-error"
    assert after.diagnosis.fingerprint == before.diagnosis.fingerprint
    assert lines and " = " in lines[0], lines


def test_without_a_bishengir_the_binary_stage_is_not_run_and_says_why(store):
    summary = scan(store, bishengir="none", kernels_filter=["scale_kernel"])
    ok = results(store, summary.run_id)["scale_kernel"]
    assert ok.outcome == "passed-to-linalg"
    assert stage_status(ok) == {"frontend": "passed", "ttir": "passed", "linalg": "passed", "binary": "not-run",
                                "hivmc": "not-run", "launch": "not-run"}
    assert "turned off" in ok.result.stage("binary").reason
    assert store.run(summary.run_id).stages_available == ("frontend", "ttir", "linalg") or \
        list(store.run(summary.run_id).stages_available) == ["frontend", "ttir", "linalg"]


def test_black_box_fallback_runs_the_local_binary_stage_too(store):
    from tritriage.compile.pool import Job, Settings, WorkerPool
    from tritriage.discover.inventory import discover
    from tritriage.sandbox.stages import binary_plan

    inv = discover(CHECKOUT)
    k = next(k for k in inv.kernels if k.name == "scale_kernel")
    job = Job(kernel=k, spec=fixture_specs(k, inv, CHECKOUT)[0], checkout=inv.root)
    with WorkerPool(Settings(blackbox=True, binary=binary_plan(), timeout=60), 1) as pool:
        (_, r), = list(pool.run([job]))
    assert r.outcome == "passed-to-binary", r.error
    assert r.stage("binary").status == "passed" and r.stage("hivmc").status == "not-run"


def test_a_stage_far_slower_than_its_history_is_a_suspected_hang_then_confirmed(store, monkeypatch):
    # First scan: every stage's time is known.  Then the adapter hangs on
    # add_kernel: it is cut once the linalg stage has run past its budget
    # (HANG_FACTOR times its own time, at least HANG_FLOOR), long before the
    # timeout, and retried with the full timeout at the end, which confirms it.
    import tritriage.compile.hangs as hangs

    scan(store, kernels_filter=["add_kernel", "scale_kernel"])
    monkeypatch.setattr(hangs, "HANG_FLOOR", 2.0)
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    summary = scan(store, adapter=standin("hang"), kernels_filter=["add_kernel", "scale_kernel"], use_cache=False,
                   timeout=30, hang_budget=30)
    assert summary.hangs_suspected == 1 and summary.hangs_confirmed == 1
    got = results(store, summary.run_id)
    assert got["scale_kernel"].outcome == "passed-to-binary"
    hung = got["add_kernel"]
    assert hung.outcome == "timeout" and hung.failed_stage == "linalg"
    assert "timed out after 30 s" in hung.result.error, hung.result.error
    assert "suspected hangs (1 retried" in summary.line()


@pytest.mark.parametrize("hang,says", [("spin", "CPU seconds in linalg without a result"),
                                       ("hang", "stalled: ")])
def test_a_cold_scan_cuts_a_hang_at_its_stage_budget_once_it_has_seen_enough_compiles(store, monkeypatch, hang,
                                                                                       says):
    # No history at all: the budget is learnt from this run's first compiles,
    # so a hang that comes later costs its stage budget, not the timeout; the
    # verdict says so, and with no --hang-budget it is not waited out.  A busy
    # hang is cut by the CPU it spent, a sleeping one as a stall.
    import tritriage.compile.hangs as hangs
    from tritriage.discover.inventory import discover

    monkeypatch.setattr(hangs, "HANG_FLOOR", 2.0)
    monkeypatch.setattr(hangs, "MIN_SAMPLES", 1)
    # A cold scan starts the longest sources first: the hang comes last.
    inv = discover(CHECKOUT)
    three = [k for k in inv.kernels if k.name in ("add_kernel", "scale_kernel", "relu_kernel")]
    order = [k.name for k in sorted(three, key=lambda k: -_source_lines(k, inv.by_id()))]
    last = order[-1]
    monkeypatch.setenv("TRITRIAGE_STANDIN_ONLY", last)
    summary = scan(store, adapter=standin(hang), kernels_filter=order, timeout=60, jobs=1, hang_budget=0)
    got = results(store, summary.run_id)
    hung = got[last]
    assert hung.outcome == "timeout" and hung.failed_stage == "linalg"
    assert hung.result.seconds < 30, hung.result.seconds
    assert "hang suspected" in hung.result.error and "9 compiles out of 10" in hung.result.error, hung.result.error
    assert says in hung.result.error, hung.result.error
    assert hung.diagnosis.subclass.startswith("hang suspected in "), hung.diagnosis
    assert "rerun --kernel" in hung.result.error
    assert summary.hangs_suspected == 1 and summary.hangs_confirmed == 0
    assert "`tritriage rerun --class timeout` waits out the rest" in summary.line()
    assert all(got[k].outcome == "passed-to-binary" for k in order[:-1])


def test_stage_budgets_follow_history_and_leave_a_stage_with_none_to_the_timeout():
    from types import SimpleNamespace

    from tritriage.compile.hangs import HANG_FACTOR, HANG_FLOOR, MIN_SAMPLES, HangPolicy

    job = SimpleNamespace(kernel=SimpleNamespace(id="m.k"), spec=SimpleNamespace(name="s"))
    cold = HangPolicy([], timeout=120.0)
    assert cold.budgets(job) == {}, "no history: the full timeout only"
    history = [(f"m.o{i}", "s", "binary", 0.5) for i in range(MIN_SAMPLES)]
    assert HangPolicy(history, 120.0).budgets(job)["binary"][0] == HANG_FLOOR
    own = HangPolicy(history + [("m.k", "s", "binary", 5.0)], 120.0).budgets(job)
    assert own["binary"][0] == HANG_FACTOR * 5.0, "its own time before the machine's typical one"
    assert "linalg" not in own, "a stage with too little history has no budget"
    assert "binary" not in HangPolicy([("m.k", "s", "binary", 60.0)], 120.0).budgets(job), "never past the timeout"


def test_kernels_an_ascend_host_never_uses_are_listed_not_compiled(store, tmp_path):
    # A kernel in an AMD-only directory is not Ascend's problem: the scan
    # leaves it uncompiled and says so, the report lists it apart with why;
    # --all-platforms (or naming it) compiles it anyway.
    from tritriage.report.view import build_view

    kernel = ("import triton\nimport triton.language as tl\n\n@triton.jit\ndef {name}(x_ptr, BLOCK: tl.constexpr):\n"
              "    offs = tl.arange(0, BLOCK)\n    tl.store(x_ptr + offs, tl.load(x_ptr + offs) * 2)\n\n"
              "def launch(x):\n    {name}[(1,)](x, BLOCK=128)\n")
    for rel, name in (("pkg/amd/ops.py", "k_amd"), ("pkg/common.py", "k_common")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(kernel.format(name=name))
    (tmp_path / "pkg/__init__.py").write_text("")
    summary = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    got = results(store, summary.run_id)
    assert set(got) == {"k_common"} and got["k_common"].outcome == "passed-to-binary", got
    assert [k.rsplit(".", 1)[-1] for k in summary.not_used] == ["k_amd"]
    assert "1 not used on Ascend, not compiled" in summary.line()
    view = build_view(store, store.run(summary.run_id))
    amd = next(k for k in view.kernels if k.kernel.name == "k_amd")
    assert amd.status == "not-run" and "not used on Ascend" in amd.reason and amd.used_on_ascend == "not-used"
    assert view.totals.not_used_on_ascend == 1 and view.totals.passed == 1
    everything = run_scan(tmp_path, store=store, timeout=60, jobs=1, all_platforms=True)
    assert set(results(store, everything.run_id)) == {"k_amd", "k_common"} and not everything.not_used


def test_after_an_edit_only_the_kernels_whose_inputs_changed_get_their_specs_inferred_again(store, tmp_path):
    # Spec inference reads a kernel, its helpers, its launch sites and what
    # they import: after an edit, a kernel whose inputs did not change keeps
    # its specs, one whose launcher or imported constant changed is inferred
    # again, and gets the new value.
    kernel = ("import triton\nimport triton.language as tl\n{imports}\n@triton.jit\n"
              "def {name}(x_ptr, BLOCK: tl.constexpr):\n"
              "    offs = tl.arange(0, BLOCK)\n    tl.store(x_ptr + offs, tl.load(x_ptr + offs) * 2)\n\n"
              "def launch(x):\n    {name}[(1,)](x, BLOCK={block})\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/sizes.py").write_text("TILE = 128\n")
    (tmp_path / "pkg/a.py").write_text(kernel.format(name="k_a", imports="from pkg.sizes import TILE\n",
                                                     block="TILE"))
    (tmp_path / "pkg/b.py").write_text(kernel.format(name="k_b", imports="", block="64"))

    def block(summary):
        return {r.kernel.rsplit(".", 1)[-1]: r.spec.constexprs["BLOCK"] for r in store.results(summary.run_id)}

    first = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert block(first) == {"k_a": 128, "k_b": 64} and first.specs_inferred == 2

    (tmp_path / "pkg/b.py").write_text(kernel.format(name="k_b", imports="", block="32"))
    second = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert (second.specs_inferred, second.specs_reused) == (1, 1)
    assert "specs of 1 kernels inferred again" in second.line()
    assert block(second) == {"k_a": 128, "k_b": 32}
    assert [k.rsplit(".", 1)[-1] for k, _ in second.compiled] == ["k_b"] and second.cached == 1

    (tmp_path / "pkg/sizes.py").write_text("TILE = 256\n")
    third = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert (third.specs_inferred, third.specs_reused) == (1, 1)
    assert block(third) == {"k_a": 256, "k_b": 32}


def test_a_module_constant_a_kernel_reads_is_part_of_its_cache_key(store, tmp_path):
    # A kernel reads module-level constants of its file: editing one compiles
    # again the kernels that name it, and only them.
    src = ("import triton\nimport triton.language as tl\n\nSCALE = tl.constexpr({scale})\nUNUSED = {unused}\n\n"
           "@triton.jit\ndef k_scaled(x_ptr, BLOCK: tl.constexpr):\n    offs = tl.arange(0, BLOCK)\n"
           "    tl.store(x_ptr + offs, tl.load(x_ptr + offs) * SCALE)\n\n"
           "@triton.jit\ndef k_plain(x_ptr, BLOCK: tl.constexpr):\n    offs = tl.arange(0, BLOCK)\n"
           "    tl.store(x_ptr + offs, tl.load(x_ptr + offs) * 2)\n\n"
           "def launch(x):\n    k_scaled[(1,)](x, BLOCK=128)\n    k_plain[(1,)](x, BLOCK=128)\n")
    (tmp_path / "ops.py").write_text(src.format(scale=2, unused=1))
    first = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert len(first.compiled) == 2

    (tmp_path / "ops.py").write_text(src.format(scale=3, unused=1))
    second = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert [k.rsplit(".", 1)[-1] for k, _ in second.compiled] == ["k_scaled"] and second.cached == 1

    (tmp_path / "ops.py").write_text(src.format(scale=3, unused=5))
    third = run_scan(tmp_path, store=store, timeout=60, jobs=1)
    assert third.compiled == [] and third.cached == 2


def test_a_catalog_entry_for_a_kernel_its_file_lacks_stops_the_scan_before_a_run_opens(store, tmp_path):
    # Specs are inferred as the scan goes; a catalog that cannot be right is
    # still said before anything is compiled or stored.
    checkout = tmp_path / "checkout"
    shutil.copytree(CHECKOUT, checkout)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "typo.yaml").write_text(
        "file: kernels/elementwise.py\nkernels:\n  add_kernal:\n    params_fingerprint: abcdef012345\n    specs:\n    - name: x\n"
        "      signature: {x_ptr: '*fp32'}\n")
    with pytest.raises(UserError, match="add_kernal: kernels: unknown kernel"):
        run_scan(checkout, store=store, timeout=60, jobs=1, catalog_dirs=[tmp_path / "cat"])
    assert store.latest_run() is None

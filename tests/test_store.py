"""The SQLite results store: what scan writes is what report and rerun read."""

from __future__ import annotations

import sqlite3

import pytest
from pathlib import Path

from tritriage.model import CompileResult, Diagnosis, Kernel, Location, Param, Spec, StageResult
from tritriage.store import Store, data_dir


def _result(kernel="vllm.ops.k", spec="default", outcome="failed", **kw) -> CompileResult:
    stages = (
        StageResult("frontend", "passed", seconds=0.01),
        StageResult("ttir", "passed", seconds=0.002),
        StageResult("linalg", "failed", "triton-adapter-opt exited with status 1\nerror: bad", 0.05,
                    ("/x/triton-adapter-opt", "/tmp/k.ttir.mlir", "-o", "/tmp/out"), "/art/kernel.ttir.mlir"),
        StageResult("binary", "not-run", "not reached: linalg failed"),
    )
    base = dict(kernel=kernel, spec=spec, outcome=outcome, stages=stages, log="noise\n", error="error: bad",
                seconds=0.1, compiler_seconds=0.062, signal=None, flaky=False, artifacts_dir="/art")
    base.update(kw)
    return CompileResult(**base)


def _new_run(store: Store, checkout="/src/vllm") -> int:
    return store.new_run(checkout=checkout, commit="abc123", triton_ascend="3.2.0", cann=None, arch="Ascend910B",
                         python="/usr/bin/python3", stages_available=["frontend", "ttir", "linalg"],
                         argv=["tritriage", "scan", checkout], settings={"timeout": 120})


def test_data_dir_follows_tritriage_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "h"))
    assert data_dir() == tmp_path / "h"
    with Store.open() as store:
        assert store.path == tmp_path / "h" / "tritriage.db"
        run_id = _new_run(store)
        assert store.artifacts_dir(run_id, "vllm.ops.k", "bf16/large") == \
            tmp_path / "h" / "runs" / str(run_id) / "vllm.ops.k" / "bf16_large"
    mode = sqlite3.connect(str(tmp_path / "h" / "tritriage.db")).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_result_round_trip_with_stages_and_diagnosis(tmp_path):
    diag = Diagnosis(cls="ConvertTritonIRToLinalgIR", subclass="bad", fingerprint="f00",
                     location=Location("vllm/ops.py", 12, 3, "x = 1"))
    spec = Spec(kernel="vllm.ops.k", name="default", signature={"x": "*fp16"}, constexprs={"B": 64})
    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        store.add_result(run_id, _result(), diag, "key1", spec=spec, timeout=120, memory_mb=8192)
    with Store.open(tmp_path / "db") as store:  # a fresh process would see the same
        [got] = store.results(run_id)
        assert got.result == _result()
        assert got.spec == spec and got.diagnosis == diag and got.diagnosis_class == "ConvertTritonIRToLinalgIR"
        assert got.failed_stage == "linalg" and got.cache_key == "key1"
        assert store.result(run_id, "vllm.ops.k", "default").result.stage("linalg").command[0] == \
            "/x/triton-adapter-opt"
        run = store.run(run_id)
        assert (run.checkout, run.commit, run.cann, run.status) == ("/src/vllm", "abc123", None, "running")
        assert run.stages_available == ["frontend", "ttir", "linalg"]


def test_rerun_replaces_the_result_and_its_stages(tmp_path):
    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        store.add_result(run_id, _result(), None, "k")
        passed = CompileResult(kernel="vllm.ops.k", spec="default", outcome="passed-to-linalg",
                               stages=(StageResult("frontend", "passed"), StageResult("binary", "not-run", "no CANN")))
        store.add_result(run_id, passed, None, "k2")
        [got] = store.results(run_id)
        assert got.outcome == "passed-to-linalg" and [s.stage for s in got.result.stages] == ["frontend", "binary"]
        assert store.done(run_id) == {("vllm.ops.k", "default")}


def test_cache_lookup_respects_limits(tmp_path):
    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        store.add_result(run_id, _result(outcome="timeout"), None, "slow", timeout=10, memory_mb=100)
        store.add_result(run_id, _result(kernel="other", outcome="failed"), None, "plain", timeout=10)
        assert store.cached("slow", timeout=10) is not None
        assert store.cached("slow", timeout=300) is None, "a longer timeout might let it finish"
        assert store.cached("plain", timeout=300).outcome == "failed"
        assert store.cached("missing") is None
        # A copy (reclassified under newer rules, say) is the newest source, and
        # copying it again still names the run that compiled it.
        run2 = _new_run(store)
        store.add_result(run2, _result(kernel="other"), None, "plain", cached_from=run_id)
        assert store.cached("plain").run_id == run2
        run3 = _new_run(store)
        store.copy_cached("plain", run3, Spec(kernel="other", name="default"))
        [copy] = store.results(run3)
        assert copy.cached_from == run_id


def test_worker_deaths_are_not_cached(tmp_path):
    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        store.add_result(run_id, _result(outcome="crash", error="compile worker died: gone"), None, "k")
        assert store.cached("k") is None


def test_runs_are_listed_newest_first_per_checkout(tmp_path):
    with Store.open(tmp_path / "db") as store:
        a = _new_run(store, "/a")
        b = _new_run(store, "/b")
        store.finish_run(a, "interrupted")
        assert store.latest_run().id == b
        assert store.latest_run("/a").id == a and store.latest_run("/a").status == "interrupted"
        assert store.latest_run("/a").finished is not None
        assert [r.id for r in store.runs()] == [b, a]


def test_kernels_keep_helpers(tmp_path):
    ks = [Kernel(id="m.k", name="k", qualname="k", module="m", file="m.py", line=3, end_line=9,
                 params=(Param("x"), Param("B", constexpr=True)), calls=("m.h",)),
          Kernel(id="m.h", name="h", qualname="h", module="m", file="m.py", line=1, end_line=2, kind="helper")]
    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        store.add_kernels(run_id, ks)
        got = {k.id: k for k in store.kernels(run_id)}
        assert got["m.h"].kind == "helper" and got["m.k"].params[1].constexpr and got["m.k"].calls == ("m.h",)
    assert Path(tmp_path / "db").exists()


# --------------------------------------------------------------------------
# the run record, a damaged file, one writer


def test_run_record_counts_what_happened_and_reads_back(tmp_path):
    from tritriage.store import record_text

    with Store.open(tmp_path / "db") as store:
        run_id = _new_run(store)
        assert store.run(run_id).record == {}
        store.note(run_id, workers_lost=0, compiles_retried=0)
        assert store.run(run_id).record == {}, "nothing happened: nothing is said"
        store.note(run_id, interrupted=1)
        store.note(run_id, resumed=1, workers_lost=2, compiles_retried=2)
        store.note(run_id, workers_lost=1, compiles_retried=1)
    with Store.open(tmp_path / "db") as store:
        record = store.run(run_id).record
    assert record == {"interrupted": 1, "resumed": 1, "workers_lost": 3, "compiles_retried": 3}
    assert record_text(record) == ("interrupted 1 time, resumed 1 time, 3 compile workers lost and replaced, "
                                   "3 compiles retried on a fresh worker")


def test_a_store_without_the_record_column_gains_it(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,"
                 " checkout TEXT NOT NULL, git_commit TEXT, triton_ascend TEXT, cann TEXT, arch TEXT, python TEXT,"
                 " stages_available TEXT, status TEXT NOT NULL DEFAULT 'running', argv TEXT, settings TEXT)")
    conn.execute("INSERT INTO runs (started, checkout, status) VALUES (1.0, '/src/old', 'complete')")
    conn.commit()
    conn.close()
    with Store.open(db) as store:
        [run] = store.runs()
        assert run.checkout == "/src/old" and run.record == {}
        store.note(run.id, workers_lost=1)
        assert store.run(run.id).record == {"workers_lost": 1}


@pytest.mark.parametrize("kind", ["garbage", "truncated", "short"])
def test_a_damaged_file_is_kept_aside_and_a_new_store_started(tmp_path, kind):
    from tritriage.store import StoreDamaged

    db = tmp_path / "tritriage.db"
    with Store.open(db) as store:
        for _ in range(3):
            run_id = _new_run(store)
            for i in range(100):
                store.add_result(run_id, _result(kernel=f"vllm.k{i}", log="x" * 3000), None, f"key{i}")
    data = db.read_bytes()
    damaged = {"garbage": b"not sqlite" * 500, "truncated": data[: len(data) // 2], "short": data[:60]}[kind]
    db.write_bytes(damaged)
    with pytest.raises(StoreDamaged) as e:
        Store.open(db)
    message = str(e.value)
    assert "\n" not in message and "kept it as" in message and "run the command again" in message
    assert e.value.aside.read_bytes() == damaged, "the damaged file is kept as it was"
    with Store.open(db) as store:
        assert store.runs() == [], "a new, empty store took its place"


def test_an_empty_file_is_a_new_store_not_a_damaged_one(tmp_path):
    db = tmp_path / "tritriage.db"
    db.write_bytes(b"")
    with Store.open(db) as store:
        assert store.runs() == []


def test_one_writer_at_a_time(tmp_path):
    import multiprocessing

    from tritriage.errors import UserError
    from tritriage.store import writer_lock

    def hold(root, ready, done):
        with writer_lock(root, what="scan"):
            ready.set()
            done.wait(30)

    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold, args=(tmp_path, ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(UserError) as e:
            with writer_lock(tmp_path, what="rerun"):
                pass
        assert f"`tritriage scan` (pid {holder.pid}" in str(e.value) and "TRITRIAGE_HOME" in str(e.value)
    finally:
        done.set()
        holder.join(30)
    with writer_lock(tmp_path, what="scan"):  # released with its holder
        pass

"""tritriage's results store: one SQLite file in the data directory.

The data directory is ``$TRITRIAGE_HOME`` or ``~/.local/share/tritriage``; the
database is ``tritriage.db`` in it and compile artifacts lie under
``runs/<run id>/<kernel id>/<spec>/``.  ``scan`` writes each result as soon as
it comes in, so an interrupted scan loses nothing; ``report`` and ``rerun``
read it from any directory.

API (all records are plain frozen dataclasses or ``tritriage.model`` records)::

    store = Store.open()                  # or Store.open(path_to_db)
    run_id = store.new_run(checkout=..., commit=..., triton_ascend=..., cann=None,
                           arch=..., python=..., stages_available=[...], argv=[...],
                           settings={...})
    store.add_kernels(run_id, inventory.kernels)      # every jit function, helpers too
    store.add_result(run_id, result, diagnosis, cache_key, spec=spec,
                     cached_from=None, timeout=..., memory_mb=..., classifier=...)
    store.finish_run(run_id, "complete" | "interrupted")
    store.note(run_id, interrupted=1, resumed=1, workers_lost=N, compiles_retried=N)  # adds to run.record

    with writer_lock(what="scan"): ...    # one scan or rerun per data directory; a second gets a UserError
    Store.open() on a damaged file        # keeps it aside (tritriage.db.damaged-<time>), starts a new
                                          # store and raises StoreDamaged (a UserError) saying so

    store.latest_run(checkout=None)   -> Run | None   (newest first; any checkout when None)
    store.run(run_id)                 -> Run | None
    store.runs()                      -> list[Run]
    store.results(run_id)             -> list[StoredResult]   (ordered by kernel id, spec)
    store.result(run_id, kernel_id, spec_name) -> StoredResult | None
    store.kernels(run_id)             -> list[Kernel]
    store.cached(cache_key, timeout=None, memory_mb=None) -> StoredResult | None
    store.copy_cached(cache_key, run_id, spec, timeout=, memory_mb=, classifier=) -> (outcome, classifier) | None
    store.done(run_id)                -> set of (kernel id, spec name) already recorded
    store.outcomes(run_id)            -> [(kernel id, spec, outcome, failed stage, flaky)], no logs
    store.artifacts_dir(run_id, kernel_id, spec_name) -> Path
    with store.transaction(): ...     # many writes, one commit

vLLM's own tests (``tritriage test``) join the run of the scan they belong to::

    store.set_test_map(run_id, mappings, files=None)  # TestMapping list; replaces the rows of ``files``
                                                      # (default: the mappings' files)
    store.add_test_results(run_id, command, results)  # TestResult list; replaces that command's rows
    store.test_map(run_id)            -> list[TestMapping]  (by kernel file; command None = no test found)
    store.test_results(run_id, kernel_file=None) -> list[TestResult]  (by test file, case, command;
                                      only the rows mapped to ``kernel_file`` when given)

``Run`` has: id, started, finished (epoch seconds or None), checkout, commit,
triton_ascend, cann (version string, "present" or None when absent), arch,
python, stages_available (list of stage names a scan runs there), status
(running | complete | interrupted), argv (list), settings (dict), record (dict: what happened
to the run, see ``note``; empty when nothing did).

``StoredResult`` has: run_id, result (CompileResult, stages included), spec
(Spec), diagnosis (Diagnosis or None for passes), cache_key, cached_from (run id
the result was first computed in, or None), recorded (epoch seconds), plus the
shortcuts kernel, spec_name, outcome, failed_stage, diagnosis_class.

Tables, for direct SQL: ``runs``; ``kernels`` (run_id, kernel_id, kind, file,
data = Kernel JSON); ``results`` (run_id, kernel_id, spec, spec_json, outcome,
failed_stage, flaky, signal, seconds, compiler_seconds, log, error, diagnosis
JSON, diagnosis_class, artifacts_dir, cache_key, cached_from, timeout,
memory_mb, classifier, recorded); ``stages`` (run_id, kernel_id, spec, stage, status,
reason, seconds, command JSON, artifact); ``test_map`` (run_id, kernel_file,
command ('' = no test), source, via, kernels JSON); ``test_results`` (run_id,
command, test_file, test_case ('' = the whole command), outcome, kernel_files
JSON, diagnosis JSON, diagnosis_class, subclass, fingerprint, seconds, reason,
output, log, recorded).
"""

from __future__ import annotations

import dataclasses
import os
import json
import pickle
import re
import sqlite3
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tritriage.model import HINT_MARK, CompileResult, Diagnosis, Kernel, Spec, StageResult, TestMapping, TestResult
from tritriage.errors import UserError
from tritriage.paths import data_dir

SCHEMA_VERSION = 1  # bump with a migration when a table changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    checkout TEXT NOT NULL,
    git_commit TEXT,
    triton_ascend TEXT,
    cann TEXT,
    arch TEXT,
    python TEXT,
    stages_available TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    argv TEXT,
    settings TEXT,
    record TEXT
);
CREATE TABLE IF NOT EXISTS kernels (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kernel_id TEXT NOT NULL,
    kind TEXT,
    file TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, kernel_id)
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kernel_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_json TEXT,
    outcome TEXT NOT NULL,
    failed_stage TEXT,
    flaky INTEGER NOT NULL DEFAULT 0,
    signal INTEGER,
    seconds REAL,
    compiler_seconds REAL,
    log TEXT,
    error TEXT,
    diagnosis TEXT,
    diagnosis_class TEXT,
    artifacts_dir TEXT,
    cache_key TEXT,
    cached_from INTEGER,
    timeout REAL,
    memory_mb INTEGER,
    classifier TEXT,
    recorded REAL NOT NULL,
    PRIMARY KEY (run_id, kernel_id, spec)
);
CREATE TABLE IF NOT EXISTS prepared (
    key TEXT PRIMARY KEY,
    checkout TEXT NOT NULL,
    created REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    run_id INTEGER NOT NULL,
    kernel_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    stage TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    seconds REAL,
    command TEXT,
    artifact TEXT,
    metrics TEXT,
    PRIMARY KEY (run_id, kernel_id, spec, stage)
);
CREATE TABLE IF NOT EXISTS test_map (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kernel_file TEXT NOT NULL,
    command TEXT NOT NULL,
    source TEXT,
    via TEXT,
    kernels TEXT,
    PRIMARY KEY (run_id, kernel_file, command)
);
CREATE TABLE IF NOT EXISTS test_results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    command TEXT NOT NULL,
    test_file TEXT NOT NULL,
    test_case TEXT NOT NULL,
    outcome TEXT NOT NULL,
    kernel_files TEXT,
    diagnosis TEXT,
    diagnosis_class TEXT,
    subclass TEXT,
    fingerprint TEXT,
    seconds REAL,
    reason TEXT,
    output TEXT,
    log TEXT,
    recorded REAL NOT NULL,
    PRIMARY KEY (run_id, command, test_file, test_case)
);
"""

# Outcomes that say something about the compiler's environment of the moment
# rather than about the kernel: never reused from the cache as they are.
_NOT_CACHED_ERRORS = ("compile worker died",)


@dataclass(frozen=True)
class Run:
    id: int
    started: float
    finished: float | None
    checkout: str
    commit: str | None
    triton_ascend: str | None
    cann: str | None
    arch: str | None
    python: str | None
    stages_available: list = field(default_factory=list)
    status: str = "running"
    argv: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    # What happened to the run, counted: interrupted, resumed, workers_lost,
    # compiles_retried (``Store.note``); empty for an undisturbed run.
    record: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StoredResult:
    run_id: int
    result: CompileResult
    spec: Spec
    diagnosis: Diagnosis | None
    cache_key: str | None
    cached_from: int | None
    recorded: float
    classifier: str | None = None  # version of the rules that gave the diagnosis

    @property
    def kernel(self) -> str:
        return self.result.kernel

    @property
    def spec_name(self) -> str:
        return self.result.spec

    @property
    def outcome(self) -> str:
        return self.result.outcome

    @property
    def failed_stage(self) -> str | None:
        return self.result.failed_stage

    @property
    def diagnosis_class(self) -> str | None:
        return self.diagnosis.cls if self.diagnosis else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:150] or "_"


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self.root = path.parent
        self._in_tx = False

    @classmethod
    def open(cls, path: str | Path | None = None) -> "Store":
        """Open (or create) the store.  A damaged file is kept aside, a new
        store started in its place, and ``StoreDamaged`` says so."""
        path = Path(path) if path else data_dir() / "tritriage.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        why = _damage(path)
        conn = None
        try:
            if why is None:
                conn = _connect(path)
        except sqlite3.OperationalError:
            # A read-only data directory still shows its runs (report, repro);
            # a write then fails with a one-line error (cli.main).
            if not (path.exists() and not os.access(path.parent, os.W_OK)):
                raise
            conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True, isolation_level=None)
            conn.row_factory = sqlite3.Row
        except sqlite3.DatabaseError as e:
            if not _is_damage(e):
                raise
            why = str(e)
        if why is not None:
            aside = set_aside(path)
            _connect(path).close()  # the new, empty store
            raise StoreDamaged(path, aside, why)
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs

    def new_run(self, *, checkout: str, commit: str | None = None, triton_ascend: str | None = None,
                cann: str | None = None, arch: str | None = None, python: str | None = None,
                stages_available: Iterable[str] = (), argv: Iterable[str] = (),
                settings: dict | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (started, checkout, git_commit, triton_ascend, cann, arch, python,"
            " stages_available, status, argv, settings) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (time.time(), str(checkout), commit, triton_ascend, cann, arch, python,
             json.dumps(list(stages_available)), "running", json.dumps(list(argv)),
             json.dumps(settings or {}, default=str)),
        )
        return int(cur.lastrowid)

    def note(self, run_id: int, **counts: int) -> None:
        """Add ``counts`` to the run's record (what happened to it: interrupted,
        resumed, workers_lost, compiles_retried); zero counts leave no trace."""
        counts = {k: int(v) for k, v in counts.items() if v}
        if not counts:
            return
        with self.transaction():
            row = self.conn.execute("SELECT record FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return
            record = json.loads(row["record"] or "{}")
            for k, v in counts.items():
                record[k] = int(record.get(k, 0)) + v
            self.conn.execute("UPDATE runs SET record=? WHERE id=?", (json.dumps(record, sort_keys=True), run_id))

    def finish_run(self, run_id: int, status: str = "complete") -> None:
        self.conn.execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

    def mark_running(self, run_id: int, **settings) -> None:
        """Mark a run as being written again (a resumed scan), updating ``settings`` keys."""
        run = self.run(run_id)
        merged = dict(run.settings if run else {}, **settings)
        self.conn.execute("UPDATE runs SET status='running', finished=NULL, settings=? WHERE id=?",
                          (json.dumps(merged, default=str), run_id))

    def run(self, run_id: int) -> Run | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _run(row) if row else None

    def runs(self, checkout: str | None = None) -> list[Run]:
        if checkout is None:
            rows = self.conn.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM runs WHERE checkout=? ORDER BY id DESC",
                                     (str(checkout),)).fetchall()
        return [_run(r) for r in rows]

    def latest_run(self, checkout: str | None = None) -> Run | None:
        runs = self.runs(checkout)
        return runs[0] if runs else None

    # -- kernels

    def add_kernels(self, run_id: int, kernels: Iterable[Kernel]) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO kernels (run_id, kernel_id, kind, file, data) VALUES (?,?,?,?,?)",
                [(run_id, k.id, k.kind, k.file, _json(k)) for k in kernels],
            )

    def kernels(self, run_id: int) -> list[Kernel]:
        rows = self.conn.execute("SELECT data FROM kernels WHERE run_id=? ORDER BY file, kernel_id",
                                 (run_id,)).fetchall()
        return [Kernel.from_dict(json.loads(r["data"])) for r in rows]

    # -- results

    def add_result(self, run_id: int, result: CompileResult, diagnosis: Diagnosis | None,
                   cache_key: str | None, *, spec: Spec | None = None, cached_from: int | None = None,
                   timeout: float | None = None, memory_mb: int | None = None,
                   classifier: str | None = None) -> None:
        """Record one (kernel, spec) result, replacing an earlier one of this run."""
        diag_json = _json(diagnosis) if diagnosis is not None else None
        with self.transaction():
            self.conn.execute("DELETE FROM stages WHERE run_id=? AND kernel_id=? AND spec=?",
                              (run_id, result.kernel, result.spec))
            self.conn.execute(
                "INSERT OR REPLACE INTO results (run_id, kernel_id, spec, spec_json, outcome, failed_stage, flaky,"
                " signal, seconds, compiler_seconds, log, error, diagnosis, diagnosis_class, artifacts_dir,"
                " cache_key, cached_from, timeout, memory_mb, classifier, recorded)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, result.kernel, result.spec, _json(spec) if spec else None, result.outcome,
                 result.failed_stage, int(result.flaky), result.signal, result.seconds,
                 result.compiler_seconds, result.log, result.error, diag_json,
                 diagnosis.cls if diagnosis else None, result.artifacts_dir, cache_key, cached_from,
                 timeout, memory_mb, classifier, time.time()),
            )
            self.conn.executemany(
                "INSERT INTO stages (run_id, kernel_id, spec, stage, position, status, reason, seconds, command,"
                " artifact, metrics) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, result.kernel, result.spec, s.stage, i, s.status, s.reason, s.seconds,
                  json.dumps(list(s.command)), s.artifact, json.dumps(dict(s.metrics)) if s.metrics else None)
                 for i, s in enumerate(result.stages)],
            )

    def results(self, run_id: int, *, hints: bool | None = False) -> list[StoredResult]:
        """A run's results: the verdicts (``hints=False``), the hint searches'
        compiles (``True``, see compile/hints.py) or both (``None``)."""
        where = {False: f" AND spec NOT LIKE '%{HINT_MARK}%'", True: f" AND spec LIKE '%{HINT_MARK}%'",
                 None: ""}[hints]
        rows = self.conn.execute(f"SELECT * FROM results WHERE run_id=?{where} ORDER BY kernel_id, spec",
                                 (run_id,)).fetchall()
        stages = self._stages(run_id)
        return [_stored(r, stages.get((r["kernel_id"], r["spec"]), ())) for r in rows]

    def result(self, run_id: int, kernel_id: str, spec_name: str) -> StoredResult | None:
        row = self.conn.execute("SELECT * FROM results WHERE run_id=? AND kernel_id=? AND spec=?",
                                (run_id, kernel_id, spec_name)).fetchone()
        if row is None:
            return None
        return _stored(row, self._stages(run_id, kernel_id, spec_name).get((kernel_id, spec_name), ()))

    def outcomes(self, run_id: int) -> list[tuple[str, str, str, str | None, bool]]:
        """(kernel id, spec, outcome, failed stage, flaky) of each result: counts without the logs."""
        rows = self.conn.execute("SELECT kernel_id, spec, outcome, failed_stage, flaky FROM results WHERE run_id=?"
                                 f" AND spec NOT LIKE '%{HINT_MARK}%'", (run_id,)).fetchall()
        return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def compile_seconds(self) -> dict[tuple[str, str], float]:
        """(kernel id, spec) -> wall seconds of its latest real compile, any run:
        what scheduling (slowest first) and sharding (balanced) go by."""
        rows = self.conn.execute(
            "SELECT kernel_id, spec, seconds FROM results WHERE cached_from IS NULL AND seconds IS NOT NULL"
            " ORDER BY recorded").fetchall()
        return {(r[0], r[1]): float(r[2]) for r in rows}

    def stage_seconds(self) -> list[tuple[str, str, str, float]]:
        """(kernel id, spec, stage, seconds) of every stage a real compile ran
        to the end (passed or failed; not cut by a timeout), oldest first: what
        the hang policy learns a stage's usual time from."""
        rows = self.conn.execute(
            "SELECT s.kernel_id, s.spec, s.stage, s.seconds FROM stages s JOIN results r"
            " ON r.run_id = s.run_id AND r.kernel_id = s.kernel_id AND r.spec = s.spec"
            " WHERE r.cached_from IS NULL AND r.outcome NOT IN ('timeout', 'crash', 'oom')"
            " AND s.status IN ('passed', 'failed') AND s.seconds IS NOT NULL ORDER BY r.recorded").fetchall()
        return [(r[0], r[1], r[2], float(r[3])) for r in rows]

    def done(self, run_id: int) -> set[tuple[str, str]]:
        rows = self.conn.execute("SELECT kernel_id, spec FROM results WHERE run_id=?", (run_id,)).fetchall()
        return {(r[0], r[1]) for r in rows}

    def cached(self, cache_key: str, *, timeout: float | None = None,
               memory_mb: int | None = None) -> StoredResult | None:
        """The newest result computed under ``cache_key``, if it still holds.

        A timeout or an out-of-memory verdict holds only if it was reached
        with limits at least as generous as the ones asked for now.
        """
        row = self._cache_row(cache_key, timeout, memory_mb)
        if row is None:
            return None
        row = self.conn.execute("SELECT * FROM results WHERE run_id=? AND kernel_id=? AND spec=?",
                                (row["run_id"], row["kernel_id"], row["spec"])).fetchone()
        stages = self._stages(row["run_id"], row["kernel_id"], row["spec"])
        return _stored(row, stages.get((row["kernel_id"], row["spec"]), ()))

    def _cache_row(self, cache_key: str, timeout: float | None, memory_mb: int | None):
        # Copies count too: one reclassified under newer rules is the one to
        # copy next time (the original keeps the rules of its day), or every
        # unchanged re-scan would classify it again.
        rows = self.conn.execute(
            "SELECT run_id, kernel_id, spec, outcome, timeout, memory_mb, classifier, substr(error, 1, 40) AS head"
            " FROM results WHERE cache_key=? ORDER BY recorded DESC LIMIT 5",
            (cache_key,),
        ).fetchall()
        for row in rows:
            if any((row["head"] or "").startswith(p) for p in _NOT_CACHED_ERRORS):
                continue
            if row["outcome"] == "timeout" and timeout is not None and (row["timeout"] or 0) < timeout:
                continue
            if row["outcome"] == "oom" and memory_mb is not None and (row["memory_mb"] or 0) < memory_mb:
                continue
            return row
        return None

    def copy_cached(self, cache_key: str, run_id: int, spec: Spec, *, timeout: float | None = None,
                    memory_mb: int | None = None, classifier: str | None = None) -> tuple[str, str | None] | None:
        """Copy the result ``cached`` would return into ``run_id`` under ``spec``,
        inside SQLite (an unchanged rescan copies hundreds).  Returns its
        (outcome, classifier), or None when there is nothing to reuse."""
        row = self._cache_row(cache_key, timeout, memory_mb)
        if row is None:
            return None
        src = (row["run_id"], row["kernel_id"], row["spec"])
        with self.transaction():
            self.conn.execute("DELETE FROM stages WHERE run_id=? AND kernel_id=? AND spec=?",
                              (run_id, row["kernel_id"], spec.name))
            self.conn.execute(
                "INSERT OR REPLACE INTO results (run_id, kernel_id, spec, spec_json, outcome, failed_stage, flaky,"
                " signal, seconds, compiler_seconds, log, error, diagnosis, diagnosis_class, artifacts_dir,"
                " cache_key, cached_from, timeout, memory_mb, classifier, recorded)"
                " SELECT ?, kernel_id, ?, ?, outcome, failed_stage, flaky, signal, seconds, compiler_seconds, log,"
                " error, diagnosis, diagnosis_class, artifacts_dir, cache_key, COALESCE(cached_from, run_id), ?, ?,"
                " classifier, ?"
                " FROM results WHERE run_id=? AND kernel_id=? AND spec=?",
                (run_id, spec.name, _json(spec), timeout, memory_mb, time.time(), *src))
            self.conn.execute(
                "INSERT INTO stages (run_id, kernel_id, spec, stage, position, status, reason, seconds, command,"
                " artifact, metrics) SELECT ?, kernel_id, ?, stage, position, status, reason, seconds, command,"
                " artifact, metrics"
                " FROM stages WHERE run_id=? AND kernel_id=? AND spec=?",
                (run_id, spec.name, *src))
        return row["outcome"], row["classifier"]

    def _stages(self, run_id: int, kernel_id: str | None = None, spec: str | None = None) -> dict:
        if kernel_id is None:
            rows = self.conn.execute("SELECT * FROM stages WHERE run_id=? ORDER BY position", (run_id,))
        else:
            rows = self.conn.execute(
                "SELECT * FROM stages WHERE run_id=? AND kernel_id=? AND spec=? ORDER BY position",
                (run_id, kernel_id, spec))
        out: dict = {}
        for r in rows:
            out.setdefault((r["kernel_id"], r["spec"]), []).append(StageResult(
                stage=r["stage"], status=r["status"], reason=r["reason"] or "", seconds=r["seconds"] or 0.0,
                command=tuple(json.loads(r["command"] or "[]")), artifact=r["artifact"],
                metrics=json.loads(r["metrics"]) if r["metrics"] else {}))
        return out

    # -- vLLM's own tests

    def set_test_map(self, run_id: int, mappings: Iterable[TestMapping], files: Iterable[str] | None = None) -> None:
        """Record which tests exercise which kernel files, replacing what ``files`` had."""
        mappings = list(mappings)
        files = {m.kernel_file for m in mappings} if files is None else set(files)
        with self.transaction():
            self.conn.executemany("DELETE FROM test_map WHERE run_id=? AND kernel_file=?",
                                  [(run_id, f) for f in sorted(files)])
            self.conn.executemany(
                "INSERT OR REPLACE INTO test_map VALUES (?,?,?,?,?,?)",
                [(run_id, m.kernel_file, m.command or "", m.source, m.via, json.dumps(list(m.kernels)))
                 for m in mappings],
            )

    def test_map(self, run_id: int) -> list[TestMapping]:
        rows = self.conn.execute("SELECT * FROM test_map WHERE run_id=? ORDER BY kernel_file, command",
                                 (run_id,)).fetchall()
        return [TestMapping(kernel_file=r["kernel_file"], command=r["command"] or None, source=r["source"] or "",
                            via=r["via"] or "", kernels=tuple(json.loads(r["kernels"] or "[]"))) for r in rows]

    def add_test_results(self, run_id: int, command: str, results: Iterable[TestResult]) -> None:
        """Record one test command's verdicts, replacing its earlier ones in this run."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM test_results WHERE run_id=? AND command=?", (run_id, command))
            self.conn.executemany(
                "INSERT OR REPLACE INTO test_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, command, r.test_file, r.case, r.outcome, json.dumps(list(r.kernel_files)),
                  r.diagnosis.to_json() if r.diagnosis else None, r.diagnosis.cls if r.diagnosis else None,
                  r.diagnosis.subclass if r.diagnosis else None, r.diagnosis.fingerprint if r.diagnosis else None,
                  r.seconds, r.reason, r.output, r.log, now) for r in results],
            )

    def test_results(self, run_id: int, kernel_file: str | None = None) -> list[TestResult]:
        rows = self.conn.execute("SELECT * FROM test_results WHERE run_id=? ORDER BY test_file, test_case, command",
                                 (run_id,)).fetchall()
        out = []
        for r in rows:
            files = tuple(json.loads(r["kernel_files"] or "[]"))
            if kernel_file is not None and kernel_file not in files:
                continue
            out.append(TestResult(
                command=r["command"], test_file=r["test_file"], case=r["test_case"], outcome=r["outcome"],
                kernel_files=files,
                diagnosis=Diagnosis.from_dict(json.loads(r["diagnosis"])) if r["diagnosis"] else None,
                seconds=r["seconds"] or 0.0, reason=r["reason"] or "", output=r["output"] or "", log=r["log"]))
        return out

    # -- discovery and specs of an unchanged checkout

    def prepared(self, key: str) -> Any:
        """What ``put_prepared`` stored under ``key`` (scan's inventory and specs), or None."""
        row = self.conn.execute("SELECT data FROM prepared WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            # Pickle: rebuilding ~1000 Kernel records from JSON costs half a
            # second, a noticeable part of an unchanged rescan.  The blob is
            # tritriage's own, in the user's own data directory, and the key
            # covers the model's source, so a stale class layout is a miss.
            return pickle.loads(zlib.decompress(row["data"]))
        except Exception:  # noqa: BLE001 - an unreadable entry is a miss
            return None

    def prepared_for(self, checkout: str) -> Any:
        """The checkout's latest ``put_prepared`` data, whatever its key (or None):
        what a re-scan after an edit reuses kernel by kernel."""
        row = self.conn.execute("SELECT key FROM prepared WHERE checkout=? ORDER BY created DESC LIMIT 1",
                                (str(checkout),)).fetchone()
        return self.prepared(row[0]) if row else None

    def put_prepared(self, key: str, checkout: str, data: Any) -> None:
        blob = zlib.compress(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL), 1)
        with self.transaction():
            # One entry per checkout: only its latest state can be unchanged.
            self.conn.execute("DELETE FROM prepared WHERE checkout=?", (str(checkout),))
            self.conn.execute("INSERT OR REPLACE INTO prepared VALUES (?,?,?,?)",
                              (key, str(checkout), time.time(), blob))

    @contextmanager
    def transaction(self, keep: bool = False):
        """Group many ``add_result`` calls into one commit (cache copies).
        ``keep``: commit what was written even when the block is interrupted
        (a scan's results are each valid on their own)."""
        if self._in_tx:
            yield
            return
        self.conn.execute("BEGIN")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self.conn.execute("COMMIT" if keep else "ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- artifacts

    def artifacts_dir(self, run_id: int, kernel_id: str, spec_name: str) -> Path:
        return self.root / "runs" / str(run_id) / _safe(kernel_id) / _safe(spec_name)


def record_text(record: dict) -> str:
    """A run's record in words ("interrupted 1 time, resumed 1 time; 3 compile
    workers lost and replaced, 3 compiles retried"), "" when nothing happened."""
    def times(n: int, what: str) -> str:
        return f"{what} {n} time{'s' if n != 1 else ''}"

    parts = []
    if record.get("interrupted"):
        parts.append(times(record["interrupted"], "interrupted"))
    if record.get("resumed"):
        parts.append(times(record["resumed"], "resumed"))
    if record.get("workers_lost"):
        n = record["workers_lost"]
        parts.append(f"{n} compile worker{'s' if n != 1 else ''} lost and replaced")
    if record.get("compiles_retried"):
        n = record["compiles_retried"]
        parts.append(f"{n} compile{'s' if n != 1 else ''} retried on a fresh worker")
    return ", ".join(parts)


# --------------------------------------------------------------------------
# a damaged store, and one writer at a time


class StoreDamaged(UserError):
    """The store file was damaged: it has been kept aside and a new one started."""

    def __init__(self, path: Path, aside: Path, why: str):
        super().__init__(
            f"the store {path} was damaged ({why}): kept it as {aside} and started a new, empty store; "
            f"run the command again (to salvage old runs: sqlite3 {aside} .recover)")
        self.path, self.aside = path, aside


_DAMAGE = ("not a database", "malformed", "file is encrypted", "database corrupt")


def _is_damage(e: BaseException) -> bool:
    return isinstance(e, sqlite3.DatabaseError) and any(d in str(e).lower() for d in _DAMAGE)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # One commit per result; NORMAL keeps it durable across a killed
        # process (not a power cut), and fast.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        _add_missing_columns(conn)
        conn.execute("CREATE INDEX IF NOT EXISTS results_by_key ON results(cache_key, recorded)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        conn.close()
        raise
    return conn


def _damage(path: Path) -> str | None:
    """Why the file at ``path`` is not a whole SQLite database, or None.

    SQLite opens a truncated file without complaint and fails later, on
    whichever page is missing, in the middle of a scan; the header says how
    long the file should be, so check that first (it costs one read)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return "not a SQLite database"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    # The page count is only meaningful while the change counter matches
    # the version-valid-for number (SQLite's own rule).
    if pages and head[24:28] == head[92:96] and size < pages * page:
        return f"truncated: {size} of {pages * page} bytes"
    return None


def set_aside(path: Path) -> Path:
    """Rename a damaged store (and its journal) out of the way; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            if suffix == "-wal":
                side.rename(aside.with_name(aside.name + suffix))
            else:
                side.unlink()  # shared-memory index: rebuilt from the file, worthless alone
    return aside


def damaged_message(e: BaseException, path: Path | None = None) -> str | None:
    """For an error that shows the store damaged mid-command: keep the file
    aside, start a new one and say so; None for any other error."""
    if isinstance(e, StoreDamaged):
        return str(e)
    if not _is_damage(e):
        return None
    path = Path(path) if path else data_dir() / "tritriage.db"
    if not path.exists():
        return None
    try:
        aside = set_aside(path)
        _connect(path).close()
    except (OSError, sqlite3.Error) as why:
        return (f"the store {path} is damaged ({e}) and could not be moved aside ({why}): move it away "
                "yourself and run the command again")
    return str(StoreDamaged(path, aside, str(e)))


@contextmanager
def writer_lock(root: Path | None = None, what: str = "scan"):
    """Hold the data directory's writer lock for a scan or rerun, or raise a
    ``UserError`` naming the process that holds it.

    Two scans writing one store would each resume or copy the other's half
    finished run; the second is refused at once instead.  An flock dies with
    its process, so a killed scan never leaves the lock behind."""
    import fcntl

    root = Path(root) if root else data_dir()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another tritriage process"
            raise UserError(f"{holder} is writing to {root}: wait for it to finish, or give this {what} "
                            f"its own data directory with TRITRIAGE_HOME=DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`tritriage {what}` (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})".encode(), 0)
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _plain(value: Any) -> Any:
    # model.Record.to_json checks typing.Mapping on every value, which is slow
    # for the thousands of records an unchanged rescan writes.
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _json(record: Any) -> str:
    """Same JSON as ``record.to_json()``, faster."""
    return json.dumps(_plain(record), sort_keys=True)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a store written by an earlier tritriage up to the current tables
    (columns are only ever added)."""
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \(\n(.*?)\n\);", _SCHEMA, re.S):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for line in body.strip().splitlines():
            line = line.strip().rstrip(",")
            name = line.split()[0]
            if name in have or name in ("PRIMARY", "UNIQUE") or "PRIMARY KEY" in line or \
                    ("NOT NULL" in line and "DEFAULT" not in line):
                continue
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {line}")


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"], started=row["started"], finished=row["finished"], checkout=row["checkout"],
        commit=row["git_commit"], triton_ascend=row["triton_ascend"], cann=row["cann"], arch=row["arch"],
        python=row["python"], stages_available=json.loads(row["stages_available"] or "[]"),
        status=row["status"], argv=json.loads(row["argv"] or "[]"), settings=json.loads(row["settings"] or "{}"),
        record=json.loads(row["record"] or "{}") if "record" in row.keys() else {},
    )


def _stored(row: sqlite3.Row, stages: Any) -> StoredResult:
    result = CompileResult(
        kernel=row["kernel_id"], spec=row["spec"], outcome=row["outcome"], stages=tuple(stages),
        log=row["log"] or "", error=row["error"] or "", seconds=row["seconds"] or 0.0,
        compiler_seconds=row["compiler_seconds"] or 0.0, signal=row["signal"], flaky=bool(row["flaky"]),
        artifacts_dir=row["artifacts_dir"],
    )
    spec = Spec.from_dict(json.loads(row["spec_json"])) if row["spec_json"] else Spec(kernel=row["kernel_id"],
                                                                                    name=row["spec"])
    diagnosis = Diagnosis.from_dict(json.loads(row["diagnosis"])) if row["diagnosis"] else None
    return StoredResult(run_id=row["run_id"], result=result, spec=spec, diagnosis=diagnosis,
                        cache_key=row["cache_key"], cached_from=row["cached_from"], recorded=row["recorded"],
                        classifier=row["classifier"])

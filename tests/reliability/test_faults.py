"""Faults on a real scan: Ctrl-C, workers killed from outside, two scans on one
data directory, a damaged store, a read-only or full disk.

Each test checks what a user would: the final verdicts equal an undisturbed
scan's, nothing finished is compiled twice, the error is one line, the last
complete run is intact.  The checkout is the engine fixture's kernels, copied
a few times so that a scan lasts long enough to be interrupted in the middle.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tritriage.compile.scan import NullProgress, run_scan
from tritriage.model import Spec
from tritriage.store import Store
from testkit import (default_sigint, env_for, fixture_specs, real_adapter, stored_verdicts,  # noqa: E402
                     worker_pids)


def verdicts(home: Path, run_id: int | None = None) -> dict:
    """(kernel, spec) -> what the report shows of it, for the latest run."""
    return stored_verdicts(home, run_id)[2]

FIXTURES = Path(__file__).parents[1] / "fixtures"
ENGINE = FIXTURES / "engine" / "kernels"
COPIES = 8  # 3 passing kernels a copy, plus broken.py's two failures




@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    pkg = root / "kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(ENGINE / "broken.py", pkg / "broken.py")
    for i in range(COPIES):
        shutil.copy(ENGINE / "elementwise.py", pkg / f"elementwise{i}.py")
    return root


def scan_cmd(checkout: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tritriage", "scan", str(checkout), "-q", "-j", "2", *extra]


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tritriage: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def undisturbed(checkout, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("undisturbed")
    t0 = time.monotonic()
    r = subprocess.run(scan_cmd(checkout), env=env_for(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = verdicts(home)
    assert len(got) == 3 * COPIES + 2
    SCAN_SECONDS.append(time.monotonic() - t0)
    return got


SCAN_SECONDS: list = []  # how long the undisturbed scan took: where "random moments" fall


# --------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_at_random_moments_then_scan_again_equals_an_undisturbed_scan(checkout, undisturbed, tmp_path):
    seed = int(os.environ.get("TRITRIAGE_FAULT_SEED", time.time()))
    rng = random.Random(seed)
    home = tmp_path / "home"
    env = env_for(home)
    kept: dict = {}  # (run, kernel, spec) -> recorded time, of every result stored before an interrupt
    interrupts = 0
    for _ in range(3):
        proc = subprocess.Popen(scan_cmd(checkout), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=default_sigint)
        time.sleep(rng.uniform(0.05, SCAN_SECONDS[0]))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        # -SIGINT: the signal came before the interpreter set up its handler
        # (its first tens of milliseconds): killed before doing anything.
        assert proc.returncode in (0, 130, -signal.SIGINT), (seed, err)
        assert "Traceback" not in err, (seed, err)
        if proc.returncode == 0:
            break  # finished before the signal came
        interrupts += 1
        if (home / "tritriage.db").exists():
            with Store.open(home / "tritriage.db") as store:
                for run in store.runs():
                    assert run.status in ("interrupted", "complete"), (seed, run.status)
                    for r in store.results(run.id):
                        kept.setdefault((run.id, r.kernel, r.spec_name), r.recorded)
    final = subprocess.run(scan_cmd(checkout), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, (seed, final.stderr)
    assert verdicts(home) == undisturbed, f"seed {seed}"
    with Store.open(home / "tritriage.db") as store:
        run = store.latest_run()
        assert run.status == "complete"
        # A result finished before an interrupt is never compiled again: the
        # resumed run holds the row written then.
        now = {(run.id, r.kernel, r.spec_name): r.recorded for r in store.results(run.id)}
        mine = {k: t for k, t in kept.items() if k[0] == run.id}
        redone = [k for k, t in mine.items() if now.get(k) != t]
        assert redone == [], f"seed {seed}: compiled twice: {redone}"
        if mine:
            assert run.record.get("interrupted", 0) >= 1 and run.record.get("resumed", 0) >= 1, run.record
    print(f"seed {seed}: {interrupts} interrupts, {len(kept)} results kept across them")


# --------------------------------------------------------------------------
# workers killed from outside


class KillingProgress(NullProgress):
    """Kills the compile worker shortly after the chosen jobs were sent to it."""

    def __init__(self, at: set[int]):
        super().__init__()
        self.at, self.n, self.kills = at, 0, 0

    def __call__(self, total):
        return self

    def started(self, job):
        self.n += 1
        if self.n in self.at:
            threading.Timer(0.02, self._kill).start()

    def _kill(self):
        for pid in worker_pids(os.getpid()):
            os.kill(pid, signal.SIGKILL)
            self.kills += 1

    def add(self, result, job=None, advance=1):
        pass

    def stop(self):
        pass


def test_workers_killed_mid_run_are_replaced_and_their_compiles_retried(checkout, undisturbed, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    # One worker: each kill lands on a compile in flight (or the next one
    # sent), never on the retry of an earlier kill's compile.
    killer = KillingProgress(at={4, 10, 16})
    summary = run_scan(checkout, jobs=1, progress_factory=killer)
    assert killer.kills == 3, "the test killed three workers"
    assert verdicts(tmp_path / "home") == undisturbed
    with Store.open(tmp_path / "home" / "tritriage.db") as store:
        run = store.run(summary.run_id)
        assert not [r for r in store.results(run.id) if "worker died" in r.result.error]
    assert run.status == "complete"
    assert run.record == {"workers_lost": 3, "compiles_retried": 3}


def test_report_says_how_many_workers_were_lost(tmp_path, monkeypatch, capsys):
    from tritriage import cli

    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path))
    with Store.open() as store:
        run = store.new_run(checkout="/src/vllm", stages_available=["frontend"])
        store.note(run, workers_lost=2, compiles_retried=2)
        store.note(run, interrupted=1)
        store.note(run, resumed=1, workers_lost=1, compiles_retried=1)
        store.finish_run(run)
    with pytest.raises(SystemExit):
        cli.main(["report", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"]["record"] == {"compiles_retried": 3, "interrupted": 1, "resumed": 1, "workers_lost": 3}
    with pytest.raises(SystemExit):
        cli.main(["report", "--md"])
    assert "3 compile workers lost and replaced" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["report"])
    out = " ".join(capsys.readouterr().out.split())
    assert "interrupted 1 time, resumed 1 time, 3 compile workers lost and replaced" in out


# --------------------------------------------------------------------------
# two scans on one data directory


def test_a_second_scan_on_the_same_data_directory_is_refused_and_the_store_stays_whole(
        checkout, undisturbed, tmp_path):
    home = tmp_path / "home"
    env = env_for(home)
    first = subprocess.Popen(scan_cmd(checkout), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = home / "writer.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().strip()):
        assert first.poll() is None and time.monotonic() < deadline, "the first scan never took the lock"
        time.sleep(0.02)
    second = subprocess.run(scan_cmd(checkout), env=env, capture_output=True, text=True, timeout=120)
    rerun = subprocess.run([sys.executable, "-m", "tritriage", "rerun", "--failed"], env=env,
                           capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    line = one_error_line(second.stderr)
    assert f"(pid {first.pid}" in line and str(home) in line and "TRITRIAGE_HOME" in line
    assert rerun.returncode == 2 and "is writing to" in one_error_line(rerun.stderr)
    assert verdicts(home) == undisturbed
    with Store.open(home / "tritriage.db") as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(store.runs()) == 1, "the refused scan started no run"
    # The lock went with the first scan: a scan now runs (all from cache).
    again = subprocess.run(scan_cmd(checkout), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


# --------------------------------------------------------------------------
# a damaged store


def store_with_runs(home: Path, runs: int = 3, results: int = 200) -> None:
    from tritriage.model import CompileResult

    with Store.open(home / "tritriage.db") as store:
        for _ in range(runs):
            run = store.new_run(checkout="/src/vllm", stages_available=["frontend"])
            for i in range(results):
                store.add_result(run, CompileResult(kernel=f"vllm.k{i}", spec="default", outcome="failed",
                                                    log="x" * 2000, error="error: bad"), None, f"key{i}")
            store.finish_run(run)


def damage(kind: str, db: Path) -> None:
    if kind == "not-a-database":
        db.write_bytes(b"this is a shopping list, not a database\n" * 100)
    elif kind == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    elif kind == "garbage-pages":
        data = bytearray(db.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        for p in range(1, len(data) // page):  # every page but the header's
            data[p * page:(p + 1) * page] = os.urandom(page)
        db.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["not-a-database", "truncated", "garbage-pages"])
@pytest.mark.parametrize("command", [["report"], ["scan", "{checkout}", "-q"]])
def test_a_damaged_store_is_kept_aside_with_one_line_saying_so(kind, command, tmp_path, checkout):
    home = tmp_path / "home"
    store_with_runs(home)
    db = home / "tritriage.db"
    damage(kind, db)
    original = db.read_bytes()
    argv = [sys.executable, "-m", "tritriage", *[a.replace("{checkout}", str(checkout)) for a in command]]
    r = subprocess.run(argv, env=env_for(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "damaged" in line and "kept it as" in line and "run the command again" in line
    aside = [p for p in home.iterdir() if p.name.startswith("tritriage.db.damaged-") and not p.name.endswith("-wal")]
    assert len(aside) == 1 and str(aside[0]) in line
    assert aside[0].read_bytes() == original, "the damaged file is kept as it was"
    # A new store took its place: the next command works.
    again = subprocess.run([sys.executable, "-m", "tritriage", "report"], env=env_for(home), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 2 and "no scan recorded yet" in one_error_line(again.stderr)


# --------------------------------------------------------------------------
# a read-only or full disk


def _can_mount() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


needs_mounts = pytest.mark.skipif(not _can_mount(), reason="needs root and `unshare -m` to mount a small disk")


def in_namespace(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-m", "sh", "-ec", script], env=env, capture_output=True, text=True,
                          timeout=600)


@needs_mounts
def test_a_read_only_data_directory_is_one_line_and_the_last_run_stays(checkout, undisturbed, tmp_path):
    home = tmp_path / "home"
    env = env_for(home)
    assert subprocess.run(scan_cmd(checkout), env=env, capture_output=True, timeout=300).returncode == 0
    py = sys.executable
    r = in_namespace(f"""
        mount --bind {home} {home} && mount -o remount,bind,ro {home}
        set +e
        {py} -m tritriage scan {checkout} -q -j 2 --no-cache 2> {tmp_path}/scan.err; echo $? > {tmp_path}/scan.rc
        {py} -m tritriage rerun --failed -q 2> {tmp_path}/rerun.err; echo $? > {tmp_path}/rerun.rc
        {py} -m tritriage report --json > {tmp_path}/report.json 2> {tmp_path}/report.err
    """, env)
    assert r.returncode == 0, r.stderr
    for what in ("scan", "rerun"):
        assert (tmp_path / f"{what}.rc").read_text().strip() == "2"
        line = one_error_line((tmp_path / f"{what}.err").read_text())
        assert "read-only" in line or "not writable" in line, line
        assert "TRITRIAGE_HOME" in line
    # Reading needs no write: the report still shows the last run.
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["run"]["status"] == "complete" and doc["totals"]["pairs"] == len(undisturbed)
    assert verdicts(home) == undisturbed


@needs_mounts
def test_a_full_disk_is_one_line_and_the_last_complete_run_stays(checkout, undisturbed, tmp_path):
    home = tmp_path / "home"
    env = env_for(home)
    assert subprocess.run(scan_cmd(checkout), env=env, capture_output=True, timeout=300).returncode == 0
    saved = tmp_path / "saved"
    py = sys.executable
    # The data directory moves onto a small disk that a filler file then fills;
    # the scan that follows compiles everything again (--no-cache) and so must write.
    r = in_namespace(f"""
        cp -a {home} {saved}
        mount -t tmpfs -o size=64m tmpfs {home}
        cp -a {saved}/. {home}/
        dd if=/dev/zero of={home}/filler bs=64k 2>/dev/null || true
        set +e
        {py} -m tritriage scan {checkout} -q -j 2 --no-cache 2> {tmp_path}/scan.err; echo $? > {tmp_path}/scan.rc
        rm -f {home}/filler
        rm -rf {saved} && mkdir {saved} && cp -a {home}/tritriage.db* {saved}/
    """, env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "scan.rc").read_text().strip() == "2", (tmp_path / "scan.err").read_text()
    line = one_error_line((tmp_path / "scan.err").read_text())
    assert "full" in line, line
    # The store as the full disk left it: the complete run is whole.
    with Store.open(saved / "tritriage.db") as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        complete = [r for r in store.runs() if r.status == "complete"]
        assert complete
    assert verdicts(saved, complete[-1].id) == undisturbed

"""Benchmark: what survives faults on a real scan of vLLM 0.8.5.  Prints, never asserts.

    .venv/bin/python bench/bench_faults.py [--vllm PATH] [-j N] [--kills 3] [--seed S] [--keep DIR]

1. An undisturbed ``tritriage scan`` of vLLM 0.8.5 in a throwaway data
   directory: the reference verdicts and the time T it takes.
2. In a second data directory: a scan interrupted with SIGINT at a random
   moment, then the same scan again (it resumes) while compile workers are
   SIGKILLed from outside ``--kills`` times and a concurrent ``tritriage scan``
   is started on the same data directory.
3. The figures: verdicts equal or not (and which differ), results finished
   before the interrupt that were compiled again, workers killed against the
   run record's workers lost and compiles retried, what the concurrent scan
   said, the store's integrity check.
4. A damaged copy of the store (truncated; then not a database): what
   ``tritriage report`` says and whether the file is kept aside.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tritriage.store import Store, record_text  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from testkit import default_sigint, worker_pids  # noqa: E402 - shared with tests/reliability/test_faults.py
from testkit import env_for as _env_for, stored_verdicts as verdicts  # noqa: E402


def env_for(home: Path) -> dict:
    return _env_for(home, cann=True)  # a bench measures the machine as it is


def vllm_085() -> Path:
    from conftest import vllm_sources

    return vllm_sources("0.8.5")


def scan_argv(checkout: Path, jobs: int | None) -> list[str]:
    # No hint search: the faults are to land while verdicts are being made,
    # not in the search that follows them.
    return [sys.executable, "-m", "tritriage", "scan", str(checkout), "-q", "--hints", "0"] + (
        ["-j", str(jobs)] if jobs else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm", type=Path, help="vLLM 0.8.5 sources (default: the tests' cached download)")
    ap.add_argument("-j", "--jobs", type=int, default=None)
    ap.add_argument("--kills", type=int, default=3, help="workers to SIGKILL during the resumed scan")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", type=Path, help="keep the data directories here instead of a throwaway one")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    checkout = args.vllm or vllm_085()
    base = args.keep or Path(tempfile.mkdtemp(prefix="tritriage-bench-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    calm_home, home = base / "undisturbed", base / "faults"
    for h in (calm_home, home):
        shutil.rmtree(h, ignore_errors=True)
    print(f"vLLM sources: {checkout}; data directories under {base}; seed {seed}")

    # 1. undisturbed
    t0 = time.monotonic()
    r = subprocess.run(scan_argv(checkout, args.jobs), env=env_for(calm_home), capture_output=True, text=True)
    calm_seconds = time.monotonic() - t0
    print(f"undisturbed scan: exit {r.returncode} in {calm_seconds:.1f} s: {r.stdout.strip().splitlines()[-1:]}")
    if r.returncode != 0:
        print(r.stderr.strip()[-2000:])
        return
    _, _, expected = verdicts(calm_home)

    # 2a. interrupted at a random moment
    env = env_for(home)
    at = rng.uniform(0.15, 0.6) * calm_seconds
    proc = subprocess.Popen(scan_argv(checkout, args.jobs), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    time.sleep(at)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    kept: dict = {}
    if (home / "tritriage.db").exists():
        with Store.open(home / "tritriage.db") as store:
            run = store.latest_run()
            if run is not None:
                kept = {(r.kernel, r.spec_name): r.recorded for r in store.results(run.id)}
    print(f"first scan: SIGINT after {at:.1f} s, exit {proc.returncode}"
          f"{' (traceback!)' if 'Traceback' in err else ''}; {len(kept)} results stored before it")

    # 2b. resumed, with workers killed and a concurrent scan
    t0 = time.monotonic()
    proc = subprocess.Popen(scan_argv(checkout, args.jobs), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    killed: list = []
    concurrent: dict = {}
    remaining = max(1.0, calm_seconds - at)
    kill_times = sorted(rng.uniform(0.2, 0.8) * remaining for _ in range(args.kills))

    def killer():
        for t in kill_times:
            while time.monotonic() - t0 < t and proc.poll() is None:
                time.sleep(0.05)
            pids = worker_pids(proc.pid)
            if proc.poll() is not None or not pids:
                continue
            victim = rng.choice(pids)
            try:
                os.kill(victim, signal.SIGKILL)
                killed.append((round(time.monotonic() - t0, 1), victim))
            except ProcessLookupError:
                pass

    def second_scan():
        time.sleep(0.3 * remaining)
        c = subprocess.run(scan_argv(checkout, args.jobs), env=env, capture_output=True, text=True)
        concurrent.update(rc=c.returncode, stderr=c.stderr.strip(), running=proc.poll() is None)

    threads = [threading.Thread(target=killer), threading.Thread(target=second_scan)]
    for t in threads:
        t.start()
    out, err = proc.communicate()
    for t in threads:
        t.join()
    resumed_seconds = time.monotonic() - t0
    print(f"resumed scan: exit {proc.returncode} in {resumed_seconds:.1f} s: {out.strip().splitlines()[-2:]}")
    if err.strip():
        print(f"  its stderr: {err.strip()[-500:]}")
    print(f"workers SIGKILLed from outside: {len(killed)} at {[t for t, _ in killed]} s")
    print(f"concurrent scan (started while the first was {'running' if concurrent.get('running') else 'done'}): "
          f"exit {concurrent.get('rc')}: {concurrent.get('stderr', '')[:300]}")

    # 3. what survived
    run_id, status, got = verdicts(home)
    with Store.open(home / "tritriage.db") as store:
        run = store.run(run_id)
        integrity = store.conn.execute("PRAGMA integrity_check").fetchone()[0]
        now = {(r.kernel, r.spec_name): r.recorded for r in store.results(run_id)}
        runs = len(store.runs())
    redone = [k for k, t in kept.items() if now.get(k) != t]
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    print(f"final run #{run_id} ({status}), {runs} run(s) in the store, integrity_check: {integrity}")
    print(f"run record: {run.record} -> {record_text(run.record) or 'nothing happened'}")
    print(f"verdicts: {len(got)} pairs, {len(expected)} in the undisturbed scan; "
          f"equal: {got == expected}; differing: {len(differ)}")
    for k in differ[:10]:
        print(f"  {k[0]} [{k[1]}]: undisturbed {expected.get(k)} / faults {got.get(k)}")
    print(f"finished before the interrupt and compiled again: {len(redone)} of {len(kept)}")

    # 4. damaged store
    for kind in ("truncated", "not a database"):
        dmg = base / f"damaged-{kind.replace(' ', '-')}"
        shutil.rmtree(dmg, ignore_errors=True)
        dmg.mkdir()
        shutil.copy(home / "tritriage.db", dmg / "tritriage.db")
        data = (dmg / "tritriage.db").read_bytes()
        (dmg / "tritriage.db").write_bytes(data[: len(data) // 2] if kind == "truncated" else b"garbage\n" * 1000)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "tritriage", "report"], env=env_for(dmg), capture_output=True,
                           text=True)
        aside = [p.name for p in dmg.iterdir() if ".damaged-" in p.name]
        print(f"damaged store ({kind}, {len(data) >> 20} MiB): exit {r.returncode} in {time.monotonic() - t0:.1f} s, "
              f"{len(r.stderr.strip().splitlines())} line(s) on stderr, kept aside as {aside}: "
              f"{r.stderr.strip()[:200]}")


if __name__ == "__main__":
    main()

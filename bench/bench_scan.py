"""Benchmark: triage every entry kernel of vLLM 0.33.0, then measure the engine.

    .venv/bin/python bench/bench_scan.py [--vllm PATH] [--jobs N] [-n 200] [--skip-vllm]

Prints, for the vLLM scan: entry kernels, how many had specs, kernel/spec pairs
compiled, total wall time, the compiler's own time summed over compiles, the
overhead per compile beyond the compiler's own work, and the wall time of a
second scan with nothing changed (everything from the cache).  Then the
warm-worker overhead on a trivial kernel (N compiles) against a fresh Python
process per compile.

Results go to a throwaway TRITRIAGE_HOME unless --home is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tritriage.discover.inventory import discover  # noqa: E402
from tritriage.compile.pool import PACKAGE_PARENT, Job, Settings, WorkerPool  # noqa: E402
from tritriage.compile.environment import check_environment  # noqa: E402
from tritriage.model import PASSES, Spec  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "engine"


def vllm_033() -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import vllm_sources  # the tests' cached download of vLLM's sources
    return vllm_sources("0.33.0")


def trivial_job(i: int) -> Job:
    inv = discover(FIXTURE)
    k = next(k for k in inv.kernels if k.name == "relu_kernel")
    spec = Spec(kernel=k.id, signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32"}, constexprs={"BLOCK": 128})
    return Job(kernel=k, spec=spec, checkout=inv.root, id=i)


def bench_vllm(root: Path, jobs: int | None, store_path: Path) -> None:
    from tritriage.compile.scan import run_scan
    from tritriage.store import Store

    print(f"== vLLM 0.33.0 at {root}")
    with Store.open(store_path) as store:
        t0 = time.time()
        first = run_scan(root, store=store, jobs=jobs)
        wall = time.time() - t0
        results = store.results(first.run_id)
        n = len(first.compiled)
        print(f"entry kernels: {first.entries}, with a spec: {first.entries - len(first.no_spec)}, "
              f"kernel/spec pairs: {first.pairs}")
        print(first.line())
        print(f"kernels compiled: {n}")
        print(f"total wall time: {wall:.1f} s (jobs={jobs or os.cpu_count()}), of which discovery and "
              f"specs: {first.prepare_seconds:.1f} s")
        print(f"compiler's own time, summed: {first.compiler_seconds:.1f} s")
        print_stage_times([r.result for r in results if (r.kernel, r.spec_name) in set(first.compiled)])
        slots = jobs or os.cpu_count() or 1
        hangs = [r.result for r in results if r.outcome == "timeout"]
        hang_s = sum(r.seconds for r in hangs)
        busy = first.compiler_seconds - sum(r.compiler_seconds for r in hangs)
        print(f"efficiency (wall x {slots} / compiler-stage seconds, hangs apart): "
              f"{(wall - hang_s / slots) * slots / max(busy, 1e-9):.2f}; hangs: {len(hangs)} costing "
              f"{hang_s:.0f} worker-seconds ({first.hangs_suspected} suspected, {first.hangs_confirmed} retried)")
        if n:
            per = [r.result.seconds - r.result.compiler_seconds for r in results
                   if (r.kernel, r.spec_name) in set(first.compiled)]
            print(f"overhead per compile beyond the compiler (worker side: fork, kernel load, spec, "
                  f"result): median {statistics.median(per) * 1000:.0f} ms, mean {statistics.mean(per) * 1000:.0f} ms")
            slots = (jobs or os.cpu_count() or 1)
            print(f"overhead per compile, end to end (wall x jobs - compiler time) / compiles, discovery, specs "
                  f"and worker start-up included: {(wall * slots - first.compiler_seconds) / n * 1000:.0f} ms")
        t0 = time.time()
        second = run_scan(root, store=store, jobs=jobs)
        print(f"second scan, nothing changed: {time.time() - t0:.2f} s "
              f"({len(second.compiled)} compiled, {second.cached} from cache)")


def print_stage_times(results) -> None:
    """Seconds per stage over the compiles that ran it: where the time goes."""
    from tritriage.model import STAGES
    per: dict[str, list[float]] = {}
    for r in results:
        for st in r.stages:
            if st.status in ("passed", "failed") and st.seconds:
                per.setdefault(st.stage, []).append(st.seconds)
    print("time per stage (compiles that ran it): " + "; ".join(
        f"{s} n={len(per[s])} sum {sum(per[s]):.1f} s, median {statistics.median(per[s]) * 1000:.0f} ms, "
        f"max {max(per[s]):.2f} s" for s in STAGES if per.get(s)))


def bench_warm(n: int, python: str) -> None:
    print(f"== trivial kernel, {n} compiles on one warm worker ({python})")
    env = check_environment(python)
    settings = Settings(python=python, binary=dict(env.binary))
    jobs = [trivial_job(i) for i in range(n)]
    with WorkerPool(settings, 1) as pool:
        pool.warm_up()
        t0 = time.time()
        results = [r for _, r in pool.run(jobs)]
        wall = time.time() - t0
    assert all(r.outcome in PASSES for r in results), {r.outcome for r in results}
    compiler = sum(r.compiler_seconds for r in results)
    print(f"wall per compile: {wall / n * 1000:.1f} ms, compiler per compile: {compiler / n * 1000:.1f} ms, "
          f"overhead per compile: {(wall - compiler) / n * 1000:.1f} ms")

    k = max(5, n // 20)
    print(f"== the same kernel, {k} compiles with a fresh Python process each")
    job = json.dumps({"op": "compile", "job": jobs[0].wire(settings)})
    walls, compilers = [], []
    envv = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    for _ in range(k):
        t0 = time.time()
        proc = subprocess.run([python, "-u", "-m", "tritriage.sandbox.worker"], input=job + "\n",
                              capture_output=True, text=True, env=envv)
        walls.append(time.time() - t0)
        result = json.loads(proc.stdout.splitlines()[-1])["result"]
        compilers.append(result["compiler_seconds"])
    wall = statistics.mean(walls)
    print(f"wall per compile: {wall * 1000:.0f} ms, overhead per compile: "
          f"{(wall - statistics.mean(compilers)) * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", type=Path, help="vLLM 0.33.0 sources (default: the tests' cached copy)")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("-n", type=int, default=200, help="compiles of the trivial kernel")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--home", type=Path, help="TRITRIAGE_HOME to use (default: a temporary one)")
    ap.add_argument("--skip-vllm", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tritriage-bench-") as tmp:
        home = args.home or Path(tmp)
        os.environ["TRITRIAGE_HOME"] = str(home)
        if not args.skip_vllm:
            bench_vllm(args.vllm or vllm_033(), args.jobs, home / "tritriage.db")
        bench_warm(args.n, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())

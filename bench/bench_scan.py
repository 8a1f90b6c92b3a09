"""Benchmark: cold scans of vLLM 0.8.5 and 0.33.0, re-scans, then the engine.

    .venv/bin/python bench/bench_scan.py [--versions 0.8.5 0.33.0] [--jobs N] [-n 200] [--skip-warm]

For each vLLM release (a copy of the tests' cached sources, a throwaway
TRITRIAGE_HOME, verdicts only): entry kernels and pairs, the cold scan's wall
time and the orchestrating process's own CPU, seconds per stage, the hangs
(how many, where, what they cost in wall time), the efficiency figure wall x
workers / compiler-stage seconds (hangs apart, and with them), the per-compile
overhead; then an unchanged re-scan as a user runs it (`tritriage scan -q`, end
to end), and a re-scan after editing the kernels of one file (what it
recompiled, what it reused).  Then the warm-worker overhead on a trivial kernel
(N compiles) against a fresh Python process per compile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def vllm_sources(version: str) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import vllm_sources as cached  # the tests' cached download of vLLM's sources
    return cached(version)


def trivial_job(i: int) -> Job:
    inv = discover(FIXTURE)
    k = next(k for k in inv.kernels if k.name == "relu_kernel")
    spec = Spec(kernel=k.id, signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32"}, constexprs={"BLOCK": 128})
    return Job(kernel=k, spec=spec, checkout=inv.root, id=i)


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def bench_vllm(version: str, src: Path, jobs: int | None, home: Path) -> None:
    """A cold scan of a copy of vLLM ``version`` (verdicts only: --hints 0), an
    unchanged re-scan as a user runs it, then one kernel file edited."""
    from tritriage.compile.scan import run_scan
    from tritriage.model import COMPILE_STAGES
    from tritriage.store import Store

    root = home / f"vllm-{version}"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__"))
    slots = jobs or os.cpu_count() or 1
    print(f"== vLLM {version} (a copy at {root}), {slots} compile workers")
    with Store.open(home / "tritriage.db") as store:
        cpu0, t0 = _cpu_self(), time.time()
        first = run_scan(root, store=store, jobs=jobs)
        wall, cpu = time.time() - t0, _cpu_self() - cpu0
        results = [r for r in store.results(first.run_id) if (r.kernel, r.spec_name) in set(first.compiled)]
        print(f"entry kernels: {first.entries} ({len(first.not_used)} not used on Ascend, not compiled), "
              f"with a spec: {first.entries - len(first.no_spec) - len(first.not_used)}, "
              f"kernel/spec pairs: {first.pairs}")
        print(first.line())
        print(f"cold scan wall time: {wall:.1f} s; discovery and spec inference {first.prepare_seconds:.1f} s "
              f"(specs inferred while the first compiles run); the orchestrating process used {cpu:.1f} s of CPU")
        print_stage_times([r.result for r in results])

        def stage_seconds(rs) -> float:
            return sum(st.seconds or 0.0 for r in rs for st in r.result.stages
                       if st.stage in COMPILE_STAGES and st.status in ("passed", "failed"))

        hangs = [r for r in results if r.outcome == "timeout"]
        others = [r for r in results if r.outcome != "timeout"]
        hang_wall = sum(r.result.seconds for r in hangs) / slots
        busy = stage_seconds(others)
        print(f"hangs: {len(hangs)} ({first.hangs_suspected} cut at their stage budget, {first.hangs_confirmed} "
              f"waited out), costing {hang_wall:.1f} s of wall time (their worker-seconds / {slots}): "
              + ", ".join(f"{r.kernel.rsplit('.', 1)[-1]} {r.result.seconds:.0f} s in {r.failed_stage}"
                          for r in hangs))
        print(f"compiler-stage seconds (frontend..binary, hangs apart): {busy:.1f} s; efficiency "
              f"(wall - hang wall) x {slots} / that: {(wall - hang_wall) * slots / max(busy, 1e-9):.2f}; "
              f"with hangs: {wall * slots / max(busy + stage_seconds(hangs), 1e-9):.2f}")
        if results:
            per = [r.result.seconds - r.result.compiler_seconds for r in results]
            print(f"per compile beyond the compiler's stages (fork, kernel load, spec, result): "
                  f"median {statistics.median(per) * 1000:.0f} ms, mean {statistics.mean(per) * 1000:.0f} ms")

    cli = [sys.executable, "-m", "tritriage.cli", "scan", str(root), "-q", "--hints", "0"]
    t0 = time.time()
    out = subprocess.run(cli, capture_output=True, text=True)
    print(f"unchanged re-scan, `tritriage scan -q` end to end: {time.time() - t0:.2f} s: {out.stdout.strip()}")

    # Edit one kernel file: a comment at the end of each of its kernels' def lines.
    from tritriage.discover.inventory import discover as fresh_discover
    inv = fresh_discover(root, use_cache=False)
    by_file: dict[str, list] = {}
    for k in inv.kernels:
        if k.kind == "entry" and not k.platform_only:
            by_file.setdefault(k.file, []).append(k)
    rel, kernels = max(sorted(by_file.items()), key=lambda kv: len(kv[1]))
    path = root / rel
    lines = path.read_text().splitlines(keepends=True)
    for k in kernels:
        lines[k.line - 1] = lines[k.line - 1].rstrip("\n") + "  # edited by bench_scan\n"
    path.write_text("".join(lines))
    t0 = time.time()
    out = subprocess.run(cli, capture_output=True, text=True)
    print(f"after editing {rel} ({len(kernels)} entry kernels): {time.time() - t0:.2f} s: {out.stdout.strip()}")


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
    ap.add_argument("--versions", nargs="*", default=["0.8.5", "0.33.0"], help="vLLM releases to scan cold")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("-n", type=int, default=200, help="compiles of the trivial kernel")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--skip-warm", action="store_true", help="leave out the warm-worker overhead bench")
    args = ap.parse_args()
    for version in args.versions:
        with tempfile.TemporaryDirectory(prefix="tritriage-bench-") as tmp:
            os.environ["TRITRIAGE_HOME"] = tmp
            bench_vllm(version, vllm_sources(version), args.jobs, Path(tmp))
    if not args.skip_warm:
        with tempfile.TemporaryDirectory(prefix="tritriage-bench-") as tmp:
            os.environ["TRITRIAGE_HOME"] = tmp
            bench_warm(args.n, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())

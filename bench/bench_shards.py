"""Benchmark: a sharded scan of vLLM 0.8.5, merged, against one unsharded scan.

    .venv/bin/python bench/bench_shards.py [--vllm PATH] [-n 2] [--jobs N]

One unsharded scan (verdicts only: --hints 0), then N shards by name hash and N
shards balanced by the unsharded scan's `report --json` (--shard-times), each
in its own data directory as on N CI machines, one after the other here; each
set is merged with `tritriage merge` in a fresh data directory.  Prints each
shard's pairs and wall time, how uneven the shards are (slowest / mean), and
whether the merged run gives every kernel the unsharded status, class,
fingerprint and per-spec outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(REPO / "tests"))
from conftest import vllm_sources  # noqa: E402 - the tests' cached download of vLLM's sources
from testkit import verdicts  # noqa: E402 - what a user compares between two reports


def tritriage(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITRIAGE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "tritriage.cli", *args], env=env, capture_output=True, text=True,
                          check=True)


def report(home: Path) -> dict:
    return json.loads(tritriage(home, "report", "--json").stdout)


def shards(root: Path, tmp: Path, label: str, n: int, jobs: list[str], extra: list[str], whole: dict) -> None:
    walls, files = [], []
    for k in range(1, n + 1):
        home = tmp / f"{label}-{k}"
        t0 = time.time()
        tritriage(home, "scan", str(root), "-q", "--hints", "0", "--shard", f"{k}/{n}", *jobs, *extra)
        walls.append(time.time() - t0)
        doc = report(home)
        files.append(tmp / f"{label}-{k}.json")
        files[-1].write_text(json.dumps(doc))
        print(f"  shard {k}/{n}: {doc['totals']['pairs']} pairs in {walls[-1]:.1f} s")
    merged_home = tmp / f"{label}-merged"
    tritriage(merged_home, "merge", *map(str, files))
    merged = report(merged_home)
    same = verdicts(merged) == verdicts(whole)
    print(f"  slowest shard / mean: {max(walls) / (sum(walls) / n):.2f}; merged: {merged['totals']['pairs']} pairs, "
          f"every kernel's status, class, fingerprint and spec outcomes as unsharded: {'yes' if same else 'NO'}")
    if not same:
        a, b = verdicts(merged), verdicts(whole)
        for kid in sorted(set(a) | set(b)):
            if a.get(kid) != b.get(kid):
                print(f"    {kid}: merged {a.get(kid)} / unsharded {b.get(kid)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", type=Path, help="vLLM 0.8.5 sources (default: the tests' cached copy)")
    ap.add_argument("-n", type=int, default=2, help="shards")
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    root = (args.vllm or vllm_sources("0.8.5")).resolve()
    jobs = ["-j", str(args.jobs)] if args.jobs else []
    with tempfile.TemporaryDirectory(prefix="tritriage-bench-shards-") as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        tritriage(tmp / "whole", "scan", str(root), "-q", "--hints", "0", *jobs)
        whole = report(tmp / "whole")
        (tmp / "whole.json").write_text(json.dumps(whole))
        print(f"== vLLM 0.8.5 at {root}: unsharded, {whole['totals']['pairs']} pairs in {time.time() - t0:.1f} s")
        print(f"by name hash (--shard K/{args.n}):")
        shards(root, tmp, "hash", args.n, jobs, [], whole)
        print(f"balanced by the unsharded report's times (--shard K/{args.n} --shard-times whole.json):")
        shards(root, tmp, "timed", args.n, jobs, ["--shard-times", str(tmp / "whole.json")], whole)
    return 0


if __name__ == "__main__":
    sys.exit(main())

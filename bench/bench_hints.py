"""Hint search on vLLM 0.8.5: how many kernels that overflow the unified
buffer get a tile configuration that passes the binary stage, and what the
search costs beyond the scan.  Prints figures; asserts nothing.

    python bench/bench_hints.py [--vllm PATH] [--budget 8] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", type=Path, help="vLLM 0.8.5 sources (default: the tests' cached copy)")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tritriage-bench-") as home:
        os.environ["TRITRIAGE_HOME"] = home
        from conftest import vllm_sources  # the tests' cached download

        from tritriage.compile.scan import run_scan
        from tritriage.report.view import build_view
        from tritriage.store import Store

        root = args.vllm or vllm_sources("0.8.5")
        with Store.open() as store:
            t0 = time.time()
            summary = run_scan(root, store=store, jobs=args.jobs, hints=args.budget)
            wall = time.time() - t0
            h = summary.hints
            print(f"== vLLM 0.8.5: scan with --hints {args.budget}: {wall:.1f} s wall")
            print(summary.line())
            print(h.line())
            print(f"extra wall time for hints: {h.seconds:.1f} s ({h.seconds / max(wall - h.seconds, 1e-9):.0%} of the "
                  f"scan without them), {h.compiles / max(h.kernels, 1):.1f} compiles per kernel")
            view = build_view(store, store.run(summary.run_id))
            for kv in view.kernels:
                for hv in kv.hints:
                    print(f"  {kv.kernel.name} [{hv.base_spec}]: {hv.text if hv.found else 'none: tried ' + str(len(hv.tried))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

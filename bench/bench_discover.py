"""Discovery speed on a whole vLLM tree (target: vLLM 0.33.0 in under 2 s on 2 cores).

    python bench/bench_discover.py [VERSION ...]
"""

from __future__ import annotations

import statistics
import sys
import time

from _vllm import vllm_sources

from tritriage.discover.inventory import discover


def main(versions):
    for v in versions:
        root = vllm_sources(v)
        discover(root, use_cache=False)  # warm the page cache: the figure is the tool's work, not the disk's
        cold, warm = [], []
        for _ in range(5):
            t = time.perf_counter()
            inv = discover(root, use_cache=False)
            cold.append(time.perf_counter() - t)
        discover(root)
        for _ in range(5):
            t = time.perf_counter()
            discover(root)
            warm.append(time.perf_counter() - t)
        entries = sum(k.kind == "entry" for k in inv.kernels)
        print(f"vllm {v}: {inv.files_scanned} files, {len(inv.kernels)} Triton jit functions "
              f"({entries} entry), {len(inv.other_jit)} other-DSL functions")
        print(f"  full discovery:      median {statistics.median(cold):.2f} s, best {min(cold):.2f} s (target < 2 s)")
        print(f"  unchanged tree:      median {statistics.median(warm):.2f} s (inventory cache)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["0.8.5", "0.33.0"])

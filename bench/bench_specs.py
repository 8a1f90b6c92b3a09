"""Spec inference without a catalog: how many entry kernels get a sound spec.

    python bench/bench_specs.py [VERSION] [--no-reference] [-j N]

On vLLM VERSION (default 0.33.0) every entry kernel gets one inferred spec
(the catalog is left empty on purpose), which triton-ascend's frontend then
checks; with the reference (``tritriage reference setup``) each rejection is
compiled by upstream Triton too, so that an Ascend gap counts as sound.
Prints the sound share (target: at least 80 %), the share the triton-ascend
frontend accepts, and every kernel left without a sound spec, with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import os
from pathlib import Path

# The tests' conftest (imported by _vllm) points TRITRIAGE_HOME at a throwaway
# directory: keep using the user's reference venv.
os.environ.setdefault("TRITRIAGE_REFERENCE", str(
    Path(os.environ.get("TRITRIAGE_HOME") or Path.home() / ".local" / "share" / "tritriage") / "reference-venv"))

from _vllm import vllm_sources  # noqa: E402

from tritriage.specs.catalog import Catalog  # noqa: E402
from tritriage.discover.inventory import discover  # noqa: E402
from tritriage.specs.resolve import specs_for, validate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("version", nargs="?", default="0.33.0")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("-j", "--jobs", type=int, default=None)
    args = ap.parse_args(argv)

    root = vllm_sources(args.version)
    t0 = time.perf_counter()
    inv = discover(root)
    entries = [k for k in inv.kernels if k.kind == "entry"]
    t1 = time.perf_counter()
    empty = Catalog()
    pairs = [(k, specs_for(k, inv, root, catalog=empty)[0]) for k in entries]
    t2 = time.perf_counter()
    reference = not args.no_reference
    verdicts = validate(pairs, root, reference=reference, jobs=args.jobs)
    t3 = time.perf_counter()

    n = len(pairs)
    sound = sum(1 for v in verdicts if v.valid)
    frontend = sum(1 for v in verdicts if v.frontend)
    gaps = sum(1 for v in verdicts if v.valid and not v.frontend)
    loader = sum(1 for v in verdicts if v.reason.startswith("loader:"))
    print(f"vLLM {args.version}: {n} entry kernels, catalog empty, one inferred spec each")
    print(f"  sound:                    {sound}/{n} = {100 * sound / n:.1f} %  (target >= 80 %)"
          + ("" if reference else "  [no reference: Ascend gaps not counted]"))
    print(f"  triton-ascend frontend:   {frontend}/{n} = {100 * frontend / n:.1f} %")
    if reference:
        print(f"  Ascend gaps (cross-checked: upstream compiles, triton-ascend rejects): {gaps}")
    print(f"  not loadable (loader):    {loader}")
    print(f"  time: discover {t1 - t0:.1f} s, infer {t2 - t1:.1f} s, validate {t3 - t2:.1f} s")

    rest = [(k, v) for (k, _), v in zip(pairs, verdicts) if not v.valid]
    kinds = Counter(v.reason.split(":", 1)[0] for _, v in rest)
    print(f"\nwithout a sound spec: {len(rest)} ({', '.join(f'{c} {k}' for k, c in kinds.most_common())})")
    for k, v in sorted(rest, key=lambda kv: (kv[0].file, kv[0].line)):
        print(f"  {k.file}:{k.line} {k.qualname}: {v.reason[:240]}")
    return 0 if sound / n >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())

"""How well and how fast tritriage.classify works.

    python bench/bench_classify.py [--n 10000] [--misses]

Prints, for the public fixtures (real logs quoted in the trackers of
triton-ascend, vllm-ascend, sglang, FlagGems, FlagTree, verl, torch_npu...):

- the share that gets the right class, per class and overall;
- leave-one-source-out (LOSO): for each source project, the patterns fitted
  only to that project's logs (their ``fixtures`` all come from it) are left
  out and that project's logs are classified with the rest; this is the
  figure that says how the rules do on logs nobody here wrote;
- the confusion matrix (rows: expected, columns: got) of the LOSO run;

then the time to classify N logs built by mutating all fixtures (other temp
dirs, SSA ids, addresses, prefixes) and the time for one 50 MB log.  It prints
figures; it never asserts.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritriage.classify import CLASSES, classify, load_patterns  # noqa: E402
from tritriage.classify.engine import Classifier  # noqa: E402
from tritriage.commands.classify import strip_header  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "classify"
PREFIXES = [
    lambda ln: ln,
    lambda ln: "E       " + ln,
    lambda ln: "(EngineCore_DP0 pid=276) ERROR 01-02 12:34:56 [core.py:1100] " + ln,
    lambda ln: "2025-06-01T12:00:00.1234Z " + ln,
    lambda ln: "[rank3]: " + ln,
]
# One project, two trackers (the GitHub mirror of the same repository).
SAME_PROJECT = {"ascend/triton-ascend": "triton-lang/triton-ascend"}
GITHUB = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+)")


def load(kind: str) -> list[tuple[Path, dict, str]]:
    out = []
    for p in sorted((FIXTURES / kind).glob("*.log")):
        header, body = strip_header(p.read_text(encoding="utf-8"))
        out.append((p, header, body))
    return out


def source_of(header: dict) -> str:
    """The project whose tracker or docs a log was quoted from."""
    m = GITHUB.search(header.get("source", ""))
    if not m:
        return header.get("source", "?").split("/")[2] if "//" in header.get("source", "") else "?"
    repo = m.group(1).lower()
    return SAME_PROJECT.get(repo, repo)


def mutate(text: str, rnd: random.Random) -> str:
    text = re.sub(r"/tmp/tmp\w+", lambda m: "/tmp/tmp" + "".join(rnd.choice("abcdefgh0123") for _ in range(8)), text)
    text = re.sub(r"%(\d+)", lambda m: "%" + str(int(m.group(1)) + rnd.randint(1, 99)), text)
    text = re.sub(r"0x[0-9a-f]{8,}", lambda m: "0x" + "".join(rnd.choice("0123456789abcdef") for _ in range(16)), text)
    wrap = rnd.choice(PREFIXES)
    return "\n".join(wrap(ln) for ln in text.split("\n"))


def loso(public) -> tuple[list[tuple[str, str, str, str]], dict[str, int]]:
    """(name, source, expected, got) per log, and per source the number of patterns left out."""
    ps = load_patterns()
    src_of_stem = {p.stem: source_of(h) for p, h, _ in public}
    by_source = defaultdict(list)
    for p, h, b in public:
        by_source[source_of(h)].append((p, h, b))
    rows, dropped = [], {}
    for src, logs in sorted(by_source.items()):
        own = [pt.id for pt in ps.patterns
               if pt.fixtures and all(src_of_stem.get(f, "?") == src for f in pt.fixtures)]
        dropped[src] = len(own)
        clf = Classifier(patterns=ps.without(own))
        for p, h, b in logs:
            rows.append((p.name, src, h.get("expect"), clf.classify(b).cls))
    return rows, dropped


def confusion(rows) -> None:
    classes = [c for c in CLASSES if any(r[2] == c or r[3] == c for r in rows)]
    abbrev = {c: (c[:6] if len(c) > 6 else c) for c in classes}
    counts = Counter((r[2], r[3]) for r in rows)
    width = max(len(c) for c in classes)
    print("confusion matrix (LOSO; rows expected, columns got):")
    print(" " * (width + 2) + " ".join(f"{abbrev[c]:>6}" for c in classes))
    for e in classes:
        print(f"  {e:<{width}}" + " ".join(f"{counts[(e, g)] or '.':>6}" for g in classes))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--misses", action="store_true", help="list every LOSO miss")
    args = ap.parse_args()

    public = load("public")
    sources = Counter(source_of(h) for _, h, _ in public)
    print(f"public fixtures: {len(public)} logs from {len(sources)} projects")

    fitted = [(p.name, source_of(h), h.get("expect"), classify(b).cls) for p, h, b in public]
    right = sum(e == g for _, _, e, g in fitted)
    print(f"fitted (all rules):        {right}/{len(fitted)} = {100.0 * right / len(fitted):.1f}%")

    rows, dropped = loso(public)
    right = sum(e == g for _, _, e, g in rows)
    print(f"leave-one-source-out:      {right}/{len(rows)} = {100.0 * right / len(rows):.1f}%")

    print("\nper class (fitted | LOSO):")
    for c in CLASSES:
        f = [r for r in fitted if r[2] == c]
        lo = [r for r in rows if r[2] == c]
        if f:
            print(f"  {c:<26} {len(f):>3} logs  {sum(r[2] == r[3] for r in f):>3} | {sum(r[2] == r[3] for r in lo):>3}")
    print("\nper source (LOSO; patterns left out):")
    for src, n in sources.most_common():
        lo = [r for r in rows if r[1] == src]
        print(f"  {src:<48} {sum(r[2] == r[3] for r in lo):>3}/{len(lo):<3} ({dropped.get(src, 0)} left out)")
    print()
    confusion(rows)
    misses = [r for r in rows if r[2] != r[3]]
    if misses:
        print(f"\nLOSO misses ({len(misses)}):")
        for name, src, e, g in misses if args.misses else misses[:15]:
            print(f"  {name}: expected {e!r}, got {g!r}")

    corpus = [b for kind in ("seed", "public", "local") for _, _, b in load(kind)]
    rnd = random.Random(0)
    logs = [mutate(corpus[i % len(corpus)], rnd) for i in range(args.n)]
    size = sum(len(x) for x in logs)
    t0 = time.perf_counter()
    for text in logs:
        classify(text)
    dt = time.perf_counter() - t0
    print(f"\nclassify {args.n} logs ({size / 1e6:.1f} MB, from {len(corpus)} fixtures mutated): {dt:.2f} s ({1e3 * dt / args.n:.3f} ms/log)")

    tail = next(b for p, _, b in load("local") if p.stem == "linalg_noinline_call")
    big = ("INFO 01-02 12:34:56 [loader.py:12] loading shard ... " * 2 + "\n") * 480_000 + tail
    t0 = time.perf_counter()
    d = classify(big)
    dt = time.perf_counter() - t0
    print(f"one {len(big) / 1e6:.0f} MB log: {dt:.2f} s -> {d.cls} / {d.subclass}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

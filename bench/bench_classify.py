"""How well and how fast tritriage.classify works.

    python bench/bench_classify.py [--n 10000]

Prints: the share of public fixtures (real logs quoted in triton-ascend,
vllm-ascend, sglang, FlagGems, FlagTree... issues) that get the right class,
with every miss; the time to classify N logs built by mutating all fixtures
(other temp dirs, SSA ids, addresses, prefixes); the time for one 50 MB log.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritriage.classify import classify  # noqa: E402
from tritriage.classify.cli_cmd import strip_header  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "classify"
PREFIXES = [
    lambda ln: ln,
    lambda ln: "E       " + ln,
    lambda ln: "(EngineCore_DP0 pid=276) ERROR 01-02 12:34:56 [core.py:1100] " + ln,
    lambda ln: "2025-06-01T12:00:00.1234Z " + ln,
    lambda ln: "[rank3]: " + ln,
]


def load(kind: str) -> list[tuple[Path, dict, str]]:
    out = []
    for p in sorted((FIXTURES / kind).glob("*.log")):
        header, body = strip_header(p.read_text(encoding="utf-8"))
        out.append((p, header, body))
    return out


def mutate(text: str, rnd: random.Random) -> str:
    text = re.sub(r"/tmp/tmp\w+", lambda m: "/tmp/tmp" + "".join(rnd.choice("abcdefgh0123") for _ in range(8)), text)
    text = re.sub(r"%(\d+)", lambda m: "%" + str(int(m.group(1)) + rnd.randint(1, 99)), text)
    text = re.sub(r"0x[0-9a-f]{8,}", lambda m: "0x" + "".join(rnd.choice("0123456789abcdef") for _ in range(16)), text)
    wrap = rnd.choice(PREFIXES)
    return "\n".join(wrap(ln) for ln in text.split("\n"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()

    public = load("public")
    right, misses = 0, []
    for p, header, body in public:
        d = classify(body)
        if d.cls == header.get("expect"):
            right += 1
        else:
            misses.append(f"  {p.name}: expected {header.get('expect')!r}, got {d.cls!r} ({d.subclass})")
    print(f"public fixtures: {right}/{len(public)} right class = {100.0 * right / len(public):.1f}%  (none dropped: every log got a class)")
    for m in misses:
        print(m)

    corpus = [b for kind in ("seed", "public", "local") for _, _, b in load(kind)]
    rnd = random.Random(0)
    logs = [mutate(corpus[i % len(corpus)], rnd) for i in range(args.n)]
    size = sum(len(x) for x in logs)
    t0 = time.perf_counter()
    for text in logs:
        classify(text)
    dt = time.perf_counter() - t0
    print(f"classify {args.n} logs ({size / 1e6:.1f} MB, from {len(corpus)} fixtures mutated): {dt:.2f} s ({1e3 * dt / args.n:.3f} ms/log)")

    tail = next(b for p, _, b in load("local") if p.stem == "linalg_noinline_call")
    big = ("INFO 01-02 12:34:56 [loader.py:12] loading shard ... " * 2 + "\n") * 480_000 + tail
    t0 = time.perf_counter()
    d = classify(big)
    dt = time.perf_counter() - t0
    print(f"one {len(big) / 1e6:.0f} MB log: {dt:.2f} s -> {d.cls} / {d.subclass}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

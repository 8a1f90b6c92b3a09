"""Which run, which kernel: the one place a user's choice is resolved.

``--run N`` or the latest scan; ``--kernel NAME`` as a full id, a bare name
or a qualified name, with one clear error when unknown or ambiguous.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from tritriage.errors import UserError


def run_of(store, run_id: int | None = None):
    """The run ``--run`` names, or the latest scan."""
    if run_id is None:
        run = store.latest_run()
        if run is None:
            raise UserError("no scan recorded yet: run `tritriage scan PATH` first")
        return run
    run = store.run(run_id)
    if run is None:
        known = [r.id for r in store.runs()]
        some = ", ".join(str(i) for i in known[:10]) or "none"
        raise UserError(f"no run #{run_id} in {store.path} (runs: {some})")
    return run


def matching_ids(ids: Iterable[str], name: str) -> list[str]:
    """Kernel ids ``name`` may mean: itself, else every id it ends (a bare or qualified name)."""
    ids = sorted(set(ids))
    exact = [i for i in ids if i == name]
    return exact or [i for i in ids if i.endswith("." + name)]


def one_id(ids: Iterable[str], name: str, where: str) -> str:
    """The one kernel id ``name`` means in ``where``, or a one-line error."""
    found = matching_ids(ids, name)
    if not found:
        raise UserError(f"no kernel '{name}' in {where}: give a kernel id or bare name from `tritriage report`")
    if len(found) > 1:
        raise UserError(f"kernel name '{name}' is ambiguous in {where}; give one of: {', '.join(found)}")
    return found[0]


def in_shard(kernel_id: str, spec_name: str, shard: tuple[int, int] | None) -> bool:
    """Whether (kernel, spec) belongs to shard K of N (``--shard K/N``).

    A hash of the pair's names: every machine of a CI matrix computes the same
    split whatever its store holds, so that the shards together hold each
    pair exactly once."""
    if shard is None:
        return True
    import hashlib

    k, n = shard
    digest = hashlib.sha256(f"{kernel_id}|{spec_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def shard_plan(pairs: Sequence[tuple[str, str]], n: int,
               times: Mapping[tuple[str, str], float] | None = None) -> dict[tuple[str, str], int]:
    """(kernel id, spec) -> the shard (1..N) that compiles it.

    With ``times`` (seconds per pair from an earlier scan's ``report --json``,
    the same file on every machine of the matrix) the shards are balanced by
    time: longest first, each to the least loaded shard, a pair with no time
    counted at the median.  Without, ``in_shard``'s hash of the names.  Either
    way a pure function of the pairs and the file, so every machine computes
    the same split."""
    if not times:
        return {p: next(k for k in range(1, n + 1) if in_shard(p[0], p[1], (k, n))) for p in pairs}
    wanted = set(pairs)
    known = sorted(t for p, t in times.items() if p in wanted)
    typical = known[len(known) // 2] if known else 1.0
    load = [0.0] * n
    plan: dict[tuple[str, str], int] = {}
    for p in sorted(wanted, key=lambda p: (-times.get(p, typical), p)):
        k = min(range(n), key=lambda i: (load[i], i))
        load[k] += times.get(p, typical)
        plan[p] = k + 1
    return plan

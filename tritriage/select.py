"""Which run, which kernel: the one place a user's choice is resolved.

``--run N`` or the latest scan; ``--kernel NAME`` as a full id, a bare name
or a qualified name, with one clear error when unknown or ambiguous.
"""

from __future__ import annotations

from typing import Iterable

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

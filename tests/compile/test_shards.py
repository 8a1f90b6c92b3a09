"""Sharded scans (--shard K/N) and `tritriage merge`: a CI matrix's pieces make one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritriage.commands.merge import merge_command, shard_times
from tritriage.compile.scan import run_scan
from tritriage.errors import UserError
from tritriage.model import Spec
from tritriage.report.machine import to_json_data
from tritriage.report.view import build_view
from tritriage.select import in_shard, shard_plan
from tritriage.store import Store
from testkit import verdicts  # noqa: E402 - shared test helpers

FIXTURES = Path(__file__).parents[1] / "fixtures"
CHECKOUT = FIXTURES / "engine"


def two_specs(kernel, inventory, root):
    sig = {p.name: ("*fp32" if p.name.endswith("_ptr") else "i32") for p in kernel.params if not p.constexpr}
    return [Spec(kernel=kernel.id, name=f"b{b}", source="catalog", signature=sig, constexprs={"BLOCK": b})
            for b in (128, 1024)]


def scan_json(home: Path, monkeypatch, **kw) -> dict:
    monkeypatch.setenv("TRITRIAGE_HOME", str(home))
    with Store.open() as store:
        summary = run_scan(CHECKOUT, store=store, specs_fn=two_specs, jobs=2, timeout=60, **kw)
        return to_json_data(build_view(store, store.run(summary.run_id)))


@pytest.mark.parametrize("balanced", [False, True])
def test_shards_merged_give_the_unsharded_verdicts(tmp_path, monkeypatch, balanced):
    # Split by names, or balanced by the times of an earlier scan's report.
    whole = scan_json(tmp_path / "whole", monkeypatch)
    times = None
    if balanced:
        (tmp_path / "last-night.json").write_text(json.dumps(whole))
        times = shard_times(tmp_path / "last-night.json")
        assert len(times) == whole["totals"]["pairs"]
    parts = []
    for k in (1, 2):
        doc = scan_json(tmp_path / f"shard{k}", monkeypatch, shard=(k, 2), shard_times=times)
        assert doc["totals"]["pairs"] < whole["totals"]["pairs"], "a shard compiles only its share"
        path = tmp_path / f"shard{k}.json"
        path.write_text(json.dumps(doc))
        parts.append(path)
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "merged"))
    assert merge_command(parts, quiet=True) == 0
    with Store.open() as store:
        merged = to_json_data(build_view(store, store.latest_run()))
    assert verdicts(merged) == verdicts(whole)
    assert merged["totals"]["pairs"] == whole["totals"]["pairs"]
    assert [c["fingerprint"] for c in merged["root_causes"]] == [c["fingerprint"] for c in whole["root_causes"]]


def test_the_split_is_the_same_everywhere_and_covers_every_pair_once():
    pairs = [(f"k{i}", f"s{j}") for i in range(200) for j in range(3)]
    for n in (1, 2, 5):
        owners = [[k for k in range(1, n + 1) if in_shard(kid, spec, (k, n))] for kid, spec in pairs]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(1 for o in owners if o == [k]) for k in range(1, n + 1)]
        assert min(sizes) > len(pairs) / n * 0.7, sizes


def test_a_split_by_times_balances_the_shards_and_is_the_same_everywhere():
    pairs = [(f"k{i}", "s") for i in range(60)]
    times = {p: float((i * 37) % 11 + (30 if i < 3 else 0)) for i, p in enumerate(pairs[:50])}  # 10 unknown
    plan = shard_plan(pairs, 3, times)
    assert plan == shard_plan(list(reversed(pairs)), 3, dict(reversed(list(times.items())))), "order-free"
    assert set(plan) == set(pairs) and set(plan.values()) == {1, 2, 3}
    typical = sorted(times.values())[len(times) // 2]
    load = [sum(times.get(p, typical) for p in pairs if plan[p] == k) for k in (1, 2, 3)]
    assert max(load) - min(load) <= max(times.values()), load
    by_hash = [sum(times.get(p, typical) for p in pairs if in_shard(*p, (k, 3))) for k in (1, 2, 3)]
    assert max(load) <= max(by_hash), (load, by_hash)
    assert shard_plan(pairs, 3) == {p: next(k for k in (1, 2, 3) if in_shard(*p, (k, 3))) for p in pairs}


def test_merge_refuses_what_is_not_a_shard_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    bad = tmp_path / "x.json"
    bad.write_text("{\"hello\": 1}")
    with pytest.raises(UserError, match="not a `tritriage report --json` output"):
        merge_command([bad])
    with pytest.raises(UserError, match="no such file"):
        merge_command([tmp_path / "missing.json"])

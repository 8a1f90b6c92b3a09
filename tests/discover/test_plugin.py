"""vLLM with its platform plugin: which kernels the plugin replaces on Ascend.

The fixture (tests/fixtures/plugin) is a vLLM-like tree and a plugin that
swaps a kernel and a launcher at import time, plus one swap under a 310P-only
condition; the plugin reaches Triton through ``vllm.triton_utils``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tritriage.compile.scan import run_scan
from tritriage.discover.inventory import discover
from tritriage.discover.plugin import replaced_kernels, replacements
from tritriage.model import Spec
from tritriage.report.machine import to_json_data
from tritriage.report.markdown import render_markdown
from tritriage.report.view import build_view
from tritriage.store import Store

FIX = Path(__file__).parents[1] / "fixtures" / "plugin"
HOST, PLUGIN = FIX / "host", FIX / "plugin"


def specs(kernel, inventory, root):
    return [Spec(kernel=kernel.id, name="default", source="catalog",
                 signature={"x_ptr": "*fp32", "n": "i32"}, constexprs={"BLOCK": 128})]


def test_a_plugin_that_imports_triton_through_vllm_triton_utils_has_its_kernels_found():
    inv = discover(PLUGIN)
    assert [k.name for k in inv.kernels] == ["replaced_kernel_npu"]
    assert not inv.other_jit


def test_replacements_by_kernel_and_by_launcher_but_not_under_a_310p_condition():
    found = replacements(PLUGIN)
    by_target = {r.target: r for r in found}
    assert by_target["vllm.ops.kernels.replaced_kernel"].by == "vllm_ascend.ops.npu_kernels.replaced_kernel_npu"
    assert by_target["vllm.ops.kernels.launch_fallback"].applies is False, "HAS_TRITON is True on a 910B host"
    replaced = replaced_kernels(discover(HOST).kernels, found)
    assert sorted(k.rsplit(".", 1)[-1] for k in replaced) == ["launched_kernel", "replaced_kernel"]


def test_scan_with_the_plugin_lists_only_real_gaps(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    with Store.open() as store:
        run_scan(PLUGIN, store=store, specs_fn=specs, jobs=1, timeout=60)
        summary = run_scan(HOST, store=store, specs_fn=specs, jobs=2, timeout=60, plugin=PLUGIN)
        view = build_view(store, store.run(summary.run_id))
        doc = json.loads(json.dumps(to_json_data(view)))
        md = render_markdown(view)
    ks = {k["name"]: k for k in doc["kernels"]}
    assert ks["replaced_kernel"]["used_on_ascend"] == "replaced"
    assert ks["replaced_kernel"]["replaced_by"]["by"].endswith("replaced_kernel_npu")
    assert ks["replaced_kernel"]["replaced_by"]["verdict"].startswith("passed"), "the replacement's own verdict"
    assert ks["launched_kernel"]["used_on_ascend"] == "replaced"
    assert ks["fallback_kernel"]["used_on_ascend"] == "as-is"
    # Used as is and failing, with no replacement: the plugin team's work list.
    assert sorted(g.rsplit(".", 1)[-1] for g in doc["run"]["plugin"]["gaps"]) == ["broken_kernel", "fallback_kernel"]
    assert "## vllm-ascend gaps" in md and "`broken_kernel`" in md.split("## vllm-ascend gaps")[1].split("## ")[0]


def test_a_plugins_vllm_sources_are_found_as_a_user_expects(tmp_path, monkeypatch):
    """--with wins; else the vLLM release the plugin is made for, fetched into the data dir."""
    from tritriage.discover.plugin import source_trees

    home = tmp_path / "home"
    monkeypatch.setenv("TRITRIAGE_HOME", str(home))
    plugin = tmp_path / "vllm-ascend-0.9.1rc1"
    (plugin / "vllm_ascend").mkdir(parents=True)
    (plugin / "vllm_ascend" / "__init__.py").write_text("")
    (plugin / ".complete").write_text("0.9.1rc1")
    monkeypatch.setattr("tritriage.discover.plugin._installed", lambda package: None)
    assert source_trees(plugin) == []  # nothing fetched, nothing installed: the loader says what to give
    fetched = home / "sources" / "vllm-0.9.1"
    (fetched / "vllm").mkdir(parents=True)
    (fetched / "vllm" / "__init__.py").write_text("")
    (fetched / ".complete").write_text("0.9.1")
    (trees,) = source_trees(plugin)
    assert (Path(trees.path), trees.version, trees.how) == (fetched.resolve(), "0.9.1", "fetched")
    other = tmp_path / "my-vllm"
    (other / "vllm").mkdir(parents=True)
    (other / "vllm" / "__init__.py").write_text("")
    assert [Path(t.path) for t in source_trees(plugin, [other])] == [other.resolve()]
    assert source_trees(fetched) == []  # vLLM itself needs no other tree

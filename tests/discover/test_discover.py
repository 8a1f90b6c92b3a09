"""Discovery: every spelling of Triton's jit, nothing else, with calls and launch sites."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tritriage.discover.inventory import discover, find_kernels, resolve_kernel
from tritriage.errors import UserError

FIX = Path(__file__).parents[1] / "fixtures" / "discover"


@pytest.fixture(scope="module")
def inv():
    return discover(FIX)


def by_name(inv, name):
    found = [k for k in inv.kernels if k.name == name]
    assert len(found) == 1, (name, found)
    return found[0]


def test_every_triton_spelling_is_found(inv):
    names = {k.name for k in inv.kernels}
    assert names == {
        "plain_kernel", "options_kernel", "bare_jit_kernel", "helper_add", "tuned_kernel",
        "assigned_kernel", "method_kernel", "utils_kernel", "unused_entry",
    }


def test_other_dsls_are_counted_apart(inv):
    other = {(o.file, o.qualname): o.dsl for o in inv.other_jit}
    assert ("vllm/ops/via_utils.py", "gluon_kernel") in other
    assert other[("vllm/ops/via_utils.py", "gluon_kernel")].endswith("gluon.jit")
    assert {q for f, q in other if f == "vllm/other/dsls.py"} == {"cute_fn", "cute_kernel", "numba_fn", "tile_fn"}
    assert {q for f, q in other if f == "vllm/other/mixed.py"} == {"numba_fn", "numba_fn2"}
    assert not any(k.file.startswith("vllm/other/") for k in inv.kernels)


def test_ids_are_fully_qualified(inv):
    k = by_name(inv, "plain_kernel")
    assert k.id == "vllm.ops.spellings.plain_kernel"
    assert k.file == "vllm/ops/spellings.py" and k.line == 8
    assert by_name(inv, "method_kernel").id == "vllm.ops.spellings.Holder.method_kernel"


def test_params_constexprs_and_defaults(inv):
    k = by_name(inv, "plain_kernel")
    assert [(p.name, p.constexpr, p.default) for p in k.params] == [
        ("x_ptr", False, None), ("n", False, None), ("BLOCK", True, "128")]
    assert by_name(inv, "options_kernel").do_not_specialize == ("n",)


def test_autotune_and_heuristics_are_kept_as_source(inv):
    k = by_name(inv, "tuned_kernel")
    assert "triton.Config({\"BLOCK\": 64}" in k.autotune
    assert k.heuristics.startswith("@triton.heuristics(") or k.heuristics.startswith("triton.heuristics(")
    assert "EVEN" in k.heuristics


def test_assignment_form(inv):
    k = by_name(inv, "assigned_kernel")
    assert [p.name for p in k.params] == ["x_ptr", "BLOCK"]
    assert k.kind == "entry" and len(k.launch_sites) == 1  # through the local alias


def test_calls_and_kinds(inv):
    helper = by_name(inv, "helper_add")
    assert helper.kind == "helper"
    assert by_name(inv, "plain_kernel").calls == ("vllm.ops.spellings.helper_add",)
    # Called through an import from another file.
    assert by_name(inv, "utils_kernel").calls == ("vllm.ops.spellings.helper_add",)
    # Never launched nor called, returns nothing: may be launched from outside.
    assert by_name(inv, "unused_entry").kind == "entry"


def test_launch_sites_with_literal_kwargs(inv):
    plain = by_name(inv, "plain_kernel")
    files = sorted((s.file, s.function) for s in plain.launch_sites)
    assert files == [("vllm/ops/launcher.py", "run"), ("vllm/ops/spellings.py", "launch")]
    site = [s for s in plain.launch_sites if s.file == "vllm/ops/spellings.py"][0]
    assert site.literal_kwargs == {"BLOCK": 128}
    assert site.args == ("x", "n") and site.grid == "grid"
    utils = by_name(inv, "utils_kernel")
    assert [s.literal_kwargs for s in utils.launch_sites] == [{"BLOCK_SIZE": 256}]
    assert len(by_name(inv, "method_kernel").launch_sites) == 1
    both = by_name(inv, "bare_jit_kernel").launch_sites
    assert len(both) == 1 and both[0].literal_kwargs == {"BLOCK": 32}


def test_file_that_does_not_parse_is_skipped_with_reason(inv):
    skipped = {s.file: s.reason for s in inv.skipped}
    assert "vllm/other/broken.py" in skipped
    assert "does not parse" in skipped["vllm/other/broken.py"]
    assert "line" in skipped["vllm/other/broken.py"]


def test_bare_names_resolve_or_list_candidates(tmp_path, inv):
    assert resolve_kernel(inv, "utils_kernel").id == "vllm.ops.via_utils.utils_kernel"
    assert resolve_kernel(inv, "vllm.ops.spellings.plain_kernel").name == "plain_kernel"
    with pytest.raises(UserError, match="unknown kernel 'nope'"):
        resolve_kernel(inv, "nope")
    (tmp_path / "a.py").write_text("import triton\n@triton.jit\ndef k(x):\n    pass\n")
    (tmp_path / "b.py").write_text("import triton\n@triton.jit\ndef k(x):\n    pass\n")
    two = discover(tmp_path)
    assert len(find_kernels(two, "k")) == 2
    with pytest.raises(UserError, match="ambiguous: a.k, b.k"):
        resolve_kernel(two, "k")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tritriage", *args], capture_output=True, text=True)


def test_cli_list_json(inv):
    r = _cli("list", str(FIX), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == len(inv.kernels)
    for key in ("name", "file", "line", "kind", "params", "calls", "launch_sites"):
        assert key in rows[0]


def test_cli_bad_paths_give_one_line_and_exit_2(tmp_path):
    r = _cli("list", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such directory" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("scan", str(tmp_path), "--collect-only")
    assert r.returncode == 2 and "holds no Python files" in r.stderr
    f = tmp_path / "x.py"
    f.write_text("x = 1\n")
    r = _cli("list", str(f))
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_collect_only_summary():
    r = _cli("scan", str(FIX), "--collect-only", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("9 Triton jit functions in 2 files")
    assert "other DSLs not counted" in r.stdout


# --------------------------------------------------------------------------
# real vLLM sources


def independent_count(root: Path) -> Counter:
    """A deliberately different count: regexes over text, numba's @jit excluded by import."""
    out = Counter()
    for p in root.rglob("*.py"):
        t = p.read_text(errors="replace")
        n = len(re.findall(r"^\s*@(?:triton\.jit|jit)\b", t, re.M)) + len(re.findall(r"=\s*triton\.jit\(", t))
        if re.search(r"^\s*from numba import .*\bjit\b", t, re.M):
            n -= len(re.findall(r"^\s*@jit\b", t, re.M))
        if n:
            out[str(p.relative_to(root))] = n
    return out


@pytest.mark.vllm
def test_vllm_085_counts_and_helpers(vllm085):
    inv = discover(vllm085)
    got = Counter(k.file for k in inv.kernels)
    assert got == independent_count(vllm085)
    assert sum(got.values()) == 60
    kinds = {}
    for k in inv.kernels:
        kinds.setdefault(k.name, set()).add(k.kind)
    # The helpers the seed report lists (those still present in 0.8.5).
    for name in ("cdiv_fn", "max_fn", "tanh", "softplus", "mm_k", "do_expand_kernel", "do_shrink_kernel",
                 "_attn_fwd_inner", "_fwd_kernel_inner", "write_zeros_to_output"):
        assert kinds[name] == {"helper"}, name
    for name in ("_fwd_kernel", "attn_fwd", "fused_moe_kernel", "_lora_expand_kernel", "prepare_input_kernel"):
        assert kinds[name] == {"entry"}, name
    ids = [k.id for k in inv.kernels]
    assert len(ids) == len(set(ids))
    assert "vllm.attention.ops.prefix_prefill._fwd_kernel" in ids


@pytest.mark.vllm
def test_vllm_033_every_triton_jit_and_no_cute_or_gluon(vllm033):
    inv = discover(vllm033)
    got = Counter(k.file for k in inv.kernels)
    assert got == independent_count(vllm033)
    assert len(inv.kernels) >= 890
    dsls = Counter(o.dsl.rsplit(".", 1)[-1] for o in inv.other_jit)
    assert dsls["jit"] > 1000  # cute.jit and gluon.jit, counted apart
    other_places = {(o.file, o.line) for o in inv.other_jit}
    assert not any((k.file, k.line) in other_places for k in inv.kernels)
    for k in inv.kernels:
        assert not any(d.lstrip("@").startswith(("cute.", "gluon.")) for d in k.decorators), k.id


def test_usage_errors_are_short_and_exit_2(tmp_path):
    for args in (("scan",), ("list", str(FIX), "--bogus"), ("nosuchcommand",)):
        r = _cli(*args)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr, args

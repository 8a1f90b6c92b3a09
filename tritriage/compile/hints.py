"""Hints: what would make a failing kernel compile, found by compiling it.

A kernel whose spec fails the binary stage with a UB overflow was given GPU
tile sizes.  The fix a porting team writes by hand is an Ascend configuration:
smaller tiles, multi-buffering off.  This module proposes such configurations
for the tile-size constexprs (those that size ``tl.arange`` / ``tl.zeros`` /
block pointers in the kernel's body or in the helpers it passes them to) and
the ``multibuffer`` option, largest estimated UB use first, within a budget of
compiles per kernel.  The compiles go through the same workers, cache and
store as the scan's, under spec names marked ``HINT_MARK``: a hint is stored
like any spec (so ``repro --compile-only`` replays it) and never changes the
kernel's verdict, which stays that of the kernel as written.

The estimate is deliberately simple (UB use scales with the product of the
tile sizes, multi-buffering doubles the buffers it applies to): a second round
recalibrates it with what the first round's failures measured.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from pathlib import Path
from typing import Iterable, Mapping

from tritriage.model import HINT_MARK, Kernel, Spec

# The classifier's pattern for a UB overflow (classify/patterns.yaml).
UB_PATTERN = "ub-overflow"
_REQUIRES = re.compile(r"requires (\d+) bits while (\d+) bits available")
# tl calls whose arguments size a tile, and which arguments do.
_SIZING_CALLS = {"arange": None, "zeros": 0, "full": 0, "empty": 0, "reshape": 1, "view": 1,
                 "broadcast_to": 1, "make_block_ptr": "block_shape"}
# Smallest tile edge proposed: below it vector units idle and tl.dot refuses.
MIN_TILE = 16
# Multi-buffering keeps two copies of the buffers it applies to.
MULTIBUFFER_FACTOR = 0.6
# Aim below the buffer: the estimate is rough.
FILL = 0.95


def ub_overflow(error: str) -> tuple[int, int] | None:
    """(required, available) bits from a UB overflow message."""
    m = _REQUIRES.search(error or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _function(root: Path, kernel: Kernel) -> ast.FunctionDef | None:
    try:
        tree = ast.parse((Path(root) / kernel.file).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == kernel.name \
                and node.lineno <= kernel.line <= (node.end_lineno or node.lineno):
            return node
    return None


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _sizing_names(fn: ast.FunctionDef) -> set[str]:
    out: set[str] = set()
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        which = _SIZING_CALLS.get(call.func.attr, False)
        if which is False:
            continue
        if which is None:
            args = call.args
        elif isinstance(which, int):
            args = call.args[which:which + 1]
        else:
            args = []
        args = list(args) + [kw.value for kw in call.keywords
                             if kw.arg in ("shape", "block_shape") or (which is None and kw.arg)]
        for a in args:
            out |= _names(a)
    return out


def _stepping_names(fn: ast.FunctionDef) -> set[str]:
    """Names a loop or the grid steps by: ``range(a, b, STEP)``, ``tl.cdiv(n, STEP)``,
    ``program_id(..) * STEP``.  A tile that only fixes a data dimension (a head
    size padded to a power of two) is never stepped by, and is no free choice."""
    pids = {t.id for node in ast.walk(fn) if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "program_id" for t in node.targets if isinstance(t, ast.Name)}
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                node.func.id if isinstance(node.func, ast.Name) else ""
            if name in ("range", "static_range") and len(node.args) >= 3:
                out |= _names(node.args[2])
            elif name == "cdiv" and len(node.args) >= 2:
                out |= _names(node.args[1])
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            sides = (node.left, node.right)
            for a, b in (sides, sides[::-1]):
                is_pid = (isinstance(a, ast.Name) and a.id in pids) or (
                    isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "program_id")
                if is_pid:
                    out |= _names(b)
    return out


def tile_constexprs(kernel: Kernel, by_id: Mapping[str, Kernel], root: Path | str) -> list[str]:
    """The kernel's tunable tile sizes: constexpr parameters, in parameter order.

    Found from the body, not the name: each sizes a tile (``tl.arange``,
    ``tl.zeros``, a block pointer) and is a free choice: a loop or the grid
    steps by it, or the autotune configs set it.  Helpers one level down
    count through the arguments the kernel passes them."""
    fn = _function(Path(root), kernel)
    if fn is None:
        return []
    constexprs = set(kernel.constexprs)
    found = _sizing_names(fn) & constexprs
    free = _stepping_names(fn) & constexprs
    free |= {c for c in constexprs if any(re.search(rf"\b{re.escape(c)}\b", s.grid) for s in kernel.launch_sites)}
    free |= set(kernel.autotune_keys) & constexprs
    helpers = {by_id[c].name: by_id[c] for c in kernel.calls if c in by_id}
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call):
            continue
        name = call.func.id if isinstance(call.func, ast.Name) else \
            call.func.attr if isinstance(call.func, ast.Attribute) else None
        helper = helpers.get(name)
        if helper is None:
            continue
        hfn = _function(Path(root), helper)
        if hfn is None:
            continue
        sizing = _sizing_names(hfn)
        params = [a.arg for a in hfn.args.args]
        pairs = list(zip(params, call.args)) + [(kw.arg, kw.value) for kw in call.keywords if kw.arg]
        stepping = _stepping_names(hfn)
        for param, value in pairs:
            if param in sizing:
                found |= _names(value) & constexprs
            if param in stepping:
                free |= _names(value) & constexprs
    return [p.name for p in kernel.params if p.name in found and p.name in free and p.name not in _data_bound(kernel)]


def _data_bound(kernel: Kernel) -> set[str]:
    """Constexprs a launch site computes from a tensor's shape or stride (a
    cache's block size, a padded head size): fixed by the data, not tunable."""
    names = [p.name for p in kernel.params]
    out = set()
    for site in kernel.launch_sites:
        passed = dict(site.kwargs)
        passed.update({names[i]: a for i, a in enumerate(site.args) if i < len(names)})
        for name, text in passed.items():
            if re.search(r"\.shape\b|\.size\(|\.stride\(|\bhead_(?:size|dim)\b", text or ""):
                out.add(name)
    return out


def _options(value: int) -> list[int]:
    """The value, then its halvings down to MIN_TILE (powers of two stay so)."""
    out = [value]
    while value // 2 >= MIN_TILE and value % 2 == 0:
        value //= 2
        out.append(value)
    return out


def ub_candidates(spec: Spec, tiles: Iterable[str], required: int, available: int, budget: int,
                  tried: Iterable[Mapping] = ()) -> list[dict]:
    """Up to ``budget`` configurations (constexpr changes plus ``multibuffer``),
    largest estimated UB use first, each estimated to fit ``available``."""
    tiles = [t for t in tiles if isinstance(spec.constexprs.get(t), int) and spec.constexprs[t] > 0]
    multibuffer = spec.options.get("multibuffer", True) is not False
    seen = {_config_key(c) for c in tried}
    choices = []
    for values in itertools.product(*[_options(spec.constexprs[t]) for t in tiles]):
        scale = math.prod(v / spec.constexprs[t] for t, v in zip(tiles, values))
        for mb in ((True, False) if multibuffer else (False,)):
            estimate = required * scale * (1.0 if mb == multibuffer else MULTIBUFFER_FACTOR)
            if estimate > available * FILL:
                continue
            change = {t: v for t, v in zip(tiles, values) if v != spec.constexprs[t]}
            config = {"constexprs": change, "multibuffer": mb, "estimate": int(estimate)}
            if (not change and mb == multibuffer) or _config_key(config) in seen:
                continue
            # Largest first; at equal use, multi-buffering kept (it is what
            # makes the kernel fast) and the tiles kept balanced.
            balance = -max((math.log2(v) for v in values), default=0.0)
            choices.append(((-estimate, not mb, -balance), config))
    if not choices and budget > 0:
        # Nothing is estimated to fit: the estimate may be wrong, so try the
        # smallest configuration once rather than nothing.
        change = {t: _options(spec.constexprs[t])[-1] for t in tiles}
        change = {t: v for t, v in change.items() if v != spec.constexprs[t]}
        config = {"constexprs": change, "multibuffer": False, "estimate": None}
        if (change or multibuffer) and _config_key(config) not in seen:
            choices.append(((0,), config))
    choices.sort(key=lambda c: c[0])
    out, keys = [], set()
    for _, config in choices:
        key = _config_key(config)
        if key not in keys:
            keys.add(key)
            out.append(config)
        if len(out) >= budget:
            break
    return out


def _config_key(config: Mapping) -> tuple:
    return tuple(sorted((config.get("constexprs") or {}).items())), bool(config.get("multibuffer", True))


def hint_spec(base: Spec, config: Mapping, n: int) -> Spec:
    """The spec of one tried configuration, stored like any spec."""
    change = dict(config.get("constexprs") or {})
    options = dict(base.options)
    if config.get("multibuffer") is False:
        options["multibuffer"] = False
    words = [f"{k}={v}" for k, v in change.items()]
    if config.get("multibuffer") is False:
        words.append("multibuffer=False")
    return Spec(kernel=base.kernel, name=f"{base.name}{HINT_MARK}{n}", source="hint",
                signature=dict(base.signature), constexprs={**base.constexprs, **change}, options=options,
                rules={"hint": f"for {base.name}: " + ", ".join(words)},
                params_fingerprint=base.params_fingerprint,
                origin=f"hint search for spec {base.name}: " + (", ".join(words) or "as is"))


def config_of(spec: Spec, base: Spec) -> dict:
    """What a hint spec changed against its base (inverse of ``hint_spec``)."""
    change = {k: v for k, v in spec.constexprs.items() if base.constexprs.get(k) != v}
    return {"constexprs": change, "multibuffer": spec.options.get("multibuffer", True) is not False}


def calibrated_required(base: Spec, required: int, attempts: Iterable[tuple[Spec, int | None]]) -> int:
    """The base's required bits, scaled up by how far the estimate fell short
    on the attempts that overflowed anyway (their own required bits)."""
    factor = 1.0
    multibuffer = base.options.get("multibuffer", True) is not False
    for spec, needed in attempts:
        if not needed:
            continue
        config = config_of(spec, base)
        scale = math.prod(v / base.constexprs[k] for k, v in config["constexprs"].items()
                          if isinstance(base.constexprs.get(k), int) and base.constexprs[k])
        if config["multibuffer"] != multibuffer:
            scale *= MULTIBUFFER_FACTOR
        predicted = required * scale
        if predicted > 0:
            factor = max(factor, needed / predicted)
    return int(required * factor)


# Failures with a known workaround a compile can test, by classifier pattern:
# the workaround as a change to the spec.  A hint names what the gap is
# (the dtype, the precision option), never a fix to the verdict.
FP8_PATTERN = "frontend-fp8-unsupported"
PRECISION_PATTERNS = ("npuoptions-missing-attr", "frontend-dot-precision")
_FP8 = re.compile(r"fp8\w*|float8\w*")


def variant_configs(pattern: str | None, spec: Spec) -> list[dict]:
    """The spec changes that test a known workaround for ``pattern``'s failure."""
    if pattern == FP8_PATTERN:
        sig = {k: _FP8.sub("bf16", v) for k, v in spec.signature.items() if _FP8.search(str(v))}
        consts = {k: "tl.bfloat16" for k, v in spec.constexprs.items()
                  if isinstance(v, str) and _FP8.search(v)}
        if sig or consts:
            return [{"constexprs": consts, "signature": sig, "multibuffer": True, "why": "bf16 in place of fp8"}]
    elif pattern in PRECISION_PATTERNS:
        consts = {k: "ieee" for k, v in spec.constexprs.items() if "PRECISION" in k.upper() and v != "ieee"}
        if consts:
            return [{"constexprs": consts, "multibuffer": True, "why": "input_precision='ieee' passed explicitly"}]
    return []


def variant_spec(base: Spec, config: Mapping, n: int) -> Spec:
    spec = hint_spec(base, config, n)
    sig = {**base.signature, **(config.get("signature") or {})}
    words = [f"{k}={v}" for k, v in {**(config.get("signature") or {}), **(config.get("constexprs") or {})}.items()]
    return Spec(kernel=spec.kernel, name=spec.name, source="hint", signature=sig, constexprs=spec.constexprs,
                options=spec.options, params_fingerprint=spec.params_fingerprint,
                rules={"hint": f"for {base.name}: {config.get('why')}: " + ", ".join(words)},
                origin=f"hint for spec {base.name}: {config.get('why')}")

"""What a platform plugin replaces: vllm-ascend's import-time assignments.

On Ascend, vLLM runs with vllm-ascend, which swaps some of vLLM's kernels, and
the Python functions that launch them, by assignment when it is imported
(``vllm/.../fused_recurrent.fused_recurrent_gated_delta_rule_fwd_kernel = ...``
in ``vllm_ascend/patch/worker/patch_triton.py``).  Read statically: every
assignment to an attribute of ``vllm.…`` in the plugin, with what it assigns
(resolved through the file's imports) and the condition it sits under, which
is evaluated as on an Ascend host where the host table knows its names
(``if not HAS_TRITON`` is 310P-only: not on a 910B).

A vLLM kernel is then *replaced* when the assignment names it, or names every
Python function that launches it (its launch sites' enclosing functions).

vLLM's kernel dispatcher (``@pluggable_kernel`` / ``@register_kernel`` keyed by
a kernel's qualified name, vLLM PR 43048) is not in vLLM 0.23.0 nor used by
vllm-ascend 0.23.0, so no registration is read yet; the ``register_kernel`` of
0.23.0's ``vllm/kernels/helion/register.py`` registers Helion kernels, another
DSL, and replaces no Triton kernel.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tritriage import yamlio
from tritriage.discover.inventory import _dotted
from tritriage.model import Kernel


@dataclass(frozen=True)
class Replacement:
    target: str  # what the plugin assigns to: vllm.model_executor....name
    by: str  # what it assigns, dotted where it can be resolved, else the expression
    file: str  # relative to the plugin's root
    line: int
    condition: str = ""  # the if-test it sits under, when it could not be decided
    applies: bool = True  # False: under a condition an Ascend (910B) host does not meet


def _host_constants() -> dict:
    path = Path(__file__).resolve().parents[1] / "sandbox" / "runtime_standins.json"
    try:
        return dict(json.loads(path.read_text()).get("constants") or {})
    except (OSError, ValueError):
        return {}


def _decide(test: ast.expr, constants: dict) -> bool | None:
    """The value of an if-test on an Ascend host, when the host table decides it."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _decide(test.operand, constants)
        return None if inner is None else not inner
    if isinstance(test, ast.Name) and test.id in constants:
        return bool(constants[test.id])
    if isinstance(test, ast.BoolOp):
        values = [_decide(v, constants) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    return None


def _imports(tree: ast.Module, package: str) -> dict[str, str]:
    """Local name -> dotted name, for the file's imports (module level and nested)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
    return out


def replacements(plugin_root: str | Path, prefix: str = "vllm.") -> list[Replacement]:
    """Every assignment in the plugin to an attribute under ``prefix``."""
    root = Path(plugin_root).resolve()
    constants = _host_constants()
    out: list[Replacement] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
                if prefix.rstrip(".") not in text:
                    continue
                tree = ast.parse(text)
            except (OSError, SyntaxError, ValueError):
                continue
            package = rel[:-3].replace("/", ".").removesuffix(".__init__").rpartition(".")[0]
            names = _imports(tree, package)
            out.extend(_assignments(tree, rel, names, prefix, constants))
    return out


def _assignments(tree: ast.Module, rel: str, names: dict, prefix: str, constants: dict) -> Iterable[Replacement]:
    def visit(body, conds):
        for node in body:
            if isinstance(node, ast.If):
                decided = _decide(node.test, constants)
                test = ast.unparse(node.test)
                yield from visit(node.body, conds + [(test, decided)])
                yield from visit(node.orelse, conds + [(f"not ({test})", None if decided is None else not decided)])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.With, ast.Try, ast.For)):
                for field in ("body", "orelse", "finalbody"):
                    yield from visit(getattr(node, field, []) or [], conds)
                for h in getattr(node, "handlers", []) or []:
                    yield from visit(h.body, conds)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    dotted = _dotted(target)
                    if not dotted or "." not in dotted:
                        continue
                    head, _, rest = dotted.partition(".")
                    full = f"{names.get(head, head)}.{rest}"
                    if not full.startswith(prefix):
                        continue
                    value = _dotted(node.value)
                    if value is not None:
                        vh, _, vrest = value.partition(".")
                        by = names.get(vh, vh) + (f".{vrest}" if vrest else "")
                    else:
                        by = ast.unparse(node.value)[:120]
                    undecided = [t for t, d in conds if d is None]
                    yield Replacement(target=full, by=by, file=rel, line=node.lineno,
                                      condition=" and ".join(undecided),
                                      applies=all(d is not False for _, d in conds))

    yield from visit(tree.body, [])


def replaced_kernels(kernels: Iterable[Kernel], found: Iterable[Replacement]) -> dict[str, Replacement]:
    """vLLM kernel id -> the replacement that takes it out of use on Ascend."""
    by_target = {r.target: r for r in found if r.applies}
    out: dict[str, Replacement] = {}
    for k in kernels:
        if k.id in by_target:
            out[k.id] = by_target[k.id]
            continue
        launchers = []
        for site in k.launch_sites:
            if not site.function:
                continue
            module = site.file[:-3].replace("/", ".").removesuffix(".__init__")
            launchers.append((module, site.function.split(".")[0]))
        if not launchers:
            continue
        hits = [_replacing(by_target, module, fn) for module, fn in launchers]
        if all(hits):
            out[k.id] = hits[0]
    return out


def _replacing(by_target: dict, module: str, function: str) -> Replacement | None:
    """The replacement of ``module.function``, named there or on a package above
    it (``vllm.x.ops.f = ...`` replaces what ``vllm.x.ops`` re-exports from ``vllm.x.ops.chunk``)."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        r = by_target.get(".".join(parts[:i] + [function]))
        if r is not None:
            return r
    return None


# --------------------------------------------------------------------------
# other source trees a plugin's kernels import from

PLUGINS_FILE = Path(__file__).resolve().parent.parent / "data" / "platform_plugins.yaml"


@dataclass(frozen=True)
class SourceTree:
    path: str  # a tree holding the host's package, or the package directory itself
    project: str
    version: str
    how: str  # "--with", "fetched", "installed"

    def describe(self) -> str:
        ver = f" {self.version}" if self.version else ""
        return f"{self.project}{ver} ({self.how}: {self.path})"


def _plugins() -> dict:
    import yaml

    try:
        return {k: v for k, v in (yamlio.load(PLUGINS_FILE.read_text()) or {}).items() if isinstance(v, dict)}
    except (OSError, yaml.YAMLError):
        return {}


def _release(version: str) -> str:
    import re

    m = re.match(r"\d+(\.\d+)*", version or "")
    return m.group(0) if m else ""


def source_trees(checkout: str | Path, given: Iterable[str | Path] = ()) -> list[SourceTree]:
    """The other source trees a scan of ``checkout`` loads kernels with.

    ``given`` (``--with``) are used as they are.  Else, for a platform plugin
    of the data file, the host release it is made for: fetched into the data
    directory, else installed (found, not imported).  None for a checkout that
    is not a known plugin.
    """
    from tritriage.specs.catalog import checkout_project

    trees = [SourceTree(str(Path(g).resolve()), *checkout_project(g), "--with") for g in given]
    if trees:
        return trees
    root = Path(checkout)
    project, version = checkout_project(root)
    for package, rule in _plugins().items():
        if rule.get("project") != project and not (root / package / "__init__.py").is_file():
            continue
        host = str(rule.get("host") or "vllm")
        if (root / host).is_dir():
            return []  # the checkout holds the host itself
        if not version:
            from tritriage.specs.catalog import checkout_version

            version = checkout_version(root, package)
        want = _release(version) if rule.get("host_version") == "release" else version
        if not want:
            return []
        from tritriage.discover.fetch import sources_dir

        fetched = sources_dir() / f"{host}-{want}"
        if (fetched / ".complete").exists() and (fetched / host).is_dir():
            return [SourceTree(str(fetched), host, want, "fetched")]
        installed = _installed(host)
        if installed is not None and _release(installed[1]) == want:
            return [SourceTree(installed[0], host, installed[1], "installed")]
        return []
    return []


def _installed(package: str) -> tuple[str, str] | None:
    """(package directory, version) of an installed package, without importing it."""
    import importlib.metadata
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return str(Path(list(spec.submodule_search_locations)[0]).resolve()), version

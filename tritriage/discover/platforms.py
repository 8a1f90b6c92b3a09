"""Which kernels an Ascend host never uses, and why.

Static, from the inventory alone: the file's path (vendor-only directories and
files), a vendor-only package the file imports unconditionally, or the launch
sites (every one behind a CUDA/ROCm/XPU check).  The
rules are data (``tritriage/data/platform_only.yaml``).  Such kernels stay in
the inventory; the report keeps them out of the pass/fail totals.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
import ast
from pathlib import Path


from tritriage import yamlio
from tritriage.model import Kernel

RULES_FILE = Path(__file__).resolve().parent.parent / "data" / "platform_only.yaml"


@dataclasses.dataclass(frozen=True)
class Rules:
    paths: tuple[tuple[str, str, str], ...]  # (pattern, platform, reason)
    guards: tuple[tuple[str, re.Pattern], ...]  # (platform, names as whole words)
    imports: tuple[tuple[str, str, str], ...] = ()  # (top-level package, platform, reason)


@functools.lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> Rules:
    data = yamlio.load(Path(path or RULES_FILE).read_text()) or {}
    paths = tuple((r["match"], r["platform"], r["reason"]) for r in data.get("paths", []))
    guards = tuple((plat, re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b"))
                   for plat, names in (data.get("guards") or {}).items() if names)
    imports = tuple((r["package"], plat, r["reason"])
                    for plat, entries in (data.get("imports") or {}).items() for r in entries or ())
    return Rules(paths, guards, imports)


# Only a statement in column 0 runs unconditionally when the module is
# imported: one indented under try/if/def may never run on Ascend.
_TOP_IMPORT = re.compile(r"^(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w.]+))", re.M)


def import_platform(root: Path | str, rel: str, rules: Rules | None = None) -> tuple[str, str] | None:
    """The vendor platform whose package ``rel`` cannot be imported without."""
    rules = rules or load_rules()
    if not rules.imports:
        return None
    try:
        text = (Path(root) / rel).read_text(errors="replace")
    except OSError:
        return None
    for m in _TOP_IMPORT.finditer(text):
        top = (m.group(1) or m.group(2)).split(".")[0]
        for package, platform, reason in rules.imports:
            if top == package and not _own_package(Path(root), package):
                line = text.count("\n", 0, m.start()) + 1
                return platform, f"imports {package} ({reason}) at module level: {rel}:{line}"
    return None


def _own_package(root: Path, name: str) -> bool:
    """Whether ``name`` is a top-level package or module of the checkout (an
    absolute import finds that one first; a sibling module of the file it never finds)."""
    return (root / name).is_dir() or (root / f"{name}.py").is_file()


def path_platform(rel: str, rules: Rules | None = None) -> tuple[str, str] | None:
    rules = rules or load_rules()
    for pattern, platform, reason in rules.paths:
        if fnmatch.fnmatch(rel, pattern):
            return platform, f"{reason}: {rel}"
    return None


def guard_platform(guard: str, rules: Rules | None = None) -> str | None:
    """The vendor platform a launch-site ``if`` test selects, None when Ascend may take it.

    The test is evaluated in three-valued logic: a vendor check is False on
    Ascend, anything else unknown.  Only a test that is False whatever the
    unknowns are (``is_rocm() and x``, ``not (not IS_HIP)``) rules the branch out.
    """
    rules = rules or load_rules()
    try:
        node = ast.parse(guard.strip(), mode="eval").body
    except SyntaxError:
        return None
    named: list[str] = []

    def vendor(n: ast.AST) -> str | None:
        text = ast.unparse(n.func if isinstance(n, ast.Call) else n)
        last = text.rpartition(".")[2]
        for platform, pat in rules.guards:
            if pat.fullmatch(last):
                return platform
        return None

    def value(n: ast.AST) -> bool | None:
        if isinstance(n, ast.BoolOp):
            vals = [value(v) for v in n.values]
            if isinstance(n.op, ast.And):
                return False if False in vals else (True if all(v is True for v in vals) else None)
            return True if True in vals else (False if all(v is False for v in vals) else None)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            v = value(n.operand)
            return None if v is None else not v
        if isinstance(n, (ast.Call, ast.Name, ast.Attribute)):
            plat = vendor(n)
            if plat is not None:
                named.append(plat)
                return False
        return None

    if value(node) is False and named:
        return named[0]
    return None


def kernel_platform(kernel: Kernel, rules: Rules | None = None, root: Path | str | None = None,
                    ) -> tuple[str, str] | None:
    rules = rules or load_rules()
    hit = path_platform(kernel.file, rules) or (import_platform(root, kernel.file, rules) if root else None)
    if hit:
        return hit
    if not kernel.launch_sites:
        return None
    found = []
    for site in kernel.launch_sites:
        plat = next(((p, g) for g in site.guards if (p := guard_platform(g, rules))), None)
        if plat is None:
            return None
        found.append((plat, site))
    platforms = {p for (p, _), _ in found}
    if len(platforms) != 1:
        return None
    (platform, guard), site = found[0]
    return platform, f"launched only behind `if {guard}` ({site.file}:{site.line})"


def mark_platform_only(kernels: list[Kernel], rules: Rules | None = None,
                       root: Path | str | None = None) -> list[Kernel]:
    """The kernels, those an Ascend host never uses marked with the platform and the reason.

    A helper follows its callers: when every entry kernel that calls it is
    platform-only for one platform, so is it.
    """
    rules = rules or load_rules()
    out = {}
    files: dict[str, tuple[str, str] | None] = {}
    for k in kernels:
        if k.file not in files:
            files[k.file] = import_platform(root, k.file, rules) if root else None
        hit = path_platform(k.file, rules) or files[k.file] or kernel_platform(k, rules)
        out[k.id] = dataclasses.replace(k, platform_only=hit[0], platform_reason=hit[1]) if hit else k
    callers: dict[str, list[str]] = {}
    for k in kernels:
        for c in k.calls:
            callers.setdefault(c, []).append(k.id)
    changed = True
    while changed:
        changed = False
        for k in list(out.values()):
            if k.platform_only or k.id not in callers:
                continue
            plats = {out[c].platform_only for c in callers[k.id] if c in out}
            if len(plats) == 1 and None not in plats:
                plat = plats.pop()
                out[k.id] = dataclasses.replace(k, platform_only=plat,
                                                platform_reason=f"called only from {plat}-only kernels")
                changed = True
    return [out[k.id] for k in kernels]

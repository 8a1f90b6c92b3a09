"""Find every Triton kernel in a source tree by static analysis.

Nothing of the checkout is imported or run: files are parsed with ``ast`` and
names are resolved through each file's imports, following re-exports inside
the checkout (vLLM reaches Triton through ``vllm.triton_utils``).  A decorator
counts as Triton's jit only when it resolves to ``triton.jit``; other DSLs'
``jit`` (CuTe, Gluon, numba, tilelang...) are recorded apart, never mixed in.

Speed matters (vLLM 0.33 has 3,000+ files): only files whose bytes mention
``jit`` are parsed for definitions, and only files whose bytes mention a
kernel's name followed by ``[`` are parsed for launch sites.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tritriage.errors import UserError
from tritriage.model import Inventory, Kernel, LaunchSite, OtherJit, Param, SkippedFile

# Fully qualified names that mean "Triton's own jit".
TRITON_JIT = {"triton.jit", "triton.runtime.jit", "triton.runtime.jit.jit", "triton.runtime.jit.JITFunction"}
TRITON_AUTOTUNE = {"triton.autotune", "triton.runtime.autotune", "triton.runtime.autotuner.autotune"}
TRITON_HEURISTICS = {"triton.heuristics", "triton.runtime.heuristics", "triton.runtime.autotuner.heuristics"}

SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", ".tox", "build", "dist", ".eggs", "site-packages"}


# --------------------------------------------------------------------------
# walking the tree


def iter_python_files(root: Path):
    """Yield (absolute path, relative posix path) of every .py file, sorted."""
    out = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name not in SKIP_DIRS and not e.name.endswith(".egg-info"):
                    stack.append(e.path)
            elif e.name.endswith(".py") and e.is_file():
                out.append(e.path)
    out.sort()
    rootlen = len(str(root)) + 1
    for p in out:
        yield p, p[rootlen:].replace(os.sep, "/")


def module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def check_root(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{path}: no such directory")
    if not root.is_dir():
        raise UserError(f"{path}: not a directory (give the root of a vLLM checkout)")
    return root.resolve()


# --------------------------------------------------------------------------
# imports and names


def _import_aliases(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> dotted target, from every import in the file.

    Module-level imports win over ones nested in functions, since kernels are
    module-level; nested imports still matter for jit functions defined in a
    function body, so they fill names the module level does not bind.
    """
    top: dict[str, str] = {}
    nested: dict[str, str] = {}

    def visit(stmts, table, depth):
        for node in stmts:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        table[a.asname] = a.name
                    else:
                        head = a.name.split(".")[0]
                        table.setdefault(head, head)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_relative(node, module, is_package)
                for a in node.names:
                    if a.name == "*":
                        continue
                    table[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
            elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []) or [], table, depth)
                for h in getattr(node, "handlers", []) or []:
                    visit(h.body, table, depth)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(node.body, nested, depth + 1)

    visit(tree.body, top, 0)
    for k, v in nested.items():
        top.setdefault(k, v)
    return top


def _resolve_relative(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    base = ".".join(parts)
    if node.module:
        base = f"{base}.{node.module}" if base else node.module
    return base


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


_IMPORT_STMT = re.compile(
    rb"^([ \t]*)(?:from[ \t]+[\w.]+[ \t]+import[ \t]*(?:\([^)]*\)|[^\n]*?(?:\\\n[^\n]*?)*)|import[ \t]+[^\n]*)$", re.M
)


def _imports_only(src: bytes) -> ast.Module:
    """The import statements of a module, parsed without the rest of it.

    Following a re-export needs only a module's imports; parsing whole
    modules (vllm/platforms, vllm/utils...) just for that cost a third of
    the time of a discovery.
    """
    body: list[ast.stmt] = []
    for m in _IMPORT_STMT.finditer(src):
        text = m.group(0)[len(m.group(1)):]
        try:
            body.extend(ast.parse(text).body)
        except SyntaxError:
            continue
    return ast.Module(body=body, type_ignores=[])


class Resolver:
    """Resolves a name used in a file to a fully qualified dotted name.

    Re-exports inside the checkout are followed (``from vllm.triton_utils
    import triton`` ends at ``triton``), so that how vLLM spells its imports
    this year does not matter.
    """

    def __init__(self, root: Path, module_files: dict[str, str]):
        self.root = root
        self.module_files = module_files  # dotted module -> relative file
        self._alias_cache: dict[str, dict[str, str]] = {}

    def aliases_of(self, module: str) -> dict[str, str]:
        if module in self._alias_cache:
            return self._alias_cache[module]
        rel = self.module_files.get(module)
        table: dict[str, str] = {}
        if rel is not None:
            try:
                src = (self.root / rel).read_bytes()
                table = _import_aliases(_imports_only(src), module, rel.endswith("__init__.py"))
            except (SyntaxError, ValueError, OSError):
                table = {}
        self._alias_cache[module] = table
        return table

    def full(self, dotted: str, aliases: dict[str, str], depth: int = 0) -> str:
        head, _, rest = dotted.partition(".")
        target = aliases.get(head)
        if target is None:
            return dotted
        name = f"{target}.{rest}" if rest else target
        return self.follow(name, depth)

    def follow(self, name: str, depth: int = 0) -> str:
        """Follow ``pkg.mod.attr`` through re-exports in checkout modules."""
        if depth > 8:
            return name
        parts = name.split(".")
        # Longest prefix that is a module of the checkout.
        for i in range(len(parts) - 1, 0, -1):
            mod = ".".join(parts[:i])
            if mod in self.module_files:
                rest = parts[i:]
                table = self.aliases_of(mod)
                if rest[0] in table:
                    tail = ".".join([table[rest[0]]] + rest[1:])
                    if tail != name:
                        return self.follow(tail, depth + 1)
                return name
        # Outside the checkout: the well-known re-exports (data/reexports.yaml).
        for i in range(len(parts), 0, -1):
            target = _known_reexports().get(".".join(parts[:i]))
            if target is not None:
                return self.follow(".".join([target] + parts[i:]), depth + 1)
        return name


# Shared with the kernel loader, which must resolve the same names.
REEXPORTS = Path(__file__).resolve().parents[1] / "sandbox" / "reexports.json"
_REEXPORTS: dict[str, str] | None = None


def _known_reexports() -> dict[str, str]:
    global _REEXPORTS
    if _REEXPORTS is None:
        import json
        try:
            data = json.loads(REEXPORTS.read_text())
            _REEXPORTS = {str(k): str(v) for k, v in data.items() if not k.startswith("_")}
        except (OSError, ValueError, AttributeError):
            _REEXPORTS = {}
    return _REEXPORTS


def _params(fn: ast.FunctionDef, src_of) -> tuple[Param, ...]:
    args = fn.args
    positional = list(args.posonlyargs) + list(args.args)
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = []
    for a, d in zip(positional, defaults):
        out.append(_param(a, d, src_of))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append(_param(a, d, src_of))
    return tuple(out)


def _param(a: ast.arg, default, src_of) -> Param:
    ann = src_of(a.annotation) if a.annotation is not None else None
    constexpr = bool(ann) and (ann == "constexpr" or ann.endswith(".constexpr"))
    return Param(
        name=a.arg,
        constexpr=constexpr,
        annotation=ann,
        default=src_of(default) if default is not None else None,
    )


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


def _str_list(node: ast.AST | None) -> tuple[str, ...]:
    if node is None:
        return ()
    v = _literal(node)
    if isinstance(v, (list, tuple)):
        return tuple(str(x) for x in v)
    return ()


# --------------------------------------------------------------------------
# per-file analysis: pure, runs in worker processes, returns picklable data.
#
# Names are resolved here only through the file's own imports ("raw" names);
# the parent follows re-exports across the checkout once every file is read.


@dataclass
class RawKernel:
    qualname: str
    name: str
    line: int
    end_line: int
    params: tuple[Param, ...]
    decorators: list[tuple[str, str, dict]]  # (raw dotted target, source text, jit kwargs source)
    do_not_specialize: tuple[str, ...]
    callees: list[str]  # raw dotted names of everything called in the body
    returns_value: bool
    source_hash: str
    via_assignment: bool = False
    context_hash: str = ""


@dataclass
class RawSite:
    targets: list[str]  # raw dotted names the launched object may be
    site: LaunchSite


@dataclass
class FileResult:
    rel: str
    module: str
    aliases: dict[str, str]
    defs: list[RawKernel] = field(default_factory=list)
    sites: list[RawSite] = field(default_factory=list)
    skipped: str | None = None


def _analyze(task: tuple[str, str, bool, frozenset | None]) -> FileResult:
    """Definitions (when ``want_defs``) and launch sites of one file."""
    abspath, rel, want_defs, launch_names = task
    mod = module_name(rel)
    try:
        src = Path(abspath).read_bytes()
        tree = ast.parse(src, filename=rel)
    except SyntaxError as e:
        return FileResult(rel, mod, {}, skipped=f"does not parse: {e.msg} (line {e.lineno})")
    except (ValueError, OSError) as e:
        return FileResult(rel, mod, {}, skipped=f"does not parse: {e}")
    text = src.decode("utf-8", errors="replace")
    lines = text.splitlines()
    aliases = _import_aliases(tree, mod, rel.endswith("__init__.py"))
    res = FileResult(rel, mod, aliases)

    # ast.get_source_segment re-splits the whole file on every call; offsets
    # of each line, computed once, make this linear (col offsets are UTF-8 bytes).
    starts = [0]
    for line in src.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def src_of(node):
        try:
            a = starts[node.lineno - 1] + node.col_offset
            b = starts[node.end_lineno - 1] + node.end_col_offset
            return src[a:b].decode("utf-8", errors="replace")
        except (AttributeError, IndexError, TypeError):
            return ast.unparse(node)

    def raw(node) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        target = aliases.get(head)
        if target is None:
            return dotted
        return f"{target}.{rest}" if rest else target

    if want_defs:
        _collect_defs(tree, res, lines, src_of, raw)
    if launch_names is None or launch_names:
        names = None if launch_names is None else {n.encode() for n in launch_names}
        if b"](" in src:
            _collect_sites(tree, res, src_of, raw, launch_names, _launch_candidates(src, names))
    return res


_CALL_NAME = re.compile(r"(?<![\w.])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\s*\(")
_RETURN_VALUE = re.compile(r"^[ \t]*return[ \t]+(?!None[ \t]*(?:#.*)?$)[^\s#]", re.M)


_NAME_TOKEN = re.compile(r"[A-Za-z_]\w*")


def _module_bindings(tree: ast.Module, src_of) -> dict[str, list[str]]:
    """Name -> source of each module-level statement that binds it, functions
    and classes aside (jit helpers are tracked on their own); a statement
    holding others (``if``, ``try``) counts whole for each name it binds."""
    out: dict[str, list[str]] = {}
    for st in tree.body:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        names: set[str] = set()
        for node in ast.walk(st):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).partition(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
        if names:
            text = src_of(st)
            for n in names:
                out.setdefault(n, []).append(text)
    return out


def _collect_defs(tree, res: FileResult, lines, src_of, raw):
    def raw_name(dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        target = res.aliases.get(head)
        if target is None:
            return dotted
        return f"{target}.{rest}" if rest else target

    defs_cache: dict[str, ast.AST] = {}
    bindings: dict[str, list[str]] | None = None

    def context_hash(fn_src: str) -> str:
        # The module-level statements binding a name the function's text
        # uses (a constant, an import): the compile reads them, so an edit to
        # one must make the kernel compile again, and one to another must not.
        nonlocal bindings
        if bindings is None:
            bindings = _module_bindings(tree, src_of)
        used = sorted(set(_NAME_TOKEN.findall(fn_src)) & bindings.keys())
        if not used:
            return ""
        return hashlib.sha256("\n".join(f"{n}\0{b}" for n in used for b in bindings[n]).encode()).hexdigest()

    def def_named(name: str):
        # Only ``name = triton.jit(fn)`` needs this: walk the tree once, lazily.
        if not defs_cache:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defs_cache.setdefault(node.name, node)
            defs_cache.setdefault("", None)
        return defs_cache.get(name)

    def record(node, qual, name, decorators, dns, via_assignment=False):
        fn_src = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        # Text, not an AST walk: walking every node of 900 kernels dominated
        # discovery. A name in a comment that happens to be a kernel's would
        # only add a spurious call, never hide one.
        body = "\n".join(lines[node.body[0].lineno - 1 : node.end_lineno]) if node.body else ""
        callees = []
        for m in _CALL_NAME.finditer(body):
            r = raw_name(m.group(1))
            if r not in callees:
                callees.append(r)
        returns_value = bool(_RETURN_VALUE.search(body))
        res.defs.append(
            RawKernel(
                qualname=qual,
                name=name,
                line=node.lineno,
                end_line=node.end_lineno or node.lineno,
                params=_params(node, src_of),
                decorators=decorators,
                do_not_specialize=dns,
                callees=callees,
                returns_value=returns_value,
                source_hash=hashlib.sha256(fn_src.encode()).hexdigest(),
                via_assignment=via_assignment,
                context_hash=context_hash(fn_src),
            )
        )

    def decorator_info(dec):
        target = dec.func if isinstance(dec, ast.Call) else dec
        r = raw(target)
        kwargs = {}
        dns: tuple[str, ...] = ()
        if isinstance(dec, ast.Call):
            for k in dec.keywords:
                if k.arg == "do_not_specialize":
                    dns = _str_list(k.value)
                elif k.arg:
                    kwargs[k.arg] = src_of(k.value)
        return r, kwargs, dns

    def consider_def(node, qual):
        decs = []
        dns: tuple[str, ...] = ()
        for dec in node.decorator_list:
            r, kwargs, d = decorator_info(dec)
            if r is None:
                continue
            # Only decorators that may be a jit, autotune or heuristics matter.
            last = r.rsplit(".", 1)[-1]
            if "jit" in last or last in ("autotune", "heuristics", "kernel"):
                decs.append((r, src_of(dec), kwargs))
                dns = dns or d
        if decs:
            record(node, qual, node.name, decs, dns)

    def consider_assign(node: ast.Assign, prefix):
        # name = triton.jit(fn)  /  name = triton.jit(do_not_specialize=[...])(fn)
        call = node.value
        if not isinstance(call, ast.Call) or not call.args:
            return
        inner = call.func if isinstance(call.func, ast.Call) else None
        r, kwargs, dns = decorator_info(inner if inner is not None else call.func)
        if r is None or "jit" not in r.rsplit(".", 1)[-1]:
            return
        fn = def_named(_dotted(call.args[0]) or "")
        if fn is None:
            return
        for t in node.targets:
            if isinstance(t, ast.Name):
                record(fn, f"{prefix}{t.id}", t.id, [(r, src_of(call), kwargs)], dns, via_assignment=True)

    def walk(stmts, prefix):
        for node in stmts:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = f"{prefix}{node.name}"
                consider_def(node, qual)
                walk(node.body, f"{qual}.<locals>.")
            elif isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.Assign):
                consider_assign(node, prefix)
            else:
                for part in ("body", "orelse", "finalbody"):
                    inner = getattr(node, part, None)
                    if isinstance(inner, list):
                        walk(inner, prefix)
                for h in getattr(node, "handlers", None) or []:
                    walk(h.body, prefix)

    walk(tree.body, "")


def _collect_sites(tree, res: FileResult, src_of, raw, launch_names: frozenset | None, candidate_lines: list[int]):
    def refs_in(value) -> list[str]:
        if isinstance(value, ast.IfExp):
            return refs_in(value.body) + refs_in(value.orelse)
        r = raw(value)
        return [r] if r and (launch_names is None or r.rsplit(".", 1)[-1] in launch_names) else []

    lines = sorted(candidate_lines)

    def holds(node) -> bool:
        lo = node.lineno
        hi = getattr(node, "end_lineno", None) or lo
        i = bisect.bisect_left(lines, lo)
        return i < len(lines) and lines[i] <= hi

    def alias(stmt, aliases) -> None:
        # ``kernel = _a if cond else _b`` binds a local name to kernels.
        if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            refs = refs_in(stmt.value)
            if refs:
                aliases[stmt.targets[0].id] = refs

    def aliases_only(stmt, aliases) -> None:
        if isinstance(stmt, ast.Assign):
            alias(stmt, aliases)
        for part in ("body", "orelse", "finalbody"):
            for sub in getattr(stmt, part, None) or ():
                if isinstance(sub, ast.stmt) and not isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    aliases_only(sub, aliases)

    def site(node, stack, guards) -> LaunchSite:
        lits = {}
        for k in node.keywords:
            if k.arg:
                v = _literal(k.value)
                if v is not _NOT_LITERAL:
                    lits[k.arg] = v
        return LaunchSite(
            file=res.rel,
            line=node.lineno,
            function=".".join(stack) or None,
            grid=src_of(node.func.slice),
            args=tuple(src_of(a) for a in node.args),
            kwargs={k.arg: src_of(k.value) for k in node.keywords if k.arg},
            literal_kwargs=lits,
            guards=tuple(guards),
        )

    # Visiting every node of a large file was the expensive part: descend only
    # into nodes whose line range holds a candidate launch line.
    def walk(node, stack, aliases, guards=()) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if holds(child):
                    walk(child, stack + [child.name], dict(aliases))
                continue
            if isinstance(child, ast.If) and holds(child):
                test = src_of(child.test)
                walk(ast.Module(body=[ast.Expr(child.test)], type_ignores=[]), stack, aliases, guards)
                walk(ast.Module(body=child.body, type_ignores=[]), stack, aliases, (*guards, test))
                walk(ast.Module(body=child.orelse, type_ignores=[]), stack, aliases, (*guards, f"not ({test})"))
                continue
            has_line = hasattr(child, "lineno")
            if has_line and not holds(child):
                if isinstance(child, ast.stmt):
                    aliases_only(child, aliases)
                continue
            if isinstance(child, ast.Assign):
                alias(child, aliases)
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Subscript):
                d = _dotted(child.func.value)
                if d is not None:
                    targets = aliases.get(d) or [raw(child.func.value)]
                    targets = [t for t in targets if t and (launch_names is None or t.rsplit(".", 1)[-1] in launch_names)]
                    if targets:
                        res.sites.append(RawSite(targets, site(child, stack, guards)))
            walk(child, stack, aliases, guards)

    walk(tree, [], {})


# --------------------------------------------------------------------------
# cheap byte-level prefilters

# Names of functions that may be jit kernels (a superset: any jit-ish decorator,
# or ``name = <...>jit(...)``); only used to pick the files worth parsing for launches.
_NEXT_DEF = re.compile(rb"\bdef[ \t]+(\w+)")
# A jit-ish decorator line, or ``name = <...>jit(``: files without one hold no kernel.
_JIT_SITE = re.compile(rb"^[ \t]*@[\w.]*jit\b|^[ \t]*(\w+)[ \t]*=[ \t]*[\w.]*jit[ \t]*\(", re.M)


def _jit_names(data: bytes) -> set[bytes]:
    """Names of functions that may be jit kernels: a cheap superset.

    The ``def`` after each jit-ish decorator, and ``name = ...jit(...)``;
    only used to pick the files worth parsing for launch sites.
    """
    out = set()
    for m in _JIT_SITE.finditer(data):
        if m.group(1):
            out.add(m.group(1))
            continue
        d = _NEXT_DEF.search(data, m.end(), m.end() + 2000)
        if d:
            out.add(d.group(1))
    return out
_IDENT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_OTHER_DEC = re.compile(rb"^[ \t]*@([\w.]*(?:jit|\.kernel))(?![\w.])[^\n]*\n(?:[ \t]*@[^\n]*\n|[ \t]*#[^\n]*\n)*[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", re.M)


_WORD = re.compile(rb"[A-Za-z_]\w*")


def _mentions(data: bytes, names: set[bytes]) -> bool:
    """Does the file name any possible kernel (an import of one, say)?"""
    return not names.isdisjoint(_WORD.findall(data))


def _launch_candidates(data: bytes, names, *, aliases: bool = True) -> list[int]:
    """Line numbers of ``<name>[...](`` where ``name`` may be a kernel.

    Scans back from each ``](`` to its ``[`` instead of running a regex of
    hundreds of alternatives over every file.
    """
    found = []
    pos = data.find(b"](")
    while pos != -1:
        depth = 0
        i = pos
        stop = max(0, pos - 4000)
        while i > stop:
            c = data[i]
            if c in b"])}":
                depth += 1
            elif c in b"[({":
                depth -= 1
                if depth == 0:
                    break
            i -= 1
        if depth == 0 and data[i : i + 1] == b"[":
            window = data[max(0, i - 200) : i].rstrip()
            j = len(window)
            while j > 0 and window[j - 1] in _IDENT:
                j -= 1
            head = window[j:]
            if head and not head[:1].isdigit():
                last = head.rsplit(b".", 1)[-1]
                if names is None or last in names or (
                    # ``kernel = _a if cond else _b; kernel[grid](...)``: a local alias.
                    # Also ``import k as head`` and tuple unpacking ``_, head, _ = ...``.
                    aliases and b"." not in head
                    and re.search(rb"\b" + re.escape(head) + rb"\s*(?:=[^=]|,)|\bas\s+" + re.escape(head) + rb"\b", data)
                ):
                    found.append(data.count(b"\n", 0, i) + 1)
        pos = data.find(b"](", pos + 2)
    return found


# --------------------------------------------------------------------------
# the whole tree


class _Workers:
    """Parses files in worker processes while the parent goes on reading.

    Parsing dominates discovery; submitting each kernel file as soon as the
    prefilter finds it overlaps that work with reading the rest of the tree.
    """

    def __init__(self, jobs: int):
        self.pool = None
        self.results: list = []
        if jobs > 1:
            import multiprocessing as mp

            try:
                self.pool = mp.get_context("fork").Pool(jobs)
            except (ValueError, OSError):
                self.pool = None

    def submit(self, task) -> None:
        if self.pool is None:
            self.results.append(_analyze(task))
        else:
            self.results.append(self.pool.apply_async(_analyze, (task,)))

    def collect(self) -> list:
        out = [r if isinstance(r, FileResult) else r.get() for r in self.results]
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
        return out

    def abort(self) -> None:
        if self.pool is not None:
            self.pool.terminate()


_CACHE_VERSION = "discover-2"


def discover(path: str | Path, jobs: int | None = None, *, use_cache: bool = True) -> Inventory:
    """Every Triton jit function under ``path``, with calls and launch sites.

    The result is cached against every file's size and mtime, so a second
    ``list``/``scan`` of an unchanged tree does not parse anything.
    """
    root = check_root(path)
    files = list(iter_python_files(root))
    if not files:
        raise UserError(f"{path}: holds no Python files (give the root of a vLLM checkout)")
    key = None
    if use_cache:
        key, cached = _cache_lookup(root, files)
        if cached is not None:
            return cached
    inv = _discover(root, files, jobs)
    if key is not None:
        _cache_store(root, key, inv)
    return inv


def _cache_file(root: Path) -> Path:
    from tritriage.paths import cache_dir

    return cache_dir() / f"inventory-{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.pickle"


def _tree_key(files) -> str:
    h = hashlib.sha1(_CACHE_VERSION.encode())
    # Discovery's own code and data decide the answer too.
    here = Path(__file__).resolve()
    for own in (here, here.parent / "platforms.py", REEXPORTS, *sorted((here.parents[1] / "data").glob("*.yaml"))):
        try:
            h.update(own.read_bytes())
        except OSError:
            pass
    for abspath, rel in files:
        try:
            st = os.stat(abspath)
        except OSError:
            continue
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_lookup(root: Path, files):
    import pickle

    key = _tree_key(files)
    try:
        with open(_cache_file(root), "rb") as f:
            stored_key, inv = pickle.load(f)
        if stored_key == key and isinstance(inv, Inventory):
            return key, inv
    except Exception:  # a missing, stale or unreadable cache only costs a rescan
        pass
    return key, None


def _cache_store(root: Path, key: str, inv: Inventory) -> None:
    import pickle

    target = _cache_file(root)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump((key, inv), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except OSError:
        pass


def _discover(root: Path, files, jobs: int | None) -> Inventory:
    module_files = {module_name(rel): rel for _, rel in files}
    resolver = Resolver(root, module_files)
    jobs = jobs or min(os.cpu_count() or 1, 8)

    skipped: list[SkippedFile] = []
    other: list[OtherJit] = []
    contents: dict[str, bytes] = {}
    def_files: set[str] = set()
    names: set[bytes] = set()
    workers = _Workers(jobs)
    try:
        for abspath, rel in files:
            try:
                data = Path(abspath).read_bytes()
            except OSError as e:
                skipped.append(SkippedFile(rel, f"unreadable: {e.strerror}"))
                continue
            contents[rel] = data
            if b"jit" not in data:
                continue
            if b"triton" in data and _JIT_SITE.search(data):
                # Could hold Triton kernels: parse it now, launch sites included
                # (any name: which ones are kernels is known only at the end).
                # A file that never says "triton" cannot reach Triton's jit,
                # even through vllm.triton_utils.
                def_files.add(rel)
                names |= _jit_names(data)
                workers.submit((abspath, rel, True, None))
            else:
                for m in _OTHER_DEC.finditer(data):
                    other.append(OtherJit(rel, data.count(b"\n", 0, m.start()) + 1 + _leading_newlines(m.group(0)),
                                          m.group(2).decode(), m.group(1).decode()))

        # Files that launch kernels without defining any.
        abs_of = {rel: a for a, rel in files}
        launch_names = frozenset(n.decode() for n in names)
        for rel, data in contents.items():
            if rel in def_files or b"](" not in data:
                continue
            if _launch_candidates(data, names, aliases=_mentions(data, names)):
                workers.submit((abs_of[rel], rel, False, launch_names))
        results = workers.collect()
    except BaseException:
        workers.abort()
        raise
    results.sort(key=lambda r: r.rel)

    # Decide which definitions are Triton kernels, now that re-exports can be followed.
    found: list[tuple[FileResult, RawKernel, dict]] = []
    seen_ids: dict[str, int] = {}
    for r in results:
        if r.skipped:
            skipped.append(SkippedFile(r.rel, r.skipped))
            continue
        for d in r.defs:
            jit = autotune = heuristics = None
            other_dsl = None
            for target, text, kwargs in d.decorators:
                full = resolver.follow(target)
                if full in TRITON_JIT:
                    jit = kwargs
                elif full in TRITON_AUTOTUNE:
                    autotune = text
                elif full in TRITON_HEURISTICS:
                    heuristics = text
                elif _is_other_dsl(full):
                    other_dsl = other_dsl or full
            if jit is None:
                if other_dsl is not None:
                    other.append(OtherJit(r.rel, d.line, d.qualname, other_dsl))
                continue
            kid = f"{r.module}.{d.qualname}"
            # The same name defined twice in one file (version branches) stays two kernels.
            n = seen_ids.get(kid, 0)
            seen_ids[kid] = n + 1
            found.append((r, d, {"id": kid if n == 0 else f"{kid}@{d.line}", "base": kid,
                                 "jit": jit, "autotune": autotune, "heuristics": heuristics}))

    ids = {meta["base"] for _, _, meta in found}

    base_names = {i.rsplit(".", 1)[-1] for i in ids}

    def ref(dotted: str, module: str) -> str | None:
        # Most names a kernel calls are tl.* builtins: skip them before any
        # re-export is followed (which may parse another module).
        if dotted.rsplit(".", 1)[-1] not in base_names:
            return None
        local = f"{module}.{dotted}"
        if local in ids:
            return local
        full = resolver.follow(dotted)
        return full if full in ids else None

    sites: dict[str, list[LaunchSite]] = {}
    for r in results:
        for s in r.sites:
            for t in s.targets:
                kid = ref(t, r.module)
                if kid is not None:
                    sites.setdefault(kid, []).append(s.site)

    called_by: dict[str, set[str]] = {}
    calls_of: dict[str, tuple[str, ...]] = {}
    for r, d, meta in found:
        calls = []
        for c in d.callees:
            kid = ref(c, r.module)
            if kid and kid != meta["base"] and kid not in calls:
                calls.append(kid)
                called_by.setdefault(kid, set()).add(meta["id"])
        calls_of[meta["id"]] = tuple(calls)

    kernels = []
    for r, d, meta in found:
        launched = sites.get(meta["base"], []) if meta["id"] == meta["base"] else []
        if launched:
            kind = "entry"
        elif meta["base"] in called_by:
            kind = "helper"
        else:
            # Neither launched nor called here: a function that returns a value
            # can only be a device helper; one that does not may be launched
            # from outside the checkout.
            kind = "helper" if d.returns_value else "entry"
        kernels.append(
            Kernel(
                id=meta["id"],
                name=d.name,
                qualname=d.qualname,
                module=r.module,
                file=r.rel,
                line=d.line,
                end_line=d.end_line,
                params=d.params,
                do_not_specialize=d.do_not_specialize,
                jit_options=meta["jit"],
                autotune=meta["autotune"],
                heuristics=meta["heuristics"],
                decorators=tuple(text for _, text, _ in d.decorators),
                calls=calls_of[meta["id"]],
                launch_sites=tuple(sorted(launched, key=lambda s: (s.file, s.line))),
                kind=kind,
                source_hash=d.source_hash,
                context_hash=d.context_hash,
            )
        )
    kernels.sort(key=lambda k: (k.file, k.line))
    from tritriage.discover.platforms import mark_platform_only

    kernels = mark_platform_only(kernels, root=root)
    return Inventory(
        root=str(root),
        kernels=tuple(kernels),
        other_jit=tuple(sorted(other, key=lambda o: (o.file, o.line))),
        skipped=tuple(sorted(skipped, key=lambda s: s.file)),
        files_scanned=len(files),
    )


def _is_other_dsl(full: str) -> bool:
    # jit-like decorators of other DSLs: cute.jit, gluon.jit, numba.njit,
    # tilelang_jit, cute.kernel...; torch.jit.script is TorchScript, not a DSL kernel.
    last = full.rsplit(".", 1)[-1]
    if full.startswith("torch.jit"):
        return False
    return last in ("jit", "njit") or last.endswith("_jit") or (last == "kernel" and "." in full)


def _leading_newlines(block: bytes) -> int:
    # _OTHER_DEC matches from the decorator; report the line of the ``def``.
    return block.rstrip(b"\n").count(b"\n")


def find_kernels(inventory: Inventory, name: str) -> list[Kernel]:
    """Kernels matching an id or a bare name (several when the name is ambiguous)."""
    exact = [k for k in inventory.kernels if k.id == name]
    if exact:
        return exact
    return [k for k in inventory.kernels if k.name == name or k.qualname == name or k.id.endswith("." + name)]


def resolve_kernel(inventory: Inventory, name: str) -> Kernel:
    """One kernel by id or bare name; a clear error when unknown or ambiguous."""
    found = find_kernels(inventory, name)
    if not found:
        raise UserError(f"unknown kernel '{name}': no Triton jit function of that name or id in {inventory.root}")
    if len(found) > 1:
        listing = ", ".join(k.id for k in found)
        raise UserError(f"kernel name '{name}' is ambiguous: {listing}; give the full id")
    return found[0]

"""Where constexpr values come from when no catalog gives them.

The launching function (literals and constants it computes), the autotune
decorator's first ``triton.Config``, and the heuristics decorator's lambdas
evaluated on plausible arguments.  Module code is never imported: autotune
config builders are run from their own definitions, with a stand-in
``triton`` that only knows ``Config``, ``next_power_of_2`` and ``cdiv``.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
from pathlib import Path
from typing import Any

from tritriage.specs.infer_ast import DTYPE_NAMES, _arg, _fname, find_function, parse_expr, parse_file
from tritriage.model import Kernel, LaunchSite



# --------------------------------------------------------------------------
# the Ascend host, as launch sites see it (the loader's table: one source of answers)

_STANDINS_FILE = Path(__file__).resolve().parent.parent / "sandbox" / "runtime_standins.json"
_host_notes: list[str] = []
_GUESSED = "?"  # marks an evaluation that took a branch it could not decide

# Where the launch site's value depends on something only the running program
# knows (a test on a tensor's dtype, a caller's bool parameter, an optional
# tensor passed or not), each answer is reachable on Ascend.  An evaluation
# meets such a choice point by name; ``explore`` runs it once per answer.
_choices: dict | None = None


def _alternative(key: str) -> bool:
    """Whether this evaluation takes the other answer at choice point ``key``:
    "test SRC" (taken: SRC is false), "call F(P=V)" (taken: a caller passes V)."""
    if _choices is None:
        return False
    if key not in _choices["seen"]:
        _choices["seen"].append(key)
    return _choices["take"].get(key, False)


def explore(fn, limit: int):
    """``fn()`` under each combination of answers at the choice points it meets,
    the default answers first, breadth first, at most ``limit`` runs:
    a list of (answers taken, value or the exception it raised, choice points met)."""
    global _choices
    out, queue, tried = [], [{}], set()
    while queue and len(out) < limit:
        take = queue.pop(0)
        _choices = {"take": take, "seen": []}
        try:
            try:
                value = fn()
            except _EVAL_ERRORS as e:
                value = e
            seen = list(_choices["seen"])
        finally:
            _choices = None
        out.append((take, value, seen))
        for key in seen:
            nxt = {**take, key: True}
            frozen = frozenset(nxt)
            if key not in take and frozen not in tried:
                tried.add(frozen)
                queue.append(nxt)
    return out


@contextlib.contextmanager
def choices_suspended():
    """Evaluations inside take the default answers and record no choice point
    (a probe whose answers are not the ones a spec is made of)."""
    global _choices
    saved, _choices = _choices, None
    try:
        yield
    finally:
        _choices = saved


def _host_table() -> dict:
    global _HOST
    if _HOST is None:
        import json

        try:
            _HOST = json.loads(_STANDINS_FILE.read_text())
        except (OSError, ValueError):
            _HOST = {}
    return _HOST


_HOST: dict | None = None


class _HostAnswer:
    """A function of the emulated Ascend host: returns the table's answer and notes it."""

    def __init__(self, label: str, value, where: str = ""):
        self.label = label
        self.value = value
        self.where = where  # which part a device property is for

    def __call__(self, *args, **kwargs):
        _host_notes.append(f"{self.label}() -> {self.value!r}{self.where}")
        return self.value


class _HostObject:
    """``current_platform`` and the like, answering as vllm-ascend's NPUPlatform does."""

    def __init__(self, label: str, entry: dict):
        self.label = label
        self.entry = entry

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr in self.entry.get("methods", {}):
            return _HostAnswer(f"{self.label}.{attr}", self.entry["methods"][attr])
        if attr in self.entry.get("attributes", {}):
            value = self.entry["attributes"][attr]
            _host_notes.append(f"{self.label}.{attr} -> {value!r}")
            return value
        raise AttributeError(attr)


# The Ascend part launch sites are evaluated for (num_vectorcore differs
# between a 910B1 and a 910B3); the scan's --arch, through use_arch().
_ARCH: str | None = None


def use_arch(arch: str | None) -> None:
    global _ARCH
    _ARCH = arch


def target_part() -> str:
    from tritriage.sandbox.stages import DEFAULT_ARCH, SOC_OF_FAMILY

    arch = _ARCH or DEFAULT_ARCH
    return SOC_OF_FAMILY.get(arch, arch)


def _device_value(raw):
    """The table's value, with ``device.X`` read from the target part's properties."""
    if isinstance(raw, str) and raw.startswith("device."):
        from tritriage.sandbox.loader import device_properties

        return device_properties(target_part())[raw[len("device."):]]
    return raw


class _DeviceQuery(_HostAnswer):
    """``driver.active.utils.get_device_properties(dev)``: the target part's whole dict."""

    def __call__(self, *args, **kwargs):
        from tritriage.sandbox.loader import device_properties

        _host_notes.append(f"{self.label}() -> {target_part()}'s properties")
        return device_properties(target_part())


def host_name(name: str):
    """What ``name`` is on an Ascend host, when the table says; KeyError otherwise."""
    table = _host_table()
    for entries in table.get("modules", {}).values():
        if name in entries:
            return _HostObject(name, entries[name])
    if name in table.get("helpers", {}):
        raw = table["helpers"][name]
        value = _device_value(raw)
        return _HostAnswer(f"{name}", value) if value is raw else _HostAnswer(name, value, f" ({target_part()})")
    if name in table.get("constants", {}):
        value = table["constants"][name]
        _host_notes.append(f"{name} -> {value!r}")
        return value
    raise KeyError(name)


def _device_query(func: ast.AST) -> _DeviceQuery | None:
    """The table's device query a call names (``...driver.active.utils.get_device_properties``)."""
    try:
        dotted = ast.unparse(func)
    except Exception:  # noqa: BLE001
        return None
    for q in _host_table().get("device_queries", ()):
        if dotted == q or dotted.endswith("." + q):
            return _DeviceQuery(q.rpartition(".")[2], None)
    return None


def host_eval(fn, *args):
    """(value, notes): ``fn(*args)`` and the Ascend answers it consulted."""
    start = len(_host_notes)
    try:
        return fn(*args), tuple(dict.fromkeys(_host_notes[start:]))
    finally:
        del _host_notes[start:]


# How a spec rule says what the emulated host answered (the report reads it back).
AS_ASCEND = "evaluated as Ascend: "


def as_ascend(notes) -> str:
    notes = [n for n in notes if n != _GUESSED]
    return "; " + AS_ASCEND + ", ".join(notes) if notes else ""


class _FakeConfig:
    def __init__(self, kwargs=None, num_warps=4, num_stages=2, num_ctas=1, **rest):
        self.kwargs = dict(kwargs or {})
        self.num_warps = num_warps
        self.num_stages = num_stages
        self.rest = rest

    @property
    def all_kwargs(self):
        return self.kwargs


class _FakeTriton:
    Config = _FakeConfig

    @staticmethod
    def next_power_of_2(n):
        n = int(n)
        return 1 if n <= 1 else 1 << (n - 1).bit_length()

    @staticmethod
    def cdiv(a, b):
        return -(-a // b)

    def __getattr__(self, name):
        raise AttributeError(name)


class _FakeTensor:
    """What a heuristics lambda gets for a tensor argument."""

    def __init__(self, name):
        self.name = name
        self.dtype = _FakeDtype()
        self.shape = (64, 64, 64, 64)
        self.is_cuda = True

    def stride(self, i=None):
        return 1 if i is None else 1

    def numel(self):
        return 4096

    def element_size(self):
        return 2

    def size(self, i=None):
        return 64 if i is not None else self.shape

    def __getattr__(self, name):
        raise AttributeError(name)


class _FakeDtype:
    is_floating_point = True
    itemsize = 2

    def __eq__(self, other):
        return False

    def __hash__(self):
        return 0


def _tl_namespace():
    class _TL:
        def __getattr__(self, name):
            if name in DTYPE_NAMES:
                return _DtypeStr(f"tl.{name}")
            if name == "constexpr":
                return lambda v=None: v
            raise AttributeError(name)
    return _TL()


class _DtypeStr(str):
    pass


def _safe_eval(node: ast.AST, env: dict[str, Any]):
    """Evaluate a small expression: literals, arithmetic, names in env, a few calls."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if isinstance(env, _LazyEnv):
            return env[node.id]  # a helper of the checkout, or the Ascend host's answer
        raise KeyError(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr in DTYPE_NAMES:
            return f"tl.{node.attr}"
        if isinstance(node.value, ast.Name):
            base = _safe_eval(node.value, env)
            if isinstance(base, _HostObject):
                return getattr(base, node.attr)
        raise KeyError(ast.unparse(node))
    if isinstance(node, ast.BoolOp):
        # Short-circuit as Python does: on Ascend ``is_cuda() and x`` is
        # False whatever x is, and x (a tensor's dtype, say) need not be known.
        result = None
        for v in node.values:
            result = _safe_eval(v, env)
            if isinstance(node.op, ast.And) and not result or isinstance(node.op, ast.Or) and result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        v = _safe_eval(node.operand, env)
        return {ast.USub: lambda x: -x, ast.UAdd: lambda x: +x, ast.Not: lambda x: not x}[type(node.op)](v)
    if isinstance(node, ast.BinOp):
        a, b = _safe_eval(node.left, env), _safe_eval(node.right, env)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.FloorDiv: lambda: a // b,
               ast.Mod: lambda: a % b, ast.Div: lambda: a / b, ast.Pow: lambda: a ** b, ast.LShift: lambda: a << b,
               ast.RShift: lambda: a >> b}
        return ops[type(node.op)]()
    if isinstance(node, ast.IfExp):
        try:
            test = _safe_eval(node.test, env)
        except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError):
            # Either branch is reachable (fp16 or fp32 queries): a choice point.
            if _alternative(f"test {_test_source(node.test, env)}"):
                return _safe_eval(node.orelse, env)
            _host_notes.append(_GUESSED)
            return _safe_eval(node.body, env)
        return _safe_eval(node.body, env) if test else _safe_eval(node.orelse, env)
    if isinstance(node, ast.Subscript):
        base = _safe_eval(node.value, env)
        if isinstance(base, dict):
            return base[_safe_eval(node.slice, env)]
        raise KeyError(ast.unparse(node))
    if isinstance(node, ast.Call):
        name = _fname(node)
        query = _device_query(node.func)
        if query is not None:
            return query()
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            base = _safe_eval(node.func.value, env)
            if isinstance(base, dict):
                key = _safe_eval(node.args[0], env)
                return base[key] if key in base else (_safe_eval(node.args[1], env) if len(node.args) > 1 else None)
        if isinstance(node.func, (ast.Name, ast.Attribute)):
            try:
                fn = _safe_eval(node.func, env)
            except KeyError:
                fn = None
            if isinstance(fn, _HostAnswer):
                return fn()
        args = [_safe_eval(a, env) for a in node.args]
        if name == "next_power_of_2":
            return _FakeTriton.next_power_of_2(args[0])
        if name == "cdiv":
            return -(-args[0] // args[1])
        if name in ("min", "max") and isinstance(node.func, ast.Name):
            return min(*args) if name == "min" else max(*args)
        if name in ("int", "bool") and isinstance(node.func, ast.Name):
            return int(args[0]) if name == "int" else bool(args[0])
        if name == "constexpr":
            return args[0]
        raise KeyError(name)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        a, b = _safe_eval(node.left, env), _safe_eval(node.comparators[0], env)
        op = node.ops[0]
        table = {ast.Eq: a == b, ast.NotEq: a != b}
        if type(op) in table:
            return table[type(op)]
        if isinstance(op, ast.Is):
            return a is b
        if isinstance(op, ast.IsNot):
            return a is not b
        return {ast.Lt: lambda: a < b, ast.LtE: lambda: a <= b, ast.Gt: lambda: a > b, ast.GtE: lambda: a >= b}[type(op)]()
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_safe_eval(e, env) for e in node.elts]
    raise KeyError(type(node).__name__)


_EVAL_ERRORS = (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError, IndexError, RecursionError)


def _is_value(v) -> bool:
    return isinstance(v, (bool, int, float, str, type(None)))


class CallerEnv:
    """Constants of a launching function: simple assignments and its parameters' defaults.

    Each assignment in the function keeps the ``if`` arms it sits in, so that a
    name bound in both arms of an ``if`` takes the arm whose test holds (or,
    where the test cannot be decided, each arm is a choice point), and a
    parameter default that the function replaces when it is given as is
    (``if rope_dim == -1: rope_dim = ...``) is known to mean "not given"."""

    def __init__(self, root: Path, site: LaunchSite):
        self.site = site
        self.root = root
        self.assigns: dict[str, list[tuple[int, ast.AST]]] = {}
        # (name, line) -> the enclosing branches of that assignment: ((If node, arm), ...),
        # a loop as (loop node, None); absent for module constants and defaults.
        self.guards: dict[tuple[str, int], tuple] = {}
        self.site_path: tuple = ()
        self.params: set[str] = set()
        self.sentinels: set[str] = set()  # parameters whose default means "not given"
        # Values an evaluation assumes for caller variables no launch value is
        # known for: name -> (value, why); set by inference, read first.
        self.seeds: dict[str, tuple[Any, str]] = {}
        self.seeds_read: list[str] = []
        tree = parse_file(root, site.file)
        self.fn = find_function(tree, site.function) if tree is not None else None
        if tree is not None:
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.assigns.setdefault(node.targets[0].id, []).append((node.lineno, node.value))
        self.defaults: dict[str, int] = {}  # parameter -> the line its default is bound at
        if self.fn is not None:
            args = self.fn.args
            pos = list(args.posonlyargs) + list(args.args)
            self.params = {a.arg for a in pos + list(args.kwonlyargs)}
            for a, d in zip(pos[len(pos) - len(args.defaults):], args.defaults):
                self.assigns[a.arg] = [(self.fn.lineno, d)]
                self.defaults[a.arg] = self.fn.lineno
            for a, d in zip(args.kwonlyargs, args.kw_defaults):
                if d is not None:
                    self.assigns[a.arg] = [(self.fn.lineno, d)]
                    self.defaults[a.arg] = self.fn.lineno
            self._visit(self.fn.body, ())
            self._find_sentinels()

    def _bind(self, name: str, line: int, value, path: tuple):
        self.assigns.setdefault(name, []).append((line, value))
        if path:
            self.guards[(name, line)] = path

    def _visit(self, stmts, path: tuple):
        for st in stmts:
            if st.lineno <= self.site.line <= (st.end_lineno or st.lineno):
                self.site_path = max(self.site_path, path, key=len)
            if isinstance(st, ast.Assign):
                if len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                    self._bind(st.targets[0].id, st.lineno, st.value, path)
                else:
                    # `BLOCK_SIZE, num_warps = pick(...)` rebinds a parameter whose
                    # default (often None) must not stand for the launched value.
                    for t in st.targets:
                        for n in ast.walk(t):
                            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                                self._bind(n.id, st.lineno, None, path)
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                self._bind(st.target.id, st.lineno, st.value, path)
            elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
                self._bind(st.target.id, st.lineno,
                           ast.BinOp(left=ast.Name(st.target.id, ast.Load()), op=st.op, right=st.value), path)
            if isinstance(st, ast.If):
                self._visit(st.body, path + ((st, 0),))
                self._visit(st.orelse, path + ((st, 1),))
            elif isinstance(st, (ast.For, ast.AsyncFor, ast.While)):
                for n in ast.walk(st.target) if not isinstance(st, ast.While) else ():
                    if isinstance(n, ast.Name):
                        self._bind(n.id, st.lineno, None, path + ((st, None),))
                self._visit(st.body, path + ((st, None),))
                self._visit(st.orelse, path + ((st, None),))
            else:
                for field_name in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(st, field_name, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], (ast.stmt, ast.excepthandler)):
                        self._visit(inner, path)

    def _find_sentinels(self):
        """Parameters replaced under a test their default passes (``if x is None: x = ...``,
        ``if rope_dim == -1: rope_dim = ...``): the default is "not given", not a value."""
        if not self.defaults:
            return
        for node in ast.walk(self.fn):
            if not isinstance(node, ast.If):
                continue
            stored = {n.id for b in node.body if isinstance(b, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                      for t in (b.targets if isinstance(b, ast.Assign) else [b.target]) for n in ast.walk(t)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            for name in self.defaults:
                if name not in stored:
                    continue
                try:
                    default = ast.literal_eval(self.assigns[name][0][1])
                    holds = _safe_eval(node.test, {name: default})
                except (*_EVAL_ERRORS, SyntaxError):
                    continue
                if holds:
                    self.sentinels.add(name)

    def helper(self, name: str):
        """A function of the caller's module (or imported into it from the checkout)
        whose body is one ``return EXPR``: a callable evaluating EXPR here
        (``supports_pdl(device)`` -> ``current_platform.is_cuda() and ...``)."""
        node = _single_return_function(self.root, self.site.file, name)
        if node is None:
            return None
        env = CallerEnv(self.root, self.site)
        env.assigns = {}
        tree = parse_file(self.root, node[0])
        if tree is not None:
            for st in tree.body:
                if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                    env.assigns.setdefault(st.targets[0].id, []).append((0, st.value))
        expr = node[1]
        outer = self

        class _Call(_HostAnswer):
            def __call__(self, *args, **kwargs):
                return _safe_eval(expr, _LazyEnv(env, outer_depth_guard(outer)))

        return _Call(name, None)

    def value(self, src: str):
        try:
            node = parse_expr(src)
        except SyntaxError:
            raise KeyError(src)
        return _safe_eval(node, _LazyEnv(self))


def _test_source(test: ast.AST, env) -> str:
    """A test as the user reads it: a name the caller computed shows its expression."""
    text = ast.unparse(test)
    if isinstance(test, ast.Name) and isinstance(env, _LazyEnv):
        bound = env.env.assigns.get(test.id) or []
        if bound and bound[-1][1] is not None:
            text = f"{text} ({ast.unparse(bound[-1][1])})"
    return text


class _Passed:
    """An optional argument the caller was given: not None, no value known here."""


class _LazyEnv(dict):
    """A caller's names as the program sees them at one point: the launch by
    default, else ``at`` = (line, enclosing branches) of the statement being
    evaluated (an assignment's value reads the names bound before it)."""

    def __init__(self, env: CallerEnv, depth=0, at: tuple | None = None, sentinels_given: bool = False):
        super().__init__()
        self.env = env
        self.depth = depth
        self.at = at
        # A test that replaces a "not given" default reads the default itself.
        self.sentinels_given = sentinels_given

    def __contains__(self, key):
        return key in self.env.seeds or key in self.env.assigns

    def _where(self):
        return self.at if self.at is not None else (self.env.site.line + 1, self.env.site_path)

    def _in_force(self, key):
        """(line, value) of the assignment of ``key`` the program holds here."""
        before, path = self._where()
        cands = [(ln, v) for ln, v in self.env.assigns[key] if ln < before] or self.env.assigns[key]
        for ln, v in reversed(cands):
            guard = self.env.guards.get((key, ln))
            if guard is None or self._reached(guard, path):
                return ln, v
        raise KeyError(key)  # bound only in branches this path does not take

    def _reached(self, guard: tuple, path: tuple) -> bool:
        """Whether an assignment under ``guard`` ran before a point under ``path``."""
        i = 0
        while i < min(len(guard), len(path)) and guard[i] == path[i]:
            i += 1
        if i < len(path) and i < len(guard) and guard[i][0] is path[i][0]:
            return False  # the other arm of an ``if`` the point is in
        for j in range(i, len(guard)):
            node, arm = guard[j]
            if arm is None:
                continue  # a loop body: it may have run
            try:
                holds = bool(_safe_eval(node.test, _LazyEnv(self.env, self.depth + 1, (node.lineno, guard[:j]), True)))
            except _EVAL_ERRORS:
                # Either arm is reachable: a choice point, the ``if`` arm first.
                holds = not _alternative(f"test {_test_source(node.test, self)}")
                _host_notes.append(_GUESSED)
            if holds != (arm == 0):
                return False
        return True

    def __getitem__(self, key):
        if key in self.env.seeds:
            self.env.seeds_read.append(key)
            return self.env.seeds[key][0]
        if key not in self.env.assigns and self.depth <= 8:
            found = self.env.helper(key)
            if found is not None:
                return found
            try:
                return host_name(key)
            except KeyError:
                # A constant imported from the checkout (``from . import BLOCK``).
                ok, value = _imported_constant(self.env.root, self.env.site.file, key)
                if ok:
                    return value
                raise
        if self.depth > 8 or key not in self.env.assigns:
            raise KeyError(key)
        ln, node = self._in_force(key)
        if node is None:
            raise KeyError(key)  # bound by unpacking, or a tensor: no value this evaluator knows
        is_default = key in self.env.defaults and ln == self.env.defaults[key]
        if is_default and key in self.env.sentinels and not self.sentinels_given:
            raise KeyError(key)  # "not given": the launch has the caller's value, unknown here
        # A default reads the module as the ``def`` line does; an assignment, what was bound before it.
        at = (ln, self.env.guards.get((key, ln), ()))
        value = _safe_eval(node, _LazyEnv(self.env, self.depth + 1, at, self.sentinels_given))
        if is_default and key not in self.env.sentinels:
            # Only the parameter's default is known: a caller may pass the other value.
            fn = self.env.fn.name if self.env.fn is not None else "the caller"
            if isinstance(value, bool) and _alternative(f"call {fn}({key}={not value})"):
                return not value
            if value is None and _alternative(f"call {fn}({key}=<given>)"):
                return _Passed()
        return value


def outer_depth_guard(env) -> int:
    return 4


def _single_return_function(root: Path, rel: str, name: str, depth: int = 0):
    """(file, return expression) of a module-level function ``name`` visible in ``rel``
    whose body is a docstring and one ``return``; follows ``from X import name``
    into the checkout."""
    tree = parse_file(root, rel)
    if tree is None or depth > 3:
        return None
    for st in tree.body:
        if isinstance(st, ast.FunctionDef) and st.name == name:
            body = [b for b in st.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
            if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
                return rel, body[0].value
            return None
    for st in tree.body:
        if isinstance(st, ast.ImportFrom) and any((a.asname or a.name) == name for a in st.names):
            a = next(a for a in st.names if (a.asname or a.name) == name)
            cand = _import_source(root, rel, st)
            return _single_return_function(root, cand, a.name, depth + 1) if cand else None
    return None


def _import_source(root: Path, rel: str, st: ast.ImportFrom) -> str | None:
    """The checkout file a ``from X import ...`` in ``rel`` reads."""
    if st.level:
        parts = rel.split("/")[:-1]
        parts = parts[: len(parts) - (st.level - 1)] if st.level > 1 else parts
        base = "/".join(parts + (st.module.split(".") if st.module else []))
    else:
        base = (st.module or "").replace(".", "/")
    for cand in (base + ".py", base + "/__init__.py"):
        if (root / cand).is_file():
            return cand
    return None


def _imported_constant(root: Path, rel: str, name: str, depth: int = 0):
    """(True, value) of a literal module constant ``name`` imported into ``rel``
    from the checkout, through re-exports; (False, None) otherwise."""
    tree = parse_file(root, rel)
    if tree is None or depth > 4:
        return False, None
    if depth:
        for st in tree.body:
            if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in st.targets):
                try:
                    value = ast.literal_eval(st.value)
                except (ValueError, SyntaxError, TypeError):
                    return False, None
                return (True, value) if _is_value(value) else (False, None)
    for st in tree.body:
        if isinstance(st, ast.ImportFrom) and any((a.asname or a.name) == name for a in st.names):
            a = next(a for a in st.names if (a.asname or a.name) == name)
            src = _import_source(root, rel, st)
            if src is None:
                # ``from . import NAME``: NAME may be the package's constant, not a module.
                return False, None
            return _imported_constant(root, src, a.name, depth + 1)
    return False, None


def _literal(src: str):
    try:
        return True, ast.literal_eval(src)
    except (ValueError, SyntaxError, TypeError):
        m = re.fullmatch(r"(?:tl|triton\.language)\.(\w+)", src.strip())
        if m and m.group(1) in DTYPE_NAMES:
            return True, f"tl.{m.group(1)}"
        return False, None


def _module_namespace(root: Path, rel: str) -> dict[str, Any]:
    """Module-level functions and constants of a kernel file, defined with fake triton.

    Autotune configs are often built by a helper function of the module; only
    definitions and literal assignments are executed, never the module's imports.
    """
    tree = parse_file(root, rel)
    ns: dict[str, Any] = {"triton": _FakeTriton(), "tl": _tl_namespace(), "math": math, "itertools": __import__("itertools"),
                          "__builtins__": __builtins__}
    if tree is None:
        return ns
    for node in tree.body:
        try:
            if isinstance(node, ast.FunctionDef) and not node.decorator_list:
                exec(compile(ast.Module(body=[node], type_ignores=[]), rel, "exec"), ns)
            elif isinstance(node, ast.Assign):
                exec(compile(ast.Module(body=[node], type_ignores=[]), rel, "exec"), ns)
        except Exception:  # noqa: BLE001 - anything the module does at import is not ours to fix
            continue
    return ns


def first_autotune_config(kernel: Kernel, root: Path) -> tuple[dict, dict] | None:
    """(kwargs, options) of the first ``triton.Config`` of the autotune decorator."""
    if not kernel.autotune:
        return None
    try:
        call = ast.parse(kernel.autotune.lstrip("@"), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call):
        return None
    configs = _arg(call, 0, "configs")
    if configs is None:
        return None
    ns = _module_namespace(root, kernel.file)
    try:
        value = eval(compile(ast.Expression(configs), kernel.file, "eval"), ns)  # noqa: S307
        value = list(value)
    except Exception:  # noqa: BLE001
        return None
    for cfg in value:
        if isinstance(cfg, _FakeConfig):
            opts = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
            return dict(cfg.kwargs), {k: v for k, v in opts.items() if isinstance(v, int)}
    return None


def heuristics_values(kernel: Kernel, root: Path, known: dict[str, Any], tensors: set[str]) -> dict[str, tuple[Any, str]]:
    """Value per heuristics key, evaluating each lambda on plausible arguments."""
    if not kernel.heuristics:
        return {}
    try:
        call = ast.parse(kernel.heuristics.lstrip("@"), mode="eval").body
    except SyntaxError:
        return {}
    if not isinstance(call, ast.Call) or not call.args:
        return {}
    table = call.args[0]
    ns = _module_namespace(root, kernel.file)
    if not isinstance(table, ast.Dict):
        try:
            table_v = eval(compile(ast.Expression(table), kernel.file, "eval"), ns)  # noqa: S307
        except Exception:  # noqa: BLE001
            return {}
        items = [(k, v, None) for k, v in table_v.items()]
    else:
        items = []
        for k, v in zip(table.keys, table.values):
            if isinstance(k, ast.Constant):
                items.append((k.value, None, v))
    args = _FakeArgs(known, tensors)
    out: dict[str, tuple[Any, str]] = {}
    for key, fn, node in items:
        try:
            if fn is None:
                fn = eval(compile(ast.Expression(node), kernel.file, "eval"), ns)  # noqa: S307
            value = fn(args)
            if isinstance(value, _DtypeStr):
                value = str(value)
            if hasattr(value, "item"):
                value = value.item()
            if not _is_value(value):
                raise TypeError(type(value).__name__)
            out[key] = (value, f"heuristics: {ast.unparse(node) if node is not None else key}")
            args[key] = value
        except Exception:  # noqa: BLE001 - a lambda that needs real tensors
            out[key] = (None, "")
    return out


class _FakeArgs(dict):
    """Arguments as a heuristics lambda sees them: known constexprs, else plausible sizes."""

    def __init__(self, known, tensors):
        super().__init__(known)
        self.tensors = tensors

    def __missing__(self, key):
        if key in self.tensors:
            return _FakeTensor(key)
        return 256

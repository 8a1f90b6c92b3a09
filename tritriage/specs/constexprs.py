"""Where constexpr values come from when no catalog gives them.

The launching function (literals and constants it computes), the autotune
decorator's first ``triton.Config``, and the heuristics decorator's lambdas
evaluated on plausible arguments.  Module code is never imported: autotune
config builders are run from their own definitions, with a stand-in
``triton`` that only knows ``Config``, ``next_power_of_2`` and ``cdiv``.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

from tritriage.specs.infer_ast import DTYPE_NAMES, _arg, _fname, find_function, parse_file
from tritriage.model import Kernel, LaunchSite



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
        raise KeyError(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr in DTYPE_NAMES:
            return f"tl.{node.attr}"
        raise KeyError(ast.unparse(node))
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
            return _safe_eval(node.body, env) if _safe_eval(node.test, env) else _safe_eval(node.orelse, env)
        except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError):
            return _safe_eval(node.body, env)
    if isinstance(node, ast.Call):
        name = _fname(node)
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
    """Constants of a launching function: simple assignments and its parameters' defaults."""

    def __init__(self, root: Path, site: LaunchSite):
        self.site = site
        self.assigns: dict[str, list[tuple[int, ast.AST]]] = {}
        tree = parse_file(root, site.file)
        self.fn = find_function(tree, site.function) if tree is not None else None
        if tree is not None:
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.assigns.setdefault(node.targets[0].id, []).append((node.lineno, node.value))
        if self.fn is not None:
            args = self.fn.args
            pos = list(args.posonlyargs) + list(args.args)
            for a, d in zip(pos[len(pos) - len(args.defaults):], args.defaults):
                self.assigns[a.arg] = [(self.fn.lineno, d)]
            for a, d in zip(args.kwonlyargs, args.kw_defaults):
                if d is not None:
                    self.assigns[a.arg] = [(self.fn.lineno, d)]
            for node in ast.walk(self.fn):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.assigns.setdefault(node.targets[0].id, []).append((node.lineno, node.value))

    def value(self, src: str):
        try:
            node = ast.parse(src, mode="eval").body
        except SyntaxError:
            raise KeyError(src)
        return _safe_eval(node, _LazyEnv(self))


class _LazyEnv(dict):
    def __init__(self, env: CallerEnv, depth=0):
        super().__init__()
        self.env = env
        self.depth = depth

    def __contains__(self, key):
        return key in self.env.assigns

    def __getitem__(self, key):
        if self.depth > 8 or key not in self.env.assigns:
            raise KeyError(key)
        # The last assignment before the launch is the one in force on the straight path.
        cands = [(ln, v) for ln, v in self.env.assigns[key] if ln <= self.env.site.line] or self.env.assigns[key]
        return _safe_eval(cands[-1][1], _LazyEnv(self.env, self.depth + 1))


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

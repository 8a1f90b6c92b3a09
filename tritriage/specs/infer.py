"""Infer a spec for a kernel the catalog does not know, from its source alone.

Types come from what the body does with each parameter:

* pointer or scalar: a parameter that is the base of the address expression
  given to ``tl.load`` / ``tl.store`` / ``tl.atomic_*`` / ``tl.make_block_ptr``
  (directly or through locals and jit helpers) is a pointer; one used as a
  multiplier, loop bound or comparison operand is a scalar.
* element type: values loaded through a pointer and then used as offsets,
  loop bounds or shift operands are integers; values fed to ``tl.dot``,
  ``tl.exp``... or mixed with float literals are floating point.  A pointer
  that receives a stored value takes that value's class.
* name hints (``tritriage/data/name_heuristics.yaml``) settle what use leaves
  open.

Constexpr values come, in this order, from a literal at a launch site, a
constant the calling function computes, the first autotune config, the
heuristics decorator, the parameter's default, a name hint, and finally how
the body uses it (``tl.arange`` bound, comparison with a literal).

Each decision is written to ``Spec.rules`` so a reader can see and override it.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritriage import yamlio
from tritriage.specs.constexprs import (
    _EVAL_ERRORS,
    CallerEnv,
    _DtypeStr,
    _is_value,
    _literal,
    as_ascend,
    choices_suspended,
    explore,
    first_autotune_config,
    host_eval,
    heuristics_values,
)
from tritriage.specs.infer_ast import DTYPE_NAMES, _arg, _dtype_of, _fname, find_def, parse_expr, parse_file
from tritriage.model import Inventory, Kernel, Spec

HEURISTICS_FILE = Path(__file__).resolve().parent.parent / "data" / "name_heuristics.yaml"

LOAD_FNS = {"load"}
STORE_FNS = {"store"}
ATOMIC_PREFIX = "atomic_"
FLOAT_FNS = {
    "dot", "exp", "exp2", "log", "log2", "sqrt", "sqrt_rn", "rsqrt", "sigmoid", "sin", "cos", "tanh", "erf",
    "softmax", "fdiv", "div_rn", "fma", "log1p", "expm1", "pow", "dot_scaled", "floor", "ceil",
}
# Math functions upstream Triton accepts only on fp32/fp64.
FP32_FNS = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "erf", "log1p", "expm1", "tanh", "floor", "ceil"}
COMPUTED = "<computed>"  # a tl.dot operand that is no pointer's data as loaded (an fp32 product, say)
INT_FNS = {"arange", "program_id", "num_programs", "cdiv", "multiple_of", "max_contiguous"}
# Calls whose value is an index into their argument, not its data.
INDEX_FNS = {"argmax", "argmin"}
# Calls whose value is their first argument's (shape or layout changes only).
PASS_FNS = {
    "reshape", "view", "broadcast_to", "expand_dims", "trans", "permute", "where", "maximum", "minimum",
    "max_constancy", "multiple_of", "max_contiguous", "abs", "sum", "max", "min", "cumsum", "clamp",
    "advance", "split", "join", "ravel", "flip", "xor_sum", "reduce", "associative_scan",
    "to", "cast", "interleave", "static_assert",
}
_WIDTH = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64, "int8": 8, "int16": 16, "int32": 32, "int64": 64,
          "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "float8e4nv": 8, "float8e5": 8, "float8e4b15": 8,
          "float8e4b8": 8, "float8e5b16": 8}
# (width, target is an integer) -> what the memory most plausibly holds.
_SAME_WIDTH_OTHER = {(8, True): "uint8", (8, False): "uint8", (16, True): "float16", (16, False): "int16",
                     (32, True): "float32", (32, False): "int32", (64, True): "float64", (64, False): "int64"}
INT_DTYPES = {"int1", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


# --------------------------------------------------------------------------
# name hints


@dataclass(frozen=True)
class Hints:
    pointer: tuple[re.Pattern, ...]
    int_element: tuple[tuple[re.Pattern, str], ...]
    float_element: tuple[tuple[re.Pattern, str], ...]
    pointer_element: tuple[tuple[re.Pattern, str], ...]
    scalar: tuple[tuple[re.Pattern, str], ...]
    constexpr: tuple[tuple[re.Pattern, Any], ...]

    @staticmethod
    def first(rules, name):
        for pat, value in rules:
            if pat.search(name):
                return pat.pattern, value
        return None


@functools.lru_cache(maxsize=4)
def load_hints(path: str | None = None) -> Hints:
    data = yamlio.load(Path(path or HEURISTICS_FILE).read_text())

    def pairs(key, field_):
        return tuple((re.compile(r["match"]), r[field_]) for r in data.get(key, []))

    return Hints(
        pointer=tuple(re.compile(p) for p in data.get("pointer", [])),
        int_element=pairs("int_element", "type"),
        float_element=pairs("float_element", "type"),
        pointer_element=pairs("pointer_element", "type"),
        scalar=pairs("scalar", "type"),
        constexpr=pairs("constexpr", "value"),
    )


# --------------------------------------------------------------------------
# body analysis


@dataclass
class ParamFacts:
    pointer: list[str] = field(default_factory=list)  # evidence it is a pointer
    scalar: list[str] = field(default_factory=list)  # evidence it is a scalar
    elem: dict[str, list[str]] = field(default_factory=lambda: {"int": [], "float": []})  # loaded values
    value: dict[str, list[str]] = field(default_factory=lambda: {"int": [], "float": []})  # scalar itself
    store_like: set[str] = field(default_factory=set)  # pointers whose type this one shares
    elem_dtype: str | None = None  # from a .to(tl.pointer_type(tl.X)) or similar
    elem_why: str = "use:.to(tl.pointer_type)"  # what set elem_dtype
    needs_fp32: bool = False  # loaded values reach tl.exp/tl.log... uncast
    dot_peers: set[str] = field(default_factory=set)  # pointers feeding the other tl.dot operand
    in_dot: bool = False  # loaded values reach a tl.dot operand uncast
    compared_with: list[Any] = field(default_factory=list)  # literals a constexpr is compared with
    uses: set[str] = field(default_factory=set)  # for constexprs: arange, bool, dtype


@dataclass
class Summary:
    params: list[str]
    constexprs: set[str]
    facts: dict[str, ParamFacts]


class BodyAnalysis:
    """Flow-insensitive dataflow over one jit function's body."""

    def __init__(self, fn: ast.FunctionDef, params: list[str], constexprs: set[str], helpers):
        self.fn = fn
        # Every pass visits the whole body: walk it once.
        self.nodes = tuple(ast.walk(fn))
        self.params = params
        self.pset = set(params)
        self.constexprs = constexprs
        self.helpers = helpers  # callable name -> Summary | None
        self.facts = {p: ParamFacts() for p in params}
        self.defs: dict[str, list[ast.AST]] = {}
        self.int_locals: set[str] = set()
        self._collect_defs()
        # Answers of bases() and sources() for whole expressions, asked again
        # and again by every pass: id -> (expr, ...), the expr held so that its
        # id is not reused.  bases() reads only what _collect_defs fixed;
        # sources() also which parameters have scalar evidence.
        self._bases: dict[int, tuple] = {}
        self._sources: dict[int, tuple] = {}

    # -- definitions of locals
    def _collect_defs(self):
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    self._bind(t, node.value)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
                if isinstance(node, ast.AugAssign):
                    self._bind(node.target, ast.BinOp(left=node.target, op=node.op, right=node.value))
                else:
                    self._bind(node.target, node.value)
            elif isinstance(node, ast.For):
                for n in ast.walk(node.target):
                    if isinstance(n, ast.Name):
                        self.int_locals.add(n.id)
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target, node.value)

    def _bind(self, target, value):
        if isinstance(target, ast.Name):
            # Parameters too: ``ptr += step`` keeps it the same kind, and its offsets count.
            self.defs.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self._bind(t, v)
            else:
                for t in target.elts:
                    if isinstance(t, ast.Name):
                        self.defs.setdefault(t.id, []).append(ast.Call(func=ast.Name("__opaque__"), args=[value], keywords=[]))

    # -- what parameters an address expression is based on, in order
    def bases(self, expr, seen=None) -> list[str]:
        if seen is None:
            hit = self._bases.get(id(expr))
            if hit is None or hit[0] is not expr:
                hit = self._bases[id(expr)] = (expr, tuple(self._bases_of(expr, set())))
            return list(hit[1])
        return self._bases_of(expr, seen)

    def _bases_of(self, expr, seen) -> list[str]:
        if isinstance(expr, ast.Name):
            if expr.id in self.pset and expr.id not in self.constexprs:
                return [expr.id]
            if expr.id in seen or expr.id in self.int_locals:
                return []
            seen.add(expr.id)
            out = []
            for d in self.defs.get(expr.id, []):
                for b in self.bases(d, seen):
                    if b not in out:
                        out.append(b)
            return out
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Add):
                return _uniq(self.bases(expr.left, seen) + self.bases(expr.right, seen))
            if isinstance(expr.op, ast.Sub):
                return self.bases(expr.left, seen)
            return []
        if isinstance(expr, ast.Subscript):
            return self.bases(expr.value, seen)
        if isinstance(expr, ast.IfExp):
            return _uniq(self.bases(expr.body, seen) + self.bases(expr.orelse, seen))
        if isinstance(expr, ast.Call):
            name = _fname(expr)
            if name == "make_block_ptr" or name == "make_tensor_descriptor":
                base = _arg(expr, 0, "base")
                return self.bases(base, seen) if base is not None else []
            if name == "where":
                return _uniq(self.bases(_arg(expr, 1, "x") or ast.Constant(0), seen)
                             + self.bases(_arg(expr, 2, "y") or ast.Constant(0), seen))
            if name in ("advance", "broadcast_to", "reshape", "view", "expand_dims", "multiple_of",
                        "max_contiguous", "max_constancy"):
                first = _arg(expr, 0, "input") or (expr.args[0] if expr.args else None)
                return self.bases(first, seen) if first is not None else []
            if name == "to" and isinstance(expr.func, ast.Attribute):
                return self.bases(expr.func.value, seen)
            return []
        return []

    def pointer_of(self, expr) -> str | None:
        """The parameter an address expression is based on."""
        cands = self.bases(expr)
        if not cands:
            return None
        # A candidate with scalar evidence is the offset, not the base.
        for c in cands:
            if not self.facts[c].scalar:
                return c
        return cands[0]

    # -- which pointers' loaded values flow into an expression
    def sources(self, expr, seen=None) -> set[str]:
        if seen is None:
            scalar = frozenset(p for p, f in self.facts.items() if f.scalar)
            hit = self._sources.get(id(expr))
            if hit is None or hit[0] is not expr or hit[1] != scalar:
                hit = self._sources[id(expr)] = (expr, scalar, frozenset(self._sources_of(expr, set())))
            return set(hit[2])
        return self._sources_of(expr, seen)

    def _sources_of(self, expr, seen) -> set[str]:
        out: set[str] = set()
        if isinstance(expr, ast.Name):
            if expr.id in self.pset:
                return set()
            if expr.id in seen:
                return set()
            seen.add(expr.id)
            for d in self.defs.get(expr.id, []):
                out |= self.sources(d, seen)
            return out
        if isinstance(expr, ast.Call):
            name = _fname(expr)
            if name in LOAD_FNS or name.startswith(ATOMIC_PREFIX):
                p = self.pointer_of(expr.args[0]) if expr.args else None
                if p is None and expr.keywords:
                    ptr = _arg(expr, 0, "pointer")
                    p = self.pointer_of(ptr) if ptr is not None else None
                return {p} if p else set()
            if name in INT_FNS or name in FLOAT_FNS or name in INDEX_FNS:
                return set()
            if name == "to" and isinstance(expr.func, ast.Attribute):
                return self.sources(expr.func.value, seen)
            for a in list(expr.args) + [k.value for k in expr.keywords]:
                out |= self.sources(a, seen)
            if isinstance(expr.func, ast.Attribute) and not _is_tl(expr.func):
                out |= self.sources(expr.func.value, seen)
            return out
        if isinstance(expr, ast.Attribute):
            return set()  # x.dtype, x.shape: metadata, not data
        if isinstance(expr, ast.Compare):
            return set()  # a comparison's value is a bool, not the data compared
        for child in ast.iter_child_nodes(expr):
            out |= self.sources(child, seen)
        return out

    def direct_sources(self, expr, seen=None, depth=0) -> set[str]:
        """Pointers whose loaded values reach expr with no cast on the way."""
        seen = set() if seen is None else seen
        if depth > 8:
            return set()
        if isinstance(expr, ast.Name):
            if expr.id in self.pset or expr.id in seen:
                return set()
            seen.add(expr.id)
            out = set()
            for d in self.defs.get(expr.id, []):
                out |= self.direct_sources(d, seen, depth + 1)
            return out
        if isinstance(expr, ast.Call):
            name = _fname(expr)
            if name in LOAD_FNS:
                return self.sources(expr)
            if name in ("to", "cast", "zeros", "full", "dot"):
                return set()
            if name in ("where", "maximum", "minimum", "max", "sum", "min", "reshape", "broadcast_to", "abs", "trans"):
                out = set()
                for a in expr.args:
                    out |= self.direct_sources(a, seen, depth + 1)
                return out
            return set()
        if isinstance(expr, ast.BinOp):
            if self.kind(expr.left) == "float" and not self.direct_sources(expr.left, set(seen), depth + 1):
                return set()  # mixed with an fp32 value: promoted already
            return self.direct_sources(expr.left, seen, depth + 1) | self.direct_sources(expr.right, seen, depth + 1)
        if isinstance(expr, (ast.UnaryOp, ast.Subscript)):
            inner = expr.operand if isinstance(expr, ast.UnaryOp) else expr.value
            return self.direct_sources(inner, seen, depth + 1)
        return set()

    def params_in(self, expr) -> set[str]:
        """Scalar parameters used as values (not as pointer bases) in expr."""
        out = set()
        for n in ast.walk(expr):
            if isinstance(n, ast.Name) and n.id in self.pset and n.id not in self.constexprs:
                out.add(n.id)
        return out

    def kind(self, expr, seen=None, depth=0) -> str | None:
        """'float' / 'int' when the expression's class is evident."""
        if depth > 12:
            return None
        seen = set() if seen is None else seen
        if isinstance(expr, ast.Constant):
            if isinstance(expr.value, bool):
                return None
            if isinstance(expr.value, float):
                return "float"
            return None
        if isinstance(expr, ast.Name):
            if expr.id in self.int_locals:
                return "int"
            if expr.id in self.pset:
                f = self.facts.get(expr.id)
                if f is not None and not f.pointer and expr.id not in self.constexprs:
                    if f.value["int"] and not f.value["float"]:
                        return "int"
                    if f.value["float"] and not f.value["int"]:
                        return "float"
                return None
            if expr.id in seen:
                return None
            seen.add(expr.id)
            kinds = {self.kind(d, seen, depth + 1) for d in self.defs.get(expr.id, [])} - {None}
            return kinds.pop() if len(kinds) == 1 else None
        if isinstance(expr, ast.Call):
            name = _fname(expr)
            if name in FLOAT_FNS:
                return "float"
            if name in ("arange", "program_id", "num_programs", "cdiv") or name in INDEX_FNS:
                return "int"
            if name in ("to", "cast", "zeros", "full", "zeros_like", "full_like", "bitcast"):
                dt = _dtype_of(_arg(expr, 0 if name in ("to", "cast") else 1, "dtype"))
                if dt is None and name in ("to", "cast"):
                    dt = _dtype_of(expr.args[0]) if expr.args else None
                if dt:
                    return "int" if dt in INT_DTYPES else "float"
            if name in PASS_FNS and (expr.args or isinstance(expr.func, ast.Attribute)):
                inner = expr.args[0] if expr.args and name != "where" else None
                if name == "where" and len(expr.args) >= 3:
                    ks = {self.kind(expr.args[1], seen, depth + 1), self.kind(expr.args[2], seen, depth + 1)} - {None}
                    return ks.pop() if len(ks) == 1 else None
                if inner is None and isinstance(expr.func, ast.Attribute):
                    inner = expr.func.value
                if inner is not None:
                    return self.kind(inner, seen, depth + 1)
            return None
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, (ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.BitXor, ast.FloorDiv, ast.Mod)):
                return "int"
            if isinstance(expr.op, ast.Div):
                return "float"
            a, b = self.kind(expr.left, seen, depth + 1), self.kind(expr.right, seen, depth + 1)
            if "float" in (a, b):
                return "float"
            if a == "int" and b in ("int", None) or b == "int" and a is None:
                return "int" if a == b == "int" else None
            return None
        if isinstance(expr, ast.UnaryOp):
            return self.kind(expr.operand, seen, depth + 1)
        if isinstance(expr, ast.Subscript):
            return self.kind(expr.value, seen, depth + 1)
        return None

    # -- evidence gathering
    def run(self) -> Summary:
        for _ in range(3):  # element classes feed pointer choice and back
            self._pass()
        self._fp32_rebinds()
        return Summary(self.params, self.constexprs, self.facts)

    def _fp32_rebinds(self):
        """``b = tl.zeros([B], dtype=tl.float32)`` then ``b = tl.load(p)``: Triton keeps
        a variable's type through loops and branches, so ``p`` holds fp32."""
        # Only where the two definitions meet at a loop or branch join: a plain
        # reassignment in the same block may change the type.
        for name, defs in self._block_defs().items():
            if name in self.pset:
                continue
            blocks = [(ctx, line) for d, ctx, line in defs if _is_fp32_value(d)]
            for d, ctx, line in defs:
                if not any(_joins(b, bl, ctx, line) for b, bl in blocks):
                    continue
                for src in self._typed_sources(d):
                    if self.facts[src].in_dot:
                        continue  # tl.dot operands keep the other operand's type
                    self.facts[src].needs_fp32 = True
                    self._note(self.facts[src].elem, "float", "use:rebinds an fp32 variable uncast → float")
        # A block-pointer store takes the block's element type as is (no implicit
        # cast as for plain pointers): an fp32 accumulator stored uncast is fp32 data.
        fp32_vars = {name for name, defs in self.defs.items() if name not in self.pset
                     and any(isinstance(d, ast.Call) and _fname(d) in ("zeros", "full") and _is_fp32_value(d)
                             for d in defs)}
        for node in self.nodes:
            if not (isinstance(node, ast.Call) and _fname(node) in STORE_FNS and len(node.args) >= 2):
                continue
            ptr, val = node.args[0], node.args[1]
            if not (isinstance(val, ast.Name) and val.id in fp32_vars and isinstance(ptr, ast.Name)):
                continue
            if not any(isinstance(d, ast.Call) and _fname(d) == "make_block_ptr" for d in self.defs.get(ptr.id, [])):
                continue
            p = self.pointer_of(ptr)
            if p is not None:
                self.facts[p].needs_fp32 = True
                self._note(self.facts[p].elem, "float", "use:fp32 accumulator stored uncast through a block pointer")

    def _note(self, table, key, why):
        if why not in table[key]:
            table[key].append(why)

    def _int_context(self, expr, why):
        for s in self.sources(expr):
            self._note(self.facts[s].elem, "int", why)
        for p in self.params_in(expr):
            if p not in self.bases(expr) or not self.facts[p].pointer:
                self._note(self.facts[p].value, "int", why)
                if why not in self.facts[p].scalar:
                    self.facts[p].scalar.append(why)

    def _block_defs(self) -> dict[str, list[tuple[ast.AST, tuple, int]]]:
        """Each local's assigned values with the block (loop or branch nesting) and line of each."""
        out: dict[str, list[tuple[ast.AST, tuple, int]]] = {}

        def bind(t, v, ctx, line):
            if isinstance(t, ast.Name):
                out.setdefault(t.id, []).append((v, ctx, line))
            elif isinstance(t, (ast.Tuple, ast.List)) and isinstance(v, (ast.Tuple, ast.List)) \
                    and len(t.elts) == len(v.elts):
                for a, b in zip(t.elts, v.elts):
                    bind(a, b, ctx, line)

        def visit(stmts, ctx):
            for st in stmts:
                if isinstance(st, ast.Assign):
                    for t in st.targets:
                        bind(t, st.value, ctx, st.lineno)
                for i, field_name in enumerate(("body", "orelse")):
                    inner = getattr(st, field_name, None)
                    if isinstance(st, (ast.For, ast.While, ast.If, ast.With)) and isinstance(inner, list):
                        visit(inner, ctx + ((id(st), i),))

        visit(self.fn.body, ())
        return out

    def _typed_sources(self, expr) -> set[str]:
        """Pointers whose element type ``expr`` has: uncast loads, or ``x.to(y.dtype)``'s y."""
        if isinstance(expr, ast.Call) and _fname(expr) == "to" and isinstance(expr.func, ast.Attribute):
            dt = _arg(expr, 0, "dtype")
            while isinstance(dt, ast.Attribute) and dt.attr in ("dtype", "element_ty"):
                dt = dt.value
            if isinstance(dt, ast.Name):
                if dt.id in self.pset:
                    return {dt.id}
                return self._typed_sources(dt)
            return set()
        # Only data as loaded: anything computed may have been promoted on the way
        # (fla's exp2 helper returns fp32), which this analysis cannot see.
        if isinstance(expr, ast.Call) and _fname(expr) in ("trans", "reshape") and expr.args:
            return self._typed_sources(expr.args[0])
        if isinstance(expr, ast.Call) and _fname(expr) in LOAD_FNS:
            return self.sources(expr)
        if isinstance(expr, ast.Name) and expr.id not in self.pset:
            defs = self.defs.get(expr.id, [])
            if defs and all(isinstance(d, ast.Call) and _fname(d) in LOAD_FNS for d in defs):
                return self.sources(expr)
        return set()

    def _int_literal_init(self, name: str) -> bool:
        return name not in self.pset and any(
            isinstance(d, ast.Constant) and type(d.value) is int for d in self.defs.get(name, []))

    def _int_context_elem(self, expr, why):
        for s in self.sources(expr):
            self._note(self.facts[s].elem, "int", why)

    def _float_context(self, expr, why):
        for s in self.sources(expr):
            self._note(self.facts[s].elem, "float", why)

    def _pointer_sink(self, ptr_expr, why, value=None, depth=0):
        if isinstance(ptr_expr, ast.Name) and ptr_expr.id not in self.pset and depth < 4:
            # ``p_dq = dq + ...`` in one branch, ``p_dq = dq2 + ...`` in another: two
            # pointers, not a pointer and its offset.
            alts = self.defs.get(ptr_expr.id, [])
            if len({self.pointer_of(a) for a in alts} - {None}) > 1:
                found = [self._pointer_sink(a, why, value, depth + 1) for a in alts]
                return next((f for f in found if f), None)
        p = self.pointer_of(ptr_expr)
        if p is None:
            return None
        f = self.facts[p]
        if why not in f.pointer:
            f.pointer.append(why)
        # Offsets of the address are integers.
        for b in self.bases(ptr_expr):
            if b != p:
                self._note(self.facts[b].value, "int", f"offset of {p}")
        self._offsets_int(ptr_expr, p)
        if value is not None:
            k = self.kind(value)
            if k:
                self._note(f.elem, k, f"{why} of {k} value")
            for s in self.sources(value):
                if s != p:
                    f.store_like.add(s)
                    self.facts[s].store_like.add(p)
            for q in self.params_in(value):
                if not self.facts[q].pointer:
                    # A stored scalar: the pointer holds values of its kind.
                    f.store_like.add("scalar:" + q)
        return p

    def _offsets_int(self, expr, base, depth=0, seen=None):
        """Loaded values used inside an address (not as its base) are integers."""
        seen = set() if seen is None else seen
        if depth > 6:
            return
        for n in ast.walk(expr):
            if isinstance(n, ast.Name) and n.id not in self.pset and n.id in self.defs:
                for s in self.sources(n):
                    if s != base:
                        self._note(self.facts[s].elem, "int", f"offset in address of {base}")
            elif isinstance(n, ast.Name) and n.id == base and n.id not in seen:
                # ``ptr += start * stride`` rebinds the base: its offsets count too.
                seen.add(n.id)
                for d in self.defs.get(n.id, []):
                    self._offsets_int(d, base, depth + 1, seen)

    def _pass(self):
        for node in self.nodes:
            if isinstance(node, ast.AugAssign):
                if (isinstance(node.op, (ast.Add, ast.Sub)) and isinstance(node.target, ast.Name)
                        and self._int_literal_init(node.target.id)):
                    # ``total = 0`` then ``total += tl.sum(x)`` in a loop: Triton keeps a
                    # loop-carried variable's type, so what is added is integer data.
                    self._int_context_elem(node.value, "use:added to an integer-initialized variable → integer")
                # ``acc *= scale`` is the same evidence as ``acc * scale``.
                node = ast.BinOp(left=node.target, op=node.op, right=node.value)
            if isinstance(node, (ast.If, ast.While)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
                test = node.test if not isinstance(node, ast.UnaryOp) else node.operand
                if isinstance(test, ast.Name) and test.id not in self.pset:
                    # A loaded value used as a condition is a flag: integer (bool) data.
                    self._int_context_elem(test, "use:loaded value as condition → integer")
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.BinOp):
                if isinstance(node.op, (ast.Mult, ast.FloorDiv, ast.Mod, ast.LShift, ast.RShift)):
                    for side in (node.left, node.right):
                        if isinstance(side, ast.Name) and side.id in self.pset and side.id not in self.constexprs:
                            f = self.facts[side.id]
                            w = "use:arithmetic operand → scalar"
                            if w not in f.scalar:
                                f.scalar.append(w)
                if isinstance(node.op, (ast.FloorDiv, ast.Mod)):
                    for side in (node.left, node.right):
                        self._int_context_elem(side, "use:// or % operand → integer")
                if isinstance(node.op, (ast.Add, ast.Sub)):
                    # Loaded values added together hold the same kind of data.
                    a_src, b_src = self.sources(node.left), self.sources(node.right)
                    if len(a_src) == 1 and len(b_src) == 1 and a_src != b_src:
                        a, b = next(iter(a_src)), next(iter(b_src))
                        self.facts[a].store_like.add(b)
                        self.facts[b].store_like.add(a)
                if isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
                    # Triton's bitwise operators take integers (bools) only: data
                    # reaching one uncast is integer data.  Masks built from
                    # comparisons are no loaded data and say nothing.
                    for side in (node.left, node.right):
                        for src in self.direct_sources(side):
                            self._note(self.facts[src].elem, "int", "use:bitwise operand → integer")
                if isinstance(node.op, (ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.BitXor)):
                    for side in (node.left, node.right):
                        # Masks (a & b) are i1; shifts are the integer evidence that counts.
                        if isinstance(node.op, (ast.LShift, ast.RShift)):
                            self._int_context(side, "use:shift operand → integer")
                for a, b in ((node.left, node.right), (node.right, node.left)):
                    if self.kind(b) == "float" and not isinstance(node.op, (ast.LShift, ast.RShift)):
                        self._float_context(a, "use:mixed with float value → float")
                        for p in self.params_in(a):
                            if not self.facts[p].pointer and isinstance(a, ast.Name):
                                self._note(self.facts[p].value, "float", "use:mixed with float value → fp32")
            elif isinstance(node, ast.Compare):
                operands = [node.left] + list(node.comparators)
                srcs = [self.sources(o) for o in operands]
                if any(self.kind(o) == "int" for o in operands):
                    for o, so in zip(operands, srcs):
                        if so and self.kind(o) != "float":
                            self._int_context_elem(o, "use:compared with integer → integer")
                if len(srcs) == 2 and len(srcs[0]) == 1 and len(srcs[1]) == 1 and srcs[0] != srcs[1]:
                    a, b = next(iter(srcs[0])), next(iter(srcs[1]))
                    self.facts[a].store_like.add(b)
                    self.facts[b].store_like.add(a)
                if any(isinstance(o, ast.Constant) and isinstance(o.value, float) for o in operands):
                    for o in operands:
                        self._float_context(o, "use:compared with float literal → float")
                        if isinstance(o, ast.Name) and o.id in self.pset:
                            self._note(self.facts[o.id].value, "float", "use:compared with float literal → fp32")
                for o in operands:
                    if isinstance(o, ast.Name) and o.id in self.pset and o.id not in self.constexprs:
                        if not any(isinstance(x, ast.Constant) and x.value is None for x in operands):
                            f = self.facts[o.id]
                            if "use:compared → scalar" not in f.scalar:
                                f.scalar.append("use:compared → scalar")
                            if any(self.kind(x) == "int" for x in operands if x is not o):
                                self._note(f.value, "int", "use:compared with integer → i32")
                for o in operands:
                    if isinstance(o, ast.Name) and o.id in self.constexprs:
                        for x in operands:
                            if isinstance(x, ast.Constant) and x is not o:
                                self.facts[o.id].compared_with.append(x.value)
            elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
                for n in ast.walk(node.test):
                    if isinstance(n, ast.Name) and n.id in self.constexprs:
                        self.facts[n.id].uses.add("bool")
            elif isinstance(node, ast.BoolOp):
                for v in node.values:
                    if isinstance(v, ast.Name) and v.id in self.constexprs:
                        self.facts[v.id].uses.add("bool")
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                if isinstance(node.operand, ast.Name) and node.operand.id in self.constexprs:
                    self.facts[node.operand.id].uses.add("bool")

    def _call(self, node: ast.Call):
        name = _fname(node)
        tl_call = isinstance(node.func, ast.Attribute) and _is_tl(node.func)
        if name in LOAD_FNS and (tl_call or isinstance(node.func, ast.Name)):
            ptr = _arg(node, 0, "pointer")
            if ptr is not None:
                self._pointer_sink(ptr, "use:tl.load → pointer")
            other = _arg(node, 2, "other")
            p = self.pointer_of(ptr) if (ptr is not None and other is not None) else None
            if p and isinstance(other, ast.Constant) and isinstance(other.value, float) and other.value != 0.0:
                # 0.0 pads integer loads too in sloppy code; any other float literal means float data.
                self._note(self.facts[p].elem, "float", "use:tl.load(other=float) → float")
            elif p and isinstance(other, (ast.UnaryOp, ast.Attribute, ast.Call)) and "inf" in ast.unparse(other):
                self._note(self.facts[p].elem, "float", "use:tl.load(other=±inf) → float")
            elif p and isinstance(other, ast.Constant) and isinstance(other.value, bool):
                self._note(self.facts[p].elem, "int", "use:tl.load(other=bool) → integer")
        elif name in STORE_FNS and (tl_call or isinstance(node.func, ast.Name)):
            ptr = _arg(node, 0, "pointer")
            val = _arg(node, 1, "value")
            if ptr is not None:
                self._pointer_sink(ptr, "use:tl.store → pointer", val)
        elif name.startswith(ATOMIC_PREFIX) and tl_call:
            ptr = _arg(node, 0, "pointer")
            val = _arg(node, 2 if name == "atomic_cas" else 1, "val")
            if ptr is not None:
                p = self._pointer_sink(ptr, f"use:tl.{name} → pointer", val)
                if p and val is not None and isinstance(val, ast.Constant) and type(val.value) is int:
                    self._note(self.facts[p].elem, "int", f"use:tl.{name} of int literal → integer")
        elif name in ("make_block_ptr", "make_tensor_descriptor") and tl_call:
            base = _arg(node, 0, "base")
            if base is not None:
                self._pointer_sink(base, f"use:tl.{name} → pointer")
            for i, kw in ((1, "shape"), (2, "strides"), (3, "offsets")):
                a = _arg(node, i, kw)
                if isinstance(a, (ast.Tuple, ast.List)):
                    for e in a.elts:
                        self._int_context(e, f"use:tl.{name} {kw} → integer")
        elif name in FLOAT_FNS and tl_call:
            if name == "dot" and len(node.args) >= 2:
                for arg in node.args[:2]:
                    for src in self.direct_sources(arg):
                        self.facts[src].in_dot = True
                a, b = self._typed_sources(node.args[0]), self._typed_sources(node.args[1])
                for p in a:
                    self.facts[p].dot_peers |= (b - {p}) or {COMPUTED}
                for p in b:
                    self.facts[p].dot_peers |= (a - {p}) or {COMPUTED}
            if name in FP32_FNS:
                # Upstream Triton takes only fp32/fp64 here: data fed uncast is fp32.
                for a in node.args[:1]:
                    for src in self.direct_sources(a):
                        self.facts[src].needs_fp32 = True
            for a in list(node.args) + [k.value for k in node.keywords if k.arg not in ("input_precision", "out_dtype", "allow_tf32", "max_num_imprecise_acc")]:
                self._float_context(a, f"use:tl.{name} → float")
                for p in self.params_in(a):
                    if isinstance(a, ast.Name) and not self.facts[p].pointer:
                        self._note(self.facts[p].value, "float", f"use:tl.{name} → fp32")
        elif name in ("range", "static_range", "arange", "cdiv", "multiple_of") and (tl_call or isinstance(node.func, ast.Name)):
            for a in node.args:
                self._int_context(a, f"use:{name} bound → integer")
            if name == "arange":
                for a in node.args:
                    if isinstance(a, ast.Name) and a.id in self.constexprs:
                        self.facts[a.id].uses.add("arange")
        elif name in ("to", "cast"):
            target = _arg(node, 0, "dtype")
            bitcast = _arg(node, 2, "bitcast")
            dt = _dtype_of(target)
            if dt and isinstance(bitcast, ast.Constant) and bitcast.value is True and isinstance(node.func, ast.Attribute):
                # A bitcast keeps the width: the loaded data has the target's size.
                width = _WIDTH.get(dt)
                for src in self.sources(node.func.value):
                    f = self.facts[src]
                    if width and not f.elem_dtype:
                        f.elem_dtype = _SAME_WIDTH_OTHER[(width, dt in INT_DTYPES)]
                        f.pointer.append(f"use:.to(tl.{dt}, bitcast=True) → {width}-bit data")
            if isinstance(target, ast.Name) and target.id in self.constexprs:
                self.facts[target.id].uses.add("dtype")
            if isinstance(target, ast.Call) and _fname(target) == "pointer_type" and isinstance(node.func, ast.Attribute):
                dt = _dtype_of(target.args[0] if target.args else None)
                base = node.func.value
                # Loaded values turned into pointers: the tensor holds addresses (int64).
                for src in self.sources(base):
                    self._note(self.facts[src].elem, "int", "use:loaded value cast to pointer → i64")
                    self.facts[src].elem_dtype = self.facts[src].elem_dtype or "int64"
                if isinstance(base, ast.Name) and base.id in self.pset:
                    f = self.facts[base.id]
                    f.pointer.append("use:.to(tl.pointer_type) → pointer")
                    if dt:
                        f.elem_dtype = dt
        elif name in ("zeros", "full", "zeros_like", "full_like") and tl_call:
            dt = _arg(node, 1 if name != "full" else 2, "dtype")
            if isinstance(dt, ast.Name) and dt.id in self.constexprs:
                self.facts[dt.id].uses.add("dtype")
            shape = _arg(node, 0, "shape")
            if isinstance(shape, (ast.Tuple, ast.List)):
                for e in shape.elts:
                    if isinstance(e, ast.Name) and e.id in self.constexprs:
                        self.facts[e.id].uses.add("arange")
        elif name == "insert_slice" and len(node.args) >= 2:
            # triton-ascend's insert_slice takes a slice of the destination's own
            # element type (no promotion): data loaded into a tensor made with
            # an explicit dtype (tl.zeros(.., dtype=tl.bfloat16)) has that dtype.
            dt = self._explicit_dtype(node.args[0])
            if dt:
                for src in self._typed_sources(_unshaped(node.args[1])):
                    f = self.facts[src]
                    if not f.elem_dtype:
                        f.elem_dtype = dt
                        f.elem_why = f"use:insert_slice into a tl.{dt} tensor"
        else:
            helper = self.helpers(node) if self.helpers else None
            if helper is not None:
                self._helper_call(node, helper)
        for k in node.keywords:
            if k.arg == "dtype" and isinstance(k.value, ast.Name) and k.value.id in self.constexprs:
                self.facts[k.value.id].uses.add("dtype")

    def _explicit_dtype(self, expr, seen=None) -> str | None:
        """The one dtype a tensor was made with (tl.zeros/tl.full's dtype), through reshapes and rebinds."""
        seen = set() if seen is None else seen
        expr = _unshaped(expr)
        if isinstance(expr, ast.Call) and _fname(expr) in ("zeros", "full"):
            return _dtype_of(_arg(expr, 1 if _fname(expr) == "zeros" else 2, "dtype"))
        if isinstance(expr, ast.Call) and _fname(expr) == "insert_slice" and expr.args:
            return self._explicit_dtype(expr.args[0], seen)
        if isinstance(expr, ast.Name) and expr.id not in self.pset and expr.id not in seen:
            seen.add(expr.id)
            found = {self._explicit_dtype(d, seen) for d in self.defs.get(expr.id, [])} - {None}
            return found.pop() if len(found) == 1 else None
        return None

    def _helper_call(self, node: ast.Call, helper: tuple[str, Summary]):
        hname, summ = helper
        bound: list[tuple[str, ast.AST]] = []
        for i, a in enumerate(node.args):
            if i < len(summ.params):
                bound.append((summ.params[i], a))
        for k in node.keywords:
            if k.arg in summ.facts:
                bound.append((k.arg, k.value))
        for hp, a in bound:
            hf = summ.facts.get(hp)
            if hf is None:
                continue
            if hp in summ.constexprs:
                # A value the helper needs at compile time: here it can only be a scalar.
                for p in self.params_in(a):
                    if isinstance(a, ast.Name):
                        self.facts[p].scalar.append(f"use:{hname}({hp}: constexpr) → scalar")
                        self._note(self.facts[p].value, "int", f"use:{hname}({hp}: constexpr) → i32")
                continue
            if hf.pointer:
                why = f"use:{hname}({hp}) → pointer"
                p = self._pointer_sink(a, why)
                if p:
                    for k in ("int", "float"):
                        for w in hf.elem[k]:
                            self._note(self.facts[p].elem, k, f"{hname}.{hp}: {w}")
                    if hf.elem_dtype and not self.facts[p].elem_dtype:
                        self.facts[p].elem_dtype = hf.elem_dtype
                        self.facts[p].elem_why = f"{hname}.{hp}: {hf.elem_why}"
            elif hf.scalar or hf.value["int"] or hf.value["float"]:
                for p in self.params_in(a):
                    if isinstance(a, ast.Name):
                        f = self.facts[p]
                        f.scalar.append(f"use:{hname}({hp}) → scalar")
                        for k in ("int", "float"):
                            for w in hf.value[k]:
                                self._note(f.value, k, f"{hname}.{hp}: {w}")
                if hf.value["int"]:
                    self._int_context(a, f"use:{hname}({hp}) integer")


def _unshaped(expr):
    """The tensor a chain of ``.reshape(..)`` / ``.view(..)`` method calls starts from."""
    while isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) \
            and expr.func.attr in ("reshape", "view", "broadcast_to", "expand_dims") and not _is_tl(expr.func):
        expr = expr.func.value
    return expr


def _is_tl(attr: ast.Attribute) -> bool:
    v = attr.value
    while isinstance(v, ast.Attribute):
        v = v.value
    return isinstance(v, ast.Name) and v.id in ("tl", "triton", "language", "libdevice", "tlm", "math", "libdevice")


def _uniq(xs):
    out = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out


# --------------------------------------------------------------------------
# the whole inference


@dataclass
class Context:
    root: Path
    inventory: Inventory | None
    hints: Hints
    by_id: dict[str, Kernel]
    summaries: dict[str, Summary | None] = field(default_factory=dict)


def summarize(kernel: Kernel, ctx: Context, stack=()) -> Summary | None:
    if kernel.id in ctx.summaries:
        return ctx.summaries[kernel.id]
    ctx.summaries[kernel.id] = None  # recursion guard
    tree = parse_file(ctx.root, kernel.file)
    fn = find_def(tree, kernel.line) if tree is not None else None
    if fn is None:
        return None
    params = [p.name for p in kernel.params]
    constexprs = {p.name for p in kernel.params if p.constexpr}
    callees: dict[str, Kernel] = {}
    for cid in kernel.calls:
        k = ctx.by_id.get(cid)
        if k is not None:
            callees.setdefault(k.name, k)
            callees.setdefault(cid.rsplit(".", 1)[-1], k)

    def helper(call: ast.Call):
        name = _fname(call)
        k = callees.get(name)
        if k is None or k.id in stack:
            return None
        s = summarize(k, ctx, stack + (kernel.id,))
        return (k.name, s) if s is not None else None

    summ = BodyAnalysis(fn, params, constexprs, helper).run()
    ctx.summaries[kernel.id] = summ
    return summ


# Specs one kernel may get from inference: the launch site's values on Ascend,
# one spec per reachable combination, the rest left out.
MAX_SPECS_PER_KERNEL = 4

_TORCH_DTYPE_SIG = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_DTYPE_TEST = re.compile(r"\b(\w+)\.dtype\s*(?:==|is)\s*(?:torch\.)?(float32|float16|bfloat16|float|half)\b")


def infer_spec(kernel: Kernel, inventory: Inventory | None, root: Path | str, *, hints: Hints | None = None,
               ctx: Context | None = None) -> Spec:
    """The kernel's first inferred spec (``infer_specs`` gives every reachable one)."""
    return infer_specs(kernel, inventory, root, hints=hints, ctx=ctx, limit=1)[0]


def infer_specs(kernel: Kernel, inventory: Inventory | None, root: Path | str, *, hints: Hints | None = None,
                ctx: Context | None = None, limit: int = MAX_SPECS_PER_KERNEL) -> list[Spec]:
    """Inferred specs, one per set of values a launch can pass on Ascend (a dtype
    test either way, a caller's bool parameter, another launch's literal), at
    most ``limit``; each changed value's rule says when it is reached."""
    from tritriage.specs.catalog import params_fingerprint

    root = Path(inventory.root if inventory is not None and not root else root)
    hints = hints or load_hints()
    if ctx is None:
        ctx = Context(root, inventory, hints, inventory.by_id() if inventory is not None else {})
    summ = summarize(kernel, ctx)
    facts = summ.facts if summ else {p.name: ParamFacts() for p in kernel.params}
    rules: dict[str, str] = {}
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    options: dict[str, Any] = {}

    _apply_annotations(kernel, facts)
    pointers = _decide_pointers(kernel, facts, hints, rules)
    elem = _decide_elements(kernel, facts, hints, pointers, rules)
    for p in kernel.params:
        if p.constexpr:
            continue
        if p.name in pointers:
            signature[p.name] = "*" + elem[p.name]
        else:
            signature[p.name] = _scalar_type(p.name, facts[p.name], hints, rules, kernel.do_not_specialize)

    alternatives: list | None = [] if limit > 1 else None
    _constexpr_values(kernel, facts, hints, root, constexprs, options, rules, set(pointers), alternatives)
    base = Spec(
        kernel=kernel.id, name="inferred", source="inferred", signature=signature, constexprs=constexprs,
        options=options, rules=rules, params_fingerprint=params_fingerprint(kernel), origin="inferred",
    )
    if not alternatives:
        return [base]
    return _reachable_specs(base, alternatives, limit)


def _reachable_specs(base: Spec, alternatives: list, limit: int) -> list[Spec]:
    """The base spec and its variants, those whose tensors keep the base's dtypes first."""
    candidates = []
    for answers, values, passed in alternatives:
        sig, cx, rl = dict(base.signature), dict(base.constexprs), dict(base.rules)
        when = "; ".join(filter(None, (_answer(k, taken) for k, taken in answers.items())))
        for key, taken in answers.items():
            m = _DTYPE_TEST.search(key)
            if m is None or not key.startswith("test "):
                continue
            retyped = _retype(sig, passed, m.group(1), _TORCH_DTYPE_SIG[m.group(2)], holds=not taken)
            for q, t in retyped.items():
                sig[q] = t
                rl[q] = f"{rl.get(q, '')}; reachable on Ascend when {_answer(key, taken)} → {t}"
        for name, (value, why) in values.items():
            cx[name] = value
            rl[name] = f"{why}; reachable on Ascend when {when}" if when else why
        candidates.append((sig != base.signature, sig, cx, rl))
    if not any(not values for _, values, _ in alternatives):
        candidates.insert(0, (False, base.signature, base.constexprs, base.rules))  # no site computed a value
    candidates.sort(key=lambda c: c[0])  # stable: the launch's own order within each kind
    out: list[Spec] = []
    seen: set = set()
    first = None
    for _, sig, cx, rl in candidates:
        key = (tuple(sorted(sig.items())), tuple(sorted((k, repr(v)) for k, v in cx.items())))
        if key in seen:
            continue
        seen.add(key)
        if first is None:
            first = (sig, cx)
            name = "inferred"
        else:
            name = "inferred-" + ",".join(_variant_label(first, sig, cx))
        out.append(Spec(kernel=base.kernel, name=name, source="inferred", signature=sig, constexprs=cx,
                        options=base.options, rules=rl, params_fingerprint=base.params_fingerprint,
                        origin="inferred"))
        if len(out) >= limit:
            break
    return out


def _answer(key: str, taken: bool) -> str:
    """A choice point's answer as the rule trail says it ('' for a default nobody chose)."""
    kind, _, what = key.partition(" ")
    if kind == "test":
        return f"not ({what})" if taken else (what if _DTYPE_TEST.search(what) else "")
    return what if taken else ""


def _retype(sig: dict, passed: dict, var: str, dtype: str, *, holds: bool) -> dict:
    """New element types for the pointers that hold ``var``'s data and those of the
    same element type (a model's tensors move together), when ``var.dtype == dtype``
    is ``holds``; nothing when the signature already agrees or cannot be told."""
    direct = [p for p, src in passed.items() if str(src).strip() == var and str(sig.get(p, "")).startswith("*")]
    if not direct:
        return {}
    now = sig[direct[0]]
    if holds and now != "*" + dtype:
        new = "*" + dtype
    elif not holds and now == "*" + dtype:
        new = "*bf16" if dtype == "fp16" else "*fp16"
    else:
        return {}
    return {q: new for q, t in sig.items() if t == now}


def _variant_label(first, sig: dict, cx: dict) -> list[str]:
    base_sig, base_cx = first
    parts = sorted({t.lstrip("*") for q, t in sig.items() if base_sig.get(q) != t})
    parts += [f"{k}={v}" for k, v in cx.items() if base_cx.get(k) != v]
    return parts or ["alt"]


def _decide_pointers(kernel, facts, hints, rules) -> set[str]:
    out = set()
    for p in kernel.params:
        if p.constexpr:
            continue
        f = facts[p.name]
        if f.pointer:
            out.add(p.name)
            rules[p.name] = "; ".join(_uniq(f.pointer)[:2])
        elif not f.scalar and any(r.search(p.name) for r in hints.pointer):
            pat = next(r.pattern for r in hints.pointer if r.search(p.name))
            out.add(p.name)
            rules[p.name] = f"name:{pat} → pointer"
    return out


def _decide_elements(kernel, facts, hints, pointers, rules) -> dict[str, str]:
    cls: dict[str, tuple[str | None, str]] = {}
    # In the kernel's parameter order: one pointer's class decides another's,
    # and the answer must not depend on a set's order in this process.
    order = [p.name for p in kernel.params if p.name in pointers]
    for p in order:
        f = facts[p]
        if f.elem_dtype:
            cls[p] = ("dtype:" + f.elem_dtype, f.elem_why)
        elif f.elem["float"] and not f.elem["int"]:
            cls[p] = ("float", f.elem["float"][0])
        elif f.elem["int"] and not f.elem["float"]:
            cls[p] = ("int", f.elem["int"][0])
        elif f.elem["int"] and f.elem["float"]:
            # Both: indices are the stronger constraint (a float offset does not compile).
            cls[p] = ("int", f.elem["int"][0])
        else:
            cls[p] = (None, "")
    # Pointers that only receive stores take the class of what is stored.
    for _ in range(3):
        for p in order:
            if cls[p][0] is None:
                for q in sorted(facts[p].store_like):
                    if q.startswith("scalar:"):
                        s = facts.get(q[7:])
                        if s is not None and s.value["float"] and not s.value["int"]:
                            cls[p] = ("float", f"stores scalar {q[7:]}")
                        elif s is not None:
                            cls[p] = ("int", f"stores scalar {q[7:]}")
                        break
                    if q in cls and cls[q][0] is not None:
                        cls[p] = (cls[q][0], f"holds what {q} holds")
                        break
    # Still open: a partner whose name says it holds integers (token ids...) decides.
    for p in order:
        if cls[p][0] is None:
            for q in sorted(facts[p].store_like):
                if q in cls and cls[q][0] is None:
                    hit = Hints.first(hints.pointer_element, q)
                    if hit and hit[1][0] in "iu":
                        cls[p] = ("int", f"holds what {q} holds (name:{hit[0]})")
                        break
    out = {}
    for p in order:
        c, why = cls[p]
        if c and c.startswith("dtype:"):
            t = _TL_TO_SIG.get(c[6:], "fp16")
            out[p] = t
            rules[p] += f"; {why} → *{t}"
            continue
        table = {"int": hints.int_element, "float": hints.float_element, None: hints.pointer_element}[c]
        hit = Hints.first(table, p)
        t = hit[1] if hit else ("i32" if c == "int" else "fp16")
        if c == "float" and facts[p].needs_fp32 and t in ("fp16", "bf16"):
            out[p] = "fp32"
            rules[p] += f"; {why} → float; use:uncast into tl.exp/log/sqrt → *fp32"
            continue
        out[p] = t
        if c:
            rules[p] += f"; {why} → {c}; name:{hit[0] if hit else '-'} → *{t}"
        else:
            rules[p] += f"; name:{hit[0] if hit else '-'} → *{t}"
    # tl.dot takes two operands of one type: a name's fp32 yields to what the
    # other operand's data is (dA in fla's chunk kernels is fp16 like k and v).
    for p in order:
        if out[p] == "fp32" and not facts[p].needs_fp32 and not facts[p].elem_dtype \
                and COMPUTED not in facts[p].dot_peers:
            peers = sorted({out[q] for q in facts[p].dot_peers if q in out} - {"fp32"})
            if len(peers) == 1 and peers[0] in ("fp16", "bf16"):
                out[p] = peers[0]
                rules[p] += f"; use:tl.dot with {', '.join(sorted(facts[p].dot_peers))} → *{peers[0]}"
    return out


_TL_TO_SIG = {
    "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64", "int1": "i1", "int8": "i8",
    "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
    "float8e4nv": "fp8e4nv", "float8e5": "fp8e5", "float8e4b15": "fp8e4b15", "float8e4b8": "fp8e4b8",
    "float8e5b16": "fp8e5b16",
}


def _scalar_type(name, f: ParamFacts, hints, rules, dns) -> str:
    suffix = " (do_not_specialize)" if name in dns else ""
    first = (f.value["int"] + f.value["float"] + [""])[0]
    if first.startswith("annotation:"):
        rules[name] = first + suffix
        return first.rsplit("→ ", 1)[-1]
    if f.value["int"]:
        rules[name] = f"{f.value['int'][0]}{suffix}".replace("→ integer", "→ i32")
        if "→ i32" not in rules[name]:
            rules[name] += " → i32"
        hit = Hints.first(hints.int_element, name)
        t = "i64" if hit and hit[1] == "i64" else "i32"
        return t
    if f.value["float"]:
        rules[name] = f"{f.value['float'][0]}{suffix}"
        if "fp32" not in rules[name]:
            rules[name] += " → fp32"
        return "fp32"
    hit = Hints.first(hints.scalar, name)
    t = hit[1] if hit else "i32"
    rules[name] = f"name:{hit[0] if hit else '-'} → {t}{suffix}"
    return t


def _constexpr_values(kernel: Kernel, facts, hints, root: Path, constexprs, options, rules, pointers,
                      alternatives: list | None = None):
    """``alternatives`` receives (answers, {param: (value, why)}, what the site
    passes) for each other set of values a launch site can pass on Ascend."""
    names = [p.name for p in kernel.params]
    want = [p for p in kernel.params if p.constexpr]
    found: dict[str, tuple[Any, str]] = {}

    cfg = first_autotune_config(kernel, root)
    # 5. defaults (before heuristics, which may read them)
    defaults: dict[str, tuple[Any, str]] = {}
    for p in want:
        if p.default is not None:
            ok, val = _literal(p.default)
            if ok and _is_value(val):
                defaults[p.name] = (val, f"default {p.default}")

    # 6/7. name hints, then use in the body
    def fallback(p) -> tuple[Any, str]:
        hit = Hints.first(hints.constexpr, p.name)
        f = facts.get(p.name) or ParamFacts()
        # A name says what a value is like; the body's own comparisons say what
        # kind it is (LOSS_TYPE == 0 is an int code, not a dtype).
        seen = [v for v in f.compared_with if v is not None]
        if hit and seen and _value_kind(hit[1]) != _value_kind(seen[0]):
            return seen[0], f"use:compared with {seen[0]!r} (over name:{hit[0]} → {hit[1]})"
        if hit:
            return hit[1], f"name:{hit[0]} → {hit[1]}"
        if f.compared_with:
            v = f.compared_with[0]
            return v, f"use:compared with {v!r}"
        if "dtype" in f.uses:
            return "tl.float32", "use:dtype argument → tl.float32"
        if "arange" in f.uses:
            return 64, "use:tl.arange bound → 64"
        if "bool" in f.uses:
            return True, "use:condition → True"
        return 16, "fallback → 16"

    def own_value(p) -> tuple[Any, str]:
        """What the kernel gets for ``p`` when no launch passes it a known value."""
        if cfg is not None and p.name in cfg[0] and _is_value(cfg[0][p.name]):
            return cfg[0][p.name], "autotune: first config"
        return defaults.get(p.name) or fallback(p)

    # 1. literals at launch sites, 2. constants the caller computes
    for site in kernel.launch_sites:
        passed = {}
        i = 0
        for a in site.args:
            if a.lstrip().startswith("*"):
                n = _starred_len(a.lstrip()[1:])
                if n is None:
                    break  # positions after an unknown-length *args are unknown
                i += n
                continue
            if i < len(names):
                passed[names[i]] = a
            i += 1
        passed.update(site.kwargs)
        for k, v in site.literal_kwargs.items():
            if k in ("num_warps", "num_stages") and isinstance(v, int) and k not in options:
                options[k] = v
                rules[k] = f"launch-site literal {site.file}:{site.line}"
        computed: list[tuple[str, str]] = []
        by_name = {p.name: p for p in want}
        for p in want:
            if p.name not in passed:
                continue
            src = passed[p.name]
            ok, val = (True, site.literal_kwargs[p.name]) if p.name in site.literal_kwargs else _literal(src)
            if p.name in found:
                # Another launch passing another literal: that value is reachable too.
                if ok and _is_value(val) and val != found[p.name][0] and alternatives is not None:
                    alternatives.append(({f"launch {site.file}:{site.line} passes it": True},
                                         {p.name: (val, f"launch-site literal {site.file}:{site.line}")}, passed))
                continue
            if ok and _is_value(val):
                found[p.name] = (val, f"launch-site literal {site.file}:{site.line}")
                continue
            computed.append((p.name, src))
        if not computed:
            continue
        env = CallerEnv(root, site)
        # What this launch passes as a tensor is one here, whatever its
        # default (``weight=None`` makes ``W = weight.shape[1] if weight
        # is not None else None`` None; the spec has a weight pointer).
        for q in pointers:
            src_q = str(passed.get(q, "")).strip()
            if src_q.isidentifier():
                env.assigns.setdefault(src_q, []).append((site.line, None))

        def unknown(env=env, computed=computed):
            out = []
            for name, src in computed:
                try:
                    val, _ = host_eval(env.value, src)
                except _EVAL_ERRORS:
                    out.append((name, src))
                    continue
                if not _is_value(val):
                    out.append((name, src))
            return out

        def evaluate(env=env, site=site, computed=computed):
            # A value the caller computes from an input nothing here knows (its
            # parameter, a tensor's shape) keeps its relation to the launch's other
            # values: the input takes what the kernel gets for the constexpr it is
            # passed as, and what is computed from it follows (q_head_num =
            # q_hidden_size // head_dim).  Parameters first: they are the inputs;
            # then locals computed from what is still unknown.
            # A local is taken one at a time, the earliest bound first, for a later
            # one may be computed from it (IS_PARTIAL_ROPE = rope_dim != head_dim).
            env.seeds = {}
            tried: set[str] = set()
            with choices_suspended():
                for name, src in unknown():
                    var = _plain_var(src)
                    if var in env.params and var not in env.seeds:
                        v, why = own_value(by_name[name])
                        if _is_size(v):
                            env.seeds[var] = (v, name, why)
                while True:
                    cands = []
                    for name, src in unknown():
                        var = _plain_var(src)
                        if var is None or var in tried or var in env.params or var not in env.assigns:
                            continue
                        bound = [ln for ln, _ in env.assigns[var] if ln <= site.line]
                        cands.append((max(bound, default=0), var, name))
                    if not cands:
                        break
                    _, var, name = min(cands)
                    v, why = own_value(by_name[name])
                    tried.add(var)
                    if _is_size(v):  # a flag or a dtype: nothing is computed from it here
                        env.seeds[var] = (v, name, why)
            out = {}
            for name, src in computed:
                env.seeds_read.clear()
                try:
                    val, notes = host_eval(env.value, src)
                except _EVAL_ERRORS:
                    continue
                if not _is_value(val):
                    continue
                if env.seeds_read and _is_size(val) and val <= 0 and name in by_name:
                    own = own_value(by_name[name])[0]
                    if _is_size(own) and own > 1:
                        # Computed from guessed inputs and degenerate (G = HQ // H
                        # with H guessed above HQ): an artifact of the guesses, not
                        # a value a launch passes; the constexpr keeps its own.
                        continue
                var = _plain_var(src)
                if var in env.seeds and env.seeds[var][1] == name:
                    why = (f"{env.seeds[var][2]}; the caller's {var} ({site.file}:{site.line}), "
                           f"which the values computed from it follow")
                else:
                    given = [f"{k}={env.seeds[k][0]!r} as {env.seeds[k][1]}" for k in dict.fromkeys(env.seeds_read)]
                    why = (f"caller constant {site.file}:{site.line} ({src})"
                           f"{' with ' + ', '.join(given) if given else ''}{as_ascend(notes)}")
                out[name] = (str(val) if isinstance(val, _DtypeStr) else val, why)
            return out

        runs = explore(evaluate, MAX_SPECS_PER_KERNEL if alternatives is not None else 1)
        base = runs[0][1]
        found.update(base)
        if alternatives is None:
            continue
        # The default answers (a dtype test taken as true, say) are assumptions too.
        alternatives.append(({k: False for k in runs[0][2]}, {}, passed))
        for answers, values, _ in runs[1:]:
            differs = {n: v for n, v in values.items() if n not in base or v[0] != base[n][0]}
            if differs:
                alternatives.append(({**{k: False for k in runs[0][2]}, **answers}, differs, passed))

    # 3. the first autotune config
    if cfg is not None:
        kw, opts = cfg
        for k, v in kw.items():
            if k in names and k not in found and _is_value(v):
                found[k] = (v, "autotune: first config")
        for k, v in opts.items():
            if k not in options:
                options[k] = v
                rules[k] = "autotune: first config"

    # 4. heuristics, evaluated with what is known so far
    known = {k: v for k, (v, _) in found.items()}
    for k, (v, _) in defaults.items():
        known.setdefault(k, v)
    for p in want:
        if p.name not in known:
            known[p.name] = fallback(p)[0]
    heur = heuristics_values(kernel, root, known, pointers)
    for k, (v, why) in heur.items():
        if k in names and k not in found:
            if why:
                found[k] = (v, why)
            else:
                p = next(p for p in kernel.params if p.name == k)
                fv, fwhy = fallback(p)
                found[k] = (fv, f"heuristics not evaluable; {fwhy}")

    for p in want:
        if p.name in found:
            v, why = found[p.name]
        elif p.name in defaults:
            v, why = defaults[p.name]
        else:
            v, why = fallback(p)
        constexprs[p.name] = v
        rules[p.name] = why


def _joins(a: tuple, line_a: int, b: tuple, line_b: int) -> bool:
    """Whether values bound in blocks ``a`` and ``b`` meet: a value bound before a
    loop or branch and rebound inside it, or the two arms of one ``if``."""
    if a == b:
        return False
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return (line_a < line_b) == (len(a) < len(b))  # the outer binding comes first
    i = next(i for i in range(n) if a[i] != b[i])
    # Both bound directly in the two arms (a value live after the ``if``), not
    # in loops of their own.
    return a[i][0] == b[i][0] and len(a) == len(b) == i + 1


def _is_fp32_value(d) -> bool:
    """``tl.zeros(.., dtype=tl.float32)``, ``tl.full(.., tl.float32)``, ``x.to(tl.float32)``, ``0.0``."""
    if isinstance(d, ast.Constant):
        return type(d.value) is float  # a Python float in a jit function is fp32
    if not isinstance(d, ast.Call):
        return False
    name = _fname(d)
    if name in ("zeros", "full"):
        return _dtype_of(_arg(d, 1 if name == "zeros" else 2, "dtype")) == "float32"
    return name in ("to", "cast") and isinstance(d.func, ast.Attribute) and \
        _dtype_of(_arg(d, 0, "dtype")) == "float32"


def _value_kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "text" if isinstance(v, str) else type(v).__name__


def _is_size(v) -> bool:
    """A value launch relations are arithmetic on (sizes, counts, scales), not a flag or a dtype."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain_var(src: str) -> str | None:
    """The caller variable a launch argument passes as is (``x``, ``int(x)``)."""
    try:
        node = parse_expr(str(src).strip())
    except SyntaxError:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("int", "bool") \
            and len(node.args) == 1 and not node.keywords:
        node = node.args[0]
    return node.id if isinstance(node, ast.Name) else None


def _starred_len(src: str) -> int | None:
    """Number of values ``*src`` expands to, when the source says."""
    try:
        node = parse_expr(src.strip())
    except SyntaxError:
        return None
    if isinstance(node, (ast.Tuple, ast.List)):
        return len(node.elts)
    if isinstance(node, ast.IfExp):
        a, b = (len(x.elts) if isinstance(x, (ast.Tuple, ast.List)) else None for x in (node.body, node.orelse))
        return a if a == b else None
    return None


_ANN_SCALARS = {"int": ("int", "i32"), "float": ("float", "fp32"), "bool": ("int", "i1")}


def _apply_annotations(kernel: Kernel, facts) -> None:
    """Python annotations (``n: int``, ``x_ptr: tl.tensor``) are evidence the author gave."""
    for p in kernel.params:
        ann = (p.annotation or "").strip().strip("'\"")
        if not ann or p.constexpr:
            continue
        f = facts.get(p.name)
        if f is None:
            continue
        last = ann.rsplit(".", 1)[-1]
        if ann in _ANN_SCALARS:
            kind, _ = _ANN_SCALARS[ann]
            f.pointer.clear()
            f.scalar.insert(0, f"annotation:{ann} → scalar")
            f.value[kind].insert(0, f"annotation:{ann} → {_ANN_SCALARS[ann][1]}")
            if kind == "int":
                f.value["float"].clear()
            else:
                f.value["int"].clear()
        elif last in ("tensor", "Tensor", "pointer_type") and not f.pointer:
            f.pointer.append(f"annotation:{ann} → pointer")
        elif last in DTYPE_NAMES:
            kind = "int" if last in INT_DTYPES else "float"
            f.pointer.clear()
            f.scalar.insert(0, f"annotation:{ann} → scalar")
            f.value[kind].insert(0, f"annotation:{ann} → {_TL_TO_SIG[last]}")

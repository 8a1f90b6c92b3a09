"""Reading kernel sources for inference: parsed files, functions, call shapes."""

from __future__ import annotations

import ast
import functools
import os
from contextlib import contextmanager
from pathlib import Path

DTYPE_NAMES = {
    "float16", "bfloat16", "float32", "float64", "int1", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "float8e4nv", "float8e5", "float8e4b15", "float8e4b8", "float8e5b16",
}




@functools.lru_cache(maxsize=512)
def _parse(path: str, mtime: float) -> ast.Module | None:
    try:
        return ast.parse(Path(path).read_text(errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return None


@functools.lru_cache(maxsize=16384)
def parse_expr(src: str) -> ast.expr:
    """``src`` as one expression (SyntaxError when it is not).  Cached: the
    same launch arguments are parsed again for every spec and evaluation
    (75,000 parses for vLLM 0.33.0); callers never change the tree."""
    return ast.parse(src, mode="eval").body


# The files each kernel's inference being watched (``reading``) has read: a
# re-scan reuses a kernel's specs while none of them has changed.
_READERS: list[set[str]] = []


@contextmanager
def reading():
    """The set of files ``parse_file`` is asked for inside the block."""
    files: set[str] = set()
    _READERS.append(files)
    try:
        yield files
    finally:
        _READERS.remove(files)


def parse_file(root: Path, rel: str) -> ast.Module | None:
    # os.path, not pathlib: inference asks ~40,000 times per large checkout.
    path = os.path.join(root, rel)
    for files in _READERS:
        files.add(path)
    try:
        return _parse(path, os.stat(path).st_mtime)
    except OSError:
        return None


def find_def(tree: ast.Module, line: int) -> ast.FunctionDef | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno == line:
            return node
    return None


def find_function(tree: ast.Module, qualname: str | None) -> ast.FunctionDef | None:
    """A function by its dotted path of enclosing functions/classes."""
    if not qualname:
        return None
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        found = None
        for n in _walk_stmts(scope):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part:
                found = n
                break
        if found is None:
            return None
        node = found
        scope = found.body
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _walk_stmts(stmts):
    for n in stmts:
        yield n
        if isinstance(n, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for part in ("body", "orelse", "finalbody"):
                yield from _walk_stmts(getattr(n, part, []) or [])
            for h in getattr(n, "handlers", []) or []:
                yield from _walk_stmts(h.body)


def _fname(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return ""


def _dtype_of(node: ast.AST | None) -> str | None:
    """``tl.float32`` → ``float32``."""
    if isinstance(node, ast.Attribute) and node.attr in DTYPE_NAMES:
        return node.attr
    if isinstance(node, ast.Name) and node.id in DTYPE_NAMES:
        return node.id
    return None


def _arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if len(call.args) > pos:
        return call.args[pos]
    return None

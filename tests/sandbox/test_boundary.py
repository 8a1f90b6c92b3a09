"""The sandbox boundary: what runs inside the compiler's interpreter.

Everything in ``tritriage/sandbox/`` runs in the interpreter that has the
compiler (where tritriage's own dependencies may be missing) and parts of it
are pasted verbatim into reproducers.  So each of its files may import only
the standard library, triton and the sandbox's own modules.  What the
loader imports on the checkout's behalf (the kernel module's own imports,
through ``importlib``) is the checkout's, not the sandbox's.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parents[2] / "tritriage" / "sandbox"
ALLOWED_PREFIXES = ("triton", "tritriage.sandbox")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the sandbox by construction
                continue
            yield node.lineno, node.module or ""


def _allowed(name: str) -> bool:
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    return any(name == p or name.startswith(p + ".") for p in ALLOWED_PREFIXES)


SOURCES = sorted(SANDBOX.rglob("*.py"))


def test_the_sandbox_holds_the_worker_stages_and_loader():
    # The spec check is the worker's too (a frontend-only job): no second server.
    names = {p.name for p in SOURCES}
    assert {"worker.py", "stages.py", "loader.py"} <= names and "frontend.py" not in names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_sandbox_files_import_only_stdlib_triton_and_each_other(path):
    bad = [f"{path.name}:{line}: import {name}" for line, name in _imports(path) if not _allowed(name)]
    assert not bad, "the sandbox may import only the standard library, triton and itself:\n" + "\n".join(bad)


def test_the_checker_catches_an_import_from_outside(tmp_path):
    # Guard against a checker that passes everything.
    bad = tmp_path / "bad.py"
    bad.write_text("import yaml\nfrom tritriage.model import Spec\nfrom tritriage.sandbox import stages\n")
    found = [name for _, name in _imports(bad) if not _allowed(name)]
    assert found == ["yaml", "tritriage.model"]


def test_the_compile_cache_key_follows_the_sandbox(tmp_path, monkeypatch):
    import tritriage.cache as cache

    (tmp_path / "stages.py").write_text("A = 1\n")
    monkeypatch.setattr(cache, "SANDBOX", tmp_path)
    monkeypatch.setattr(cache, "_SANDBOX_DIGEST", None)
    before = cache.sandbox_digest()
    (tmp_path / "stages.py").write_text("A = 2\n")
    monkeypatch.setattr(cache, "_SANDBOX_DIGEST", None)
    assert cache.sandbox_digest() != before

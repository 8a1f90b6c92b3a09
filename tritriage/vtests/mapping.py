"""Which of vLLM's own tests exercise which kernel source file.

Two sources, in this order:

``catalog``
    the ``tests:`` commands of the catalog YAML (per file and per kernel),
    as the porting team wrote them, ``-k`` selections included;
``imports``
    ``PATH/tests/**/test_*.py`` parsed with ``ast``: a test that imports a
    kernel's module, or a Python function that launches one of its kernels
    (discovery's launch sites), exercises that file.  A test file a catalog
    command already runs for the same kernel file adds nothing, so that the
    catalog's ``-k`` selection is not undone by a run of the whole file.

Helpers follow their callers: a jit function called from kernels of another
file is exercised by that file's tests (vLLM's ``lora/ops/triton_ops/
kernel_utils.py`` by ``test_punica_ops.py``).  A kernel file no source maps
is listed as having no test.

Nothing is imported or run here; ``vtests_run`` runs what this maps.
"""

from __future__ import annotations

import ast
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tritriage.specs.catalog import Catalog
from tritriage.discover.inventory import Resolver, _import_aliases, iter_python_files, module_name
from tritriage.model import Inventory, Kernel, TestMapping

# Tests found by imports kept per kernel file; the rest are counted, not run.
MAX_IMPORT_TESTS = 5

# pytest options whose value is the next argument; anything else that does not
# start with "-" is a path to test.
_PYTEST_VALUE_OPTS = {
    "-k", "-m", "-p", "-o", "-c", "-n", "-W", "--deselect", "--ignore", "--ignore-glob", "--rootdir",
    "--junitxml", "--junit-xml", "--log-level", "--tb", "--maxfail", "--durations", "--timeout", "--basetemp",
    "--confcutdir", "--override-ini", "--dist", "--capture", "--import-mode", "--junit-prefix", "-r",
}


@dataclass
class TestMap:
    """Every kernel file of a checkout and the test commands mapped to it."""

    __test__ = False

    root: str
    mappings: list[TestMapping] = field(default_factory=list)  # files with tests
    no_test: list[str] = field(default_factory=list)  # kernel files nothing maps to
    more_imports: dict[str, int] = field(default_factory=dict)  # file -> importing tests left out (MAX_IMPORT_TESTS)

    def files(self) -> list[str]:
        return sorted({m.kernel_file for m in self.mappings} | set(self.no_test))

    def commands(self) -> dict[str, list[TestMapping]]:
        """Command -> its mappings, in first-seen order (each command runs once)."""
        out: dict[str, list[TestMapping]] = {}
        for m in self.mappings:
            if m.command:
                out.setdefault(m.command, []).append(m)
        return out

    def all_rows(self) -> list[TestMapping]:
        """What the store records: mappings, and one command-less row per untested file."""
        return self.mappings + [TestMapping(kernel_file=f, command=None) for f in self.no_test]


# --------------------------------------------------------------------------
# test commands


def split_command(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def pytest_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``pytest`` / ``python -m pytest``; None when not a pytest command."""
    if not argv:
        return None
    head = os.path.basename(argv[0])
    if head in ("pytest", "py.test"):
        return argv[1:]
    if head.startswith("python") and len(argv) >= 3 and argv[1] == "-m" and argv[2] == "pytest":
        return argv[3:]
    return None


def command_paths(command: str) -> list[str]:
    """The test files or directories a command names, relative as written."""
    argv = split_command(command)
    args = pytest_args(argv)
    if args is None:
        # A script run ("python triton/test_x.py"): its first .py argument.
        return [a for a in argv[1:] if a.endswith(".py")][:1]
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("-"):
            skip = a in _PYTEST_VALUE_OPTS
            continue
        out.append(a.split("::", 1)[0])
    return out


def _norm(path: str) -> str:
    return os.path.normpath(path).replace(os.sep, "/")


# --------------------------------------------------------------------------
# mapping


def map_tests(inventory: Inventory, catalog: Catalog | None = None, *, use_imports: bool = True) -> TestMap:
    """Map every kernel file of ``inventory`` to the test commands that exercise it."""
    root = Path(inventory.root)
    by_file: dict[str, list[Kernel]] = {}
    for k in inventory.kernels:
        by_file.setdefault(k.file, []).append(k)
    by_id = inventory.by_id()

    # (kernel file, command) -> mapping; kernels None = the whole file.
    found: dict[tuple[str, str], dict] = {}

    def add(file: str, command: str, source: str, via: str, kernels: set[str] | None) -> None:
        slot = found.setdefault((file, command), {"source": source, "via": via, "kernels": set()})
        if kernels is None or slot["kernels"] is None:
            slot["kernels"] = None
        else:
            slot["kernels"] |= kernels

    if catalog is not None:
        for file, cmds in _catalog_tests(catalog, by_file).items():
            for cmd, kernels in cmds.items():
                add(file, cmd, "catalog", "", kernels)
    more: dict[str, int] = {}
    if use_imports:
        covered = {(f, _norm(p)) for (f, c) in found for p in command_paths(c)}
        links: dict[str, list] = {}
        for test_file, file, kernels, via in _import_links(root, inventory, by_file):
            if (file, test_file) not in covered:
                links.setdefault(file, []).append((test_file, kernels, via))
        for file, found_links in links.items():
            # A module such as fp8_utils is imported by dozens of model tests;
            # kernel tests, and tests that import a launching function, say
            # more about the kernels for much less device time.
            found_links.sort(key=lambda t: (not t[0].startswith("tests/kernels/"), t[1] is None, t[0]))
            for test_file, kernels, via in found_links[:MAX_IMPORT_TESTS]:
                add(file, f"pytest {test_file}", "imports", via, kernels)
            if len(found_links) > MAX_IMPORT_TESTS:
                more[file] = len(found_links) - MAX_IMPORT_TESTS

    _follow_calls(found, by_file, by_id)

    mappings = []
    for (file, cmd), slot in found.items():
        ids = slot["kernels"]
        whole = ids is None or ids >= {k.id for k in by_file.get(file, ())}
        mappings.append(TestMapping(kernel_file=file, command=cmd, source=slot["source"], via=slot["via"],
                                    kernels=() if whole else tuple(sorted(ids))))
    # Catalog before imports, then by file: the order commands run in.
    mappings.sort(key=lambda m: (m.source != "catalog", m.kernel_file, m.command or ""))
    mapped = {m.kernel_file for m in mappings}
    return TestMap(root=str(root), mappings=mappings, no_test=sorted(f for f in by_file if f not in mapped),
                   more_imports=more)


def _catalog_tests(catalog: Catalog, by_file: dict[str, list[Kernel]]) -> dict[str, dict[str, set[str] | None]]:
    """file -> command -> kernel ids it names (None: every entry of the file has it)."""
    out: dict[str, dict[str, set[str] | None]] = {}
    for file, kernels in by_file.items():
        entries = [(k, catalog.get(k)) for k in kernels]
        entries = [(k, e) for k, e in entries if e is not None and e.tests]
        if not entries:
            continue
        cmds: dict[str, set[str]] = {}
        for k, e in entries:
            for t in e.tests:
                cmds.setdefault(t, set()).add(k.id)
        # Entry.tests merges the file's tests into each kernel's: a command
        # every described kernel has is the file's.
        described = {k.id for k, _ in entries}
        out[file] = {c: (None if ids == described else ids) for c, ids in cmds.items()}
    return out


def _follow_calls(found: dict, by_file: dict[str, list[Kernel]], by_id: dict[str, Kernel]) -> None:
    """Give helper files the tests of the files whose kernels call them."""
    for (file, cmd), slot in list(found.items()):
        start = {k.id for k in by_file.get(file, ())} if slot["kernels"] is None else set(slot["kernels"])
        reached, todo = set(), list(start)
        while todo:
            k = by_id.get(todo.pop())
            if k is None:
                continue
            for callee in k.calls:
                if callee not in reached and callee not in start:
                    reached.add(callee)
                    todo.append(callee)
        for callee in sorted(reached):
            ck = by_id.get(callee)
            if ck is None or ck.file == file:
                continue
            # A file mapped to this command in its own right keeps its source and via.
            slot2 = found.setdefault((ck.file, cmd),
                                     {"source": slot["source"], "via": f"called from {file}", "kernels": set()})
            if slot2["kernels"] is not None:
                slot2["kernels"].add(callee)


def _import_links(root: Path, inventory: Inventory, by_file: dict[str, list[Kernel]]):
    """Yield (test file, kernel file, kernel ids or None, via) for each test import that reaches a kernel file."""
    tests_dir = root / "tests"
    if not tests_dir.is_dir():
        return
    module_files = {}
    for _, rel in iter_python_files(root):
        if not rel.startswith("tests/"):
            module_files[module_name(rel)] = rel
    resolver = Resolver(root, module_files)

    kernel_module = {module_name(f): f for f in by_file}
    # "module.attr" -> (kernel file, kernel ids) for kernels and launching functions.
    targets: dict[str, list[tuple[str, set[str]]]] = {}
    # module of a launch site outside the kernel's file -> the kernels it launches
    launchers: dict[str, list[tuple[str, set[str]]]] = {}
    for k in inventory.kernels:
        targets.setdefault(f"{k.module}.{k.qualname.split('.')[0]}", []).append((k.file, {k.id}))
        for s in k.launch_sites:
            smod = module_name(s.file)
            if s.function:
                targets.setdefault(f"{smod}.{s.function.split('.')[0]}", []).append((k.file, {k.id}))
            if s.file != k.file:
                launchers.setdefault(smod, []).append((k.file, {k.id}))

    for path, rel in iter_python_files(tests_dir):
        name = os.path.basename(rel)
        if not (name.startswith("test_") or name.endswith("_test.py")):
            continue
        test_rel = f"tests/{rel}"
        try:
            tree = ast.parse(Path(path).read_bytes(), filename=test_rel)
        except (SyntaxError, ValueError, OSError):
            continue
        imported = _imports(tree, module_name(test_rel), resolver)
        # per kernel file: the kernel ids named, or None once the module itself is used
        hits: dict[str, set[str] | None] = {}
        vias: dict[str, str] = {}
        for dotted in imported:
            for file, ids, via in _resolve_import(dotted, kernel_module, targets, launchers):
                vias.setdefault(file, via)
                if ids is None or hits.get(file, set()) is None:
                    hits[file] = None
                else:
                    hits[file] = hits.get(file, set()) | ids
        for file in sorted(hits):
            yield test_rel, file, hits[file], vias[file]


def _imports(tree: ast.Module, module: str, resolver: Resolver) -> list[str]:
    """Every dotted name a test file imports (nested imports too), re-exports followed."""
    aliases = _import_aliases(tree, module, False)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    names.update(v for v in aliases.values())
    out = []
    for n in sorted(names):
        full = resolver.follow(n)
        out.append(full)
        if full != n:
            out.append(n)
    return out


def _resolve_import(dotted: str, kernel_module: dict[str, str], targets: dict, launchers: dict
                    ) -> Iterable[tuple[str, set[str] | None, str]]:
    via = f"imports {dotted}"
    if dotted in kernel_module:
        yield kernel_module[dotted], None, via
        return
    if dotted in targets:
        for file, ids in targets[dotted]:
            yield file, set(ids), via
        return
    if dotted in launchers:
        for file, ids in launchers[dotted]:
            yield file, set(ids), via
        return
    mod, _, _ = dotted.rpartition(".")
    if mod in kernel_module:
        # Some other name of the kernel's module (a wrapper, a registered
        # op): using the module runs its kernels somewhere.
        yield kernel_module[mod], None, via


def select(test_map: TestMap, inventory: Inventory, *, files: Iterable[str] = (), kernels: Iterable[Kernel] = ()
           ) -> TestMap:
    """The part of ``test_map`` that concerns ``files`` and ``kernels`` (all when both are empty)."""
    files, kernels = set(files), list(kernels)
    if not files and not kernels:
        return test_map
    kfiles = {k.file for k in kernels}
    kids = {k.id for k in kernels}

    def keep(m: TestMapping) -> bool:
        if m.kernel_file in files:
            return True
        return m.kernel_file in kfiles and (not m.kernels or bool(kids & set(m.kernels)))

    return TestMap(root=test_map.root, mappings=[m for m in test_map.mappings if keep(m)],
                   no_test=[f for f in test_map.no_test if f in files or f in kfiles],
                   more_imports={f: n for f, n in test_map.more_imports.items() if f in files or f in kfiles})


# --------------------------------------------------------------------------
# per-file verdicts (what the checklist shows beside the compile verdicts)


@dataclass
class FileVerdict:
    """What the tests said about one kernel file."""

    file: str
    verdict: str  # no test | not run | passed | failed | skipped
    mappings: list[TestMapping] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> cases
    classes: dict[str, int] = field(default_factory=dict)  # diagnosis class -> failed cases
    causes: list[str] = field(default_factory=list)  # "class: subclass", each once, most frequent first
    not_run: list[str] = field(default_factory=list)  # reasons, each once
    cases: list = field(default_factory=list)  # TestResult

    def to_dict(self) -> dict:
        return {"file": self.file, "verdict": self.verdict, "tests": [m.to_dict() for m in self.mappings],
                "counts": self.counts, "classes": self.classes, "causes": self.causes, "not_run": self.not_run,
                "cases": [c.to_dict() for c in self.cases]}


FAILING = ("failed", "error", "timeout")


def file_verdicts(mappings, results) -> dict[str, FileVerdict]:
    """Kernel file -> FileVerdict, from ``store.test_map(run)`` and ``store.test_results(run)``.

    A file is "failed" when any case mapped to it failed (errors and timeouts
    count), else "passed" when one passed, else "skipped" when every case that
    ran was skipped, else "not run"; "no test" when nothing maps to it.
    """
    from collections import Counter

    out: dict[str, FileVerdict] = {}
    for m in mappings:
        fv = out.setdefault(m.kernel_file, FileVerdict(m.kernel_file, "no test"))
        if m.command:
            fv.mappings.append(m)
    for r in results:
        for f in r.kernel_files:
            fv = out.get(f)
            # A command no longer mapped to the file (the catalog changed) says nothing about it.
            if fv is not None and any(m.command == r.command for m in fv.mappings):
                fv.cases.append(r)
    for fv in out.values():
        if not fv.mappings:
            continue
        counts = Counter(c.outcome for c in fv.cases)
        fails = [c for c in fv.cases if c.outcome in FAILING]
        fv.counts = dict(counts)
        fv.classes = dict(Counter(c.diagnosis.cls if c.diagnosis else "unknown" for c in fails))
        causes = Counter(f"{c.diagnosis.cls}: {c.diagnosis.subclass}" if c.diagnosis else "unknown" for c in fails)
        fv.causes = [c for c, _ in causes.most_common()]
        fv.not_run = list(dict.fromkeys(c.reason for c in fv.cases if c.outcome == "not-run"))
        if fails:
            fv.verdict = "failed"
        elif counts.get("passed"):
            fv.verdict = "passed"
        elif counts.get("skipped"):
            fv.verdict = "skipped"
        else:
            fv.verdict = "not run"
    return dict(sorted(out.items()))

"""Specs for kernels: from the catalog, from traces, or inferred; and their validation.

Public API (the engine calls ``specs_for``):

* ``specs_for(kernel, inventory, root, *, catalog=None, catalog_dirs=None,
  include_stale=False) -> list[Spec]``: the catalog's specs when it knows the
  kernel and its parameter list has not changed since (``Spec.source ==
  "catalog"``), then traced ones (``"traced"``), else one inferred spec
  (``"inferred"``).  A catalog entry whose ``params_fingerprint`` no longer
  matches is *stale*: its specs are left out (the kernel falls back to
  inference) unless ``include_stale`` asks for them, marked ``Spec.stale``.
  Never compile a stale spec.
* ``load_catalog(dirs=None) -> Catalog``; ``params_fingerprint(kernel)``.
* ``compile_args(spec, param_names)``: (signature, constants) for triton's
  ``ASTSource``, with ``"tl.float16"`` strings turned into dtypes.
* ``validate(pairs, root, *, reference=False)``: frontend check of each
  (kernel, spec) in triton-ascend, cross-checked by upstream Triton on demand;
  the checks run on the compile workers (``compile/pool.py``), as frontend-only jobs.
* ``specs_command(...)``: ``tritriage specs PATH``.

A spec is *sound* when triton-ascend's frontend accepts it, or when upstream
Triton (the reference) compiles it while triton-ascend rejects it: then the
rejection is an Ascend gap, not a bad spec.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from tritriage.specs.catalog import (  # noqa: F401 - re-exported API
    PACKAGE_CATALOG,
    Catalog,
    Entry,
    check_catalog,
    check_entry,
    checkout_version,
    load_catalog as _load_catalog,
    params_fingerprint,
    write_catalog,
)
from tritriage.specs.infer import infer_specs
from tritriage.errors import UserError
from tritriage.model import Inventory, Kernel, Spec


def traced_dir() -> Path:
    """Where recorded launches are kept as catalog YAML with ``source: traced``."""
    from tritriage.paths import data_dir

    return data_dir() / "traced"


def load_catalog(dirs: Iterable[Path | str] | None = None, *, with_traced: bool = True) -> Catalog:
    """The package catalog (or ``dirs``), plus traced specs from the data directory."""
    dirs = [PACKAGE_CATALOG] if dirs is None else list(dirs)
    t = traced_dir()
    if with_traced and t.is_dir() and t not in [Path(d) for d in dirs]:
        dirs.append(t)
    return _load_catalog(dirs)


_CATALOG_CACHE: dict[tuple[str, ...], Catalog] = {}
_CHECKED: set[tuple[int, str]] = set()


def _catalog(catalog_dirs: Sequence[Path | str] | None) -> Catalog:
    dirs = [PACKAGE_CATALOG] + [Path(d) for d in (catalog_dirs or [])]
    # Traced specs land in the data directory while a process lives (a test
    # session, a trace then a scan): the key follows that directory's files.
    traced = traced_dir()
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in traced.rglob("*.yaml"))) if traced.is_dir() else ()
    key = tuple(str(Path(d).resolve()) for d in dirs) + (str(traced), str(stamp))
    if key not in _CATALOG_CACHE:
        _CATALOG_CACHE[key] = load_catalog(dirs)
    return _CATALOG_CACHE[key]


def stale_reason(entry: Entry, kernel: Kernel) -> str:
    now = params_fingerprint(kernel)
    if entry.params_fingerprint == now:
        return ""
    return (f"catalog entry {entry.yaml_path} was written for parameters {entry.params_fingerprint}, "
            f"the kernel's are now {now}: review its specs against {kernel.file}:{kernel.line}")


def bind_catalog(inventory: Inventory | None, root: Path | str, *, catalog: Catalog | None = None,
                 catalog_dirs: Sequence[Path | str] | None = None) -> Catalog:
    """The catalog, checked once against the checkout (``check_catalog``
    raises on an entry that cannot be right), also when every kernel's specs
    come from an earlier scan."""
    if catalog is None:
        catalog = _catalog(catalog_dirs)
    if inventory is not None and (id(catalog), inventory.root) not in _CHECKED:
        check_catalog(catalog, inventory, root)
        _CHECKED.add((id(catalog), inventory.root))
    return catalog


def specs_for(kernel: Kernel, inventory: Inventory | None, root: Path | str | None = None, *,
              catalog: Catalog | None = None, catalog_dirs: Sequence[Path | str] | None = None,
              include_stale: bool = False) -> list[Spec]:
    """Specs to compile ``kernel`` with, best source first (see the module doc)."""
    root = Path(root or (inventory.root if inventory is not None else "."))
    catalog = bind_catalog(inventory, root, catalog=catalog, catalog_dirs=catalog_dirs)
    fresh: list[Spec] = []
    stale: list[Spec] = []
    for entry in (catalog.get(kernel), catalog.get_traced(kernel)):
        if entry is None:
            continue
        why = stale_reason(entry, kernel)
        if why:
            stale.extend(replace(s, stale=why) for s in entry.specs)
            continue
        check_entry(entry, kernel)
        fresh.extend(entry.specs)
    out = list(fresh)
    if not out:
        for spec in infer_specs(kernel, inventory, root):
            if stale:
                spec = replace(spec, origin=f"inferred (catalog stale: {stale[0].stale})")
            out.append(spec)
    if include_stale:
        out = stale + out
    return out


def compile_args(spec: Spec, param_names: Sequence[str], constexpr_names: Iterable[str] = ()) -> tuple[dict, dict]:
    """``(signature, constants)`` for triton-ascend's ``ASTSource``."""
    import triton.language as tl

    cx = set(constexpr_names)
    signature, constants = {}, {}
    for name in param_names:
        if name in spec.constexprs or name in cx:
            if name in spec.constexprs:
                v = spec.constexprs[name]
                if isinstance(v, str) and v.startswith("tl."):
                    v = getattr(tl, v[3:])
                constants[name] = v
            signature[name] = "constexpr"
        elif name in spec.signature:
            signature[name] = spec.signature[name]
    return signature, constants


# --------------------------------------------------------------------------
# validation


@dataclass
class Verdict:
    frontend: bool | None = None  # triton-ascend's frontend accepts it (None: not checked)
    valid: bool | None = None  # sound: see the module doc
    reason: str = ""  # why not valid, or why valid despite a frontend rejection
    cross_checked: bool = False  # upstream Triton compiled it too
    reference: bool | None = None  # upstream Triton accepts it
    error: str = ""  # triton-ascend's message
    reference_error: str = ""


# How long one spec check may take (load, specialize, frontend).
CHECK_TIMEOUT = float(os.environ.get("TRITRIAGE_FRONTEND_TIMEOUT", "60"))


def _check(pairs: Sequence[tuple[Kernel, Spec]], ids: Sequence[int], root: str, python: str, target: str,
           size: int) -> dict[int, dict]:
    """Frontend checks of ``pairs[i]`` for each ``i`` in ``ids``, on the compile
    workers (``compile/pool.py``, ``sandbox/worker.py``): ``{i: {"ok", "error", "kind"}}``."""
    from tritriage.compile.pool import Job, Settings, WorkerPool, WorkerStartError
    from tritriage.model import PASSES

    if not ids:
        return {}
    # No crash retry: a spec check that crashes is rare and says enough once.
    from tritriage.discover.plugin import source_trees

    settings = Settings(python=python, target=target, timeout=CHECK_TIMEOUT, retry_crashes=False,
                        arch=os.environ.get("TRITON_ASCEND_ARCH") or "Ascend910B3",
                        roots=tuple(t.path for t in source_trees(root)))
    jobs = [Job(kernel=pairs[i][0], spec=pairs[i][1], checkout=root, id=i, stop_after="frontend") for i in ids]
    out: dict[int, dict] = {}
    try:
        with WorkerPool(settings, min(size, len(jobs))) as pool:
            for job, r in pool.run(jobs):
                if r.outcome in PASSES:
                    out[job.id] = {"ok": True, "error": ""}
                elif r.outcome == "timeout":
                    out[job.id] = {"ok": False, "error": f"timeout: frontend ran past {CHECK_TIMEOUT:g} s",
                                   "kind": "timeout"}
                elif r.outcome in ("crash", "oom"):
                    why = f"died by signal {r.signal}" if r.signal else (r.error.splitlines() or ["?"])[0]
                    out[job.id] = {"ok": False, "error": f"crash: frontend {why}", "kind": "crash"}
                else:
                    kind = {"loader-error": "loader", "spec-error": "spec"}.get(r.outcome, "compile")
                    out[job.id] = {"ok": False, "error": r.error, "kind": kind}
    except WorkerStartError:
        raise UserError(f"{python}: cannot start the frontend check (is triton importable there?)") from None
    return out


# Frontend errors that say the compiler lacks something, not that the spec is wrong.
_GAP_MARKERS = ("has no attribute", "not supported", "unsupported", "NotImplementedError", "is not implemented",
                "cannot import name", "No module named")


def looks_like_gap(error: str) -> bool:
    return any(m in error for m in _GAP_MARKERS)


def validate(pairs: Sequence[tuple[Kernel, Spec]], root: Path | str, *, reference: bool = False,
             python: str | None = None, jobs: int | None = None,
             reference_python: str | None = None) -> list[Verdict]:
    """One verdict per (kernel, spec): frontend on triton-ascend, reference on demand.

    With ``reference``, only specs triton-ascend rejects are compiled upstream:
    an accepted spec is sound whatever upstream says.
    """
    root = str(Path(root).resolve())
    size = jobs or max(1, os.cpu_count() or 1)
    asc = _check(pairs, range(len(pairs)), root, python or sys.executable, "ascend", size)
    verdicts = []
    for i in range(len(pairs)):
        r = asc.get(i) or {"ok": False, "error": "no answer"}
        v = Verdict(frontend=bool(r["ok"]), error=r.get("error", ""))
        if v.frontend:
            v.valid = True
        elif r.get("kind") == "loader":
            v.valid = False
            v.reason = f"loader: {v.error}"
        else:
            v.valid = False
            hint = " (looks like an Ascend gap; --reference would tell)" if looks_like_gap(v.error) and not reference else ""
            v.reason = f"triton-ascend frontend rejects it: {_first_line(v.error)}{hint}"
        verdicts.append(v)
    if reference:
        from tritriage.compile import reference as ref

        py = reference_python or str(ref.require())
        redo = [i for i, v in enumerate(verdicts) if not v.frontend and not v.reason.startswith("loader:")]
        res = _check(pairs, redo, root, py, "cuda", size)
        for i in redo:
            v = verdicts[i]
            r = res.get(i) or {"ok": False, "error": "no answer"}
            v.cross_checked = True
            v.reference = bool(r["ok"])
            v.reference_error = r.get("error", "")
            if v.reference:
                v.valid = True
                v.reason = f"Ascend gap: upstream Triton compiles it, triton-ascend rejects it: {_first_line(v.error)}"
            else:
                v.reason = (f"spec: upstream Triton rejects it too ({_first_line(v.reference_error)}); "
                            f"triton-ascend: {_first_line(v.error)}")
    return verdicts


# The name the engine's design notes use.
validate_frontend = validate


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    # Triton's CompilationError puts the source excerpt first and the message last.
    import re

    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Warning)\w*\b", ln):
            return ln[:300]
    for ln in reversed(lines):
        if not ln.startswith(("^", "~")) and ("Error" in ln or "error" in ln):
            return ln[:300]
    return lines[-1][:300]


# --------------------------------------------------------------------------
# the command

"""What a report shows, read once from the store into frozen records.

Every output format (terminal, markdown, JSON, JUnit, SARIF, diff) renders
from a ``ReportView`` built by ``build_view(store, run)``, so that they agree
on every count and every verdict.

Kernel status (one of ``STATUSES``):

``passed``
    every spec tried reached the end of what this machine can run (outcome
    ``passed``, or ``passed-to-binary`` / ``passed-to-linalg`` where CANN is absent).  A flaky result
    (a crash that did not reproduce on retry) counts by its retry's outcome
    and is marked ``flaky``.
``failed``
    at least one spec failed on Ascend: a compiler stage failed, or the
    kernel could not be loaded, or the compile timed out, crashed or ran out
    of memory.
``no-spec``
    nothing could be compiled for want of a usable spec: none found, the
    catalog marks it unsupported, or every spec was rejected by the tool
    itself (``spec-error``: tritriage's problem, never an Ascend failure).
``not-run``
    not compiled in this run: the scan was interrupted, or filtered to other
    kernels with ``--kernel``.

A helper (a jit function only called from jit code) is never compiled on its
own: it passes when every entry kernel that calls it, directly or through
other helpers, passes; it fails "via caller" when one of them fails; else it
is ``not-run`` (or ``no-spec`` when every caller is).
"""

from __future__ import annotations

import dataclasses

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tritriage.model import FAIL_OUTCOMES, PASSES, FAILED, NOT_RUN, PASSED, STAGES, Diagnosis, Kernel, Location, StageResult
from tritriage.sandbox.loader import OTHER_TREE_NOTE
from tritriage.store import Run, Store, StoredResult
from tritriage.specs.constexprs import AS_ASCEND

STATUSES = ("passed", "failed", "no-spec", "not-run")
# Where a failure happened when no compiler stage reports it.
_OUTCOME_WHERE = {"loader-error": "loader", "timeout": "timeout", "crash": "crash", "oom": "oom"}


@dataclass(frozen=True)
class ErrorView:
    """One failure of one entry kernel with one spec."""

    kernel: str  # id of the entry kernel whose compile failed
    spec: str
    outcome: str
    stage: str | None  # compiler stage that failed, when one did
    cls: str
    subclass: str
    fingerprint: str
    location: Location | None
    hint: str | None
    file: str  # where a code-scanning view should point: relative to the checkout
    line: int
    text: str  # cleaned diagnostic, stack dumps cut to their top frames
    excerpt: str = ""

    @property
    def where(self) -> str:
        """The stage, or what stopped the compile outside any stage."""
        return self.stage or _OUTCOME_WHERE.get(self.outcome, self.outcome)

    @property
    def title(self) -> str:
        return f"{self.cls}: {self.subclass}" if self.subclass else self.cls


# What the loader prints when it uses a stand-in (sandbox/loader.py).
_STANDIN = re.compile(r"\[tritriage\] loader: (\S+) is bound only at run time")
# What the Ascend-host emulation answered while loading the kernel (sandbox/loader.py).
_ASCEND = re.compile(r"\[tritriage\] loader: evaluated as Ascend: (.+)")
# A module the kernel's code came from in another source tree (scan --with; sandbox/loader.py).
_OTHER_TREE = re.compile(r"\[tritriage\] loader: " + re.escape(OTHER_TREE_NOTE) + r" (.+)")


# What the emulated Ascend host answered while a launch site's value was
# computed for an inferred spec (specs/constexprs.py as_ascend), up to the next
# clause of the rule.
_SPEC_ASCEND = re.compile(re.escape(AS_ASCEND) + r"(.+?)(?:; |$)")


def _spec_answers(spec) -> list[str]:
    """'PARAM: answers' for each spec value the emulated Ascend host decided."""
    out = []
    for param, why in (spec.rules or {}).items() if spec is not None else ():
        for m in _SPEC_ASCEND.finditer(str(why)):
            out.append(f"{param}: {m.group(1).strip()}")
    return out


@dataclass(frozen=True)
class SpecView:
    name: str
    source: str  # catalog | traced | inferred
    origin: str
    outcome: str
    verdict: str  # passed | failed | spec-error
    failed_stage: str | None
    flaky: bool
    cached_from: int | None
    seconds: float
    stages: tuple[StageResult, ...]
    error: ErrorView | None = None
    spec_error: str = ""  # first line of a spec-error
    standins: tuple[str, ...] = ()  # run-time names the loader replaced (vllm.platforms.current_platform)
    ascend: tuple[str, ...] = ()  # answers of the emulated Ascend host: "current_platform.is_cuda() -> False"
    other_sources: tuple[str, ...] = ()  # "vllm.v1.worker.gpu.block_table (/path/to/vllm-0.23.0)"
    spec: object = None  # the Spec itself (signature, constexprs, options)


@dataclass(frozen=True)
class KernelView:
    kernel: Kernel
    status: str
    reason: str  # why it is not passed; empty when passed
    specs: tuple[SpecView, ...] = ()
    errors: tuple[ErrorView, ...] = ()  # distinct fingerprints, first failing spec first
    stages: tuple[StageResult, ...] = ()  # one per STAGES, from the spec that decided the status
    flaky: bool = False
    callers: tuple[str, ...] = ()  # entry kernels that call this helper
    via: str | None = None  # the failing caller a helper's status follows
    tests: tuple[str, ...] = ()
    hints: tuple = ()  # HintView per spec a hint search ran for (report/hints.py); never the verdict
    # On Ascend (scan --plugin): how the platform plugin replaces it, if it does:
    # {"by", "file", "line", "verdict"} (verdict: the replacement's, from the plugin's latest scan).
    replaced_by: dict | None = None

    @property
    def used_on_ascend(self) -> str:
        if self.kernel.platform_only:
            return "not-used"
        return "replaced" if self.replaced_by else "as-is"

    @property
    def id(self) -> str:
        return self.kernel.id

    @property
    def error(self) -> ErrorView | None:
        return self.errors[0] if self.errors else None

    @property
    def standins(self) -> tuple[str, ...]:
        """Names vLLM binds at run time that the verdict rests on stand-ins for."""
        return tuple(dict.fromkeys(n for s in self.specs for n in s.standins))


@dataclass(frozen=True)
class Hit:
    """One kernel a failure group of a file hits."""

    kernel: KernelView
    specs: tuple[str, ...]
    via: str | None = None


@dataclass(frozen=True)
class FailureGroup:
    """The kernels of one file that one fingerprint blocks."""

    error: ErrorView  # the first occurrence: its text is the one shown
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class TestVerdictView:
    """What ``tritriage test`` said about one kernel file (vLLM's own tests)."""

    __test__ = False

    verdict: str  # no test | not run | passed | failed | skipped
    counts: dict  # outcome -> test cases
    causes: tuple[str, ...]  # "class: subclass" of failing cases, most frequent first
    not_run: tuple[str, ...]  # reasons the tests could not run
    run_id: int  # the run the test results were recorded in

    def summary(self) -> str:
        if self.verdict == "not run":
            return "not run: " + ("; ".join(self.not_run) or "no result recorded")
        counts = ", ".join(f"{n} {o}" for o, n in sorted(self.counts.items()) if n)
        text = f"{self.verdict} ({counts})" if counts else self.verdict
        if self.causes:
            text += ": " + "; ".join(self.causes[:3]) + (" ..." if len(self.causes) > 3 else "")
        return text


@dataclass(frozen=True)
class FileView:
    file: str
    kernels: tuple[KernelView, ...]  # in the order of the file
    tests: tuple[str, ...]
    failures: tuple[FailureGroup, ...]
    test_verdict: TestVerdictView | None = None  # None: ``tritriage test`` never ran for this checkout


@dataclass(frozen=True)
class RootCause:
    fingerprint: str
    cls: str
    subclass: str
    kernels: tuple[str, ...]  # entry kernel ids it blocks
    where: str
    error: ErrorView


@dataclass(frozen=True)
class Totals:
    kernels: int
    entries: int
    helpers: int
    files: int
    passed: int
    failed: int
    no_spec: int
    not_run: int
    failed_by: dict  # stage (or loader/timeout/crash/oom) -> kernels
    failed_helpers: int  # helpers counted in ``failed`` through a failing caller
    flaky: int
    pairs: int  # kernel/spec results stored
    not_used_on_ascend: int = 0  # kernels listed but out of the totals (Kernel.platform_only)


@dataclass(frozen=True)
class ReportView:
    run: Run
    latest: bool  # whether it is the newest run in the store
    vllm_version: str
    kernels: tuple[KernelView, ...]  # by file, then line
    files: tuple[FileView, ...]
    root_causes: tuple[RootCause, ...]
    totals: Totals
    notes: tuple[str, ...] = ()
    generated: float = field(default_factory=time.time)
    # With a plugin (scan --plugin): kernel ids used as is on Ascend that fail,
    # with no replacement: the plugin team's work list.  None without a plugin.
    plugin_gaps: tuple[str, ...] | None = None
    plugin: str | None = None  # the plugin's checkout

    def by_id(self) -> dict[str, KernelView]:
        return {k.id: k for k in self.kernels}

    def rerun_cmd(self, kernel_id: str) -> str:
        extra = "" if self.latest else f" --run {self.run.id}"
        return f"tritriage rerun --kernel {kernel_id}{extra}"

    def repro_cmd(self, kernel_id: str, spec: str | None = None) -> str:
        extra = (f" --spec {spec}" if spec else "") + ("" if self.latest else f" --run {self.run.id}")
        return f"tritriage repro --kernel {kernel_id} --compile-only{extra}"


# --------------------------------------------------------------------------
# building


def resolve_run(store: Store, run_id: int | None = None) -> Run:
    from tritriage.select import run_of

    return run_of(store, run_id)


def previous_run(store: Store, run: Run) -> Run | None:
    """The newest run of the same checkout before ``run``."""
    for r in store.runs(run.checkout):
        if r.id < run.id:
            return r
    return None


def build_view(store: Store, run: Run, *, catalog=None, clean_text=None) -> ReportView:
    """Read ``run`` from ``store`` into a ``ReportView``.

    ``catalog`` gives the test commands per file and the kernels the catalog
    marks unsupported (default: the package's catalog plus any ``--catalog``
    the scan was given); ``clean_text`` turns a failure's text into the
    diagnostic shown (default: ``tritriage.classify.clean``).
    """
    notes: list[str] = []
    if catalog is None and "catalog_entries" in (run.settings or {}):
        catalog = _StoredCatalog(run.settings["catalog_entries"])
    if catalog is None:
        catalog, note = _load_catalog(run)
        if note:
            notes.append(note)

    stored = store.results(run.id)
    kernels = sorted(store.kernels(run.id), key=lambda k: (k.file, k.line, k.id))
    known = {k.id for k in kernels}
    # Results whose kernel record is missing (an old store) still count.
    for kid in sorted({r.kernel for r in stored} - known):
        kernels.append(_placeholder(kid))
    kernels.sort(key=lambda k: (k.file, k.line, k.id))
    files_known = {k.file for k in kernels}

    by_kernel: dict[str, list[StoredResult]] = {}
    for r in stored:
        by_kernel.setdefault(r.kernel, []).append(r)

    filtered = _kernel_filter(run.argv)
    views: dict[str, KernelView] = {}
    kmap = {k.id: k for k in kernels}
    hint_results: dict[str, list[StoredResult]] = {}
    for r in store.results(run.id, hints=True):
        hint_results.setdefault(r.kernel, []).append(r)
    for k in kernels:
        if k.kind == "helper":
            continue
        views[k.id] = _entry_view(k, by_kernel.get(k.id, []), run, catalog, filtered, files_known, clean_text)
        if k.id in hint_results:
            from tritriage.report.hints import hint_views
            views[k.id] = dataclasses.replace(views[k.id], hints=hint_views(k, by_kernel.get(k.id, []),
                                                                            hint_results[k.id]))

    callers = _entry_callers(kernels)
    for k in kernels:
        if k.kind == "helper":
            views[k.id] = _helper_view(k, [views[c] for c in callers.get(k.id, ()) if c in views], kmap, catalog)

    plugin = (run.settings or {}).get("plugin") or {}
    if plugin.get("replaced"):
        verdicts = _plugin_verdicts(store, plugin.get("root"))
        for kid, r in plugin["replaced"].items():
            if kid in views:
                views[kid] = dataclasses.replace(views[kid], replaced_by=dict(r, verdict=verdicts(r["by"])))
    ordered = tuple(views[k.id] for k in kernels)
    files = _files(ordered, _test_map(store, run.id), _test_verdicts(store, run))
    # Kernels an Ascend host never uses are listed, but neither pass nor fail.
    used = tuple(k for k in ordered if not k.kernel.platform_only)
    root_causes = _root_causes(used)
    totals = dataclasses.replace(_totals(used, len(stored)), not_used_on_ascend=len(ordered) - len(used))
    latest = store.latest_run()
    from tritriage.specs.catalog import checkout_version

    return ReportView(run=run, latest=latest is not None and latest.id == run.id,
                      vllm_version=(run.settings or {}).get("vllm_version", checkout_version(run.checkout)),
                      kernels=ordered, files=files,
                      root_causes=root_causes, totals=totals, notes=tuple(notes),
                      plugin=plugin.get("root"),
                      plugin_gaps=tuple(k.id for k in used if k.kernel.kind != "helper" and k.status == "failed"
                                        and not k.replaced_by) if plugin else None)


def _plugin_verdicts(store: Store, root: str | None):
    """The replacement's verdict, from the latest scan of the plugin: the kernel
    it names, or the kernels the function it names launches."""
    run = store.latest_run(root) if root else None
    if run is None:
        return lambda by: "plugin not scanned (`tritriage scan PLUGIN` gives the replacement's verdict)"
    kernels = store.kernels(run.id)
    results: dict[str, list[str]] = {}
    for r in store.results(run.id):
        results.setdefault(r.kernel, []).append(r.outcome)

    def status(kid: str) -> str:
        outs = results.get(kid, [])
        if not outs:
            return "not compiled"
        return "passed" if all(o in PASSES for o in outs) else "failed"

    def verdict(by: str) -> str:
        if by in results:
            return f"{status(by)} (run #{run.id})"
        launched = [k.id for k in kernels if any(
            f"{s.file[:-3].replace('/', '.')}.{(s.function or '').split('.')[0]}" == by for s in k.launch_sites)]
        if not launched:
            return "no Triton kernel (a Python or torch_npu path)"
        return "; ".join(f"{kid.rsplit('.', 1)[-1]} {status(kid)}" for kid in launched) + f" (run #{run.id})"
    return verdict


def _default_clean(text: str) -> str:
    from tritriage.classify import clean

    return clean(text, max_frames=5)


@dataclass(frozen=True)
class _StoredEntry:
    tests: tuple = ()
    unsupported: str = ""


class _StoredCatalog:
    """The catalog as the scan read it (tests, unsupported marks), from the run record."""

    def __init__(self, entries: dict):
        self.entries = entries

    def get(self, kernel: Kernel):
        e = self.entries.get(kernel.id)
        return _StoredEntry(tuple(e.get("tests") or ()), e.get("unsupported") or "") if e else None


def _load_catalog(run: Run):
    from tritriage.specs.catalog import PACKAGE_CATALOG, Catalog, load_catalog
    from tritriage.errors import UserError

    dirs = [PACKAGE_CATALOG] + [Path(d) for d in _argv_values(run.argv, "--catalog") if Path(d).is_dir()]
    try:
        return load_catalog(dirs), ""
    except UserError as e:
        # A broken catalog must not hide the results; the report says why
        # test commands are missing.
        return Catalog(), f"catalog not read ({e}): test commands left out"


def _argv_values(argv: Iterable[str], *names: str) -> list[str]:
    argv = list(argv or ())
    out = []
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif a.startswith(n + "="):
                out.append(a[len(n) + 1:])
    return out


def _kernel_filter(argv) -> bool:
    return bool(_argv_values(argv, "-k", "--kernel"))


def _placeholder(kid: str) -> Kernel:
    module, _, name = kid.rpartition(".")
    return Kernel(id=kid, name=name, qualname=name, module=module, file=module.replace(".", "/") + ".py",
                  line=0, end_line=0)


def _inside(run: Run, rel: str, files_known: set[str]) -> bool:
    if not rel or os.path.isabs(rel) or rel.startswith("<") or rel.startswith(".."):
        return False
    return rel in files_known or (Path(run.checkout) / rel).is_file()


_PY_LINE = re.compile(r"([\w./-]+\.py):(\d+)")


def _source_line(k: Kernel, d: Diagnosis | None, run: Run, files_known: set[str]) -> tuple[str, int]:
    """Where to point a reader: the diagnosis location inside the checkout,
    else the kernel's ``def``."""
    loc = d.location if d else None
    if loc is not None and loc.line > 0:
        if loc.file == "<kernel>":
            # Triton numbers a CompilationError's lines from the ``def``.
            line = k.line + loc.line - 1
            if k.line and (not k.end_line or line <= k.end_line):
                return k.file, line
        elif _inside(run, loc.file, files_known):
            return loc.file, loc.line
    elif d is not None:
        # Loader errors name ``file.py:line`` in their text, not as a location.
        m = _PY_LINE.search(d.subclass or "")
        if m and _inside(run, m.group(1), files_known):
            return m.group(1), int(m.group(2))
    return k.file, k.line


def _error(k: Kernel, r: StoredResult, run: Run, files_known: set[str], clean_text) -> ErrorView:
    d = r.diagnosis
    res = r.result
    raw = res.error or res.log
    try:
        # What the scan stored, unless a caller asks for its own cleaning.
        if clean_text is None and d is not None and d.cleaned:
            text = d.cleaned
        else:
            text = (clean_text or _default_clean)(raw) if raw else ""
    except Exception:  # noqa: BLE001 - a cleaning bug must not lose the report
        text = raw
    if not text.strip():
        text = (d.excerpt if d else "") or raw
    file, line = _source_line(k, d, run, files_known)
    if d is None:
        first = (res.error or res.outcome).strip().splitlines()
        d = Diagnosis(cls="unknown", subclass=first[0][:200] if first else res.outcome,
                      fingerprint=f"unclassified-{res.outcome}")
    return ErrorView(kernel=k.id, spec=r.spec_name, outcome=res.outcome, stage=res.failed_stage, cls=d.cls,
                     subclass=d.subclass, fingerprint=d.fingerprint, location=d.location, hint=d.hint,
                     file=file, line=line, text=text, excerpt=d.excerpt)


# Why a stage the scanning machine could not run is not run.
_UNAVAILABLE = {"binary": "no bishengir-compile on the scanning machine (no CANN, no ascendnpu-ir)",
                "hivmc": "CANN absent on the scanning machine", "launch": "a scan compiles only"}


def _full_stages(stages: Iterable[StageResult], fallback: str, run: Run) -> tuple[StageResult, ...]:
    have = {s.stage: s for s in stages}
    out = []
    for st in STAGES:
        if st in have:
            out.append(have[st])
        elif run.stages_available and st not in run.stages_available:
            out.append(StageResult(st, NOT_RUN, _UNAVAILABLE.get(st, f"not available on the scanning machine "
                                                                        f"({fallback})")))
        else:
            out.append(StageResult(st, NOT_RUN, fallback))
    return tuple(out)


def _entry_view(k: Kernel, results: list[StoredResult], run: Run, catalog, filtered: bool,
                files_known: set[str], clean_text) -> KernelView:
    entry = catalog.get(k) if catalog is not None else None
    tests = tuple(entry.tests) if entry else ()
    specs: list[SpecView] = []
    for r in results:
        res = r.result
        if res.outcome in PASSES:
            verdict, err, spec_err = PASSED, None, ""
        elif res.outcome == "spec-error":
            verdict, err = "spec-error", None
            spec_err = (res.error.strip().splitlines() or ["spec-error"])[0]
        else:
            verdict, err, spec_err = FAILED, _error(k, r, run, files_known, clean_text), ""
        specs.append(SpecView(name=r.spec_name, source=r.spec.source, origin=r.spec.origin, outcome=res.outcome,
                              verdict=verdict, failed_stage=res.failed_stage, flaky=res.flaky,
                              cached_from=r.cached_from, seconds=res.seconds, stages=res.stages, error=err,
                              spec_error=spec_err,
                              standins=tuple(dict.fromkeys(_STANDIN.findall(res.log or ""))),
                              ascend=tuple(dict.fromkeys([a.strip() for a in _ASCEND.findall(res.log or "")]
                                                         + _spec_answers(r.spec))),
                              other_sources=tuple(dict.fromkeys(a.strip()
                                                                for a in _OTHER_TREE.findall(res.log or ""))),
                              spec=r.spec))
    failing = [s for s in specs if s.verdict == FAILED]
    passing = [s for s in specs if s.verdict == PASSED]
    spec_errors = [s for s in specs if s.verdict == "spec-error"]
    flaky = any(s.flaky for s in specs)
    errors: list[ErrorView] = []
    seen = set()
    for s in failing:
        if s.error.fingerprint not in seen:
            seen.add(s.error.fingerprint)
            errors.append(s.error)
    if failing:
        first = failing[0]
        e = first.error
        reason = f"{e.outcome} at {e.where}" if e.outcome == "failed" else e.outcome
        if e.outcome != "failed" and e.stage:
            reason += f" during {e.stage}"
        return KernelView(k, "failed", f"{reason}: {e.title}", tuple(specs), tuple(errors),
                          _full_stages(first.stages, f"not reached: {e.outcome}", run), flaky, tests=tests)
    if passing:
        reason = ""
        return KernelView(k, "passed", reason, tuple(specs), (), _full_stages(passing[0].stages, "not run", run),
                          flaky, tests=tests)
    if spec_errors:
        why = f"spec-error (the tool's problem, not Ascend's): {spec_errors[0].spec_error}"
        return KernelView(k, "no-spec", why, tuple(specs), (), _full_stages((), "no usable spec", run), flaky,
                          tests=tests)
    if k.platform_only:
        why = "not compiled: not used on Ascend (`tritriage scan --all-platforms` compiles it anyway)"
        return KernelView(k, "not-run", why, (), (), _full_stages((), "not used on Ascend", run), tests=tests)
    if run.status in ("running", "interrupted"):
        why = f"not compiled: the scan is {run.status} (run `tritriage scan {run.checkout}` again to resume)"
        return KernelView(k, "not-run", why, (), (), _full_stages((), "scan unfinished", run), tests=tests)
    shard = (run.settings or {}).get("shard")
    if shard:
        why = f"not compiled here: another shard's (this run is shard {shard[0]}/{shard[1]}; `tritriage merge` joins them)"
        return KernelView(k, "not-run", why, (), (), _full_stages((), "another shard", run), tests=tests)
    if filtered:
        why = "not compiled: the scan was limited to other kernels (--kernel)"
        return KernelView(k, "not-run", why, (), (), _full_stages((), "not selected", run), tests=tests)
    if entry is not None and entry.unsupported:
        why = f"no spec: the catalog marks it unsupported: {entry.unsupported}"
    elif entry is not None:
        why = "no spec: the catalog's spec no longer fits the kernel (stale)"
    else:
        why = "no spec: none in the catalog and none could be inferred"
    return KernelView(k, "no-spec", why, (), (), _full_stages((), "no spec", run), tests=tests)


def _entry_callers(kernels: list[Kernel]) -> dict[str, tuple[str, ...]]:
    """helper id -> entry kernels that reach it through calls, in file order."""
    called_by: dict[str, set[str]] = {}
    for k in kernels:
        for c in k.calls:
            called_by.setdefault(c, set()).add(k.id)
    kinds = {k.id: k.kind for k in kernels}
    order = {k.id: i for i, k in enumerate(kernels)}
    out = {}
    for k in kernels:
        if k.kind != "helper":
            continue
        seen, todo, entries = {k.id}, list(called_by.get(k.id, ())), set()
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            if kinds.get(c) != "helper":
                entries.add(c)
            # Entries can be called from jit code too: go on up either way.
            todo.extend(called_by.get(c, ()))
        out[k.id] = tuple(sorted(entries, key=lambda i: order.get(i, 0)))
    return out


def _helper_view(k: Kernel, callers: list[KernelView], kmap: dict[str, Kernel], catalog) -> KernelView:
    ids = tuple(c.id for c in callers)
    entry = catalog.get(k) if catalog is not None else None
    tests = tuple(entry.tests) if entry else ()
    if not callers:
        return KernelView(k, "not-run", "a helper that no entry kernel calls: never compiled", (), (),
                          tuple(StageResult(s, NOT_RUN, "helper without callers") for s in STAGES), tests=tests)
    failing = [c for c in callers if c.status == "failed"]
    if failing:
        # Prefer the caller whose failure points into this helper's own lines.
        def in_helper(c: KernelView) -> bool:
            e = c.error
            return e is not None and e.file == k.file and k.line <= e.line <= (k.end_line or k.line)

        via = next((c for c in failing if in_helper(c)), failing[0])
        errors, seen = [], set()
        for c in [via] + [c for c in failing if c is not via]:
            for e in c.errors:
                if e.fingerprint not in seen:
                    seen.add(e.fingerprint)
                    errors.append(e)
        name = via.kernel.qualname
        stages = tuple(StageResult(s.stage, s.status, f"via caller {name}: {s.reason}".rstrip(": "))
                       for s in via.stages)
        return KernelView(k, "failed", f"via caller {name}: {via.reason}", (), tuple(errors), stages,
                          callers=ids, via=via.id, tests=tests)
    if all(c.status == "passed" for c in callers):
        return KernelView(k, "passed", "", (), (), callers[0].stages, flaky=any(c.flaky for c in callers),
                          callers=ids, tests=tests)
    waiting = [c for c in callers if c.status == "not-run"]
    if waiting or any(c.status == "passed" for c in callers):
        pending = [c for c in callers if c.status != "passed"]
        names = ", ".join(f"{c.kernel.qualname} ({c.status})" for c in pending[:3]) + \
            (" ..." if len(pending) > 3 else "")
        return KernelView(k, "not-run", f"not every caller has a verdict: {names}",
                          (), (), tuple(StageResult(s, NOT_RUN, "callers not all compiled") for s in STAGES),
                          callers=ids, tests=tests)
    return KernelView(k, "no-spec", "no caller has a usable spec", (), (),
                      tuple(StageResult(s, NOT_RUN, "no caller has a spec") for s in STAGES), callers=ids,
                      tests=tests)


def _test_map(store: Store, run_id: int) -> dict[str, list[str]]:
    """kernel file -> test commands ``tritriage test`` mapped to it (catalog or imports)."""
    rows = getattr(store, "test_map", None)
    if rows is None:
        return {}
    out: dict[str, list[str]] = {}
    for m in rows(run_id):
        if m.command:
            out.setdefault(m.kernel_file, []).append(m.command)
    return out


def _test_verdicts(store: Store, run: Run) -> dict[str, TestVerdictView]:
    """kernel file -> the verdict of vLLM's tests, from this run or, when
    ``tritriage test`` ran against an earlier scan of the checkout, from the
    newest run that has test results (tests are slow; scans are re-run)."""
    from tritriage.vtests.mapping import file_verdicts

    for r in [run] + [r for r in store.runs(run.checkout) if r.id < run.id]:
        mappings = store.test_map(r.id)
        if not mappings:
            continue
        out = {}
        for file, fv in file_verdicts(mappings, store.test_results(r.id)).items():
            out[file] = TestVerdictView(fv.verdict, dict(fv.counts), tuple(fv.causes), tuple(fv.not_run), r.id)
        return out
    return {}


def _files(kernels: tuple[KernelView, ...], mapped: dict[str, list[str]],
           verdicts: dict[str, TestVerdictView] | None = None) -> tuple[FileView, ...]:
    by_file: dict[str, list[KernelView]] = {}
    for kv in kernels:
        by_file.setdefault(kv.kernel.file, []).append(kv)
    out = []
    for file, kvs in by_file.items():
        tests: list[str] = []
        # The catalog's commands first (hand-picked), then those found from
        # the tests' imports.
        for t in [t for kv in kvs for t in kv.tests] + mapped.get(file, []):
            if t not in tests:
                tests.append(t)
        groups: dict[str, tuple[ErrorView, list[Hit]]] = {}
        for kv in kvs:
            if kv.status != "failed":
                continue
            for e in kv.errors:
                specs = tuple(s.name for s in kv.specs if s.error is not None and s.error.fingerprint == e.fingerprint)
                groups.setdefault(e.fingerprint, (e, []))[1].append(Hit(kv, specs, kv.via))
        out.append(FileView(file, tuple(kvs), tuple(tests),
                            tuple(FailureGroup(e, tuple(h)) for e, h in groups.values()),
                            (verdicts or {}).get(file)))
    return tuple(out)


def _root_causes(kernels: tuple[KernelView, ...]) -> tuple[RootCause, ...]:
    groups: dict[str, tuple[ErrorView, list[str]]] = {}
    for kv in kernels:
        if kv.kernel.kind == "helper":
            continue
        for e in kv.errors:
            groups.setdefault(e.fingerprint, (e, []))[1].append(kv.id)
    causes = [RootCause(fp, e.cls, e.subclass, tuple(ids), e.where, e) for fp, (e, ids) in groups.items()]
    from tritriage.classify import CLASSES

    rank = {c: i for i, c in enumerate(CLASSES)}
    causes.sort(key=lambda c: (-len(c.kernels), rank.get(c.cls, len(rank)), c.subclass, c.fingerprint))
    return tuple(causes)


def _totals(kernels: tuple[KernelView, ...], pairs: int) -> Totals:
    count = {s: 0 for s in STATUSES}
    failed_by: dict[str, int] = {}
    for kv in kernels:
        count[kv.status] += 1
        if kv.status == "failed" and kv.error is not None:
            failed_by[kv.error.where] = failed_by.get(kv.error.where, 0) + 1
    order = list(STAGES) + ["loader", "timeout", "crash", "oom"]
    failed_by = dict(sorted(failed_by.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))
    return Totals(
        kernels=len(kernels), entries=sum(1 for k in kernels if k.kernel.kind != "helper"),
        helpers=sum(1 for k in kernels if k.kernel.kind == "helper"), files=len({k.kernel.file for k in kernels}),
        passed=count["passed"], failed=count["failed"], no_spec=count["no-spec"], not_run=count["not-run"],
        failed_by=failed_by,
        failed_helpers=sum(1 for k in kernels if k.status == "failed" and k.kernel.kind == "helper"),
        flaky=sum(1 for k in kernels if k.flaky), pairs=pairs,
    )

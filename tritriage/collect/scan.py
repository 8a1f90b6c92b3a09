"""``scan``, ``rerun`` and ``doctor``: compile every entry kernel and keep the verdicts.

``run_scan`` discovers the checkout's kernels, asks for their specs, checks the
environment once, then compiles each (kernel, spec) on warm workers, classifies
each failure and writes each result to the store the moment it arrives.  A
result whose cache key (kernel and helper sources, spec, compiler version,
settings) is already in the store is copied instead of compiled.  An
interrupted scan (Ctrl-C) is marked as such and the next ``scan`` of the same
checkout continues it.

``rerun`` recompiles a chosen subset of the latest run and prints before ->
after for each.  The CLI (``tritriage/cli.py``) only parses options and calls
``scan_command`` / ``rerun_command`` / ``doctor_command``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tritriage.collect.engine import Job, Settings, WorkerPool, WorkerStartError, cache_key
from tritriage.collect.environment import EnvReport, check_environment, doctor_lines, git_commit, require
from tritriage.errors import UserError
from tritriage.model import STAGES, CompileResult, Diagnosis, Inventory, Kernel, Spec
from tritriage.store import Store, StoredResult

PASSES = ("passed", "passed-to-linalg")
# Every end state a (kernel, spec) can reach, in the order summaries list them.
OUTCOMES = ("passed", "passed-to-linalg", "failed", "loader-error", "spec-error", "timeout", "crash", "oom")

SpecsFn = Callable[[Kernel, Inventory, Path], list]


@dataclass
class ScanSummary:
    run_id: int
    checkout: str
    env: EnvReport | None = None
    entries: int = 0  # entry kernels considered
    no_spec: list = field(default_factory=list)  # kernel ids that got no spec
    pairs: int = 0  # (kernel, spec) pairs in the run
    compiled: list = field(default_factory=list)  # (kernel id, spec name) compiled by this call
    cached: int = 0
    resumed: int = 0  # pairs already done by the run this call continued
    counts: Counter = field(default_factory=Counter)  # outcome -> pairs, whole run
    failed_at: Counter = field(default_factory=Counter)  # stage -> failed pairs, whole run
    flaky: int = 0
    wall: float = 0.0
    compiler_seconds: float = 0.0  # summed over the compiles of this call
    worker_seconds: float = 0.0  # summed wall time of those compiles, worker side
    interrupted: bool = False
    prepare_seconds: float = 0.0  # discovery and specs (or their cached answer)

    def line(self) -> str:
        parts = []
        for o in OUTCOMES:
            n = self.counts.get(o, 0)
            if not n and o in ("passed", "spec-error", "oom"):
                continue
            if o == "failed" and self.failed_at:
                at = ", ".join(f"{s} {self.failed_at[s]}" for s in STAGES if self.failed_at.get(s))
                parts.append(f"failed {n} ({at})")
            else:
                parts.append(f"{o} {n}")
        extra = f", {self.flaky} flaky" if self.flaky else ""
        how = f"{len(self.compiled)} compiled, {self.cached} from cache" + (
            f", {self.resumed} already done" if self.resumed else "")
        nospec = f"; {len(self.no_spec)} entry kernels without a spec" if self.no_spec else ""
        state = " (interrupted: run scan again to resume)" if self.interrupted else ""
        return (f"run #{self.run_id}: {self.pairs} kernel/spec pairs ({how}): {', '.join(parts)}{extra}"
                f"{nospec} in {self.wall:.1f} s{state}")


# --------------------------------------------------------------------------
# pieces shared by scan and rerun


def _default_specs_fn() -> SpecsFn | None:
    try:
        from tritriage.collect.specs import specs_for
    except ImportError:
        return None
    return specs_for


def _call_specs(fn: SpecsFn, kernel: Kernel, inventory: Inventory, root: Path,
                catalog_dirs: Sequence[str | Path]) -> list[Spec]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if catalog_dirs and ("catalog_dirs" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())):
        return list(fn(kernel, inventory, root, catalog_dirs=list(catalog_dirs)))
    return list(fn(kernel, inventory, root))


def _prepared_key(root: Path, catalog_dirs: Sequence[str | Path]) -> str:
    """Changes whenever discovery or spec inference could give another answer:
    a .py file of the checkout, a catalog, traced specs, or tritriage's own code
    and data changed (file paths, sizes and modification times)."""
    import tritriage
    from tritriage.collect.discover import iter_python_files
    from tritriage.paths import data_dir

    h = hashlib.sha256(b"tritriage-prepared-1\0")

    def add(path: str, label: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        h.update(f"{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    for abspath, rel in iter_python_files(root):
        add(abspath, rel)
    pkg = Path(tritriage.__file__).resolve().parent
    trees = [pkg / "collect", pkg / "data", pkg / "kernels", data_dir() / "traced", *map(Path, catalog_dirs)]
    for tree in trees:
        h.update(f"tree {tree}\n".encode())
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(filenames):
                if name in _NOT_PREPARING:
                    continue
                if name.endswith((".py", ".yaml", ".yml", ".json")):
                    path = os.path.join(dirpath, name)
                    add(path, path)
    add(str(pkg / "model.py"), "model.py")
    return h.hexdigest()


# Modules of tritriage/collect that play no part in discovery or specs: editing
# them must not throw the cached inventory away.
_NOT_PREPARING = {"worker.py", "engine.py", "scan.py", "environment.py", "loader.py"}


def _prepare(root: str | Path, specs_fn: SpecsFn | None, catalog_dirs: Sequence[str | Path], store: Store,
             use_cache: bool, entry_filter: Sequence[str] | None, inventory: Inventory | None = None):
    """The checkout's inventory and each entry kernel's specs (or why it has none).

    Discovery and spec inference take tens of seconds on a large checkout, so
    when tritriage's own spec source is used their answer is kept in the store
    under ``_prepared_key`` and reused while nothing they read has changed.
    """
    from tritriage.collect.discover import check_root, discover

    root_path = check_root(root) if inventory is None else Path(inventory.root)
    cacheable = specs_fn is None and inventory is None and use_cache and not entry_filter
    specs_fn = specs_fn or _default_specs_fn()
    if specs_fn is None:
        raise UserError("no spec source: tritriage.collect.specs is not installed")
    key = _prepared_key(root_path, catalog_dirs) if cacheable else None
    if key is not None:
        data = store.prepared(key)
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Inventory):
            return data
    if inventory is None:
        inventory = discover(root_path)
    entries = [k for k in inventory.kernels if k.kind == "entry"]
    if entry_filter:
        entries = _filter_kernels(inventory, entries, entry_filter)
    specs: dict[str, tuple[tuple[Spec, ...], str]] = {}
    for k in entries:
        try:
            specs[k.id] = (tuple(_call_specs(specs_fn, k, inventory, root_path, catalog_dirs)), "")
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one kernel's spec trouble is that kernel's result
            specs[k.id] = ((), f"{type(e).__name__}: {e}")
    if key is not None:
        store.put_prepared(key, str(root_path), (inventory, specs))
    return inventory, specs


def classifier_version() -> str:
    """Changes when the classification rules or code change (stat of their files)."""
    global _CLASSIFIER_VERSION
    if _CLASSIFIER_VERSION is None:
        h = hashlib.sha256()
        try:
            import tritriage.classify as c
            for path in sorted(Path(c.__file__).parent.iterdir()):
                st = path.stat()
                h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except (ImportError, OSError):
            h.update(b"none")
        _CLASSIFIER_VERSION = h.hexdigest()[:16]
    return _CLASSIFIER_VERSION


_CLASSIFIER_VERSION: str | None = None


def classify_result(result: CompileResult, checkout: str | None) -> Diagnosis | None:
    """The diagnosis of a failure, None for a pass."""
    if result.outcome in PASSES:
        return None
    try:
        from tritriage.classify import classify
    except ImportError:
        return None
    text = result.error or result.log
    try:
        return classify(text, checkout=checkout, stage=result.failed_stage, outcome=result.outcome)
    except Exception as e:  # noqa: BLE001 - a classifier bug must not lose the result
        return Diagnosis(cls="unknown", subclass="classifier error", fingerprint="classifier-error",
                         hint=f"classify raised {type(e).__name__}: {e}")


SUSPECT_NOTE = ("[tritriage] an inferred spec was rejected by the triton-ascend frontend for a reason no "
                "pattern knows as an Ascend gap: most likely the inferred types or values are wrong, not "
                "Ascend; `tritriage scan --reference` tells the two apart on upstream Triton")


def suspect_inferred_spec(result: CompileResult, diagnosis: Diagnosis | None, spec: Spec | None,
                          checkout: str | None) -> tuple[CompileResult, Diagnosis | None]:
    """A frontend failure of an *inferred* spec is the tool's until shown otherwise.

    The issue is that a spec the frontend rejects for its types or shapes must
    never be reported as an Ascend failure.  Without the reference that can
    only be told by the error: failures a pattern marks ``ascend_gap`` (fp8,
    ``tl.extra.cuda``...) stay Ascend's; any other becomes a spec-error that
    ``--reference`` may turn back into an Ascend failure.
    """
    if (result.outcome != "failed" or result.failed_stage != "frontend" or spec is None
            or spec.source != "inferred" or diagnosis is None or _known_gap(diagnosis)):
        return result, diagnosis
    import dataclasses

    result = dataclasses.replace(result, outcome="spec-error", error=f"{result.error}\n\n{SUSPECT_NOTE}")
    return result, classify_result(result, checkout)


def _known_gap(diagnosis: Diagnosis) -> bool:
    from tritriage.classify import load_patterns

    p = load_patterns().by_id.get(diagnosis.pattern or "")
    return bool(p is not None and p.ascend_gap)


def describe(result: CompileResult, diagnosis: Diagnosis | None = None) -> str:
    """A verdict in a few words: 'passed-to-linalg', 'failed at linalg [cls: subclass]'..."""
    o = result.outcome
    if o in PASSES:
        text = o
    elif o == "failed":
        text = f"failed at {result.failed_stage or '?'}"
    elif o in ("timeout", "oom", "crash") and result.failed_stage:
        text = f"{o} during {result.failed_stage}"
    else:
        text = o
    if result.signal:
        text += f" (signal {_signame(result.signal)})"
    if diagnosis is not None and o not in PASSES:
        text += f" [{diagnosis.cls}: {diagnosis.subclass}]" if diagnosis.subclass else f" [{diagnosis.cls}]"
    if result.flaky:
        text += " (flaky)"
    return text


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _settings(env: EnvReport, *, python: str, arch: str, timeout: float, memory_mb: int | None,
              adapter: str | None) -> Settings:
    return Settings(python=python, arch=arch, timeout=float(timeout), memory_mb=memory_mb,
                    run_binary=env.cann_available, binary_reason=env.cann_reason, adapter=adapter)


def _resolve_python(python: str | None) -> str:
    if not python:
        return sys.executable
    if os.sep in python:
        return str(Path(python).expanduser().absolute())
    import shutil
    found = shutil.which(python)
    if not found:
        raise UserError(f"--python {python}: not found on PATH")
    return found


class _Progress:
    """A rich progress bar (done/total, pass/fail counts, kernels in flight), or nothing."""

    def __init__(self, total: int, quiet: bool, console=None):
        self.quiet = quiet or total == 0
        self.passed = self.failed = self.other = 0
        self.current: dict[int, str] = {}
        if self.quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("compiling"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[passed]} passed[/] [red]{task.fields[failed]} failed[/]"
                       " [yellow]{task.fields[other]} other[/]"),
            TimeElapsedColumn(), TextColumn("{task.fields[current]}"),
            console=self.console, transient=False,
        )
        self.task = self.progress.add_task("scan", total=total, passed=0, failed=0, other=0, current="")
        self.progress.start()

    def started(self, job: Job) -> None:
        if self.quiet:
            return
        self.current[id(job)] = job.kernel.name
        self._show()

    def add(self, result: CompileResult, job: Job | None = None, advance: int = 1) -> None:
        if result.outcome in PASSES:
            self.passed += 1
        elif result.outcome == "failed":
            self.failed += 1
        else:
            self.other += 1
        if self.quiet:
            return
        if job is not None:
            self.current.pop(id(job), None)
        self.progress.update(self.task, advance=advance)
        self._show()

    def _show(self) -> None:
        names = list(self.current.values())
        shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
        self.progress.update(self.task, passed=self.passed, failed=self.failed, other=self.other, current=shown)

    def stop(self) -> None:
        if not self.quiet:
            self.progress.stop()


# --------------------------------------------------------------------------
# scan


def run_scan(
    root: str | Path,
    *,
    python: str | None = None,
    jobs: int | None = None,
    arch: str = "Ascend910B",
    timeout: float = 120.0,
    memory_mb: int | None = 8192,
    use_cache: bool = True,
    kernels_filter: Sequence[str] | None = None,
    quiet: bool = False,
    resume: bool | None = None,
    catalog_dirs: Sequence[str | Path] = (),
    store: Store | None = None,
    specs_fn: SpecsFn | None = None,
    inventory: Inventory | None = None,
    adapter: str | None = None,
    argv: Sequence[str] | None = None,
    console=None,
    on_result: Callable[[CompileResult], None] | None = None,
    env: EnvReport | None = None,
    reference: bool = False,
) -> ScanSummary:
    """Compile every entry kernel of ``root`` with each of its specs; see the module docstring.

    ``resume``: None continues the checkout's interrupted run when there is
    one, True insists on it, False always starts a new run.  ``specs_fn`` and
    ``inventory`` replace spec inference and discovery (tests, benchmarks);
    ``adapter`` replaces triton-adapter-opt; ``on_result`` sees each result
    after it is stored.  ``reference`` compiles the specs that triton-ascend's
    frontend rejected on upstream Triton too: where upstream rejects them as
    well, the spec is at fault and the result becomes a spec-error.
    """
    t0 = time.time()
    python = _resolve_python(python)
    if env is None:
        env = check_environment(python, arch=arch, adapter=adapter)
    require(env)
    out = _console(console)
    if not quiet:
        out.print(f"[bold]environment:[/] {env.summary()}", highlight=False)

    settings = _settings(env, python=python, arch=arch, timeout=timeout, memory_mb=memory_mb, adapter=adapter)
    own_store = store is None
    store = store or Store.open()
    summary = ScanSummary(run_id=0, checkout=str(root))
    try:
        t_prepare = time.time()
        inventory, specs = _prepare(root, specs_fn, catalog_dirs, store, use_cache, kernels_filter, inventory)
        summary.prepare_seconds = time.time() - t_prepare
        checkout = inventory.root
        summary.checkout = checkout
        summary.env = env
        entries = [k for k in inventory.kernels if k.kind == "entry"]
        if kernels_filter:
            entries = _filter_kernels(inventory, entries, kernels_filter)
        summary.entries = len(entries)

        # A spec problem is a result too, stored like any other.
        pairs: list[tuple[Kernel, Spec | None, str]] = []
        for k in entries:
            kspecs, problem = specs.get(k.id, ((), ""))
            if problem:
                pairs.append((k, None, problem))
            elif not kspecs:
                summary.no_spec.append(k.id)
            for s in kspecs:
                pairs.append((k, s, ""))

        run_id, done = _open_run(store, checkout, settings, env, resume, argv, inventory, catalog_dirs)
        summary.run_id = run_id
        summary.resumed = sum(1 for k, s, _ in pairs if (k.id, s.name if s else "default") in done)

        compile_ver = env.compiler_version
        by_id = inventory.by_id()
        jobs_todo: list[Job] = []
        progress = _Progress(len(pairs) - summary.resumed, quiet, console=console)
        try:
            with store.transaction():  # cache copies: one commit, not hundreds
                for k, s, spec_problem in pairs:
                    name = s.name if s is not None else "default"
                    if (k.id, name) in done:
                        continue
                    if s is None:
                        result = CompileResult(kernel=k.id, spec=name, outcome="spec-error", error=spec_problem)
                        _record(store, run_id, result, None, "", checkout, settings, summary, on_result)
                        progress.add(result)
                        continue
                    key = cache_key(k, s, inventory, settings, compile_ver, checkout, by_id=by_id)
                    if use_cache:
                        hit = store.copy_cached(key, run_id, s, timeout=settings.timeout,
                                                memory_mb=settings.memory_mb)
                        if hit is not None:
                            outcome, classified_by = hit
                            if outcome not in PASSES and classified_by != classifier_version():
                                # The rules changed since: classify the copy again.
                                copy = store.result(run_id, k.id, name)
                                result, diagnosis = suspect_inferred_spec(
                                    copy.result, classify_result(copy.result, checkout), s, checkout)
                                outcome = result.outcome
                                store.add_result(run_id, result, diagnosis, key,
                                                 spec=s, cached_from=copy.cached_from, timeout=settings.timeout,
                                                 memory_mb=settings.memory_mb, classifier=classifier_version())
                            summary.cached += 1
                            progress.add(CompileResult(kernel=k.id, spec=name, outcome=outcome))
                            continue
                    jobs_todo.append(Job(kernel=k, spec=s, checkout=checkout, cache_key=key, id=len(jobs_todo),
                                         artifacts_dir=str(store.artifacts_dir(run_id, k.id, name))))
            if jobs_todo:
                _compile(jobs_todo, settings, jobs, store, run_id, checkout, summary, progress, on_result)
        finally:
            progress.stop()
        if reference:
            _cross_check(store, run_id, inventory, python, jobs, quiet, out)
        store.finish_run(run_id, "complete")
    except KeyboardInterrupt:
        summary.interrupted = True
        if summary.run_id:
            store.finish_run(summary.run_id, "interrupted")
        raise
    finally:
        _tally(store, summary)
        summary.wall = time.time() - t0
        if own_store:
            store.close()
    return summary


def _cross_check(store: Store, run_id: int, inventory: Inventory, python: str, jobs, quiet: bool, out) -> None:
    """Tell bad specs from Ascend gaps among the frontend failures (``--reference``)."""
    from tritriage.collect.specs import validate

    by_id = inventory.by_id()
    failed = [r for r in store.results(run_id)
              if r.kernel in by_id and r.failed_stage == "frontend"
              and (r.outcome == "failed" or (r.outcome == "spec-error" and SUSPECT_NOTE in r.result.error))]
    if not failed:
        return
    if not quiet:
        out.print(f"cross-checking {len(failed)} frontend failures on upstream Triton", highlight=False)
    verdicts = validate([(by_id[r.kernel], r.spec) for r in failed], inventory.root, reference=True,
                        python=python, jobs=jobs)
    import dataclasses
    with store.transaction():
        for r, v in zip(failed, verdicts):
            if not v.cross_checked:
                continue
            note = f"\n\n[reference] {v.reason}"
            outcome = "failed" if v.reference else "spec-error"
            error = r.result.error.replace(f"\n\n{SUSPECT_NOTE}", "")  # the reference decides now
            result = dataclasses.replace(r.result, outcome=outcome, error=error + note)
            store.add_result(run_id, result, classify_result(result, inventory.root), r.cache_key, spec=r.spec,
                             cached_from=r.cached_from, classifier=classifier_version())


def _compile(jobs_todo, settings, jobs, store, run_id, checkout, summary, progress, on_result) -> None:
    pool = WorkerPool(settings, jobs)
    pool.on_start = progress.started
    try:
        for job, result in pool.run(jobs_todo):
            diagnosis = classify_result(result, checkout)
            _record(store, run_id, result, diagnosis, job.cache_key, checkout, settings, summary, on_result,
                    spec=job.spec)
            progress.add(result, job)
    except WorkerStartError as e:
        raise UserError(str(e)) from None
    finally:
        # Ctrl-C or not, no worker or compile child outlives the scan.
        pool.close(kill=True)


def _record(store, run_id, result, diagnosis, key, checkout, settings, summary, on_result, spec=None) -> None:
    result, diagnosis = suspect_inferred_spec(result, diagnosis, spec, checkout)
    store.add_result(run_id, result, diagnosis, key or None, spec=spec, timeout=settings.timeout,
                     memory_mb=settings.memory_mb, classifier=classifier_version())
    if key:
        summary.compiled.append((result.kernel, result.spec))
        summary.compiler_seconds += result.compiler_seconds
        summary.worker_seconds += result.seconds
    if on_result is not None:
        on_result(result)


def _tally(store: Store, summary: ScanSummary) -> None:
    if not summary.run_id:
        return
    rows = store.outcomes(summary.run_id)
    summary.pairs = len(rows)
    summary.counts = Counter(outcome for _, _, outcome, _, _ in rows)
    summary.failed_at = Counter(stage for _, _, outcome, stage, _ in rows if outcome == "failed" and stage)
    summary.flaky = sum(1 for *_, flaky in rows if flaky)


def _open_run(store: Store, checkout: str, settings: Settings, env: EnvReport, resume: bool | None,
              argv, inventory: Inventory, catalog_dirs: Sequence[str | Path] = ()) -> tuple[int, set]:
    """The run to write into, and the pairs it already holds."""
    if resume is not False:
        last = store.latest_run(checkout)
        same = last is not None and (last.status == "interrupted" or
                                     last.status == "running" and not _still_running(last)) and \
            last.settings.get("fingerprint") == _fingerprint(settings, env)
        if same:
            # Finished pairs of a checkout that has changed since are not worth
            # keeping in the same run (the cache still reuses what is unchanged).
            then = {k.id: k.source_hash for k in store.kernels(last.id)}
            same = all(then.get(k.id) == k.source_hash for k in inventory.kernels)
        if same:
            store.mark_running(last.id, pid=os.getpid(), host=socket.gethostname())
            store.add_kernels(last.id, inventory.kernels)
            return last.id, store.done(last.id)
        if resume:
            raise UserError(f"nothing to resume: the last scan of {checkout} "
                            + ("finished" if last else "does not exist")
                            + (", used other settings or saw other sources" if last and last.status != "complete"
                               else ""))
    run_id = store.new_run(
        checkout=checkout, commit=git_commit(checkout), triton_ascend=env.triton_ascend_version or env.triton_version,
        cann=env.cann_label, arch=settings.arch, python=settings.python, stages_available=env.stages,
        argv=list(argv if argv is not None else sys.argv),
        settings={"arch": settings.arch, "timeout": settings.timeout, "memory_mb": settings.memory_mb,
                  "python": settings.python, "adapter": settings.adapter,
                  "catalog_dirs": [str(Path(d).resolve()) for d in catalog_dirs],
                  "pid": os.getpid(), "host": socket.gethostname(),
                  "fingerprint": _fingerprint(settings, env)},
    )
    store.add_kernels(run_id, inventory.kernels)
    return run_id, set()


def _still_running(run) -> bool:
    """Whether the scan that wrote ``run`` is alive (a run left 'running' by a
    killed scan may be resumed; one that another scan is writing may not)."""
    pid, host = run.settings.get("pid"), run.settings.get("host")
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return int(pid) != os.getpid()


def _fingerprint(settings: Settings, env: EnvReport) -> str:
    return f"{settings.python}|{settings.arch}|{settings.adapter}|{env.compiler_version}"


def _filter_kernels(inventory: Inventory, entries: list[Kernel], names: Sequence[str]) -> list[Kernel]:
    from tritriage.collect.discover import find_kernels
    wanted: dict[str, Kernel] = {}
    for name in names:
        found = find_kernels(inventory, name)
        if not found:
            raise UserError(f"unknown kernel '{name}': no Triton jit function of that name or id in {inventory.root}")
        for k in found:
            wanted[k.id] = k
    return [k for k in inventory.kernels if k.id in wanted]


def _console(console):
    if console is not None:
        return console
    from rich.console import Console
    return Console(stderr=True)


# --------------------------------------------------------------------------
# rerun


@dataclass
class RerunSummary:
    run_id: int
    changes: list = field(default_factory=list)  # (kernel id, spec, before str, after str)


def select_results(results: list[StoredResult], *, kernel: str | None = None, file: str | None = None,
                   failed: bool = False, cls: str | None = None, checkout: str | None = None,
                   files: dict | None = None) -> list[StoredResult]:
    """The stored results a rerun's filters pick (all filters must hold).

    ``files`` maps kernel ids to their file relative to the checkout."""
    files = files or {}
    chosen = list(results)
    if kernel:
        ids = sorted({r.kernel for r in results})
        exact = [i for i in ids if i == kernel]
        matches = exact or [i for i in ids if i.rsplit(".", 1)[-1] == kernel or i.endswith("." + kernel)]
        if not matches:
            raise UserError(f"no kernel '{kernel}' in run: give a kernel id or bare name from `tritriage report`")
        if len(matches) > 1:
            raise UserError(f"kernel name '{kernel}' is ambiguous; give one of: {', '.join(matches)}")
        chosen = [r for r in chosen if r.kernel == matches[0]]
    if file:
        rel = file
        if checkout and os.path.isabs(file):
            try:
                rel = os.path.relpath(os.path.realpath(file), os.path.realpath(checkout))
            except ValueError:
                rel = file
        rel = rel.replace(os.sep, "/")
        while rel.startswith("./"):
            rel = rel[2:]
        chosen = [r for r in chosen if files.get(r.kernel) == rel or files.get(r.kernel, "").endswith("/" + rel)]
    if failed:
        chosen = [r for r in chosen if r.outcome not in PASSES]
    if cls:
        want = cls.lower()
        chosen = [r for r in chosen if r.diagnosis is not None and
                  (r.diagnosis.cls.lower() == want or f"{r.diagnosis.cls}: {r.diagnosis.subclass}".lower() == want)]
    return chosen


def rerun(
    *,
    kernel: str | None = None,
    file: str | None = None,
    failed: bool = False,
    cls: str | None = None,
    run_id: int | None = None,
    python: str | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    memory_mb: int | None = None,
    quiet: bool = False,
    store: Store | None = None,
    specs_fn: SpecsFn | None = None,
    adapter: str | None = None,
    console=None,
    out: Callable[[str], None] | None = None,
) -> RerunSummary:
    """Recompile the chosen results of a run (default: the latest) and update it in place."""
    if not (kernel or file or failed or cls):
        raise UserError("say what to rerun: --kernel, --file, --failed or --class")
    own_store = store is None
    store = store or Store.open()
    try:
        run = store.run(run_id) if run_id else store.latest_run()
        if run is None:
            raise UserError("no scan recorded yet: run `tritriage scan PATH` first" if not run_id
                            else f"no run #{run_id} in {store.path}")
        stored_kernels = {k.id: k for k in store.kernels(run.id)}
        results = store.results(run.id)
        chosen = select_results(results, kernel=kernel, file=file, failed=failed, cls=cls, checkout=run.checkout,
                                files={k.id: k.file for k in stored_kernels.values()})
        if not chosen:
            raise UserError("no result of run #%d matches those filters" % run.id)

        settings_in = run.settings or {}
        python = _resolve_python(python or settings_in.get("python") or run.python)
        arch = settings_in.get("arch") or run.arch or "Ascend910B"
        # "" asks for the real adapter where the scan used a stand-in.
        adapter = (adapter if adapter is not None else settings_in.get("adapter")) or None
        env = check_environment(python, arch=arch, adapter=adapter)
        require(env)
        settings = _settings(env, python=python, arch=arch,
                             timeout=timeout or settings_in.get("timeout") or 120.0,
                             memory_mb=memory_mb if memory_mb is not None else settings_in.get("memory_mb"),
                             adapter=adapter)

        # The checkout may have changed since the scan (that is why one reruns):
        # take kernels, and specs when they can be inferred, from it as it is now.
        catalog_dirs = settings_in.get("catalog_dirs") or ()
        inventory = None
        try:
            from tritriage.collect.discover import check_root, discover
            key = _prepared_key(check_root(run.checkout), catalog_dirs)
            data = store.prepared(key)
            inventory = data[0] if isinstance(data, tuple) and data and isinstance(data[0], Inventory) \
                else discover(run.checkout)
        except (ImportError, UserError):
            pass  # the checkout is gone: recompile what the store holds
        fresh = inventory.by_id() if inventory is not None else {}
        specs_fn = specs_fn or _default_specs_fn()
        jobs_todo, before = [], {}
        for r in chosen:
            k = fresh.get(r.kernel) or stored_kernels.get(r.kernel)
            if k is None:
                continue
            spec = r.spec
            if specs_fn is not None and inventory is not None and r.kernel in fresh:
                try:
                    for s in _call_specs(specs_fn, k, inventory, Path(run.checkout), catalog_dirs):
                        if s.name == r.spec_name:
                            spec = s
                except Exception:  # noqa: BLE001 - fall back to the spec that was compiled
                    pass
            key = cache_key(k, spec, inventory, settings, env.compiler_version, run.checkout)
            job = Job(kernel=k, spec=spec, checkout=run.checkout, cache_key=key, id=len(jobs_todo),
                      artifacts_dir=str(store.artifacts_dir(run.id, k.id, spec.name)))
            jobs_todo.append(job)
            before[(k.id, spec.name)] = describe(r.result, r.diagnosis)
        summary = RerunSummary(run_id=run.id)
        emit = out or (lambda s: print(s))
        progress = _Progress(len(jobs_todo), quiet, console=console)
        try:
            pool = WorkerPool(settings, jobs)
            pool.on_start = progress.started
            try:
                for job, result in pool.run(jobs_todo):
                    diagnosis = classify_result(result, run.checkout)
                    store.add_result(run.id, result, diagnosis, job.cache_key, spec=job.spec,
                                     timeout=settings.timeout, memory_mb=settings.memory_mb,
                                     classifier=classifier_version())
                    progress.add(result, job)
                    change = (job.kernel.id, job.spec.name, before[(job.kernel.id, job.spec.name)],
                              describe(result, diagnosis))
                    summary.changes.append(change)
            except WorkerStartError as e:
                raise UserError(str(e)) from None
            finally:
                pool.close(kill=True)
        finally:
            progress.stop()
        for kid, spec_name, b, a in sorted(summary.changes):
            mark = "=" if b == a else "->"
            emit(f"{kid} [{spec_name}]: {b} {mark} {a}")
        return summary
    finally:
        if own_store:
            store.close()


# --------------------------------------------------------------------------
# CLI-facing commands: print, return the exit code


def scan_command(path: str, *, python: str | None = None, jobs: int | None = None, arch: str = "Ascend910B",
                 timeout: float = 120.0, memory_mb: int | None = 8192, no_cache: bool = False,
                 kernels: Sequence[str] | None = None, quiet: bool = False, resume: bool | None = None,
                 catalog_dirs: Sequence[str] = (), adapter: str | None = None, reference: bool = False) -> int:
    """``tritriage scan PATH``: 0 when the scan completed (failures are results, not errors)."""
    from rich.console import Console
    console = Console(stderr=True)
    try:
        summary = run_scan(path, python=python, jobs=jobs, arch=arch, timeout=timeout, memory_mb=memory_mb,
                           use_cache=not no_cache, kernels_filter=kernels, quiet=quiet, resume=resume,
                           catalog_dirs=catalog_dirs, adapter=adapter, console=console, reference=reference)
    except KeyboardInterrupt:
        console.print("\ninterrupted: every finished compile is stored; run the same scan again to resume")
        return 130
    if not quiet:
        print_counts(summary)
    print(summary.line())
    return 0


def print_counts(summary: ScanSummary) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"run #{summary.run_id}: {summary.checkout}", title_justify="left")
    table.add_column("outcome")
    table.add_column("kernel/spec pairs", justify="right")
    for o in OUTCOMES:
        n = summary.counts.get(o, 0)
        if not n and o == "passed" and "binary" not in (summary.env.stages if summary.env else ()):
            continue
        table.add_row(o, str(n))
        if o == "failed":
            for s in STAGES:
                if summary.failed_at.get(s):
                    table.add_row(f"  at {s}", str(summary.failed_at[s]))
    if summary.no_spec:
        table.add_row("no spec (not compiled)", str(len(summary.no_spec)))
    Console().print(table)


def rerun_command(*, kernel: str | None = None, file: str | None = None, failed: bool = False,
                  cls: str | None = None, run_id: int | None = None, python: str | None = None,
                  jobs: int | None = None, timeout: float | None = None, memory_mb: int | None = None,
                  quiet: bool = False) -> int:
    try:
        rerun(kernel=kernel, file=file, failed=failed, cls=cls, run_id=run_id, python=python, jobs=jobs,
              timeout=timeout, memory_mb=memory_mb, quiet=quiet)
    except KeyboardInterrupt:
        print("interrupted: the results recompiled so far are stored", file=sys.stderr)
        return 130
    return 0


def doctor_command(*, python: str | None = None, arch: str = "Ascend910B", json_out: bool = False) -> int:
    """``tritriage doctor``: 0 when a scan can run here, 1 when it cannot."""
    report = check_environment(_resolve_python(python), arch=arch, check_torch_npu=True)
    if json_out:
        import json
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.ok else 1
    from rich.console import Console
    from rich.table import Table
    table = Table(show_header=False, box=None)
    style = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for status, what, detail in doctor_lines(report):
        table.add_row(style[status], what, detail)
    console = Console()
    console.print(table)
    for p in report.problems:
        console.print(f"[red]problem:[/] {p}", highlight=False)
    console.print(report.summary() if report.ok else "a scan cannot run here until the problems above are fixed",
                  highlight=False)
    return 0 if report.ok else 1

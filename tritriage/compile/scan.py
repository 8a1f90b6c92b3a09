"""Scan and rerun: compile every entry kernel and keep the verdicts.

``run_scan`` discovers the checkout's kernels, asks for their specs, checks the
environment once, then compiles each (kernel, spec) on warm workers, classifies
each failure and writes each result to the store the moment it arrives.  A
result whose cache key (kernel and helper sources, spec, compiler version,
settings) is already in the store is copied instead of compiled.  An
interrupted scan (Ctrl-C) is marked as such and the next ``scan`` of the same
checkout continues it.

``rerun`` recompiles a chosen subset of the latest run and says before ->
after for each.  Every result goes through one function, ``record`` (classify,
decide spec error or Ascend failure, store): scan, rerun, cached copies and the
reference cross-check alike.  Nothing here prints: the commands
(``tritriage/commands/``) show progress and results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import os
import signal
import socket
import sys
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tritriage.cache import classifier_version, compile_key, file_stamps, prepared_key, specs_inputs_key
from tritriage.classify.verdict import SUSPECT_NOTE, describe, verdict
from tritriage.compile.hangs import HangPolicy
from tritriage.compile.pool import Job, Settings, WorkerPool, WorkerStartError
from tritriage.compile.environment import EnvReport, check_environment, doctor_lines, git_commit, require
from tritriage.errors import UserError
from tritriage.model import (DEFAULT_ARCH, HANG_SUSPECTED, OUTCOMES, PASSES, STAGES, CompileResult, Diagnosis,
                             Inventory, Kernel, Spec, reachable)
from tritriage.select import one_id, run_of, shard_plan
from tritriage.store import Store, StoredResult


SpecsFn = Callable[[Kernel, Inventory, Path], list]


class NullProgress:
    """What a scan tells its caller as it goes; the commands show it
    (``tritriage/commands/progress.py``), a library caller may ignore it."""

    def __init__(self, total: int = 0):
        self.total = total

    def expect(self, total: int) -> None:
        """The number of pairs to come, known better now (specs are inferred as the scan goes)."""
        self.total = total

    def started(self, job: Job) -> None:
        pass

    def add(self, result: CompileResult, job: Job | None = None, advance: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


# How often a scan commits the cache copies and results it has taken (an
# interrupted scan keeps what was committed).
COMMIT_EVERY = 0.25

# Called with the number of compiles to come; returns a NullProgress-like object.
ProgressFactory = Callable[[int], NullProgress]


@dataclass
class ScanSummary:
    run_id: int
    checkout: str
    env: EnvReport | None = None
    entries: int = 0  # entry kernels considered
    no_spec: list = field(default_factory=list)  # kernel ids that got no spec
    not_used: list = field(default_factory=list)  # vendor-only kernel ids left uncompiled (Kernel.platform_only)
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
    specs_inferred: int = 0  # kernels whose specs were inferred by this call
    specs_reused: int = 0  # of a changed checkout, kernels whose specs' inputs had not changed
    hints: "HintSummary | None" = None  # the hint search after the verdicts (``--hints N``)
    hangs_suspected: int = 0  # compiles past their first budget (the hang policy)
    hangs_confirmed: int = 0  # of them, retried with the full timeout

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
        if self.hangs_suspected:
            extra += (f", {self.hangs_suspected} suspected hangs ({self.hangs_confirmed} retried with the full "
                      f"timeout" + ("" if self.hangs_confirmed >= self.hangs_suspected else
                                    "; `tritriage rerun --class timeout` waits out the rest") + ")")
        how = f"{len(self.compiled)} compiled, {self.cached} from cache" + (
            f", {self.resumed} already done" if self.resumed else "")
        nospec = f"; {len(self.no_spec)} entry kernels without a spec" if self.no_spec else ""
        if self.not_used:
            nospec += f"; {len(self.not_used)} not used on Ascend, not compiled (--all-platforms compiles them)"
        if self.specs_reused:
            nospec += (f"; specs of {self.specs_inferred} kernels inferred again (their source, helpers or "
                       f"launch sites changed), {self.specs_reused} kept")
        state = " (interrupted: run scan again to resume)" if self.interrupted else ""
        return (f"run #{self.run_id}: {self.pairs} kernel/spec pairs ({how}): {', '.join(parts)}{extra}"
                f"{nospec} in {self.wall:.1f} s{state}")


# --------------------------------------------------------------------------
# pieces shared by scan and rerun


def _default_specs_fn() -> SpecsFn | None:
    try:
        from tritriage.specs.resolve import specs_for
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


class Specs:
    """Each entry kernel's specs (or why it has none), inferred when first
    asked for.  A scan asks in the order it compiles, so the first compiles
    run while later kernels' specs are still being inferred, and kernels it
    does not compile (vendor-only) are never inferred.

    With tritriage's own spec source, what each kernel's inference read is
    kept (``deps``: its record and its helpers', the files it parsed), so that
    after an edit only the kernels whose inputs changed are inferred again;
    ``earlier`` holds the checkout's previous answers, valid while everything
    else inference reads (``cache.specs_inputs_key``) is unchanged."""

    def __init__(self, fn: SpecsFn, inventory: Inventory, root: Path, catalog_dirs: Sequence[str | Path],
                 known: Mapping[str, tuple[tuple[Spec, ...], str]] | None = None,
                 deps: Mapping[str, tuple] | None = None, earlier: Mapping[str, tuple] | None = None,
                 inputs: str | None = None):
        self.fn, self.inventory, self.root, self.catalog_dirs = fn, inventory, root, catalog_dirs
        self.known: dict[str, tuple[tuple[Spec, ...], str]] = dict(known or {})
        self.deps: dict[str, tuple] = dict(deps or {})  # kernel id -> (records digest, file stamps)
        self.earlier = earlier or {}  # kernel id -> (specs, deps) before the checkout changed
        self.inputs = inputs  # specs_inputs_key; None: nothing is kept, no deps are recorded
        self.by_id = inventory.by_id()
        self.inferred = 0  # kernels inferred by this object
        self.reused = 0  # kernels whose earlier specs still hold
        self.seconds = 0.0  # spent inferring them
        self._stamps: dict[str, str] = {}

    def get(self, kernel: Kernel) -> tuple[tuple[Spec, ...], str]:
        got = self.known.get(kernel.id)
        if got is None:
            t0 = time.time()
            got = self._still_valid(kernel)
            if got is None:
                got = self._infer(kernel)
                self.inferred += 1
            else:
                self.reused += 1
            self.known[kernel.id] = got
            self.seconds += time.time() - t0
        return got

    def _infer(self, kernel: Kernel) -> tuple[tuple[Spec, ...], str]:
        from tritriage.specs.infer_ast import reading

        with reading() as files:
            try:
                got = (tuple(_call_specs(self.fn, kernel, self.inventory, self.root, self.catalog_dirs)), "")
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - one kernel's spec trouble is that kernel's result
                got = ((), f"{type(e).__name__}: {e}")
        if self.inputs is not None:
            self.deps[kernel.id] = (self._records(kernel), file_stamps(files))
        return got

    def _still_valid(self, kernel: Kernel):
        then = self.earlier.get(kernel.id)
        if then is None:
            return None
        specs, deps = then
        if deps[0] != self._records(kernel) or any(self._stamp(f) != st for f, st in deps[1]):
            return None
        self.deps[kernel.id] = deps
        return specs

    def _records(self, kernel: Kernel) -> str:
        """The kernel's record and its helpers' (params, launch sites, sources' hashes)."""
        return hashlib.sha256(repr(reachable(kernel, self.by_id)).encode()).hexdigest()

    def _stamp(self, path: str) -> str:
        if path not in self._stamps:
            self._stamps[path] = file_stamps([path])[0][1]
        return self._stamps[path]


def _prepare(root: str | Path, specs_fn: SpecsFn | None, catalog_dirs: Sequence[str | Path], store: Store,
             use_cache: bool, entry_filter: Sequence[str] | None, inventory: Inventory | None = None):
    """The checkout's inventory, its kernels' ``Specs``, and the key to keep
    them under (``_keep_prepared``), None when they are not to be kept.

    Discovery and spec inference take tens of seconds on a large checkout, so
    when tritriage's own spec source is used their answer is kept in the store
    under ``prepared_key`` and reused while nothing they read has changed; after
    an edit, each kernel's specs are reused while what it read is unchanged.
    """
    from tritriage.discover.inventory import check_root, discover

    root_path = check_root(root) if inventory is None else Path(inventory.root)
    cacheable = specs_fn is None and inventory is None and use_cache and not entry_filter
    own = specs_fn is None
    specs_fn = specs_fn or _default_specs_fn()
    if specs_fn is None:
        raise UserError("no spec source: tritriage.specs.resolve is not installed")

    def bind(inventory: Inventory) -> Inventory:
        # Specs are inferred as the scan goes, after its run is open: a
        # catalog entry that cannot be right is said now, before anything runs.
        if own:
            from tritriage.specs.resolve import bind_catalog

            bind_catalog(inventory, root_path, catalog_dirs=list(catalog_dirs) or None)
        return inventory

    if not cacheable:
        inventory = bind(inventory or discover(root_path))
        return inventory, Specs(specs_fn, inventory, root_path, catalog_dirs), None
    inputs = specs_inputs_key(root_path, catalog_dirs)
    key = prepared_key(root_path, catalog_dirs, inputs)
    data = store.prepared(key)
    if _prepared_ok(data):
        # Checked when it was kept, and nothing the check reads has changed since.
        return data["inventory"], Specs(specs_fn, data["inventory"], root_path, catalog_dirs, known=data["specs"],
                                        deps=data["deps"], inputs=inputs), key
    inventory = bind(discover(root_path))
    then = store.prepared_for(str(root_path))
    earlier = {kid: (specs, then["deps"][kid]) for kid, specs in then["specs"].items() if kid in then["deps"]} \
        if _prepared_ok(then) and then["inputs"] == inputs else {}
    return inventory, Specs(specs_fn, inventory, root_path, catalog_dirs, earlier=earlier, inputs=inputs), key


def _prepared_ok(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("inventory"), Inventory) and \
        {"specs", "deps", "inputs"} <= set(data)


def _keep_prepared(store: Store, key: str | None, specs: Specs) -> None:
    if key is not None and (specs.inferred or specs.reused):
        store.put_prepared(key, str(specs.root), {"inventory": specs.inventory, "specs": specs.known,
                                                  "deps": specs.deps, "inputs": specs.inputs})


def _settings(env: EnvReport, *, python: str, arch: str, timeout: float, memory_mb: int | None,
              adapter: str | None, roots: Sequence[str] = ()) -> Settings:
    return Settings(python=python, arch=arch, timeout=float(timeout), memory_mb=memory_mb,
                    binary=dict(env.binary), adapter=adapter, roots=tuple(roots))


def resolve_python(python: str | None) -> str:
    if not python:
        return sys.executable
    if os.sep in python:
        return str(Path(python).expanduser().absolute())
    import shutil
    found = shutil.which(python)
    if not found:
        raise UserError(f"--python {python}: not found on PATH")
    return found


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
    progress_factory: ProgressFactory | None = None,
    resume: bool | None = None,
    catalog_dirs: Sequence[str | Path] = (),
    store: Store | None = None,
    specs_fn: SpecsFn | None = None,
    inventory: Inventory | None = None,
    adapter: str | None = None,
    argv: Sequence[str] | None = None,
    say: Callable[[str], None] | None = None,
    on_result: Callable[[CompileResult], None] | None = None,
    env: EnvReport | None = None,
    reference: bool = False,
    bishengir: str | None = None,
    hints: int = 0,
    hang_budget: float = 0.0,
    shard: tuple[int, int] | None = None,
    plugin: str | Path | None = None,
    roots: Sequence[str] = (),
    all_platforms: bool = False,
    shard_times: Mapping[tuple[str, str], float] | None = None,
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
    python = resolve_python(python)
    if env is None:
        env = check_environment(python, arch=arch, adapter=adapter, bishengir=bishengir)
    require(env)
    say = say or (lambda line: None)

    settings = _settings(env, python=python, arch=arch, timeout=timeout, memory_mb=memory_mb, adapter=adapter,
                         roots=roots)
    # Launch sites that ask for the device's core counts get the target part's.
    from tritriage.specs.constexprs import use_arch
    use_arch(arch)
    own_store = store is None
    store = store or Store.open()
    summary = ScanSummary(run_id=0, checkout=str(root))
    try:
        t_prepare = time.time()
        inventory, specs, prepared = _prepare(root, specs_fn, catalog_dirs, store, use_cache, kernels_filter,
                                              inventory)
        summary.prepare_seconds = time.time() - t_prepare
        checkout = inventory.root
        summary.checkout = checkout
        summary.env = env
        entries = [k for k in inventory.kernels if k.kind == "entry"]
        if kernels_filter:
            entries = _filter_kernels(inventory, entries, kernels_filter)
        summary.entries = len(entries)

        # Vendor-only kernels are not Ascend's problem: listed, not compiled
        # (nor their specs inferred), unless asked for (by name, or all of them).
        skip_vendor = not all_platforms and not kernels_filter
        todo: list[Kernel] = []
        for k in entries:
            if skip_vendor and k.platform_only:
                summary.not_used.append(k.id)
            else:
                todo.append(k)
        run_id, done = _open_run(store, checkout, settings, env, resume, argv, inventory, catalog_dirs, shard,
                                 plugin)
        summary.run_id = run_id

        # Slowest known compiles first, so that no long one ends the run alone;
        # never compiled, the longest source first (kernel and helpers: what the
        # adapter and bishengir chew on).  Kernels are taken, and their specs
        # inferred, in that order, and the pool's queue keeps it among the
        # pairs waiting for a worker.
        by_id = inventory.by_id()
        took = store.compile_seconds()
        slowest: dict[str, float] = {}
        for (kid, _), secs in took.items():
            slowest[kid] = max(secs, slowest.get(kid, 0.0))
        size = {k.id: _source_lines(k, by_id) for k in todo}
        todo.sort(key=lambda k: (-slowest.get(k.id, 0.0), -size[k.id]))

        def pairs_of(k: Kernel) -> list[tuple[Kernel, Spec | None, str]]:
            kspecs, problem = specs.get(k)
            return [(k, s, "") for s in kspecs] if kspecs and not problem else [(k, None, problem)]

        mine = None
        if shard:
            # The split is over every pair: all specs first.
            plan = shard_plan([(k.id, s.name if s else "default") for k in todo for _, s, _ in pairs_of(k)],
                              shard[1], shard_times)
            mine = {p for p, owner in plan.items() if owner == shard[0]}

        compile_ver = env.compiler_version
        progress = (progress_factory or NullProgress)(len(todo))
        compiles = _Compiles(settings, jobs, store, run_id, checkout, summary, progress, on_result, hang_budget)
        sent = itertools.count()

        def take(k: Kernel, s: Spec | None, problem: str) -> None:
            """One pair: already done, a spec error, a cache copy, or a job."""
            name = s.name if s is not None else "default"
            if (k.id, name) in done:
                summary.resumed += 1
            elif s is None:
                result = CompileResult(kernel=k.id, spec=name, outcome="spec-error", error=problem)
                _record(store, run_id, result, "", checkout, settings, summary, on_result)
                progress.add(result)
            else:
                key = compile_key(k, s, inventory, settings.cache_fields(), compile_ver, checkout, by_id=by_id)
                outcome = _copy_cached(store, run_id, k, s, key, checkout, settings) if use_cache else None
                if outcome is not None:
                    summary.cached += 1
                    progress.add(CompileResult(kernel=k.id, spec=name, outcome=outcome))
                    return
                job = Job(kernel=k, spec=s, checkout=checkout, cache_key=key, id=next(sent),
                          artifacts_dir=str(store.artifacts_dir(run_id, k.id, name)))
                compiles.put(job, (-took.get((k.id, name), 0.0), -size[k.id]))

        known = len(todo)  # pairs to come as far as known: one per kernel until its specs are
        try:
            with closing(_committed_every(store, todo)) as kernels:
                for k in kernels:
                    ours = [(k, s, problem) for k, s, problem in pairs_of(k)
                            if mine is None or (k.id, s.name if s else "default") in mine]
                    for k, s, problem in ours:
                        if s is None and not problem:
                            summary.no_spec.append(k.id)
                        else:
                            take(k, s, problem)
                    known += sum(1 for _, s, problem in ours if s is not None or problem) - 1
                    progress.expect(known - summary.resumed)
                    compiles.take()
            summary.prepare_seconds += specs.seconds
            summary.specs_inferred, summary.specs_reused = specs.inferred, specs.reused
            _keep_prepared(store, prepared, specs)
            compiles.finish()
        finally:
            compiles.close()
            progress.stop()
        if reference:
            _cross_check(store, run_id, inventory, python, jobs, say)
        if hints:
            summary.hints = search_hints(store, run_id, inventory, settings, compile_ver, jobs=jobs, budget=hints,
                                         use_cache=use_cache, progress_factory=progress_factory, say=say)
        store.finish_run(run_id, "complete")
    except KeyboardInterrupt:
        summary.interrupted = True
        if summary.run_id:
            store.finish_run(summary.run_id, "interrupted")
            store.note(summary.run_id, interrupted=1)
        raise
    finally:
        _tally(store, summary)
        summary.wall = time.time() - t0
        if own_store:
            store.close()
    return summary


REFERENCE_NOTE = "[reference]"


def _cross_check(store: Store, run_id: int, inventory: Inventory, python: str, jobs, say) -> None:
    """Tell bad specs from Ascend gaps among the frontend failures (``--reference``)."""
    from tritriage.specs.resolve import validate

    by_id = inventory.by_id()
    # Not those the reference already decided (a resumed scan's first half).
    failed = [r for r in store.results(run_id)
              if r.kernel in by_id and r.failed_stage == "frontend" and REFERENCE_NOTE not in r.result.error
              and (r.outcome == "failed" or (r.outcome == "spec-error" and SUSPECT_NOTE in r.result.error))]
    if not failed:
        return
    say(f"cross-checking {len(failed)} frontend failures on upstream Triton")
    verdicts = validate([(by_id[r.kernel], r.spec) for r in failed], inventory.root, reference=True,
                        python=python, jobs=jobs)
    import dataclasses
    with store.transaction():
        for r, v in zip(failed, verdicts):
            if not v.cross_checked:
                continue
            note = f"\n\n{REFERENCE_NOTE} {v.reason}"
            outcome = "failed" if v.reference else "spec-error"
            error = r.result.error.replace(f"\n\n{SUSPECT_NOTE}", "")  # the reference decides now
            result = dataclasses.replace(r.result, outcome=outcome, error=error + note)
            record(store, run_id, result, spec=r.spec, key=r.cache_key, checkout=inventory.root,
                   cached_from=r.cached_from, reference_decided=True)


class _Compiles:
    """A scan's compiles: jobs go in as their specs become known, each result
    is recorded the moment it is taken, and suspected hangs are retried with
    the full timeout at the end as far as ``hang_budget`` allows.  Workers and
    the hang policy's history are set up with the first job, so a scan served
    from the cache starts no worker."""

    def __init__(self, settings: Settings, jobs: int | None, store: Store, run_id: int, checkout: str,
                 summary: ScanSummary, progress: NullProgress, on_result, hang_budget: float):
        self.settings, self.jobs, self.store, self.run_id = settings, jobs, store, run_id
        self.checkout, self.summary, self.progress, self.on_result = checkout, summary, progress, on_result
        self.hang_budget = hang_budget
        self.pool: WorkerPool | None = None
        self.feed = None
        self.policy: HangPolicy | None = None
        self.suspects: list[Job] = []

    def put(self, job: Job, priority: tuple) -> None:
        if self.pool is None:
            self.policy = HangPolicy(self.store.stage_seconds(), self.settings.timeout)
            self.pool = WorkerPool(self.settings, self.jobs)
            self.pool.on_start = self.progress.started
            self.pool.budgets = self.policy.budgets
            self.feed = self.pool.feed()
        self.feed.put(job, priority)

    def take(self) -> None:
        """Record the results finished so far, without waiting."""
        if self.feed is not None:
            for job, result in self._guard(self.feed.ready):
                self._take(job, result)

    def finish(self) -> None:
        """Wait for the rest, then confirm suspected hangs."""
        if self.feed is None:
            return
        self.feed.close()
        self._guard(lambda: [self._take(job, result) for job, result in self.feed.results()])
        pool = self.pool
        pool.budgets = None
        slots = max(1, self.jobs or os.cpu_count() or 1)
        n = int(self.hang_budget // max(self.settings.timeout, 1.0)) * slots  # a round of `slots` costs a timeout
        confirm = [dataclasses.replace(j, stage_budgets=None) for j in self.suspects[:n]]
        for job, result in self._guard(lambda: list(pool.run(confirm))):
            record(self.store, self.run_id, result, spec=job.spec, key=job.cache_key, checkout=self.checkout,
                   settings=self.settings)
        self.summary.hangs_confirmed += len(confirm)
        self.summary.hangs_suspected += len(self.suspects)

    def _take(self, job: Job, result: CompileResult) -> None:
        self.policy.observe(result)
        if result.outcome == "timeout" and HANG_SUSPECTED in result.error:
            self.suspects.append(job)
            result = dataclasses.replace(result, error=result.error + (
                f"\n\n[tritriage] `tritriage rerun --kernel {job.kernel.id}` waits the full "
                f"{self.settings.timeout:g} s"))
        _record(self.store, self.run_id, result, job.cache_key, self.checkout, self.settings, self.summary,
                self.on_result, spec=job.spec)
        self.progress.add(result, job)

    @staticmethod
    def _guard(fn):
        try:
            return fn()
        except WorkerStartError as e:
            raise UserError(str(e)) from None

    def close(self) -> None:
        if self.pool is None:
            return
        self.feed.stop()
        # Ctrl-C or not, no worker or compile child outlives the scan.
        self.pool.close(kill=True)
        # The run record says what the verdicts went through.
        self.store.note(self.run_id, workers_lost=self.pool.restarts, compiles_retried=self.pool.retried)


def _committed_every(store: Store, items, seconds: float = COMMIT_EVERY):
    """``items``, handled in transactions of about ``seconds`` each: the cache
    copies of a re-scan in a few commits, not hundreds, while an interrupted
    scan keeps them all (the consumer closes this generator)."""
    it = iter(items)
    while True:
        until = time.time() + seconds
        with store.transaction(keep=True):
            for item in it:
                yield item
                if time.time() > until:
                    break
            else:
                return


def _copy_cached(store: Store, run_id: int, k: Kernel, s: Spec, key: str, checkout: str,
                 settings: Settings) -> str | None:
    """Copy a cached result of the same compile into the run; its outcome, None on a miss."""
    hit = store.copy_cached(key, run_id, s, timeout=settings.timeout, memory_mb=settings.memory_mb)
    if hit is None:
        return None
    outcome, classified_by = hit
    if outcome not in PASSES and classified_by != classifier_version():
        # The rules changed since: classify the copy again.
        copy = store.result(run_id, k.id, s.name)
        result, _ = record(store, run_id, copy.result, spec=s, key=key, checkout=checkout, settings=settings,
                           cached_from=copy.cached_from)
        outcome = result.outcome
    return outcome


def record(store: Store, run_id: int, result: CompileResult, *, spec: Spec | None, key: str | None,
           checkout: str | None, settings: Settings | None = None, cached_from: int | None = None,
           reference_decided: bool = False, timeout: float | None = None) -> tuple[CompileResult, Diagnosis | None]:
    """The one way a compile result enters the store: classify it, decide whose
    failure it is (``classify.verdict``), store it.  Scan, rerun, cached copies
    and the reference cross-check all come through here, so that the same
    compile output never gets two verdicts."""
    result, diagnosis = verdict(result, spec, checkout, reference_decided=reference_decided)
    store.add_result(run_id, result, diagnosis, key or None, spec=spec, cached_from=cached_from,
                     timeout=timeout or (settings.timeout if settings else None),
                     memory_mb=settings.memory_mb if settings else None, classifier=classifier_version())
    return result, diagnosis


@dataclass
class HintSummary:
    kernels: int = 0  # kernels a search ran for
    found: int = 0  # of them, with a configuration that passes
    compiles: int = 0  # extra compiles (cache copies not counted)
    cached: int = 0
    seconds: float = 0.0  # wall time of the search

    def line(self) -> str:
        return (f"hints: {self.found} of {self.kernels} kernels that overflow the unified buffer have a tile "
                f"configuration that passes the binary stage ({self.compiles} extra compiles, {self.cached} "
                f"from cache, {self.seconds:.1f} s)")


def search_hints(store: Store, run_id: int, inventory: Inventory, settings: Settings, compiler: str, *,
                 jobs: int | None = None, budget: int = 8, use_cache: bool = True, kernels: Sequence[str] = (),
                 progress_factory: ProgressFactory | None = None, say: Callable[[str], None] | None = None,
                 ) -> HintSummary:
    """For each kernel whose spec overflows the unified buffer, compile up to
    ``budget`` smaller tile configurations (``compile/hints.py``), in two
    rounds, the second recalibrated by the first's failures.  Runs after the
    verdicts, which it never changes; every compile is stored under a hint
    spec name, so the report shows the best passing one and what was tried."""
    from tritriage.compile import hints as H
    from tritriage.model import is_hint

    t0 = time.time()
    say = say or (lambda line: None)
    out = HintSummary()
    by_id = inventory.by_id()
    root = Path(inventory.root)
    bases: dict[str, StoredResult] = {}
    for r in store.results(run_id):
        if r.kernel in bases or r.kernel not in by_id or (kernels and r.kernel not in kernels):
            continue
        if r.diagnosis is not None and r.diagnosis.pattern == H.UB_PATTERN and H.ub_overflow(r.result.error):
            bases[r.kernel] = r
    _variant_hints(store, run_id, inventory, settings, compiler, jobs, use_cache, kernels, out)
    # A workaround that gets a kernel past its first gap and into a UB
    # overflow (fp8 as bf16, say) is searched on as the kernel's base.
    for h in store.results(run_id, hints=True):
        if h.kernel not in bases and h.kernel in by_id and h.spec_name.count(H.HINT_MARK) == 1 \
                and h.diagnosis is not None and h.diagnosis.pattern == H.UB_PATTERN \
                and H.ub_overflow(h.result.error) and (not kernels or h.kernel in kernels):
            bases[h.kernel] = h
    out.kernels = len(bases)
    if not bases or budget <= 0:
        out.seconds = time.time() - t0
        return out
    say(f"searching tile configurations that fit the unified buffer for {len(bases)} kernels "
        f"(at most {budget} compiles each)")
    tiles = {kid: H.tile_constexprs(by_id[kid], by_id, root) for kid in bases}
    for round_no in (1, 2):
        tried: dict[str, list[StoredResult]] = {}
        for h in store.results(run_id, hints=True):
            base = bases.get(h.kernel)
            if base is not None and is_hint(h.spec_name) and h.spec_name.startswith(base.spec_name + H.HINT_MARK):
                tried.setdefault(h.kernel, []).append(h)
        todo: list[Job] = []
        for kid, base in bases.items():
            mine = tried.get(kid, [])
            if any(h.outcome in PASSES for h in mine):
                continue
            left = budget - len(mine)
            if left <= 0:
                continue
            required, available = H.ub_overflow(base.result.error)
            required = H.calibrated_required(base.spec, required, [
                (h.spec, (H.ub_overflow(h.result.error) or (None,))[0]) for h in mine])
            want = left if round_no == 2 else max(1, (budget + 1) // 2)
            configs = H.ub_candidates(base.spec, tiles[kid], required, available, want,
                                      tried=[H.config_of(h.spec, base.spec) for h in mine])
            for i, config in enumerate(configs):
                spec = H.hint_spec(base.spec, config, len(mine) + i + 1)
                key = compile_key(by_id[kid], spec, inventory, settings.cache_fields(), compiler, root, by_id=by_id)
                if use_cache and store.copy_cached(key, run_id, spec, timeout=settings.timeout,
                                                   memory_mb=settings.memory_mb) is not None:
                    out.cached += 1
                    continue
                todo.append(Job(kernel=by_id[kid], spec=spec, checkout=str(root), cache_key=key, id=len(todo),
                                artifacts_dir=str(store.artifacts_dir(run_id, kid, spec.name))))
        out.compiles += _compile_hints(store, run_id, todo, settings, jobs, str(root), progress_factory)
    passing = {h.kernel for h in store.results(run_id, hints=True) if h.kernel in bases and h.outcome in PASSES}
    out.found = len(passing)
    out.seconds = time.time() - t0
    say(out.line())
    return out


def _variant_hints(store: Store, run_id: int, inventory: Inventory, settings: Settings, compiler: str,
                   jobs: int | None, use_cache: bool, kernels: Sequence[str], out: "HintSummary") -> None:
    """One compile per kernel whose failure has a known workaround to test
    (``hints.variant_configs``: fp8 inputs as bf16, an explicit 'ieee' dot
    precision): it tells whether the gap is that, and nothing else."""
    from tritriage.compile import hints as H

    by_id = inventory.by_id()
    root = Path(inventory.root)
    done = {h.kernel for h in store.results(run_id, hints=True)}
    todo: list[Job] = []
    seen: set[str] = set()
    for r in store.results(run_id):
        if r.kernel in seen or r.kernel in done or r.kernel not in by_id or r.diagnosis is None \
                or (kernels and r.kernel not in kernels):
            continue
        for config in H.variant_configs(r.diagnosis.pattern, r.spec):
            seen.add(r.kernel)
            spec = H.variant_spec(r.spec, config, 1)
            key = compile_key(by_id[r.kernel], spec, inventory, settings.cache_fields(), compiler, root, by_id=by_id)
            if use_cache and store.copy_cached(key, run_id, spec, timeout=settings.timeout,
                                               memory_mb=settings.memory_mb) is not None:
                out.cached += 1
                continue
            todo.append(Job(kernel=by_id[r.kernel], spec=spec, checkout=str(root), cache_key=key, id=len(todo),
                            artifacts_dir=str(store.artifacts_dir(run_id, r.kernel, spec.name))))
    out.compiles += _compile_hints(store, run_id, todo, settings, jobs, str(root))


def _compile_hints(store: Store, run_id: int, todo: list, settings: Settings, jobs: int | None, checkout: str,
                   progress_factory: ProgressFactory | None = None) -> int:
    """Compile a hint search's jobs and store each result; how many ran."""
    if not todo:
        return 0
    progress = (progress_factory or NullProgress)(len(todo))
    pool = WorkerPool(settings, jobs)
    pool.on_start = progress.started
    n = 0
    try:
        for job, result in pool.run(todo):
            record(store, run_id, result, spec=job.spec, key=job.cache_key, checkout=checkout, settings=settings)
            n += 1
            progress.add(result, job)
    finally:
        pool.close(kill=True)
        progress.stop()
        store.note(run_id, workers_lost=pool.restarts, compiles_retried=pool.retried)
    return n


def _record(store, run_id, result, key, checkout, settings, summary, on_result, spec=None) -> None:
    result, _ = record(store, run_id, result, spec=spec, key=key, checkout=checkout, settings=settings)
    if key:
        summary.compiled.append((result.kernel, result.spec))
        summary.compiler_seconds += result.compiler_seconds
        summary.worker_seconds += result.seconds
    if on_result is not None:
        on_result(result)


def _source_lines(kernel: Kernel, by_id: dict) -> int:
    return sum(max(1, k.end_line - k.line + 1) for k in reachable(kernel, by_id))


def _tally(store: Store, summary: ScanSummary) -> None:
    if not summary.run_id:
        return
    rows = store.outcomes(summary.run_id)
    summary.pairs = len(rows)
    summary.counts = Counter(outcome for _, _, outcome, _, _ in rows)
    summary.failed_at = Counter(stage for _, _, outcome, stage, _ in rows if outcome == "failed" and stage)
    summary.flaky = sum(1 for *_, flaky in rows if flaky)


def _open_run(store: Store, checkout: str, settings: Settings, env: EnvReport, resume: bool | None,
              argv, inventory: Inventory, catalog_dirs: Sequence[str | Path] = (),
              shard: tuple[int, int] | None = None, plugin: str | Path | None = None) -> tuple[int, set]:
    """The run to write into, and the pairs it already holds."""
    if resume is not False:
        last = store.latest_run(checkout)
        same = last is not None and (last.status == "interrupted" or
                                     last.status == "running" and not _still_running(last)) and \
            last.settings.get("fingerprint") == _fingerprint(settings, env) and \
            last.settings.get("shard") == (list(shard) if shard else None)
        if same:
            # Finished pairs of a checkout that has changed since are not worth
            # keeping in the same run (the cache still reuses what is unchanged).
            then = {k.id: k.source_hash for k in store.kernels(last.id)}
            same = all(then.get(k.id) == k.source_hash for k in inventory.kernels)
        if same:
            store.mark_running(last.id, pid=os.getpid(), host=socket.gethostname())
            store.note(last.id, resumed=1)
            store.add_kernels(last.id, inventory.kernels)
            return last.id, store.done(last.id)
        if resume:
            raise UserError(f"nothing to resume: the last scan of {checkout} "
                            + ("finished" if last else "does not exist")
                            + (", used other settings or saw other sources" if last and last.status != "complete"
                               else ""))
    from tritriage.specs.catalog import checkout_project, checkout_version

    run_id = store.new_run(
        checkout=checkout, commit=git_commit(checkout), triton_ascend=env.triton_ascend_version or env.triton_version,
        cann=env.cann_label, arch=settings.arch, python=settings.python, stages_available=env.stages,
        argv=list(argv if argv is not None else sys.argv),
        settings={"arch": settings.arch, "timeout": settings.timeout, "memory_mb": settings.memory_mb,
                  "python": settings.python, "adapter": settings.adapter,
                  "catalog_dirs": [str(Path(d).resolve()) for d in catalog_dirs],
                  "bishengir": settings.binary.get("bishengir") if settings.binary.get("source") == "--bishengir"
                  else None,
                  "compilers": env.compilers,
                  # What reports show besides results, as the scan saw it.
                  "vllm_version": checkout_version(checkout),
                  # Title, test commands and catalog lookup follow the project.
                  "project": dict(zip(("name", "version"), checkout_project(checkout))),
                  "catalog_entries": _catalog_entries(inventory, catalog_dirs),
                  "shard": list(shard) if shard else None,
                  "plugin": _plugin_record(inventory, plugin) if plugin else None,
                  # Other source trees kernels were loaded with (the loader slices them too).
                  "roots": list(settings.roots),
                  "pid": os.getpid(), "host": socket.gethostname(),
                  "fingerprint": _fingerprint(settings, env)},
    )
    store.add_kernels(run_id, inventory.kernels)
    return run_id, set()


def _plugin_record(inventory: Inventory, plugin: str | Path) -> dict:
    """What the platform plugin replaces of this checkout's kernels on Ascend."""
    from tritriage.discover.plugin import replaced_kernels, replacements

    from tritriage.specs.catalog import checkout_version

    root = Path(plugin).resolve()
    found = replacements(root)
    packages = sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    from tritriage.specs.catalog import checkout_project

    version = next((v for v in (checkout_version(root, p) for p in packages) if v), "") or checkout_project(root)[1]
    return {"root": str(root), "version": version, "project": checkout_project(root)[0] or None,
            "packages": packages, "assignments": len(found),
            "replaced": {kid: {"by": r.by, "file": r.file, "line": r.line}
                         for kid, r in replaced_kernels(inventory.kernels, found).items()}}


def _catalog_entries(inventory: Inventory, catalog_dirs: Sequence[str | Path]) -> dict:
    """Each kernel's test commands and unsupported mark from the catalog."""
    from tritriage.specs.catalog import PACKAGE_CATALOG, load_catalog

    try:
        catalog = load_catalog([PACKAGE_CATALOG, *map(Path, catalog_dirs)])
    except UserError:
        return {}
    out = {}
    for k in inventory.kernels:
        e = catalog.get(k)
        if e is not None and (e.tests or e.unsupported):
            out[k.id] = {"tests": list(e.tests), "unsupported": e.unsupported}
    return out


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
    from tritriage.discover.inventory import find_kernels
    wanted: dict[str, Kernel] = {}
    for name in names:
        found = find_kernels(inventory, name)
        if not found:
            raise UserError(f"unknown kernel '{name}': no Triton jit function of that name or id in {inventory.root}")
        for k in found:
            wanted[k.id] = k
    return [k for k in inventory.kernels if k.id in wanted]


# --------------------------------------------------------------------------
# rerun


@dataclass
class RerunSummary:
    run_id: int
    changes: list = field(default_factory=list)  # (kernel id, spec, before str, after str)


def select_results(results: list[StoredResult], *, kernel: str | Sequence[str] | None = None,
                   file: str | None = None,
                   failed: bool = False, cls: str | None = None, checkout: str | None = None,
                   files: dict | None = None) -> list[StoredResult]:
    """The stored results a rerun's filters pick (all filters must hold).

    ``files`` maps kernel ids to their file relative to the checkout."""
    files = files or {}
    chosen = list(results)
    if kernel:
        ids = {r.kernel for r in results}
        kids = {one_id(ids, k, "the run") for k in ([kernel] if isinstance(kernel, str) else kernel)}
        chosen = [r for r in chosen if r.kernel in kids]
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


def _run_settings(run, python, timeout, memory_mb, adapter, bishengir) -> tuple[EnvReport, Settings]:
    """The environment and settings to compile more of ``run`` with: the
    scan's own, unless told otherwise."""
    settings_in = run.settings or {}
    python = resolve_python(python or settings_in.get("python") or run.python)
    arch = settings_in.get("arch") or run.arch or DEFAULT_ARCH
    # "" asks for the real adapter where the scan used a stand-in.
    adapter = (adapter if adapter is not None else settings_in.get("adapter")) or None
    bishengir = bishengir or settings_in.get("bishengir")
    env = check_environment(python, arch=arch, adapter=adapter, bishengir=bishengir)
    require(env)
    settings = _settings(env, python=python, arch=arch,
                         timeout=timeout or settings_in.get("timeout") or 120.0,
                         memory_mb=memory_mb if memory_mb is not None else settings_in.get("memory_mb"),
                         adapter=adapter, roots=settings_in.get("roots") or ())
    return env, settings


def hint(*, kernel: str, run_id: int | None = None, budget: int = 8, python: str | None = None,
         jobs: int | None = None, timeout: float | None = None, store: Store | None = None,
         progress_factory: ProgressFactory | None = None, say: Callable[[str], None] | None = None,
         ) -> tuple[int, str, HintSummary]:
    """Run the hint search for one kernel of a stored scan (default: the
    latest); (run id, kernel id, summary).  Its compiles join that run."""
    own_store = store is None
    store = store or Store.open()
    try:
        run = run_of(store, run_id)
        chosen = select_results(store.results(run.id), kernel=kernel, checkout=run.checkout)
        kid = chosen[0].kernel
        env, settings = _run_settings(run, python, timeout, None, None, None)
        inventory = Inventory(root=run.checkout, kernels=tuple(store.kernels(run.id)))
        summary = search_hints(store, run.id, inventory, settings, env.compiler_version, jobs=jobs, budget=budget,
                               kernels=[kid], progress_factory=progress_factory, say=say)
        return run.id, kid, summary
    finally:
        if own_store:
            store.close()


def rerun(
    *,
    kernel: str | Sequence[str] | None = None,
    file: str | None = None,
    failed: bool = False,
    cls: str | None = None,
    run_id: int | None = None,
    python: str | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    memory_mb: int | None = None,
    progress_factory: ProgressFactory | None = None,
    store: Store | None = None,
    specs_fn: SpecsFn | None = None,
    adapter: str | None = None,
    bishengir: str | None = None,
    out: Callable[[str], None] | None = None,
) -> RerunSummary:
    """Recompile the chosen results of a run (default: the latest) and update it in place."""
    if not (kernel or file or failed or cls):
        raise UserError("say what to rerun: --kernel, --file, --failed or --class")
    own_store = store is None
    store = store or Store.open()
    try:
        run = run_of(store, run_id)
        stored_kernels = {k.id: k for k in store.kernels(run.id)}
        results = store.results(run.id)
        chosen = select_results(results, kernel=kernel, file=file, failed=failed, cls=cls, checkout=run.checkout,
                                files={k.id: k.file for k in stored_kernels.values()})
        if not chosen:
            raise UserError("no result of run #%d matches those filters" % run.id)

        settings_in = run.settings or {}
        env, settings = _run_settings(run, python, timeout, memory_mb, adapter, bishengir)

        # The checkout may have changed since the scan (that is why one reruns):
        # take kernels, and specs when they can be inferred, from it as it is now.
        catalog_dirs = settings_in.get("catalog_dirs") or ()
        inventory = None
        try:
            from tritriage.discover.inventory import check_root, discover
            key = prepared_key(check_root(run.checkout), catalog_dirs)
            data = store.prepared(key)
            inventory = data["inventory"] if _prepared_ok(data) else discover(run.checkout)
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
            key = compile_key(k, spec, inventory, settings.cache_fields(), env.compiler_version, run.checkout)
            job = Job(kernel=k, spec=spec, checkout=run.checkout, cache_key=key, id=len(jobs_todo),
                      artifacts_dir=str(store.artifacts_dir(run.id, k.id, spec.name)))
            jobs_todo.append(job)
            before[(k.id, spec.name)] = describe(r.result, r.diagnosis)
        summary = RerunSummary(run_id=run.id)
        emit = out or (lambda line: None)
        progress = (progress_factory or NullProgress)(len(jobs_todo))
        try:
            pool = WorkerPool(settings, jobs)
            pool.on_start = progress.started
            try:
                for job, result in pool.run(jobs_todo):
                    result, diagnosis = record(store, run.id, result, spec=job.spec, key=job.cache_key,
                                               checkout=run.checkout, settings=settings)
                    progress.add(result, job)
                    change = (job.kernel.id, job.spec.name, before[(job.kernel.id, job.spec.name)],
                              describe(result, diagnosis))
                    summary.changes.append(change)
            except WorkerStartError as e:
                raise UserError(str(e)) from None
            finally:
                pool.close(kill=True)
                store.note(run.id, workers_lost=pool.restarts, compiles_retried=pool.retried)
        finally:
            progress.stop()
        for kid, spec_name, b, a in sorted(summary.changes):
            mark = "=" if b == a else "->"
            emit(f"{kid} [{spec_name}]: {b} {mark} {a}")
        return summary
    finally:
        if own_store:
            store.close()



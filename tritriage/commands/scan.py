"""``tritriage scan PATH``."""

from __future__ import annotations

from typing import Sequence

from tritriage.commands.progress import factory
from tritriage.compile.environment import check_environment
from tritriage.compile.scan import ScanSummary, resolve_python, run_scan
from tritriage.model import OUTCOMES, STAGES


def scan_command(path: str, *, python: str | None = None, jobs: int | None = None, arch: str = "Ascend910B",
                 timeout: float = 120.0, memory_mb: int | None = 8192, no_cache: bool = False,
                 kernels: Sequence[str] | None = None, quiet: bool = False, resume: bool | None = None,
                 catalog_dirs: Sequence[str] = (), adapter: str | None = None, reference: bool = False,
                 bishengir: str | None = None, hints: int = 0, hang_budget: float = 0.0,
                 shard: tuple[int, int] | None = None, plugin: str | None = None, with_: Sequence[str] = (),
                 all_platforms: bool = False, shard_times: str | None = None) -> int:
    """0 when the scan completed (failures are results, not errors)."""
    from rich.console import Console

    from tritriage.discover.inventory import check_root

    from tritriage.store import Store, record_text, writer_lock

    console = Console(stderr=True)
    check_root(path)  # a bad path is said before seconds of probing the compiler
    # One scan writes a data directory at a time: a second one is refused
    # before it probes anything, and the lock dies with a killed scan.
    with writer_lock(what="scan"):
        python = resolve_python(python)
        env = check_environment(python, arch=arch, adapter=adapter, bishengir=bishengir)
        from tritriage.discover.plugin import source_trees

        trees = source_trees(path, with_)
        if not quiet:
            console.print(f"[bold]environment:[/] {env.summary()}", highlight=False)
            for t in trees:
                console.print(f"[bold]other sources:[/] {t.describe()}", highlight=False)
        say = (lambda line: None) if quiet else (lambda line: console.print(line, highlight=False))
        try:
            summary = run_scan(path, python=python, jobs=jobs, arch=arch, timeout=timeout, memory_mb=memory_mb,
                               use_cache=not no_cache, kernels_filter=kernels,
                               progress_factory=factory(quiet, console), resume=resume, catalog_dirs=catalog_dirs,
                               adapter=adapter, say=say, env=env, reference=reference, bishengir=bishengir,
                               hints=hints, hang_budget=hang_budget, shard=shard, plugin=plugin,
                               roots=[t.path for t in trees], all_platforms=all_platforms,
                               shard_times=_times(shard_times))
        except KeyboardInterrupt:
            console.print("\ninterrupted: every finished compile is stored; run the same scan again to resume")
            return 130
    if not quiet:
        print_counts(summary)
    print(summary.line())
    with Store.open() as store:
        run = store.run(summary.run_id)
    if run is not None and run.record:
        print(f"run #{run.id} record: {record_text(run.record)}")
    if summary.hints is not None and summary.hints.kernels:
        print(summary.hints.line())
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
    if summary.not_used:
        table.add_row("not used on Ascend (not compiled)", str(len(summary.not_used)))
    Console().print(table)


def _times(path: str | None):
    if not path:
        return None
    from tritriage.commands.merge import shard_times
    return shard_times(path)

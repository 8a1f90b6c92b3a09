"""The progress bar of scan and rerun."""

from __future__ import annotations

from tritriage.compile.pool import Job
from tritriage.model import PASSES, CompileResult


class RichProgress:
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

    def expect(self, total: int) -> None:
        if not self.quiet:
            self.progress.update(self.task, total=total)

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


def factory(quiet: bool, console=None):
    """What ``run_scan``/``rerun`` call with the number of compiles to come."""
    return lambda total: RichProgress(total, quiet, console=console)

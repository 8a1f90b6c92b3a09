"""``tritriage doctor``: what this machine can compile."""

from __future__ import annotations

from tritriage.compile.environment import check_environment, doctor_lines
from tritriage.compile.scan import resolve_python


def doctor_command(*, python: str | None = None, arch: str = "Ascend910B", json_out: bool = False,
                   bishengir: str | None = None) -> int:
    """``tritriage doctor``: 0 when a scan can run here, 1 when it cannot."""
    report = check_environment(resolve_python(python), arch=arch, check_torch_npu=True, bishengir=bishengir)
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

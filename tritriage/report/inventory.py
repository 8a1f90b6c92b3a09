"""Render what discovery found: ``tritriage list`` and ``scan --collect-only``."""

from __future__ import annotations

import json
from collections import Counter

from tritriage.model import Inventory, Kernel


def inventory_json(inv: Inventory) -> str:
    """A JSON array, one object per jit function (the documented ``list --json`` shape)."""
    rows = []
    for k in inv.kernels:
        d = k.to_dict()
        # ``params`` keeps its structure; ``constexprs`` is derived but handy for scripts.
        d["constexprs"] = list(k.constexprs)
        rows.append(d)
    return json.dumps(rows, indent=2, default=str)


def _params_text(k: Kernel, limit: int = 60) -> str:
    parts = [p.name + (":c" if p.constexpr else "") for p in k.params]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_inventory(inv: Inventory, console, *, verbose: bool = False) -> None:
    from rich import box
    from rich.table import Table

    # One block per source file, as the porting team's checklist has it.
    by_file: dict[str, list[Kernel]] = {}
    for k in inv.kernels:
        by_file.setdefault(k.file, []).append(k)
    for file, kernels in by_file.items():
        table = Table(box=box.SIMPLE_HEAD, title=file, title_justify="left", title_style="bold", pad_edge=False)
        table.add_column("line", justify="right", min_width=5)
        table.add_column("kernel", min_width=32, overflow="fold")
        table.add_column("kind", min_width=6)
        table.add_column("launches", justify="right")
        table.add_column("calls", overflow="fold")
        if verbose:
            table.add_column("params (:c constexpr)", overflow="fold")
        for k in kernels:
            calls = ", ".join(c.rsplit(".", 1)[-1] for c in k.calls)
            kind = k.kind if k.kind == "entry" else f"[dim]{k.kind}[/]"
            deco = " [dim](autotune)[/]" if k.autotune else ""
            row = [str(k.line), k.qualname + deco, kind, str(len(k.launch_sites)), calls]
            if verbose:
                row.append(_params_text(k, 200))
            table.add_row(*row)
        console.print(table)
    console.print(summary_line(inv), highlight=False)
    for s in inv.skipped:
        console.print(f"[yellow]skipped[/] {s.file}: {s.reason}", highlight=False)


def summary_line(inv: Inventory) -> str:
    kinds = Counter(k.kind for k in inv.kernels)
    files = len({k.file for k in inv.kernels})
    line = (
        f"{len(inv.kernels)} Triton jit functions in {files} files "
        f"({kinds.get('entry', 0)} entry, {kinds.get('helper', 0)} helper); "
        f"{inv.files_scanned} Python files scanned"
    )
    if inv.other_jit:
        dsls = Counter(o.dsl for o in inv.other_jit)
        top = ", ".join(f"{n} {d}" for d, n in dsls.most_common(4))
        line += f"; {len(inv.other_jit)} functions of other DSLs not counted ({top})"
    if inv.skipped:
        line += f"; {len(inv.skipped)} files skipped"
    return line

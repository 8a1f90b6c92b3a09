"""``tritriage report`` without a format flag: rich tables for a person at a terminal."""

from __future__ import annotations

from rich.markup import escape

from tritriage.report.view import ReportView
from tritriage.store import record_text

_STYLE = {"passed": "green", "failed": "red", "no-spec": "yellow", "not-run": "dim"}


def totals_line(view: ReportView) -> str:
    t = view.totals
    by = ", ".join(f"{w} {n}" for w, n in t.failed_by.items())
    if t.failed_helpers:
        by += f"; {t.failed_helpers} helper{'s' if t.failed_helpers > 1 else ''} via a caller"
    line = (f"{t.kernels} jit functions ({t.entries} entry, {t.helpers} helper) in {t.files} files: "
            f"{t.passed} passed, {t.failed} failed" + (f" ({by})" if by else "")
            + f", {t.no_spec} no spec, {t.not_run} not run")
    return line + (f", {t.flaky} flaky" if t.flaky else "")


def deployed(view: ReportView) -> str:
    """What was scanned, by release: "vLLM 0.23.0 with vllm-ascend 0.23.0", and the
    other source trees kernels were loaded with."""
    settings = view.run.settings or {}
    plugin = settings.get("plugin") or {}
    parts = []
    if view.vllm_version:
        parts.append(f"vLLM {view.vllm_version}")
    if plugin:
        name = plugin.get("project") or "/".join(plugin.get("packages") or ()) or "plugin"
        parts.append(f"with {name} {plugin.get('version') or '(version unknown)'}")
    roots = settings.get("roots") or []
    if roots:
        parts.append("jit helpers also loaded from " + ", ".join(roots))
    return escape("; ".join(parts).replace("; with", " with"))


def print_report(view: ReportView, console) -> None:
    from rich import box
    from rich.table import Table

    run = view.run
    cann = run.cann or ("absent (hivmc and launch not run)" if "binary" in run.stages_available
                        else "absent (binary stage not run)")
    binary = ((run.settings or {}).get("compilers") or {}).get("binary")
    console.print(f"[bold]run #{run.id}[/] {escape(run.checkout)} @ {escape(run.commit or 'no commit')} "
                  f"({run.status}); triton-ascend {escape(run.triton_ascend or '?')}, CANN {escape(cann)}, "
                  + (f"binary stage: {escape(binary)}, " if binary else "")
                  + f"{escape(run.arch or '?')}; stages run: {', '.join(run.stages_available) or '-'}"
                  + (f"; {record_text(run.record)}" if getattr(run, "record", None) else ""),
                  highlight=False)
    line = deployed(view)
    if line:
        console.print(line, highlight=False)
    # One table per source file, as the checklist has it: a file column
    # would eat half of an 80-column terminal.
    for fv in view.files:
        table = Table(box=box.SIMPLE_HEAD, title=escape(fv.file), title_justify="left", title_style="bold",
                      pad_edge=False)
        table.add_column("line", justify="right", min_width=5)
        table.add_column("kernel", overflow="fold")
        table.add_column("status")
        table.add_column("where")
        table.add_column("class: subclass / reason", overflow="fold")
        for kv in fv.kernels:
            k = kv.kernel
            name = escape(k.qualname) + (" [dim](helper)[/]" if k.kind == "helper" else "")
            status = f"[{_STYLE[kv.status]}]{kv.status}[/]" + (" [yellow](flaky)[/]" if kv.flaky else "")
            if kv.status == "failed" and kv.error is not None:
                where = kv.error.where
                why = kv.error.title + (f" (via {kv.via.rsplit('.', 1)[-1]})" if kv.via else "")
            else:
                where, why = "", kv.reason
            table.add_row(str(k.line), name, status, where, escape(why))
        console.print(table)
    if view.root_causes:
        rc = Table(title="root causes (by kernels blocked)", title_justify="left", box=box.SIMPLE_HEAD,
                   pad_edge=False)
        rc.add_column("#", justify="right")
        rc.add_column("class")
        rc.add_column("subclass", overflow="fold")
        rc.add_column("blocks", justify="right")
        rc.add_column("kernels", overflow="fold")
        rc.add_column("fingerprint")
        by_id = view.by_id()
        for i, c in enumerate(view.root_causes, 1):
            names = ", ".join(by_id[k].kernel.qualname for k in c.kernels)
            rc.add_row(str(i), escape(c.cls), escape(c.subclass), str(len(c.kernels)), escape(names), c.fingerprint)
        console.print(rc)
    for n in view.notes:
        console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
    console.print(totals_line(view), highlight=False)

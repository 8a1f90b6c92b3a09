"""``tritriage report``: pick a run, render it (or its diff), gate CI.

Exit codes: 0, or 1 when ``--fail-on`` trips; bad input (no scan yet, an
unknown run, no earlier run to diff against) is a ``UserError`` (exit 2).

``--fail-on any-failure`` trips when a kernel of the run has status failed.
``--fail-on new-failures`` trips when a kernel fails now that did not in the
run compared against (``--against RUN``, else the previous scan of the same
checkout); with no earlier scan every failure is new.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tritriage.errors import UserError

# One formatter per format: (module, function); each takes the view and the
# options it cares about.  The terminal draws on a console instead.
RENDERERS = {
    "md": ("tritriage.report.markdown", "render_markdown"),
    "json": ("tritriage.report.machine", "render_json"),
    "junit": ("tritriage.report.machine", "render_junit"),
    "sarif": ("tritriage.report.machine", "render_sarif"),
}
FORMATS = ("terminal", *RENDERERS)


def _renderer(fmt: str):
    import importlib
    import inspect

    module, name = RENDERERS[fmt]
    fn = getattr(importlib.import_module(module), name)
    accepted = inspect.signature(fn).parameters

    def render(view, **options):
        return fn(view, **{k: v for k, v in options.items() if k in accepted})
    return render
FAIL_ON = ("new-failures", "any-failure")


def report_command(*, fmt: str = "terminal", output: str | Path | None = None, run_id: int | None = None,
                   diff: bool = False, against: int | None = None, fail_on: str | None = None,
                   template: str | Path | None = None, max_detail_lines: int = 40, max_bytes: int = 900 * 1024,
                   store=None) -> int:
    from tritriage.report.view import build_view, previous_run, resolve_run
    from tritriage.store import Store

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}")
    if fail_on is not None and fail_on not in FAIL_ON:
        raise UserError(f"--fail-on must be one of {', '.join(FAIL_ON)}, not '{fail_on}'")
    if max_detail_lines < 0:
        raise UserError("--max-detail-lines must be 0 or more")
    diff = diff or against is not None
    if diff and fmt in ("junit", "sarif"):
        raise UserError(f"--diff prints as a table, --md or --json, not --{fmt}")

    own = store is None
    store = store or Store.open()
    try:
        run = resolve_run(store, run_id)
        view = build_view(store, run)
        base = None
        if diff or fail_on == "new-failures":
            if against is not None:
                base_run = resolve_run(store, against)
            else:
                base_run = previous_run(store, run)
                if base_run is None and diff:
                    raise UserError(f"no earlier scan of {run.checkout} than run #{run.id} to diff against; "
                                    "name one with --against RUN")
            base = build_view(store, base_run) if base_run is not None else None
    finally:
        if own:
            store.close()

    from tritriage.report.diff import diff_views

    d = diff_views(base, view) if base is not None else None
    text = None
    if diff:
        from tritriage.report.diff import diff_json, diff_markdown, print_diff

        if fmt == "json":
            text = diff_json(d)
        elif fmt == "md":
            text = diff_markdown(d, template)
        else:
            _to_console(output, lambda c: print_diff(d, c))
    elif fmt == "terminal":
        from tritriage.report.terminal import print_report

        _to_console(output, lambda c: print_report(view, c))
    else:
        text = _renderer(fmt)(view, template=template, max_detail_lines=max_detail_lines, max_bytes=max_bytes)
    if text is not None:
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    return _gate(fail_on, view, d)


def _to_console(output, draw) -> None:
    from rich.console import Console

    if output:
        with open(output, "w", encoding="utf-8") as fh:
            draw(Console(file=fh, width=160, color_system=None))
    else:
        draw(Console())


def _gate(fail_on: str | None, view, d) -> int:
    if fail_on is None:
        return 0
    if fail_on == "any-failure":
        bad = [kv.kernel.qualname for kv in view.kernels if kv.status == "failed" and kv.kernel.kind != "helper"]
        what = "failing"
    elif d is not None:
        bad = [c.name for c in d.new_failures]
        what = f"newly failing since run #{d.old.run.id}"
    else:
        bad = [kv.kernel.qualname for kv in view.kernels if kv.status == "failed" and kv.kernel.kind != "helper"]
        what = "failing (no earlier scan to compare with: every failure is new)"
    if not bad:
        return 0
    names = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    print(f"tritriage: --fail-on {fail_on}: {len(bad)} kernels {what}: {names}", file=sys.stderr)
    return 1

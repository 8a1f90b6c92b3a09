"""What changed between two runs: ``tritriage report --diff``.

Status changes are compared over entry kernels only: a helper's status is
derived from its callers, so counting it again would name one fix twice.
Kernels that appeared or disappeared are listed whatever their kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tritriage.report.view import KernelView, ReportView


@dataclass(frozen=True)
class Change:
    kernel: str
    name: str
    file: str
    line: int
    before: str  # status, or "absent"
    after: str
    before_error: str = ""  # "class: subclass" of the first failure
    after_error: str = ""


@dataclass(frozen=True)
class Diff:
    old: ReportView
    new: ReportView
    newly_passing: tuple[Change, ...]
    newly_failing: tuple[Change, ...]
    changed_class: tuple[Change, ...]
    other: tuple[Change, ...]  # other status changes: passed -> no-spec, failed -> not-run...
    added: tuple[Change, ...]
    removed: tuple[Change, ...]

    @property
    def new_failures(self) -> tuple[Change, ...]:
        """What ``--fail-on new-failures`` trips on: newly failing kernels and
        new kernels that fail."""
        return self.newly_failing + tuple(c for c in self.added if c.after == "failed")

    def empty(self) -> bool:
        return not (self.newly_passing or self.newly_failing or self.changed_class or self.other
                    or self.added or self.removed)


def _title(kv: KernelView | None) -> str:
    return kv.error.title if kv is not None and kv.error is not None else ""


def _change(kv: KernelView, before: KernelView | None, after: KernelView | None) -> Change:
    return Change(kernel=kv.id, name=kv.kernel.qualname, file=kv.kernel.file, line=kv.kernel.line,
                  before=before.status if before else "absent", after=after.status if after else "absent",
                  before_error=_title(before), after_error=_title(after))


def diff_views(old: ReportView, new: ReportView) -> Diff:
    o, n = old.by_id(), new.by_id()
    passing, failing, changed, other, added, removed = [], [], [], [], [], []
    for kid, kv in n.items():
        prev = o.get(kid)
        if prev is None:
            added.append(_change(kv, None, kv))
            continue
        if kv.kernel.kind == "helper" or prev.kernel.kind == "helper":
            continue
        if kv.status == "passed" and prev.status != "passed":
            passing.append(_change(kv, prev, kv))
        elif kv.status == "failed" and prev.status != "failed":
            failing.append(_change(kv, prev, kv))
        elif kv.status == "failed" and prev.status == "failed":
            if {(e.cls, e.subclass) for e in kv.errors} != {(e.cls, e.subclass) for e in prev.errors}:
                changed.append(_change(kv, prev, kv))
        elif kv.status != prev.status:
            other.append(_change(kv, prev, kv))
    for kid, kv in o.items():
        if kid not in n:
            removed.append(_change(kv, kv, None))
    return Diff(old, new, tuple(passing), tuple(failing), tuple(changed), tuple(other), tuple(added),
                tuple(removed))


SECTIONS = (
    ("newly_passing", "newly passing"),
    ("newly_failing", "newly failing"),
    ("changed_class", "changed class"),
    ("other", "other status changes"),
    ("added", "new kernels"),
    ("removed", "removed kernels"),
)


def diff_json(d: Diff) -> str:
    def run(v: ReportView) -> dict:
        return {"id": v.run.id, "checkout": v.run.checkout, "commit": v.run.commit, "started": v.run.started}

    out = {"schema_version": 1, "old": run(d.old), "new": run(d.new)}
    for attr, _ in SECTIONS:
        out[attr] = [
            {"kernel": c.kernel, "name": c.name, "file": c.file, "line": c.line, "before": c.before,
             "after": c.after, "before_error": c.before_error or None, "after_error": c.after_error or None}
            for c in getattr(d, attr)
        ]
    return json.dumps(out, indent=2) + "\n"


def diff_markdown(d: Diff, template: str | None = None) -> str:
    from tritriage.report.markdown import environment, load_template

    env = environment()
    tmpl = load_template(env, template, "diff.md.j2")
    sections = [(title, getattr(d, attr)) for attr, title in SECTIONS]
    return tmpl.render(diff=d, old=d.old.run, new=d.new.run, sections=sections)


def print_diff(d: Diff, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]run #{d.new.run.id}[/] against [bold]run #{d.old.run.id}[/] ({escape(d.new.run.checkout)})",
                  highlight=False)
    if d.empty():
        console.print("no change", highlight=False)
        return
    table = Table(show_lines=False)
    for col in ("change", "kernel", "file:line", "before", "after"):
        table.add_column(col, overflow="fold")
    style = {"newly_passing": "green", "newly_failing": "red", "changed_class": "yellow"}
    for attr, title in SECTIONS:
        for c in getattr(d, attr):
            before = c.before + (f" [{c.before_error}]" if c.before_error else "")
            after = c.after + (f" [{c.after_error}]" if c.after_error else "")
            s = style.get(attr)
            table.add_row(f"[{s}]{title}[/]" if s else title, escape(c.name), escape(f"{c.file}:{c.line}"),
                          escape(before), escape(after))
    console.print(table)
    counts = ", ".join(f"{len(getattr(d, a))} {t}" for a, t in SECTIONS if getattr(d, a))
    console.print(counts, highlight=False)

"""``tritriage report --md``: the porting team's checklist, through jinja2.

The package's ``templates/report.md.j2`` gives the seed checklist's shape (a
section per source file, a checkbox per jit function, the file's test command,
a ``<details>`` block per distinct failure); ``--template FILE`` replaces it.
A template receives:

``run``, ``view``, ``totals``
    the ``Run``, the whole ``ReportView`` and its ``Totals``
``project``
    the project and version the title names ("liger-kernel 0.8.5"), or ""
``header``
    list of (label, value) pairs: checkout, commit, versions, date
``root_causes``
    list of dicts: ``n``, ``cls``, ``subclass``, ``where``, ``count``,
    ``kernels`` (bare names), ``fingerprint``, ``hint`` (what would fix it, or "")
``files``
    list of dicts: ``file``, ``tests`` (commands), ``test_verdict`` (what
    ``tritriage test`` said of the file, or ""), ``kernels`` (dicts:
    ``name``, ``checked``, ``note``), ``failures`` (dicts: ``summary``,
    ``hits`` (markdown), ``where``, ``fingerprint``, ``hint``, ``fence``,
    ``body`` (None when left out for size), ``cut`` (a note, or ""))
``cut``
    the size-budget note, or "" when nothing was cut

Filters: ``code`` (an inline code span safe for any text), ``html`` (escape
for HTML such as ``<summary>``), ``cell`` (a table cell).

GitHub job summaries take at most 1 MiB, so diagnostics are cut to
``max_detail_lines`` lines each and, past ``max_bytes`` in all, left out; the
report says what it cut.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from tritriage.report.view import ReportView
from tritriage.store import record_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_DETAIL_LINES = 40
MAX_BYTES = 900 * 1024
JSON_HINT = "see `tritriage report --json`"


def code(text) -> str:
    """An inline code span that survives backticks in ``text``."""
    text = " ".join(str(text).split("\n"))
    runs = [len(m) for m in re.findall(r"`+", text)]
    ticks = "`" * (max(runs) + 1 if runs else 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``."""
    runs = [len(m) for m in re.findall(r"`+", text)]
    return "`" * max(3, (max(runs) + 1) if runs else 3)


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # markdown, not HTML: escaping is explicit where HTML is
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["code"] = code
    env.filters["html"] = lambda s: html.escape(str(s), quote=False)
    env.filters["cell"] = cell
    return env


def load_template(env, path: str | Path | None, default: str):
    from tritriage.errors import UserError

    if path is None:
        return env.get_template(default)
    p = Path(path).expanduser()
    try:
        source = p.read_text()
    except OSError as e:
        raise UserError(f"--template {path}: cannot read: {e.strerror or e}") from None
    import jinja2

    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"--template {path}:{e.lineno}: {e.message}") from None


def _when(ts: float | None) -> str:
    if not ts:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def header(view: ReportView) -> list[tuple[str, str]]:
    run = view.run
    checkout = code(run.checkout) + (f" (vLLM {view.vllm_version})" if view.vllm_version else "")
    compilers = (run.settings or {}).get("compilers") or {}
    if run.cann in (None, "", "absent"):
        cann = "absent: " + ("hivmc and launch not run" if "binary" in run.stages_available
                             else "binary stage not run")
    else:
        cann = run.cann
    stages = ", ".join(run.stages_available) or "none recorded"
    rows = [
        ("checkout", checkout),
        ("commit", code(run.commit) if run.commit else "not a git checkout"),
        ("triton-ascend", run.triton_ascend or "unknown"),
        ("CANN", cann),
    ]
    plugin = (run.settings or {}).get("plugin")
    if plugin:
        names = plugin.get("project") or "/".join(plugin.get("packages") or ()) or "plugin"
        rows.append(("plugin", f"{names} {plugin.get('version') or ''} ({code(plugin['root'])}): "
                               f"replaces {len(plugin.get('replaced') or {})} of these kernels on Ascend"))
    roots = (run.settings or {}).get("roots") or []
    if roots:
        rows.append(("other sources", "jit helpers the kernels import also loaded from "
                     + ", ".join(code(r) for r in roots)))
    if compilers.get("binary"):
        rows.append(("binary stage", compilers["binary"]))
    if compilers.get("hivmc"):
        rows.append(("hivmc", compilers["hivmc"]))
    return rows + [
        ("arch", run.arch or "unknown"),
        ("stages run", stages),
        ("scan", f"run #{run.id}, {_when(run.started)}, {run.status}"
                 + (f" ({record_text(run.record)})" if getattr(run, "record", None) else "")),
        ("report", _when(view.generated)),
    ]


def stages_run(run) -> str:
    """Which stages a checked box vouches for, and which it does not."""
    from tritriage.model import STAGES

    ran = [s for s in STAGES if s in run.stages_available]
    missing = [s for s in STAGES if s not in run.stages_available]
    text = ", ".join(ran) or "none"
    if missing:
        text += f" ({', '.join(missing)} not run on the scanning machine)"
    return text


def _kernel_note(view: ReportView, kv) -> str:
    note = _verdict_note(view, kv)
    if kv.standins:
        # The verdict holds only as far as the stand-in matches the platform.
        note += " · loaded with a stand-in for " + ", ".join(code(n) for n in kv.standins)
    ascend = tuple(dict.fromkeys(a for sp in kv.specs for a in sp.ascend))
    if ascend:
        note += " · evaluated as Ascend: " + ", ".join(code(a) for a in ascend)
    others = tuple(dict.fromkeys(a for sp in kv.specs for a in sp.other_sources))
    if others:
        # Its verdict rests on code outside the checkout too.
        note += " · jit helpers from another source tree: " + ", ".join(code(a) for a in others)
    if kv.kernel.platform_only:
        note += f" · not used on Ascend ({kv.kernel.platform_only}-only: {kv.kernel.platform_reason})"
    if kv.replaced_by:
        r = kv.replaced_by
        note += (f" · replaced on Ascend by {code(r['by'])} ({r['file']}:{r['line']}): {r.get('verdict')}")
    return note


def _verdict_note(view: ReportView, kv) -> str:
    k = kv.kernel
    helper = k.kind == "helper"
    parts = []
    if kv.status == "passed":
        if helper:
            return " (helper)"
        return " (flaky: crashed once, passed on retry)" if kv.flaky else ""
    if helper:
        parts.append(" (helper)")
    if kv.status == "failed":
        e = kv.error
        if helper and kv.via:
            via = view.by_id().get(kv.via)
            name = via.kernel.qualname if via else kv.via
            return (f" (helper) — failed via caller {code(name)}: {code(e.title)}" if e else
                    f" (helper) — failed via caller {code(name)}")
        where = f"failed at {e.where}" if e.outcome == "failed" else e.outcome
        extra = " (flaky)" if kv.flaky else ""
        # "failed at frontend: frontend: ..." says the class twice.
        what = e.subclass if e.subclass and e.cls.lower() in (e.where, e.outcome.split("-")[0]) else e.title
        return (f" — {where}: {code(what)}{extra} · repro {code(view.repro_cmd(k.id))}"
                f" · rerun {code(view.rerun_cmd(k.id))}" + _how_to_port(view, kv))
    label = "no spec" if kv.status == "no-spec" else "not run"
    reason = kv.reason
    for prefix in ("no spec: ", "not compiled: "):
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
    return "".join(parts) + f" — {label}: {_inline(reason)}"


def _how_to_port(view: ReportView, kv) -> str:
    """The checklist's "how to port" part: a tested configuration, or what was tried."""
    parts = []
    for h in kv.hints:
        if h.found:
            parts.append(f"{_inline(h.text)} (`{view.repro_cmd(kv.kernel.id, h.spec)}`)"
                         + (f"; as an Ascend config: {code(h.config)}" if h.config else ""))
        else:
            parts.append(f"no configuration tried passes ({len(h.tried)} tried)")
    return (" · **how to port**: " + " | ".join(parts)) if parts else ""


def _inline(text: str) -> str:
    # Backticked commands in reasons stay as they are; the rest must not turn
    # into HTML or emphasis.
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append(part)
        else:
            out.append(html.escape(part, quote=False).replace("*", "\\*").replace("_", "\\_"))
    return "".join(out)


def _hits(view: ReportView, group) -> str:
    out = []
    by_id = view.by_id()
    for h in group.hits:
        name = code(h.kernel.kernel.qualname)
        if h.via:
            via = by_id.get(h.via)
            out.append(f"{name} (helper, via caller {code(via.kernel.qualname if via else h.via)})")
        elif h.specs:
            label = "spec" if len(h.specs) == 1 else "specs"
            out.append(f"{name} ({label} {', '.join(code(s) for s in h.specs)})")
        else:
            out.append(name)
    return ", ".join(out)


def _cut_lines(text: str, max_lines: int) -> tuple[list[str], int]:
    lines = text.rstrip("\n").splitlines()
    if max_lines >= 0 and len(lines) > max_lines:
        return lines[:max_lines], len(lines) - max_lines
    return lines, 0


def project(view: ReportView) -> str:
    """The scanned project as the title names it: "vLLM 0.8.5", "liger-kernel 0.8.5", or ""."""
    if view.vllm_version:
        return f"vLLM {view.vllm_version}"
    p = (view.run.settings or {}).get("project") or {}
    return " ".join(x for x in (p.get("name"), p.get("version")) if x) if p.get("name") else ""


def context(view: ReportView, max_detail_lines: int = MAX_DETAIL_LINES) -> dict:
    """The template context with every diagnostic cut to ``max_detail_lines``."""
    files = []
    for fv in view.files:
        failures = []
        for g in fv.failures:
            e = g.error
            lines, cut = _cut_lines(e.text, max_detail_lines)
            body = "\n".join(lines)
            note = f"… {cut} more lines cut; {JSON_HINT}" if cut else ""
            failures.append({
                "summary": e.title, "hits": _hits(view, g), "where": f"{e.file}:{e.line}",
                "stage": e.where, "fingerprint": e.fingerprint, "hint": e.hint or "",
                "fence": fence_for(body), "body": body, "cut": note, "lines_cut": cut,
            })
        tv = fv.test_verdict
        files.append({
            "file": fv.file, "tests": list(fv.tests),
            "test_verdict": _inline(tv.summary()) if tv is not None and tv.verdict != "no test" else "",
            "kernels": [{"name": kv.kernel.qualname, "checked": kv.status == "passed", "status": kv.status,
                         "kind": kv.kernel.kind, "note": _kernel_note(view, kv)} for kv in fv.kernels],
            "failures": failures,
        })
    causes = [{"n": i + 1, "cls": c.cls, "subclass": c.subclass, "where": c.where, "count": len(c.kernels),
               "kernels": [view.by_id()[k].kernel.qualname for k in c.kernels], "fingerprint": c.fingerprint,
               "hint": _inline(c.error.hint or "")}
              for i, c in enumerate(view.root_causes)]
    return {"view": view, "run": view.run, "totals": view.totals, "header": header(view), "root_causes": causes,
            "project": project(view),
            "files": files, "notes": list(view.notes), "cut": "", "checked_means": stages_run(view.run),
            "plugin": view.plugin,
            "plugin_gaps": None if view.plugin_gaps is None else [
                {"name": view.by_id()[g].kernel.qualname, "file": view.by_id()[g].kernel.file,
                 "why": view.by_id()[g].reason} for g in view.plugin_gaps]}


def render_markdown(view: ReportView, *, template: str | Path | None = None,
                    max_detail_lines: int = MAX_DETAIL_LINES, max_bytes: int = MAX_BYTES) -> str:
    env = environment()
    tmpl = load_template(env, template, "report.md.j2")
    ctx = context(view, max_detail_lines)
    failures = [f for fl in ctx["files"] for f in fl["failures"]]
    lines_cut = sum(f["lines_cut"] for f in failures)
    shortened = sum(1 for f in failures if f["lines_cut"])

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    def note(left_out: int, skeleton: int = 0) -> str:
        parts = []
        if shortened:
            parts.append(f"{n(shortened, 'diagnostic')} cut to {max_detail_lines} lines ({n(lines_cut, 'line')} cut)")
        if left_out:
            parts.append(f"{n(left_out, 'diagnostic')} left out to keep the report under {max_bytes // 1024} KiB"
                         + (f" (the checklist alone takes {skeleton // 1024} KiB)" if skeleton > max_bytes else ""))
        return ("Cut for size: " + "; ".join(parts) + f"; {JSON_HINT} for the full text.") if parts else ""

    ctx["cut"] = note(0)
    text = tmpl.render(**ctx)
    if len(text.encode()) <= max_bytes:
        return text
    # Over the budget: keep diagnostics in document order while they fit
    # into what the rest of the report leaves.
    # The skeleton is measured with every diagnostic left out, the longest
    # note in place, so that what is put back can only make it fit.
    left_note = f"diagnostic left out: the report reached its size budget; {JSON_HINT}"
    kept = [(f["body"], f["cut"]) for f in failures]
    for f in failures:
        f["body"], f["cut"] = None, left_note
    ctx["cut"] = note(len(failures))
    skeleton = len(tmpl.render(**ctx).encode())
    room = max_bytes - skeleton
    left_out = 0
    for f, (body, cut) in zip(failures, kept):
        size = len(body.encode()) + 2 * len(f["fence"]) + 8
        if size <= room:
            f["body"], f["cut"] = body, cut
            room -= size
        else:
            left_out += 1
    ctx["cut"] = note(left_out, skeleton)
    return tmpl.render(**ctx)

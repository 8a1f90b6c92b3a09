"""Formats for scripts and CI: ``--json``, ``--junit``, ``--sarif``.

JSON (``schema_version`` 1; keys always present, in this order)::

    {
      "schema_version": 1,
      "run": {"id", "checkout", "commit", "vllm_version", "triton_ascend", "cann" (null when absent),
              "arch", "python", "stages_available": [stage...], "compilers": {stage: compiler or why not run},
              "status", "plugin" (scan --plugin), "other_sources": [trees jit helpers were loaded from],
              "started", "finished"
              (ISO 8601 UTC or null)},
      "totals": {"kernels", "entries", "helpers", "files", "passed", "failed", "no_spec", "not_run",
                 "flaky", "pairs", "failed_by": {stage or loader|timeout|crash|oom: kernels},
                 (kernels[].hints: [{"for_spec", "found", "spec", "change", "ub_bits", "ub_available_bits",
                  "tried": [str], "text", "triton_config", "repro"}]: how to port, from a hint search)
                 "failed_helpers" (helpers counted as failed through a failing caller)},
      "kernels": [{
          "id", "name", "qualname", "module", "file", "line", "end_line",
          "kind": "entry" | "helper",
          "status": "passed" | "failed" | "no-spec" | "not-run",
          "reason": why not passed ("" when passed),
          "flaky": bool,
          "calls": [kernel id...], "callers": [entry kernel id...] (helpers), "via": caller id or null,
          "stages": [{"stage", "status": "passed"|"failed"|"not-run", "reason"}]  (one per stage),
          "error": null | {"class", "subclass", "fingerprint", "stage", "outcome", "spec",
                           "location": null | {"file", "line", "col", "source"},
                           "file", "line" (where to look, inside the checkout), "hint", "diagnostic"},
          "specs": [{"name", "source", "origin", "outcome", "failed_stage", "flaky", "cached_from",
                     "seconds", "stages": [...], "error": null | {...as above}, "spec_error",
                     "standins": [run-time names the loader stood in for]}],
          "tests": [command...],
          "repro": command or null, "rerun": command or null
      }],
      "root_causes": [{"fingerprint", "class", "subclass", "stage", "count", "kernels": [id...],
                       "hint": what would fix it, or null}],
      "files": [{"file", "tests": [command...], "test_verdict": null | {"verdict", "counts",
                 "causes", "not_run", "run"}}]   # what `tritriage test` said of each file
    }

JUnit: one ``<testsuite>`` per source file, one ``<testcase>`` per entry
kernel and spec (one per helper, passing or skipped: its failures are its
callers').  A failure's text starts with ``path:line`` because some CI systems
ignore the ``file``/``line`` attributes.

SARIF 2.1.0: one result per failing entry kernel and fingerprint, at the
failure's line inside the checkout (else the kernel's ``def``); rule ids are
``<class>/<subclass slug>``, stable across runs.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET

from tritriage.report.view import ErrorView, KernelView, ReportView

SCHEMA_VERSION = 1


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def _loc(loc) -> dict | None:
    if loc is None:
        return None
    return {"file": loc.file, "line": loc.line, "col": loc.col, "source": loc.source}


def _error(e: ErrorView | None) -> dict | None:
    if e is None:
        return None
    return {"class": e.cls, "subclass": e.subclass, "fingerprint": e.fingerprint, "stage": e.stage,
            "outcome": e.outcome, "spec": e.spec, "location": _loc(e.location), "file": e.file, "line": e.line,
            "hint": e.hint, "diagnostic": e.text}


def _stages(stages) -> list[dict]:
    return [{"stage": s.stage, "status": s.status, "reason": s.reason} for s in stages]


def _kernel(view: ReportView, kv: KernelView) -> dict:
    k = kv.kernel
    failing = kv.status == "failed" and k.kind != "helper"
    return {
        "id": k.id, "name": k.name, "qualname": k.qualname, "module": k.module, "file": k.file, "line": k.line,
        "end_line": k.end_line, "kind": k.kind, "status": kv.status, "reason": kv.reason, "flaky": kv.flaky,
        "platform_only": k.platform_only, "platform_reason": k.platform_reason or None,
        "used_on_ascend": kv.used_on_ascend, "replaced_by": kv.replaced_by,
        "calls": list(k.calls), "callers": list(kv.callers), "via": kv.via,
        "stages": _stages(kv.stages),
        "error": _error(kv.error),
        "specs": [{"name": s.name, "source": s.source, "origin": s.origin, "outcome": s.outcome,
                   "failed_stage": s.failed_stage, "flaky": s.flaky, "cached_from": s.cached_from,
                   "seconds": round(s.seconds, 3), "stages": _stages(s.stages), "error": _error(s.error),
                   "spec_error": s.spec_error or None, "standins": list(s.standins),
                   "evaluated_as_ascend": list(s.ascend),
                   "other_sources": list(s.other_sources),
                   "signature": dict(s.spec.signature) if s.spec else None,
                   "constexprs": dict(s.spec.constexprs) if s.spec else None,
                   "options": dict(s.spec.options) if s.spec else None}
                  for s in kv.specs],
        "tests": list(kv.tests),
        # How to port: what a hint search found (never the verdict).
        "hints": [{"for_spec": h.base_spec, "found": h.found, "spec": h.spec, "change": dict(h.change),
                   "ub_bits": h.ub_bits, "ub_available_bits": h.ub_available_bits, "tried": list(h.tried),
                   "text": h.text, "triton_config": h.config,
                   "repro": view.repro_cmd(k.id, h.spec) if h.spec else None} for h in kv.hints],
        "repro": view.repro_cmd(k.id) if failing else None,
        "rerun": view.rerun_cmd(k.id) if k.kind != "helper" else None,
    }


def to_json_data(view: ReportView) -> dict:
    run, t = view.run, view.totals
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"id": run.id, "checkout": run.checkout, "commit": run.commit, "vllm_version": view.vllm_version or None,
                "triton_ascend": run.triton_ascend, "cann": run.cann, "arch": run.arch, "python": run.python,
                "stages_available": list(run.stages_available),
                "compilers": dict((run.settings or {}).get("compilers") or {}), "status": run.status,
                # scan --plugin: the plugin, and the kernels used as is that fail (its work list).
                "plugin": {"checkout": view.plugin,
                           "project": ((run.settings or {}).get("plugin") or {}).get("project"),
                           "version": ((run.settings or {}).get("plugin") or {}).get("version"),
                           "vllm_version": view.vllm_version or None,
                           "gaps": list(view.plugin_gaps)} if view.plugin_gaps is not None else None,
                # Other source trees (scan --with) the kernels' jit helpers were also loaded from.
                "other_sources": list((run.settings or {}).get("roots") or []),
                "started": _iso(run.started), "finished": _iso(run.finished),
                # What the run went through: interrupted, resumed, workers_lost, compiles_retried.
                "record": dict(getattr(run, "record", None) or {})},
        "totals": {"kernels": t.kernels, "entries": t.entries, "helpers": t.helpers, "files": t.files,
                   "passed": t.passed, "failed": t.failed, "no_spec": t.no_spec, "not_run": t.not_run,
                   "flaky": t.flaky, "pairs": t.pairs, "failed_by": dict(t.failed_by),
                   "failed_helpers": t.failed_helpers},
        "kernels": [_kernel(view, kv) for kv in view.kernels],
        "root_causes": [{"fingerprint": c.fingerprint, "class": c.cls, "subclass": c.subclass, "stage": c.where,
                         "count": len(c.kernels), "kernels": list(c.kernels), "hint": c.error.hint or None}
                        for c in view.root_causes],
        "files": [{"file": f.file, "tests": list(f.tests), "test_verdict": _test_verdict(f.test_verdict)}
                  for f in view.files],
    }


def _test_verdict(tv) -> dict | None:
    if tv is None:
        return None
    return {"verdict": tv.verdict, "counts": dict(tv.counts), "causes": list(tv.causes),
            "not_run": list(tv.not_run), "run": tv.run_id}


def render_json(view: ReportView) -> str:
    return json.dumps(to_json_data(view), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------
# JUnit


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    # Compiler output may hold control bytes that XML 1.0 cannot carry.
    return _XML_BAD.sub("?", text)


def _failure_text(view: ReportView, kv: KernelView, e: ErrorView) -> tuple[str, str]:
    head = f"{e.file}:{e.line}: {e.title}"
    body = [head, f"kernel {kv.id} ({kv.kernel.file}:{kv.kernel.line}), spec {e.spec}: "
                  f"{e.outcome}{' at ' + e.stage if e.stage else ''}"]
    if e.hint:
        body.append(f"hint: {e.hint}")
    body += ["", e.text.rstrip(), "", f"reproduce: {view.repro_cmd(kv.id)}", f"rerun: {view.rerun_cmd(kv.id)}"]
    return head, "\n".join(body)


def render_junit(view: ReportView) -> str:
    root = ET.Element("testsuites", name="tritriage")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for fv in view.files:
        suite = ET.SubElement(root, "testsuite", name=fv.file)
        n = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
        for kv in fv.kernels:
            k = kv.kernel
            base = dict(classname=k.module, file=k.file, line=str(k.line))
            if k.kind == "helper" or not kv.specs:
                case = ET.SubElement(suite, "testcase", name=k.qualname, time="0", **base)
                n["tests"] += 1
                if kv.status != "passed":
                    reason = kv.reason if k.kind != "helper" else f"helper, compiled inside its callers: {kv.reason}"
                    ET.SubElement(case, "skipped", message=_x(f"{kv.status}: {reason}"))
                    n["skipped"] += 1
                continue
            for s in kv.specs:
                case = ET.SubElement(suite, "testcase", name=f"{k.qualname}[{s.name}]", time=f"{s.seconds:.3f}",
                                     **base)
                n["tests"] += 1
                n["time"] += s.seconds
                if s.verdict == "failed":
                    head, text = _failure_text(view, kv, s.error)
                    f = ET.SubElement(case, "failure", message=_x(head), type=s.error.cls)
                    f.text = _x(text)
                    n["failures"] += 1
                elif s.verdict == "spec-error":
                    ET.SubElement(case, "skipped", message=_x(f"no-spec: spec-error (the tool's problem, not "
                                                              f"Ascend's): {s.spec_error}"))
                    n["skipped"] += 1
                else:
                    notes = [f"{st.stage} not run: {st.reason}" for st in s.stages
                             if st.status == "not-run" and st.stage not in ("frontend", "ttir", "linalg")]
                    if s.flaky:
                        notes.insert(0, "flaky: crashed once, passed on retry")
                    if notes:
                        out = ET.SubElement(case, "system-out")
                        out.text = _x(f"{s.outcome}: " + "; ".join(notes))
        for key, val in n.items():
            suite.set(key, f"{val:.3f}" if key == "time" else str(val))
            totals[key] += val
        suite.set("errors", "0")
    for key, val in totals.items():
        root.set(key, f"{val:.3f}" if key == "time" else str(val))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------
# SARIF


def slug(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "unspecified"


def rule_id(e: ErrorView) -> str:
    cls = e.cls.replace(" ", "-")
    return f"{cls}/{slug(e.subclass)}"


def render_sarif(view: ReportView) -> str:
    import tritriage

    rules: dict[str, dict] = {}
    results = []
    for kv in view.kernels:
        if kv.kernel.kind == "helper" or kv.status != "failed":
            continue
        for e in kv.errors:
            rid = rule_id(e)
            if rid not in rules:
                rules[rid] = {
                    "id": rid,
                    "name": slug(e.cls, 40).replace("-", " ").title().replace(" ", "") or "Failure",
                    "shortDescription": {"text": e.title[:1000]},
                    "fullDescription": {"text": f"{e.title} (where the compile stopped: {e.where})"[:2000]},
                    "defaultConfiguration": {"level": "error"},
                    "help": {"text": e.hint or f"Failures classified as {e.title}; "
                                               f"`tritriage rerun --class \"{e.cls}\"` recompiles them."},
                    "properties": {"class": e.cls, "subclass": e.subclass, "tags": ["triton-ascend", e.where]},
                }
            specs = [s.name for s in kv.specs if s.error is not None and s.error.fingerprint == e.fingerprint]
            msg = (f"{kv.kernel.qualname} does not compile on triton-ascend ({e.outcome}"
                   f"{' at ' + e.stage if e.stage else ''}, spec{'s' if len(specs) > 1 else ''} "
                   f"{', '.join(specs)}): {e.title}. Reproduce: {view.repro_cmd(kv.id)}")
            results.append({
                "ruleId": rid,
                "ruleIndex": list(rules).index(rid),
                "level": "error",
                "message": {"text": msg},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": e.file, "uriBaseId": "SRCROOT"},
                        "region": {"startLine": max(1, e.line)},
                    },
                    "logicalLocations": [{"fullyQualifiedName": kv.id, "kind": "function"}],
                }],
                "partialFingerprints": {"tritriage/v1": f"{e.fingerprint}:{kv.id}"},
                "properties": {"kernel": kv.id, "fingerprint": e.fingerprint, "class": e.cls,
                               "subclass": e.subclass, "specs": specs},
            })
    run = view.run
    root_uri = "file://" + run.checkout.rstrip("/") + "/" if run.checkout.startswith("/") else None
    sarif_run = {
        "tool": {"driver": {"name": "tritriage", "version": getattr(tritriage, "__version__", "0"),
                            "informationUri": "https://pypi.org/project/triton-ascend/",
                            "rules": list(rules.values())}},
        "automationDetails": {"id": f"tritriage/{run.arch or 'ascend'}/"},
        "results": results,
        "properties": {"run": run.id, "commit": run.commit, "triton_ascend": run.triton_ascend, "cann": run.cann,
                       "stages_available": list(run.stages_available),
                       "compilers": dict((run.settings or {}).get("compilers") or {})},
    }
    if root_uri:
        sarif_run["originalUriBaseIds"] = {"SRCROOT": {"uri": root_uri}}
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [sarif_run]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

"""Verdict policy: whose failure a compile result is, in one place.

A compile that fails is the kernel's (an Ascend failure) unless the failure
says the spec is the tool's: an *inferred* spec the frontend rejects for a
reason no pattern knows as an Ascend gap is a spec error until the reference
compiler shows otherwise.  ``verdict`` applies that policy and classifies;
``tritriage.compile.scan.record`` is its only caller that stores.
"""

from __future__ import annotations

import re
import signal

from tritriage.model import PASSES, CompileResult, Diagnosis, Spec


def verdict(result: CompileResult, spec: Spec | None, checkout: str | None, *,
            reference_decided: bool = False) -> tuple[CompileResult, Diagnosis | None]:
    """The result as it is to be stored, and its diagnosis (None for a pass).

    ``reference_decided``: the reference compiler already said whose failure
    it is, so the inferred-spec suspicion no longer applies."""
    diagnosis = classify_result(result, checkout)
    diagnosis = _name_the_pairing(result, diagnosis)
    if reference_decided:
        return result, diagnosis
    return suspect_inferred_spec(result, diagnosis, spec, checkout)


_PAIRING = re.compile(r"\[tritriage\] binary stage: bishengir-compile (\S+) from (.+?), "
                      r"given triton-ascend (\S+)'s linalg output")


def _name_the_pairing(result: CompileResult, diagnosis: Diagnosis | None) -> Diagnosis | None:
    """An environment failure of the binary stage run without CANN names the
    two releases that met there (triton-ascend's adapter, PyPI's bishengir)."""
    if diagnosis is None or diagnosis.cls != "environment" or result.failed_stage != "binary":
        return diagnosis
    m = _PAIRING.search(result.error or "")
    if not m:
        return diagnosis
    import dataclasses
    return dataclasses.replace(diagnosis, subclass=f"{diagnosis.subclass} [triton-ascend {m.group(3)} with "
                                                   f"bishengir-compile {m.group(1)} from {m.group(2)}]")


def classify_result(result: CompileResult, checkout: str | None) -> Diagnosis | None:
    """The diagnosis of a failure, None for a pass."""
    if result.outcome in PASSES:
        return None
    try:
        from tritriage.classify import classify
    except ImportError:
        return None
    text = result.error or result.log
    try:
        from tritriage.classify import clean

        d = classify(text, checkout=checkout, stage=result.failed_stage, outcome=result.outcome)
        import dataclasses
        return dataclasses.replace(d, cleaned=clean(text, max_frames=5) if text else "")
    except Exception as e:  # noqa: BLE001 - a classifier bug must not lose the result
        return Diagnosis(cls="unknown", subclass="classifier error", fingerprint="classifier-error",
                         hint=f"classify raised {type(e).__name__}: {e}")


SUSPECT_NOTE = ("[tritriage] an inferred spec was rejected by the triton-ascend frontend for a reason no "
                "pattern knows as an Ascend gap: most likely the inferred types or values are wrong, not "
                "Ascend; `tritriage scan --reference` tells the two apart on upstream Triton")


def suspect_inferred_spec(result: CompileResult, diagnosis: Diagnosis | None, spec: Spec | None,
                          checkout: str | None) -> tuple[CompileResult, Diagnosis | None]:
    """A frontend failure of an *inferred* spec is the tool's until shown otherwise.

    The issue is that a spec the frontend rejects for its types or shapes must
    never be reported as an Ascend failure.  Without the reference that can
    only be told by the error: failures a pattern marks ``ascend_gap`` (fp8,
    ``tl.extra.cuda``...) stay Ascend's; any other becomes a spec-error that
    ``--reference`` may turn back into an Ascend failure.
    """
    if (result.outcome != "failed" or result.failed_stage != "frontend" or spec is None
            or spec.source != "inferred" or diagnosis is None or _known_gap(diagnosis)):
        return result, diagnosis
    import dataclasses

    result = dataclasses.replace(result, outcome="spec-error", error=f"{result.error}\n\n{SUSPECT_NOTE}")
    return result, classify_result(result, checkout)


def _known_gap(diagnosis: Diagnosis) -> bool:
    from tritriage.classify import load_patterns

    p = load_patterns().by_id.get(diagnosis.pattern or "")
    return bool(p is not None and p.ascend_gap)


def describe(result: CompileResult, diagnosis: Diagnosis | None = None) -> str:
    """A verdict in a few words: 'passed-to-linalg', 'failed at linalg [cls: subclass]'..."""
    o = result.outcome
    if o in PASSES:
        text = o
    elif o == "failed":
        text = f"failed at {result.failed_stage or '?'}"
    elif o in ("timeout", "oom", "crash") and result.failed_stage:
        text = f"{o} during {result.failed_stage}"
    else:
        text = o
    if result.signal:
        text += f" (signal {_signame(result.signal)})"
    if diagnosis is not None and o not in PASSES:
        text += f" [{diagnosis.cls}: {diagnosis.subclass}]" if diagnosis.subclass else f" [{diagnosis.cls}]"
    if result.flaky:
        text += " (flaky)"
    return text


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)

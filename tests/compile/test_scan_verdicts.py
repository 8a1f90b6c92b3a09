"""Which frontend failures are Ascend's and which are the tool's spec."""

from __future__ import annotations

from tritriage.classify.verdict import SUSPECT_NOTE, classify_result, suspect_inferred_spec
from tritriage.model import CompileResult, Spec, StageResult

NONE_ATTR = (
    "triton.compiler.errors.CompilationError: at 7:12:\n"
    "    y = x.to(tl.float32)\n"
    "            ^\n"
    "AttributeError(\"'NoneType' object has no attribute 'type'\")\n"
)
FP8 = (
    "triton.compiler.errors.CompilationError: at 1:0:\n"
    "def k(\n"
    "^\n"
    "ValueError('unexpected type fp8.')\n"
)


def _failed_at_frontend(text: str) -> CompileResult:
    return CompileResult(kernel="vllm.x.k", spec="s", outcome="failed",
                         stages=(StageResult("frontend", "failed", text),), error=text)


def _verdict(text: str, source: str):
    result = _failed_at_frontend(text)
    spec = Spec(kernel="vllm.x.k", name="s", source=source)
    return suspect_inferred_spec(result, classify_result(result, None), spec, None)


def test_an_inferred_spec_rejected_for_an_unknown_reason_is_a_spec_error():
    result, diagnosis = _verdict(NONE_ATTR, "inferred")
    assert result.outcome == "spec-error"
    assert SUSPECT_NOTE in result.error
    assert diagnosis.cls == "spec"


def test_a_known_ascend_gap_stays_an_ascend_failure_even_for_an_inferred_spec():
    result, diagnosis = _verdict(FP8, "inferred")
    assert result.outcome == "failed"
    assert diagnosis.cls == "frontend"


def test_catalog_and_traced_specs_are_trusted():
    for source in ("catalog", "traced"):
        result, diagnosis = _verdict(NONE_ATTR, source)
        assert result.outcome == "failed" and diagnosis.cls == "frontend", source

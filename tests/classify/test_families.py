"""Rules that generalize by family, precedence, unknowns and user rules.

Every case here is a log line of a kind the classifier had never seen when
its rule was written for a sibling (another code, namespace, op or module):
a test passes only if the family rule, not a one-log pattern, carries it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritriage.classify import CLASSES, classify, load_patterns
from tritriage.classify.engine import Classifier
from tritriage.commands.classify import strip_header
from tritriage.errors import UserError

PUBLIC = Path(__file__).parents[1] / "fixtures" / "classify" / "public"


def cls_of(text: str, **kw) -> str:
    return classify(text, **kw).cls


# ------------------------------------------------------------ CANN / ACL codes


@pytest.mark.parametrize(
    "line,cls",
    [
        ("RuntimeError: NPU function error: call aclnnMul failed, error code is 507015", "runtime"),
        ("E1116 09:50:41.157967 2326 x.cpp:855] [507011][Error code unknown] Failed to model infer execute", "runtime"),
        ("[ERROR] aclrtSynchronizeStream(stream) failed: 507014 (main.cpp:122)", "timeout"),
        ("RuntimeError: synchronize: NPU function error: AclrtSynchronizeStreamWithTimeout, error code is 507048", "timeout"),
        ("[PID: 1] Execution_Error_Stream_Synchronize_Timeout(EE1002): Stream synchronize timeout.", "timeout"),
        ("EI0002: The wait execution of the Notify register times out.", "timeout"),
        ("RuntimeError: call aclnnIndex failed, detail:EZ1001: self not implemented for DT_INT16", "pytorch gap"),
        ("RuntimeError: NPU function error: call aclnnFoo failed, error code is 161002", "pytorch gap"),
        ("RuntimeError: NPU function error: aclrtSetDevice, error code is 507033", "environment"),
    ],
)
def test_cann_error_codes_map_to_fault_timeout_gap_or_environment(line, cls):
    d = classify(line)
    assert d.cls == cls, d.subclass
    assert "CANN error" in d.subclass or d.pattern.startswith("device-")


def test_unknown_acl_code_is_still_a_runtime_error_with_its_code():
    d = classify("RuntimeError: NPU function error: c10_npu::acl::AclrtSynchronizeStream(stream), error code is 507999")
    assert (d.cls, d.subclass) == ("runtime", "NPU runtime error 507999")


def test_device_report_of_a_hang_is_a_timeout_not_a_fault():
    text = ("The error from device(chipId:1, dieId:0), serial number is 9, there is an exception of aivec error, core id is 3\n"
            "Kernel task happen error, retCode=0x31, [vector core timeout].[FUNC:PreCheckTaskErr]\n"
            "EZ9999: Inner Error!\n")
    assert cls_of(text) == "timeout"


# ------------------------------------------------------------ op namespaces


@pytest.mark.parametrize(
    "line,cls,needle",
    [
        ("AttributeError: '_OpNamespace' '_C' object has no attribute 'rms_norm'", "pytorch gap", "torch.ops._C.rms_norm"),
        ("AttributeError: '_OpNamespace' '_C_cache_ops' object has no attribute 'swap_blocks'", "pytorch gap", "_C_cache_ops.swap_blocks"),
        ("AttributeError: '_OpNamespace' '_moe_C' object has no attribute 'topk_softmax'", "pytorch gap", "topk_softmax"),
        ("AttributeError: '_OpNamespace' '_C_ascend' object has no attribute 'rotary_embedding'", "vllm-ascend gap", "rotary_embedding"),
        ("AttributeError: '_OpNamespace' 'vllm' object has no attribute 'unified_attention'", "vllm-ascend gap", "vllm.unified_attention"),
        ("AttributeError: '_OpNamespace' 'sglang' object has no attribute 'moe_sum'", "vllm-ascend gap", "sglang.moe_sum"),
        ("Warning: CAUTION: The operator 'vllm::all_reduce' is not currently supported on the NPU backend and will fall back to run on the CPU.", "vllm-ascend gap", "vllm::all_reduce"),
        ("Warning: CAUTION: The operator 'sglang::moe_align' is not currently supported on the NPU backend and will fall back to run on the CPU.", "vllm-ascend gap", "sglang::moe_align"),
        ("Warning: CAUTION: The operator 'aten::_linalg_eigh.eigenvalues' is not currently supported on the NPU backend and will fall back to run on the CPU.", "pytorch gap", "aten::_linalg_eigh"),
        ("NotImplementedError: <class 'vllm.v1.attention.backends.flex.FlexAttentionBackend'> is not yet supported.", "vllm-ascend gap", "FlexAttentionBackend"),
        ("ValueError: Unknown attention backend: 'FLASHINFER_MLA'", "vllm-ascend gap", "FLASHINFER_MLA"),
    ],
)
def test_op_namespace_family(line, cls, needle):
    d = classify(line)
    assert d.cls == cls and needle in d.subclass, d.subclass


# ------------------------------------------------------------ environment / imports


@pytest.mark.parametrize(
    "line,needle",
    [
        ("ModuleNotFoundError: No module named 'triton.runtime.fp8_utils'", "triton.runtime.fp8_utils"),
        ("ImportError: No module named 'triton.language.extra.cann.extension'", "triton.language.extra.cann"),
        ("ImportError: cannot import name 'knobs' from 'triton.runtime.jit'", "triton.runtime.jit"),
        ("ImportError: /usr/lib64/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by /opt/lib/libascend_x.so)", "GLIBCXX_3.4.30"),
        ("npuc: Unknown command line argument '--enable-hivm-compile=true'.  Try: 'npuc --help'", "--enable-hivm-compile"),
        ("ImportError: /site-packages/torch_npu/lib/libtorch_npu.so: undefined symbol: _ZN3c105ErrorC2E", "libtorch_npu.so"),
        ("RuntimeError: Failed to load plugin vllm_ascend.platform", "vllm_ascend.platform"),
        ("RuntimeError: Unsupported SOC version: Ascend910_9599", "Ascend910_9599"),
    ],
)
def test_import_and_environment_family(line, needle):
    d = classify(line)
    assert d.cls == "environment" and needle in d.subclass, d.subclass


def test_vllm_import_warning_is_chatter_not_a_verdict():
    text = ("WARNING 06-13 06:58:08 [_custom_ops.py:21] Failed to import from vllm._C with ModuleNotFoundError(\"No module named 'vllm._C'\")\n"
            "INFO 06-13 06:58:07 [__init__.py:230] Platform plugin ascend is activated\n"
            "RuntimeError: call aclnnCast failed, detail:EZ1001: self not implemented for DT_BFLOAT16\n")
    assert cls_of(text) == "pytorch gap"


# ------------------------------------------------------------ MLIR verifier


def test_tt_op_verifier_before_the_adapter_is_frontend_unless_a_stage_says_otherwise():
    line = "error: 'tt.store' op operand #2 must be 1-bit signless integer or ranked tensor of 1-bit signless integer values, but got 'tensor<64xi32>'"
    assert cls_of(line) == "frontend"
    assert cls_of(line, stage="linalg") == "ConvertTritonIRToLinalgIR"
    banner = "[ConvertTritonIRToLinalgIR] encounters error:\nk.py:3:9: " + line
    assert cls_of(banner) == "ConvertTritonIRToLinalgIR"


# ------------------------------------------------------------ banners and bishengir


UB = """triton.compiler.errors.MLIRCompilationError:
///------------------[ERROR][Triton][BEG]------------------
[ConvertLinalgRToBinary] encounters error:
loc("/tmp/tmpab12cd34/kernel.ttadapter.mlir":5:3): error: ub overflow, requires {bits} bits while 1572864 bits available!
loc("/tmp/tmpab12cd34/kernel.ttadapter.mlir":1:1): error: Failed to run BiShengHIR pipeline
///------------------[ERROR][Triton][END]------------------
[ERROR] 2026-01-01-00:00:00 (PID:1, Device:0, RankID:-1) ERR00100 PTA call acl api failed
RuntimeError: The Inner error is reported as above. The process exits for this inner error.
"""


def test_ub_overflow_inside_the_binary_banner_is_a_compile_failure_whatever_run_time_words_follow():
    d = classify(UB.format(bits=25264128))
    assert d.cls == "ConvertLinalgRToBinary"
    assert "ub overflow" in d.subclass


def test_ub_overflow_fingerprint_ignores_the_bit_counts():
    a, b = classify(UB.format(bits=25264128)), classify(UB.format(bits=3072000))
    assert a.fingerprint == b.fingerprint and a.subclass == b.subclass


@pytest.mark.parametrize(
    "line,needle",
    [
        ('loc("/tmp/bishengir-compile-1/module.hivm.mlir":9:5): error: ub overflow, requires 2097152 bits while 1572864 bits available!', "ub overflow"),
        ("loc(\"k.py\":7:1): error: failed to legalize operation 'hivm.hir.vbrc' that was explicitly marked illegal", "'hivm.hir.vbrc'"),
        ("loc(\"k.py\":7:1): error: 'hfusion.cast' op failed to verify that input and output have the same shape", "'hfusion.cast' op failed to verify"),
        ("loc(\"k.py\":9:3): error: 'hivm.hir.vreduce' op unsupported reduce dim for 64-bit types", "'hivm.hir.vreduce'"),
        ("loc(\"k.py\":2:2): error: 'memref.alloc' op Failed to propagate memory scope ub for allocOp", "memory scope"),
        ("loc(\"k.py\":4:4): error: 'scf.for' op Unsupported user for root alloc op.", "root allocation"),
        ("bishengir-compile: Segmentation fault (core dumped)", "crashed or was killed"),
    ],
)
def test_bishengir_diagnostics_are_the_binary_stage_with_stable_subclasses(line, needle):
    d = classify(line)
    assert d.cls == "ConvertLinalgRToBinary" and needle in d.subclass, d.subclass
    moved = classify(line.replace("k.py", "other.py").replace("2097152", "4194304"))
    assert moved.subclass == d.subclass


# ------------------------------------------------------------ noise around the cause


def test_root_cause_in_the_middle_of_chatter_prose_and_a_pytest_summary():
    text = """INFO 02-26 02:05:13 [__init__.py:198] Platform plugin ascend is activated
报错如下，麻烦帮忙看看：
(Worker_TP0 pid=1) ERROR 01-06 02:34:35 [multiproc_executor.py:824] WorkerProc failed to start.
(Worker_TP0 pid=1) ERROR 01-06 02:34:35 [multiproc_executor.py:824] AttributeError: '_OpNamespace' '_C' object has no attribute 'silu_and_mul'
...
FAILED tests/kernels/test_activation.py::test_act[1] - RuntimeError: Engine core initialization failed. See root cause above.
=========== 1 failed in 3.21s ===========
"""
    d = classify(text)
    assert (d.cls, d.subclass) == ("pytorch gap", "torch.ops._C.silu_and_mul is missing")


# ------------------------------------------------------------ repro output


REPRO = """tritriage reproducer: vllm.attention.ops.triton_decode_attention._fwd_kernel_stage1 [default]
  kernel      /ck:vllm/attention/ops/triton_decode_attention.py _fwd_kernel_stage1
  here        triton-ascend 3.2.0; ASCEND_HOME_PATH is not set (no CANN: the binary stage is not run)
  mode        compile only (asked to compile only)

----- compiler output ----------------------------------------
///------------------[ERROR][Triton][BEG]------------------
[ConvertTritonIRToLinalgIR] encounters error:
PLEASE submit a bug report to https://github.com/llvm/llvm-project/issues/ and include the crash backtrace.
Stack dump:
0.      Program arguments: /opt/triton/backends/ascend/triton-adapter-opt /tmp/tmp5r9cvwnj/kernel.ttir.mlir
#0 0x0000aaaaba374150 llvm::sys::PrintStackTrace(llvm::raw_ostream&, int) (/opt/triton-adapter-opt+0xfa4150)
#1 0x0000aaaaba371c00 llvm::sys::RunSignalHandlers() (/opt/triton-adapter-opt+0xfa1c00)
#2 0x0000aaaaba371d48 SignalHandler(int) Signals.cpp:0:0
#3 0x0000ffff972f97c0 (linux-vdso.so.1+0x7c0)
#4 0x0000aaaab953da48 mlir::triton::BlockDataParser::parseExpandDims(mlir::triton::ExpandDimsOp, mlir::triton::BlockData&) (/opt/triton-adapter-opt+0x16da48)
///------------------[ERROR][Triton][END]------------------
--------------------------------------------------------------
verdict: failed at linalg
"""


def test_repro_output_without_a_result_line_gives_the_crash_not_the_environment_line():
    d = classify(REPRO)
    assert d.cls == "ConvertTritonIRToLinalgIR"
    assert d.subclass == "crash in mlir::triton::BlockDataParser::parseExpandDims"


def test_repro_result_line_outranks_everything():
    own = classify(REPRO, stage="linalg", outcome="failed")
    result = {"outcome": "failed", "stage": "linalg", "class": own.cls, "subclass": own.subclass,
              "fingerprint": own.fingerprint, "location": "vllm/attention/ops/x.py:12:4"}
    text = REPRO + f"class:       {own.cls}: {own.subclass}\nTRITRIAGE-REPRO-RESULT {json.dumps(result, sort_keys=True)}\n"
    d = classify(text)
    assert (d.cls, d.subclass, d.fingerprint) == (own.cls, own.subclass, own.fingerprint)
    assert str(d.location) == "vllm/attention/ops/x.py:12:4"
    # A result line without a verdict (a passing repro) is not one.
    idle = REPRO + 'TRITRIAGE-REPRO-RESULT {"outcome": "passed", "stage": null}\n'
    assert classify(idle).cls == "ConvertTritonIRToLinalgIR"


# ------------------------------------------------------------ unknown


def test_unknown_carries_the_best_candidate_and_why():
    d = classify("loading...\nthe frobnicator failed: widget jammed while aligning gears\n")
    assert d.cls == "unknown" and d.pattern is None
    assert "the frobnicator failed: widget jammed" in d.hint and "no rule matches" in d.hint
    # An exception the generic rule knows, but with no stage to give it a class.
    d = classify("FrobnicatorError: the widget jammed")
    assert d.cls == "unknown" and "python-exception" in d.hint and "stage" in d.hint


def test_unknown_stage_dependent_match_says_the_stage_is_missing():
    d = classify("UNREACHABLE executed at lib/Foo/Bar.cpp:12!")
    assert d.cls == "unknown"
    assert "llvm-unreachable" in d.hint and "stage" in d.hint


# ------------------------------------------------------------ the public corpus

KNOWN_MISSES: set[str] = set()  # fitted with all rules: none today


def _public():
    return sorted(PUBLIC.glob("*.log"))


@pytest.mark.parametrize("path", _public(), ids=lambda p: p.stem)
def test_every_public_fixture_gets_its_expected_class(path):
    header, body = strip_header(path.read_text(encoding="utf-8"))
    assert header.get("source", "").startswith("https://"), "every public log cites its source"
    assert header.get("expect") in CLASSES
    if path.stem in KNOWN_MISSES:
        pytest.skip("known miss")
    d = classify(body)
    assert d.cls == header["expect"], (d.subclass, d.pattern)


def test_patterns_cite_fixtures_that_exist():
    stems = {p.stem for p in _public()}
    for p in load_patterns().patterns:
        for f in p.fixtures:
            assert f in stems, (p.id, f)


# ------------------------------------------------------------ user rules

USER_RULE = """patterns:
  - id: frob-jam
    class: runtime
    regex: 'the widget jammed'
    subclass: 'widget jam'
    examples: ['the widget jammed']
"""
OVERRIDE = """patterns:
  - id: ub-overflow
    class: runtime
    regex: '(?i)ub overflow'
    subclass: 'UB overflow, our way'
    examples: ['ub overflow']
"""


def test_user_rules_extend_the_shipped_ones(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(USER_RULE)
    assert classify("FrobnicatorError: the widget jammed").cls == "unknown"
    d = classify("FrobnicatorError: the widget jammed", rules=[f])
    assert (d.cls, d.subclass, d.pattern) == ("runtime", "widget jam", "frob-jam")
    assert classify(UB.format(bits=1), rules=[f]).cls == "ConvertLinalgRToBinary"  # the shipped ones still apply


def test_user_rule_with_a_shipped_id_overrides_it(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(OVERRIDE)
    d = Classifier(rules=[f], user_rules=False).classify("error: ub overflow, requires 1 bits while 0 bits available!")
    assert (d.cls, d.subclass) == ("runtime", "UB overflow, our way")


def test_rules_yaml_in_the_data_directory_is_picked_up(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path))
    (tmp_path / "rules.yaml").write_text(USER_RULE)
    assert classify("FrobnicatorError: the widget jammed").cls == "runtime"


def test_a_bad_user_rules_file_is_a_one_line_user_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(USER_RULE.replace("class: runtime", "class: wobbly"))
    with pytest.raises(UserError) as e:
        classify("x", rules=[f])
    assert str(f) in str(e.value) and "field 'class'" in str(e.value) and "\n" not in str(e.value)

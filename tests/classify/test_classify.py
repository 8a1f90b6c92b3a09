"""tritriage.classify: class, subclass, fingerprint and location of failures.

Fixtures are real output: the seed report's error blocks (seed/), logs quoted
in public issue trackers (public/, each with its source), and what the installed
triton-ascend printed for small failing kernels (local/).  Each starts with
"# source:", "# expect:" and optional "# subclass:" / "# location:" lines.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tritriage.classify import CLASSES, classify, clean, load_patterns
from tritriage.commands.classify import classify_command, strip_header
from tritriage.classify.engine import Classifier
from tritriage.errors import UserError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "classify"


def load(path: Path) -> tuple[dict, str]:
    return strip_header(path.read_text(encoding="utf-8"))


def fixtures(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.log"))


def loc_str(d) -> str:
    return f"{d.location.file}:{d.location.line}:{d.location.col}" if d.location else "-"


# --------------------------------------------------------------- seed report


@pytest.mark.parametrize("path", fixtures("seed") + fixtures("local"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_class_subclass_location(path):
    header, body = load(path)
    d = classify(body)
    assert d.cls == header["expect"]
    assert d.subclass == header["subclass"]
    assert loc_str(d) == header["location"]


def test_seed_covers_every_error_block_of_the_report():
    assert len(fixtures("seed")) == 13


def test_seed_location_carries_the_source_line():
    _, body = load(FIXTURES / "seed" / "002_chunked_prefill_paged_decode.log")
    d = classify(body)
    assert d.location.source == "((start_n + offs_n) // block_size) * stride_b_loc_s,"
    assert d.hint and "block_size" in d.hint


def test_seed_npuoptions_carries_the_known_fix():
    _, body = load(FIXTURES / "seed" / "001_npuoptions.log")
    d = classify(body)
    assert "default_dot_input_precision" in d.hint


def test_same_construct_in_two_kernels_shares_a_fingerprint():
    # The report's two prefix_prefill runs differ in temp dirs, SSA numbers and addresses.
    a = classify(load(FIXTURES / "seed" / "002_chunked_prefill_paged_decode.log")[1])
    b = classify(load(FIXTURES / "seed" / "003_prefix_prefill.log")[1])
    assert a.fingerprint == b.fingerprint


def test_same_message_elsewhere_keeps_its_own_fingerprint():
    a = classify(load(FIXTURES / "seed" / "008_lightning_attn.log")[1])
    b = classify(load(FIXTURES / "seed" / "013_rejection_sampler.log")[1])
    assert a.subclass == b.subclass
    assert a.fingerprint != b.fingerprint


def test_environment_failure_is_one_root_cause_across_kernels():
    a = classify(load(FIXTURES / "local" / "env_no_cann_causal_mask.log")[1])
    b = classify(load(FIXTURES / "local" / "env_no_cann_int64_divmod.log")[1])
    assert a.cls == b.cls == "environment"
    assert a.fingerprint == b.fingerprint


# ------------------------------------------------------------- public issues


def test_public_fixtures_cite_their_source():
    paths = fixtures("public")
    assert len(paths) >= 20
    for p in paths:
        header, body = load(p)
        assert header.get("source", "").startswith("https://"), p.name
        assert header.get("expect") in CLASSES, p.name
        assert body.strip(), p.name


def test_public_fixtures_classify_at_least_90_percent_right_and_none_dropped():
    right, misses = 0, []
    paths = fixtures("public")
    for p in paths:
        header, body = load(p)
        d = classify(body)
        assert d.cls in CLASSES and d.subclass and len(d.fingerprint) == 12, p.name
        if d.cls == header["expect"]:
            right += 1
        else:
            misses.append((p.name, header["expect"], d.cls, d.subclass))
    assert right / len(paths) >= 0.9, misses


@pytest.mark.parametrize("path", [p for p in fixtures("public") if "subclass" in load(p)[0]], ids=lambda p: p.stem)
def test_public_subclass_where_stated(path):
    header, body = load(path)
    assert classify(body).subclass == header["subclass"]


# ------------------------------------------------------------------ prefixes

WRAPPERS = {
    "pytest": lambda ln: "E       " + ln if ln else "E",
    "enginecore": lambda ln: "(EngineCore_DP0 pid=276) ERROR 01-02 12:34:56 [core.py:1100] " + ln,
    "ci+worker": lambda ln: "2025-06-01T12:00:00.1234Z (Worker_TP1 pid=24942) ERROR 01-06 02:34:35 [multiproc_executor.py:824] " + ln,
    "rank": lambda ln: "[rank0]: " + ln,
}


@pytest.mark.parametrize("wrap", list(WRAPPERS), ids=str)
@pytest.mark.parametrize(
    "path",
    [
        FIXTURES / "local" / "linalg_noinline_call.log",
        FIXTURES / "local" / "frontend_nameerror.log",
        FIXTURES / "local" / "linalg_scalar_div_rn.log",
        FIXTURES / "public" / "001_ta2_linalg_to_binary_memory_scope.log",
        FIXTURES / "public" / "013_va3219_aicore_execute_failed.log",
    ],
    ids=lambda p: p.stem,
)
def test_prefixed_log_classifies_like_the_raw_one(path, wrap):
    _, body = load(path)
    raw = classify(body)
    wrapped = "\n".join(WRAPPERS[wrap](ln) for ln in body.split("\n"))
    d = classify(wrapped)
    assert (d.cls, d.subclass, d.fingerprint, d.location) == (raw.cls, raw.subclass, raw.fingerprint, raw.location)


# --------------------------------------------------------------- fingerprint


def _mutate(text: str, seed: int) -> str:
    """Another machine, another run: other temp dirs, SSA ids, addresses, shapes."""
    rnd = random.Random(seed)
    text = re.sub(r"/tmp/tmp\w+", lambda m: "/tmp/tmp" + "".join(rnd.choice("abcdefgh0123") for _ in range(8)), text)
    text = re.sub(r"%(\d+)", lambda m: "%" + str(int(m.group(1)) + rnd.randint(1, 50)), text)
    text = re.sub(r"0x[0-9a-f]{8,}", lambda m: "0x" + "".join(rnd.choice("0123456789abcdef") for _ in range(16)), text)
    text = re.sub(r"tensor<64x64x", "tensor<128x32x", text)
    return text.replace("/home/devuser/workspace/vllm-project/vllm/", "/data/ci/build-17/vllm/")


@pytest.mark.parametrize(
    "name",
    ["002_chunked_prefill_paged_decode", "004_triton_decode_attention", "011_awq_triton", "012_triton_scaled_mm"],
)
def test_fingerprint_survives_temp_dirs_ssa_addresses_shapes_and_checkout(name):
    _, body = load(FIXTURES / "seed" / f"{name}.log")
    a, b = classify(body), classify(_mutate(body, 1))
    assert a.fingerprint == b.fingerprint
    assert a.location == b.location


def test_fingerprint_changes_with_the_construct():
    _, body = load(FIXTURES / "seed" / "002_chunked_prefill_paged_decode.log")
    moved = body.replace("prefix_prefill.py:122:21", "prefix_prefill.py:131:17")
    a, b = classify(body), classify(moved)
    assert a.subclass == b.subclass
    assert a.fingerprint != b.fingerprint


def test_crash_fingerprint_follows_the_crash_site():
    _, body = load(FIXTURES / "seed" / "004_triton_decode_attention.log")
    other = body.replace("parseExpandDims", "parseSplat")
    a, b = classify(body), classify(other)
    assert b.subclass == "crash in mlir::triton::BlockDataParser::parseSplat"
    assert a.fingerprint != b.fingerprint


def test_checkout_path_is_stripped_from_location():
    _, body = load(FIXTURES / "seed" / "008_lightning_attn.log")
    d = classify(body, checkout="/home/devuser/workspace/vllm-project/vllm/")
    assert d.location.file == "vllm/model_executor/layers/lightning_attn.py"
    d = classify("/srv/ck/pkg/kern.py:3:4: error: cannot div 0!", checkout="/srv/ck")
    assert (d.location.file, d.location.line, d.location.col) == ("pkg/kern.py", 3, 4)


# ---------------------------------------------------- stage / outcome arguments


def test_caller_stage_decides_a_stage_dependent_pattern():
    text = "kernel.py:3:9: error: 'tt.load' op operand #1 must be 1-bit signless integer"
    assert classify(text).cls == "unknown"
    assert classify(text, stage="linalg").cls == "ConvertTritonIRToLinalgIR"
    assert classify(text, stage="ttir").cls == "frontend"


def test_missing_cann_is_environment_even_when_the_binary_stage_failed():
    _, body = load(FIXTURES / "local" / "env_no_cann_causal_mask.log")
    assert classify(body, stage="binary").cls == "environment"


@pytest.mark.parametrize(
    "outcome,text,cls,needle",
    [
        ("timeout", "compiling _fwd_kernel ...", "timeout", "timed out"),
        ("crash", "worker exited: killed by signal 11", "crash", "signal 11"),
        ("oom", "", "crash", "memory"),
        ("loader-error", "ModuleNotFoundError: No module named 'vllm._custom_ops'", "loader", "No module named"),
        ("spec-error", "TypeError: kern() missing 1 required positional argument: 'BLOCK'", "spec", "BLOCK"),
    ],
)
def test_outcome_decides_the_class(outcome, text, cls, needle):
    d = classify(text, outcome=outcome)
    assert d.cls == cls
    assert needle in d.subclass


# ------------------------------------------------------------------ patterns


def _examples():
    ps = load_patterns()
    return [(p, i, ex) for p in ps.patterns for i, ex in enumerate(p.examples)]


@pytest.mark.parametrize("pattern,i,example", _examples(), ids=lambda v: v.id if hasattr(v, "id") else None)
def test_pattern_example_classifies_to_its_own_pattern(pattern, i, example):
    d = classify(example)
    assert d.pattern == pattern.id, (d.pattern, d.subclass)
    if pattern.cls != "@stage":
        assert d.cls == pattern.cls


def test_unmatched_output_is_unknown_with_its_first_error_line():
    d = classify("building...\nSomethingWeird: the frobnicator jammed\nValueError: no frob\n")
    assert d.cls == "unknown" and d.pattern is None
    assert d.subclass == "ValueError: no frob"
    d = classify("just some chatter\nmore chatter\n")
    assert d.cls == "unknown" and d.subclass == "just some chatter"


# ------------------------------------------------------------------- clean


def test_clean_collapses_repeats_cuts_stack_dumps_and_drops_noise():
    _, body = load(FIXTURES / "seed" / "002_chunked_prefill_paged_decode.log")
    noisy = "ERROR: Invalid bishengir path format: npuc\n" + body + "\n[INFO]: The compiled kernel cache is in /tmp/x/y\n"
    out = clean(noisy, max_frames=3)
    assert out.count("[MaskState] Unsupported cmpi scenario") == 1
    assert "error: cannot div 0!" in out
    assert "((start_n + offs_n) // block_size) * stride_b_loc_s," in out
    assert "PrintStackTrace" not in out and "linux-vdso" not in out
    assert "#4 mlir::addOpFoldResult" in out
    assert len(re.findall(r"^\s*#\d+ ", out, re.M)) == 3
    assert "more frames" in out
    assert "Invalid bishengir path" not in out and "compiled kernel cache" not in out
    assert not any(ln.startswith("E ") for ln in out.splitlines())


def test_clean_repeated_binary_errors_once():
    _, body = load(FIXTURES / "seed" / "011_awq_triton.log")
    out = clean(body)
    assert out.count("scalar-only") == 1


def test_excerpt_is_the_cleaned_text():
    _, body = load(FIXTURES / "seed" / "004_triton_decode_attention.log")
    d = classify(body)
    assert "parseExpandDims" in d.excerpt and "PrintStackTrace" not in d.excerpt


# ---------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "data",
    [
        "",
        "\n\n   \n",
        None,
        bytes(random.Random(7).getrandbits(8) for _ in range(20000)),
        "\x00\x01\x02 error: \x1b[31mred\x1b[0m \udcff",
        "a" * 3_000_000,
        "loc(" * 20000 + "): error: x",
        "#0 " * 50000,
    ],
    ids=["empty", "blank", "none", "binary", "control", "one-huge-line", "nested-loc", "hash-run"],
)
def test_bad_input_never_raises(data):
    d = classify(data)
    assert d.cls in CLASSES and d.subclass and len(d.fingerprint) == 12
    assert isinstance(clean(data), str)


def test_fifty_megabyte_log_still_finds_the_error_at_its_end():
    _, body = load(FIXTURES / "local" / "linalg_noinline_call.log")
    filler = ("INFO 01-02 12:34:56 [loader.py:12] loading shard ... " * 2 + "\n") * 480_000
    big = filler + body
    assert len(big) > 50_000_000
    d = classify(big)
    assert d.cls == "ConvertTritonIRToLinalgIR"
    assert d.pattern == "unresolved-materialization"


def test_empty_output_says_so():
    assert classify("").subclass == "empty output"


# ---------------------------------------------------------------- bad rules

GOOD_ENTRY = """
  - id: my-pattern
    class: runtime
    regex: 'boom'
    subclass: 'boom'
    examples: ['boom']
"""


@pytest.mark.parametrize(
    "body,needle",
    [
        ("patterns: [\n  - id: x\n", "not valid YAML"),
        ("patterns: []\n", "patterns: must be a non-empty list"),
        ("patterns:\n" + GOOD_ENTRY + GOOD_ENTRY, "pattern 'my-pattern' field 'id'"),
        ("patterns:\n" + GOOD_ENTRY.replace("class: runtime", "class: compiler"), "pattern 'my-pattern' field 'class'"),
        ("patterns:\n" + GOOD_ENTRY.replace("'boom'\n    subclass", "'bo(om'\n    subclass"), "pattern 'my-pattern' field 'regex'"),
        ("patterns:\n" + GOOD_ENTRY.replace("subclass: 'boom'", "subclass: '{what}'"), "pattern 'my-pattern' field 'subclass'"),
        ("patterns:\n" + GOOD_ENTRY.replace("    examples: ['boom']\n", ""), "pattern 'my-pattern' field 'examples'"),
    ],
    ids=["yaml", "empty", "duplicate", "class", "regex", "template", "examples"],
)
def test_bad_pattern_file_is_a_one_line_user_error(tmp_path, body, needle):
    f = tmp_path / "patterns.yaml"
    f.write_text(body)
    with pytest.raises(UserError) as e:
        load_patterns(f)
    msg = str(e.value)
    assert str(f) in msg and needle in msg and "\n" not in msg


def test_a_new_pattern_needs_no_code_change(tmp_path):
    f = tmp_path / "patterns.yaml"
    f.write_text(
        "patterns:\n"
        "  - id: frob-jam\n    class: runtime\n    regex: 'frobnicator (?P<what>\\w+)'\n"
        "    subclass: 'frobnicator {what}'\n    hint: 'oil it'\n    examples: ['frobnicator jammed']\n"
    )
    d = Classifier(patterns=f).classify("log\nfrobnicator jammed\n")
    assert (d.cls, d.subclass, d.hint, d.pattern) == ("runtime", "frobnicator jammed", "oil it", "frob-jam")


# ----------------------------------------------------------------------- CLI


def test_cli_json_lists_every_log(capsys):
    paths = fixtures("seed")[:3]
    assert classify_command(paths, json_out=True, checkout=None) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    for r in rows:
        assert {"file", "class", "subclass", "fingerprint", "location"} <= set(r)
    assert rows[1]["location"] == "vllm/attention/ops/prefix_prefill.py:122:21"


def test_cli_missing_log_is_one_line_and_exit_2(capsys, tmp_path):
    assert classify_command([tmp_path / "nope.log"], json_out=True, checkout=None) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.log" in err and "\n" not in err


def test_cli_table_groups_root_causes(capsys):
    paths = [FIXTURES / "seed" / "002_chunked_prefill_paged_decode.log", FIXTURES / "seed" / "003_prefix_prefill.log"]
    assert classify_command(paths, json_out=False, checkout=None) == 0
    out = capsys.readouterr().out
    assert "2 log(s), 1 distinct root cause(s)" in out


def test_frontend_error_points_at_the_checkout_line_the_worker_appends():
    # The worker appends where "at L:C" (relative to the def) lies in the file.
    text = (
        "triton.compiler.errors.CompilationError: at 21:10:\n"
        "    x = tl.extra.cuda.libdevice.round(y)\n"
        "          ^\n"
        "AttributeError(\"module 'triton.language.extra' has no attribute 'cuda'\")\n"
        '  File "/ck/vllm/model_executor/layers/quantization/utils/int8_utils.py", line 109, in _per_token_quant_int8\n'
    )
    d = classify(text, checkout="/ck", stage="frontend", outcome="failed")
    assert d.cls == "frontend"
    assert str(d.location) == "vllm/model_executor/layers/quantization/utils/int8_utils.py:109:10"
    elsewhere = classify(text.replace("/ck/", "/other/place/"), checkout="/other/place", stage="frontend",
                         outcome="failed")
    assert elsewhere.fingerprint == d.fingerprint

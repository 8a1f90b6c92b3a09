"""``tritriage test``: mapping kernel files to vLLM's tests, running them, classifying each case.

The fake tree (fixtures/fakevllm) fails its tests the ways the seed report's
tests failed on the NPU, with the seed's messages, raised for real by the test
bodies or by torch; the runs here use ``--device cpu``, so they need no NPU.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from tritriage.vtests import run as vtests_run
from tritriage.specs.catalog import PACKAGE_CATALOG, load_catalog
from tritriage.discover.inventory import discover
from tritriage.vtests.mapping import file_verdicts, map_tests, command_paths
from tritriage.commands.test import build_map, run_tests_command
from tritriage.store import Store

FAKE = Path(__file__).parents[1] / "fixtures" / "fakevllm"


@pytest.fixture
def fake(tmp_path) -> Path:
    # A copy: the runs must not leave anything in the repository.
    dst = tmp_path / "fakevllm"
    shutil.copytree(FAKE, dst)
    return dst


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


# --------------------------------------------------------------------------
# mapping


def test_mapping_of_the_fake_tree_by_catalog_imports_and_calls(fake):
    inv = discover(fake, use_cache=False)
    tm = map_tests(inv, load_catalog([PACKAGE_CATALOG, fake / "tritriage-catalog"]))
    got = {(m.kernel_file, m.command): (m.source, m.via) for m in tm.mappings}
    assert got == {
        # catalog commands keep their -k selection
        ("vllm/lora/lora_expand.py", "pytest -svx tests/lora/test_punica_ops.py -k expand"): ("catalog", ""),
        ("vllm/sample/rejection_sampler.py", "pytest -svx tests/v1/test_rejection_sampler.py -k greedy"):
            ("catalog", ""),
        # the helper file is exercised through the kernel that calls it
        ("vllm/lora/kernel_utils.py", "pytest -svx tests/lora/test_punica_ops.py -k expand"):
            ("catalog", "called from vllm/lora/lora_expand.py"),
        # found from the tests' imports: launching functions, or any name of the module
        ("vllm/attention/merge_attn_states.py", "pytest tests/kernels/test_cascade_flash_attn.py"):
            ("imports", "imports vllm.attention.merge_attn_states.merge_attn_states"),
        ("vllm/attention/prefix_prefill.py", "pytest tests/kernels/test_prefix_prefill.py"):
            ("imports", "imports vllm.attention.prefix_prefill.context_attention_fwd"),
        ("vllm/mamba/mamba_ssm.py", "pytest tests/kernels/test_mamba_ssm.py"):
            ("imports", "imports vllm.mamba.mamba_ssm.selective_scan_fn"),
        ("vllm/quantization/awq_triton.py", "pytest tests/kernels/test_awq_triton.py"):
            ("imports", "imports vllm.quantization.awq_triton.awq_dequantize_triton"),
    }
    # test_punica_ops.py and test_rejection_sampler.py import their kernel
    # modules too; the catalog's -k commands already run those files.
    assert tm.no_test == ["vllm/vllm_flash_attn/rotary.py"]


def test_kernel_and_file_filters(fake):
    cat = [str(fake / "tritriage-catalog")]
    _, tm = build_map(fake, catalog_dirs=cat, kernels=["do_expand_kernel"])
    assert [(m.kernel_file, m.command) for m in tm.mappings] == [
        ("vllm/lora/kernel_utils.py", "pytest -svx tests/lora/test_punica_ops.py -k expand")]
    _, tm = build_map(fake, catalog_dirs=cat, files=["mamba/mamba_ssm.py", "vllm/vllm_flash_attn/rotary.py"])
    assert [m.kernel_file for m in tm.mappings] == ["vllm/mamba/mamba_ssm.py"]
    assert tm.no_test == ["vllm/vllm_flash_attn/rotary.py"]
    from tritriage.errors import UserError

    with pytest.raises(UserError, match="no kernel file"):
        build_map(fake, files=["vllm/nope.py"])


def test_list_prints_the_mapping_and_runs_nothing(fake, capsys):
    from tritriage.cli import main

    with pytest.raises(SystemExit) as e:
        main(["test", str(fake), "--list", "--json", "--catalog", str(fake / "tritriage-catalog")])
    assert e.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["no_test"] == ["vllm/vllm_flash_attn/rotary.py"]
    assert len(data["mappings"]) == 7
    assert not list(fake.rglob("*.xml"))


def test_catalog_flags_that_hide_cases_are_dropped():
    argv, is_pytest = vtests_run.build_argv("pytest -svx tests/a/test_b.py -k 'x and not y' --junitxml=o.xml",
                                            "/py", "/tmp/j.xml")
    assert is_pytest
    assert argv[:7] == ["/py", "-m", "pytest", "-v", "tests/a/test_b.py", "-k", "x and not y"]
    assert "o.xml" not in " ".join(argv) and "--junitxml=/tmp/j.xml" in argv
    assert command_paths("pytest -svx tests/a/test_b.py::test_c -k 'x' -p no:warnings tests/d") == \
        ["tests/a/test_b.py", "tests/d"]
    argv, is_pytest = vtests_run.build_argv("python triton/test_x.py --n 3", "/py", "/tmp/j.xml")
    assert (argv, is_pytest) == (["/py", "triton/test_x.py", "--n", "3"], False)


# --------------------------------------------------------------------------
# running the fake tree's tests


EXPECTED = {
    # (test file, case): (outcome, class, pattern)
    ("tests/kernels/test_cascade_flash_attn.py", "(collection)"): ("error", "vllm-ascend gap", "vllm-module-missing"),
    ("tests/lora/test_punica_ops.py", "test_punica_expand"): ("failed", "vllm-ascend gap", "vllm-op-cpu-fallback"),
    ("tests/lora/test_punica_ops.py", "test_punica_expand_nslices"):
        ("failed", "vllm-ascend gap", "vllm-op-cpu-fallback"),
    ("tests/kernels/test_mamba_ssm.py", "test_selective_scan"): ("failed", "pytorch gap", "torch-ops-c-missing"),
    ("tests/kernels/test_prefix_prefill.py", "test_contexted_kv_attention"):
        ("failed", "ConvertTritonIRToLinalgIR", "cannot-div-zero"),
    ("tests/kernels/test_awq_triton.py", "test_dequantize"): ("failed", "accuracy", "accuracy-mismatch"),
    ("tests/kernels/test_awq_triton.py", "test_gemm"): ("skipped", None, None),
    ("tests/v1/test_rejection_sampler.py", "TestGreedy::test_accept[1]"): ("passed", None, None),
    ("tests/v1/test_rejection_sampler.py", "TestGreedy::test_accept[3]"): ("passed", None, None),
}


@pytest.mark.slow
def test_fake_tree_every_verdict(fake, tmp_path):
    store = Store.open(tmp_path / "db" / "tritriage.db")
    checkout = str(fake.resolve())
    scan_run = store.new_run(checkout=checkout, argv=["tritriage", "scan", checkout])
    console = _console()

    code = run_tests_command(fake, device="cpu", catalog_dirs=[str(fake / "tritriage-catalog")], store=store,
                             console=console, timeout=300)
    assert code == 0
    # The verdicts joined the scan's run instead of starting one.
    assert [r.id for r in store.runs()] == [scan_run]

    results = store.test_results(scan_run)
    got = {(r.test_file, r.case): (r.outcome, r.diagnosis.cls if r.diagnosis else None,
                                   r.diagnosis.pattern if r.diagnosis else None) for r in results}
    # -k selections held (test_punica_shrink, test_random_accept never ran)
    # and -x did not stop the run at the first failure.
    assert got == EXPECTED

    by_case = {(r.test_file, r.case): r for r in results}
    expand = by_case["tests/lora/test_punica_ops.py", "test_punica_expand"]
    assert "fall back to run on the CPU" in expand.output  # captured stderr reached the classifier
    assert expand.diagnosis.subclass == "vLLM custom op vllm::lora_expand has no NPU kernel (CPU fallback)"
    assert expand.kernel_files == ("vllm/lora/kernel_utils.py", "vllm/lora/lora_expand.py")
    assert by_case["tests/kernels/test_mamba_ssm.py", "test_selective_scan"].diagnosis.subclass == \
        "torch.ops._C.selective_scan_fwd is missing"
    assert by_case["tests/kernels/test_awq_triton.py", "test_gemm"].reason == "needs a CUDA device"
    assert Path(expand.log).is_file() and "test_punica_expand_nslices" in Path(expand.log).read_text()

    verdicts = file_verdicts(store.test_map(scan_run), results)
    assert {f: v.verdict for f, v in verdicts.items()} == {
        "vllm/attention/merge_attn_states.py": "failed",
        "vllm/attention/prefix_prefill.py": "failed",
        "vllm/lora/kernel_utils.py": "failed",
        "vllm/lora/lora_expand.py": "failed",
        "vllm/mamba/mamba_ssm.py": "failed",
        "vllm/quantization/awq_triton.py": "failed",
        "vllm/sample/rejection_sampler.py": "passed",
        "vllm/vllm_flash_attn/rotary.py": "no test",
    }
    assert verdicts["vllm/quantization/awq_triton.py"].counts == {"failed": 1, "skipped": 1}
    assert verdicts["vllm/attention/prefix_prefill.py"].causes == ["ConvertTritonIRToLinalgIR: cannot div 0!"]

    text = console.file.getvalue()
    assert "tests not run" not in text
    assert "vllm-ascend gap: vLLM module vllm.vllm_flash_attn is missing on Ascend" in text
    assert "no test (1 kernel file):\n  vllm/vllm_flash_attn/rotary.py" in text

    # The checklist shows the test verdicts beside the compile verdicts.
    from tritriage.discover.inventory import discover
    from tritriage.report.markdown import render_markdown
    from tritriage.report.machine import to_json_data
    from tritriage.report.view import build_view

    store.add_kernels(scan_run, discover(fake).kernels)
    view = build_view(store, store.run(scan_run))
    md = render_markdown(view)
    section = md.split("### vllm/attention/prefix_prefill.py", 1)[1].split("\n### ", 1)[0]
    assert "> vLLM tests: failed (1 failed): ConvertTritonIRToLinalgIR: cannot div 0!" in section
    files = {f["file"]: f["test_verdict"] for f in to_json_data(view)["files"]}
    assert files["vllm/sample/rejection_sampler.py"]["verdict"] == "passed"
    assert files["vllm/vllm_flash_attn/rotary.py"]["verdict"] == "no test"
    store.close()


def test_a_hung_test_is_killed_at_the_timeout(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_hang.py").write_text(
        "import subprocess, sys, time\n"
        "def test_hang():\n"
        "    # a child of its own too: the whole process group must go\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "    time.sleep(120)\n")
    t0 = time.time()
    run = vtests_run.run_command("pytest tests/test_hang.py", ["vllm/k.py"], root=tmp_path, python=sys.executable,
                                 device="cpu", timeout=4)
    assert time.time() - t0 < 30
    [r] = run.results
    assert (r.outcome, r.case, r.test_file) == ("timeout", "", "tests/test_hang.py")
    assert r.diagnosis.cls == "timeout" and r.diagnosis.subclass == "test command ran past 4 s"


# --------------------------------------------------------------------------
# vLLM 0.8.5's sources: no vLLM, no NPU, no tests/ here


@pytest.mark.vllm
def test_vllm085_every_mapped_file_not_run_with_the_reason(vllm085, tmp_path, capsys):
    store = Store.open(tmp_path / "tritriage.db")
    console = _console()
    assert run_tests_command(vllm085, store=store, console=console) == 0
    text = console.file.getvalue()
    # CI gating: nothing failed, but nothing ran either.
    assert run_tests_command(vllm085, store=store, console=_console(), fail_on="failures") == 0
    assert run_tests_command(vllm085, store=store, console=_console(), fail_on="not-run") == 1

    [run] = store.runs()  # no scan of it yet: the test run made its own
    mappings = store.test_map(run.id)
    results = store.test_results(run.id)
    mapped = {m.kernel_file for m in mappings if m.command}
    assert len(mapped) >= 20
    assert results and all(r.outcome == "not-run" for r in results)
    # Every catalog test is missing from a wheel: said per command.
    assert all("test file not in the checkout: tests/" in r.reason for r in results)
    verdicts = file_verdicts(mappings, results)
    assert {f for f, v in verdicts.items() if v.verdict == "not run"} == mapped

    if importlib.util.find_spec("torch_npu") is None:
        # This machine: the one reason, said once, recorded on every row.
        assert text.count("tests not run:") == 1
        assert "import vllm failed" in text and "no NPU: torch_npu is not installed" in text
        assert "the checkout has no tests/ directory" in text
        reason = text.split("tests not run: ", 1)[1].split("\n", 1)[0]
        assert all(r.reason.startswith(reason) for r in results)

    # The package catalog maps every 0.8.5 kernel file (kernel_utils.py
    # through the LoRA kernels that call its helpers).
    assert "no test: none" in text
    assert verdicts["vllm/lora/ops/triton_ops/kernel_utils.py"].verdict == "not run"
    store.close()


@pytest.mark.vllm
def test_vllm085_lists_the_files_with_no_test(vllm085, tmp_path, monkeypatch, capsys):
    # A catalog that knows only the LoRA expand kernel and prefix prefill.
    cat = tmp_path / "catalog"
    for rel in ("vllm/lora/ops/triton_ops/lora_expand.yaml", "vllm/attention/ops/prefix_prefill.yaml"):
        (cat / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE_CATALOG / rel, cat / rel)
    monkeypatch.setattr("tritriage.specs.catalog.PACKAGE_CATALOG", cat)
    store = Store.open(tmp_path / "tritriage.db")
    run_tests_command(vllm085, store=store, json_out=True)
    data = json.loads(capsys.readouterr().out)

    assert sorted(f["file"] for f in data["files"]) == [
        "vllm/attention/ops/prefix_prefill.py",
        "vllm/lora/ops/triton_ops/kernel_utils.py",
        "vllm/lora/ops/triton_ops/lora_expand.py",
    ]
    assert all(f["verdict"] == "not run" and f["not_run"] for f in data["files"])
    inv = discover(vllm085)
    assert sorted(data["no_test"]) == sorted({k.file for k in inv.kernels} - {f["file"] for f in data["files"]})
    assert "vllm/lora/ops/triton_ops/lora_shrink.py" in data["no_test"]
    store.close()


def test_kernel_tests_come_first_and_importers_are_capped(tmp_path):
    (tmp_path / "vllm" / "ops").mkdir(parents=True)
    (tmp_path / "vllm" / "ops" / "quant.py").write_text(
        "import triton\nimport triton.language as tl\n\n\n"
        "@triton.jit\ndef quant_kernel(x_ptr, BLOCK: tl.constexpr):\n    tl.store(x_ptr + tl.arange(0, BLOCK), 0)\n\n\n"
        "def quant(x):\n    quant_kernel[(1,)](x, BLOCK=16)\n\n\n"
        "def helper_constant():\n    return 3\n")
    for i in range(6):
        (tmp_path / "tests" / "models").mkdir(parents=True, exist_ok=True)
        (tmp_path / "tests" / "models" / f"test_model_{i}.py").write_text(
            "from vllm.ops.quant import helper_constant\n")
    (tmp_path / "tests" / "kernels").mkdir()
    # A nested import counts as much as a top-level one.
    (tmp_path / "tests" / "kernels" / "test_quant.py").write_text("def test_q():\n    from vllm.ops.quant import quant\n")
    tm = map_tests(discover(tmp_path, use_cache=False))
    assert [m.command for m in tm.mappings] == ["pytest tests/kernels/test_quant.py"] + \
        [f"pytest tests/models/test_model_{i}.py" for i in range(4)]
    assert tm.mappings[0].via == "imports vllm.ops.quant.quant"
    assert tm.more_imports == {"vllm/ops/quant.py": 2}

"""``tritriage trace``: specs recorded from real launches.

The fixture checkout ``tests/fixtures/trace`` has a plain kernel, an autotuned
one, one under ``@triton.heuristics`` and one given ``None`` and ``1``;
``kernel_suite.py`` launches them with torch CPU tensors.  It runs under
``TRITON_INTERPRET=1`` inside the trace, as a porting team would run a vLLM
test file on a host without a device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tritriage.commands.trace import trace_command
from tritriage.specs import trace
from tritriage.discover.inventory import discover, resolve_kernel
from tritriage.specs.resolve import load_catalog, specs_for, traced_dir

CHECKOUT = Path(__file__).parents[1] / "fixtures" / "trace"
SUITE = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "kernel_suite.py"]
ALIGNED = ["x_ptr", "y_ptr", "out_ptr"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("TRACE_FIXTURE_TRUTH", str(tmp_path / "truth.jsonl"))
    monkeypatch.delenv("TRACE_FIXTURE_FAIL", raising=False)
    monkeypatch.chdir(CHECKOUT)
    return tmp_path


def traced_specs() -> dict[str, list[dict]]:
    """kernel qualname -> its traced specs, as ``specs_for`` would read them."""
    cat = load_catalog([traced_dir()], with_traced=False)
    out: dict[str, list[dict]] = {}
    for (_, qual), entry in cat.traced.items():
        out[qual] = [{"signature": dict(s.signature), "constexprs": dict(s.constexprs), "options": dict(s.options)}
                     for s in entry.specs]
    return out


def truth(tmp_path) -> dict:
    out = {}
    for line in (tmp_path / "truth.jsonl").read_text().splitlines():
        out.update(json.loads(line))
    return out


@pytest.fixture(scope="module")
def traced_suite(tmp_path_factory):
    """One traced run of the suite, shared: the interpreter run takes seconds."""
    tmp = tmp_path_factory.mktemp("trace")
    env = dict(os.environ, TRITRIAGE_HOME=str(tmp / "home"), TRITON_INTERPRET="1",
               TRACE_FIXTURE_TRUTH=str(tmp / "truth.jsonl"))
    env.pop("TRACE_FIXTURE_FAIL", None)
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--write", str(tmp / "review"),
                           "--records", str(tmp / "records"), "--", *SUITE],
                          cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=300)
    return tmp, proc


def test_trace_records_the_exact_specs_of_each_launch(traced_suite, monkeypatch):
    tmp, proc = traced_suite
    assert proc.returncode == 0, proc.stdout + proc.stderr
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp / "home"))
    got = traced_specs()
    chosen = truth(tmp)["scale_kernel"]
    expected = {
        "add_kernel": [
            {"signature": {"x_ptr": "*fp32", "y_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32"},
             "constexprs": {"BLOCK": 64}, "options": {"divisible_by_16": ALIGNED}},
            # n = 256 is a multiple of 16: Triton specializes on it.
            {"signature": {"x_ptr": "*fp16", "y_ptr": "*fp16", "out_ptr": "*fp16", "n": "i32"},
             "constexprs": {"BLOCK": 64}, "options": {"divisible_by_16": ALIGNED + ["n"]}},
        ],
        # Through @triton.autotune: the config it chose, with its launch options.
        "scale_kernel": [
            {"signature": {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "scale": "fp32"},
             "constexprs": {"BLOCK": chosen["BLOCK"]},
             "options": {"num_warps": chosen["num_warps"], "num_ctas": 1, "num_stages": 2,
                         "divisible_by_16": ["x_ptr", "out_ptr"]}},
        ],
        # Through @triton.heuristics: EVEN computed from n, both ways.
        "copy_kernel": [
            {"signature": {"x_ptr": "*i32", "out_ptr": "*i32", "n": "i32"},
             "constexprs": {"BLOCK": 32, "EVEN": True}, "options": {"divisible_by_16": ["x_ptr", "out_ptr", "n"]}},
            {"signature": {"x_ptr": "*i32", "out_ptr": "*i32", "n": "i32"},
             "constexprs": {"BLOCK": 32, "EVEN": False}, "options": {"divisible_by_16": ["x_ptr", "out_ptr"]}},
        ],
        # None and 1 become constants, as Triton specializes them.
        "axpy_kernel": [
            {"signature": {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "alpha": "fp32"},
             "constexprs": {"bias_ptr": None, "stride": 1, "HAS_BIAS": False, "BLOCK": 32},
             "options": {"divisible_by_16": ["x_ptr", "out_ptr"]}},
        ],
    }
    assert got == expected
    assert "6 specs of 4 kernels recorded (6 new)" in proc.stderr, proc.stderr
    assert "autotune benchmark launches left out" in proc.stderr


def test_traced_specs_feed_the_scan_and_carry_launch_data(traced_suite, monkeypatch):
    from tritriage.specs import resolve as specs_module

    tmp, _ = traced_suite
    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp / "home"))
    # The catalog is cached per process, and other tests loaded it under another home.
    monkeypatch.setattr(specs_module, "_CATALOG_CACHE", {})
    monkeypatch.setattr(specs_module, "_CHECKED", set())
    inv = discover(CHECKOUT)
    k = resolve_kernel(inv, "add_kernel")
    specs = specs_for(k, inv, CHECKOUT, catalog_dirs=[])
    assert {s.source for s in specs} == {"traced"} and len(specs) == 2
    fp16 = next(s for s in specs if s.signature["x_ptr"] == "*fp16")
    data = trace.launch_data(k, fp16)
    assert data["tensors"]["x_ptr"] == {"dtype": "torch.float16", "shape": [256], "stride": [1], "device": "cpu"}
    assert data["scalars"] == {"n": 256}
    assert data["grid"] == [4]
    assert data["test"].startswith("kernel_suite.py::test_add")
    scale = resolve_kernel(inv, "scale_kernel")
    (s,) = specs_for(scale, inv, CHECKOUT, catalog_dirs=[])
    # The callable grid, evaluated with the chosen config's BLOCK.
    assert trace.launch_data(scale, s)["grid"] == [-(-200 // s.constexprs["BLOCK"])]


def test_write_gives_reviewable_catalog_yaml(traced_suite):
    tmp, _ = traced_suite
    path = tmp / "review" / "tracekernels" / "ops.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["source"] == "traced" and doc["file"] == "tracekernels/ops.py"
    assert doc["tests"] == [" ".join(SUITE)]
    cat = load_catalog([tmp / "review"], with_traced=False)
    assert {q for _, q in cat.traced} == {"add_kernel", "scale_kernel", "copy_kernel", "axpy_kernel"}
    assert (tmp / "review" / "tracekernels" / "ops.launches.json").is_file()


def test_benchmark_launches_are_recorded_apart(traced_suite):
    tmp, _ = traced_suite
    launches = trace.read_records(tmp / "records")
    bench = [la for la in launches if la.qualname == "scale_kernel" and la.phase == "bench"]
    assert sorted(la.constexprs["BLOCK"] for la in bench) == [32, 64]
    assert all(la.backend == "interpreter" for la in launches)


def test_a_failing_command_keeps_its_exit_code_and_its_records(home):
    env = dict(os.environ, TRACE_FIXTURE_FAIL="1")
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--no-save", "--records", str(home / "rec"),
                           "--", *SUITE, "-k", "fails or add"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout  # pytest's own output passes through
    assert {la.qualname for la in trace.read_records(home / "rec")} == {"add_kernel"}
    assert not traced_dir().exists()


def test_exit_code_and_output_pass_through_unchanged(home):
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert proc.stderr.startswith("err\n")
    assert "no Triton launch recorded" in proc.stderr


def test_a_killed_command_reports_its_signal(home):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert trace.run_traced([sys.executable, "-c", code], home / "rec") == 128 + 15


def test_compiled_launches_are_recorded_before_the_launch_runs(home, monkeypatch):
    """Without the interpreter (the CUDA/NPU path) the hook sits in JITFunction.run:
    here, with no device, the launch then fails, but its spec is already saved --
    as a launch whose compile fails on an NPU still has its spec recorded."""
    monkeypatch.delenv("TRITON_INTERPRET")
    code = ("import torch; from tracekernels import plain\n"
            "x = torch.ones(48, dtype=torch.bfloat16)\n"
            "plain.mul_kernel[(1,)](x, x, x, 48, BLOCK=64)\n")
    result = trace_command([sys.executable, "-c", code], checkout=CHECKOUT, save_specs=True,
                                 keep_records=home / "rec")
    assert result.exit_code == 1
    (launch,) = trace.read_records(home / "rec")
    assert launch.backend == "jit" and launch.phase == "launch"
    assert traced_specs()["mul_kernel"] == [
        {"signature": {"x_ptr": "*bf16", "y_ptr": "*bf16", "out_ptr": "*bf16", "n": "i32"},
         "constexprs": {"BLOCK": 64}, "options": {"divisible_by_16": ALIGNED + ["n"]}}]


def test_tracing_twice_adds_nothing_new(home):
    code = ("import torch; from tracekernels import ops\n"
            "ops.add(torch.ones(20), torch.ones(20))\n")
    first = trace_command([sys.executable, "-c", code], checkout=CHECKOUT)
    again = trace_command([sys.executable, "-c", code], checkout=CHECKOUT)
    assert (first.exit_code, first.new_specs) == (0, 1)
    assert (again.exit_code, again.new_specs) == (0, 0)
    assert len(traced_specs()["add_kernel"]) == 1


def test_an_existing_sitecustomize_still_runs(home, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['FROM_SITECUSTOMIZE'] = 'yes'\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    code = "import os, sys, tritriage_trace_hook; print(os.environ.get('FROM_SITECUSTOMIZE'))"
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--", sys.executable, "-c", code],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "yes\n"


def test_a_launch_the_hook_cannot_record_warns_and_goes_on(home):
    code = ("import torch, triton, triton.language as tl\n"
            "@triton.jit\n"
            "def k(x_ptr, SHAPE: tl.constexpr):\n"
            "    tl.store(x_ptr, 1.0)\n"
            "x = torch.zeros(1)\n"
            "k[(1,)](x, SHAPE=object())\n"
            "print('done', x.item())\n")
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done 1.0\n"
    assert "could not record a launch of k: Unrecordable" in proc.stderr


def test_launches_map_to_an_installed_copy_of_the_checkout():
    inv = discover(CHECKOUT)
    launch = trace.Launch(file="/opt/venv/lib/python3.11/site-packages/tracekernels/ops.py", qualname="add_kernel",
                          name="add_kernel", line=6, signature={}, constexprs={}, options={})
    kernel, why = trace.map_launch(launch, inv)
    assert kernel is not None and kernel.id == "tracekernels.ops.add_kernel", why
    elsewhere = trace.Launch(file="/usr/lib/other.py", qualname="f", name="f", line=1, signature={},
                             constexprs={}, options={})
    assert trace.map_launch(elsewhere, inv)[0] is None


def test_trace_without_a_command_is_a_usage_error(home):
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--", "no-such-command-here"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "command not found" in proc.stderr

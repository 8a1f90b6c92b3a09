"""``tritriage repro``: standalone scripts that reproduce a stored verdict.

The engine fixture (``tests/fixtures/engine``) is scanned with a stand-in
adapter that aborts on ``add_kernel`` only, which gives one failure per kind
that matters here: frontend, loader, and an external tool (linalg).  Each
script runs in a subprocess of its own, as it would on another host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tritriage.compile.scan import run_scan
from tritriage.errors import UserError
from tritriage.model import PASSES, Spec
from tritriage.commands.repro import repro_command
from tritriage.repro import build as repro
from tritriage.store import Store
from testkit import fixture_specs, real_adapter  # noqa: E402 - shared test helpers

FIXTURES = Path(__file__).parents[1] / "fixtures"
ENGINE = FIXTURES / "engine"
TRACE = FIXTURES / "trace"
ABORT = str(FIXTURES / "standin" / "abort-adapter")





@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """One scan of the engine fixture: add_kernel aborts in the (stand-in) adapter."""
    home = tmp_path_factory.mktemp("repro-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITRIAGE_HOME", str(home))
    mp.delenv("ASCEND_HOME_PATH", raising=False)
    mp.setenv("TRITRIAGE_STANDIN_ONLY", "add_kernel")
    mp.setenv("TRITRIAGE_REAL_ADAPTER", real_adapter())
    store = Store.open()
    summary = run_scan(ENGINE, store=store, specs_fn=fixture_specs, timeout=60, jobs=2, adapter=ABORT)
    yield store, summary.run_id, home
    store.close()
    mp.undo()


def fresh_catalog(mp):
    # specs.py caches the catalog per process, traced specs included, and
    # other tests loaded it under another TRITRIAGE_HOME.
    from tritriage.specs import resolve as specs

    mp.setattr(specs, "_CATALOG_CACHE", {})
    mp.setattr(specs, "_CHECKED", set())


def outcomes(store, run_id):
    return {r.kernel.rsplit(".", 1)[-1]: r for r in store.results(run_id)}


def write(store, tmp_path, kernel, **kw):
    out = tmp_path / f"{kernel}.{'sh' if kw.get('ir') else 'py'}"
    repro_command(kernel=kernel, output=str(out), store=store, out=open(os.devnull, "w"), **kw)
    return out


def test_compile_only_scripts_reproduce_class_and_fingerprint(scanned, tmp_path):
    store, run_id, _ = scanned
    results = outcomes(store, run_id)
    failing = {k: r for k, r in results.items() if r.outcome not in PASSES}
    assert set(failing) == {"add_kernel", "frontend_error_kernel", "loader_error_kernel"}
    for name, r in failing.items():
        path = write(store, tmp_path, name, compile_only=True)
        code, output, got = repro.run_script(path)
        assert code == 1, output
        assert got is not None, output
        assert (got["class"], got["fingerprint"]) == (r.diagnosis.cls, r.diagnosis.fingerprint), (name, output)
        assert got["stage"] == r.failed_stage and got["outcome"] == r.outcome
        assert "same)" in output
    add = repro.run_script(tmp_path / "add_kernel.py")[1]
    assert "malloc(): corrupted top size" in add  # the tool's own words
    assert "tool command: " in add and "abort-adapter" in add


def test_a_passing_kernel_compiles_and_exits_zero(scanned, tmp_path):
    store, _, _ = scanned
    path = write(store, tmp_path, "relu_kernel", compile_only=True)
    code, output, got = repro.run_script(path)
    assert code == 0, output
    assert got["outcome"] == "passed-to-binary"
    assert got["stages"] == {"frontend": "passed", "ttir": "passed", "linalg": "passed", "binary": "passed",
                             "hivmc": "not-run", "launch": "not-run"}


def test_script_states_where_it_came_from(scanned, tmp_path):
    store, run_id, _ = scanned
    text = write(store, tmp_path, "frontend_error_kernel", compile_only=True).read_text()
    import tritriage
    import triton

    assert f"Made by tritriage {tritriage.__version__}" in text
    assert f"from scan run #{run_id}" in text
    assert f"triton-ascend   {triton.__version__}" in text
    assert "CANN            absent" in text
    assert f"checkout        {ENGINE.resolve()}" in text
    compile(text, "repro.py", "exec")


def test_script_runs_without_tritriage(scanned, tmp_path):
    """The loader is embedded: only the classification needs tritriage."""
    store, _, _ = scanned
    path = write(store, tmp_path, "frontend_error_kernel", compile_only=True)
    fake = tmp_path / "fake"
    (fake / "tritriage").mkdir(parents=True)
    (fake / "tritriage" / "__init__.py").write_text("raise ImportError('tritriage is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=str(fake))
    code, output, got = repro.run_script(path, env=env)
    assert code == 1, output
    assert got["outcome"] == "failed" and got["stage"] == "frontend" and "class" not in got
    assert "tritriage is not importable here" in output
    assert "no_such_function" in output


def test_a_missing_checkout_cannot_run(scanned, tmp_path):
    store, _, _ = scanned
    path = write(store, tmp_path, "relu_kernel", compile_only=True)
    env = dict(os.environ, TRITRIAGE_REPRO_CHECKOUT=str(tmp_path / "gone"))
    code, output, _ = repro.run_script(path, env=env)
    assert code == 125 and "is not here" in output


def test_ir_script_replays_the_failing_tool_alone(scanned, tmp_path):
    store, _, _ = scanned
    path = write(store, tmp_path, "add_kernel", ir=True)
    text = path.read_text()
    assert "tt.func public @add_kernel" in text  # the saved .ttir travels inside
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 134, proc.stderr  # SIGABRT, as in the scan
    assert "malloc(): corrupted top size" in proc.stderr
    # Another build of the tool, as when bisecting: the real adapter lowers it.
    env = {k: v for k, v in os.environ.items() if k != "TRITRIAGE_STANDIN_ONLY"}
    proc = subprocess.run(["bash", str(path), real_adapter()], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr


def test_ir_needs_an_external_tool_stage(scanned, tmp_path):
    store, _, _ = scanned
    with pytest.raises(UserError, match="runs inside Python|before any compiler stage"):
        write(store, tmp_path, "frontend_error_kernel", ir=True)
    with pytest.raises(UserError, match="before any compiler stage"):
        write(store, tmp_path, "loader_error_kernel", ir=True)
    with pytest.raises(UserError, match="nothing to replay"):
        write(store, tmp_path, "relu_kernel", ir=True)


def test_unknown_kernel_and_spec_are_user_errors(scanned, tmp_path):
    store, _, _ = scanned
    with pytest.raises(UserError, match="no kernel 'nope'"):
        write(store, tmp_path, "nope")
    with pytest.raises(UserError, match="has no spec 'other'"):
        write(store, tmp_path, "relu_kernel", spec="other")


def test_reproducer_command_for_reports():
    assert repro.reproducer_command("vllm.x._k", "fp16", run_id=3) == \
        "tritriage repro --kernel vllm.x._k --spec fp16 --run 3 --compile-only"


def test_cli_prints_the_script(scanned):
    _, _, home = scanned
    env = dict(os.environ, TRITRIAGE_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "tritriage", "repro", "-k", "relu_kernel", "--compile-only",
                           "-o", "-"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/usr/bin/env python3\n")


# --------------------------------------------------------------------------
# launching with traced shapes


@pytest.fixture(scope="module")
def traced_scan(tmp_path_factory):
    """The trace fixture, traced (shapes recorded) and then scanned with its traced specs."""
    home = tmp_path_factory.mktemp("repro-trace-home")
    env = dict(os.environ, TRITRIAGE_HOME=str(home), TRITON_INTERPRET="1")
    code = "import torch; from tracekernels import ops; ops.axpy(torch.randn(40), 0.5); ops.copy(torch.ones(64))"
    proc = subprocess.run([sys.executable, "-m", "tritriage", "trace", "--", sys.executable, "-c", code],
                          cwd=TRACE, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITRIAGE_HOME", str(home))
    fresh_catalog(mp)
    store = Store.open()
    run_scan(TRACE, store=store, jobs=2, timeout=60)
    yield store, env
    store.close()
    mp.undo()


def test_launch_script_builds_the_recorded_inputs_and_runs(traced_scan, tmp_path):
    store, env = traced_scan
    path = write(store, tmp_path, "axpy_kernel")
    text = path.read_text()
    assert "shape: [40]" in text and "No launch was recorded" not in text
    # No NPU here: Triton's interpreter stands in for the device.
    code, output, got = repro.run_script(path, env=dict(env, TRITRIAGE_REPRO_DEVICE="cpu"))
    assert code == 0, output
    assert got["mode"] == "launch" and got["outcome"] == "passed"
    assert "PASS" in output


def test_launch_script_compiles_only_without_an_npu(traced_scan, tmp_path):
    store, env = traced_scan
    path = write(store, tmp_path, "copy_kernel")
    env = {k: v for k, v in env.items() if k not in ("TRITON_INTERPRET", "TRITRIAGE_REPRO_DEVICE")}
    code, output, got = repro.run_script(path, env=env)
    assert code == 0, output
    assert got["mode"] == "compile" and got["outcome"] == "passed-to-binary"
    assert "torch_npu is not importable" in output


# --------------------------------------------------------------------------
# every failing kernel of vLLM 0.8.5


@pytest.fixture(scope="module")
def vllm_scan(vllm085, tmp_path_factory):
    home = tmp_path_factory.mktemp("repro-vllm-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITRIAGE_HOME", str(home))
    mp.delenv("ASCEND_HOME_PATH", raising=False)
    fresh_catalog(mp)
    store = Store.open()
    summary = run_scan(vllm085, store=store, jobs=2)
    yield store, summary.run_id
    store.close()
    mp.undo()


@pytest.mark.vllm
@pytest.mark.slow
def test_every_failing_vllm085_kernel_reproduces(vllm_scan, tmp_path):
    store, run_id = vllm_scan
    failing = [r for r in store.results(run_id) if r.outcome not in PASSES]
    assert failing, "the scan of vLLM 0.8.5 found no failure to reproduce"

    scripts = []
    for r in failing:  # the store stays in this thread; the scripts run two at a time
        run, stored, k = repro.pick(store, r.kernel, r.spec_name, run_id)
        path = tmp_path / f"{r.kernel}.{r.spec_name}.py"
        path.write_text(repro.python_script(run, stored, k, compile_only=True, launch=None))
        scripts.append((r, path))

    def one(item):
        r, path = item
        return (r, *repro.run_script(path))

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(one, scripts))
    wrong = []
    for r, code, output, got in done:
        want = (r.diagnosis.cls, r.diagnosis.fingerprint)
        have = (got or {}).get("class"), (got or {}).get("fingerprint")
        if code != 1 or have != want:
            wrong.append(f"{r.kernel} [{r.spec_name}]: scan {want}, script {have} (exit {code})\n{output[-2000:]}")
    assert not wrong, "\n\n".join(wrong)


def test_a_plugin_kernel_reproduces_with_the_tree_it_imports_from(tmp_path, monkeypatch):
    # A plugin's kernel calls a jit helper of vLLM's: the scan loaded it with
    # vLLM's tree beside the plugin, and so does the script.
    import textwrap

    monkeypatch.setenv("TRITRIAGE_HOME", str(tmp_path / "home"))
    files = {
        "plugin/plug/__init__.py": "",
        "plugin/plug/k.py": """\
            import triton
            import triton.language as tl
            from vllm.helpers import _twice

            @triton.jit
            def plugin_kernel(x_ptr, y_ptr, N: tl.constexpr):
                offs = tl.arange(0, N)
                tl.store(y_ptr + offs, _twice(tl.load(x_ptr + offs)))
            """,
        "host/vllm/__init__.py": "raise RuntimeError('vLLM is never imported')\n",
        "host/vllm/helpers.py": """\
            import triton

            @triton.jit
            def _twice(x):
                return x * 2
            """,
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))

    def spec(kernel, inventory, root):
        return [Spec(kernel=kernel.id, signature={"x_ptr": "*fp32", "y_ptr": "*fp32"}, constexprs={"N": 128})]

    with Store.open() as store:
        summary = run_scan(tmp_path / "plugin", store=store, specs_fn=spec, timeout=60, jobs=1,
                           roots=[str(tmp_path / "host")])
        [r] = store.results(summary.run_id)
        assert r.outcome == "passed-to-binary", r.result.error
        path = write(store, tmp_path, "plugin_kernel", compile_only=True)
    code, output, got = repro.run_script(path)
    assert code == 0 and got["outcome"] == "passed-to-binary", output
    assert f"also from   {tmp_path / 'host'}" in output
    gone = dict(os.environ, TRITRIAGE_REPRO_ROOTS=str(tmp_path / "elsewhere"))
    code, output, got = repro.run_script(path, env=gone)
    assert code == 1 and got["outcome"] == "loader-error", output

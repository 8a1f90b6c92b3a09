"""tritriage.sandbox.loader: slicing one kernel out of a checkout, without vLLM.

The fake checkout under fixtures/loader raises at the top of every module, so
any test that loads from it also proves that no module-level code ran.  The
sweeps over real vLLM run in a subprocess (``python tests/sandbox/test_loader.py
ROOT``) so that whatever the failing kernels import (torch) stays out of this
process and the ``sys.modules`` checks mean something.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAKE = Path(__file__).parents[1] / "fixtures" / "loader"
MIXED = "vllm/kernels/mixed.py"
REPO = Path(__file__).resolve().parents[2]
NPU = ("npu", "Ascend910B3", 0)


@pytest.fixture(autouse=True)
def _fresh_loader(monkeypatch, tmp_path):
    from tritriage.sandbox import loader

    loader.clear_cache()
    # A cache hit would skip the stages whose errors the compile tests read.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton-cache"))
    yield
    loader.clear_cache()


def load(qualname, rel=MIXED, root=FAKE):
    from tritriage.sandbox.loader import load_kernel

    return load_kernel(root, rel, qualname)


def compile_npu(fn, signature, constants):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    return triton.compile(ASTSource(fn, signature, constants), target=GPUTarget(*NPU))


def line_of(path: Path, needle: str, start: int = 1) -> int:
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if i >= start and needle in text:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


# --------------------------------------------------------------------------
# the fake checkout


def test_loads_kernel_past_autotune_heuristics_and_broken_module_code():
    from triton.runtime.jit import JITFunction

    fn = load("scaled_copy")
    assert isinstance(fn, JITFunction)
    path = (FAKE / MIXED).resolve()
    assert fn.fn.__code__.co_filename == str(path)
    # As for any @triton.jit function, the first line is the decorator's; the
    # autotune/heuristics lines above it are gone.
    assert fn.starting_line_number == line_of(path, "def scaled_copy") - 1
    assert linecache.getline(str(path), fn.starting_line_number).strip() == "@triton.jit"
    assert fn.src.startswith("def scaled_copy(")
    assert fn.__module__ == "tritriage_loaded.vllm.kernels.mixed"
    assert [p.name for p in fn.params] == ["x_ptr", "out_ptr", "n", "BLOCK", "EVEN"]
    assert fn.constexprs == [3, 4]


def test_globals_hold_what_the_jit_frontend_looks_up():
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    fn = load("scaled_copy")
    g = fn.__globals__
    assert g["tl"] is tl
    assert isinstance(g["helper"], JITFunction)
    assert g["helper"].fn.__code__.co_filename == str((FAKE / "vllm/a/b.py").resolve())
    # The helper's own constant lives in the helper's module, as in Python.
    assert g["helper"].__globals__["SCALE"] == tl.constexpr(3)
    assert g["_TWO"] == tl.constexpr(2)
    assert isinstance(g["bmod"].other_helper, JITFunction)
    assert g["vendored_add"].__globals__["OFFSET"] == tl.constexpr(7)
    # Only what the kernel needs was bound.
    for unused in ("einops", "torch", "current_platform", "NUM_WARPS", "FP8_MAX", "uses_platform"):
        assert unused not in g


def test_triton_utils_names_map_to_installed_triton():
    import triton
    import triton.language as tl
    import triton.language.extra.libdevice as libdevice

    fn = load("uses_libdevice")
    g = fn.__globals__
    assert g["triton"] is triton and g["tl"] is tl and g["tldevice"] is libdevice
    assert fn.do_not_specialize == ["n"]
    # The default is evaluated from the module constant.
    assert fn.signature.parameters["BLOCK"].default == 128


def test_if_tests_and_import_fallbacks_pick_what_installed_triton_supports():
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    g = load("uses_fallbacks").__globals__
    assert isinstance(g["fast_double"], JITFunction)
    assert g["fast_math"] is tl


def test_methods_and_closures_are_hoisted():
    from triton.runtime.jit import JITFunction

    method = load("Holder.kernel")
    assert isinstance(method, JITFunction)
    assert method.starting_line_number == line_of((FAKE / MIXED), "    def kernel(") - 1
    inner = load("make_kernel.<locals>.inner")
    assert isinstance(inner, JITFunction)
    assert inner.__globals__["LOCAL_BLOCK"] == 16
    # A method must not replace module-level names of its module.
    assert "kernel" not in inner.__globals__


def test_non_triton_decorators_are_dropped_without_importing_them():
    g = load("uses_decorated_helper_constant").__globals__
    assert g["CACHED_BLOCK"] == 32
    assert "some_missing_package" not in g


def test_third_party_import_is_real_when_a_constant_needs_it():
    import torch

    g = load("uses_torch_constant").__globals__
    assert g["FP8_MAX"] == torch.finfo(torch.float8_e4m3fn).max


@pytest.mark.parametrize(
    "qualname, name, needle, reason",
    [
        ("uses_undefined", "NOT_DEFINED_ANYWHERE", "NOT_DEFINED_ANYWHERE)", "not defined in vllm/kernels/mixed.py"),
        ("uses_platform", "current_platform", "from vllm.platforms import", "module vllm.platforms is not in the checkout"),
        ("make_kernel.uses_param", "scale", "def make_kernel(scale)", "parameter of the enclosing function make_kernel"),
    ],
)
def test_unresolvable_name_is_a_loader_error_naming_it(qualname, name, needle, reason):
    from tritriage.sandbox.loader import LoaderError

    with pytest.raises(LoaderError) as info:
        load(qualname)
    err = info.value
    assert err.name == name
    assert err.file == MIXED
    assert err.line == line_of(FAKE / MIXED, needle)
    assert reason in err.reason
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"{MIXED}:{err.line}: cannot resolve name '{name}' used by {qualname.split('.')[-1]}")
    # The same error comes back from the cache.
    with pytest.raises(LoaderError) as again:
        load(qualname)
    assert str(again.value) == msg


def test_error_names_the_path_from_kernel_to_the_failing_name():
    from tritriage.sandbox.loader import LoaderError

    with pytest.raises(LoaderError) as info:
        load("uses_platform")
    assert info.value.chain == ("uses_platform", "NUM_WARPS")
    assert "used by uses_platform via NUM_WARPS" in str(info.value)


def test_cached_failure_is_reported_from_each_users_side():
    from tritriage.sandbox.loader import LoaderError

    with pytest.raises(LoaderError):
        load("uses_platform")
    with pytest.raises(LoaderError) as info:
        load("uses_platform_directly")
    assert info.value.name == "current_platform"
    assert info.value.chain == ("uses_platform_directly",)


def test_loader_error_survives_pickling():
    import pickle

    from tritriage.sandbox.loader import LoaderError

    err = LoaderError("why", name="x", file="vllm/a.py", line=3, user="k")
    back = pickle.loads(pickle.dumps(err))
    assert (back.name, back.file, back.line, str(back)) == ("x", "vllm/a.py", 3, str(err))


@pytest.mark.parametrize(
    "rel, qualname, fragment, line",
    [
        (MIXED, "no_such_kernel", "no function 'no_such_kernel'", None),
        (MIXED, "Holder", "is a class", None),
        ("vllm/broken.py", "kernel", "does not parse", 9),
        ("vllm/missing.py", "kernel", "no such file", None),
    ],
)
def test_bad_file_or_qualname(rel, qualname, fragment, line):
    from tritriage.sandbox.loader import LoaderError

    with pytest.raises(LoaderError) as info:
        load(qualname, rel=rel)
    assert fragment in str(info.value)
    assert info.value.file == rel
    if line is not None:
        assert info.value.line == line


def test_fake_checkout_really_would_fail_if_run():
    # Guards the fixtures: if they stopped raising, the tests above would no
    # longer show that the loader skips module-level code.
    proc = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", str(FAKE / "vllm/a/b.py")],
        capture_output=True, text=True,
    )
    assert "vllm/a/b.py ran" in proc.stderr


# --------------------------------------------------------------------------
# compiling what was loaded (triton-ascend, no CANN needed)


def _compile_to_linalg(fn, signature, constants):
    """Compile for the NPU; the binary stage needs CANN and may fail only for that."""
    from triton.compiler.errors import MLIRCompilationError

    try:
        compile_npu(fn, signature, constants)
    except MLIRCompilationError as e:
        # Without CANN only the last stage may fail, and only for that reason.
        assert "ConvertLinalgRToBinary" in str(e), str(e)[-2000:]
        assert "ConvertTritonIRToLinalgIR" not in str(e)
        if not os.environ.get("ASCEND_HOME_PATH"):
            assert "ASCEND_HOME_PATH is not set" in str(e)
    cache = Path(os.environ["TRITON_CACHE_DIR"])
    ttir = sorted(cache.rglob(f"{fn.__name__}.ttir"))
    assert ttir and sorted(cache.rglob(f"{fn.__name__}.ttadapter")), "TTIR/linalg stages did not run"
    return ttir[0].read_text()


def test_compile_reaches_binary_stage_and_keeps_file_locations():
    fn = load("scaled_copy")
    ttir = _compile_to_linalg(fn, {"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32"}, {"BLOCK": 64, "EVEN": True})
    mixed = (FAKE / MIXED).resolve()
    b = (FAKE / "vllm/a/b.py").resolve()
    pid_line = line_of(mixed, "pid = tl.program_id(0)")
    assert f'loc("{mixed}":{pid_line}:' in ttir
    # The helper imported from another file is compiled from its own file.
    assert f'loc("{b}":{line_of(b, "return x * SCALE")}:' in ttir


def test_frontend_error_points_at_the_original_line():
    from triton.compiler.errors import CompilationError

    from tritriage.sandbox.loader import source_location

    fn = load("frontend_error")
    with pytest.raises(CompilationError) as info:
        compile_npu(fn, {"x_ptr": "*fp32"}, {"BLOCK": 32})
    node = info.value.node
    file, line, col = source_location(fn, node.lineno, node.col_offset)
    mixed = (FAKE / MIXED).resolve()
    assert file == str(mixed)
    assert line == line_of(mixed, "x.no_such_method()")
    assert linecache.getline(file, line)[col:].startswith("x.no_such_method")


def test_method_locations_account_for_indentation():
    from tritriage.sandbox.loader import source_location

    fn = load("Holder.kernel")
    # triton counts columns in the dedented source: the store is "at 3:4".
    assert fn.src.splitlines()[2].startswith("    tl.store(")
    file, line, col = source_location(fn, 3, 4)
    text = linecache.getline(file, line)
    assert text[col:].startswith("tl.store(")


# --------------------------------------------------------------------------
# real vLLM


def _jit_functions(root: Path) -> list[tuple[str, str]]:
    """(file, qualname) of every ``@triton.jit`` def, found independently of discover."""
    out = []

    def walk(node, stack, rel):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not isinstance(ch, ast.ClassDef) and any(
                    ast.unparse(d.func if isinstance(d, ast.Call) else d) == "triton.jit" for d in ch.decorator_list
                ):
                    out.append((rel, ".".join([*stack, ch.name])))
                walk(ch, [*stack, ch.name], rel)
            else:
                walk(ch, stack, rel)

    for path in sorted((root / "vllm").rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if "triton.jit" not in text:
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        walk(tree, [], path.relative_to(root).as_posix())
    return out


def _sweep(root: Path) -> dict:
    """Load every jit function of ``root``; run in a subprocess (see module docstring)."""
    import time

    from tritriage.sandbox.loader import LoaderError, load_kernel

    t = time.time()
    found = _jit_functions(root)
    ok, failures, crashes = 0, [], []
    for rel, qualname in found:
        try:
            load_kernel(root, rel, qualname)
            ok += 1
        except LoaderError as e:
            failures.append({"kernel": f"{rel}::{qualname}", "error": str(e), "reason": e.reason, "name": e.name})
        except Exception as e:  # a loader bug, not a kernel that cannot load
            crashes.append(f"{rel}::{qualname}: {type(e).__name__}: {e}")
    return {
        "total": len(found), "ok": ok, "failures": failures, "crashes": crashes,
        "seconds": time.time() - t,
        "vllm_modules": sorted(m for m in sys.modules if m == "vllm" or m.startswith("vllm.")),
    }


def _run_sweep(root: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, str(root)], capture_output=True, text=True, timeout=300,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(label: str, result: dict) -> None:
    share = result["ok"] / result["total"]
    print(f"\n{label}: {result['ok']}/{result['total']} loaded ({share:.1%}) in {result['seconds']:.1f}s")
    by_reason: dict[str, list[str]] = {}
    for f in result["failures"]:
        # Group by cause with the specific names blanked out.
        by_reason.setdefault(re.sub(r"'[^']*'", "'…'", f["reason"]), []).append(f["error"])
    for reason, errors in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(errors):3d} x {reason}")
        for e in errors[:3]:
            print(f"        {e}")


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_085_kernels_load(vllm085):
    result = _run_sweep(vllm085)
    _report("vLLM 0.8.5", result)
    assert result["total"] >= 55
    assert not result["crashes"], result["crashes"]
    assert result["vllm_modules"] == []
    assert result["ok"] / result["total"] >= 0.95
    for f in result["failures"]:
        assert f["name"], f  # every failure names what it could not bind


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_033_kernels_load(vllm033):
    result = _run_sweep(vllm033)
    _report("vLLM 0.33.0", result)
    assert result["total"] >= 850
    assert not result["crashes"], result["crashes"]
    assert result["vllm_modules"] == []
    assert result["ok"] / result["total"] >= 0.90
    assert result["seconds"] < 60


@pytest.mark.vllm
def test_prefix_prefill_loads_without_torch(vllm085):
    code = textwrap.dedent(
        """
        import sys
        from tritriage.sandbox.loader import load_kernel
        fn = load_kernel(sys.argv[1], "vllm/attention/ops/prefix_prefill.py", "_fwd_kernel")
        bad = sorted(m for m in sys.modules if m in ("torch", "vllm") or m.startswith(("torch.", "vllm.")))
        print(type(fn).__name__, bad)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(vllm085)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["JITFunction", "[]"]


def _prefix_prefill_spec(fn, in_precision):
    signature = {}
    for p in fn.params:
        if p.is_constexpr:
            continue
        if p.name in ("Q", "K", "V", "K_cache", "V_cache", "Out"):
            signature[p.name] = "*fp16"
        elif p.name in ("B_Loc", "B_Start_Loc", "B_Seqlen"):
            signature[p.name] = "*i32"
        elif p.name in ("k_scale", "v_scale"):
            signature[p.name] = "*fp32"
        elif p.name == "sm_scale":
            signature[p.name] = "fp32"
        else:
            assert p.name.startswith("stride_"), p.name
            signature[p.name] = "i32"
    # The values context_attention_fwd launches with (head size 128, block 16, x 8).
    constants = dict(
        x=8, stride_k_cache_bl=8, num_queries_per_kv=1, IN_PRECISION=in_precision, BLOCK_M=128,
        BLOCK_DMODEL=128, BLOCK_DMODEL_PADDED=128, BLOCK_SIZE=16, BLOCK_N=64, SLIDING_WINDOW=0,
        num_unroll_cache=4, num_unroll_request=1, SKIP_DECODE=False, MAX_Q_LEN=0, MAX_CTX_LEN=0,
    )
    return signature, constants


@pytest.mark.vllm
def test_prefix_prefill_compiles_past_frontend(vllm085):
    fn = load("_fwd_kernel", rel="vllm/attention/ops/prefix_prefill.py", root=vllm085)
    # 'ieee' is what vLLM passes for fp32 queries on Turing; see the next test for its default.
    ttir = _compile_to_linalg(fn, *_prefix_prefill_spec(fn, "ieee"))
    path = (vllm085 / "vllm/attention/ops/prefix_prefill.py").resolve()
    import triton

    # Inlined tl.* helpers keep their own locations inside triton's package.
    triton_dir = str(Path(triton.__file__).parent)
    locs = {f for f in re.findall(r'loc\("([^"]+)":\d+:\d+\)', ttir) if not f.startswith(triton_dir)}
    assert locs == {str(path)}


@pytest.mark.vllm
def test_prefix_prefill_default_precision_fails_in_frontend_at_its_line(vllm085):
    # vLLM's usual IN_PRECISION=None trips triton-ascend 3.2.0's frontend
    # (NPUOptions has no default_dot_input_precision).  That is a real finding,
    # and it shows a frontend location mapped back into the vLLM file.
    from triton.compiler.errors import CompilationError

    from tritriage.sandbox.loader import source_location

    fn = load("_fwd_kernel", rel="vllm/attention/ops/prefix_prefill.py", root=vllm085)
    with pytest.raises(CompilationError) as info:
        compile_npu(fn, *_prefix_prefill_spec(fn, None))
    assert "default_dot_input_precision" in str(info.value)
    file, line, col = source_location(fn, info.value.node.lineno, info.value.node.col_offset)
    assert file.endswith("vllm/attention/ops/prefix_prefill.py")
    assert linecache.getline(file, line)[col:].startswith("tl.dot(q, k")
    print(f"\nprefix_prefill _fwd_kernel, IN_PRECISION=None: {Path(file).name}:{line}:{col}: "
          f"{info.value.error_message}")


if __name__ == "__main__":
    print(json.dumps(_sweep(Path(sys.argv[1]))))


def _platform_tree(tmp_path, body):
    (tmp_path / "vllm" / "platforms").mkdir(parents=True)
    (tmp_path / "vllm" / "__init__.py").write_text("")
    # As in vLLM: current_platform exists only through the module's __getattr__.
    (tmp_path / "vllm" / "platforms" / "__init__.py").write_text(
        "def __getattr__(name):\n    raise RuntimeError('vLLM resolves the platform at run time')\n")
    (tmp_path / "vllm" / "k.py").write_text(
        "import torch\nimport triton\nimport triton.language as tl\n"
        "from vllm.platforms import current_platform\n\n" + body)
    return tmp_path


def test_run_time_platform_names_get_the_data_files_stand_in(tmp_path, capfd):
    from tritriage.sandbox.loader import clear_cache, load_kernel

    import torch

    root = _platform_tree(tmp_path, (
        "FP8 = current_platform.fp8_dtype()\n"
        "FP8_MAX = torch.finfo(FP8).max\n"
        "WARPS = 8 if current_platform.is_rocm() else 4\n\n"
        "@triton.jit\ndef k(x_ptr):\n    tl.store(x_ptr, FP8_MAX + WARPS)\n"))
    clear_cache()
    fn = load_kernel(root, "vllm/k.py", "k")
    assert fn.__globals__["FP8_MAX"] == torch.finfo(torch.float8_e4m3fn).max
    assert fn.__globals__["WARPS"] == 4  # not ROCm
    # The compile log says a stand-in was used.
    assert "vllm.platforms.current_platform is bound only at run time" in capfd.readouterr().err


def test_a_stand_in_without_the_asked_attribute_is_a_loader_error(tmp_path):
    from tritriage.sandbox.loader import LoaderError, clear_cache, load_kernel

    root = _platform_tree(tmp_path, (
        "CAP = current_platform.something_new()\n\n"
        "@triton.jit\ndef k(x_ptr):\n    tl.store(x_ptr, CAP)\n"))
    clear_cache()
    with pytest.raises(LoaderError) as info:
        load_kernel(root, "vllm/k.py", "k")
    assert "runtime_standins.json" in str(info.value)

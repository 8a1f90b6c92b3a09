"""The loader with other source trees (a plugin's jit helpers from vLLM) and the
target part's device properties, on tiny trees written per test and compiled
for real through the triton-ascend frontend."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

STANDINS = Path(__file__).resolve().parents[2] / "tritriage" / "sandbox" / "runtime_standins.json"


@pytest.fixture(autouse=True)
def _fresh_loader():
    from tritriage.sandbox import loader

    loader.clear_cache()
    yield
    loader.clear_cache()


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def trees(tmp_path):
    """A plugin whose kernel calls a jit helper of vLLM, and vLLM's tree."""
    plugin, host = tmp_path / "plugin", tmp_path / "vllm-src"
    write(plugin, "plug/__init__.py", "raise RuntimeError('a package __init__ never runs')\n")
    kernel = write(plugin, "plug/k.py", """\
        import triton
        import triton.language as tl
        from vllm.worker.gpu.helpers import _load_ptr

        @triton.jit
        def kernel(x_ptr, y_ptr, N: tl.constexpr):
            offs = tl.arange(0, N)
            tl.store(y_ptr + offs, _load_ptr(x_ptr, offs))
        """)
    write(host, "vllm/__init__.py", "raise RuntimeError('vLLM is never imported')\n")
    write(host, "vllm/worker/__init__.py", "")
    write(host, "vllm/worker/gpu/__init__.py", "")
    write(host, "vllm/worker/gpu/helpers.py", """\
        import torch_that_is_not_installed
        import triton
        import triton.language as tl

        @triton.jit
        def _load_ptr(p, offs):
            return tl.load(p + offs)
        """)
    return plugin, host, kernel


def test_a_missing_vllm_helper_is_a_loader_error_at_the_kernels_import(trees):
    from tritriage.sandbox.loader import LoaderError, load_kernel

    plugin, _, kernel = trees
    with pytest.raises(LoaderError) as e:
        load_kernel(plugin, "plug/k.py", "kernel")
    line = next(i for i, t in enumerate(kernel.read_text().splitlines(), 1) if "_load_ptr" in t)
    assert f"plug/k.py:{line}:" in str(e.value)
    assert "--with" in str(e.value)


def test_helpers_from_another_tree_are_sliced_said_and_compile(trees, capsys):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tritriage.sandbox.loader import load_kernel

    plugin, host, _ = trees
    fn = load_kernel(plugin, "plug/k.py", "kernel", roots=[host])
    # helpers.py's unrelated import of a missing package was not run: only _load_ptr was.
    from triton.compiler.errors import MLIRCompilationError

    try:
        triton.compile(ASTSource(fn, {"x_ptr": "*fp32", "y_ptr": "*fp32"}, {"N": 16}),
                       target=GPUTarget("npu", "Ascend910B3", 0))
    except MLIRCompilationError as e:
        # Without CANN only the binary stage may fail, and only for that reason.
        assert "ConvertLinalgRToBinary" in str(e) and "ConvertTritonIRToLinalgIR" not in str(e), str(e)[-2000:]
    err = capsys.readouterr().err
    assert f"from another source tree: vllm.worker.gpu.helpers ({host.resolve()})" in err


def test_a_package_directory_gives_only_its_own_name(trees):
    from tritriage.sandbox.loader import load_kernel

    plugin, host, _ = trees
    assert load_kernel(plugin, "plug/k.py", "kernel", roots=[host / "vllm"]) is not None


@pytest.mark.parametrize("arch", ["Ascend910B1", "Ascend910B3"])
def test_core_counts_at_import_are_the_target_parts(tmp_path, arch, capsys):
    from tritriage.sandbox.loader import load_kernel

    write(tmp_path, "plug/__init__.py", "")
    write(tmp_path, "plug/k.py", """\
        import triton
        import triton.language as tl

        def get_vectorcore_num():
            raise RuntimeError("asks the NPU driver")

        CORES = get_vectorcore_num()

        @triton.jit
        def kernel(y_ptr):
            tl.store(y_ptr + tl.program_id(0), CORES)
        """)
    fn = load_kernel(tmp_path, "plug/k.py", "kernel", arch=arch)
    expected = json.loads(STANDINS.read_text())["devices"][arch]["num_vectorcore"]
    assert fn.__globals__["CORES"] == expected
    assert f"get_vectorcore_num() -> {expected} ({arch} num_vectorcore)" in capsys.readouterr().err

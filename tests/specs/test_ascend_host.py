"""What an Ascend host computes where the checkout's own Python is evaluated."""

from __future__ import annotations

import shutil
from pathlib import Path

from tritriage.discover.inventory import discover
from tritriage.discover.platforms import guard_platform
from tritriage.sandbox.loader import clear_cache, load_kernel
from tritriage.specs.catalog import check_catalog, load_catalog
from tritriage.specs.infer import infer_spec

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def test_pdl_flags_are_false_as_on_ascend(vllm033):
    inv = discover(vllm033)
    k = next(k for k in inv.kernels if k.id.endswith("lora_shrink_op._lora_shrink_kernel"))
    spec = infer_spec(k, inv, vllm033)
    assert spec.constexprs["USE_GDC"] is False and spec.constexprs["launch_pdl"] is False
    assert "evaluated as Ascend: current_platform.is_cuda() -> False" in spec.rules["USE_GDC"]


def test_catalog_value_ascend_never_passes_is_flagged(vllm085, tmp_path):
    inv = discover(vllm085)
    assert not [n for n in check_catalog(load_catalog([KERNELS]), inv, vllm085) if "Ascend" in n]
    shutil.copytree(KERNELS, tmp_path / "k")
    f = tmp_path / "k/vllm/attention/ops/prefix_prefill.yaml"
    f.write_text(f.read_text().replace("IN_PRECISION: null", "IN_PRECISION: ieee"))
    notes = [n for n in check_catalog(load_catalog([tmp_path / "k"]), inv, vllm085) if "Ascend" in n]
    assert any("_fwd_kernel spec fp16-d128: IN_PRECISION: 'ieee'" in n and "(None," in n for n in notes), notes


def test_vendor_only_kernels_are_marked(vllm033):
    inv = discover(vllm033)
    entries = [k for k in inv.kernels if k.kind == "entry"]
    vendor = [k for k in entries if k.platform_only]
    assert 200 <= len(vendor) < len(entries) // 2
    amd = [k for k in vendor if "/amd/" in k.file]
    assert amd and all(k.platform_only == "rocm" and "AMD" in k.platform_reason for k in amd)
    assert not any(k.platform_only for k in entries if k.file.startswith("vllm/lora/"))


def test_guards_in_three_valued_logic():
    assert guard_platform("current_platform.is_rocm() and x > 1") == "rocm"
    assert guard_platform("not current_platform.is_rocm()") is None
    assert guard_platform("BT == 64 and not IS_INTEL") is None
    assert guard_platform("is_hip() or x") is None


def test_loader_sees_an_npu_host(tmp_path, capfd):
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "utils.py").write_text(
        "import torch\n"
        "def is_npu_available():\n    return False  # this machine has none\n"
        "DEVICE = 'npu' if torch.npu.is_available() else 'cpu'\n")
    (pkg / "k.py").write_text(
        "import triton\nimport triton.language as tl\n"
        "from proj.utils import is_npu_available, DEVICE\n"
        "if is_npu_available():\n"
        "    from triton.language.extra.cann.extension import extract_slice\n"
        "else:\n"
        "    from triton.language.extra.cuda.libdevice import tanh as extract_slice\n"
        "ON_NPU: tl.constexpr = DEVICE == 'npu'\n"
        "@triton.jit\n"
        "def k(X, BLOCK: tl.constexpr):\n"
        "    x = tl.load(X + tl.arange(0, BLOCK)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :])\n"
        "    if ON_NPU:\n"
        "        x = extract_slice(x, (0, 0), (BLOCK // 2, BLOCK), (1, 1))\n"
        "    tl.store(X + tl.arange(0, BLOCK // 2)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :], x)\n")
    clear_cache()
    fn = load_kernel(tmp_path, "proj/k.py", "k")
    err = capfd.readouterr().err
    import triton.language as tl
    assert fn.__globals__["extract_slice"] is tl.extract_slice
    assert fn.__globals__["ON_NPU"] == True  # noqa: E712 - a tl.constexpr
    assert "evaluated as Ascend: is_npu_available() -> True" in err
    assert "evaluated as Ascend: torch.npu.is_available() -> True" in err
    # A second load of the cached kernel still says what it rests on.
    load_kernel(tmp_path, "proj/k.py", "k")
    assert "evaluated as Ascend: is_npu_available() -> True" in capfd.readouterr().err

"""What an Ascend host computes where the checkout's own Python is evaluated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def test_launch_sites_get_the_target_parts_core_counts(tmp_path):
    """A grid or constexpr sized by the device's core count takes the --arch part's count."""
    import json

    from tritriage.specs import constexprs

    pkg = tmp_path / "plug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "k.py").write_text(
        "import torch\nimport triton\nimport triton.language as tl\n"
        "from plug.utils import get_vectorcore_num\n\n"
        "@triton.jit\ndef kernel(y_ptr, CORES: tl.constexpr, AIC: tl.constexpr):\n"
        "    tl.store(y_ptr + tl.arange(0, CORES), AIC)\n\n"
        "def launch(y):\n"
        "    cores = get_vectorcore_num()\n"
        "    aic = triton.runtime.driver.active.utils.get_device_properties(torch.npu.current_device())"
        "[\"num_aicore\"]\n"
        "    kernel[(cores,)](y, CORES=cores, AIC=aic)\n")
    (pkg / "utils.py").write_text(
        "_N = -1\n\ndef get_vectorcore_num():\n    assert _N > 0, 'init_device_properties first'\n    return _N\n")
    devices = json.loads((Path(constexprs.__file__).parents[1] / "sandbox" / "runtime_standins.json")
                         .read_text())["devices"]
    inv = discover(tmp_path)
    k = next(k for k in inv.kernels if k.name == "kernel")
    try:
        for arch in ("Ascend910B1", "Ascend910B4"):
            constexprs.use_arch(arch)
            spec = infer_spec(k, inv, tmp_path)
            assert spec.constexprs["CORES"] == devices[arch]["num_vectorcore"]
            assert spec.constexprs["AIC"] == devices[arch]["num_aicore"]
            assert f"({arch})" in spec.rules["CORES"]
    finally:
        constexprs.use_arch(None)


def test_a_file_importing_a_vendor_only_package_is_not_used_on_ascend(tmp_path):
    # A module-level `import cutlass` fails on an Ascend host, so nothing in the
    # file runs there; the same import under try/if, or a package of the
    # checkout's own named like one, leaves the kernels in.
    kernel = ("import triton\nimport triton.language as tl\n\n@triton.jit\ndef {name}(x_ptr):\n"
              "    tl.store(x_ptr, 1)\n\ndef launch(x):\n    {name}[(1,)](x)\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/cute.py").write_text("from cutlass import cute\n" + kernel.format(name="k_cute"))
    (tmp_path / "pkg/maybe.py").write_text("try:\n    import cutlass\nexcept ImportError:\n    cutlass = None\n"
                                           + kernel.format(name="k_maybe"))
    (tmp_path / "pkg/plain.py").write_text(kernel.format(name="k_plain"))
    kinds = {k.name: k for k in discover(tmp_path).kernels}
    assert kinds["k_cute"].platform_only == "cuda"
    assert "imports cutlass" in kinds["k_cute"].platform_reason and "pkg/cute.py:1" in kinds["k_cute"].platform_reason
    assert kinds["k_maybe"].platform_only is None and kinds["k_plain"].platform_only is None
    # `tritriage specs` lists it for review and says an Ascend launch never uses it.
    out = subprocess.run([sys.executable, "-m", "tritriage", "specs", str(tmp_path), "--no-validate", "--json"],
                         capture_output=True, text=True, env={**os.environ, "TRITRIAGE_HOME": str(tmp_path / "home")})
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["k_cute"]["platform_only"] == "cuda" and "cutlass" in rows["k_cute"]["platform_reason"]
    assert "platform_only" not in rows["k_plain"]
    (tmp_path / "cutlass").mkdir()  # the checkout's own `cutlass` package
    (tmp_path / "cutlass/__init__.py").write_text("")
    assert not any(k.platform_only for k in discover(tmp_path, use_cache=False).kernels)


def test_every_pdl_flag_a_launch_computes_is_false_on_ascend(vllm033):
    # PDL / GDC are Hopper+ launch features: an Ascend launch never asks for them.
    inv = discover(vllm033)
    flags = {"USE_PDL", "USE_GDC", "LAUNCH_PDL", "PDL", "launch_pdl"}
    seen = 0
    for k in inv.kernels:
        if k.kind != "entry" or k.platform_only or not flags & {p.name for p in k.params}:
            continue
        spec = infer_spec(k, inv, vllm033)
        for name in flags & set(spec.constexprs):
            seen += 1
            assert spec.constexprs[name] is False, (k.id, name, spec.rules[name])
    assert seen >= 20

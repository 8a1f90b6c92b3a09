"""Helpers several test packages share (not fixtures: plain functions).

A module of its own: ``conftest`` is a name two folders of tests/ use.
"""

from __future__ import annotations

from pathlib import Path


def real_adapter() -> str:
    """The installed triton-ascend's triton-adapter-opt (stand-ins fall back to it)."""
    import triton

    return str(Path(triton.__file__).parent / "backends" / "ascend" / "triton-adapter-opt")


def fixture_specs(kernel, inventory, root):
    """The engine fixture kernels' specs: *_ptr parameters are fp32 pointers, the rest i32."""
    from tritriage.model import Spec

    sig = {p.name: ("*fp32" if p.name.endswith("_ptr") else "i32") for p in kernel.params if not p.constexpr}
    return [Spec(kernel=kernel.id, name="default", source="catalog", signature=sig, constexprs={"BLOCK": 128})]


def verdicts(doc: dict) -> dict:
    """What a user compares between two `report --json` outputs: per kernel,
    status, error class and fingerprint, and each spec's outcome."""
    out = {}
    for k in doc["kernels"]:
        e = k.get("error") or {}
        out[k["id"]] = (k["status"], e.get("class"), e.get("fingerprint"),
                        sorted((s["name"], s["outcome"]) for s in k["specs"]))
    return out

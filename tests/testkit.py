"""Helpers several test packages share (not fixtures: plain functions).

A module of its own: ``conftest`` is a name two folders of tests/ use.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path


def write_source(root: Path, rel: str, text: str) -> None:
    """``text`` (dedented) as ``root/rel``, its folders made: a checkout built in a test."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))


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


# --------------------------------------------------------------------------
# scans disturbed from outside (tests/reliability/test_faults.py, bench/bench_faults.py)


def default_sigint() -> None:
    # A process started in the background (nohup, CI) inherits SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt: give the scans
    # a terminal's default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def env_for(home: Path, cann: bool = False) -> dict:
    """The environment of a scan writing to ``home``; without CANN unless asked."""
    env = dict(os.environ, TRITRIAGE_HOME=str(home), PYTHONUNBUFFERED="1")
    if not cann:
        env.pop("ASCEND_HOME_PATH", None)
    return env


def stored_verdicts(home: Path, run_id: int | None = None) -> tuple[int, str, dict]:
    """The run's id, status and (kernel, spec) -> (outcome, failed stage,
    class, fingerprint): what the report shows of each pair (latest run by default)."""
    from tritriage.store import Store

    with Store.open(home / "tritriage.db") as store:
        run = store.run(run_id) if run_id else store.latest_run()
        rows = {(r.kernel, r.spec_name): (r.outcome, r.failed_stage, r.diagnosis_class,
                                          r.diagnosis.fingerprint if r.diagnosis else None)
                for r in store.results(run.id)}
        return run.id, run.status, rows


def worker_pids(parent: int) -> list[int]:
    """The compile workers ``parent`` started (from /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"tritriage.sandbox.worker" in cmd:
            pids.append(int(d.name))
    return pids

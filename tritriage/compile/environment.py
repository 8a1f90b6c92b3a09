"""What the compile environment offers, checked once before a scan (``doctor``).

A problem that would fail every kernel (no triton-ascend in the chosen
interpreter, an adapter binary that cannot run, an SoC name triton-ascend does
not know) is found here and reported once, instead of as hundreds of identical
compile failures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritriage.compile.pool import PACKAGE_PARENT
from tritriage.errors import UserError
from tritriage.model import STAGES

# Besides the SoC names triton-ascend lists, the family name the issue asks
# for as a default: the 910B stages only look at the prefix.
FAMILY_ARCHS = ("Ascend910B",)
PROBE_TIMEOUT = 60.0
TORCH_NPU_TIMEOUT = 60.0


@dataclass(frozen=True)
class EnvReport:
    python: str
    python_version: str | None = None
    triton_ascend_version: str | None = None
    triton_version: str | None = None
    triton_path: str | None = None
    triton_error: str | None = None
    adapter: str | None = None
    adapter_executable: bool = False
    adapter_runs: bool | None = None
    adapter_version: str | None = None
    cann_home: str | None = None
    bishengir: str | None = None
    cann_version: str | None = None
    cann_available: bool = False
    cann_reason: str = ""
    archs: tuple[str, ...] = ()
    arch: str | None = None
    torch_npu: str | None = None  # version, or None when not importable
    npu_available: bool | None = None
    torch_npu_error: str | None = None
    problems: tuple[str, ...] = ()  # each would fail every compile
    warnings: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages a scan runs here."""
        return STAGES if self.cann_available else tuple(s for s in STAGES if s != "binary")

    @property
    def compiler_version(self) -> str:
        """Part of the result cache key."""
        return f"triton-ascend {self.triton_ascend_version or self.triton_version}; cann {self.cann_version or ('present' if self.cann_available else 'absent')}"

    @property
    def cann_label(self) -> str | None:
        """What the store records for CANN: its version, 'present', or None when absent."""
        if not self.cann_available:
            return None
        return self.cann_version or "present"

    def summary(self) -> str:
        """One line for the top of a scan."""
        if not self.triton_ascend_version and not self.triton_version:
            return f"{self.python}: no triton-ascend"
        cann = f"CANN {self.cann_version or 'present'}" if self.cann_available else "no CANN (binary stage not run)"
        return (f"triton-ascend {self.triton_ascend_version or self.triton_version} ({self.python}), "
                f"target {self.arch}, {cann}; stages: {', '.join(self.stages)}")

    def to_dict(self) -> dict:
        import dataclasses
        d = dataclasses.asdict(self)
        d["stages"] = list(self.stages)
        d["ok"] = self.ok
        return d


def worker_env(python: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _probe(python: str) -> dict:
    try:
        proc = subprocess.run([python, "-m", "tritriage.sandbox.worker", "--probe"], capture_output=True,
                              text=True, env=worker_env(python), timeout=PROBE_TIMEOUT)
    except FileNotFoundError:
        raise UserError(f"--python {python}: no such interpreter") from None
    except PermissionError:
        raise UserError(f"--python {python}: not executable") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"--python {python}: importing triton took more than {PROBE_TIMEOUT:g} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UserError(f"--python {python}: cannot run the environment probe: {' / '.join(tail) or proc.returncode}")
    return json.loads(lines[-1])


def _adapter_version(adapter: str) -> tuple[bool, str | None, str | None]:
    try:
        proc = subprocess.run([adapter, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, None, f"{adapter} does not run: {e}"
    if proc.returncode != 0:
        return False, None, f"{adapter} --version exited with status {proc.returncode}: {proc.stderr.strip()[:200]}"
    version = next((ln.strip() for ln in proc.stdout.splitlines() if "version" in ln.lower()), None)
    return True, version, None


def _torch_npu(python: str) -> tuple[str | None, bool | None, str | None]:
    code = ("import json\n"
            "try:\n"
            "    import torch, torch_npu\n"
            "except Exception as e:\n"
            "    print(json.dumps({'error': f'{type(e).__name__}: {e}'}))\n"
            "else:\n"
            "    ok = bool(torch.npu.is_available())\n"
            "    print(json.dumps({'version': getattr(torch_npu, '__version__', '?'), 'npu': ok}))\n")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=TORCH_NPU_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, None, f"importing torch_npu took more than {TORCH_NPU_TIMEOUT:g} s"
    except OSError as e:
        return None, None, str(e)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return None, None, (proc.stderr.strip().splitlines() or ["no answer"])[-1]
    data = json.loads(lines[-1])
    if "error" in data:
        return None, None, data["error"]
    return data["version"], data["npu"], None


def check_environment(python: str | None = None, *, arch: str = "Ascend910B", adapter: str | None = None,
                      check_torch_npu: bool = False) -> EnvReport:
    """Probe ``python`` (default: this interpreter) for what a scan needs.

    ``adapter`` replaces triton-adapter-opt (stand-ins in tests).  The
    torch_npu check imports torch (over a second), so only ``doctor`` asks.
    """
    python = python or sys.executable
    info = _probe(python)
    problems, warnings = [], []
    if not info.get("triton"):
        problems.append(f"triton-ascend is not importable in {python}: {info.get('triton_error')}"
                        f" (pip install triton-ascend, or point --python at an interpreter that has it)")
    elif not info.get("backend_ok"):
        problems.append(f"triton in {python} ({info.get('triton')}) has no Ascend backend: "
                        f"{info.get('triton_error')} (is it triton-ascend?)")
    adapter_path = adapter or info.get("adapter")
    adapter_exec = bool(adapter_path) and os.path.isfile(adapter_path) and os.access(adapter_path, os.X_OK)
    adapter_runs, adapter_version = None, None
    if info.get("triton"):
        if not adapter_exec:
            problems.append(f"the adapter {adapter_path} is missing or not executable (chmod +x it, or reinstall triton-ascend)")
        elif adapter is None:
            adapter_runs, adapter_version, err = _adapter_version(adapter_path)
            if not adapter_runs:
                problems.append(err)
    archs = tuple(info.get("archs") or ())
    if info.get("triton") and arch not in archs and arch not in FAMILY_ARCHS:
        known = ", ".join(FAMILY_ARCHS + archs) if archs else ", ".join(FAMILY_ARCHS)
        problems.append(f"unknown SoC target {arch!r}; triton-ascend knows: {known}")
    cann = info.get("cann") or {}
    if not cann.get("available"):
        warnings.append(f"binary stage will not run: {cann.get('reason')}")
    torch_npu = npu = torch_err = None
    if check_torch_npu:
        torch_npu, npu, torch_err = _torch_npu(python)
    return EnvReport(
        python=python,
        python_version=info.get("python_version"),
        triton_ascend_version=info.get("triton_ascend_version"),
        triton_version=info.get("triton_version"),
        triton_path=info.get("triton"),
        triton_error=info.get("triton_error"),
        adapter=adapter_path,
        adapter_executable=adapter_exec,
        adapter_runs=adapter_runs,
        adapter_version=adapter_version,
        cann_home=cann.get("home"),
        bishengir=cann.get("bishengir"),
        cann_version=cann.get("version"),
        cann_available=bool(cann.get("available")),
        cann_reason=cann.get("reason") or "",
        archs=archs,
        arch=arch,
        torch_npu=torch_npu,
        npu_available=npu,
        torch_npu_error=torch_err,
        problems=tuple(problems),
        warnings=tuple(warnings),
        info=info,
    )


def require(report: EnvReport) -> None:
    """Stop before compiling anything when every compile would fail."""
    if report.problems:
        raise UserError("cannot compile here: " + "; ".join(report.problems))


def doctor_lines(report: EnvReport) -> list[tuple[str, str, str]]:
    """(status, what, detail) rows for ``tritriage doctor``: status is ok | warn | fail."""
    rows = []
    rows.append(("ok", "python", f"{report.python} ({report.python_version})"))
    if report.triton_path:
        rows.append(("ok" if report.triton_ascend_version else "warn", "triton-ascend",
                     f"{report.triton_ascend_version or 'not found by pip metadata; triton ' + str(report.triton_version)}"
                     f" at {report.triton_path}"))
    else:
        rows.append(("fail", "triton-ascend", report.triton_error or "not importable"))
    if report.adapter:
        detail = report.adapter + ("" if report.adapter_executable else " (not executable)")
        if report.adapter_version:
            detail += f" [{report.adapter_version}]"
        rows.append(("ok" if report.adapter_executable and report.adapter_runs is not False else "fail",
                     "triton-adapter-opt", detail))
    arch_ok = not any("SoC target" in p for p in report.problems)
    rows.append(("ok" if arch_ok else "fail", "target", f"{report.arch}"
                 + ("" if arch_ok else f" (known: {', '.join(FAMILY_ARCHS + report.archs)})")))
    if report.cann_available:
        rows.append(("ok", "CANN", f"{report.cann_home} (version {report.cann_version or 'unknown'}), "
                                   f"bishengir-compile at {report.bishengir}"))
    else:
        rows.append(("warn", "CANN", report.cann_reason))
    if report.torch_npu:
        rows.append(("ok" if report.npu_available else "warn", "torch_npu",
                     f"{report.torch_npu}, NPU {'visible' if report.npu_available else 'not visible'}"))
    elif report.torch_npu_error is not None:
        rows.append(("warn", "torch_npu", f"not usable: {report.torch_npu_error}"))
    rows.append(("ok" if report.ok else "fail", "stages a scan runs",
                 ", ".join(report.stages) + ("" if report.cann_available else " (binary: not run, no CANN)")))
    return rows


def git_commit(path: str | Path) -> str | None:
    """The checkout's commit, if it is a git work tree."""
    try:
        proc = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    commit = proc.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")

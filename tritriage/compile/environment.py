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
from tritriage.model import DEFAULT_ARCH, STAGES

# Besides the SoC names triton-ascend lists, the family name the issue asks
# for as a default: the 910B stages only look at the prefix.
FAMILY_ARCHS = ("Ascend910B",)
# (triton-ascend, bishengir-compile) versions released together.  Others work
# for the most part (3.2.0 with ascendnpu-ir 1.2.0 does on vLLM's kernels), but
# a failure that comes from the pairing is then the environment's.
KNOWN_PAIRS = {("3.2.0", "1.1.0")}
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
    # How the binary stage runs here (``stages.binary_plan``): mode cann,
    # bishengir (PyPI's bishengir-compile, hivmc stood in for) or None.
    binary: dict = field(default_factory=dict)
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
        """The stages a scan runs here (never launch: a scan compiles only)."""
        mode = self.binary.get("mode")
        upto = "hivmc" if mode == "cann" else "binary" if mode else "linalg"
        return STAGES[:STAGES.index(upto) + 1]

    @property
    def binary_label(self) -> str:
        """Which compiler runs the binary stage, in a few words."""
        b = self.binary
        if not b.get("mode"):
            return f"not run: {b.get('reason') or self.cann_reason}"
        return f"bishengir-compile {b.get('version') or '?'} ({b.get('source') or b.get('bishengir')})"

    @property
    def compilers(self) -> dict:
        """Which compiler ran each stage, for the run record and the report."""
        ta = f"triton-ascend {self.triton_ascend_version or self.triton_version}"
        binary = self.binary_label
        if self.binary.get("mode") == "cann":
            hivmc = f"CANN {self.cann_version or ''}".strip() + " (inside bishengir-compile)"
        else:
            hivmc = "not run: needs CANN" + ("; a stand-in answered bishengir-compile" if self.binary.get("mode")
                                             else "")
        return {"frontend": ta, "ttir": ta, "linalg": f"triton-adapter-opt ({ta})", "binary": binary,
                "hivmc": hivmc, "launch": "not run: a scan compiles only"}

    @property
    def compiler_version(self) -> str:
        """Part of the result cache key."""
        return (f"triton-ascend {self.triton_ascend_version or self.triton_version}; "
                f"cann {self.cann_version or ('present' if self.cann_available else 'absent')}; "
                f"binary {self.binary.get('mode')} {self.binary.get('version')} {self.binary.get('source')}")

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
        if self.cann_available:
            cann = f"CANN {self.cann_version or 'present'}"
        elif self.binary.get("mode"):
            cann = f"no CANN: binary stage on {self.binary_label}, hivmc not run"
        else:
            cann = f"no CANN, binary stage not run ({self.binary.get('reason') or self.cann_reason})"
        return (f"triton-ascend {self.triton_ascend_version or self.triton_version} ({self.python}), "
                f"target {self.arch}, {cann}; stages: {', '.join(self.stages)}")

    def to_dict(self) -> dict:
        import dataclasses
        d = dataclasses.asdict(self)
        d["stages"] = list(self.stages)
        d["ok"] = self.ok
        return d


def worker_env(python: str, bishengir: str | None = None) -> dict:
    env = dict(os.environ)
    if bishengir:
        env["TRITRIAGE_BISHENGIR"] = bishengir
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _stamps(info) -> list:
    """Size and modification time of every file or directory the probe's
    answer names: a reinstall or an upgrade changes them."""
    out = []
    for value in (info.values() if isinstance(info, dict) else info):
        if isinstance(value, (dict, list)):
            out.extend(_stamps(value))
        elif isinstance(value, str) and value.startswith(os.sep):
            for path in (value, os.path.join(value, "__init__.py")):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append([path, st.st_size, st.st_mtime_ns])
    return out


def _probe(python: str, bishengir: str | None = None) -> dict:
    """What ``python`` can compile with; importing triton costs most of a
    second, so the answer is kept while nothing it depends on changed."""
    from tritriage.cache import probe_key
    from tritriage.paths import cache_dir

    path = cache_dir() / f"probe-{probe_key(python, bishengir)}.json"
    try:
        saved = json.loads(path.read_text())
        if saved["stamps"] == _stamps(saved["info"]):
            return saved["info"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    info = _run_probe(python, bishengir)
    if info.get("triton"):  # a broken environment is probed again next time
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"info": info, "stamps": _stamps(info)}))
            os.replace(tmp, path)
        except OSError:
            pass
    return info


def _run_probe(python: str, bishengir: str | None = None) -> dict:
    try:
        proc = subprocess.run([python, "-m", "tritriage.sandbox.worker", "--probe"], capture_output=True,
                              text=True, env=worker_env(python, bishengir), timeout=PROBE_TIMEOUT)
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


def check_environment(python: str | None = None, *, arch: str = DEFAULT_ARCH, adapter: str | None = None,
                      check_torch_npu: bool = False, bishengir: str | None = None) -> EnvReport:
    """Probe ``python`` (default: this interpreter) for what a scan needs.

    ``adapter`` replaces triton-adapter-opt (stand-ins in tests).  The
    torch_npu check imports torch (over a second), so only ``doctor`` asks.
    """
    python = python or sys.executable
    info = _probe(python, bishengir)
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
    binary = info.get("binary") or {"mode": None, "reason": cann.get("reason")}
    if bishengir and bishengir != "none" and not binary.get("mode"):
        problems.append(binary.get("reason") or f"--bishengir {bishengir}: unusable")
    elif not binary.get("mode"):
        warnings.append(f"binary stage will not run: {binary.get('reason')}")
    elif binary.get("mode") == "bishengir":
        warnings.append("hivmc and launch will not run: no CANN (the binary stage runs on "
                        f"bishengir-compile {binary.get('version') or '?'} from {binary.get('source')})")
        pair = (info.get("triton_ascend_version"), binary.get("version"))
        if pair not in KNOWN_PAIRS:
            warnings.append(f"triton-ascend {pair[0]} and bishengir-compile {pair[1]} are not a released pair: "
                            "a binary-stage failure that comes from the pairing is an environment verdict")
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
        binary=binary,
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
    b = report.binary
    rows.append(("ok" if b.get("mode") else "warn", "binary stage",
                 f"{report.binary_label}" + (f" at {b.get('bishengir')}" if b.get("mode") else "")))
    if b.get("mode") == "bishengir":
        rows.append(("warn", "hivmc", "not run: CANN's ISA code generator is not installed; a stand-in answers "
                                      "bishengir-compile's call and makes no object file"))
    if report.torch_npu:
        rows.append(("ok" if report.npu_available else "warn", "torch_npu",
                     f"{report.torch_npu}, NPU {'visible' if report.npu_available else 'not visible'}"))
    elif report.torch_npu_error is not None:
        rows.append(("warn", "torch_npu", f"not usable: {report.torch_npu_error}"))
    missing = [s for s in STAGES if s not in report.stages]
    rows.append(("ok" if report.ok else "fail", "stages a scan runs",
                 ", ".join(report.stages) + (f" (not run: {', '.join(missing)})" if missing else "")))
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

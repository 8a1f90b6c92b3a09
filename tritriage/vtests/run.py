"""Run vLLM's test commands and turn their output into per-case verdicts.

A command runs as ``<python> -m pytest <its arguments>`` in the checkout, in
its own process group (a timeout kills every process it started), with
pytest writing JUnit XML: one ``testcase`` per test, collection errors
included, each with its captured stdout/stderr.  That XML, not the console
text, is what gets split into cases; each failure's text (traceback plus
captured output, where torch_npu's "fall back to run on the CPU" warning
lands) goes through ``tritriage.classify``.

Before anything runs, ``check_preconditions`` asks the chosen interpreter,
once, whether ``import vllm`` works from the checkout and whether the device
is there; when it is not, nothing runs and every command is "not run" with
that reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tritriage.vtests.mapping import pytest_args, split_command, command_paths
from tritriage.model import Diagnosis, TestResult

DEVICES = ("npu", "cuda", "cpu")
PROBE_TIMEOUT = 180.0  # import vllm pulls in torch, transformers...: slow, not endless
OUTPUT_CAP = 20_000  # characters of one case's text kept in the store
LOG_READ_CAP = 4 << 20  # bytes of a command's console output read back

# Asks the interpreter what a test run would find: run with cwd = the
# checkout, so that "import vllm" resolves the way it does under pytest there.
_PROBE = r"""
import json, sys
out = {"python": sys.version.split()[0], "vllm": None, "vllm_file": None, "device": None}
try:
    import vllm
    out["vllm_file"] = getattr(vllm, "__file__", None)
except BaseException as e:
    out["vllm"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
device = sys.argv[1]
try:
    if device == "npu":
        try:
            import torch, torch_npu  # noqa: F401
        except ImportError as e:
            out["device"] = "torch_npu is not installed" if "torch_npu" in str(e) else f"torch_npu import failed ({e})"
        else:
            if not torch.npu.is_available() or torch.npu.device_count() == 0:
                out["device"] = "torch_npu sees no NPU (torch.npu.is_available() is False)"
    elif device == "cuda":
        import torch
        if not torch.cuda.is_available():
            out["device"] = "torch sees no CUDA device"
except BaseException as e:
    out["device"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
print("TRITRIAGE-PROBE " + json.dumps(out))
"""


@dataclass
class Preconditions:
    python: str
    device: str
    vllm_error: str | None = None  # why "import vllm" failed; None when it worked
    vllm_file: str | None = None
    device_error: str | None = None  # why the device is unusable; None when it is there
    tests_dir: bool = True  # the checkout has a tests/ directory

    @property
    def ok(self) -> bool:
        return self.vllm_error is None and self.device_error is None

    def reason(self) -> str:
        """Why nothing can run, in one line; empty when everything can."""
        parts = []
        if self.vllm_error is not None:
            if re.search(r"No module named '?vllm'?$", self.vllm_error):
                parts.append(f"vLLM is not installed for {self.python} (import vllm failed: {self.vllm_error})")
            else:
                parts.append(f"vLLM cannot be imported by {self.python} (import vllm failed: {self.vllm_error})")
        if self.device_error is not None:
            parts.append(f"no {self.device.upper()}: {self.device_error}")
        if parts and not self.tests_dir:
            # Worth saying when it is the next thing to fix, not as a cause.
            parts.append("the checkout has no tests/ directory either (a vLLM wheel ships none: use a git checkout)")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"python": self.python, "device": self.device, "ok": self.ok, "reason": self.reason(),
                "vllm_error": self.vllm_error, "vllm_file": self.vllm_file, "device_error": self.device_error,
                "tests_dir": self.tests_dir}


def device_env(device: str) -> dict[str, str]:
    """Environment a test run gets for ``device``, besides the caller's."""
    env = {"VLLM_TARGET_DEVICE": device, "PYTHONDONTWRITEBYTECODE": "1"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_env(root: str | Path, device: str) -> dict[str, str]:
    env = {**os.environ, **device_env(device)}
    # The checkout's vllm comes first, as it does for "python -m pytest" run there.
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def check_preconditions(root: str | Path, python: str, device: str, timeout: float = PROBE_TIMEOUT) -> Preconditions:
    """One probe of ``python`` in ``root``: does ``import vllm`` work, is ``device`` there."""
    root = Path(root)
    pre = Preconditions(python=python, device=device, tests_dir=(root / "tests").is_dir())
    env = run_env(root, device)
    try:
        proc = subprocess.run([python, "-c", _PROBE, device], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout, errors="replace")
    except FileNotFoundError:
        pre.vllm_error = f"interpreter {python} not found"
        pre.device_error = "not checked"
        return pre
    except subprocess.TimeoutExpired:
        pre.vllm_error = f"the probe did not finish in {timeout:.0f} s"
        pre.device_error = "not checked"
        return pre
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("TRITRIAGE-PROBE ")), None)
    if line is None:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        pre.vllm_error = f"the probe failed: {last[:300]}"
        pre.device_error = "not checked"
        return pre
    data = json.loads(line.split(" ", 1)[1])
    pre.vllm_error = data.get("vllm")
    pre.vllm_file = data.get("vllm_file")
    pre.device_error = data.get("device")
    return pre


# --------------------------------------------------------------------------
# one command


@dataclass
class CommandRun:
    """What running one test command gave."""

    command: str
    argv: list[str] = field(default_factory=list)
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    results: list[TestResult] = field(default_factory=list)
    log: str | None = None


def missing_paths(root: str | Path, command: str) -> list[str]:
    """The test paths a command names that the checkout lacks."""
    return [p for p in command_paths(command) if not (Path(root) / p).exists()]


def not_run(command: str, kernel_files, reason: str) -> TestResult:
    return TestResult(command=command, test_file=_first_path(command), case="", outcome="not-run",
                      kernel_files=tuple(kernel_files), reason=reason)


def _first_path(command: str) -> str:
    paths = command_paths(command)
    return os.path.normpath(paths[0]).replace(os.sep, "/") if paths else ""


def _runnable_args(args: list[str]) -> list[str]:
    """A catalog command's pytest arguments, minus what would hide cases.

    ``-x`` would stop at the first failure and ``-s`` would send captured
    output to the console instead of the JUnit XML; a JUnit path of its own
    would replace ours.
    """
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--junitxml", "--junit-xml", "--capture"):
            skip = True
            continue
        if a in ("--exitfirst", "--capture=no") or a.startswith(("--junitxml=", "--junit-xml=")):
            continue
        if re.fullmatch(r"-[svxql]+", a):  # boolean short flags, maybe combined ("-svx")
            a = a.replace("s", "").replace("x", "")
            if a == "-":
                continue
        out.append(a)
    return out


def build_argv(command: str, python: str, junit: str) -> tuple[list[str], bool]:
    """(argv, is_pytest) for running ``command`` with ``python``."""
    argv = split_command(command)
    args = pytest_args(argv)
    if args is None:
        if argv and os.path.basename(argv[0]).startswith("python"):
            argv = [python] + argv[1:]
        return argv, False
    return [python, "-m", "pytest", *_runnable_args(args), f"--junitxml={junit}",
            "-o", "junit_family=xunit1", "-o", "junit_logging=all", "-p", "no:cacheprovider",
            "--continue-on-collection-errors"], True


def run_command(command: str, kernel_files, *, root: str | Path, python: str, device: str, timeout: float,
                log_path: str | Path | None = None, classify_fn=None) -> CommandRun:
    """Run one test command and return a verdict per test case."""
    root = Path(root)
    run = CommandRun(command=command)
    kernel_files = tuple(kernel_files)
    with tempfile.TemporaryDirectory(prefix="tritriage-test-") as tmp:
        junit = os.path.join(tmp, "junit.xml")
        argv, is_pytest = build_argv(command, python, junit)
        run.argv = argv
        env = run_env(root, device)
        t0 = time.time()
        log_file = open(log_path, "w+", encoding="utf-8", errors="replace") if log_path else \
            tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=tmp)
        with log_file:
            try:
                proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                run.results = [TestResult(command=command, test_file=_first_path(command), case="", outcome="not-run",
                                          kernel_files=kernel_files, reason=f"cannot start {argv[0]}: {e.strerror or e}")]
                return run
            try:
                run.returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                run.timed_out = True
                _kill_group(proc)
            except BaseException:
                _kill_group(proc)
                raise
            run.seconds = time.time() - t0
            log_file.flush()
            # Only the console text of a run without JUnit report is read: its end says why.
            size = log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, size - LOG_READ_CAP))
            output = log_file.read()
        run.log = str(log_path) if log_path else None
        classify_fn = classify_fn or _classify
        if run.timed_out:
            run.results = [_whole(command, kernel_files, "timeout", run, output,
                                  _timeout_diagnosis(command, timeout, output), f"ran past {timeout:.0f} s")]
        elif is_pytest and os.path.exists(junit) and os.path.getsize(junit) > 0:
            run.results = parse_junit(junit, command, kernel_files, classify_fn, root=str(root), log=run.log)
            if not run.results:
                reason = "pytest collected no test" + (" (the -k selection matches none)" if "-k" in argv else "")
                run.results = [_whole(command, kernel_files, "not-run", run, output, None, reason)]
        elif is_pytest:
            # pytest died before writing its report (a crash, a kill): the
            # console output is all there is.
            run.results = [_whole(command, kernel_files, "error", run, output, classify_fn(output, str(root)),
                                  f"pytest exited with status {run.returncode} and wrote no report")]
        else:
            outcome = "passed" if run.returncode == 0 else "failed"
            diag = classify_fn(output, str(root)) if outcome == "failed" else None
            run.results = [_whole(command, kernel_files, outcome, run, output, diag, "")]
    return run


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _whole(command, kernel_files, outcome, run: CommandRun, output: str, diagnosis, reason) -> TestResult:
    return TestResult(command=command, test_file=_first_path(command), case="", outcome=outcome,
                      kernel_files=tuple(kernel_files), diagnosis=diagnosis, seconds=run.seconds, reason=reason,
                      output=_cap(output) if outcome != "passed" else "", log=run.log)


def _cap(text: str) -> str:
    if len(text) <= OUTPUT_CAP:
        return text
    half = OUTPUT_CAP // 2
    return text[:half] + f"\n... [{len(text) - OUTPUT_CAP} characters cut] ...\n" + text[-half:]


def _classify(text: str, checkout: str) -> Diagnosis:
    from tritriage.classify import classify

    return classify(text, checkout=checkout)


def _timeout_diagnosis(command: str, timeout: float, output: str) -> Diagnosis:
    import hashlib

    fp = hashlib.sha256(f"timeout|{command}".encode()).hexdigest()[:12]
    tail = "\n".join(output.strip().splitlines()[-20:])
    return Diagnosis(cls="timeout", subclass=f"test command ran past {timeout:.0f} s", fingerprint=fp,
                     hint="a hung kernel or a very slow CPU fallback: rerun the case alone with a larger --timeout",
                     excerpt=tail)


# --------------------------------------------------------------------------
# JUnit XML


def parse_junit(path: str | Path, command: str, kernel_files, classify_fn=None, *, root: str = "",
                log: str | None = None) -> list[TestResult]:
    """One TestResult per ``testcase`` of a pytest JUnit XML file (xunit1: it has ``file``)."""
    classify_fn = classify_fn or _classify
    tree = ET.parse(str(path))
    out = []
    for tc in tree.getroot().iter("testcase"):
        test_file, case = _case_name(tc)
        failure = tc.find("failure")
        error = tc.find("error")
        skipped = tc.find("skipped")
        reason = ""
        diagnosis = None
        text = ""
        if failure is not None or error is not None:
            el = failure if failure is not None else error
            outcome = "failed" if failure is not None else "error"
            if error is not None and failure is None and (error.get("message") or "") == "collection failure":
                case = "(collection)"
            captured = "\n".join((e.text or "") for e in tc if e.tag in ("system-out", "system-err"))
            # The traceback first: its exception line outranks a captured
            # line only when both are errors, and then the earlier one wins.
            text = "\n".join(t for t in ((el.text or el.get("message") or ""), _captured(captured)) if t.strip())
            diagnosis = classify_fn(text, root)
            reason = (el.get("message") or "").splitlines()[0][:300] if el.get("message") else ""
        elif skipped is not None:
            outcome = "skipped"
            reason = (skipped.get("message") or "").strip()[:300]
        else:
            outcome = "passed"
        out.append(TestResult(command=command, test_file=test_file, case=case, outcome=outcome,
                              kernel_files=tuple(kernel_files), diagnosis=diagnosis,
                              seconds=float(tc.get("time") or 0.0), reason=reason, output=_cap(text), log=log))
    return out


_CAPTURE_HEADER = re.compile(r"^-{3,} Captured (?:Log|Out|Err|stdout|stderr)\b.*-{3,}$", re.M)


def _captured(text: str) -> str:
    """Captured output without pytest's section rulers; empty when nothing was printed."""
    body = _CAPTURE_HEADER.sub("", text)
    return body.strip()


def _case_name(tc: ET.Element) -> tuple[str, str]:
    """(test file relative to the checkout, case name) of a JUnit testcase."""
    classname = tc.get("classname") or ""
    name = tc.get("name") or ""
    file = (tc.get("file") or "").replace(os.sep, "/")
    if not classname:
        # A collection error: the name is the module path, dotted.
        return file or name.replace(".", "/") + ".py", ""
    if not file:
        file = classname.replace(".", "/") + ".py"
    module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
    cls = classname[len(module) + 1:] if module and classname.startswith(module + ".") else ""
    return file, f"{cls.replace('.', '::')}::{name}" if cls else name

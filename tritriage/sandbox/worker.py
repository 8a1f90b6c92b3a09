"""The compile worker: runs inside the interpreter that has triton-ascend.

It is started by the tool (``tritriage/compile/pool.py``) as
``[python, "-u", "-m", "tritriage.sandbox.worker", "--target", "ascend"]`` with ``PYTHONPATH``
pointing at the directory that holds the ``tritriage`` package, so it must work
in an environment that has triton-ascend and nothing else of tritriage's
dependencies: like everything in ``tritriage/sandbox/`` it imports only the
standard library, triton and the sandbox's own modules
(``tests/sandbox/test_boundary.py`` checks it); ``stages.py`` does the compiling itself (loading the
kernel, specializing it, driving triton-ascend's stages, wording failures);
this file runs it in isolated children and reads what they leave behind.

Protocol: one JSON object per line.  The worker's stdout is the protocol
channel and nothing else may write to it, so fd 1 is moved away at start and
every compile child sends its output to a log file.

  worker → tool   {"op": "ready", "info": {...probe()...}}   once, after importing triton
  tool → worker   {"op": "compile", "job": {...}}            see ``Job.wire`` in compile/pool.py
  worker → tool   {"op": "result", "id": ..., "result": CompileResult dict}
  tool → worker   {"op": "exit"}                             (or EOF)

The same server runs spec checks (``specs/resolve.py`` ``validate``): a job
with ``"stop_after": "frontend"`` compiles only through the frontend and words
a failure for a verdict's reason (``check_job``).  Started with ``--target
cuda`` in the reference venv (upstream Triton, ``compile/reference.py``), it
checks for ``GPUTarget("cuda", 90, 32)``, which needs no GPU, through the
frontend and ``ttir``, so that "the reference compiles it" means more than
parsing.  One fork server thus gives compiles and checks the same timeouts,
memory watch and crash isolation.

Why a fork server: importing triton costs more than most compiles, so the
server imports it once and forks one child per compile.  The child is thrown
away afterwards, which keeps each compile isolated: a crash, a hang or a memory
blow-up (in the Python process or in ``triton-adapter-opt``) ends that child
only.  The child leads its own process group so that a timeout kills the
external tool too.

``python -m tritriage.sandbox.worker --probe`` prints ``probe()`` as JSON and
exits: the environment check (``environment.py``) uses it.
"""

from __future__ import annotations

import gc
import json
import os
import select
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback

from tritriage.sandbox import stages
from tritriage.sandbox.stages import (DEFAULT_ARCH, HANG_SUSPECTED, OOM_MARKERS, SOC_OF_FAMILY, STAGES, TOOL_OF_STAGE,
                                      cann_status, read_from, signame)
from tritriage.sandbox.records import CompileResult, StageResult
from tritriage.sandbox.stages import FAILED, NOT_RUN, PASSED

# Memory is sampled this often while a child runs (seconds).
POLL = 0.05
# How often the stage a child is in is read back against its budget (seconds).
STAGE_CHECK = 0.5


# --------------------------------------------------------------------------
# environment probe


def known_archs() -> list[str]:
    """The SoC names triton-ascend accepts, read from triton-ascend itself.

    triton-ascend only lists them inside ``get_ascend_arch_from_env``'s error
    message, so ask it with a name it will reject and read the list back.
    """
    try:
        from triton.backends.ascend import utils  # noqa: PLC0415 - the backend's helper module
    except Exception:
        return []
    saved = os.environ.get("TRITON_ASCEND_ARCH")
    os.environ["TRITON_ASCEND_ARCH"] = "tritriage-probe"
    try:
        utils.get_ascend_arch_from_env()
        return []
    except ValueError as e:
        text = str(e)
        inside = text[text.find("[") + 1: text.rfind("]")]
        return [a.strip() for a in inside.split(",") if a.strip()]
    except Exception:
        return []
    finally:
        if saved is None:
            os.environ.pop("TRITON_ASCEND_ARCH", None)
        else:
            os.environ["TRITON_ASCEND_ARCH"] = saved


def probe() -> dict:
    """What this interpreter offers: triton-ascend, its adapter, CANN."""
    info: dict = {
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "triton": None,
        "triton_version": None,
        "triton_ascend_version": None,
        "triton_error": None,
        "adapter": None,
        "adapter_executable": False,
        "backend_ok": False,
        "archs": [],
        "cann": cann_status(),
        "binary": stages.binary_plan(),
    }
    try:
        import triton
    except Exception as e:  # noqa: BLE001 - any import failure means "no triton here"
        info["triton_error"] = f"{type(e).__name__}: {e}"
        return info
    info["triton"] = os.path.dirname(triton.__file__)
    info["triton_version"] = getattr(triton, "__version__", None)
    try:
        from importlib import metadata
        info["triton_ascend_version"] = metadata.version("triton-ascend")
    except Exception:
        pass
    try:
        from triton.backends.ascend.utils import _get_triton_adapter_opt_path
        adapter = _get_triton_adapter_opt_path()
    except Exception:
        adapter = os.path.join(info["triton"], "backends", "ascend", "triton-adapter-opt")
    info["adapter"] = adapter
    info["adapter_executable"] = os.path.isfile(adapter) and os.access(adapter, os.X_OK)
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import make_backend
        make_backend(GPUTarget("npu", DEFAULT_ARCH, 0))
        info["backend_ok"] = True
    except Exception as e:  # noqa: BLE001
        info["triton_error"] = f"no Ascend backend: {type(e).__name__}: {e}"
    info["archs"] = known_archs()
    return info


# --------------------------------------------------------------------------
# the compile child


class _Recorder(stages.Reporter):
    """What the child has done so far, appended to a file the server can read
    even when the child dies or is killed mid-stage."""

    def __init__(self, workdir: str, log_path: str, adapter: str | None = None):
        super().__init__(workdir, log_path, adapter)
        self.path = os.path.join(workdir, "progress.jsonl")
        self.f = open(self.path, "a", buffering=1, encoding="utf-8")

    def event(self, **kw):
        self.f.write(json.dumps(kw, default=str) + "\n")
        self.f.flush()

    def start(self, stage: str):
        super().start(stage)
        self.event(start=stage, t=time.time())

    def done(self, result: dict):
        super().done(result)
        self.event(done=result)

    def tool_call(self, argv: list[str], saved_input: str | None, out_path: str, err_path: str, stage: str):
        super().tool_call(argv, saved_input, out_path, err_path, stage)
        self.event(tool=argv, input=saved_input, stage=stage, stdout=out_path, stderr=err_path)

    exception = None

    def failed(self, stage, e):
        # A spec check words the exception itself (error_text), not the log.
        self.exception = e


# The most checkout files a server keeps parsed.
MAX_PREPARSED = 600


def _loader_state(checkout: str, roots=()):
    """The loader's per-checkout state (parsed files), or None.

    Its parsed files are the loader's internals, used only to save time, so
    any difference in them just means no warming.
    """
    try:
        from tritriage.sandbox import loader
        return loader.loader_for(checkout, roots)
    except Exception:  # noqa: BLE001
        return None


def _load(job: dict):
    """The job's kernel, loaded with its scan's other source trees and target part."""
    from tritriage.sandbox.loader import load_kernel

    def load(checkout, rel, qualname):
        return load_kernel(checkout, rel, qualname, roots=job.get("roots") or (),
                           arch=SOC_OF_FAMILY.get(job.get("arch") or DEFAULT_ARCH, job.get("arch") or DEFAULT_ARCH))

    return load


def _parsed_files(checkout: str, roots=()) -> list[str]:
    state = _loader_state(checkout, roots)
    try:
        return sorted(state.sources) if state is not None else []
    except Exception:  # noqa: BLE001
        return []


def preparse(checkout: str, files, roots=()) -> None:
    """Parse checkout files in the server (no code runs: the loader only parses
    them here), so that each compile child inherits the parsed trees."""
    state = _loader_state(checkout, roots)
    if state is None:
        return
    for rel in files:
        try:
            state.source(rel)
        except Exception:  # noqa: BLE001 - the child meets (and reports) the same problem
            pass


def _installed_imports(names: set[str], checkout: str) -> list[str]:
    """Top-level installed packages (torch, numpy...) that loading a kernel
    imported for real: the server imports them once so that later children
    inherit them instead of paying for the import every time."""
    out = set()
    root = os.path.realpath(checkout) + os.sep
    for name in names:
        top = name.partition(".")[0]
        if top in out or top.startswith(("tritriage", "_")) or top in sys.builtin_module_names:
            continue
        mod = sys.modules.get(top)
        path = getattr(mod, "__file__", None) or ""
        if path and not os.path.realpath(path).startswith(root):
            out.add(top)
    return sorted(out)


def compile_job(job: dict, rec: _Recorder) -> CompileResult:
    """Load the kernel, then compile it as ``stages`` does."""
    if job.get("stop_after"):
        return check_job(job, rec)
    t_start = time.time()
    rec.start("load")
    modules_before = set(sys.modules)
    try:
        fn, text = stages.load(_load(job), job["checkout"], job["file"], job["qualname"])
    except Exception as e:  # noqa: BLE001 - tritriage's loader did not import
        fn, text = None, stages.exception_text(e)
    finally:
        rec.event(imported=_installed_imports(set(sys.modules) - modules_before, job["checkout"]),
                  parsed=_parsed_files(job["checkout"], job.get("roots") or ()))
    if fn is None:
        out = stages.result([], "loader-error", text, t_start=t_start)
    else:
        out = stages.compile_kernel(fn, job["spec"], rec, arch=job.get("arch"), binary=job.get("binary"),
                                    blackbox=job.get("blackbox"))
    return CompileResult.from_dict(dict(out, kernel=job["kernel"], spec=job["spec"].get("name", "default")))


# --------------------------------------------------------------------------
# the spec check: the frontend only, on triton-ascend or on upstream Triton


class SpecMismatch(Exception):
    """The spec does not name the kernel's parameters (stale or wrong)."""


def check_job(job: dict, rec: _Recorder) -> CompileResult:
    """Whether the frontend takes the job's spec: outcome ``passed``,
    ``spec-error``, ``loader-error`` or ``failed``, with ``error_text``'s
    wording (a verdict's one-line reason reads it, not the classifier)."""
    t_start = time.time()
    try:
        _check(job, rec)
        outcome, text = "passed", ""
    except BaseException as e:  # noqa: BLE001 - every failure is a verdict
        outcome = "loader-error" if type(e).__name__ == "LoaderError" else (
            "spec-error" if isinstance(e, SpecMismatch) else "failed")
        text = error_text(e)
        if len(text) > 6000:
            # The cause is at the end of a nested CompilationError: keep both ends.
            text = text[:2000] + "\n[...]\n" + text[-4000:]
    out = stages.result([], outcome, text, t_start=t_start)
    return CompileResult.from_dict(dict(out, kernel=job["kernel"], spec=job["spec"].get("name", "default")))


def _check(job: dict, rec: _Recorder) -> None:
    """Load, specialize and run the frontend; raise on any failure."""
    fn = stages.unwrap(_load(job)(job["checkout"], job["file"], job["qualname"]))
    if job.get("target", "ascend") != "ascend":
        _check_upstream(fn, job["spec"])
        return
    # Exactly what the scan's compile runs, up to the frontend.
    res = stages.compile_kernel(fn, job["spec"], rec, arch=job.get("arch"), stop_after="frontend")
    if rec.exception is not None:
        raise rec.exception
    if res["outcome"] == "spec-error":
        raise SpecMismatch(res["error"])
    if res["outcome"] not in stages.PASSES:
        raise RuntimeError(res["error"])


def _split(fn, spec):
    # Upstream Triton's ASTSource takes ``constexprs=``, triton-ascend's
    # ``constants=``: stages.build_source speaks only the latter.
    try:
        return stages.split_spec(fn, spec)
    except stages.SpecError as e:
        raise SpecMismatch(str(e)) from None


# Upstream's NVIDIA target: compiling for it through ttir needs no GPU.
UPSTREAM_TARGET = ("cuda", 90, 32)


def _check_upstream(fn, spec) -> None:
    """Upstream Triton (the reference venv), for ``GPUTarget("cuda", 90, 32)``: frontend and ttir."""
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend

    signature, constants = _split(fn, spec)
    options = {k: v for k, v in (spec.get("options") or {}).items() if k in ("num_warps", "num_stages")}
    target = GPUTarget(*UPSTREAM_TARGET)
    backend = make_backend(target)
    src = ASTSource(fn, signature=signature, constexprs=constants)
    opts = backend.parse_options(options)
    ctx = ir.context()
    ir.load_dialects(ctx)
    backend.load_dialects(ctx)
    try:
        codegen = backend.get_codegen_implementation(opts)
    except TypeError:
        codegen = backend.get_codegen_implementation()
    module = src.make_ir(target, opts, codegen, backend.get_module_map(), ctx)
    pipeline: dict = {}
    try:
        backend.add_stages(pipeline, opts, src.language)
    except TypeError:
        backend.add_stages(pipeline, opts)
    if "ttir" in pipeline:
        pipeline["ttir"](module, {"hash": "0", "target": target})


def error_text(e: BaseException) -> str:
    """The compiler's message, first line first; no frames of our own."""
    name = type(e).__name__
    msg = str(e).strip()
    if "CompilationError" in name:
        # triton-ascend's CompilationError can print as its args tuple
        # (source, node, cause): put the cause last, where readers look.
        if msg.startswith("(") and len(e.args) == 3 and isinstance(e.args[0], str):
            node = e.args[1]
            line = getattr(node, "lineno", 0)
            src_lines = e.args[0].splitlines()
            where = src_lines[line - 1].strip() if 0 < line <= len(src_lines) else ""
            cause = e.args[2] if e.args[2] is not None else repr(e.__cause__)
            return f"{src_lines[0] if src_lines else ''}\n  at line {line}: {where}\n{cause}"
        cause = e.__cause__
        if cause is not None and str(cause) not in msg:
            # Upstream Triton chains the real error instead of printing it.
            msg = f"{msg}\n{type(cause).__name__}: {str(cause).strip()}"
        # A CompilationError raised inside a called jit helper nests the
        # helper's error as a repr: bring its innermost cause to the last line.
        import re
        inner = re.findall(r"""(\w*(?:Error|Exception)\w*)\(\\?(['"])(.*?)\\?\2\)""", msg[-2000:], re.S)
        if inner:
            kind, _, text = inner[-1]
            msg = f"{msg}\n{kind}: {text}"
        return msg
    if isinstance(e, SpecMismatch):
        return f"spec: {msg}"
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if "/tritriage/" not in fr.filename:
            where = f" ({fr.filename.rsplit('/site-packages/', 1)[-1]}:{fr.lineno})"
            break
    return f"{name}: {msg}{where}"


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _die_with_server(server_pid: int) -> None:
    """If the server dies, take this compile and its external tool down too.

    The child leads its own process group (so that a timeout can kill the
    tool), which also means nothing kills it when the server goes: ask the
    kernel for a SIGTERM then, and end the whole group from its handler.
    """
    def end_group(signum, frame):
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_group)
    try:
        _libc().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the tool's timeouts still apply
        return
    if os.getppid() != server_pid:  # the server died before prctl
        end_group(signal.SIGTERM, None)


def _child_main(job: dict, workdir: str, memory_mb: int | None, server_pid: int, close_fds=(),
                done_fd: int | None = None) -> None:
    """Body of the forked child; never returns."""
    code = 70
    try:
        os.setsid()  # own process group: a timeout kills the external tool with us
        for fd in close_fds:
            # The protocol channel: a child holding it would keep the tool
            # from seeing EOF when the server dies.
            os.close(fd)
        _die_with_server(server_pid)
        log_path = os.path.join(workdir, "log.txt")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        if memory_mb:
            # A backstop only: the server watches resident memory and stops the
            # child at the limit.  Address space is far larger than what is
            # resident, hence the slack.
            import resource
            vsz = _vm_size_kb(os.getpid()) * 1024
            cap = vsz + 2 * memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        cache = os.path.join(workdir, "triton-cache")
        os.makedirs(cache, exist_ok=True)
        # A cache of its own, or a retried failure reads "already failed once".
        os.environ["TRITON_CACHE_DIR"] = cache
        # triton-ascend's own TemporaryDirectory for the adapter's input is
        # never cleaned when a hang or crash kills the compile: keep it in
        # the job's work dir, which the server removes.
        os.environ["TMPDIR"] = workdir
        tempfile.tempdir = workdir
        os.environ["TRITON_DUMP_DIR"] = os.path.join(workdir, "dump")
        os.environ["TRITON_OVERRIDE_DIR"] = os.path.join(workdir, "override")
        rec = _Recorder(workdir, log_path, job.get("adapter"))
        try:
            result = compile_job(job, rec)
        except MemoryError:
            result = CompileResult(kernel=job["kernel"], spec=job["spec"].get("name", "default"),
                                   outcome="oom", error="MemoryError")
        tmp = os.path.join(workdir, "result.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(result.to_json())
        os.replace(tmp, os.path.join(workdir, "result.json"))
        code = 0
        if done_fd is not None:
            # The server may go on now; tearing this process down is the kernel's business.
            os.write(done_fd, b"1")
    except BaseException:  # noqa: BLE001 - the child reports everything through its exit
        try:
            traceback.print_exc()
        except Exception:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def _exited(pid: int, wait: float) -> bool:
    """Whether ``pid`` has exited, polling for up to ``wait`` seconds (leaves it unreaped)."""
    end = time.time() + wait
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if time.time() >= end:
            return False
        time.sleep(0.002)


def _vm_size_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _tree(pid: int):
    """``pid`` and its descendants (the adapter and bishengir-compile included)."""
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        yield p
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree_cpu(pid: int) -> float:
    """CPU seconds used by ``pid`` and its descendants, the ones already
    waited for included (a finished adapter run counts in its parent's)."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            continue
    return total / _TICK


# A stage that has run past its budget in wall time while using less than this
# share of a CPU is stalled (waiting on nothing that will come), not slow.
STALL_SHARE = 0.1


class _Progress:
    """What the child's progress file says, read incrementally (only what was
    appended since the last look): the stage it is in and since when, the
    stages it finished, the tool it last ran, the installed modules it
    imported and the checkout files it parsed.  The stage watch reads it while
    the child runs; the result is rebuilt from it when the child was stopped."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "progress.jsonl")
        self.offset = 0
        self.partial = ""
        self.stage: str | None = None
        self.since = time.time()
        self.stages: list[StageResult] = []
        self.tool: dict | None = None
        self.imported: set[str] = set()
        self.parsed: set[str] = set()

    def poll(self, final: bool = False) -> "_Progress":
        """Read what was appended; ``final``: the child is gone, its last line
        too (cut short by a kill, it is skipped)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except OSError:
            return self
        lines = (self.partial + chunk).split("\n")
        self.partial = "" if final else lines.pop()
        for line in lines:
            try:
                ev = json.loads(line) if line else None
            except ValueError:
                continue
            if isinstance(ev, dict):
                self._event(ev)
        return self

    def _event(self, ev: dict) -> None:
        if "start" in ev:
            self.stage, self.since, self.tool = ev["start"], float(ev.get("t") or time.time()), None
        elif "tool" in ev:
            self.tool = {"command": ev["tool"], "input": ev.get("input"),
                         "stdout": ev.get("stdout"), "stderr": ev.get("stderr")}
            if self.stage == "compile" and ev.get("stage") in STAGES:
                # Black-box compile: the tool tells the stage, and those before it passed.
                self.stage, self.since = ev["stage"], time.time()
                self.stages.extend(StageResult(s, PASSED) for s in STAGES[:STAGES.index(self.stage)])
        elif "done" in ev:
            self.stages.append(StageResult.from_dict(ev["done"]))
            self.stage, self.tool = None, None
        if "imported" in ev:
            self.imported.update(ev.get("imported") or ())
            self.parsed.update(ev.get("parsed") or ())


class _StageWatch:
    """Whether a running child's stage has overrun its budget, from the stage
    its progress says and the CPU time of its processes.

    A stage's budget is spent in CPU seconds, not wall seconds: on a loaded
    machine a compile's wall time grows with the load but its CPU time does
    not, so only a compile doing far more work than usual is cut.  A stage
    that uses next to no CPU past its budget is cut too (a deadlock)."""

    def __init__(self, progress: _Progress, pid: int):
        self.progress = progress
        self.pid = pid
        self.cpu0 = 0.0

    def over(self, budgets: dict, now: float) -> tuple[str, float, str] | None:
        """(stage, budget, why) when the current stage has overrun its budget."""
        p = self.progress
        stage = p.stage
        p.poll()
        if p.stage != stage:
            self.cpu0 = _tree_cpu(self.pid)
        budget = budgets.get(p.stage) if p.stage else None
        if not budget or now - p.since <= budget[0]:
            return None
        cpu = _tree_cpu(self.pid) - self.cpu0
        if cpu > budget[0]:
            return p.stage, budget[0], (f"{cpu:.0f} CPU seconds in {p.stage} without a result, past its "
                                        f"budget of {budget[0]:g} ({budget[1]})")
        wall = now - p.since
        if cpu < STALL_SHARE * wall:
            return p.stage, budget[0], (f"stalled: {cpu:.1f} CPU seconds in {wall:.0f} s of {p.stage}, past "
                                        f"its budget of {budget[0]:g} ({budget[1]})")
        return None


# --------------------------------------------------------------------------
# the server


class Server:
    def __init__(self, out):
        self.out = out
        self.child: int | None = None
        self.to_preload: set[str] = set()
        self.preloaded: set[str] = set()
        self.to_parse: dict[str, set[str]] = {}  # checkout -> files its compiles parsed
        self.parsed: dict[str, set[str]] = {}
        self.zombies: list[int] = []  # finished children not reaped yet
        self.litter: list[str] = []  # work dirs of the compile just answered

    def tidy(self) -> None:
        while self.litter:
            shutil.rmtree(self.litter.pop(), ignore_errors=True)

    def reap(self) -> None:
        for pid in list(self.zombies):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.zombies.remove(pid)

    def warm_loader(self, job: dict) -> None:
        """Parse, once and here, the kernel's file and what earlier compiles parsed."""
        checkout = job.get("checkout")
        if not checkout:
            return
        done = self.parsed.setdefault(checkout, set())
        want = ({job["file"]} | self.to_parse.get(checkout, set())) - done
        room = MAX_PREPARSED - len(done)
        if not want or room <= 0:
            return
        files = sorted(want)[:room]
        done.update(files)
        preparse(checkout, files, job.get("roots") or ())

    def preload(self) -> None:
        """Import, once and here, what compile children had to import themselves."""
        for name in sorted(self.to_preload - self.preloaded):
            self.preloaded.add(name)
            try:
                __import__(name)
            except BaseException:  # noqa: BLE001 - children will import (or fail) on their own
                pass

    def send(self, msg: dict) -> None:
        self.out.write(json.dumps(msg, default=str) + "\n")
        self.out.flush()

    def kill_child(self) -> None:
        if self.child is not None:
            # The group may not exist yet if the child has not reached setsid.
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.child, signal.SIGKILL)
                except OSError:
                    pass

    def attempt(self, job: dict) -> tuple[CompileResult, str]:
        """One compile in a fresh child; returns the result and its work dir."""
        self.reap()
        self.preload()
        self.warm_loader(job)
        if (job.get("binary") or {}).get("bishengir"):
            stages.remember_help(job["binary"]["bishengir"])
        # Under the directory the tool made for this worker, which the tool
        # removes when the worker ends, however it ends.
        workdir = tempfile.mkdtemp(prefix="job-", dir=os.environ.get("TRITRIAGE_JOBS_DIR") or None)
        timeout = float(job.get("timeout") or 120)
        memory_mb = job.get("memory_mb")
        limit = memory_mb * 1024 * 1024 if memory_mb else None
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.time()
        server_pid = os.getpid()
        try:
            close_fds = (self.out.fileno(),)
        except (AttributeError, OSError, ValueError):
            close_fds = ()
        done_r, done_w = os.pipe()
        # Objects the server holds go to the permanent generation: a garbage
        # collection in the child would otherwise touch every one of them and
        # copy hundreds of megabytes of shared pages.
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(done_r)
                _child_main(job, workdir, memory_mb, server_pid, close_fds=close_fds, done_fd=done_w)
            finally:
                os._exit(70)  # a child must never return into the server's loop
        os.close(done_w)
        self.child = pid
        reason = None
        cut: tuple[str, float, str] | None = None  # (stage, budget, why that budget)
        budgets = job.get("stage_budgets") or {}
        progress = _Progress(workdir)
        watch = _StageWatch(progress, pid) if budgets else None
        next_check = t0 + STAGE_CHECK
        peak = 0
        status = 0
        finished = False  # the child said its result is written
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3
            pidfd = None
        try:
            while True:
                wait = min(POLL, max(0.0, t0 + timeout - time.time()))
                watched = [done_r] + ([pidfd] if pidfd is not None else [])
                ready = select.select(watched, [], [], wait if pidfd is not None else min(wait, 0.005))[0]
                if done_r in ready and os.read(done_r, 1):
                    finished = True
                    break
                if ready or (pidfd is None and _exited(pid, 0)):
                    break
                if limit:
                    rss = _tree_rss(pid)
                    peak = max(peak, rss)
                    if rss > limit:
                        reason = "oom"
                        break
                now = time.time()
                if now >= t0 + timeout:
                    reason = "timeout"
                    break
                if watch is not None and now >= next_check:
                    next_check = now + STAGE_CHECK
                    cut = watch.over(budgets, now)
                    if cut is not None:
                        reason = "hang"
                        break
            # Also ends a tool the child left behind: the group dies with the child.
            self.kill_child()
            if finished:
                # Reaped later: waiting for the kernel to tear the child down
                # would cost every compile several milliseconds.
                self.zombies.append(pid)
            else:
                _, status = os.waitpid(pid, 0)
        finally:
            self.child = None
            os.close(done_r)
            if pidfd is not None:
                os.close(pidfd)
        elapsed = time.time() - t0
        result = self._result(job, workdir, progress.poll(final=True), status, reason, elapsed, timeout,
                              memory_mb, peak, cut)
        return result, workdir

    def _result(self, job, workdir, progress: _Progress, status, reason, elapsed, timeout, memory_mb, peak,
                cut=None) -> CompileResult:
        if reason is None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self.to_preload.update(progress.imported)
            self.to_parse.setdefault(job.get("checkout", ""), set()).update(progress.parsed)
        log = read_from(os.path.join(workdir, "log.txt"))
        path = os.path.join(workdir, "result.json")
        if reason is None and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                result = CompileResult.from_dict(json.load(f))
            return _replace(result, log=log, seconds=elapsed)
        # The child did not finish: rebuild what it got through from its progress file.
        stages, current, tool = progress.stages, progress.stage, progress.tool
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if reason == "timeout":
            outcome, why = "timeout", f"timed out after {timeout:g} s"
            sig = None
        elif reason == "hang":
            outcome, why = "timeout", f"{HANG_SUSPECTED}: {cut[2]}"
            sig = None
        elif reason == "oom":
            outcome, why = "oom", f"memory use passed the limit of {memory_mb} MiB"
            sig = None
        elif sig is not None:
            outcome, why = "crash", f"killed by signal {sig} ({signame(sig)})"
            if any(m in log for m in OOM_MARKERS) and memory_mb:
                outcome = "oom"
        else:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
            outcome, why = "crash", f"worker child exited with status {code} without a result"
        where = current or "load"
        if tool and current in TOOL_OF_STAGE:
            why += f" while running {os.path.basename(tool['command'][0])}"
            for stream in ("stderr", "stdout"):
                seen = read_from(tool[stream]) if tool.get(stream) else ""
                if seen.strip():
                    log += f"\n===== {os.path.basename(tool['command'][0])} {stream} (until it was stopped) =====\n{seen}"
        done = {s.stage for s in stages}
        out = list(stages)
        if where in STAGES and where not in done:
            out.append(StageResult(where, FAILED, why, max(0.0, elapsed - sum(s.seconds for s in stages)),
                                   tuple((tool or {}).get("command") or ()), (tool or {}).get("input")))
        for name in STAGES:
            if name not in done and name != where:
                out.append(StageResult(name, NOT_RUN, f"not reached: {outcome} during {where}"))
        order = {n: i for i, n in enumerate(STAGES)}
        out.sort(key=lambda s: order.get(s.stage, len(order)))
        error = f"{why} during {where}"
        tail = log.strip()[-20000:]
        if tail:
            error += "\n" + tail
        if peak and outcome == "oom":
            error += f"\n(peak resident memory seen: {peak // (1024 * 1024)} MiB)"
        return CompileResult(kernel=job["kernel"], spec=job["spec"].get("name", "default"), outcome=outcome,
                             stages=tuple(out), log=log, error=error, seconds=elapsed,
                             compiler_seconds=sum(s.seconds for s in out), signal=sig)

    def compile(self, job: dict) -> CompileResult:
        """The job's result; its work dirs are left for ``tidy`` (after the
        result is sent: the tool is waiting for it)."""
        result, workdir = self.attempt(job)
        self.litter.append(workdir)
        if result.signal is None or not job.get("retry_crashes", True):
            return self._finish(job, result, workdir)
        # triton-adapter-opt crashes now and then on identical input: a
        # crash is a verdict only if it happens again.
        first, first_dir = result, workdir
        result, workdir = self.attempt(job)
        self.litter.append(workdir)
        if (result.outcome, result.signal, result.failed_stage) == \
                (first.outcome, first.signal, first.failed_stage):
            result = _replace(result, log=result.log + "\n\n[tritriage] the crash reproduced on retry\n")
            return self._finish(job, result, workdir)
        note = (f"\n\n===== first attempt: {first.outcome} at {first.failed_stage or '?'}"
                f" (signal {first.signal}), did not reproduce =====\n{first.error}\n{first.log}")
        result = self._finish(job, _replace(result, flaky=True, log=result.log + note), workdir)
        art = job.get("artifacts_dir")
        if art:
            os.makedirs(art, exist_ok=True)
            _save_artifacts(art, first, first_dir, prefix="first-attempt.")
            result = _replace(result, artifacts_dir=art)
        return result

    def _finish(self, job, result, workdir) -> CompileResult:
        art = job.get("artifacts_dir")
        if not art or not (_is_failure(result) or result.flaky):
            return result
        os.makedirs(art, exist_ok=True)
        return _save_artifacts(art, result, workdir)

    def serve(self, stdin) -> None:
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                self.send({"op": "error", "error": f"bad message: {line[:200]}"})
                continue
            op = msg.get("op")
            if op == "exit":
                return
            if op == "hello":
                self.send({"op": "ready", "info": probe()})
            elif op == "compile":
                job = msg["job"]
                try:
                    result = self.compile(job)
                except Exception:  # noqa: BLE001 - the server must outlive any one job
                    result = CompileResult(kernel=job.get("kernel", "?"),
                                           spec=(job.get("spec") or {}).get("name", "default"),
                                           outcome="crash", error="worker error:\n" + traceback.format_exc())
                self.send({"op": "result", "id": job.get("id"), "result": result.to_dict()})
                self.tidy()
            else:
                self.send({"op": "error", "error": f"unknown op {op!r}"})


def _is_failure(result: CompileResult) -> bool:
    return result.outcome not in stages.PASSES


def _replace(result: CompileResult, **kw) -> CompileResult:
    import dataclasses
    return dataclasses.replace(result, **kw)


def _save_artifacts(art: str, result: CompileResult, workdir: str, prefix: str = "") -> CompileResult:
    """Copy the failing stage's input, its command line and the full log into ``art``."""
    stages = []
    for s in result.stages:
        if s.artifact and os.path.isfile(s.artifact) and s.status == FAILED:
            dest = os.path.join(art, prefix + os.path.basename(s.artifact))
            shutil.copyfile(s.artifact, dest)
            s = _replace_stage(s, artifact=dest)
            if s.command:
                with open(os.path.join(art, prefix + "command.txt"), "w", encoding="utf-8") as f:
                    f.write(_command_text(s.command, dest))
        elif s.artifact and not os.path.isfile(s.artifact):
            s = _replace_stage(s, artifact=None) if s.artifact.startswith(workdir) else s
        stages.append(s)
    with open(os.path.join(art, prefix + "log.txt"), "w", encoding="utf-8") as f:
        f.write(result.log)
        if result.error and result.error not in result.log:
            f.write("\n\n===== error =====\n" + result.error + "\n")
    return _replace(result, stages=tuple(stages), artifacts_dir=art) if not prefix else result


def _command_text(command, saved_input: str) -> str:
    """The exact command line, and the same command pointed at the saved input
    (triton-ascend's own files lived in a temporary directory)."""
    argv = list(command)
    again = list(argv)
    if len(again) > 1:
        again[1] = saved_input
    if "-o" in again[:-1]:
        i = again.index("-o")
        again[i + 1] = os.path.join(os.path.dirname(saved_input), "reproduced." + os.path.basename(again[i + 1]))
    return (f"# exact command line, as triton-ascend ran it:\n{shlex.join(argv)}\n"
            f"# the same on the saved input:\n{shlex.join(again)}\n")


def _replace_stage(s: StageResult, **kw) -> StageResult:
    import dataclasses
    return dataclasses.replace(s, **kw)


def _warm_up(target: str = "ascend") -> None:
    """Import what every compile needs, once, before any fork."""
    import triton  # noqa: F401
    import triton.language  # noqa: F401
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource  # noqa: F401
    from triton.compiler import code_generator  # noqa: F401
    from triton.compiler.compiler import make_backend
    make_backend(GPUTarget(*UPSTREAM_TARGET) if target == "cuda" else GPUTarget("npu", DEFAULT_ARCH, 0))
    _libc()  # every child uses it (_die_with_server): dlopen once, here
    try:
        import tritriage.sandbox.loader  # noqa: F401
    except Exception:
        pass  # reported per job as a loader error
    for name in filter(None, os.environ.get("TRITRIAGE_PRELOAD", "").split(",")):
        try:
            __import__(name)
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--probe" in argv:
        print(json.dumps(probe()))
        return 0
    # Claim the protocol channel, then point fd 1 at stderr so that no print
    # (ours, triton's, a kernel module's) can corrupt it.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(out)

    def on_term(signum, frame):
        server.kill_child()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tool decides when we stop
    try:
        _warm_up(argv[argv.index("--target") + 1] if "--target" in argv else "ascend")
    except Exception:  # noqa: BLE001
        server.send({"op": "ready", "info": probe(), "error": traceback.format_exc()})
    else:
        server.send({"op": "ready", "info": probe()})
    try:
        server.serve(sys.stdin)
    finally:
        server.kill_child()
        jobs_dir = os.environ.get("TRITRIAGE_JOBS_DIR")
        if jobs_dir and os.path.basename(jobs_dir).startswith("tritriage-worker-"):
            shutil.rmtree(jobs_dir, ignore_errors=True)  # the tool made it for this worker alone
    return 0


if __name__ == "__main__":
    sys.exit(main())

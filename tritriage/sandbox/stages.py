"""Compile one kernel with one spec on triton-ascend, stage by stage, and word the result.

The single home of this logic, shared three ways so that nothing drifts:

* the scan's worker (``worker.py``) runs ``compile_kernel`` in a forked child;
* every reproducer that ``tritriage repro`` writes embeds this file verbatim,
  so that its failure text -- and hence the classifier's class and
  fingerprint -- is the scan's by construction (``tests/test_repro.py``
  checks it on every failing vLLM kernel);
* the spec check (the worker's frontend-only job, ``worker.check_job``) stops after the frontend.

Hence the constraints: the standard library only at import time (the
reproducer has no tritriage, and triton is imported where it is needed), and
plain dicts at the boundary (a stage is ``StageResult``'s dict form, a result
``CompileResult``'s, without kernel and spec names).  What a compile reports
as it goes (the worker writes it to a file its server reads even after a
kill; the reproducer prints it) goes through a ``Reporter``.
"""

import os
import shutil
import signal
import time
import traceback

# Compiler stages in pipeline order.  This file is the one home of these
# names (``tritriage.model`` re-exports them): it is embedded verbatim in
# reproducers, so it cannot import them from anywhere else.
# frontend, ttir and linalg run wherever triton-ascend installs; binary is
# bishengir-compile's pipeline (CANN's, or the PyPI build from ascendnpu-ir);
# hivmc, bishengir's last step, needs CANN; launch needs an NPU.
STAGES = ("frontend", "ttir", "linalg", "binary", "hivmc", "launch")
# The stages a compile can pass through (a scan never launches).
COMPILE_STAGES = STAGES[:-1]
# triton-ascend's banners for the two external tools' stages.
STAGE_BANNERS = {"linalg": "ConvertTritonIRToLinalgIR", "binary": "ConvertLinalgRToBinary"}
# Stage status values.
PASSED, FAILED, NOT_RUN = "passed", "failed", "not-run"
# How far one (kernel, spec) got; see ``CompileResult``.  PASSES: every stage
# that could run here passed.  FAIL_OUTCOMES: the kernel's or the compiler's
# failure (not the tool's: spec-error is the tool's).
PASSES = ("passed", "passed-to-binary", "passed-to-linalg")
FAIL_OUTCOMES = ("failed", "loader-error", "timeout", "crash", "oom")
# Every end state, in the order summaries list them.
OUTCOMES = PASSES + ("failed", "loader-error", "spec-error", "timeout", "crash", "oom")
DEFAULT_ARCH = "Ascend910B"
CANN_MISSING = "CANN not found (ASCEND_HOME_PATH is not set)"
# bishengir-compile wants an SoC where triton-ascend takes a family name: the
# family's reference part (every 910B part has the same AI core and 192 KB of
# unified buffer, which is what decides a binary-stage verdict).
SOC_OF_FAMILY = {"Ascend910B": "Ascend910B3", "Ascend910_93": "Ascend910_9382"}
# Unified buffer of one AI core, in bits, by SoC prefix (what bishengir-compile's
# "bits available" says for these parts).
UB_BITS = (("Ascend910_95", 2097152), ("Ascend910B", 1572864), ("Ascend910_93", 1572864))
HIVMC_NOT_RUN = ("CANN's hivmc is not installed: ISA code generation not run (a stand-in hivmc answered "
                 "bishengir-compile's call; no object file was made)")
LAUNCH_NOT_RUN = "a scan compiles only: launching needs an NPU and torch_npu (`tritriage test` runs kernels there)"
# Said under a failed binary stage run without CANN: which releases met.
PAIRING_LINE = "[tritriage] binary stage: bishengir-compile %s from %s, given triton-ascend %s's linalg output"
# Said under a frontend failure when the kernel calls a dispatch stub of
# triton (``triton.language.extra.libdevice.exp``: a body of ``...``) that this
# backend's module map does not replace: the call returns None there, and the
# error that follows ("'NoneType' object has no attribute ...") is the
# backend's gap, not the kernel's or the spec's.  patterns.yaml reads it.
UNMAPPED_STUB_LINE = "[tritriage] %s calls %s, a dispatch stub this triton-ascend does not implement (its call returns None)"
# What the stand-in hivmc prints, so that no log can pass it off as CANN's.
HIVMC_STANDIN_BANNER = "[tritriage] stand-in hivmc, not CANN's: no ISA code generated, no object file written"

# triton-ascend's stage names (the keys of backend.add_stages) -> tritriage's.
STAGE_OF_EXT = {"ttir": "ttir", "ttadapter": "linalg", "npubin": "binary"}
# The external tool that each stage runs.
TOOL_OF_STAGE = {"linalg": "triton-adapter-opt", "binary": "bishengir-compile"}
# Words of a compile cut by its stage budget (the hang policy,
# compile/hangs.py): the scan finds suspected hangs by them.
HANG_SUSPECTED = "hang suspected"
# MLIRCompilationError's stage names, for the black-box fallback.
STAGE_OF_BANNER = {**{b: st for st, b in STAGE_BANNERS.items()}, "MLIRCompile": "ttir"}
# Text that says a process ran out of memory, in the output of a failed compile.
OOM_MARKERS = ("std::bad_alloc", "MemoryError", "out of memory", "Cannot allocate memory",
               "LLVM ERROR: out of memory")


class SpecError(Exception):
    pass


# --------------------------------------------------------------------------
# text


# Control characters (a garbage-printing tool) would garble terminals and
# reports; keep them visible as escapes instead.
_CONTROL = {c: "\\x%02x" % c for c in range(32) if chr(c) not in "\n\t"}
_CONTROL[127] = "\\x7f"


def clean_text(data):
    """Tool output as text that SQLite, JSON and terminals accept."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return data.translate(_CONTROL)


def read_from(path, offset=0, limit=2_000_000):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return ""
    return clean_text(data)


def signame(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def exception_text(e, jit_fn=None):
    """An exception as the user needs it: triton's CompilationError already
    carries the kernel source and the position, its traceback is the code
    generator's own recursion; other exceptions keep their traceback, minus
    this file's frames."""
    try:
        from triton.compiler.errors import CompilationError
    except Exception:  # noqa: BLE001
        CompilationError = ()  # noqa: N806
    if CompilationError and isinstance(e, CompilationError):
        # The full traceback still goes to the log, where nothing is lost.
        traceback.print_exception(type(e), e, e.__traceback__)
        text = "".join(traceback.format_exception_only(type(e), e)).rstrip()
        where = compile_error_location(e, jit_fn)
        return text + ('\n  File "%s", line %d, in %s' % where if where else "")
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
    return "".join(te.format()).rstrip()


def compile_error_location(e, jit_fn):
    """File, line and function of a CompilationError: triton gives the line
    within the function's source only, and the function may be a helper."""
    src, node = getattr(e, "src", None), getattr(e, "node", None)
    if jit_fn is None or not src or not hasattr(node, "lineno"):
        return None
    from triton.runtime.jit import JITFunction
    candidates = [jit_fn] + [v for v in getattr(jit_fn, "__globals__", {}).values() if isinstance(v, JITFunction)]
    for cand in candidates:
        if getattr(cand, "src", None) != src:
            continue
        try:
            import inspect
            lines, first = inspect.getsourcelines(cand.fn)
            def_offset = next(i for i, line in enumerate(lines) if line.lstrip().startswith("def "))
            return cand.fn.__code__.co_filename, first + def_offset + node.lineno - 1, cand.__name__
        except Exception:  # noqa: BLE001 - a location is a nicety
            return None
    return None


def failure_text(e, printed, jit_fn=None):
    """The full text of a stage failure and the tool's signal if it died by one.

    ``printed`` is what the stage printed, or a function that reads it: only
    an in-process failure needs it (MLIR passes print their diagnostics to
    fd 2, not into the exception).
    """
    import subprocess

    if isinstance(e, subprocess.CalledProcessError):
        code = e.returncode
        tool = os.path.basename(str(e.cmd[0])) if isinstance(e.cmd, (list, tuple)) and e.cmd else "tool"
        sig = -code if code is not None and code < 0 else None
        if sig:
            head = "%s was killed by signal %d (%s)" % (tool, sig, signame(sig))
        else:
            head = "%s exited with status %s" % (tool, code)
        parts = [head]
        err = clean_text(e.stderr).rstrip()
        out = clean_text(e.output).rstrip()
        if err:
            parts.append(err)
        if out:
            parts.append("[stdout]\n" + out)
        return "\n".join(parts), sig
    printed = (printed() if callable(printed) else printed or "").strip()
    text = exception_text(e, jit_fn)
    if printed:
        text = printed + "\n" + text
    return text, None


# --------------------------------------------------------------------------
# the environment


def cann_status(env=None):
    """Where CANN's ``bishengir-compile`` is, or why the binary stage can't run."""
    env = os.environ if env is None else env
    home = env.get("ASCEND_HOME_PATH", "")
    found = shutil.which("bishengir-compile", path=env.get("PATH"))
    if not found and home:
        for sub in ("bin", "compiler/bin", "tools/bishengir/bin"):
            cand = os.path.join(home, sub, "bishengir-compile")
            if os.access(cand, os.X_OK):
                found = cand
                break
    if not home:
        return {"home": None, "bishengir": found, "available": False, "reason": CANN_MISSING}
    if not found:
        return {"home": home, "bishengir": None, "available": False,
                "reason": "CANN found at %s but bishengir-compile is not on PATH" % home}
    return {"home": home, "bishengir": found, "available": True, "reason": "", "version": cann_version(home)}


def cann_version(home):
    for rel in ("version.cfg", "compiler/version.info", "ascend_toolkit_install.info", "version.info"):
        path = os.path.join(home, rel)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition("=")
                    if key.strip().lower() in ("version", "toolkit_version", "runtime_running_version"):
                        return value.strip().strip('"[]').split(":")[-1]
        except OSError:
            continue
    return None


def bishengir_version(path):
    """``bishengir-compile 1.2.0`` from its ``--version``, or None."""
    import subprocess
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].startswith("bishengir-compile"):
            return words[1]
    return None


def _pypi_bishengir():
    """bishengir-compile from the ``ascendnpu-ir`` wheel, found without importing it."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("ascendnpuir")
    except (ImportError, ValueError):
        return None, None
    if spec is None or not spec.submodule_search_locations:
        return None, None
    for root in spec.submodule_search_locations:
        cand = os.path.join(root, "bin", "bishengir-compile")
        if os.access(cand, os.X_OK):
            version = None
            try:
                from importlib import metadata
                version = metadata.version("ascendnpu-ir")
            except Exception:  # noqa: BLE001
                pass
            return cand, version
    return None, None


def binary_plan(explicit=None, env=None):
    """How the binary stage runs here, as a dict:

    ``mode``: "cann" (CANN's toolchain runs binary and hivmc), "bishengir"
    (bishengir-compile without CANN: its pipeline runs, a stand-in answers its
    final hivmc call) or None (not run, ``reason`` says why); ``bishengir``:
    its path; ``version``; ``source``: where it came from.
    ``explicit``: a bishengir-compile the user named (``--bishengir``), or
    "none" to leave the binary stage out.
    """
    env = os.environ if env is None else env
    explicit = explicit or env.get("TRITRIAGE_BISHENGIR") or None
    if explicit == "none":
        return {"mode": None, "bishengir": None, "version": None, "source": None,
                "reason": "the binary stage was turned off (--bishengir none)"}
    cann = cann_status(env)
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return {"mode": None, "bishengir": path, "version": None, "source": "--bishengir",
                    "reason": "--bishengir %s: not an executable file" % explicit}
        mode = "cann" if cann["available"] else "bishengir"
        return {"mode": mode, "bishengir": path, "version": bishengir_version(path), "source": "--bishengir",
                "reason": ""}
    if cann["available"]:
        return {"mode": "cann", "bishengir": cann["bishengir"], "version": bishengir_version(cann["bishengir"]),
                "source": "CANN %s" % (cann.get("version") or ""), "reason": ""}
    path, wheel = _pypi_bishengir()
    if path:
        return {"mode": "bishengir", "bishengir": path, "version": bishengir_version(path),
                "source": "ascendnpu-ir %s (PyPI)" % (wheel or "?"), "reason": ""}
    return {"mode": None, "bishengir": None, "version": None, "source": None,
            "reason": CANN_MISSING + " and no bishengir-compile (pip install ascendnpu-ir)"}


def hivmc_standin(workdir):
    """A directory holding a stand-in ``hivmc``, and the file it touches when called.

    bishengir-compile's last step runs ``hivmc`` (CANN's ISA code generator)
    from PATH; without CANN this stand-in answers instead, says so, and makes
    nothing, so that the pipeline before it runs to the end and nothing can
    mistake its output for an object file."""
    bindir = os.path.join(workdir, "standin-bin")
    os.makedirs(bindir, exist_ok=True)
    mark = os.path.join(workdir, "hivmc-standin-called")
    path = os.path.join(bindir, "hivmc")
    # It keeps its input, bishengir-compile's optimized HIVM module: where the
    # memory plan (what the kernel takes of the unified buffer) can be read.
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "# %s\n"
                'if [ "$1" = "--version" ]; then echo "hivmc (tritriage stand-in: not CANN)"; exit 0; fi\n'
                'echo "%s" >&2\n'
                'echo "$@" > "%s"\n'
                'case "$1" in *.mlir) cp "$1" "%s" 2>/dev/null;; esac\n'
                "exit 0\n" % (HIVMC_STANDIN_BANNER, HIVMC_STANDIN_BANNER, mark, hivm_module_path(workdir)))
    os.chmod(path, 0o755)
    return bindir, mark


def hivm_module_path(workdir):
    return os.path.join(workdir, "kernel.hivm.opt.mlir")


def ub_bits_used(hivm_text):
    """Bits of unified buffer the memory plan uses: the end of the furthest UB
    buffer placed (``hivm.hir.pointer_cast(%c<offset>_i64, ...) : memref<...ub>``)."""
    import re
    sizes = {"f32": 4, "i32": 4, "f16": 2, "bf16": 2, "i16": 2, "i8": 1, "i1": 1, "f64": 8, "i64": 8,
             "f8E4M3FN": 1, "f8E5M2": 1, "ui8": 1, "ui16": 2, "ui32": 4}
    end = None
    for m in re.finditer(r"pointer_cast\(([^)]*)\)\s*:\s*memref<([0-9x]*?)x?([a-zA-Z]\w*)[,>][^\n]*?address_space<ub>",
                         hivm_text):
        offsets = [int(o) for o in re.findall(r"%c(\d+)(?:_i64)?", m.group(1))]
        if not offsets:
            continue
        n = 1
        for d in (m.group(2) or "").split("x"):
            if d.isdigit():
                n *= int(d)
        size = n * sizes.get(m.group(3), 4)
        top = max(offsets) + size
        end = top if end is None else max(end, top)
    return None if end is None else end * 8


def ub_bits_available(arch):
    soc = SOC_OF_FAMILY.get(arch, arch) or ""
    for prefix, bits in UB_BITS:
        if soc.startswith(prefix):
            return bits
    return None


def use_local_bishengir(backend, plan, arch, workdir):
    """Make triton-ascend's own binary stage run on ``plan``'s bishengir-compile.

    triton-ascend builds the command itself (the options its A2/A3 path
    passes), so the verdict is that of its real call.  It needs two things
    CANN gives it: bishengir-compile on PATH (under that very name) and
    ``NPUUtils().get_arch()``, a native helper built against CANN: patched
    through the backend's own module globals, in a compile process that is
    thrown away afterwards.  Returns the stand-in hivmc's marker file."""
    bindir, mark = hivmc_standin(workdir)
    link_dir = os.path.join(workdir, "bishengir-bin")
    os.makedirs(link_dir, exist_ok=True)
    link = os.path.join(link_dir, "bishengir-compile")
    if not os.path.exists(link):
        os.symlink(plan["bishengir"], link)
    os.environ["PATH"] = os.pathsep.join([link_dir, bindir, os.environ.get("PATH", "")])
    soc = SOC_OF_FAMILY.get(arch, arch)

    class _Arch:
        def get_arch(self):
            return soc

    type(backend).add_stages.__globals__["NPUUtils"] = _Arch
    return mark


# --------------------------------------------------------------------------
# the kernel and its spec


def load(load_kernel, checkout, rel_file, qualname):
    """(jit function, None), or (None, the loader's failure text)."""
    try:
        return unwrap(load_kernel(checkout, rel_file, qualname)), None
    except SpecError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - LoaderError and anything the checkout's code raises
        return None, str(e) if type(e).__name__ == "LoaderError" else exception_text(e)


def unwrap(fn):
    # Autotuner / Heuristics wrap the JITFunction in ``.fn``.
    from triton.runtime.jit import JITFunction
    seen = 0
    while not isinstance(fn, JITFunction) and hasattr(fn, "fn") and seen < 8:
        fn = fn.fn
        seen += 1
    if not isinstance(fn, JITFunction):
        raise SpecError("%r is not a triton.jit function" % (fn,))
    return fn


def tl_value(value):
    """Spec constexpr values come from JSON: ``"tl.float16"`` means the dtype."""
    if isinstance(value, str) and (value.startswith("tl.") or value.startswith("triton.language.")):
        import triton.language as tl
        obj = tl
        for part in value.split(".")[1 if value.startswith("tl.") else 2:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return value
        return obj
    return value


def split_spec(fn, spec, check_type=None):
    """(signature, constants) of ``fn`` as ``spec`` says: each parameter's
    type, or "constexpr" and its value; SpecError naming every mismatch.
    ``check_type`` raises on a type string the compiler cannot read."""
    sig_in = dict(spec.get("signature") or {})
    const_in = dict(spec.get("constexprs") or {})
    names = list(fn.arg_names)
    unknown = sorted((set(sig_in) | set(const_in)) - set(names))
    if unknown:
        raise SpecError("spec names parameters the kernel does not have: %s (kernel parameters: %s)"
                        % (", ".join(unknown), ", ".join(names)))
    signature, constants, problems = {}, {}, []
    for p in fn.params:
        name = p.name
        if p.is_constexpr or name in const_in:
            if name in const_in:
                constants[name] = tl_value(const_in[name])
            elif getattr(p, "has_default", False):
                constants[name] = p.default
            else:
                problems.append("no value for constexpr %s" % name)
                continue
            signature[name] = "constexpr"
            continue
        ty = sig_in.get(name)
        if ty is None:
            problems.append("no type for parameter %s" % name)
            continue
        if check_type is not None:
            try:
                check_type(ty)
            except Exception as e:  # noqa: BLE001 - triton raises assorted errors for bad type strings
                problems.append("bad type %r for %s: %s" % (ty, name, e))
                continue
        signature[name] = ty
    if problems:
        raise SpecError("; ".join(problems))
    return signature, constants


def build_source(fn, spec):
    """An ``ASTSource`` for ``fn`` specialized as ``spec`` says, or SpecError."""
    from triton.compiler import ASTSource
    from triton.compiler.code_generator import str_to_ty

    signature, constants = split_spec(fn, spec, check_type=str_to_ty)
    names = list(fn.arg_names)
    attrs = None
    options = spec.get("options") or {}
    hints = {}
    for name in options.get("divisible_by_16") or ():
        if name in names:
            hints[names.index(name)] = 16
    for name in options.get("equal_to_1") or ():
        if name in names:
            hints[names.index(name)] = 1
    if hints:
        # The backend's own descriptor class: ASTSource's default attrs is one.
        attrs = type(ASTSource(fn, signature={}).attrs).from_hints(hints)
    return ASTSource(fn, signature=signature, constants=constants, attrs=attrs)


def compile_options(spec):
    skip = ("divisible_by_16", "equal_to_1")
    return {k: v for k, v in (spec.get("options") or {}).items() if k not in skip}


# --------------------------------------------------------------------------
# what a compile reports as it goes


class Output:
    """What a stage printed: the worker's child already sends fds 1 and 2 to
    a log file, so the text is that file from where the stage began."""

    def __init__(self, log_path):
        self.log_path = log_path
        try:
            self.start = os.path.getsize(log_path) if log_path else 0
        except OSError:
            self.start = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def text(self):
        # Read on demand: only a failure needs it, and most stages pass.
        return read_from(self.log_path, self.start) if self.log_path else ""


class Reporter:
    """Hears what a compile does; subclasses record or print it.

    ``tool`` is the current stage's external tool call (command, saved input),
    ``adapter`` a stand-in for ``triton-adapter-opt``, ``tool_env`` maps a
    tool to the environment variable that may name another build of it.
    """

    def __init__(self, workdir, log_path=None, adapter=None, tool_env=None):
        self.workdir = workdir
        self.log_path = log_path
        self.adapter = adapter
        self.tool_env = tool_env or {}
        self.stage = None
        self.tool = None
        self.tools = 0  # external tool calls so far

    def start(self, stage):
        self.stage = stage
        self.tool = None

    def done(self, result):
        self.stage = None

    def skipped(self, result):
        pass

    def failed(self, stage, e):
        pass

    def tool_call(self, argv, saved_input, out_path, err_path, stage):
        self.tool = {"command": argv, "input": saved_input, "stage": stage}

    def capture(self):
        return Output(self.log_path)


def stage_result(stage, status, reason="", seconds=0.0, command=(), artifact=None, metrics=None):
    return {"stage": stage, "status": status, "reason": reason, "seconds": seconds,
            "command": list(command), "artifact": artifact, "metrics": dict(metrics or {})}


# `bishengir-compile --help`, which triton-ascend runs two or three times per
# compile to choose options (13 ms each, a tenth of a typical binary stage).
# One binary always answers the same: the worker's server asks once
# (``remember_help``) and every compile child it forks inherits the answer.
_HELP: dict = {}


def remember_help(path: str) -> None:
    import subprocess

    real = os.path.realpath(path)
    if real not in _HELP:
        try:
            _HELP[real] = subprocess.run([real, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError:
            pass  # the compile meets (and reports) the same problem


def _helped(cmd, kwargs):
    """The remembered answer to ``cmd`` when it is a plain ``TOOL --help``, else None."""
    import subprocess

    if not isinstance(cmd, (list, tuple)) or list(cmd[1:]) != ["--help"]:
        return None
    hit = _HELP.get(os.path.realpath(str(cmd[0])))
    if hit is None:
        return None
    text = kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding")
    out, err = (hit.stdout.decode(errors="replace"), hit.stderr.decode(errors="replace")) if text else \
        (hit.stdout, hit.stderr)
    return subprocess.CompletedProcess(list(cmd), hit.returncode, out, err)


def install_tool_hook(rep):
    """Record each external tool call: exact command line and a copy of its input.

    triton-ascend calls the tools with ``subprocess.run`` on files inside a
    TemporaryDirectory that is gone by the time the stage has failed, so the
    input must be copied before the tool runs.  The hook is also where a
    stand-in or another build replaces a tool (triton-adapter-opt's path is
    fixed to the package directory).  The compile's process is thrown away
    afterwards, so patching the module is harmless.
    """
    import subprocess

    real_run = subprocess.run
    inputs = os.path.join(rep.workdir, "inputs")

    def run(cmd, *args, **kwargs):
        stage = rep.stage
        if stage == "compile" and isinstance(cmd, (list, tuple)) and cmd:
            stage = {tool: st for st, tool in TOOL_OF_STAGE.items()}.get(os.path.basename(str(cmd[0])))
        if stage not in TOOL_OF_STAGE or not isinstance(cmd, (list, tuple)) or "--help" in cmd:
            helped = _helped(cmd, kwargs) if not args else None
            return helped if helped is not None else real_run(cmd, *args, **kwargs)
        argv = [os.fspath(c) for c in cmd]
        tool = os.path.basename(argv[0])
        override = os.environ.get(rep.tool_env[tool]) if tool in rep.tool_env else None
        if override or (rep.adapter and tool == "triton-adapter-opt"):
            argv[0] = override or rep.adapter
        elif os.path.islink(argv[0]) and os.path.realpath(os.path.dirname(argv[0])).startswith(
                os.path.realpath(rep.workdir)):
            # The link use_local_bishengir made lives in this compile's work
            # directory: record (and run) the compiler itself.
            argv[0] = os.path.realpath(argv[0])
        saved = None
        if len(argv) > 1 and os.path.isfile(argv[1]):
            os.makedirs(inputs, exist_ok=True)
            saved = os.path.join(inputs, os.path.basename(argv[1]))
            shutil.copyfile(argv[1], saved)
        # The tool writes to files, not pipes, so that what it printed before
        # a timeout or a kill is still there for the worker's server to read.
        rep.tools += 1
        n = rep.tools
        out_path = os.path.join(rep.workdir, "tool%d.stdout" % n)
        err_path = os.path.join(rep.workdir, "tool%d.stderr" % n)
        rep.tool_call(argv, saved, out_path, err_path, stage)
        check = kwargs.pop("check", False)
        kwargs.pop("capture_output", None)
        kwargs.pop("stdout", None)
        kwargs.pop("stderr", None)
        text = kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding")
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            done = real_run(argv, *args, stdout=fo, stderr=fe, **kwargs)
        with open(out_path, "rb") as fo, open(err_path, "rb") as fe:
            out, err = fo.read(), fe.read()
        if text:
            out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and done.returncode:
            raise subprocess.CalledProcessError(done.returncode, argv, out, err)
        return subprocess.CompletedProcess(argv, done.returncode, out, err)

    subprocess.run = run


# --------------------------------------------------------------------------
# compiling


def outcome_of(stages):
    status = {s["stage"]: s["status"] for s in stages}
    if FAILED in status.values():
        return "failed"
    if all(status.get(st) == PASSED for st in COMPILE_STAGES):
        return "passed"
    if status.get("binary") == PASSED:
        return "passed-to-binary"
    return "passed-to-linalg"


def result(stages, outcome, error="", sig=None, t_start=None):
    """The result dict; stages that never started are listed as not run, so
    that every result says something about every stage."""
    stages = list(stages)
    seen = {s["stage"] for s in stages}
    why = "not reached: " + ("%s failed" % stages[-1]["stage"] if stages and stages[-1]["status"] == FAILED
                             else outcome)
    for name in STAGES:
        if name not in seen:
            stages.append(stage_result(name, NOT_RUN, why))
    order = {n: i for i, n in enumerate(STAGES)}
    stages.sort(key=lambda s: order.get(s["stage"], len(order)))
    return {"outcome": outcome, "stages": stages, "error": error, "signal": sig,
            "seconds": time.time() - t_start if t_start is not None else 0.0,
            "compiler_seconds": sum(s["seconds"] for s in stages)}


def unmapped_stub_calls(fn, module_map, limit=64):
    """(caller, stub) for each call, in ``fn`` or the jit functions it reaches,
    to a function of triton's own package whose body is only ``...`` and that
    ``module_map`` (the backend's replacements, as the code generator applies
    them) leaves as it is.  Upstream backends map such stubs to their
    libdevice; triton-ascend 3.2.0 maps none."""
    import ast
    import dis
    import inspect
    import textwrap
    import types

    from triton.runtime.jit import JITFunction

    def resolve(node, scope):
        if isinstance(node, ast.Name):
            return scope.get(node.id)
        if isinstance(node, ast.Attribute):
            base = resolve(node.value, scope)
            return getattr(base, node.attr, None) if base is not None else None
        return None

    def is_stub(obj):
        if not isinstance(obj, types.FunctionType) or not (obj.__module__ or "").startswith("triton."):
            return False
        mapped = module_map.get(obj.__module__)
        if mapped is not None and hasattr(mapped, obj.__name__):
            return False
        # A body of only ``...``, ``pass`` or a docstring compiles to "return
        # None": read the bytecode, not the source (tokenizing the source
        # file took tens of milliseconds per failed compile).
        try:
            code = inspect.unwrap(obj).__code__
        except Exception:  # noqa: BLE001 - no code, no verdict
            return False
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_CONST", "RETURN_CONST"):
                if ins.argval is not None:
                    return False
            elif ins.opname not in ("RESUME", "NOP", "RETURN_VALUE", "CACHE"):
                return False
        return True

    try:
        todo = [unwrap(fn)]
    except SpecError:
        return []
    found, seen = [], set()
    while todo and len(seen) < limit:
        f = todo.pop()
        if id(f) in seen or not isinstance(f, JITFunction):
            continue
        seen.add(id(f))
        try:
            tree = ast.parse(textwrap.dedent(f.src))
        except Exception:  # noqa: BLE001
            continue
        scope = getattr(f.fn, "__globals__", {})
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                obj = resolve(node.func, scope)
                if isinstance(obj, JITFunction):
                    todo.append(obj)
                elif is_stub(obj):
                    hit = (f.__name__, "%s.%s" % (obj.__module__, obj.__name__))
                    if hit not in found:
                        found.append(hit)
    return found


def compile_kernel(fn, spec, rep, arch=None, binary=None, blackbox=False, stop_after=None):
    """Specialize ``fn`` as ``spec`` says and drive triton-ascend's stages one
    by one (``stop_after`` a stage: only up to it); a result dict.

    ``binary`` is ``binary_plan()``'s answer for the machine that compiles:
    how the binary stage runs, if at all."""
    binary = binary or {"mode": None, "reason": CANN_MISSING}
    t_start = time.time()
    stages = []

    def finish(outcome, error="", sig=None):
        return result(stages, outcome, error, sig, t_start)

    try:
        src = build_source(fn, spec)
    except SpecError as e:
        return finish("spec-error", str(e))

    import triton  # noqa: F401
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    target = GPUTarget("npu", arch or DEFAULT_ARCH, 0)
    backend = make_backend(target)
    try:
        options = backend.parse_options(compile_options(spec))
    except Exception as e:  # noqa: BLE001
        return finish("spec-error", "bad compile options %s: %s: %s" % (compile_options(spec), type(e).__name__, e))
    install_tool_hook(rep)
    try:
        pipeline = {}
        backend.add_stages(pipeline, options)
        context = ir.context()
        ir.load_dialects(context)
        backend.load_dialects(context)
        codegen_fns, module_map = backend.get_codegen_implementation(), backend.get_module_map()
        if not callable(getattr(src, "make_ir", None)) or not pipeline or blackbox:
            raise AttributeError("no make_ir / stages (or the black box was asked for)")
    except (AttributeError, TypeError):
        # Another triton-ascend whose internals differ: compile as a black box.
        return _compile_blackbox(src, target, compile_options(spec), rep, fn, stages, finish, binary, backend,
                                 arch)

    def run_stage(name, fn_, *args):
        rep.start(name)
        t0 = time.time()
        cap = rep.capture()
        try:
            with cap:
                out = fn_(*args)
        except Exception as e:  # noqa: BLE001 - a stage failure is a verdict, whatever its type
            rep.failed(name, e)
            text, sig = failure_text(e, lambda: cap.text, fn)
            tool = rep.tool or {}
            stages.append(stage_result(name, FAILED, text, time.time() - t0, tool.get("command") or (),
                                       tool.get("input")))
            rep.done(stages[-1])
            return None, e, text, sig
        tool = rep.tool or {}
        stages.append(stage_result(name, PASSED, "", time.time() - t0, tool.get("command") or ()))
        rep.done(stages[-1])
        return out, None, "", None

    def failed(e, text, sig):
        if isinstance(e, MemoryError) or any(m in text for m in OOM_MARKERS[:2]):
            return finish("oom", text, sig)
        return finish("failed", text, sig)

    # -- frontend: Python AST to TTIR
    def frontend():
        module = src.make_ir(options, codegen_fns, module_map, context)
        # triton.compile also hashes the source (before make_ir, but make_ir's
        # errors say more), which resolves every global the kernel reaches: a
        # failure there fails the compile too.
        return src.hash(), module

    out, err, text, sig = run_stage("frontend", frontend)
    if err is not None:
        notes = [UNMAPPED_STUB_LINE % hit for hit in unmapped_stub_calls(fn, module_map)]
        if notes:
            text = text + "\n" + "\n".join(notes)
            stages[-1] = dict(stages[-1], reason=text)
        return failed(err, text, sig)
    if stop_after == "frontend":
        return finish(outcome_of(stages))
    key, module = out

    metadata = {"hash": key, "target": target, **options.__dict__}
    standin_mark = None
    for ext, stage_fn in pipeline.items():
        name = STAGE_OF_EXT.get(ext, ext)
        if name == "binary" and not binary.get("mode"):
            stages.append(stage_result("binary", NOT_RUN, binary.get("reason") or CANN_MISSING))
            rep.skipped(stages[-1])
            continue
        if name == "binary" and binary["mode"] == "bishengir":
            standin_mark = use_local_bishengir(backend, binary, arch or DEFAULT_ARCH, rep.workdir)
        module_out, err, text, sig = run_stage(name, stage_fn, module, metadata)
        if err is not None and name == "binary" and standin_mark and _standin_only_missed_object(err, standin_mark):
            # bishengir-compile ran its whole pipeline and handed the result to
            # the stand-in hivmc, which makes no object file by design: the
            # binary stage passed, ISA code generation did not run.
            last = stages[-1]
            stages[-1] = stage_result("binary", PASSED, "", last["seconds"], last["command"],
                                      metrics=_ub_metrics(rep.workdir, arch or DEFAULT_ARCH))
            err = None
            module_out = None
        if err is not None and name == "binary" and binary.get("mode") == "bishengir":
            # Which two releases met: a failure of the pairing is the environment's.
            text += "\n" + PAIRING_LINE % (binary.get("version") or "?", binary.get("source") or "?",
                                           _triton_ascend_version())
            stages[-1] = dict(stages[-1], reason=text)
        if err is not None:
            if name == "ttir":
                # make_ttir rewrote the module in place; its input is the
                # frontend's output, which a second frontend run gives again
                # (cheaper than printing every module in case one fails).
                saved = _save_frontend_ir(src, options, codegen_fns, module_map, backend, rep.workdir)
                if saved:
                    stages[-1] = stage_result(name, FAILED, stages[-1]["reason"], stages[-1]["seconds"], (), saved)
            return failed(err, text, sig)
        module = module_out
        if name == stop_after:
            break
    try:
        context.disable_multithreading()
    except Exception:
        pass
    if stop_after is None:
        _after_binary(stages, binary, standin_mark)
    return finish(outcome_of(stages))


def _triton_ascend_version():
    try:
        from importlib import metadata
        return metadata.version("triton-ascend")
    except Exception:  # noqa: BLE001
        import triton
        return getattr(triton, "__version__", "?")


def _ub_metrics(workdir, arch):
    try:
        with open(hivm_module_path(workdir), encoding="utf-8", errors="replace") as f:
            used = ub_bits_used(f.read())
    except OSError:
        return {}
    available = ub_bits_available(arch)
    return {k: v for k, v in (("ub_bits", used), ("ub_available_bits", available)) if v is not None}


def _standin_only_missed_object(err, mark):
    """The binary stage's only failure is the object file the stand-in hivmc never makes."""
    return isinstance(err, FileNotFoundError) and os.path.exists(mark) and \
        str(getattr(err, "filename", "") or "").endswith((".o", ".so"))


def _after_binary(stages, binary, standin_mark):
    """hivmc and launch, which a compile here reaches only in name."""
    status = {s["stage"]: s["status"] for s in stages}
    if status.get("binary") == PASSED:
        if binary.get("mode") == "cann":
            # CANN's bishengir-compile runs hivmc itself, inside the binary stage.
            stages.append(stage_result("hivmc", PASSED, ""))
        else:
            stages.append(stage_result("hivmc", NOT_RUN, HIVMC_NOT_RUN))
        stages.append(stage_result("launch", NOT_RUN, LAUNCH_NOT_RUN))
    elif status.get("binary") == NOT_RUN:
        stages.append(stage_result("hivmc", NOT_RUN, binary.get("reason") or CANN_MISSING))
        stages.append(stage_result("launch", NOT_RUN, LAUNCH_NOT_RUN))


def _save_frontend_ir(src, options, codegen_fns, module_map, backend, workdir):
    try:
        from triton._C.libtriton import ir
        context = ir.context()
        ir.load_dialects(context)
        backend.load_dialects(context)
        text = str(src.make_ir(options, codegen_fns, module_map, context))
    except Exception:  # noqa: BLE001 - an artifact is a nicety; the verdict stands
        return None
    os.makedirs(os.path.join(workdir, "inputs"), exist_ok=True)
    saved = os.path.join(workdir, "inputs", "kernel.frontend.ttir.mlir")
    with open(saved, "w", encoding="utf-8") as f:
        f.write(text)
    return saved


def _compile_blackbox(src, target, options, rep, jit_fn, stages, finish, binary, backend, arch):
    """``triton.compile`` in one piece; the stages are told apart afterwards by
    the exception (MLIRCompilationError names its stage) and the tools called."""
    import triton

    binary_reason = binary.get("reason")
    mark = None
    if binary.get("mode") == "bishengir":
        mark = use_local_bishengir(backend, binary, arch or DEFAULT_ARCH, rep.workdir)
    rep.start("compile")
    t0 = time.time()
    cap = rep.capture()
    failed_at, error, sig = None, None, None
    try:
        with cap:
            triton.compile(src, target=target, options=options)
    except Exception as e:  # noqa: BLE001
        rep.failed("compile", e)
        error, sig = failure_text(e, lambda: cap.text, jit_fn)
        banner = getattr(e, "stage_name", None)
        if banner in STAGE_OF_BANNER:
            failed_at = STAGE_OF_BANNER[banner]
            error = (cap.text.strip() + "\n" + str(e)).strip()
        elif rep.tool:
            failed_at = rep.tool.get("stage") or "linalg"
        else:
            # compile() wraps every stage's error in MLIRCompilationError; what
            # is raised bare comes from before the stages: the frontend (make_ir,
            # or the cache key, which resolves the kernel's globals).
            failed_at = "frontend"
    seconds = time.time() - t0
    tool = rep.tool or {}
    if failed_at == "binary" and mark and os.path.exists(mark) and "No such file or directory" in (error or "") \
            and (".o'" in error or ".so'" in error):
        failed_at, error, sig = None, None, None  # only the stand-in's missing object file: see compile_kernel
    cann_missing = failed_at == "binary" and not binary.get("mode")
    for name in STAGES[:STAGES.index("binary") + 1]:
        if failed_at is not None and name == failed_at:
            if cann_missing:
                stages.append(stage_result(name, NOT_RUN, binary_reason or CANN_MISSING))
            else:
                stages.append(stage_result(name, FAILED, error, seconds, tool.get("command") or (),
                                           tool.get("input")))
            break
        stages.append(stage_result(name, PASSED, "", seconds if name == "frontend" else 0.0))
    if failed_at is None or cann_missing:
        _after_binary(stages, binary, mark)
        return finish(outcome_of(stages))
    return finish("failed", error, sig)

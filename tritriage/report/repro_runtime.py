# The running part of every reproducer that `tritriage repro` writes: this
# file is copied verbatim into the script, so it may use only the standard
# library at import time (triton, torch and tritriage are imported where
# needed, and only triton is required).  It compiles a kernel the way the
# scan's worker (tritriage/collect/worker.py) does -- the same ASTSource, the
# same stages driven one by one, the same failure text -- so that the
# classifier gives the script's failure the class and fingerprint the scan
# gave.  A change to how the worker compiles or words a failure belongs here
# too; tests/test_repro.py compares the two on every failing vLLM kernel.

import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback

STAGES = ("frontend", "ttir", "linalg", "binary")
STAGE_OF_EXT = {"ttir": "ttir", "ttadapter": "linalg", "npubin": "binary"}
TOOL_OF_STAGE = {"linalg": "triton-adapter-opt", "binary": "bishengir-compile"}
# Environment variables that replace a tool, for bisecting a compiler build.
TOOL_ENV = {"triton-adapter-opt": "TRITON_ADAPTER_OPT", "bishengir-compile": "BISHENGIR_COMPILE"}
PASSES = ("passed", "passed-to-linalg")
OOM_MARKERS = ("std::bad_alloc", "MemoryError")
RESULT_TAG = "TRITRIAGE-REPRO-RESULT"
# Exit status: 0 the kernel compiled (and ran), 1 it failed, 125 this host
# cannot tell (git bisect's "skip").
EXIT_PASS, EXIT_FAIL, EXIT_CANNOT = 0, 1, 125


class SpecError(Exception):
    pass


class StageTimeout(BaseException):
    # BaseException: triton's own ``except Exception`` must not swallow it.
    pass


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# output capture: in-process MLIR passes print their diagnostics on fd 2


class Captured:
    """Send fds 1 and 2 to a file for the duration; ``text`` is what was printed."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "stage-output.txt")
        self.text = ""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        with open(self.path, "rb") as f:
            self.text = clean_text(f.read())
        if self.text.strip():
            sys.stderr.write(self.text if self.text.endswith("\n") else self.text + "\n")
            sys.stderr.flush()
        return False


_CONTROL = {c: "\\x%02x" % c for c in range(32) if chr(c) not in "\n\t"}
_CONTROL[127] = "\\x7f"


def clean_text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return data.translate(_CONTROL)


# --------------------------------------------------------------------------
# the kernel


def loader_module():
    """The embedded copy of tritriage's kernel loader, else an installed tritriage's."""
    mod = sys.modules.get("tritriage_repro_loader")
    if mod is not None:
        return mod
    from tritriage.collect import loader

    return loader


def unwrap(fn):
    from triton.runtime.jit import JITFunction

    seen = 0
    while not isinstance(fn, JITFunction) and hasattr(fn, "fn") and seen < 8:
        fn = fn.fn
        seen += 1
    if not isinstance(fn, JITFunction):
        raise SpecError("%r is not a triton.jit function" % (fn,))
    return fn


def load(checkout, rel_file, qualname):
    """(jit function, None) or (None, the loader's failure text)."""
    # Loaded as compiled code in any case: the launch path turns it into
    # interpreted code itself (``interpreted``).
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        return unwrap(loader_module().load_kernel(checkout, rel_file, qualname)), None
    except SpecError as e:
        return None, str(e)
    except Exception as e:  # LoaderError, or anything the checkout's code raised
        return None, str(e) if type(e).__name__ == "LoaderError" else exception_text(e)
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret


def interpreted(fn):
    """``fn`` and every jit function it reaches, as Triton's interpreter runs them."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    done = {fn: InterpretedFunction(fn.fn)}
    todo = [fn]
    while todo:
        namespace = todo.pop().fn.__globals__
        for name, value in list(namespace.items()):
            if isinstance(value, JITFunction):
                if value not in done:
                    done[value] = InterpretedFunction(value.fn)
                    todo.append(value)
                namespace[name] = done[value]
    return done[fn]


def tl_value(value):
    if isinstance(value, str) and (value.startswith("tl.") or value.startswith("triton.language.")):
        import triton.language as tl

        obj = tl
        for part in value.split(".")[1 if value.startswith("tl.") else 2:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return value
        return obj
    return value


def build_source(fn, spec):
    """An ``ASTSource`` of ``fn`` specialized as ``spec`` says (as the worker builds it)."""
    from triton.compiler import ASTSource
    from triton.compiler.code_generator import str_to_ty

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
        try:
            str_to_ty(ty)
        except Exception as e:
            problems.append("bad type %r for %s: %s" % (ty, name, e))
            continue
        signature[name] = ty
    if problems:
        raise SpecError("; ".join(problems))
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
        from triton.compiler.compiler import make_backend  # noqa: F401 - registers the backend descriptor

        attrs = type(ASTSource(lambda: None, signature={}).attrs)().from_hints(hints)
    return ASTSource(fn, signature=signature, constants=constants, attrs=attrs)


def compile_options(spec):
    skip = ("divisible_by_16", "equal_to_1")
    return {k: v for k, v in (spec.get("options") or {}).items() if k not in skip}


# --------------------------------------------------------------------------
# failure text, worded as the worker words it


def exception_text(e, jit_fn=None):
    try:
        from triton.compiler.errors import CompilationError
    except Exception:
        CompilationError = ()
    if CompilationError and isinstance(e, CompilationError):
        traceback.print_exception(type(e), e, e.__traceback__)
        text = "".join(traceback.format_exception_only(type(e), e)).rstrip()
        where = compile_error_location(e, jit_fn)
        return text + ('\n  File "%s", line %d, in %s' % where if where else "")
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
    return "".join(te.format()).rstrip()


def compile_error_location(e, jit_fn):
    src, node = getattr(e, "src", None), getattr(e, "node", None)
    if jit_fn is None or not src or not hasattr(node, "lineno"):
        return None
    import inspect

    from triton.runtime.jit import JITFunction

    candidates = [jit_fn] + [v for v in getattr(jit_fn, "__globals__", {}).values() if isinstance(v, JITFunction)]
    for cand in candidates:
        if getattr(cand, "src", None) != src:
            continue
        try:
            lines, first = inspect.getsourcelines(cand.fn)
            def_offset = next(i for i, line in enumerate(lines) if line.lstrip().startswith("def "))
            return cand.fn.__code__.co_filename, first + def_offset + node.lineno - 1, cand.__name__
        except Exception:
            return None
    return None


def signame(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def failure_text(e, printed, jit_fn):
    import subprocess

    if isinstance(e, subprocess.CalledProcessError):
        code = e.returncode
        tool = os.path.basename(str(e.cmd[0])) if isinstance(e.cmd, (list, tuple)) and e.cmd else "tool"
        sig = -code if code is not None and code < 0 else None
        head = ("%s was killed by signal %d (%s)" % (tool, sig, signame(sig)) if sig
                else "%s exited with status %s" % (tool, code))
        parts = [head]
        err = clean_text(e.stderr).rstrip()
        out = clean_text(e.output).rstrip()
        if err:
            parts.append(err)
        if out:
            parts.append("[stdout]\n" + out)
        return "\n".join(parts), sig
    text = exception_text(e, jit_fn)
    printed = (printed or "").strip()
    if printed:
        text = printed + "\n" + text
    return text, None


# --------------------------------------------------------------------------
# the environment


def cann_status():
    """(available, why not): whether CANN's bishengir-compile can run the binary stage here."""
    home = os.environ.get("ASCEND_HOME_PATH", "")
    found = shutil.which("bishengir-compile")
    if not found and home:
        for sub in ("bin", "compiler/bin", "tools/bishengir/bin"):
            cand = os.path.join(home, sub, "bishengir-compile")
            if os.access(cand, os.X_OK):
                found = cand
                break
    if not home:
        return False, "CANN not found (ASCEND_HOME_PATH is not set)"
    if not found:
        return False, "CANN found at %s but bishengir-compile is not on PATH" % home
    return True, ""


def triton_version():
    try:
        from importlib import metadata

        return "triton-ascend " + metadata.version("triton-ascend")
    except Exception:
        try:
            import triton

            return "triton " + triton.__version__
        except Exception as e:
            return "no triton (%s)" % e


# --------------------------------------------------------------------------
# compiling


def install_tool_hook(workdir, adapter, commands):
    """Say each external tool call, keep a copy of its input, let an env var replace the tool."""
    import subprocess

    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if not isinstance(cmd, (list, tuple)) or not cmd or "--help" in cmd:
            return real_run(cmd, *args, **kwargs)
        argv = [os.fspath(c) for c in cmd]
        tool = os.path.basename(argv[0])
        if tool not in TOOL_ENV:
            return real_run(cmd, *args, **kwargs)
        override = os.environ.get(TOOL_ENV[tool]) or (adapter if tool == "triton-adapter-opt" else None)
        if override:
            argv[0] = override
        if len(argv) > 1 and os.path.isfile(argv[1]):
            saved = os.path.join(workdir, os.path.basename(argv[1]))
            shutil.copyfile(argv[1], saved)
            commands.append((argv, saved))
        else:
            commands.append((argv, None))
        return real_run(argv, *args, **kwargs)

    subprocess.run = run


def compile_kernel(fn, spec, arch, run_binary, binary_reason, workdir, timeout=None, adapter=None):
    """Drive triton-ascend's stages one by one; a dict with outcome, stage, text, stages, commands."""
    stages, commands = [], []
    out = {"outcome": "", "stage": None, "text": "", "stages": stages, "commands": commands}

    def finish(outcome, text=""):
        seen = {s[0] for s in stages}
        for name in STAGES:
            if name not in seen:
                stages.append((name, "not-run", 0.0))
        order = {n: i for i, n in enumerate(STAGES)}
        stages.sort(key=lambda s: order.get(s[0], len(order)))
        out.update(outcome=outcome, text=text)
        return out

    try:
        src = build_source(fn, spec)
    except SpecError as e:
        return finish("spec-error", str(e))
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    target = GPUTarget("npu", arch, 0)
    backend = make_backend(target)
    try:
        options = backend.parse_options(compile_options(spec))
    except Exception as e:
        return finish("spec-error", "bad compile options %s: %s: %s" % (compile_options(spec), type(e).__name__, e))
    pipeline = {}
    backend.add_stages(pipeline, options)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    install_tool_hook(workdir, adapter, commands)

    def on_alarm(signum, frame):
        raise StageTimeout()

    if timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(int(max(1, timeout)))
    t_start = time.time()

    def run_stage(name, stage_fn, *args):
        say("stage %-8s ..." % name)
        t0 = time.time()
        cap = Captured(workdir)
        try:
            with cap:
                result = stage_fn(*args)
        except StageTimeout:
            stages.append((name, "failed", time.time() - t0))
            out["stage"] = name
            raise
        except Exception as e:
            text, _sig = failure_text(e, cap.text, fn)
            stages.append((name, "failed", time.time() - t0))
            out["stage"] = name
            say("stage %-8s FAILED (%.1f s)" % (name, time.time() - t0))
            return None, e, text
        stages.append((name, "passed", time.time() - t0))
        say("stage %-8s passed (%.1f s)" % (name, time.time() - t0))
        return result, None, ""

    def failed(e, text):
        if isinstance(e, MemoryError) or any(m in text for m in OOM_MARKERS):
            return finish("oom", text)
        return finish("failed", text)

    try:
        module, err, text = run_stage("frontend", src.make_ir, options, backend.get_codegen_implementation(),
                                      backend.get_module_map(), context)
        if err is not None:
            return failed(err, text)
        metadata = {"hash": src.hash(), "target": target}
        metadata.update(options.__dict__)
        for ext, stage_fn in pipeline.items():
            name = STAGE_OF_EXT.get(ext, ext)
            if name == "binary" and not run_binary:
                stages.append(("binary", "not-run", 0.0))
                say("stage binary   not run: %s" % binary_reason)
                continue
            module_out, err, text = run_stage(name, stage_fn, module, metadata)
            if err is not None:
                return failed(err, text)
            module = module_out
    except StageTimeout:
        where = out["stage"] or "compile"
        return finish("timeout", "timed out after %g s during %s" % (timeout, where))
    finally:
        if timeout:
            signal.alarm(0)
    try:
        context.disable_multithreading()
    except Exception:
        pass
    out["seconds"] = time.time() - t_start
    passed = {s[0] for s in stages if s[1] == "passed"} == set(STAGES)
    return finish("passed" if passed else "passed-to-linalg")


# --------------------------------------------------------------------------
# launching on an NPU


def make_tensor(torch, info, device):
    dtype = getattr(torch, info["dtype"].rsplit(".", 1)[-1])
    shape = list(info.get("shape") or [])
    stride = list(info.get("stride") or [])
    if len(stride) != len(shape):
        stride = []
        acc = 1
        for s in reversed(shape):
            stride.insert(0, acc)
            acc *= max(s, 1)
    need = 0 if any(s == 0 for s in shape) else 1 + sum((s - 1) * st for s, st in zip(shape, stride))
    if dtype.is_floating_point:
        base = torch.randn(need, dtype=torch.float32).to(dtype)
    elif dtype == torch.bool:
        base = torch.randint(0, 2, (need,)).bool()
    else:
        # Ints are often indices (block tables, slot mappings): keep them small.
        base = torch.randint(0, 4, (need,)).to(dtype)
    return torch.as_strided(base.to(device), shape, stride)


def launch_kernel(fn, spec, data, device):
    """Launch ``fn`` with inputs of the recorded shapes; (passed, text)."""
    import torch

    import inspect

    kwargs = {}
    tensors = data.get("tensors") or {}
    scalars = data.get("scalars") or {}
    constexprs = spec.get("constexprs") or {}
    for name, p in inspect.signature(fn.fn).parameters.items():
        if name in tensors:
            kwargs[name] = make_tensor(torch, tensors[name], device)
        elif name in constexprs:
            kwargs[name] = tl_value(constexprs[name])
        elif name in scalars:
            kwargs[name] = scalars[name]
        elif p.default is inspect.Parameter.empty:
            return False, "no recorded value for parameter %s" % name
    options = compile_options(spec)
    grid = tuple(data["grid"])
    if os.environ.get("TRITON_INTERPRET") == "1":
        fn = interpreted(fn)
    say("launching %s[%s] on %s" % (fn.__name__, ", ".join(map(str, grid)), device))
    try:
        fn[grid](**kwargs, **options)
        getattr(torch, device).synchronize()
    except Exception as e:
        text, _ = failure_text(e, "", fn)
        return False, text
    return True, ""


def npu_device():
    """'npu' when torch_npu sees a device here, else None and why not.

    ``TRITRIAGE_REPRO_DEVICE`` names another torch device: ``cpu`` with
    ``TRITON_INTERPRET=1`` runs the recorded launch in Triton's interpreter.
    """
    forced = os.environ.get("TRITRIAGE_REPRO_DEVICE")
    if forced:
        return forced, ""
    try:
        import torch
        import torch_npu  # noqa: F401
    except Exception as e:
        return None, "torch_npu is not importable (%s: %s)" % (type(e).__name__, e)
    try:
        if not torch.npu.is_available():
            return None, "torch_npu sees no NPU"
    except Exception as e:
        return None, "torch_npu cannot query devices (%s)" % e
    return "npu", ""


# --------------------------------------------------------------------------
# classifying


def classify(config, text, stage, outcome):
    """The classifier's verdict as a dict, or None where tritriage is not importable."""
    try:
        from tritriage.classify import classify as _classify
    except Exception:
        parent = config.get("tritriage_path")
        if not parent or not os.path.isdir(parent):
            return None
        sys.path.append(parent)
        try:
            from tritriage.classify import classify as _classify
        except Exception:
            return None
    d = _classify(text, checkout=config["checkout"], stage=stage, outcome=outcome)
    return {"class": d.cls, "subclass": d.subclass, "fingerprint": d.fingerprint,
            "location": str(d.location) if d.location else None}


# --------------------------------------------------------------------------
# main


def main(config, argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        say(config.get("usage", ""))
        return 0
    compile_only = config.get("compile_only", True) or "--compile-only" in argv
    keep = "--keep" in argv
    checkout = os.environ.get("TRITRIAGE_REPRO_CHECKOUT") or config["checkout"]
    config = dict(config, checkout=checkout)
    spec = config["spec"]
    expected = config.get("expected") or {}

    say("tritriage reproducer: %s [%s]" % (config["kernel"], spec.get("name", "default")))
    say("  kernel      %s:%s %s" % (checkout, config["file"], config["qualname"]))
    say("  made from   %s" % config.get("made_from", ""))
    if not os.path.isdir(checkout):
        say("cannot run: the checkout %s is not here (set TRITRIAGE_REPRO_CHECKOUT to a copy of it)" % checkout)
        return EXIT_CANNOT
    workdir = tempfile.mkdtemp(prefix="tritriage-repro-")
    # A cache of its own: a cached kernel would compile nothing.
    os.environ["TRITON_CACHE_DIR"] = os.path.join(workdir, "triton-cache")
    os.environ["TRITON_DUMP_DIR"] = os.path.join(workdir, "dump")
    os.environ["TRITON_OVERRIDE_DIR"] = os.path.join(workdir, "override")
    run_binary, binary_reason = cann_status()
    say("  here        %s; %s" % (triton_version(), "CANN present" if run_binary else binary_reason))

    data = config.get("launch")
    device, why = (None, "asked to compile only") if compile_only else npu_device()
    if not compile_only and not data:
        why = "no recorded shapes for this spec (trace a test that launches it: `tritriage trace -- pytest ...`)"
        device = None
    mode = "launch on %s" % device if device else "compile only (%s)" % why
    say("  mode        %s" % mode)
    say("")

    fn, text = load(checkout, config["file"], config["qualname"])
    if fn is None:
        outcome, stage, stages = "loader-error", None, []
        say("loading the kernel FAILED")
    elif device:
        ok, text = launch_kernel(fn, spec, data, device)
        outcome, stage, stages = ("passed" if ok else "failed"), None, []
    else:
        res = compile_kernel(fn, spec, config.get("arch") or "Ascend910B", run_binary, binary_reason, workdir,
                             timeout=config.get("timeout"), adapter=config.get("adapter"))
        outcome, stage, text, stages = res["outcome"], res["stage"], res["text"], res["stages"]
        if stage in TOOL_OF_STAGE and res["commands"]:
            cmd, saved = res["commands"][-1]
            say("tool command: %s" % shlex.join(cmd))
            if saved:
                say("its input:    %s" % saved)

    if text:
        say("----- compiler output " + "-" * 40)
        say(text.rstrip())
        say("-" * 62)
    passed = outcome in PASSES
    verdict = outcome if passed or not stage else "%s at %s" % (outcome, stage)
    if device:
        say("PASS" if passed else "FAIL")
    say("verdict: %s" % verdict)
    if expected:
        say("scan:    %s" % expected.get("verdict", ""))
    diag = None if passed else classify(config, text, stage, outcome)
    if diag is not None:
        say("class:       %s: %s" % (diag["class"], diag["subclass"]))
        same = ""
        if expected.get("fingerprint"):
            same = " (the scan's: %s, %s)" % (expected["fingerprint"], "same" if expected["fingerprint"] ==
                                                diag["fingerprint"] else "DIFFERENT")
        say("fingerprint: %s%s" % (diag["fingerprint"], same))
        if diag.get("location"):
            say("location:    %s" % diag["location"])
    elif not passed:
        say("(tritriage is not importable here: no class or fingerprint, the output above is the evidence)")
    summary = {"outcome": outcome, "stage": stage, "mode": "launch" if device else "compile",
               "stages": {s[0]: s[1] for s in stages}}
    if diag is not None:
        summary.update(diag)
    say("%s %s" % (RESULT_TAG, json.dumps(summary, sort_keys=True)))
    if keep or not passed:
        say("work directory kept: %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return EXIT_PASS if passed else EXIT_FAIL

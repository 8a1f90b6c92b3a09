# The running part of every reproducer that `tritriage repro` writes, pasted
# into the script right after tritriage/sandbox/stages.py, which compiles the
# kernel exactly as the scan's worker does (same code, so the same failure
# text, class and fingerprint).  What is here is the reproducer's own:
# printing, the time limit, launching on an NPU, classifying, main.  It may
# use only the standard library at import time (triton, torch and tritriage
# are imported where needed, and only triton is required).

import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time

if "compile_kernel" not in globals():
    # Imported as tritriage's own module (for RESULT_TAG), not run as a
    # script that has stages.py pasted above.
    from tritriage.sandbox.stages import (FAILED, PASSES, TOOL_OF_STAGE, Reporter, binary_plan, clean_text,
                                          compile_kernel, compile_options, failure_text, load, result,
                                          stage_result, tl_value)

# Environment variables that replace a tool, for bisecting a compiler build.
TOOL_ENV = {"triton-adapter-opt": "TRITON_ADAPTER_OPT", "bishengir-compile": "BISHENGIR_COMPILE"}
RESULT_TAG = "TRITRIAGE-REPRO-RESULT"
# Exit status: 0 the kernel compiled (and ran), 1 it failed, 125 this host
# cannot tell (git bisect's "skip").
EXIT_PASS, EXIT_FAIL, EXIT_CANNOT = 0, 1, 125


class StageTimeout(BaseException):
    # BaseException: triton's own ``except Exception`` must not swallow it.
    pass


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# compiling, out loud


class Captured:
    """Send fds 1 and 2 to a file for the duration (in-process MLIR passes
    print their diagnostics on fd 2); ``text`` is what was printed, which is
    also shown once the stage is over."""

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


class Narrator(Reporter):
    """Says each stage as it runs and keeps those done, for a timeout's verdict."""

    def __init__(self, workdir, adapter=None):
        Reporter.__init__(self, workdir, adapter=adapter, tool_env=TOOL_ENV)
        self.stages = []
        self.t0 = 0.0

    def start(self, stage):
        Reporter.start(self, stage)
        self.t0 = time.time()
        say("stage %-8s ..." % stage)

    def done(self, res):
        Reporter.done(self, res)
        self.stages.append(res)
        say("stage %-8s %s (%.1f s)" % (res["stage"], "FAILED" if res["status"] == FAILED else res["status"],
                                        time.time() - self.t0))

    def skipped(self, res):
        say("stage %-8s not run: %s" % (res["stage"], res["reason"]))

    def capture(self):
        return Captured(self.workdir)


def compile_here(fn, config, binary, workdir):
    """Compile as the scan did, saying each stage; (result dict, the stage that failed or None)."""
    rep = Narrator(workdir, config.get("adapter"))
    timeout = config.get("timeout")

    def on_alarm(signum, frame):
        raise StageTimeout()

    if timeout:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(int(max(1, timeout)))
    try:
        res = compile_kernel(fn, config["spec"], rep, arch=config.get("arch"), binary=binary)
    except StageTimeout:
        where = rep.stage or "compile"
        done = rep.stages + ([stage_result(rep.stage, FAILED, "timed out")] if rep.stage else [])
        res = result(done, "timeout", "timed out after %g s during %s" % (timeout, where))
        return res, rep.stage
    finally:
        if timeout:
            signal.alarm(0)
    failed = [s for s in res["stages"] if s["status"] == FAILED]
    return res, (failed[0]["stage"] if failed else None)


# --------------------------------------------------------------------------
# the kernel


def loader_module():
    """The embedded copy of tritriage's kernel loader, else an installed tritriage's."""
    mod = sys.modules.get("tritriage_repro_loader")
    if mod is not None:
        return mod
    from tritriage.sandbox import loader

    return loader


def load_here(checkout, rel_file, qualname, roots=(), arch=None):
    """(jit function, None) or (None, the loader's failure text).  ``roots``:
    the other source trees the scan loaded with (vLLM's, for a plugin)."""
    # Loaded as compiled code in any case: the launch path turns it into
    # interpreted code itself (``interpreted``).
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        load_kernel = loader_module().load_kernel

        def load_kernel_as_scanned(checkout, rel_file, qualname):
            return load_kernel(checkout, rel_file, qualname, roots=roots, arch=arch)

        return load(load_kernel_as_scanned, checkout, rel_file, qualname)
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
    roots = os.environ.get("TRITRIAGE_REPRO_ROOTS")
    roots = [r for r in roots.split(os.pathsep) if r] if roots else list(config.get("roots") or ())
    config = dict(config, checkout=checkout, roots=roots)
    spec = config["spec"]
    expected = config.get("expected") or {}

    say("tritriage reproducer: %s [%s]" % (config["kernel"], spec.get("name", "default")))
    say("  kernel      %s:%s %s" % (checkout, config["file"], config["qualname"]))
    say("  made from   %s" % config.get("made_from", ""))
    for root in roots:
        say("  also from   %s (another source tree the kernel imports from)" % root)
    if not os.path.isdir(checkout):
        say("cannot run: the checkout %s is not here (set TRITRIAGE_REPRO_CHECKOUT to a copy of it)" % checkout)
        return EXIT_CANNOT
    workdir = tempfile.mkdtemp(prefix="tritriage-repro-")
    # A cache of its own: a cached kernel would compile nothing.
    os.environ["TRITON_CACHE_DIR"] = os.path.join(workdir, "triton-cache")
    os.environ["TRITON_DUMP_DIR"] = os.path.join(workdir, "dump")
    os.environ["TRITON_OVERRIDE_DIR"] = os.path.join(workdir, "override")
    binary = binary_plan(os.environ.get(TOOL_ENV["bishengir-compile"]))
    if binary["mode"] == "cann":
        here = "CANN present"
    elif binary["mode"]:
        here = "binary stage on bishengir-compile %s from %s; hivmc not run (no CANN)" % (
            binary["version"] or "?", binary["source"])
    else:
        here = binary["reason"]
    say("  here        %s; %s" % (triton_version(), here))

    data = config.get("launch")
    device, why = (None, "asked to compile only") if compile_only else npu_device()
    if not compile_only and not data:
        why = "no recorded shapes for this spec (trace a test that launches it: `tritriage trace -- pytest ...`)"
        device = None
    mode = "launch on %s" % device if device else "compile only (%s)" % why
    say("  mode        %s" % mode)
    say("")

    fn, text = load_here(checkout, config["file"], config["qualname"], roots=config.get("roots") or (),
                         arch=config.get("arch"))
    if fn is None:
        outcome, stage, stages = "loader-error", None, []
        say("loading the kernel FAILED")
    elif device:
        ok, text = launch_kernel(fn, spec, data, device)
        outcome, stage, stages = ("passed" if ok else "failed"), None, []
    else:
        res, stage = compile_here(fn, config, binary, workdir)
        outcome, text, stages = res["outcome"], res["error"], res["stages"]
        failed = [s for s in stages if s["stage"] == stage]
        if stage in TOOL_OF_STAGE and failed and failed[0]["command"]:
            say("tool command: %s" % shlex.join(failed[0]["command"]))
            if failed[0]["artifact"]:
                say("its input:    %s" % failed[0]["artifact"])

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
               "stages": {s["stage"]: s["status"] for s in stages}}
    if diag is not None:
        summary.update(diag)
    say("%s %s" % (RESULT_TAG, json.dumps(summary, sort_keys=True)))
    if keep or not passed:
        say("work directory kept: %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return EXIT_PASS if passed else EXIT_FAIL

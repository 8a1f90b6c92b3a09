"""Frontend-only compiles of specs, in whichever interpreter has the compiler.

Spec validation needs only Triton's frontend (Python AST to TTIR): a spec the
frontend accepts fits the kernel.  The engine's worker drives every stage, so
this small fork server does the one stage, for two compilers:

* ``--target ascend``: triton-ascend (the tool's compile interpreter), through
  the worker's own compile code (``stages.py``) stopped after the frontend, so
  that a spec passes here exactly when the scan's frontend takes it;
* ``--target cuda``: upstream Triton in the reference venv (``reference.py``),
  compiling for ``GPUTarget("cuda", 90, 32)``, which needs no GPU.  There it
  also runs the ``ttir`` stage, so "the reference compiles it" means more than
  parsing.

It imports only the standard library, triton, ``tritriage.sandbox.stages``
and ``tritriage.sandbox.loader`` (run with ``PYTHONPATH`` at the directory holding ``tritriage``), reads one job
per line on stdin, ``{"id", "checkout", "file", "qualname", "spec"}``, and
writes one result per line on stdout, ``{"id", "ok", "error", "seconds"}``.
Each job runs in a forked child, so a hang or crash costs that job only.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback

from tritriage.sandbox.stages import PASSES, Reporter, compile_kernel, tl_value, unwrap

TIMEOUT = float(os.environ.get("TRITRIAGE_FRONTEND_TIMEOUT", "60"))


class SpecMismatch(Exception):
    """The spec does not name the kernel's parameters (stale or wrong)."""


class _Failure(Reporter):
    """Keeps the frontend's exception: a spec check words it for a verdict's
    one-line reason, not for the classifier."""

    exception = None

    def failed(self, stage, e):
        self.exception = e


def check(job: dict, target_kind: str, workdir: str) -> None:
    """Load, specialize and run the frontend; raise on any failure."""
    from tritriage.sandbox.loader import load_kernel

    fn = unwrap(load_kernel(job["checkout"], job["file"], job["qualname"]))
    if target_kind == "ascend":
        # Exactly what the scan's worker runs, up to the frontend.
        rep = _Failure(workdir)
        res = compile_kernel(fn, job["spec"], rep, arch=os.environ.get("TRITON_ASCEND_ARCH") or "Ascend910B3",
                             stop_after="frontend")
        if rep.exception is not None:
            raise rep.exception
        if res["outcome"] == "spec-error":
            raise SpecMismatch(res["error"])
        if res["outcome"] not in PASSES:
            raise RuntimeError(res["error"])
        return
    _check_upstream(fn, job["spec"])


def _split(fn, spec):
    # Upstream Triton's ASTSource takes ``constexprs=``, triton-ascend's
    # ``constants=``: stages.build_source speaks only the latter.
    sig_in = dict(spec.get("signature") or {})
    const_in = dict(spec.get("constexprs") or {})
    names = list(fn.arg_names)
    unknown = sorted((set(sig_in) | set(const_in)) - set(names))
    if unknown:
        raise SpecMismatch(f"spec names parameters the kernel does not have: {', '.join(unknown)}")
    signature, constants = {}, {}
    for p in fn.params:
        if p.is_constexpr or p.name in const_in:
            if p.name in const_in:
                constants[p.name] = tl_value(const_in[p.name])
            elif getattr(p, "has_default", False):
                constants[p.name] = p.default
            else:
                raise SpecMismatch(f"no value for constexpr {p.name}")
            signature[p.name] = "constexpr"
        elif p.name in sig_in:
            signature[p.name] = sig_in[p.name]
        else:
            raise SpecMismatch(f"no type for parameter {p.name}")
    return signature, constants


def _check_upstream(fn, spec) -> None:
    """Upstream Triton (the reference venv), for ``GPUTarget("cuda", 90, 32)``: frontend and ttir."""
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend

    signature, constants = _split(fn, spec)
    options = {k: v for k, v in (spec.get("options") or {}).items() if k in ("num_warps", "num_stages")}
    target = GPUTarget("cuda", 90, 32)
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
    stages: dict = {}
    try:
        backend.add_stages(stages, opts, src.language)
    except TypeError:
        backend.add_stages(stages, opts)
    if "ttir" in stages:
        stages["ttir"](module, {"hash": "0", "target": target})


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


def _child(job, target_kind, wfd):
    os.setsid()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    workdir = tempfile.mkdtemp(prefix="tritriage-fe-")
    os.environ["TRITON_CACHE_DIR"] = workdir
    t0 = time.time()
    try:
        check(job, target_kind, workdir)
        out = {"ok": True, "error": ""}
    except BaseException as e:  # noqa: BLE001 - every failure is a verdict
        kind = "loader" if type(e).__name__ == "LoaderError" else (
            "spec" if isinstance(e, SpecMismatch) else "compile")
        text = error_text(e)
        if len(text) > 6000:
            # The cause is at the end of a nested CompilationError: keep both ends.
            text = text[:2000] + "\n[...]\n" + text[-4000:]
        out = {"ok": False, "error": text, "kind": kind}
    out["seconds"] = round(time.time() - t0, 3)
    data = json.dumps(out).encode()
    while data:
        n = os.write(wfd, data)
        data = data[n:]
    os._exit(0)


def run_one(job: dict, target_kind: str, timeout: float = TIMEOUT) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _child(job, target_kind, w)
        finally:
            os._exit(1)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(pid, 0)
            os.close(r)
            return {"ok": False, "error": f"timeout: frontend ran past {timeout:g} s", "kind": "timeout"}
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            continue
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks) or b"null") or _died(status)
    except ValueError:
        return _died(status)


def _died(status) -> dict:
    if os.WIFSIGNALED(status):
        return {"ok": False, "error": f"crash: frontend died by signal {os.WTERMSIG(status)}", "kind": "crash"}
    return {"ok": False, "error": f"crash: frontend exited with status {os.WEXITSTATUS(status)}", "kind": "crash"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    target_kind = "ascend"
    if "--target" in argv:
        target_kind = argv[argv.index("--target") + 1]
    out = os.fdopen(os.dup(1), "w", buffering=1)
    # Nothing but results goes to stdout: compilers print.
    os.dup2(2, 1)
    import triton  # noqa: F401 - import once, before forking
    try:
        import triton.compiler.compiler  # noqa: F401
        from tritriage.sandbox import loader  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    version = getattr(triton, "__version__", "?")
    out.write(json.dumps({"ready": True, "triton": version}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        job = json.loads(line)
        res = run_one(job, target_kind, float(job.get("timeout") or TIMEOUT))
        res["id"] = job.get("id")
        out.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

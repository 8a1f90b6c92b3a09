"""Records every Triton launch of the process it is loaded into (``tritriage trace``).

This file runs inside the traced command, an interpreter that may have
neither tritriage nor its dependencies: it uses the standard library and,
once the command imports it, triton.  ``sitecustomize.py`` next to it calls
``install()`` at start-up; ``install`` only puts a finder on ``sys.meta_path``.
Nothing of triton is imported by the hook itself: the patches are applied
when the command's own import of ``triton.runtime.jit`` (or ``.autotuner``,
``.interpreter``) finishes, so a command that never uses triton pays nothing.

What is patched, and why there:

* ``JITFunction.run`` -- every compiled launch ends there, also through
  ``@triton.autotune`` / ``@triton.heuristics`` (their ``run`` calls the
  wrapped function's ``run`` with the chosen config and the computed values
  in ``kwargs``), so the constexprs seen there are the final ones.
* ``GridExecutor.__call__`` -- under ``TRITON_INTERPRET=1`` ``triton.jit``
  returns an ``InterpretedFunction`` whose launches (``kernel[grid](...)`` and
  the ``.run`` that autotune calls) all build a ``GridExecutor``.
* ``Autotuner._bench`` -- only to mark the launches made while benchmarking
  configs, which are kept apart from the launch with the chosen config.

Each distinct specialization of a kernel is written once, as one JSON line,
to ``$TRITRIAGE_TRACE_DIR/launches-<pid>.jsonl`` (one file per process, so
forked workers and subprocesses never interleave their writes).  A launch
that cannot be recorded is reported once per kernel on stderr and the launch
goes on: the hook never changes what the command does, except for the
interpreter fixes below.

Interpreter fixes (``TRITRIAGE_TRACE_INTERPRETER_FIXES=1``, the default of
``tritriage trace``): triton-ascend 3.2.0's interpreter cannot run an
autotuned kernel on a host without an NPU, for two reasons that have nothing
to do with the kernel:

1. ``Autotuner.__init__`` asks ``driver.active.get_benchmarker()`` at
   decoration time, and there is no active driver on a CPU-only host
   ("0 active drivers").  Fix: where no driver answers, benchmark with the
   wall clock.
2. ``triton.Config.all_kwargs()`` passes triton-ascend's extra launch options
   (``num_buffers_warp_spec``, ``multibuffer``, ...) that the interpreter's
   ``GridExecutor`` does not strip (its ``RESERVED_KWS`` only knows upstream's),
   so the kernel call fails with "unexpected keyword argument".  Fix: drop
   keyword arguments that are launch options and not kernel parameters.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
import time

ENV_DIR = "TRITRIAGE_TRACE_DIR"
ENV_FIXES = "TRITRIAGE_TRACE_INTERPRETER_FIXES"
FORMAT = 1

# Launch options a spec may carry (catalog.OPTION_NAMES); other launch
# keywords are kept in the record's ``extra_options`` only.
SPEC_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion", "multibuffer", "debug")
# Keywords triton-ascend's Config.all_kwargs() and launch paths may pass that
# are not kernel parameters (fix 2).
LAUNCH_OPTIONS = frozenset(SPEC_OPTIONS + (
    "num_buffers_warp_spec", "num_consumer_groups", "reg_dec_producer", "reg_inc_consumer", "force_simt_template",
    "enable_linearize", "enable_hivm_auto_cv_balance", "sync_solver", "unit_flag",
    "limit_auto_multi_buffer_only_for_local_buffer", "limit_auto_multi_buffer_of_local_buffer",
    "set_workspace_multibuffer", "tile_mix_vector_loop", "tile_mix_cube_loop", "stream", "grid", "warmup",
    "sanitize_overflow", "kernel_name", "inject_barrier_all", "inject_block_all", "force_simt_only",
))

_TARGETS = ("triton.runtime.jit", "triton.runtime.autotuner", "triton.runtime.interpreter")

_state = threading.local()
_lock = threading.Lock()
_seen: set = set()
_warned: set = set()
_files: dict = {}
_patched: set = set()
_interpreted: dict = {}  # python function -> InterpretedFunction (for do_not_specialize)


# --------------------------------------------------------------------------
# output


def warn(msg: str, once: str | None = None) -> None:
    if once is not None:
        with _lock:
            if once in _warned:
                return
            _warned.add(once)
    try:
        sys.stderr.write(f"tritriage trace: warning: {msg}\n")
        sys.stderr.flush()
    except Exception:
        pass


def _write(record: dict) -> None:
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return
    pid = os.getpid()
    line = json.dumps(record, default=repr) + "\n"
    with _lock:
        f = _files.get(pid)
        if f is None:
            os.makedirs(directory, exist_ok=True)
            # One file per process: appends of different processes never interleave.
            f = _files[pid] = open(os.path.join(directory, f"launches-{pid}.jsonl"), "a", encoding="utf-8")
        f.write(line)
        f.flush()


# --------------------------------------------------------------------------
# turning one launch into a record


def _dtype_name(value):
    """``"tl.float16"`` for a triton dtype, None for anything else."""
    try:
        import triton.language as tl
    except Exception:
        return None
    if isinstance(value, tl.dtype):
        for name in ("float16", "bfloat16", "float32", "float64", "int1", "int8", "int16", "int32", "int64",
                     "uint8", "uint16", "uint32", "uint64", "float8e4nv", "float8e4b8", "float8e5", "float8e5b16",
                     "float8e4b15"):
            if getattr(tl, name, None) == value:
                return f"tl.{name}"
        return f"tl.{value}"
    return None


class Unrecordable(Exception):
    pass


def _constexpr_value(name, value):
    try:
        import triton.language as tl
        if isinstance(value, tl.constexpr):
            value = value.value
    except Exception:
        pass
    dt = _dtype_name(value)
    if dt is not None:
        return dt
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise Unrecordable(f"constexpr {name} = {value!r} ({type(value).__name__}) has no spec form")


def _is_tensor(value) -> bool:
    return hasattr(value, "data_ptr") and hasattr(value, "dtype")


def _tensor_info(value) -> dict:
    info = {"dtype": str(value.dtype)}
    for key, get in (("shape", lambda: list(value.shape)), ("stride", lambda: list(value.stride())),
                     ("device", lambda: str(value.device))):
        try:
            info[key] = get()
        except Exception:
            pass  # warmup's MockTensor has a dtype only
    return info


def _divisible_by_16(value) -> bool:
    try:
        if _is_tensor(value):
            return value.data_ptr() % 16 == 0
    except Exception:
        return False
    return isinstance(value, int) and not isinstance(value, bool) and value % 16 == 0


def _params_of(fn_obj, py_fn):
    """(name, constexpr, annotation_type, is_const, do_not_specialize, dns_on_alignment) per parameter."""
    params = getattr(fn_obj, "params", None)
    if params is None:
        # An InterpretedFunction keeps no KernelParams: build them as triton.jit would.
        from triton.runtime.jit import KernelParam

        interp = _interpreted.get(py_fn)
        kw = getattr(getattr(interp, "rewriter", None), "kwargs", {}) or {}
        dns = kw.get("do_not_specialize") or ()
        dns_oa = kw.get("do_not_specialize_on_alignment") or ()
        params = [KernelParam(i, p, i in dns or p.name in dns, i in dns_oa or p.name in dns_oa)
                  for i, p in enumerate(_signature(py_fn).parameters.values())]
    return [(p.name, p.is_constexpr, p.annotation_type, p.is_const, p.do_not_specialize,
             p.do_not_specialize_on_alignment) for p in params]


def _scalar_type(value, annotation_type: str):
    if annotation_type:
        return "i1" if annotation_type == "u1" else annotation_type
    from triton.runtime.jit import mangle_type

    return mangle_type(value)


_signatures: dict = {}


def _signature(py_fn):
    # Launches repeat by the thousand in a test suite: inspect once per function.
    sig = _signatures.get(py_fn)
    if sig is None:
        sig = _signatures[py_fn] = inspect.signature(py_fn)
    return sig


def build_record(fn_obj, py_fn, args, kwargs, grid, backend: str) -> dict:
    """The spec and launch data of one launch (raises on what it cannot record)."""
    sig = _signature(py_fn)
    names = list(sig.parameters)
    param_kwargs = {k: v for k, v in kwargs.items() if k in sig.parameters}
    bound = sig.bind(*args, **param_kwargs)
    bound.apply_defaults()
    values = bound.arguments

    signature, constexprs, tensors, scalars, aligned = {}, {}, {}, {}, []
    for name, is_cx, ann_ty, is_const, dns, dns_oa in _params_of(fn_obj, py_fn):
        v = values.get(name)
        if is_cx:
            constexprs[name] = _constexpr_value(name, v)
            continue
        if v is None:
            constexprs[name] = None  # triton makes an absent optional tensor a constant
            continue
        if _is_tensor(v):
            from triton.runtime.jit import mangle_type

            signature[name] = mangle_type(v, is_const)
            tensors[name] = _tensor_info(v)
        elif isinstance(v, (bool, int, float)):
            if isinstance(v, int) and not isinstance(v, bool) and v == 1 and not dns:
                constexprs[name] = 1  # triton's equal_to_1 specialization
                scalars[name] = v
                continue
            signature[name] = _scalar_type(v, ann_ty)
            scalars[name] = v
        else:
            try:
                constexprs[name] = _constexpr_value(name, v)
            except Unrecordable:
                raise Unrecordable(f"argument {name} of type {type(v).__name__} has no spec form") from None
            continue
        if not dns and not dns_oa and _divisible_by_16(v):
            aligned.append(name)

    options, extra = {}, {}
    for k, v in kwargs.items():
        if k in sig.parameters or v is None:
            continue
        if k in SPEC_OPTIONS:
            options[k] = v
        else:
            extra[k] = v if isinstance(v, (bool, int, float, str)) else repr(v)
    if aligned:
        options["divisible_by_16"] = sorted(aligned, key=names.index)

    grid_value = None
    try:
        g = grid(dict(values)) if callable(grid) else grid
        grid_value = [int(x) for x in (g if isinstance(g, (tuple, list)) else (g,))]
    except Exception as e:  # a grid of the launch's own making; the launch will say more
        extra["grid_error"] = f"{type(e).__name__}: {e}"[:200]

    code = py_fn.__code__
    return {
        "format": FORMAT,
        "file": os.path.abspath(code.co_filename),
        "line": code.co_firstlineno,
        "name": py_fn.__name__,
        "qualname": getattr(py_fn, "__qualname__", py_fn.__name__),
        "module": getattr(py_fn, "__module__", ""),
        "backend": backend,
        "phase": "bench" if getattr(_state, "bench", 0) else "launch",
        "signature": signature,
        "constexprs": constexprs,
        "options": options,
        "extra_options": extra,
        "grid": grid_value,
        "tensors": tensors,
        "scalars": scalars,
        "argv": list(sys.argv),
        "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
        "pid": os.getpid(),
        "time": time.time(),
    }


def record_launch(fn_obj, py_fn, args, kwargs, grid, backend: str, warmup: bool = False) -> None:
    if getattr(_state, "busy", False):
        return  # a grid function that launches a kernel; record the outer launch only
    _state.busy = True
    try:
        rec = build_record(fn_obj, py_fn, args, kwargs, grid, backend)
        if warmup:
            rec["phase"] = "warmup"
        key = json.dumps([rec["file"], rec["qualname"], rec["signature"], rec["constexprs"], rec["options"],
                          rec["phase"]], sort_keys=True, default=repr)
        with _lock:
            if key in _seen:
                return
            _seen.add(key)
        _write(rec)
    except Exception as e:  # noqa: BLE001 - never break the command
        name = getattr(py_fn, "__qualname__", repr(py_fn))
        warn(f"could not record a launch of {name}: {type(e).__name__}: {e}", once=f"{name}:{type(e).__name__}")
    finally:
        _state.busy = False


# --------------------------------------------------------------------------
# patches


def _patch_jit(module) -> None:
    cls = module.JITFunction
    original = cls.run
    if getattr(original, "__tritriage_trace__", False):
        return

    def run(self, *args, grid, warmup, **kwargs):
        record_launch(self, self.fn, args, kwargs, grid, "jit", warmup=bool(warmup))
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    run.__tritriage_trace__ = True
    run.__wrapped__ = original
    cls.run = run


def _patch_autotuner(module) -> None:
    cls = module.Autotuner
    bench = cls._bench
    if not getattr(bench, "__tritriage_trace__", False):
        def _bench(self, *args, **kwargs):
            _state.bench = getattr(_state, "bench", 0) + 1
            try:
                return bench(self, *args, **kwargs)
            finally:
                _state.bench -= 1

        _bench.__tritriage_trace__ = True
        cls._bench = _bench

    init = cls.__init__
    if _fixes() and not getattr(init, "__tritriage_trace__", False):
        def __init__(self, *args, **kwargs):
            if kwargs.get("do_bench") is None and len(args) < 13 and not _driver_ok():
                kwargs["do_bench"] = _wall_clock_bench
                warn("no active Triton driver: autotune benchmarks configs by wall clock (interpreter fix 1)",
                     once="fix1")
            init(self, *args, **kwargs)

        __init__.__tritriage_trace__ = True
        cls.__init__ = __init__


def _patch_interpreter(module) -> None:
    ex = module.GridExecutor
    call = ex.__call__
    if getattr(call, "__tritriage_trace__", False):
        return

    def __call__(self, *args, **kwargs):
        py_fn = _original_fn(module, self.fn)
        if not kwargs.get("warmup", False):
            record_launch(_interpreted.get(py_fn), py_fn, args, kwargs, self.grid, "interpreter")
        if _fixes():
            params = set(self.arg_names)
            dropped = [k for k in kwargs if k not in params and k in LAUNCH_OPTIONS
                       and k not in module.RESERVED_KWS and k != "warmup"]
            if dropped:
                kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
        return call(self, *args, **kwargs)

    __call__.__tritriage_trace__ = True
    ex.__call__ = __call__

    interp = module.InterpretedFunction
    init = interp.__init__

    def __init__(self, fn, **kwargs):
        init(self, fn, **kwargs)
        _interpreted[fn] = self

    interp.__init__ = __init__


def _original_fn(module, rewritten):
    """The user's function behind the interpreter's rewritten copy (same name, file and lines)."""
    for orig, new in list(module.InterpretedFunction.rewritten_fn.items()):
        if new is rewritten:
            return orig
    return rewritten


def _fixes() -> bool:
    return os.environ.get(ENV_FIXES, "1") == "1" and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _driver_ok() -> bool:
    try:
        from triton.runtime.driver import driver

        driver.active.get_benchmarker()
        return True
    except Exception:
        return False


def _wall_clock_bench(fn, quantiles=None, **_):
    t0 = time.perf_counter()
    fn()
    ms = (time.perf_counter() - t0) * 1000.0
    return [ms] * len(quantiles) if quantiles else ms


_PATCHERS = {
    "triton.runtime.jit": _patch_jit,
    "triton.runtime.autotuner": _patch_autotuner,
    "triton.runtime.interpreter": _patch_interpreter,
}


def _apply(name: str, module) -> None:
    if name in _patched:
        return
    _patched.add(name)
    try:
        _PATCHERS[name](module)
    except Exception as e:  # noqa: BLE001 - a triton without these names: trace nothing, break nothing
        warn(f"cannot hook {name} ({type(e).__name__}: {e}); its launches are not recorded")


class _Finder:
    """Patches the modules in ``_TARGETS`` right after they are first executed."""

    def find_spec(self, name, path=None, target=None):
        if name not in _TARGETS or name in _patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                continue
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def patched_exec(module):
            exec_module(module)
            _apply(name, module)

        try:
            # An instance attribute: the loader's class, which other modules
            # use too, stays as it is.
            loader.exec_module = patched_exec
        except Exception:
            return spec
        return spec


def install() -> None:
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    for name in _TARGETS:
        if name in sys.modules:
            _apply(name, sys.modules[name])
    sys.meta_path.insert(0, _Finder())

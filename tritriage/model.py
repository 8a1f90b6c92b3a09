"""The records that pass between tritriage's stages.

Each stage writes its records once and the next one reads them: collect makes
``Kernel`` and ``Spec`` records and ``CompileResult``s, classify turns a failed
result's text into a ``Diagnosis``, report renders what the store holds.  They
are frozen so that no stage edits another's output in place; ``to_dict`` /
``from_dict`` give the JSON form used by the store, the worker protocol and
``--json`` outputs.

The compile records (``StageResult``, ``CompileResult``) and the names of
stages and outcomes are defined in ``tritriage/sandbox/`` (the worker builds
them there, where nothing but the standard library and triton may be
imported) and re-exported here: import them from this module.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from tritriage.sandbox.records import _NESTED, CompileResult, Record, StageResult, _plain  # noqa: F401
from tritriage.sandbox.stages import (  # noqa: F401 - the one home of these names is the sandbox
    COMPILE_STAGES, DEFAULT_ARCH, FAIL_OUTCOMES, FAILED, HANG_SUSPECTED, NOT_RUN, OUTCOMES, PASSED, PASSES,
    STAGE_BANNERS, STAGES,
)


# A spec a hint search made (``compile/hints.py``) carries this in its name:
# its compiles are stored like any, but are never the kernel's verdict.
HINT_MARK = "~hint"


def is_hint(spec_name: str) -> bool:
    return HINT_MARK in spec_name


# --------------------------------------------------------------------------
# collect: discovery


@dataclass(frozen=True)
class Param(Record):
    name: str
    constexpr: bool = False
    annotation: str | None = None  # source text of the annotation, if any
    default: str | None = None  # source text of the default, if any


@dataclass(frozen=True)
class LaunchSite(Record):
    """One ``kernel[grid](...)`` call found in the checkout."""

    file: str  # relative to the checkout
    line: int
    function: str | None  # qualified name of the enclosing Python function
    grid: str  # source text
    args: tuple[str, ...] = ()  # positional arguments, source text
    kwargs: Mapping[str, str] = field(default_factory=dict)  # keyword -> source text
    literal_kwargs: Mapping[str, Any] = field(default_factory=dict)  # keyword -> Python literal
    # Source of the ``if`` tests the call sits under (``not (...)`` for an
    # else branch): what decides whether a given platform ever reaches it.
    guards: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kernel(Record):
    """A ``@triton.jit`` function found by static analysis."""

    id: str  # fully qualified: vllm.attention.ops.prefix_prefill._fwd_kernel
    name: str  # bare name
    qualname: str  # name inside its module (Class.method for nested ones)
    module: str  # dotted module path
    file: str  # relative to the checkout
    line: int  # line of the ``def``
    end_line: int
    params: tuple[Param, ...] = ()
    do_not_specialize: tuple[str, ...] = ()
    jit_options: Mapping[str, str] = field(default_factory=dict)  # other @triton.jit(...) kwargs, source
    autotune: str | None = None  # source text of the @triton.autotune(...) decorator
    heuristics: str | None = None  # source text of the @triton.heuristics(...) decorator
    decorators: tuple[str, ...] = ()  # every decorator, source text, outermost first
    calls: tuple[str, ...] = ()  # ids of other jit functions it calls
    launch_sites: tuple[LaunchSite, ...] = ()
    kind: str = "entry"  # "entry" (launched or not only called from jit code) | "helper"
    source_hash: str = ""  # sha256 of the function's own source text
    # sha256 of the module-level statements (constants, imports) binding the
    # names its source uses; "" when it uses none.
    context_hash: str = ""
    # "cuda" | "rocm" | "xpu" when an Ascend host never uses the kernel (a
    # vendor-only file, or launched only behind a vendor check), with why.
    platform_only: str | None = None
    platform_reason: str = ""

    @property
    def constexprs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.constexpr)

    @property
    def autotune_keys(self) -> tuple[str, ...]:
        """The constexprs its ``triton.Config({...})`` entries set (configs a
        function builds give none)."""
        import ast
        try:
            tree = ast.parse(self.autotune or "", mode="eval")
        except SyntaxError:
            return ()
        keys: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and "Config" in (getattr(node.func, "attr", None),
                                                           getattr(node.func, "id", None)):
                if node.args and isinstance(node.args[0], ast.Dict):
                    for k in node.args[0].keys:
                        if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value not in keys:
                            keys.append(k.value)
        return tuple(keys)


@dataclass(frozen=True)
class SkippedFile(Record):
    file: str
    reason: str


@dataclass(frozen=True)
class OtherJit(Record):
    """A function decorated with another DSL's ``jit`` (CuTe, Gluon, numba...)."""

    file: str
    line: int
    qualname: str
    dsl: str  # the decorator as written: cute.jit, gluon.jit, numba.jit, ...


@dataclass(frozen=True)
class Inventory(Record):
    """What discovery found in one checkout."""

    root: str  # absolute path of the checkout
    kernels: tuple[Kernel, ...] = ()
    other_jit: tuple[OtherJit, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    files_scanned: int = 0

    def by_id(self) -> dict[str, Kernel]:
        return {k.id: k for k in self.kernels}


def reachable(kernel: Kernel, by_id: dict[str, Kernel]) -> list[Kernel]:
    """``kernel`` and every jit helper it reaches through calls, each once."""
    seen: set[str] = set()
    out, todo = [], [kernel]
    while todo:
        k = todo.pop()
        if k.id in seen:
            continue
        seen.add(k.id)
        out.append(k)
        todo.extend(by_id[c] for c in k.calls if c in by_id)
    return out


# --------------------------------------------------------------------------
# collect: specs


@dataclass(frozen=True)
class Spec(Record):
    """A specialization: what ``triton.compile`` needs besides the function.

    ``signature`` maps each non-constexpr parameter to a Triton type string
    (``*fp16``, ``i32``, ``fp32``...). ``constexprs`` maps each constexpr
    parameter to its value. ``options`` holds compile options (num_warps...).
    ``rules`` says, per parameter, which rule or source set it, so that an
    inferred spec can be read and overridden.

    Constexpr values stay JSON: a Triton dtype is the string ``"tl.float16"``
    (``"tl.bfloat16"``, ...), turned into the ``tl`` object right before the
    compile (worker ``_tl_value``, ``specs.compile_args``).  A non-constexpr
    parameter may also appear in ``constexprs`` (``None`` for an absent
    optional tensor), as Triton specializes such arguments.
    """

    kernel: str  # kernel id
    name: str = "default"
    source: str = "inferred"  # catalog | traced | inferred
    signature: Mapping[str, str] = field(default_factory=dict)
    constexprs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    rules: Mapping[str, str] = field(default_factory=dict)
    params_fingerprint: str = ""  # of the parameter list the spec was written for
    origin: str = ""  # catalog file, trace command, ...
    # Why the spec no longer fits the kernel (its params_fingerprint differs
    # from the kernel's); empty when it fits.  ``specs_for`` returns stale
    # specs only when asked (``include_stale=True``): never compile one.
    stale: str = ""

    def key(self) -> str:
        return json.dumps(
            {"sig": dict(self.signature), "c": _plain(self.constexprs), "o": _plain(self.options)},
            sort_keys=True,
            default=str,
        )


# --------------------------------------------------------------------------
# classify


@dataclass(frozen=True)
class Location(Record):
    file: str  # relative to the checkout when it lies inside it
    line: int
    col: int = 0
    source: str = ""  # the source line, stripped

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.col else f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Diagnosis(Record):
    cls: str  # loader | spec | frontend | ConvertTritonIRToLinalgIR | ConvertLinalgRToBinary | runtime | vllm-ascend gap | pytorch gap | environment | timeout | crash | unknown
    subclass: str
    fingerprint: str
    location: Location | None = None
    hint: str | None = None
    pattern: str | None = None  # id of the pattern that matched; None for unknown
    excerpt: str = ""  # the cleaned lines that explain the failure
    # The failure's whole text as reports show it, cleaned when it was
    # classified: a report renders what the scan stored, whatever the rules
    # say by then.
    cleaned: str = ""


# --------------------------------------------------------------------------
# collect: vLLM's own tests (``tritriage test``)

# Test case outcomes.  "error" is pytest's: a collection, setup or teardown
# failure; "not-run" carries the reason in ``TestResult.reason``.
TEST_OUTCOMES: tuple[str, ...] = ("passed", "failed", "error", "skipped", "timeout", "not-run")


@dataclass(frozen=True)
class TestMapping(Record):
    """One test command that exercises a kernel source file.

    ``command`` is None for a file no test was found for.
    """

    __test__ = False  # not a pytest test class, whatever its name

    kernel_file: str  # relative to the checkout
    command: str | None  # as the catalog writes it, or "pytest <test file>"
    source: str = ""  # catalog | imports
    via: str = ""  # why: the import that links them, or the caller file a helper is reached from
    kernels: tuple[str, ...] = ()  # kernel ids of the file it exercises; () = the whole file


@dataclass(frozen=True)
class TestResult(Record):
    """The verdict of one test case, or of a whole command that did not run."""

    __test__ = False

    command: str
    test_file: str  # relative to the checkout; "" when the command names none
    case: str  # "test_fn[param]", "TestCls::test_fn", "(collection)"; "" = the whole command
    outcome: str  # one of TEST_OUTCOMES
    kernel_files: tuple[str, ...] = ()  # the kernel files the command is mapped to
    diagnosis: Diagnosis | None = None  # failures, errors and timeouts only
    seconds: float = 0.0
    reason: str = ""  # why not run, or why skipped
    output: str = ""  # failure text and captured output, capped
    log: str | None = None  # the command's full output, saved on disk


_NESTED.update({
    ("Kernel", "params"): Param,
    ("Kernel", "launch_sites"): LaunchSite,
    ("Inventory", "kernels"): Kernel,
    ("Inventory", "other_jit"): OtherJit,
    ("Inventory", "skipped"): SkippedFile,
    ("Diagnosis", "location"): Location,
    ("TestResult", "diagnosis"): Diagnosis,
})

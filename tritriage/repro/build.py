"""``tritriage repro``: a standalone script that reproduces one kernel's verdict.

From a stored scan (the latest, or ``--run``) the kernel's result for a spec
(``--spec``; by default its first failing spec) is turned into:

* a Python script (``templates/repro.py.j2``) that loads the kernel from the
  checkout it was scanned in, without vLLM, and

  - on an Ascend host with torch_npu, where a trace recorded the launch
    (``specs/trace.py``), builds inputs of the recorded shapes, dtypes and
    strides on ``npu`` (random values; ints in [0, 4) since they are often
    indices), launches ``kernel[grid](...)`` and prints PASS or FAIL with the
    compiler's output;
  - otherwise (``--compile-only``, no device, or no recorded shapes) compiles
    stage by stage exactly as the scan's worker does, prints each stage's
    verdict and the compiler output, and -- where tritriage is importable --
    the class, subclass and fingerprint next to the scan's.

  Self-contained by design: the script is meant to be mailed to whoever owns
  the compiler, or copied to an Ascend host that has triton-ascend and the
  checkout but not tritriage.  So it embeds tritriage's loader (compressed;
  the loader is the exact code that loaded the kernel in the scan), the
  worker's compile code, ``sandbox/stages.py``, and the running part,
  ``runtime.py`` (both readable, verbatim).  Only the optional
  classification imports tritriage, from the installed package or else from
  the directory it was generated from.

* with ``--ir``, a shell script (``templates/repro_ir.sh.j2``) that embeds the
  failing stage's saved input (the ``.ttir`` given to triton-adapter-opt, or
  the ``.ttadapter.mlir`` given to bishengir-compile) and runs the same tool
  with the same flags: a compiler engineer can bisect triton-ascend builds
  without Python or vLLM.

``reproducer_command`` gives the command line that makes a kernel's script,
for reports to link to.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import sys
import zlib
from pathlib import Path
from typing import Sequence

from tritriage.sandbox import stages
from tritriage.sandbox.stages import HIVMC_STANDIN_BANNER, PASSES, TOOL_OF_STAGE
from tritriage.errors import UserError
from tritriage.model import Kernel, is_hint
from tritriage.select import one_id, run_of
from tritriage.repro.runtime import RESULT_TAG, TOOL_ENV
from tritriage.store import Run, Store, StoredResult

TEMPLATES = Path(__file__).resolve().parent / "templates"
RUNTIME = Path(__file__).resolve().parent / "runtime.py"
STAGES_SOURCE = Path(stages.__file__)
STAGE_CLASS = {"linalg": "ConvertTritonIRToLinalgIR", "binary": "ConvertLinalgRToBinary", "ttir": "frontend"}


def reproducer_command(kernel_id: str, spec_name: str | None = None, *, run_id: int | None = None,
                       compile_only: bool = True) -> str:
    """The ``tritriage repro`` command line for one kernel (for reports)."""
    parts = ["tritriage", "repro", "--kernel", kernel_id]
    if spec_name:
        parts += ["--spec", spec_name]
    if run_id is not None:
        parts += ["--run", str(run_id)]
    if compile_only:
        parts.append("--compile-only")
    return shlex.join(parts)


# --------------------------------------------------------------------------
# choosing the result


def pick(store: Store, kernel: str, spec: str | None, run_id: int | None) -> tuple[Run, StoredResult, Kernel]:
    """The run, the stored result and the kernel record ``repro`` works from."""
    run = run_of(store, run_id)
    # A hint's spec is stored like any: it can be reproduced too, when named.
    results = store.results(run.id, hints=None if spec and is_hint(spec) else False)
    kid = one_id((r.kernel for r in results), kernel, f"run #{run.id}")
    mine = [r for r in results if r.kernel == kid]
    if spec:
        chosen = [r for r in mine if r.spec_name == spec]
        if not chosen:
            raise UserError(f"{kid} has no spec '{spec}' in run #{run.id} (its specs: "
                            f"{', '.join(r.spec_name for r in mine)})")
        stored = chosen[0]
    else:
        failing = [r for r in mine if r.outcome not in PASSES]
        stored = (failing or mine)[0]
    kernels = {k.id: k for k in store.kernels(run.id)}
    k = kernels.get(kid)
    if k is None:
        raise UserError(f"run #{run.id} holds no kernel record for {kid}")
    return run, stored, k


# --------------------------------------------------------------------------
# rendering


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env


def _doc(text: str) -> str:
    # Text that goes inside the script's docstring.
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').rstrip()


def _indent(text: str, n: int = 2) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else line for line in text.splitlines())


def _verdict(stored: StoredResult) -> str:
    from tritriage.classify.verdict import describe

    return describe(stored.result, stored.diagnosis)


def _loader_payload() -> tuple[list[str], str]:
    from tritriage.sandbox import loader

    src = Path(loader.__file__).read_bytes()
    blob = base64.b64encode(zlib.compress(src, 9)).decode("ascii")
    return [blob[i:i + 76] for i in range(0, len(blob), 76)], hashlib.sha256(src).hexdigest()[:16]


def _standins_literal() -> str:
    from tritriage.sandbox import loader

    return repr(json.dumps(loader._standins(), sort_keys=True))


def _common(run: Run, stored: StoredResult, kernel: Kernel, script_name: str) -> dict:
    import tritriage
    from tritriage.specs.catalog import checkout_version

    d = stored.diagnosis
    return {
        "kernel_id": stored.kernel,
        "spec_name": stored.spec_name,
        "tritriage_version": tritriage.__version__,
        "made_on": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "run_id": run.id,
        "checkout": run.checkout,
        "vllm_version": checkout_version(run.checkout),
        "kernel_file": kernel.file,
        "kernel_line": kernel.line,
        "qualname": kernel.qualname,
        "triton_ascend": run.triton_ascend or "unknown",
        "cann": run.cann or (f"absent: the binary stage ran on {(run.settings or {}).get('compilers', {}).get('binary')}"
                             f", hivmc did not run" if "binary" in run.stages_available
                             else "absent (the binary stage did not run)"),
        "arch": run.arch or "Ascend910B",
        "verdict": _verdict(stored),
        "diagnosis": type("D", (), {"cls": _doc(d.cls), "subclass": _doc(d.subclass),
                                    "fingerprint": d.fingerprint})() if d else None,
        "script_name": script_name,
    }


def python_script(run: Run, stored: StoredResult, kernel: Kernel, *, compile_only: bool,
                  launch: dict | None, script_name: str = "repro.py") -> str:
    """The reproducer script's text."""
    import yaml

    spec = stored.spec
    spec_dict = {"name": spec.name, "signature": dict(spec.signature), "constexprs": dict(spec.constexprs),
                 "options": dict(spec.options)}
    d = stored.diagnosis
    config = {
        "kernel": stored.kernel,
        "checkout": run.checkout,
        "roots": list((run.settings or {}).get("roots") or ()),
        "file": kernel.file,
        "qualname": kernel.qualname,
        "arch": run.arch or "Ascend910B",
        "spec": spec_dict,
        "launch": launch,
        "compile_only": bool(compile_only),
        "timeout": (run.settings or {}).get("timeout") or 120,
        "adapter": (run.settings or {}).get("adapter"),
        "tritriage_path": str(Path(__file__).resolve().parents[2]),
        "made_from": (f"scan run #{run.id}: triton-ascend {run.triton_ascend or '?'}, CANN {run.cann or 'absent'}, "
                      f"arch {run.arch}"),
        "expected": {"verdict": _verdict(stored), "outcome": stored.outcome, "stage": stored.failed_stage,
                     "class": d.cls if d else None, "subclass": d.subclass if d else None,
                     "fingerprint": d.fingerprint if d else None},
    }
    # No single quote anywhere, so the raw ''' string cannot end early.
    config_json = json.dumps(config, indent=1, sort_keys=True, default=str).replace("'", "\\u0027")
    spec_text = yaml.safe_dump({k: v for k, v in spec_dict.items() if v or k == "signature"}, sort_keys=False,
                               width=100)
    launch_text = ""
    if launch:
        shown = {"grid": launch.get("grid"), "tensors": launch.get("tensors"), "scalars": launch.get("scalars")}
        launch_text = yaml.safe_dump(shown, sort_keys=False, width=100, default_flow_style=None)
    if compile_only:
        purpose = ("Compiles the kernel with the scan's spec, stage by stage, as the scan did, and prints\n"
                   "each stage's verdict, the compiler output and the failure's class and fingerprint.\n"
                   "Needs no device.")
        run_note = "compiles only (made with --compile-only); no device needed"
    else:
        purpose = ("On an Ascend host with torch_npu: builds inputs of the recorded shapes and dtypes on\n"
                   "the NPU, launches the kernel and prints PASS or FAIL with the compiler output.\n"
                   "Elsewhere, or with --compile-only, or where no shapes were recorded: compiles only,\n"
                   "stage by stage, as the scan did.")
        run_note = "launches where it can (see above); --compile-only to only compile"
    chunks, sha = _loader_payload()
    ctx = _common(run, stored, kernel, script_name)
    ctx.update(
        purpose=purpose, run_note=run_note, compile_only=compile_only,
        spec_source=spec.source, spec_origin=_doc(spec.origin), spec_text=_doc(_indent(spec_text)),
        launch=launch, launch_text=_doc(_indent(launch_text)),
        config_json=config_json, stages_source=STAGES_SOURCE.read_text().rstrip() + "\n",
        runtime_source=RUNTIME.read_text().rstrip() + "\n",
        loader_chunks=chunks, loader_sha=sha, standins_json=_standins_literal(),
    )
    return _env().get_template("repro.py.j2").render(**ctx)


def ir_script(run: Run, stored: StoredResult, kernel: Kernel, script_name: str = "repro.sh") -> str:
    """The shell script that replays the failing external-tool stage on its saved input."""
    stage_name = stored.failed_stage
    if stored.outcome in PASSES:
        raise UserError(f"{stored.kernel} [{stored.spec_name}] passed in run #{run.id}: nothing to replay")
    stage = stored.result.stage(stage_name) if stage_name else None
    if stage is None or not stage.command:
        where = f"at the {stage_name} stage, which runs inside Python" if stage_name else \
            f"before any compiler stage ({stored.outcome})"
        raise UserError(f"{stored.kernel} [{stored.spec_name}] failed {where}: no external tool to replay; "
                        f"use `{reproducer_command(stored.kernel, stored.spec_name, run_id=run.id)}`")
    if not stage.artifact or not os.path.isfile(stage.artifact):
        raise UserError(f"the saved input of the {stage_name} stage is gone ({stage.artifact or 'never saved'}); "
                        f"`tritriage rerun --kernel {stored.kernel}` saves it again")
    ir_text = Path(stage.artifact).read_text(encoding="utf-8", errors="replace").rstrip("\n")
    argv = list(stage.command)
    tool_path = argv[0]
    tool = os.path.basename(tool_path)
    if tool not in TOOL_ENV:
        # A stand-in (tests) keeps the real tool's interface; name it after the stage's tool.
        tool = TOOL_OF_STAGE.get(stage_name, tool)
    rest = argv[2:]
    shown = []
    args = []
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "-o" and i + 1 < len(rest):
            out = '"$work/' + os.path.basename(rest[i + 1]) + '"'
            args += ["-o", out]
            shown += ["-o", "$work/" + os.path.basename(rest[i + 1])]
            i += 2
            continue
        args.append(shlex.quote(a))
        shown.append(a)
        i += 1
    delimiter = "TRITRIAGE_IR_EOF"
    while re.search(rf"^{delimiter}$", ir_text, re.M):
        delimiter += "_"
    ctx = _common(run, stored, kernel, script_name)
    ctx.update(
        stage=stage_name, stage_class=STAGE_CLASS.get(stage_name, stage_name), tool=tool,
        tool_env=TOOL_ENV.get(tool, "TOOL"), tool_path=tool_path, tool_path_quoted=_dq(tool_path),
        original_command=shlex.join(argv), input_name=os.path.basename(stage.artifact),
        delimiter=delimiter, ir_text=ir_text, args=" ".join(args),
        standin_hivmc=stage_name == "binary" and not run.cann, standin_banner=HIVMC_STANDIN_BANNER,
        shown_args=_dq("$input " + shlex.join(shown)).strip('"'),
    )
    return _env().get_template("repro_ir.sh.j2").render(**ctx)


def _dq(text: str) -> str:
    """Safe inside double quotes in bash (``$work``/``$input`` stay variables)."""
    return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'


# --------------------------------------------------------------------------
# the command


def run_script(path: str | Path, args: Sequence[str] = (), python: str | None = None, timeout: float = 600,
               env: dict | None = None):
    """Run a reproducer (tests, CI); (exit code, output, the parsed result line or None)."""
    import subprocess

    proc = subprocess.run([python or sys.executable, str(path), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG + " "):
            result = json.loads(line[len(RESULT_TAG) + 1:])
    return proc.returncode, proc.stdout + proc.stderr, result

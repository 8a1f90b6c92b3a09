"""``tritriage repro --kernel NAME``: write a standalone reproducer of a stored verdict."""

from __future__ import annotations

from pathlib import Path
from tritriage.sandbox.stages import PASSES
from tritriage.store import Store
import os
import re
import sys
from tritriage.repro.build import _verdict, ir_script, pick, python_script


def repro_command(*, kernel: str, spec: str | None = None, run_id: int | None = None, output: str | None = None,
                  compile_only: bool = False, ir: bool = False, store: Store | None = None,
                  out=None) -> Path | None:
    """``tritriage repro``: write the script (``output`` "-" prints it) and say how to run it."""
    out = out or sys.stderr
    own = store is None
    store = store or Store.open()
    try:
        run, stored, k = pick(store, kernel, spec, run_id)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{k.name}_{stored.spec_name}")
        default = f"repro_{safe}.sh" if ir else f"repro_{safe}.py"
        name = default if output in (None, "-") else os.path.basename(output)
        if ir:
            text = ir_script(run, stored, k, script_name=name)
        else:
            from tritriage.specs.trace import launch_data

            data = launch_data(k, stored.spec)
            text = python_script(run, stored, k, compile_only=compile_only, launch=data, script_name=name)
    finally:
        if own:
            store.close()
    if output == "-":
        sys.stdout.write(text)
        return None
    path = Path(output or default)
    path.write_text(text)
    path.chmod(0o755)
    verdict = _verdict(stored)
    how = f"bash {path}" if ir else f"python3 {path}"
    note = "" if stored.outcome not in PASSES else " (it passed in the scan)"
    print(f"wrote {path}: {stored.kernel} [{stored.spec_name}], scan run #{run.id}: {verdict}{note}", file=out)
    print(f"run it with: {how}", file=out)
    return path

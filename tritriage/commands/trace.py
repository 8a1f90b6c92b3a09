"""``tritriage trace -- CMD``: record the spec of every Triton launch CMD makes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence
import os
import shutil
import sys
import tempfile
from tritriage.specs.trace import TraceResult, read_records, run_traced, save, to_specs


def trace_command(command: Sequence[str], *, checkout: str | Path | None = None, write: str | Path | None = None,
                  save_specs: bool = True, bench_configs: bool = False, interpreter_fixes: bool = True,
                  keep_records: str | Path | None = None, err=None) -> TraceResult:
    """``tritriage trace``: run, record, save; the command's exit code is in the result."""
    from tritriage.specs.catalog import checkout_version
    from tritriage.discover.inventory import check_root, discover

    err = err or sys.stderr
    root = check_root(checkout or os.getcwd())
    record_dir = Path(keep_records) if keep_records else Path(tempfile.mkdtemp(prefix="tritriage-trace-"))
    record_dir.mkdir(parents=True, exist_ok=True)
    try:
        code = run_traced(command, record_dir, interpreter_fixes=interpreter_fixes)
        result = TraceResult(exit_code=code, launches=read_records(record_dir))
    finally:
        if not keep_records:
            shutil.rmtree(record_dir, ignore_errors=True)
    try:
        _finish(result, command, root, write, save_specs, bench_configs, err, discover, checkout_version)
    except Exception as e:  # noqa: BLE001 - the command ran; its exit code still comes back
        print(f"tritriage trace: warning: recorded launches not saved: {type(e).__name__}: {e}", file=err)
    return result


def _finish(result, command, root, write, save_specs, bench_configs, err, discover, checkout_version) -> None:
    import shlex

    from tritriage.specs.resolve import traced_dir

    cmd_text = shlex.join(command)
    if not result.launches:
        print("tritriage trace: no Triton launch recorded (does the command run Python with triton? "
              "`python -I`/`-E`/`-S` skip the hook)", file=err)
        return
    inventory = discover(root)
    result.mapped, result.unmapped, result.skipped_bench = to_specs(
        result.launches, inventory, origin=f"trace: {cmd_text}", bench_configs=bench_configs)
    version = checkout_version(root)
    if save_specs and result.mapped:
        files, result.new_specs = save(result.mapped, traced_dir(), command=cmd_text, version=version)
        result.written += files
    if write and result.mapped:
        files, n = save(result.mapped, Path(write), command=cmd_text, version=version)
        result.written += files
        if not save_specs:
            result.new_specs = n
    kernels = {k.id for k, _, _ in result.mapped}
    where = []
    if save_specs and result.mapped:
        where.append(f"saved under {traced_dir()}")
    if write and result.mapped:
        where.append(f"written under {write}")
    bench = f", {result.skipped_bench} autotune benchmark launches left out" if result.skipped_bench else ""
    print(f"tritriage trace: {len(result.mapped)} specs of {len(kernels)} kernels recorded "
          f"({result.new_specs} new){bench}" + (f"; {', '.join(where)}" if where else ""), file=err)
    outside = {}
    for launch, why in result.unmapped:
        outside.setdefault(why, launch)
    for why in sorted(outside):
        print(f"tritriage trace: not saved: {outside[why].qualname}: {why}", file=err)

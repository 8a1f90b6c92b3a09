"""``tritriage rerun``: recompile some kernels of a stored scan, print before -> after."""

from __future__ import annotations

import sys
from typing import Sequence

from tritriage.commands.progress import factory
from tritriage.compile.scan import rerun


def rerun_command(*, kernel: Sequence[str] | str | None = None, file: str | None = None, failed: bool = False,
                  cls: str | None = None, run_id: int | None = None, python: str | None = None,
                  jobs: int | None = None, timeout: float | None = None, memory_mb: int | None = None,
                  quiet: bool = False, bishengir: str | None = None) -> int:
    from tritriage.store import writer_lock

    try:
        # A rerun rewrites results of a run: not while a scan writes the store.
        with writer_lock(what="rerun"):
            rerun(kernel=kernel, file=file, failed=failed, cls=cls, run_id=run_id, python=python, jobs=jobs,
                  timeout=timeout, memory_mb=memory_mb, progress_factory=factory(quiet), out=print,
                  bishengir=bishengir)
    except KeyboardInterrupt:
        print("interrupted: the results recompiled so far are stored", file=sys.stderr)
        return 130
    return 0

"""The hang policy: how long a compile may sit in one stage before it counts
as a suspected hang.

A hang (triton-adapter-opt or bishengir-compile spinning for minutes on one
kernel) used to hold a worker for the whole ``--timeout``.  Stages are far
more regular than whole compiles (loading a kernel's module can take seconds,
the adapter rarely more than one), so each compiler stage gets its own budget:
HANG_FACTOR times what that stage took for this very kernel and spec before,
or, lacking that, times the 90th percentile of the stage on this machine (the
store's history and this run's results so far), never under HANG_FLOOR.  The
budget is spent in CPU seconds of the compile's process tree (the worker,
``sandbox/worker.py``), so a loaded machine does not turn slow compiles into
hangs; a stage that sits past its budget using almost no CPU is cut as
stalled.  A compile cut by its budget is a ``timeout`` whose reason says "hang
suspected" and why; the scan retries suspects with the full timeout at the end, as far as
``--hang-budget`` allows.  With too little history (a first scan's first
compiles) a stage has no budget and only the full timeout applies.

Budgets are asked for when a job is sent (``WorkerPool.budgets``), so a cold
scan starts cutting hangs as soon as it has seen MIN_SAMPLES compiles.
"""

from __future__ import annotations

import threading
from typing import Iterable

from tritriage.model import CompileResult

HANG_FACTOR = 10.0
HANG_FLOOR = 20.0
# Compiles of a stage seen before its percentile is trusted.
MIN_SAMPLES = 20
# The compiler's stages; "load" runs the checkout's own module code, whose
# time says nothing of the compiler.
BUDGETED = ("frontend", "ttir", "linalg", "binary")
# What a stage's time can be learnt from: a compile that ran it to the end.
_LEARN_FROM = ("passed", "failed")
_NOT_LEARNT = ("timeout", "crash", "oom")


class HangPolicy:
    def __init__(self, history: Iterable[tuple[str, str, str, float]], timeout: float):
        """``history``: (kernel id, spec, stage, seconds) of earlier compiles, oldest first."""
        self.timeout = timeout
        self._own: dict[tuple[str, str, str], float] = {}
        self._samples: dict[str, list[float]] = {st: [] for st in BUDGETED}
        self._p90: dict[str, float | None] = {}
        self._lock = threading.Lock()
        for kernel, spec, stage, seconds in history:
            self._add(kernel, spec, stage, seconds)

    def _add(self, kernel: str, spec: str, stage: str, seconds: float) -> None:
        if stage in self._samples and seconds is not None:
            self._own[(kernel, spec, stage)] = seconds
            self._samples[stage].append(seconds)
            self._p90.pop(stage, None)

    def observe(self, result: CompileResult) -> None:
        """Learn from a finished compile of this run."""
        if result.outcome in _NOT_LEARNT:
            return
        with self._lock:
            for st in result.stages:
                if st.status in _LEARN_FROM:
                    self._add(result.kernel, result.spec, st.stage, st.seconds)

    def typical(self, stage: str) -> float | None:
        """The 90th percentile of ``stage`` on this machine, once MIN_SAMPLES are known."""
        if stage not in self._p90:
            xs = sorted(self._samples.get(stage, ()))
            self._p90[stage] = xs[int(0.9 * (len(xs) - 1))] if len(xs) >= MIN_SAMPLES else None
        return self._p90[stage]

    def budgets(self, job) -> dict[str, tuple[float, str]]:
        """stage -> (seconds, why) for ``job``; a stage left out has only the full timeout."""
        out: dict[str, tuple[float, str]] = {}
        with self._lock:
            for stage in BUDGETED:
                own = self._own.get((job.kernel.id, job.spec.name, stage))
                if own is not None:
                    base, what = own, f"this compile's {stage} took {own:.2f} s before"
                else:
                    base = self.typical(stage)
                    if base is None:
                        continue
                    what = f"{stage} takes up to {base:.2f} s in 9 compiles out of 10 here"
                seconds = max(HANG_FLOOR, HANG_FACTOR * base)
                if seconds < self.timeout:
                    out[stage] = (round(seconds, 1), f"{what}; the budget is {HANG_FACTOR:g} times that, "
                                                     f"at least {HANG_FLOOR:g} s")
        return out

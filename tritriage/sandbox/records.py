"""The compile records, built inside the compiler's interpreter.

Standard library only: the worker (``worker.py``) runs where tritriage's
dependencies may be missing.  ``tritriage.model`` re-exports these records;
everything outside the sandbox imports them from there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from tritriage.sandbox.stages import FAILED


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Nested record types by (class, field): model.py adds its own.
_NESTED: dict = {}


class Record:
    """Mixin: JSON round trip for the frozen records below."""

    def to_dict(self) -> dict:
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        kwargs = {}
        hints = {f.name: f for f in dataclasses.fields(cls)}
        for name, f in hints.items():
            if name not in data:
                continue
            value = data[name]
            sub = _NESTED.get((cls.__name__, name))
            if sub is not None and value is not None:
                if isinstance(value, list):
                    value = tuple(sub.from_dict(v) for v in value)
                else:
                    value = sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class StageResult(Record):
    stage: str  # one of STAGES
    status: str  # passed | failed | not-run
    reason: str = ""  # why failed or not run; empty when passed
    seconds: float = 0.0
    command: tuple[str, ...] = ()  # external tool command line, when there is one
    artifact: str | None = None  # path of the stage's saved input, when it failed
    # What the stage measured: ub_bits / ub_available_bits (binary stage).
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class CompileResult(Record):
    """How far one kernel got with one spec.

    ``outcome`` is one of:
      passed            every stage passed (only possible where CANN is present)
      passed-to-binary  every stage that could run here passed: the binary stage
                        on bishengir-compile without CANN; hivmc not run
      passed-to-linalg  every stage that could run here passed; binary not run
      failed            a compiler stage failed (see ``stages``)
      spec-error        the spec does not fit the kernel (the tool's problem)
      loader-error      the kernel could not be loaded from the checkout
      timeout           the compile ran past its time limit
      crash             the worker died by a signal outside any compiler stage
      oom               the compile ran past its memory limit
    """

    kernel: str
    spec: str
    outcome: str
    stages: tuple[StageResult, ...] = ()
    log: str = ""  # everything the compile printed, noise included
    error: str = ""  # the failure text that classify reads
    seconds: float = 0.0  # wall time of the compile, worker side
    compiler_seconds: float = 0.0  # time spent inside triton's stages
    signal: int | None = None
    flaky: bool = False  # a failure that did not reproduce on retry
    artifacts_dir: str | None = None

    def stage(self, name: str) -> StageResult | None:
        for s in self.stages:
            if s.stage == name:
                return s
        return None

    @property
    def failed_stage(self) -> str | None:
        for s in self.stages:
            if s.status == FAILED:
                return s.stage
        return None



_NESTED[("CompileResult", "stages")] = StageResult

"""``tritriage merge FILE...``: the ``report --json`` outputs of a sharded scan, as one run.

A CI matrix runs ``tritriage scan PATH --shard K/N`` on N machines, each with
its own data directory, and uploads ``tritriage report --json``; a last job
merges them here, after which every report format works as on one scan.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from tritriage.errors import UserError
from tritriage.model import (CompileResult, Diagnosis, Kernel, Location, Spec, StageResult)

# What must agree between shards for their verdicts to be one run's.
_SAME = ("triton_ascend", "cann", "arch", "stages_available", "compilers")


def _read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (give `tritriage report --json` outputs)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a `tritriage report --json` output ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1 or "kernels" not in doc or "run" not in doc:
        raise UserError(f"{path}: not a `tritriage report --json` output (schema_version 1)")
    return doc


def shard_times(path: str | Path, flag: str = "--shard-times") -> Mapping[tuple[str, str], float]:
    """(kernel id, spec) -> seconds, from an earlier scan's ``report --json``
    (last night's merged report): what ``--shard K/N`` balances by."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = (-1, -1)  # _read says what is wrong with it
    try:
        return _shard_times(str(p), *stamp)
    except UserError as e:
        raise UserError(f"{flag} {e}") from None


@functools.lru_cache(maxsize=4)
def _shard_times(path: str, size: int, mtime_ns: int) -> Mapping[tuple[str, str], float]:
    # Read once per file state: the option check and the scan both ask.
    doc = _read(Path(path))
    times = {}
    for k in doc["kernels"]:
        for s in k.get("specs") or ():
            if isinstance(s, dict) and isinstance(s.get("seconds"), (int, float)) and s.get("name"):
                times[(k.get("id"), s["name"])] = float(s["seconds"])
    return MappingProxyType(times)


def _kernel(k: dict) -> Kernel:
    return Kernel(id=k["id"], name=k["name"], qualname=k["qualname"], module=k["module"], file=k["file"],
                  line=k["line"], end_line=k.get("end_line") or k["line"], kind=k.get("kind") or "entry",
                  calls=tuple(k.get("calls") or ()))


def _result(kid: str, s: dict) -> tuple[CompileResult, Diagnosis | None, Spec]:
    e = s.get("error")
    text = (e or {}).get("diagnostic") or s.get("spec_error") or ""
    stages = tuple(StageResult(st["stage"], st["status"], st.get("reason") or "") for st in s.get("stages") or ())
    result = CompileResult(kernel=kid, spec=s["name"], outcome=s["outcome"], stages=stages, error=text,
                           seconds=s.get("seconds") or 0.0, flaky=bool(s.get("flaky")))
    diagnosis = None
    if e:
        loc = e.get("location")
        diagnosis = Diagnosis(cls=e["class"], subclass=e["subclass"], fingerprint=e["fingerprint"],
                              location=Location(**loc) if loc else None, hint=e.get("hint"), cleaned=text)
    spec = Spec(kernel=kid, name=s["name"], source=s.get("source") or "inferred", origin=s.get("origin") or "",
                signature=s.get("signature") or {}, constexprs=s.get("constexprs") or {},
                options=s.get("options") or {})
    return result, diagnosis, spec


def merge_command(files: list[Path], *, quiet: bool = False) -> int:
    from tritriage.store import Store, writer_lock

    if not files:
        raise UserError("merge needs the `tritriage report --json` output of each shard")
    docs = [(Path(f), _read(Path(f))) for f in files]
    first = docs[0][1]["run"]
    for path, doc in docs[1:]:
        for key in _SAME:
            if doc["run"].get(key) != first.get(key):
                raise UserError(f"{path}: {key} {doc['run'].get(key)!r} differs from {docs[0][0]}'s "
                                f"{first.get(key)!r}: not shards of one scan")
    kernels: dict[str, Kernel] = {}
    tests: dict[str, list] = {}
    results: dict[tuple[str, str], tuple] = {}
    for path, doc in docs:
        for k in doc["kernels"]:
            kernels.setdefault(k["id"], _kernel(k))
            if k.get("tests"):
                tests[k["id"]] = list(k["tests"])
            for s in k.get("specs") or ():
                key = (k["id"], s["name"])
                if key in results:
                    raise UserError(f"{path}: {k['id']} [{s['name']}] is also in {results[key][0]}: "
                                    "shards of one scan never compile a pair twice")
                results[key] = (path, *_result(k["id"], s))
    with writer_lock(what="merge"), Store.open() as store:
        run_id = store.new_run(
            checkout=first["checkout"], commit=first.get("commit"), triton_ascend=first.get("triton_ascend"),
            cann=first.get("cann"), arch=first.get("arch"), python=first.get("python"),
            stages_available=first.get("stages_available") or (), argv=["tritriage", "merge", *map(str, files)],
            settings={"compilers": first.get("compilers") or {}, "vllm_version": first.get("vllm_version"),
                      "catalog_entries": {kid: {"tests": t} for kid, t in tests.items()},
                      "merged_from": [str(p) for p, _ in docs]})
        store.add_kernels(run_id, kernels.values())
        with store.transaction():
            for _, result, diagnosis, spec in results.values():
                store.add_result(run_id, result, diagnosis, None, spec=spec)
        store.finish_run(run_id, "complete")
    if not quiet:
        print(f"run #{run_id}: {len(results)} kernel/spec pairs of {len(kernels)} jit functions from "
              f"{len(docs)} shard reports; `tritriage report` shows it")
    return 0

"""``tritriage trace -- CMD...``: record the specs of real Triton launches.

The command runs as a child process with ``_tracehook/`` first on its
``PYTHONPATH``; that directory's ``sitecustomize.py`` installs the recorder
(``_tracehook/tritriage_trace_hook.py``, whose docstring says what it patches
and why) in every Python process the command starts, and each process writes
one JSON line per distinct specialization into a temporary directory.  The
command's stdin, stdout and stderr are its own and its exit status is
returned unchanged; the recorder only ever adds warnings on stderr.

Afterwards the records are read here, their kernels found in the checkout
(absolute file -> path in the checkout -> ``discover()``'s kernel) and saved:

* specs, as catalog YAML with ``source: traced`` under ``traced_dir()``
  (merged with what earlier traces recorded; ``specs_for`` picks them up);
* launch data (tensor shapes, strides, dtypes, scalar values, grid) in a
  ``<file>.launches.json`` next to each YAML, keyed by spec name and
  ``Spec.key()``: the catalog format has no place for shapes, and ``repro``
  looks launch data up by specialization, so a catalog spec equal to a
  traced one gets its shapes too;
* with ``--write DIR``, the same YAML and launch files under ``DIR`` for review.

Launches made while ``@triton.autotune`` benchmarks its configs are left out
unless asked for (``--bench-configs``): the spec that matters is the one the
autotuner chose, which is launched right after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from tritriage import yamlio
from tritriage.errors import UserError
from tritriage.model import Inventory, Kernel, Spec

HOOK_DIR = Path(__file__).resolve().parent / "_tracehook"
LAUNCHES_SUFFIX = ".launches.json"


@dataclass
class Launch:
    """One recorded specialization of one kernel (a line of the hook's output)."""

    file: str  # absolute, as the traced process saw it
    qualname: str
    name: str
    line: int
    signature: dict
    constexprs: dict
    options: dict
    phase: str = "launch"  # launch | bench | warmup
    backend: str = ""
    grid: list | None = None
    tensors: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)
    extra_options: dict = field(default_factory=dict)
    test: str = ""
    argv: list = field(default_factory=list)

    @classmethod
    def from_record(cls, rec: dict) -> "Launch":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in rec.items() if k in known})

    def spec_key(self, kernel_id: str) -> str:
        return Spec(kernel=kernel_id, signature=self.signature, constexprs=self.constexprs,
                    options=self.options).key()

    def launch_data(self) -> dict:
        return {"grid": self.grid, "tensors": self.tensors, "scalars": self.scalars,
                "extra_options": self.extra_options, "backend": self.backend, "test": self.test}


@dataclass
class TraceResult:
    exit_code: int
    launches: list[Launch] = field(default_factory=list)  # every record read, deduplicated
    mapped: list[tuple[Kernel, Spec, Launch]] = field(default_factory=list)
    unmapped: list[tuple[Launch, str]] = field(default_factory=list)  # (launch, why)
    written: list[Path] = field(default_factory=list)
    new_specs: int = 0
    skipped_bench: int = 0


# --------------------------------------------------------------------------
# running the command


def hook_env(record_dir: str | Path, env: dict | None = None, *, interpreter_fixes: bool = True) -> dict:
    """The environment that makes every Python process of a command record its launches."""
    env = dict(os.environ if env is None else env)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(HOOK_DIR) + (os.pathsep + old if old else "")
    env["TRITRIAGE_TRACE_DIR"] = str(record_dir)
    env["TRITRIAGE_TRACE_INTERPRETER_FIXES"] = "1" if interpreter_fixes else "0"
    return env


def run_traced(command: Sequence[str], record_dir: str | Path, *, interpreter_fixes: bool = True,
               cwd: str | None = None) -> int:
    """Run ``command`` with the recorder; its exit status, shell-style (128+N for signal N)."""
    if not command:
        raise UserError("trace needs a command: tritriage trace -- pytest tests/kernels/test_x.py")
    exe = shutil.which(command[0]) if os.sep not in command[0] else command[0]
    if exe is None:
        raise UserError(f"{command[0]}: command not found")
    env = hook_env(record_dir, interpreter_fixes=interpreter_fixes)
    # Ctrl-C reaches the command through the terminal; the tool waits for it
    # to finish and still saves what it recorded.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(list(command), env=env, cwd=cwd,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    return 128 - code if code < 0 else code


def read_records(record_dir: str | Path) -> list[Launch]:
    """Every record the command's processes wrote, deduplicated across processes."""
    out, seen = [], set()
    for path in sorted(Path(record_dir).glob("launches-*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a process killed mid-write
                if not isinstance(rec, dict) or "qualname" not in rec:
                    continue
                launch = Launch.from_record(rec)
                key = json.dumps([launch.file, launch.qualname, launch.signature, launch.constexprs,
                                  launch.options, launch.phase], sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    out.append(launch)
    return out


# --------------------------------------------------------------------------
# from records to the checkout's kernels


def _plain_qualname(q: str) -> str:
    return q.replace(".<locals>", "")


def map_launch(launch: Launch, inventory: Inventory) -> tuple[Kernel | None, str]:
    """The checkout's kernel a launch ran, or None and why not."""
    root = Path(inventory.root)
    path = Path(launch.file)
    rel = None
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
    except ValueError:
        # An installed copy (site-packages/vllm/...): the longest tail of the
        # path that names a file of the checkout.
        files = {k.file for k in inventory.kernels}
        parts = path.parts
        for i in range(1, len(parts)):
            tail = "/".join(parts[i:])
            if tail in files:
                rel = tail
                break
    if rel is None:
        return None, f"{launch.file} is not in the checkout {root}"
    in_file = [k for k in inventory.kernels if k.file == rel]
    if not in_file:
        return None, f"{rel}: discovery found no Triton kernel in this file"
    q = _plain_qualname(launch.qualname)
    for k in in_file:
        if k.qualname == q:
            return k, ""
    # Functions made by a factory, or renamed by assignment: the def nearest
    # below the code object's first line (its first decorator).
    named = sorted((k for k in in_file if k.name == launch.name and k.line >= launch.line), key=lambda k: k.line)
    if named:
        return named[0], ""
    return None, f"{rel}: no kernel {launch.qualname} among {', '.join(sorted(k.qualname for k in in_file))}"


def spec_name(launch: Launch, key: str) -> str:
    """Stable across traces (same specialization, same name), readable in a listing."""
    ptr = next((t for t in launch.signature.values() if isinstance(t, str) and t.startswith("*")), None)
    head = ptr.lstrip("*").lstrip("k") if ptr else "traced"
    return f"{head}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def to_specs(launches: Iterable[Launch], inventory: Inventory, *, origin: str,
             bench_configs: bool = False) -> tuple[list, list, int]:
    """(kernel, spec, launch) triples, unmapped launches with why, and launches left out as benchmarks."""
    mapped, unmapped, skipped = [], [], 0
    seen = set()
    for launch in launches:
        if launch.phase == "bench" and not bench_configs:
            skipped += 1
            continue
        kernel, why = map_launch(launch, inventory)
        if kernel is None:
            unmapped.append((launch, why))
            continue
        key = launch.spec_key(kernel.id)
        if (kernel.id, key) in seen:
            continue
        seen.add((kernel.id, key))
        from tritriage.specs.catalog import params_fingerprint

        spec = Spec(kernel=kernel.id, name=spec_name(launch, key), source="traced",
                    signature=dict(launch.signature), constexprs=dict(launch.constexprs),
                    options=dict(launch.options), params_fingerprint=params_fingerprint(kernel), origin=origin)
        mapped.append((kernel, spec, launch))
    return mapped, unmapped, skipped


# --------------------------------------------------------------------------
# saving


def save(mapped: list[tuple[Kernel, Spec, Launch]], out_dir: Path, *, command: str, version: str = "") -> tuple[list[Path], int]:
    """Merge specs into catalog YAML (``source: traced``) and launch files under ``out_dir``.

    Returns the files written and how many specs were new.  An earlier entry
    whose ``params_fingerprint`` differs from the kernel's (the kernel's
    parameters changed since) is replaced, not merged.
    """
    from tritriage.specs.catalog import dump_yaml, params_fingerprint

    by_file: dict[str, list[tuple[Kernel, Spec, Launch]]] = {}
    for item in mapped:
        by_file.setdefault(item[0].file, []).append(item)
    written, new = [], 0
    for vfile, items in sorted(by_file.items()):
        ypath = Path(out_dir) / (vfile[:-3] + ".yaml")
        lpath = Path(out_dir) / (vfile[:-3] + LAUNCHES_SUFFIX)
        doc = _read_yaml(ypath) or {}
        launches = _read_json(lpath)
        doc["file"] = vfile
        if version:
            doc["vllm"] = version
        doc["source"] = "traced"
        tests = list(doc.get("tests") or [])
        if command and command not in tests:
            tests.append(command)
        doc["tests"] = tests
        kernels = doc.get("kernels") or {}
        for kernel, spec, launch in items:
            fp = params_fingerprint(kernel)
            entry = kernels.get(kernel.qualname)
            if not isinstance(entry, dict) or entry.get("params_fingerprint") != fp:
                entry = {"params_fingerprint": fp, "specs": []}
                launches.pop(kernel.qualname, None)
            if kernel.launch_sites and "launch" not in entry:
                s = kernel.launch_sites[0]
                entry["launch"] = f"{s.file}:{s.line}"
            specs = entry.setdefault("specs", [])
            keys = {_key_of(kernel.id, s) for s in specs if isinstance(s, dict)}
            key = spec.key()
            if key not in keys:
                d: dict[str, Any] = {"name": spec.name, "signature": dict(spec.signature)}
                if spec.constexprs:
                    d["constexprs"] = dict(spec.constexprs)
                if spec.options:
                    d["options"] = dict(spec.options)
                specs.append(d)
                new += 1
            name = next(s["name"] for s in specs if isinstance(s, dict) and _key_of(kernel.id, s) == key)
            launches.setdefault(kernel.qualname, {}).setdefault(name, {"key": key, **launch.launch_data(),
                                                                        "command": command})
            kernels[kernel.qualname] = {k: entry[k] for k in ("params_fingerprint", "launch", "tests", "unsupported",
                                                               "specs") if k in entry}
        doc["kernels"] = kernels
        ordered = {k: doc[k] for k in ("file", "vllm", "source", "tests", "kernels") if k in doc}
        ypath.parent.mkdir(parents=True, exist_ok=True)
        ypath.write_text(dump_yaml(ordered))
        lpath.write_text(json.dumps(launches, indent=1, sort_keys=True, default=str) + "\n")
        written += [ypath, lpath]
    return written, new


def _key_of(kernel_id: str, d: dict) -> str:
    return Spec(kernel=kernel_id, signature=d.get("signature") or {}, constexprs=d.get("constexprs") or {},
                options=d.get("options") or {}).key()


def _read_yaml(path: Path) -> dict | None:
    try:
        data = yamlio.load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def launch_data(kernel: Kernel, spec: Spec, dirs: Iterable[Path] | None = None) -> dict | None:
    """Recorded launch data (shapes, scalars, grid) of ``kernel`` specialized as ``spec``, if any trace saw it."""
    from tritriage.specs.resolve import traced_dir

    key = spec.key()
    for d in (list(dirs) if dirs is not None else [traced_dir()]):
        data = _read_json(Path(d) / (kernel.file[:-3] + LAUNCHES_SUFFIX)).get(kernel.qualname) or {}
        if spec.name in data and data[spec.name].get("key") == key:
            return data[spec.name]
        for item in data.values():
            if isinstance(item, dict) and item.get("key") == key:
                return item
    return None


# --------------------------------------------------------------------------
# the command

"""The kernel catalog: hand-checked specs kept as YAML, one file per vLLM source.

Layout (``tritriage/kernels/`` mirrors vLLM's tree)::

    file: vllm/attention/ops/prefix_prefill.py
    vllm: 0.8.5                 # version the values were read from (optional)
    source: catalog             # or "traced" for specs recorded from real launches
    tests: ["pytest -svx tests/kernels/test_prefix_prefill.py"]
    kernels:
      _fwd_kernel:
        params_fingerprint: 0123456789ab
        launch: vllm/attention/ops/prefix_prefill.py:818   # where the values come from
        tests: [...]            # optional, added to the file's
        unsupported: "..."      # optional: why no spec can pass the frontend
        specs:
          - name: fp16-d128
            signature: {Q: "*fp16", stride_qbs: i32, ...}
            constexprs: {BLOCK_M: 128, IS_CAUSAL: true, compute_type: "tl.float16"}
            options: {num_warps: 4}

Conventions shared with the engine:

* ``signature`` holds a Triton type string for every non-constexpr parameter.
* ``constexprs`` holds a value for every ``tl.constexpr`` parameter; a
  non-constexpr parameter may appear there instead of in ``signature`` when
  the launch passes a value Triton specializes into a constant (``None`` for
  an absent optional tensor).
* Triton dtypes are written as strings ``"tl.float16"``; ``compile_args``
  in ``specs.py`` turns them into ``tl.float16`` objects right before a
  compile, so that specs stay JSON.

Errors read ``<yaml file>: <kernel>: <field>: <message>`` so a reviewer can
go straight to the line to fix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from tritriage import yamlio
from tritriage.errors import UserError
from tritriage.model import Kernel, Spec

# The curated catalog sits at the top of the source tree (``kernels/``);
# ``tritriage/kernels`` links to it so that it ships inside the package.
PACKAGE_CATALOG = (Path(__file__).resolve().parent.parent / "kernels").resolve()

SCALAR_TYPES = (
    "i1", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64",
    "fp8e4nv", "fp8e4b8", "fp8e5", "fp8e5b16", "fp8e4b15",
    "fp16", "bf16", "fp32", "fp64",
)
# Launch options a catalog may set; anything else is a typo.
# ``divisible_by_16`` lists the parameters a launch passed 16-aligned (Triton's
# tt.divisibility); traced specs carry it, the worker turns it into hints.
OPTION_NAMES = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion", "multibuffer", "debug",
                "divisible_by_16")
SOURCES = ("catalog", "traced")
_DTYPE_RE = re.compile(r"^tl\.(float8e4nv|float8e4b8|float8e5|float8e5b16|float8e4b15|float16|bfloat16|float32|float64|"
                       r"int1|int8|int16|int32|int64|uint8|uint16|uint32|uint64)$")


def valid_type(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    if name.startswith("*"):
        name = name[1:]
        if name.startswith("k"):
            name = name[1:]
    return name in SCALAR_TYPES


def is_dtype_value(value: Any) -> bool:
    return isinstance(value, str) and bool(_DTYPE_RE.match(value))


def params_fingerprint(kernel: Kernel) -> str:
    """Short hash of the parameter list: names and constexpr marks, in order.

    Defaults and annotations other than constexpr are left out on purpose: a
    spec stays right when a default changes, not when a parameter moves.
    """
    text = ",".join(p.name + ("!" if p.constexpr else "") for p in kernel.params)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Entry:
    """The catalog's knowledge of one kernel."""

    file: str  # vLLM source file, relative to the checkout
    qualname: str
    yaml_path: str  # where it was read from, for messages
    params_fingerprint: str
    specs: tuple[Spec, ...]
    tests: tuple[str, ...] = ()
    unsupported: str = ""
    vllm: str = ""  # version its values were read from
    launch: str = ""
    source: str = "catalog"  # or "traced"


@dataclass
class Catalog:
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    traced: dict[tuple[str, str], Entry] = field(default_factory=dict)  # recorded launches (issue 7)
    dirs: tuple[str, ...] = ()

    def get(self, kernel: Kernel) -> Entry | None:
        return self.entries.get((kernel.file, kernel.qualname))

    def get_traced(self, kernel: Kernel) -> Entry | None:
        return self.traced.get((kernel.file, kernel.qualname))

    def __len__(self) -> int:
        return len(self.entries)

    def files(self) -> set[str]:
        return {f for f, _ in self.entries}


# --------------------------------------------------------------------------
# loading


def _err(path: Path | str, kernel: str, fld: str, msg: str) -> UserError:
    return UserError(f"{path}: {kernel}: {fld}: {msg}")


def load_catalog(dirs: Iterable[Path | str] | None = None) -> Catalog:
    """Read every ``*.yaml`` under ``dirs`` (default: the package's catalog).

    A kernel described twice is an error: which copy wins would otherwise
    depend on the order directories were given.
    """
    dirs = [PACKAGE_CATALOG] if dirs is None else [Path(d) for d in dirs]
    cat = Catalog(dirs=tuple(str(d) for d in dirs))
    for d in dirs:
        d = Path(d).expanduser()
        if not d.is_dir():
            raise UserError(f"{d}: catalog directory does not exist")
        for path in sorted(d.rglob("*.yaml")):
            for entry in load_file(path):
                key = (entry.file, entry.qualname)
                table = cat.traced if entry.source == "traced" else cat.entries
                if key in table:
                    raise _err(path, entry.qualname, "kernels",
                               f"already described in {table[key].yaml_path}")
                table[key] = entry
    return cat


def load_file(path: Path) -> list[Entry]:
    try:
        data = yamlio.load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise _err(path, "-", "-", "top level must be a mapping with 'file' and 'kernels'")
    unknown = set(data) - {"file", "vllm", "source", "tests", "kernels"}
    if unknown:
        raise _err(path, "-", sorted(unknown)[0], "unknown field")
    vfile = data.get("file")
    if not isinstance(vfile, str) or not vfile.endswith(".py"):
        raise _err(path, "-", "file", "must name the vLLM source file, e.g. vllm/attention/ops/prefix_prefill.py")
    source = data.get("source", "catalog")
    if source not in SOURCES:
        raise _err(path, "-", "source", f"must be one of {', '.join(SOURCES)}, not {source!r}")
    tests = _str_list(path, "-", "tests", data.get("tests"))
    kernels = data.get("kernels")
    if not isinstance(kernels, dict) or not kernels:
        raise _err(path, "-", "kernels", "must map kernel names to their specs")
    out = []
    for qual, body in kernels.items():
        out.append(_entry(path, vfile, str(qual), body, tests, source, str(data.get("vllm") or "")))
    return out


def _str_list(path, kernel, fld, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(path, kernel, fld, "must be a list of strings")
    return tuple(value)


def _entry(path, vfile, qual, body, file_tests, source, version) -> Entry:
    if not isinstance(body, dict):
        raise _err(path, qual, "-", "must be a mapping with 'params_fingerprint' and 'specs'")
    unknown = set(body) - {"params_fingerprint", "specs", "tests", "unsupported", "launch"}
    if unknown:
        raise _err(path, qual, sorted(unknown)[0], "unknown field")
    fp = body.get("params_fingerprint")
    if not isinstance(fp, str) or not re.fullmatch(r"[0-9a-f]{12}", fp):
        raise _err(path, qual, "params_fingerprint",
                   "missing or malformed (12 hex digits; `tritriage specs PATH --kernel NAME` prints it)")
    specs_raw = body.get("specs") or []
    if not isinstance(specs_raw, list):
        raise _err(path, qual, "specs", "must be a list")
    unsupported = body.get("unsupported") or ""
    if not isinstance(unsupported, str):
        raise _err(path, qual, "unsupported", "must be a string giving the reason")
    if not specs_raw and not unsupported:
        raise _err(path, qual, "specs", "needs at least one spec (or 'unsupported' with a reason)")
    kid = f"{vfile[:-3].replace('/', '.')}.{qual}"
    specs, seen = [], set()
    for i, raw in enumerate(specs_raw):
        spec = _spec(path, qual, i, raw, kid, fp, source)
        if spec.name in seen:
            raise _err(path, qual, f"specs[{i}].name", f"duplicate spec name {spec.name!r}")
        seen.add(spec.name)
        specs.append(spec)
    tests = file_tests + _str_list(path, qual, "tests", body.get("tests"))
    return Entry(vfile, qual, str(path), fp, tuple(specs), tests, unsupported, version, str(body.get("launch") or ""),
                 source)


def _spec(path, qual, i, raw, kid, fp, source) -> Spec:
    where = f"specs[{i}]"
    if not isinstance(raw, dict):
        raise _err(path, qual, where, "must be a mapping")
    unknown = set(raw) - {"name", "signature", "constexprs", "options", "rules"}
    if unknown:
        raise _err(path, qual, f"{where}.{sorted(unknown)[0]}", "unknown field")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _err(path, qual, f"{where}.name", "missing")
    where = f"specs[{name}]"
    sig = raw.get("signature") or {}
    if not isinstance(sig, dict):
        raise _err(path, qual, f"{where}.signature", "must map parameter names to Triton types")
    for p, t in sig.items():
        if not valid_type(t):
            raise _err(path, qual, f"{where}.signature.{p}",
                       f"unknown type {t!r} (expected e.g. *fp16, *bf16, *i32, i32, i64, fp32; "
                       f"scalars: {', '.join(SCALAR_TYPES)})")
    consts = raw.get("constexprs") or {}
    if not isinstance(consts, dict):
        raise _err(path, qual, f"{where}.constexprs", "must map parameter names to values")
    for p, v in consts.items():
        if isinstance(v, str) and v.startswith("tl.") and not is_dtype_value(v):
            raise _err(path, qual, f"{where}.constexprs.{p}", f"unknown Triton dtype {v!r}")
        if not isinstance(v, (bool, int, float, str, type(None))):
            raise _err(path, qual, f"{where}.constexprs.{p}", "must be a number, bool, string, null or tl.<dtype>")
    both = set(sig) & set(consts)
    if both:
        p = sorted(both)[0]
        raise _err(path, qual, f"{where}.{p}", "given both a type and a constexpr value")
    opts = raw.get("options") or {}
    if not isinstance(opts, dict):
        raise _err(path, qual, f"{where}.options", "must be a mapping")
    for k in opts:
        if k not in OPTION_NAMES:
            raise _err(path, qual, f"{where}.options.{k}", f"unknown launch option (known: {', '.join(OPTION_NAMES)})")
    rules = raw.get("rules") or {}
    return Spec(
        kernel=kid, name=name, source=source, signature=dict(sig), constexprs=dict(consts),
        options=dict(opts), rules={str(k): str(v) for k, v in rules.items()}, params_fingerprint=fp,
        origin=str(path),
    )


# --------------------------------------------------------------------------
# binding to a checkout


def check_entry(entry: Entry, kernel: Kernel) -> None:
    """Every parameter typed or valued, nothing unknown: only for a fresh entry.

    A stale entry (fingerprint differs) is expected not to fit and is
    reported as stale instead.
    """
    names = [p.name for p in kernel.params]
    known = set(names)
    for spec in entry.specs:
        where = f"specs[{spec.name}]"
        for p in list(spec.signature) + list(spec.constexprs):
            if p not in known:
                raise _err(entry.yaml_path, entry.qualname, f"{where}.{p}",
                           f"no such parameter (the kernel's are: {', '.join(names)})")
        for p in kernel.params:
            if p.name in spec.signature or p.name in spec.constexprs:
                if p.constexpr and p.name in spec.signature:
                    raise _err(entry.yaml_path, entry.qualname, f"{where}.signature.{p.name}",
                               "is a tl.constexpr: give its value under constexprs")
                continue
            if p.constexpr:
                if p.default is None:
                    raise _err(entry.yaml_path, entry.qualname, f"{where}.constexprs.{p.name}",
                               "missing value for a tl.constexpr parameter without default")
            else:
                raise _err(entry.yaml_path, entry.qualname, f"{where}.signature.{p.name}",
                           "missing type for a non-constexpr parameter")


def checkout_version(root: Path | str, package: str = "vllm") -> str:
    """A package's version (vLLM's by default) as its wheel records it; empty for a bare git checkout."""
    for rel in (f"{package}/_version.py", f"{package}/version.py"):
        p = Path(root) / rel
        try:
            m = re.search(r"""__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""", p.read_text())
        except OSError:
            continue
        if m:
            return m.group(1)
    return ""


def checkout_project(root: Path | str) -> tuple[str, str]:
    """(project, version) of a checkout: vLLM, else its packages or metadata; "" where unknown.

    Distribution names differ from package names (liger-kernel ships
    liger_kernel, fla-core ships fla), so a dist's own metadata wins, then the
    ``PROJECT-VERSION`` tree ``tritriage fetch`` writes (wheels keep the
    version only in their metadata, which fetch leaves out).
    """
    root = Path(root)
    version = checkout_version(root)
    if version:
        return "vllm", version
    for meta in sorted(root.glob("*.dist-info/METADATA")) + sorted(root.glob("*.egg-info/PKG-INFO")) + \
            [root / "PKG-INFO"]:
        try:
            head = meta.read_text(errors="replace").split("\n\n", 1)[0]
        except OSError:
            continue
        name = re.search(r"^Name:\s*(\S+)", head, re.M)
        ver = re.search(r"^Version:\s*(\S+)", head, re.M)
        if name and ver:
            return name.group(1), ver.group(1)
    try:
        fetched = (root / ".complete").read_text().strip()
    except OSError:
        fetched = ""
    if fetched and root.name.endswith(f"-{fetched}"):
        return root.name[: -len(fetched) - 1], fetched
    try:
        packages = sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    except OSError:
        packages = []
    for p in packages:
        v = checkout_version(root, p)
        if v:
            return p, v
    return (packages[0] if len(packages) == 1 else ""), ""


def check_catalog(catalog: Catalog, inventory, root: Path | str | None = None) -> list[str]:
    """Bind the catalog to a checkout; raise on entries that cannot be right.

    An entry naming a kernel its file does not define is an error when the
    entry was written for this very version (or says no version): a typo.
    When it was written for another version the kernel was renamed or dropped
    upstream; that is returned as a note, not raised.
    """
    root = root or inventory.root
    version = checkout_version(root)
    by_key = {(k.file, k.qualname): k for k in inventory.kernels}
    files = {k.file for k in inventory.kernels}
    notes = []
    for key, entry in sorted(list(catalog.entries.items()) + list(catalog.traced.items())):
        kernel = by_key.get(key)
        if kernel is None:
            strict = not entry.vllm or entry.vllm == version
            if key[0] in files or (Path(root) / key[0]).exists():
                if strict:
                    defined = sorted(k.qualname for k in inventory.kernels if k.file == key[0])
                    raise _err(entry.yaml_path, entry.qualname, "kernels",
                               f"unknown kernel: {key[0]} defines no Triton kernel of that name"
                               f" (it defines: {', '.join(defined) or 'none'})")
                notes.append(f"{entry.yaml_path}: {entry.qualname}: written for vLLM {entry.vllm}, "
                             f"not in {key[0]} of this checkout (renamed or removed)")
            continue
        if entry.params_fingerprint == params_fingerprint(kernel):
            check_entry(entry, kernel)
            notes.extend(ascend_mismatches(entry, kernel, root))
    return notes


def ascend_launch_values(kernel: Kernel, root: Path | str) -> dict[str, dict]:
    """Per constexpr a launch site computes from the platform: {value: why} as an Ascend host computes it.

    Only values whose evaluation asked the emulated Ascend host count: a
    literal or a shape says nothing about the platform.
    """
    from tritriage.specs.constexprs import _EVAL_ERRORS, _GUESSED, CallerEnv, _literal, as_ascend, host_eval

    names = [p.name for p in kernel.params]
    wanted = set(kernel.constexprs)
    out: dict[str, dict] = {}
    for site in kernel.launch_sites:
        passed = dict(zip(names, site.args)) if not any(a.lstrip().startswith("*") for a in site.args) else {}
        passed.update(site.kwargs)
        env = None
        for name, src in passed.items():
            if name not in wanted or _literal(src)[0]:
                continue
            env = env or CallerEnv(Path(root), site)
            try:
                value, notes = host_eval(env.value, src)
            except _EVAL_ERRORS:
                continue
            if notes and _GUESSED not in notes:
                out.setdefault(name, {})[value] = f"{site.file}:{site.line} ({src}){as_ascend(notes)}"
    return out


def ascend_mismatches(entry: Entry, kernel: Kernel, root: Path | str) -> list[str]:
    """Catalog values an Ascend launch would never pass (computed from the platform at every launch site)."""
    try:
        computed = ascend_launch_values(kernel, root)
    except Exception:  # noqa: BLE001 - a launch site we cannot read says nothing against the entry
        return []
    notes = []
    for spec in entry.specs:
        for name, values in computed.items():
            if name in spec.constexprs and spec.constexprs[name] not in values:
                value, why = next(iter(values.items()))
                notes.append(f"{entry.yaml_path}: {entry.qualname} spec {spec.name}: {name}: "
                             f"{spec.constexprs[name]!r} is not what an Ascend launch passes ({value!r}, "
                             f"{why}): stale for Ascend")
    return notes


# --------------------------------------------------------------------------
# writing


def entry_yaml(kernel: Kernel, specs: list[Spec], tests: Iterable[str] = (), *, with_rules: bool = True,
               unsupported: str = "") -> dict:
    body: dict[str, Any] = {"params_fingerprint": params_fingerprint(kernel)}
    if kernel.launch_sites:
        s = kernel.launch_sites[0]
        body["launch"] = f"{s.file}:{s.line}"
    if tests:
        body["tests"] = list(tests)
    if unsupported:
        body["unsupported"] = unsupported
    body["specs"] = []
    for s in specs:
        d: dict[str, Any] = {"name": s.name, "signature": dict(s.signature)}
        if s.constexprs:
            d["constexprs"] = dict(s.constexprs)
        if s.options:
            d["options"] = dict(s.options)
        if with_rules and s.rules:
            d["rules"] = dict(s.rules)
        body["specs"].append(d)
    return body


def write_catalog(out_dir: Path, kernels_specs: list[tuple[Kernel, list[Spec]]], version: str = "") -> list[Path]:
    """Save specs as catalog YAML under ``out_dir`` mirroring the source tree."""
    by_file: dict[str, list[tuple[Kernel, list[Spec]]]] = {}
    for k, specs in kernels_specs:
        by_file.setdefault(k.file, []).append((k, specs))
    written = []
    for vfile, items in sorted(by_file.items()):
        path = Path(out_dir) / (vfile[:-3] + ".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"file": vfile}
        if version:
            doc["vllm"] = version
        doc["kernels"] = {k.qualname: entry_yaml(k, specs) for k, specs in items}
        path.write_text(dump_yaml(doc))
        written.append(path)
    return written


class _Dumper(yaml.SafeDumper):
    pass


def _flow_small(dumper, data):
    # Short mappings (one spec's signature) read best on one line each key.
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=False)


_Dumper.add_representer(dict, _flow_small)


def dump_yaml(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)

"""Every cache key tritriage uses, in one place.

Three caches, three keys:

* a compile result holds while ``compile_key`` is unchanged: the kernel's
  source and that of every jit helper it reaches, the spec, the compiler's
  identity, the settings that can change a verdict, and the digest of
  ``tritriage/sandbox/`` (the code that loads and compiles the kernel, and the
  data it reads).  Editing anything in the sandbox misses the cache by itself:
  there is no version to bump by hand;
* discovery and specs hold while ``prepared_key`` is unchanged (the checkout's
  Python files, the discover and specs packages, the catalogs, traced specs);
* a stored diagnosis holds while ``classifier_version`` is unchanged (the
  classify package, its rules included).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from tritriage.model import Inventory, Kernel, Spec

PACKAGE = Path(__file__).resolve().parent
SANDBOX = PACKAGE / "sandbox"


def _tree_digest(root: Path, suffixes=(".py", ".json", ".yaml")) -> str:
    """Content hash of every source and data file under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith(suffixes):
                continue
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                pass
    return h.hexdigest()[:16]


_SANDBOX_DIGEST: str | None = None


def sandbox_digest() -> str:
    """What loads and compiles a kernel: a change here can change a verdict."""
    global _SANDBOX_DIGEST
    if _SANDBOX_DIGEST is None:
        _SANDBOX_DIGEST = _tree_digest(SANDBOX)
    return _SANDBOX_DIGEST


def source_digest(kernel: "Kernel", inventory: "Inventory | None", root: str | Path | None = None,
                  by_id: Mapping[str, "Kernel"] | None = None) -> str:
    """Hash of the kernel's source and of every jit helper it reaches, each
    with the module-level constants and imports its source names."""
    from tritriage.model import reachable

    if by_id is None:
        by_id = inventory.by_id() if inventory is not None else {}
    parts = [f"{k.id}={k.source_hash or _hash_lines(root, k)}+{k.context_hash}" for k in reachable(kernel, by_id)]
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def _hash_lines(root, k: "Kernel") -> str:
    # Discovery normally fills source_hash; without it, hash the def's lines.
    if root is None:
        return ""
    try:
        lines = (Path(root) / k.file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return hashlib.sha256("\n".join(lines[k.line - 1:k.end_line]).encode()).hexdigest()


def compile_key(kernel: "Kernel", spec: "Spec", inventory: "Inventory | None", settings_fields: Mapping,
                compiler: str, root: str | Path | None = None,
                by_id: Mapping[str, "Kernel"] | None = None) -> str:
    """When two compiles must give the same verdict, they have the same key.

    ``settings_fields`` are the settings that can change a verdict
    (``Settings.cache_fields()``); ``compiler`` names every compiler that runs a
    stage (``EnvReport.compiler_version``)."""
    payload = json.dumps({
        "source": source_digest(kernel, inventory, root, by_id),
        "kernel": kernel.id,
        "spec": spec.key(),
        "compiler": compiler,
        "settings": dict(settings_fields),
        "sandbox": sandbox_digest(),
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def prepared_key(root: Path, catalog_dirs: Sequence[str | Path], inputs: str | None = None) -> str:
    """Changes whenever discovery or spec inference could give another answer:
    a .py file of the checkout (paths, sizes and modification times), or
    anything ``specs_inputs_key`` covers (``inputs``, when already known)."""
    from tritriage.discover.inventory import iter_python_files

    inputs = inputs or specs_inputs_key(root, catalog_dirs)
    h = hashlib.sha256(b"tritriage-prepared-3\0" + inputs.encode())
    for abspath, rel in iter_python_files(root):
        h.update(f"{rel}\0{_stamp(abspath)}\n".encode())
    return h.hexdigest()


def specs_inputs_key(root: Path, catalog_dirs: Sequence[str | Path]) -> str:
    """What every kernel's specs depend on besides the files its inference
    reads: the code and data of discovery and specs, the catalogs, traced
    specs, the target part and the checkout's version (catalog entries are
    per version)."""
    from tritriage.paths import data_dir
    from tritriage.specs.catalog import PACKAGE_CATALOG, checkout_version
    from tritriage.specs.constexprs import target_part

    h = hashlib.sha256(b"tritriage-specs-inputs-1\0")
    trees = [PACKAGE / "discover", PACKAGE / "specs", PACKAGE / "data", PACKAGE_CATALOG, data_dir() / "traced",
             *map(Path, catalog_dirs)]
    for tree in trees:
        h.update(f"tree {tree}\n".encode())
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith((".py", ".yaml", ".yml", ".json")):
                    path = os.path.join(dirpath, name)
                    h.update(f"{path}\0{_stamp(path)}\n".encode())
    h.update(f"model.py\0{_stamp(str(PACKAGE / 'model.py'))}\n".encode())
    h.update(f"part {target_part()}\nversion {checkout_version(root)}\n".encode())
    return h.hexdigest()


def _stamp(path: str) -> str:
    """A file's size and modification time ("-" when it does not exist)."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}\0{st.st_mtime_ns}"


def file_stamps(paths: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return tuple((p, _stamp(p)) for p in sorted(paths))


_CLASSIFIER_VERSION: str | None = None


def probe_key(python: str, bishengir: str | None) -> str:
    """The environment probe's answer holds while the probing code, the
    interpreter and what decides the binary stage stay the same; the files
    the answer names are checked apart (``compile/environment.py``)."""
    h = hashlib.sha256(b"tritriage-probe-1\0")
    try:
        st = os.stat(python)
        h.update(f"{os.path.realpath(python)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    except OSError:
        h.update(python.encode())
    for name in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "PATH", "PYTHONPATH", "TRITRIAGE_BISHENGIR"):
        h.update(f"{name}={os.environ.get(name, '')}\0".encode())
    h.update(f"{bishengir}\0{sandbox_digest()}".encode())
    return h.hexdigest()[:16]


def classifier_version() -> str:
    """Changes when the classification rules or code change."""
    global _CLASSIFIER_VERSION
    if _CLASSIFIER_VERSION is None:
        from tritriage.paths import data_dir
        h = hashlib.sha256(_tree_digest(PACKAGE / "classify").encode())
        user = data_dir() / "rules.yaml"
        if user.is_file():
            h.update(user.read_bytes())
        _CLASSIFIER_VERSION = h.hexdigest()[:16]
    return _CLASSIFIER_VERSION

"""A project's Python sources of any release, from its PyPI wheel.

``tritriage fetch 0.8.5`` (vLLM) or ``tritriage fetch liger-kernel==0.8.5``
downloads the wheel once (pip), unpacks only its ``.py`` files into the data
directory and prints the path, so a machine without a checkout can still be
scanned. Nothing is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tritriage.errors import UserError

_VERSION = re.compile(r"^\d+(\.\d+){1,3}([a-z0-9.+-]*)?$")


def sources_dir(base: Path | None = None) -> Path:
    from tritriage.paths import data_dir

    return (base or data_dir()) / "sources"


def fetch(spec: str, dest: Path | None = None, *, quiet: bool = True) -> Path:
    """``0.8.5`` (vLLM) or ``PROJECT==VERSION``: the path of its Python sources."""
    if "==" in spec:
        project, _, version = spec.partition("==")
        return fetch_vllm(version, dest, quiet=quiet, project=project)
    return fetch_vllm(spec, dest, quiet=quiet)


def fetch_vllm(version: str, dest: Path | None = None, *, quiet: bool = True, project: str = "vllm") -> Path:
    """Path of a tree holding ``project`` ``version``'s Python sources (downloaded once)."""
    if not _VERSION.match(version):
        raise UserError(f"'{version}' is not a version of {project} (expected something like 0.8.5)")
    root = Path(dest) if dest else sources_dir() / f"{project}-{version}"
    done = root / ".complete"
    if done.exists():
        return root
    with tempfile.TemporaryDirectory(prefix="tritriage-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", tmp, f"{project}=={version}"]
        if quiet:
            cmd.insert(4, "-q")
        r = subprocess.run(cmd, capture_output=quiet, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            last = (r.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise UserError(f"could not download {project}=={version} from PyPI" + (f": {last[0]}" if last else ""))
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                # Every package of the wheel, never its metadata or data dirs.
                if name.endswith(".py") and ".dist-info/" not in name and ".data/" not in name:
                    zf.extract(name, partial)
        (partial / ".complete").write_text(version)
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    return root

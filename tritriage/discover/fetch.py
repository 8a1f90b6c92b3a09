"""vLLM's Python sources of any release, from its PyPI wheel.

``tritriage fetch 0.8.5`` downloads the wheel once (pip), unpacks only
``vllm/**/*.py`` into the data directory and prints the path, so a machine
without a vLLM checkout can still be scanned. Nothing of vLLM is installed.
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


def fetch_vllm(version: str, dest: Path | None = None, *, quiet: bool = True) -> Path:
    """Path of a tree holding vLLM ``version``'s Python sources (downloaded once)."""
    if not _VERSION.match(version):
        raise UserError(f"'{version}' is not a vLLM version (expected something like 0.8.5)")
    root = Path(dest) if dest else sources_dir() / f"vllm-{version}"
    done = root / ".complete"
    if done.exists():
        return root
    with tempfile.TemporaryDirectory(prefix="tritriage-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", tmp, f"vllm=={version}"]
        if quiet:
            cmd.insert(4, "-q")
        r = subprocess.run(cmd, capture_output=quiet, text=True)
        wheels = sorted(Path(tmp).glob(f"vllm-{version}-*.whl"))
        if r.returncode != 0 or not wheels:
            last = (r.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise UserError(f"could not download vllm=={version} from PyPI" + (f": {last[0]}" if last else ""))
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                if name.startswith("vllm/") and name.endswith(".py"):
                    zf.extract(name, partial)
        (partial / ".complete").write_text(version)
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    return root

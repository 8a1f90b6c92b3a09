"""The reference compiler: upstream Triton in a venv of tritriage's data directory.

When triton-ascend's frontend rejects a spec, either the spec is wrong (the
tool's problem) or triton-ascend lacks what the kernel uses (an Ascend gap).
Upstream Triton tells them apart: compiling the same spec for an NVIDIA target
needs no GPU, so if upstream accepts what triton-ascend rejects, the spec is
sound and the rejection is Ascend's.

``tritriage reference setup`` creates ``<data dir>/reference-venv`` (data dir:
``$TRITRIAGE_HOME`` or ``~/.local/share/tritriage``; ``$TRITRIAGE_REFERENCE``
names another venv) and installs upstream
``triton`` there; nothing else is needed since the compile worker
(``sandbox/worker.py``, started there with ``--target cuda`` by ``specs/resolve.py``)
uses only the standard library and triton.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from tritriage.paths import data_dir
from tritriage.errors import UserError

# Recent enough for vLLM 0.33's kernels (tl.gather, tensor descriptors, ...),
# and an ASTSource API (3.3+) that the worker's spec check speaks (sandbox/worker.py).
DEFAULT_VERSION = "3.6.0"


def venv_dir() -> Path:
    # $TRITRIAGE_REFERENCE lets several data directories (tests, benchmarks)
    # share one reference venv: it is 150 MB and the same for all of them.
    env = os.environ.get("TRITRIAGE_REFERENCE")
    return Path(env).expanduser() if env else data_dir() / "reference-venv"


def python() -> Path:
    return venv_dir() / "bin" / "python"


def installed_version() -> str | None:
    """Upstream Triton's version in the reference venv, or None when not set up."""
    py = python()
    if not py.exists():
        return None
    try:
        out = subprocess.run([str(py), "-c", "import triton, json; print(json.dumps(triton.__version__))"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def require() -> Path:
    if installed_version() is None:
        raise UserError(f"no reference compiler in {venv_dir()}: run `tritriage reference setup` first")
    return python()


def setup(version: str = DEFAULT_VERSION, *, quiet: bool = False, index_url: str | None = None) -> str:
    """Create the venv and install ``triton==version``; return the installed version."""
    target = venv_dir()
    have = installed_version()
    if have == version:
        return have
    target.parent.mkdir(parents=True, exist_ok=True)
    if not python().exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(target)
    cmd = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", f"triton=={version}"]
    if quiet:
        cmd.insert(4, "-q")
    if index_url:
        cmd += ["--index-url", index_url]
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise UserError(f"installing triton=={version} into {target} failed" + (f": {tail[0]}" if tail else ""))
    have = installed_version()
    if have is None:
        raise UserError(f"triton=={version} installed into {target} but does not import")
    # Prove it compiles here, with no GPU: a failure now is clearer than one per kernel later.
    smoke = self_test()
    if smoke:
        raise UserError(f"reference triton {have} in {target} cannot compile for sm_90 here: {smoke}")
    return have


_SMOKE = r'''
import os, sys, tempfile
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()
import triton, triton.language as tl
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget

@triton.jit
def k(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + o, tl.exp(tl.load(x_ptr + o, mask=o < n).to(tl.float32)), mask=o < n)

src = ASTSource(k, signature={"x_ptr": "*fp16", "y_ptr": "*fp16", "n": "i32", "BLOCK": "constexpr"},
                constexprs={"BLOCK": 128})
triton.compile(src, target=GPUTarget("cuda", 90, 32))
print("ok")
'''


def self_test() -> str:
    """Empty when the reference compiles a small kernel end to end, else why not."""
    import tempfile

    # @triton.jit needs its source in a file.
    with tempfile.TemporaryDirectory(prefix="tritriage-ref-") as tmp:
        script = Path(tmp) / "smoke.py"
        script.write_text(_SMOKE)
        try:
            out = subprocess.run([str(python()), str(script)], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
    if out.returncode == 0 and out.stdout.strip().endswith("ok"):
        return ""
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {out.returncode}"

"""``tritriage reference setup|status``: the upstream-Triton reference compiler."""

from __future__ import annotations

from tritriage.errors import UserError
import sys
from tritriage.compile.reference import DEFAULT_VERSION, installed_version, setup, venv_dir


def reference_command(action: str = "status", version: str = DEFAULT_VERSION) -> int:
    """``tritriage reference setup|status``."""
    if action == "setup":
        have = setup(version)
        print(f"reference compiler ready: upstream triton {have} in {venv_dir()}")
        return 0
    if action == "status":
        have = installed_version()
        if have is None:
            print(f"no reference compiler in {venv_dir()} (run `tritriage reference setup`)")
            return 1
        print(f"upstream triton {have} in {venv_dir()}")
        return 0
    raise UserError(f"unknown reference action {action!r} (setup or status)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(reference_command(*(sys.argv[1:2] or ["status"])))

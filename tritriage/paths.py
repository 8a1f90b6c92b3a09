"""Where tritriage keeps its state: ``$TRITRIAGE_HOME`` or ``~/.local/share/tritriage``."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    home = os.environ.get("TRITRIAGE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".local" / "share" / "tritriage"


def cache_dir() -> Path:
    """Rebuildable caches (discovery results); safe to delete."""
    return data_dir() / "cache"

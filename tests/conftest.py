"""Shared fixtures.

vLLM's sources are never committed: tests that need them download the wheel
from PyPI once and unpack its ``vllm/*.py`` into a cache shared by every run
(``TRITRIAGE_TEST_CACHE``, default ``~/.cache/tritriage-tests``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("TRITRIAGE_TEST_CACHE", Path.home() / ".cache" / "tritriage-tests"))
FIXTURES = Path(__file__).parent / "fixtures"

# Tests never touch the user's store or caches (runs, discovery cache, reference venv).
if "TRITRIAGE_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="tritriage-test-home-")
    os.environ["TRITRIAGE_HOME"] = _home
    atexit.register(shutil.rmtree, _home, True)


def vllm_sources(version: str) -> Path:
    """A tree holding vLLM ``version``'s Python sources, downloaded once per machine."""
    from tritriage.discover.fetch import fetch_vllm

    return fetch_vllm(version, CACHE / f"vllm-{version}")


@pytest.fixture(scope="session")
def vllm085() -> Path:
    return vllm_sources("0.8.5")


@pytest.fixture(scope="session")
def vllm033() -> Path:
    return vllm_sources("0.33.0")

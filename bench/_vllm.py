"""vLLM sources for the benchmarks: the tests' download cache, shared."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import vllm_sources  # noqa: E402,F401

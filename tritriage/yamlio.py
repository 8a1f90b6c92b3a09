"""YAML reading for the catalog and the data files: libyaml's parser where
PyYAML was built with it (ten times faster than the pure-Python one, which
cost an unchanged re-scan seconds of catalog parsing), the same safe subset."""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, C or Python

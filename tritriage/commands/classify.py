"""``tritriage classify LOG... [--json] [--checkout PATH]``: classify saved logs.

The lead wires ``classify_command`` into ``tritriage/cli.py``; it prints and
returns the exit code (0: every log classified, 2: a log file is missing or
unreadable, reported on one line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tritriage.errors import UserError

from tritriage.classify.engine import classify
from tritriage.classify.rules import CLASSES

# Fixture headers ("# source: ...", "# expect: ...") are not part of the log.
HEADER_KEYS = ("source", "expect", "subclass", "location", "note")


def read_log(path: Path) -> str:
    """A saved log as text, minus tritriage's own fixture header lines."""
    from tritriage.commands.validate import _text

    text = _text("", path, "a text log (give the compiler's or test's saved output)", strict=False)
    return strip_header(text)[1]


def strip_header(text: str) -> tuple[dict[str, str], str]:
    header: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith("# "):
        key, sep, value = lines[i][2:].partition(": ")
        if not sep or key not in HEADER_KEYS:
            break
        header[key] = value.strip()
        i += 1
    return header, "\n".join(lines[i:])


def classify_command(logs: list[Path], json_out: bool = False, checkout: Path | None = None,
                     rules: list[Path] | None = None) -> int:
    checkout_s = str(Path(checkout).resolve()) if checkout else None
    rows = []
    try:
        texts = [(Path(p), read_log(Path(p))) for p in logs]
        if rules:
            from tritriage.classify.rules import load_patterns
            for r in rules:
                if not Path(r).is_file():
                    raise UserError(f"--rules {r}: no such file")
            try:
                load_patterns(extra=[str(r) for r in rules])  # a bad rules file is said before any log
            except UserError:
                raise
            except (UnicodeDecodeError, ValueError, OSError) as e:
                raise UserError(f"--rules {', '.join(map(str, rules))}: not a rules YAML file ({type(e).__name__})") \
                    from None
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    for path, text in texts:
        d = classify(text, checkout=checkout_s, rules=[str(r) for r in rules or ()])
        rows.append(
            {
                "file": str(path),
                "class": d.cls,
                "subclass": d.subclass,
                "fingerprint": d.fingerprint,
                "location": str(d.location) if d.location else None,
                "source": d.location.source if d.location else None,
                "pattern": d.pattern,
                "hint": d.hint,
            }
        )
    if json_out:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    _print_table(rows)
    return 0


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("file", "class", "subclass", "fingerprint", "location"):
        table.add_column(col, overflow="fold")
    order = {c: i for i, c in enumerate(CLASSES)}
    for r in sorted(rows, key=lambda r: (order.get(r["class"], 99), r["subclass"], r["file"])):
        table.add_row(r["file"], r["class"], r["subclass"], r["fingerprint"], r["location"] or "-")
    console = Console()
    console.print(table)
    groups: dict[str, int] = {}
    for r in rows:
        groups[r["fingerprint"]] = groups.get(r["fingerprint"], 0) + 1
    console.print(f"{len(rows)} log(s), {len(groups)} distinct root cause(s)")

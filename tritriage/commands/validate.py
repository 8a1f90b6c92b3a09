"""Every option of every command, checked before any work.

``check(verb, **values)`` is the one place: the CLI calls it first in each
command, before the compiler probe (seconds), discovery or the store are
touched, so a bad value costs nothing and writes nothing.  Each check raises a
``UserError`` whose one line names the option, the value and what to do.

An option is checked by its name, the same way in every command that has it
(``timeout`` is a positive number of seconds in ``scan``, ``rerun`` and
``test`` alike); ``CHOICES`` holds the options whose allowed values depend on
the command.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from tritriage.errors import UserError

# Bytes read to tell a text file from a binary one: a log or YAML file with a
# NUL byte this early is not what the user meant to give.
_SNIFF = 65536


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------
# numbers


def positive_seconds(flag: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} {value:g}: must be a positive number of seconds (e.g. {flag} 120)")


def jobs(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} {value}: must be 1 or more parallel compiles (leave it out for one per core)")


def memory_mb(flag: str, value: int | None) -> None:
    # Below a few dozen MiB the interpreter itself cannot start, so every
    # compile would come back as out of memory: a wrong verdict, not a limit.
    if value is not None and value < 64:
        raise UserError(f"{flag} {value}: must be at least 64 MiB per compile (default 8192)")


def _at_least_one(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} {value}: must be 1 or more")


def non_negative(flag: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise UserError(f"{flag} {value}: must be 0 or more")


def max_bytes(flag: str, value: int | None) -> None:
    # The report's header and totals alone take about a kilobyte.
    if value is not None and value < 4096:
        raise UserError(f"{flag} {value}: must be at least 4096 bytes (default {900 * 1024})")


def run_id(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} {value}: run ids start at 1 (`tritriage report` names the latest)")


def shard(flag: str, value: str | None) -> tuple[int, int] | None:
    """``K/N``: this process takes the K-th of N slices, 1 <= K <= N."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not m:
        raise UserError(f"{flag} {value}: expected K/N, e.g. {flag} 1/4")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise UserError(f"{flag} {value}: K must be between 1 and N (e.g. {flag} 1/{max(n, 1)})")
    return k, n


# --------------------------------------------------------------------------
# paths and files


def checkout(flag: str, value: str | Path | None) -> None:
    if value is None:
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise UserError(f"{value}: no such directory (give the root of a vLLM checkout)")
    if not p.is_dir():
        raise UserError(f"{value}: not a directory (give the root of a vLLM checkout)")


def directory(flag: str, value: str | Path | None) -> None:
    if value is None:
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise UserError(f"{flag} {value}: no such directory")
    if not p.is_dir():
        raise UserError(f"{flag} {value}: not a directory")


def new_or_directory(flag: str, value: str | Path | None) -> None:
    """A directory to write into: it may not exist yet, but must not be a file."""
    if value is None:
        return
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {value}: is a file; give a directory to write into")
    parent = _existing_parent(p)
    if not os.access(parent, os.W_OK):
        raise UserError(f"{flag} {value}: {parent} is not writable; choose another directory")


def output_file(flag: str, value: str | Path | None) -> None:
    if value is None or str(value) == "-":
        return
    p = Path(value).expanduser()
    if p.is_dir():
        raise UserError(f"{flag} {value}: is a directory; give a file name")
    if not p.parent.is_dir():
        raise UserError(f"{flag} {value}: directory {p.parent} does not exist; create it first")


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _text(flag: str, value: str | Path, what: str, strict: bool = True) -> str:
    """The text of a file the user named, or a one-line error saying why not
    (``strict``: UTF-8 or an error; else undecodable bytes are replaced)."""
    label = f"{flag} {value}" if flag else str(value)
    p = Path(value).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{label}: is a directory, not {what}") from None
    except OSError as e:
        raise UserError(f"{label}: cannot read: {e.strerror or e}") from None
    if b"\0" in data[:_SNIFF]:
        raise UserError(f"{label}: a binary file, not {what}")
    if not strict:
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{label}: not UTF-8 text (byte {e.start}), not {what}") from None


def log_file(flag: str, value: str | Path) -> None:
    label = str(value)
    p = Path(value).expanduser()
    try:
        with open(p, "rb") as fh:
            head = fh.read(_SNIFF)
    except FileNotFoundError:
        raise UserError(f"{label}: no such log file") from None
    except IsADirectoryError:
        raise UserError(f"{label}: is a directory, not a log file") from None
    except OSError as e:
        raise UserError(f"{label}: cannot read: {e.strerror or e}") from None
    # Logs are decoded leniently later (a compiler may print stray bytes), but
    # a NUL early on means an object file or an archive, never a log.
    if b"\0" in head:
        raise UserError(f"{label}: a binary file, not a text log (give the compiler's or test's saved output)")


def catalog_dir(flag: str, value: str | Path) -> None:
    directory(flag, value)
    from tritriage.specs.catalog import load_file

    for path in sorted(Path(value).expanduser().rglob("*.yaml")):
        _text(flag, path, "a catalog YAML file")
        try:
            load_file(path)
        except UserError as e:
            raise UserError(f"{flag} {value}: {e}") from None


def template(flag: str, value: str | Path | None) -> None:
    if value is None:
        return
    source = _text(flag, value, "a jinja2 template")
    import jinja2

    try:
        jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"{flag} {value}:{e.lineno}: not a valid jinja2 template: {e.message}") from None


def rules_file(flag: str, value: str | Path) -> None:
    _text(flag, value, "a rules YAML file")
    from tritriage.classify.rules import load_patterns

    try:
        load_patterns(extra=[str(value)])
    except UserError as e:
        raise UserError(f"{flag} {value}: {e}" if str(value) not in str(e) else str(e)) from None
    except (ValueError, OSError) as e:
        raise UserError(f"{flag} {value}: not a rules YAML file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None


def python(flag: str, value: str | None) -> None:
    if not value:
        return
    if os.sep in value:
        p = Path(value).expanduser()
        if not p.exists():
            raise UserError(f"{flag} {value}: no such file (give a Python interpreter)")
        if p.is_dir() or not os.access(p, os.X_OK):
            raise UserError(f"{flag} {value}: not an executable interpreter")
        return
    import shutil

    if not shutil.which(value):
        raise UserError(f"{flag} {value}: not found on PATH (give the interpreter's path)")


def bishengir(flag: str, value: str | None) -> None:
    if not value or value == "none":
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise UserError(f"{flag} {value}: no such file (give a bishengir-compile, or 'none')")
    if p.is_dir() or not os.access(p, os.X_OK):
        raise UserError(f"{flag} {value}: not an executable file (give a bishengir-compile, or 'none')")


_VERSION = r"\d+(\.\d+){1,3}([a-z]+\d*)?(\.post\d+)?(\.dev\d+)?"


def version(flag: str, value: str | None) -> None:
    """A vLLM version (0.8.5), or PROJECT==VERSION for any project on PyPI."""
    if value is None:
        return
    if "==" in value:
        project, _, ver = value.partition("==")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", project) or not re.fullmatch(_VERSION, ver):
            raise UserError(f"'{value}' is not PROJECT==VERSION (e.g. liger-kernel==0.8.5)")
        return
    if not re.fullmatch(_VERSION, value):
        raise UserError(f"'{value}' is not a version (expected something like 0.8.5, or PROJECT==VERSION)")


def name(flag: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise UserError(f"{flag}: empty; give a name")


# --------------------------------------------------------------------------
# the table


def source_tree(flag: str, value: str | Path | None) -> None:
    """A tree of Python packages, or one package directory."""
    directory(flag, value)
    if value is None:
        return
    p = Path(value).expanduser()
    if not (p / "__init__.py").is_file() and not any((c / "__init__.py").is_file() for c in p.iterdir() if c.is_dir()):
        raise UserError(f"{flag} {value}: holds no Python package (give the tree that holds vllm/, or vllm/ itself)")


def _each(fn: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def check_all(flag: str, values: Iterable | None) -> None:
        for v in values or ():
            fn(flag, v)
    return check_all


def _shard_times(flag: str, value) -> None:
    from tritriage.commands.merge import shard_times
    shard_times(value, flag)


# option name -> (flag as the user typed it, check)
OPTIONS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "path": ("PATH", checkout),
    "timeout": ("--timeout", positive_seconds),
    "jobs": ("-j/--jobs", jobs),
    "memory_mb": ("--memory-mb", memory_mb),
    "max_detail_lines": ("--max-detail-lines", non_negative),
    "hints": ("--hints", non_negative),
    "hang_budget": ("--hang-budget", non_negative),
    "budget": ("--budget", _at_least_one),
    "max_bytes": ("--max-bytes", max_bytes),
    "run": ("--run", run_id),
    "against": ("--against", run_id),
    "shard": ("--shard", shard),
    "shard_times": ("--shard-times", lambda flag, v: _shard_times(flag, v)),
    "catalog": ("--catalog", _each(catalog_dir)),
    "template": ("--template", template),
    "rules": ("--rules", _each(rules_file)),
    "logs": ("LOG", _each(log_file)),
    "checkout": ("--checkout", directory),
    "plugin": ("--plugin", directory),
    "with_": ("--with", _each(source_tree)),
    "python": ("--python", python),
    "bishengir": ("--bishengir", bishengir),
    "output": ("--output", output_file),
    "write": ("--write", new_or_directory),
    "records": ("--records", new_or_directory),
    "dest": ("--dest", new_or_directory),
    "version": ("VERSION", version),
    "kernel": ("--kernel", lambda flag, v: [name(flag, x) for x in ([v] if isinstance(v, str) else v or ())]),
    "file": ("--file", lambda flag, v: [name(flag, x) for x in ([v] if isinstance(v, str) else v or ())]),
    "cls": ("--class", name),
    "spec": ("--spec", name),
    "arch": ("--arch", name),
}

# Options whose allowed values depend on the command: (verb, option) -> choices.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("list", "kind"): ("entry", "helper"),
    ("report", "fail_on"): ("new-failures", "any-failure"),
    ("test", "fail_on"): ("failures", "not-run"),
    ("test", "device"): ("npu", "cuda", "cpu"),
}

# Checked first: the cheap numbers, then paths, then files that must parse.
_ORDER = ("timeout", "jobs", "memory_mb", "max_detail_lines", "max_bytes", "hints", "budget", "run", "against",
          "shard")


def check(verb: str, **values: Any) -> None:
    """Check every option ``verb`` was given; raise ``UserError`` on the first bad one."""
    names = [n for n in _ORDER if n in values] + [n for n in values if n not in _ORDER]
    for opt in names:
        value = values[opt]
        choices = CHOICES.get((verb, opt))
        if choices is not None:
            if value is not None and value not in choices:
                raise UserError(f"{_flag(opt)} {value}: must be {' or '.join(repr(c) for c in choices)}")
            continue
        if opt not in OPTIONS:
            raise KeyError(f"validate.check: no check for option {opt!r} of {verb}")  # a tritriage bug
        flag, fn = OPTIONS[opt]
        if value is None:
            continue
        fn(flag, value)

"""Loading and checking the rule files that drive classification.

Two YAML files ship with the package:

``patterns.yaml``
    what decides a verdict: the patterns (class, regexes, subclass template,
    hint, examples), the error lines that only wrap another error, and the
    stack frames that belong to the signal handler rather than to the crash.
``prefixes.yaml``
    how to read a log: line prefixes added by the program that captured the
    output (pytest, vLLM workers, CI runners), lines that every compile prints
    even on success, and the package roots used to shorten source paths.
``codes.yaml``
    what CANN/ACL error codes mean (a kernel fault, a device timeout, an op
    torch_npu lacks...): one table read by the patterns of class ``@code``.

A user's own rules (``--rules FILE``, and ``<data dir>/rules.yaml`` when it
exists) are patterns files too, checked the same way: a pattern whose id is
already shipped replaces it, a new one is tried before every shipped one.

Adding a pattern is a data change; a mistake in either file is reported as a
one-line ``UserError`` naming the file, the entry and the field.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tritriage import yamlio
from tritriage.errors import UserError

HERE = Path(__file__).resolve().parent
DEFAULT_PATTERNS = HERE / "patterns.yaml"
DEFAULT_PREFIXES = HERE / "prefixes.yaml"

# The classes, in pipeline order.  "@stage" in a pattern means: the compiler
# stage the failure happened in (banner, caller, or traceback decides).
CLASSES: tuple[str, ...] = (
    "loader",
    "spec",
    "frontend",
    "ConvertTritonIRToLinalgIR",
    "ConvertLinalgRToBinary",
    "runtime",
    "vllm-ascend gap",
    "pytorch gap",
    "accuracy",  # a test ran the kernel and its values differ from the reference
    "environment",
    "timeout",
    "crash",
    "unknown",
)
STAGE_CLASS = "@stage"
# "{codes}" in a regex: the codes codes.yaml gives the pattern's class.
CODES_FIELD = "{codes}"
DEFAULT_CODES = HERE / "codes.yaml"
USER_RULES_NAME = "rules.yaml"

# Precedence among matches, best first (pattern field "rank").  A cause is a
# diagnostic that says why; a wrapper only says that something failed ("Inner
# error", "pipeline failed", a bare "error:"); chatter is a line a healthy run
# prints too (an environment probe, an import warning), used only when nothing
# else in the log explains the failure.  A root is a note the worker adds
# once it has found what an error further up comes from (a call that returned
# None, say): it beats the error it explains.
RANKS: tuple[str, ...] = ("root", "cause", "wrapper", "chatter")

# Values the engine computes and a subclass template may use besides the
# pattern's own named groups.
COMPUTED_FIELDS = frozenset({"crash_site", "tool", "stage", "line", "meaning"})


@dataclass(frozen=True)
class Pattern:
    id: str
    cls: str  # one of CLASSES or STAGE_CLASS
    regexes: tuple[re.Pattern, ...]
    subclass: str  # str.format template
    hint: str | None
    examples: tuple[str, ...]
    fingerprint_location: bool = True  # False: one root cause whatever the construct
    # A frontend failure known to be triton-ascend's (fp8, tl.extra.cuda...):
    # even an inferred spec that meets it is sound, the gap is Ascend's.
    ascend_gap: bool = False
    rank: int = 1  # index in RANKS ("cause")
    unstaged: str | None = None  # class of an "@stage" pattern when no stage is known
    fixtures: tuple[str, ...] = ()  # public fixtures (file stems) the pattern was fitted to
    origin: str = ""  # the file it came from

    def match(self, line: str) -> re.Match | None:
        for rx in self.regexes:
            m = rx.search(line)
            if m:
                return m
        return None


@dataclass(frozen=True)
class PatternSet:
    path: str
    patterns: tuple[Pattern, ...]
    wrappers: tuple[re.Pattern, ...]  # errors that only announce another error
    handler_frames: tuple[re.Pattern, ...]  # signal-handler / libc frames of a stack dump
    by_id: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)  # code -> (class, meaning), from codes.yaml

    def without(self, ids) -> "PatternSet":
        """The same rules less some patterns (the bench's leave-one-source-out)."""
        ids = set(ids)
        kept = tuple(p for p in self.patterns if p.id not in ids)
        ps = PatternSet(self.path, kept, self.wrappers, self.handler_frames, codes=self.codes)
        ps.by_id.update({p.id: p for p in kept})
        return ps


@dataclass(frozen=True)
class Prefix:
    id: str
    regex: re.Pattern
    dedent: bool  # the prefix is followed by the tool's own indentation (pytest "E")


@dataclass(frozen=True)
class TextRules:
    path: str
    prefixes: tuple[Prefix, ...]
    prefix_any: re.Pattern  # all prefixes as one alternation, for speed
    noise: re.Pattern | None
    package_roots: tuple[str, ...]


def _fail(path: Path | str, where: str, msg: str) -> UserError:
    return UserError(f"{path}: {where}: {msg}")


def _read_yaml(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return yamlio.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise _fail(path, where, f"not valid YAML ({problem})") from None


def _compile(path, where: str, rx: Any) -> re.Pattern:
    if not isinstance(rx, str) or not rx:
        raise _fail(path, where, "must be a non-empty string")
    try:
        return re.compile(rx)
    except re.error as e:
        raise _fail(path, where, f"bad regex ({e})") from None


def _str_list(path, where: str, value: Any, *, allow_empty: bool = False) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not allow_empty):
        raise _fail(path, where, "must be a string or a non-empty list of strings")
    for v in value:
        if not isinstance(v, str) or not v:
            raise _fail(path, where, "every entry must be a non-empty string")
    return value


def _template_fields(path, where: str, template: str) -> set[str]:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise _fail(path, where, f"bad template ({e})") from None
    for n in names:
        if not n.isidentifier():
            raise _fail(path, where, f"template field {{{n}}} must be a plain name")
    return names


def user_rules_file() -> Path | None:
    """``<data dir>/rules.yaml`` when it exists: rules every run picks up."""
    from tritriage.paths import data_dir

    f = data_dir() / USER_RULES_NAME
    return f if f.is_file() else None


def load_patterns(path: str | Path | None = None, extra: tuple | list = (), *, user: bool = False) -> PatternSet:
    """Load and check a patterns file (the packaged one when ``path`` is None).

    ``extra``: the user's rules files, in order, each checked like the shipped
    file; a pattern whose id exists replaces it where it stands, a new one is
    tried before all shipped patterns (a later file before an earlier one).
    ``user``: also pick up ``<data dir>/rules.yaml`` (first of the extras).
    """
    path = Path(path) if path is not None else DEFAULT_PATTERNS
    extras = [Path(e) for e in extra]
    if user:
        auto = user_rules_file()
        if auto is not None and auto not in extras:
            extras.insert(0, auto)
    if not extras:
        return _load_patterns_cached(str(path), _mtime(path)) if path == DEFAULT_PATTERNS else _load_patterns(path)
    base = _load_patterns_cached(str(path), _mtime(path)) if path == DEFAULT_PATTERNS else _load_patterns(path)
    return merge_patterns(base, [_load_patterns(e, own_codes=False) for e in extras])


def merge_patterns(base: PatternSet, extras: list[PatternSet]) -> PatternSet:
    patterns = list(base.patterns)
    wrappers, frames = list(base.wrappers), list(base.handler_frames)
    for ex in extras:
        index = {p.id: i for i, p in enumerate(patterns)}
        new = []
        for p in ex.patterns:
            if p.id in index:
                patterns[index[p.id]] = p
            else:
                new.append(p)
        patterns = new + patterns
        wrappers += ex.wrappers
        frames += ex.handler_frames
    ps = PatternSet(base.path, tuple(patterns), tuple(wrappers), tuple(frames), codes=base.codes)
    ps.by_id.update({p.id: p for p in patterns})
    return ps


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=4)
def _load_patterns_cached(path: str, _mtime: float = 0.0) -> PatternSet:
    return _load_patterns(Path(path))


@lru_cache(maxsize=2)
def _codes_cached(path: str, _mtime: float = 0.0) -> dict:
    return load_codes(path)


def load_codes(path: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """codes.yaml: error code -> (class, meaning)."""
    path = Path(path) if path is not None else DEFAULT_CODES
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("codes"), dict):
        raise _fail(path, "top level", "must be a mapping with a 'codes' mapping")
    out: dict[str, tuple[str, str]] = {}
    for code, entry in data["codes"].items():
        where = f"code {code}"
        if not isinstance(entry, dict) or set(entry) - {"class", "meaning"}:
            raise _fail(path, where, "must be a mapping with 'class' and 'meaning'")
        cls, meaning = entry.get("class"), entry.get("meaning")
        if cls not in CLASSES:
            raise _fail(path, f"{where} field 'class'", f"{cls!r} is not one of {', '.join(CLASSES)}")
        if not isinstance(meaning, str) or not meaning.strip():
            raise _fail(path, f"{where} field 'meaning'", "must be a non-empty string")
        out[str(code).upper()] = (cls, meaning.strip())
    return out


def _expand_codes(rx, cls, codes: dict) -> Any:
    if not isinstance(rx, str) or CODES_FIELD not in rx:
        return rx
    mine = sorted((c for c, (k, _) in codes.items() if k == cls), key=len, reverse=True)
    # No code of this class: a group that never matches keeps the regex valid.
    return rx.replace(CODES_FIELD, "(?:" + "|".join(map(re.escape, mine)) + ")" if mine else "(?!x)x")


def _listed(path: Path, data, key: str) -> list:
    """``data[key]``, a rules file's non-empty list, or a one-line error."""
    if not isinstance(data, dict):
        raise _fail(path, "top level", f"must be a mapping with a '{key}' list")
    raw = data.get(key)
    if not isinstance(raw, list) or not raw:
        raise _fail(path, key, "must be a non-empty list")
    return raw


def _load_patterns(path: Path, own_codes: bool = True) -> PatternSet:
    codes = _codes_cached(str(DEFAULT_CODES), _mtime(DEFAULT_CODES))
    data = _read_yaml(path)
    raw = _listed(path, data, "patterns")
    patterns: list[Pattern] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _fail(path, f"pattern #{i + 1}", "must be a mapping")
        pid = entry.get("id")
        if not isinstance(pid, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", pid):
            raise _fail(path, f"pattern #{i + 1} field 'id'", "must be a lower-case slug")
        if pid in seen:
            raise _fail(path, f"pattern '{pid}' field 'id'", "duplicate id")
        seen.add(pid)
        where = f"pattern '{pid}'"
        unknown = set(entry) - {"id", "class", "regex", "subclass", "hint", "examples", "fingerprint_location",
                                "ascend_gap", "rank", "unstaged", "fixtures"}
        if unknown:
            raise _fail(path, f"{where}", f"unknown field(s) {', '.join(sorted(unknown))}")
        cls = entry.get("class")
        if cls not in CLASSES and cls != STAGE_CLASS:
            raise _fail(path, f"{where} field 'class'", f"{cls!r} is not one of {', '.join(CLASSES)} or {STAGE_CLASS}")
        if "regex" not in entry:
            raise _fail(path, f"{where} field 'regex'", "missing")
        regexes = tuple(
            _compile(path, f"{where} field 'regex'", _expand_codes(rx, cls, codes))
            for rx in _str_list(path, f"{where} field 'regex'", entry["regex"])
        )
        sub = entry.get("subclass")
        if not isinstance(sub, str) or not sub.strip():
            raise _fail(path, f"{where} field 'subclass'", "must be a non-empty string")
        groups = set().union(*(set(rx.groupindex) for rx in regexes))
        for name in _template_fields(path, f"{where} field 'subclass'", sub):
            if name not in groups and name not in COMPUTED_FIELDS:
                raise _fail(
                    path,
                    f"{where} field 'subclass'",
                    f"{{{name}}} is neither a named group of the regex nor one of {', '.join(sorted(COMPUTED_FIELDS))}",
                )
        hint = entry.get("hint")
        if hint is not None and (not isinstance(hint, str) or not hint.strip()):
            raise _fail(path, f"{where} field 'hint'", "must be a non-empty string when given")
        if "examples" not in entry:
            raise _fail(path, f"{where} field 'examples'", "missing: give at least one log excerpt")
        examples = _str_list(path, f"{where} field 'examples'", entry["examples"])
        fl = entry.get("fingerprint_location", True)
        if not isinstance(fl, bool):
            raise _fail(path, f"{where} field 'fingerprint_location'", "must be true or false")
        gap = entry.get("ascend_gap", False)
        if not isinstance(gap, bool):
            raise _fail(path, f"{where} field 'ascend_gap'", "must be true or false")
        rank = entry.get("rank", "cause")
        if rank not in RANKS:
            raise _fail(path, f"{where} field 'rank'", f"{rank!r} is not one of {', '.join(RANKS)}")
        unstaged = entry.get("unstaged")
        if unstaged is not None and (cls != STAGE_CLASS or unstaged not in CLASSES):
            raise _fail(path, f"{where} field 'unstaged'", f"only for class {STAGE_CLASS}, and one of {', '.join(CLASSES)}")
        cited = _str_list(path, f"{where} field 'fixtures'", entry.get("fixtures", []), allow_empty=True)
        patterns.append(Pattern(pid, cls, regexes, sub.strip(), hint.strip() if hint else None, tuple(examples), fl,
                                gap, RANKS.index(rank), unstaged, tuple(cited), str(path)))

    wrappers = tuple(
        _compile(path, f"wrappers #{i + 1}", rx)
        for i, rx in enumerate(_str_list(path, "wrappers", data.get("wrappers", []), allow_empty=True))
    )
    frames = tuple(
        _compile(path, f"handler_frames #{i + 1}", rx)
        for i, rx in enumerate(_str_list(path, "handler_frames", data.get("handler_frames", []), allow_empty=True))
    )
    ps = PatternSet(str(path), tuple(patterns), wrappers, frames, codes=codes)
    ps.by_id.update({p.id: p for p in patterns})
    return ps


def load_text_rules(path: str | Path | None = None) -> TextRules:
    """Load and check a prefixes file (the packaged one when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_PREFIXES
    if path == DEFAULT_PREFIXES:
        return _load_text_rules_cached(str(path))
    return _load_text_rules(path)


@lru_cache(maxsize=4)
def _load_text_rules_cached(path: str) -> TextRules:
    return _load_text_rules(Path(path))


def _load_text_rules(path: Path) -> TextRules:
    data = _read_yaml(path)
    raw = _listed(path, data, "prefixes")
    prefixes = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise _fail(path, f"prefix #{i + 1}", "must be a mapping with an 'id'")
        where = f"prefix '{entry['id']}'"
        rx = entry.get("regex")
        if not isinstance(rx, str) or not rx.startswith("^"):
            raise _fail(path, f"{where} field 'regex'", "must be a string anchored with ^")
        compiled = _compile(path, f"{where} field 'regex'", rx)
        examples = _str_list(path, f"{where} field 'examples'", entry.get("examples"))
        for ex in examples:
            if not compiled.match(ex):
                raise _fail(path, f"{where} field 'examples'", f"example {ex!r} does not match the regex")
        prefixes.append(Prefix(entry["id"], compiled, bool(entry.get("dedent", False))))
    prefix_any = re.compile("|".join(f"(?:{p.regex.pattern})" for p in prefixes))
    noise_list = _str_list(path, "noise", data.get("noise", []), allow_empty=True)
    for i, rx in enumerate(noise_list):
        if not rx.startswith("^"):
            raise _fail(path, f"noise #{i + 1}", "must be anchored with ^")
        _compile(path, f"noise #{i + 1}", rx)
    noise = re.compile("|".join(f"(?:{rx})" for rx in noise_list)) if noise_list else None
    roots = tuple(_str_list(path, "package_roots", data.get("package_roots", []), allow_empty=True))
    return TextRules(str(path), tuple(prefixes), prefix_any, noise, roots)

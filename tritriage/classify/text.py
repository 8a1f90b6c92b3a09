"""Turning raw captured output into lines a pattern can be run on.

Everything here is bounded: a log of any size is cut to a head and a tail,
lines are capped in length, and the regexes are anchored or linear, so a
50 MB log or binary garbage costs milliseconds, not minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .rules import TextRules

# Budget for one log.  Banners, the first diagnostic and the final exception sit
# at the start or the end of what a compile prints; the middle of a huge log is
# IR dumps or repeated warnings.
MAX_CHARS = 1_000_000
MAX_LINES = 6_000
MAX_LINE = 2_000

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# triton-ascend's error banner; both eras (the seed's HuaweiCompilationError,
# triton-ascend 3.2's MLIRCompilationError).
BANNER_BEG = re.compile(r"^/{2,}-+\[ERROR\]\[(?:TritonAscend|Triton)\]\[BEG\]-+")
BANNER_END = re.compile(r"^/{2,}-+\[ERROR\]\[(?:TritonAscend|Triton)\]\[END\]-+")
BANNER_STAGE = re.compile(r"^\[(?P<stage>\w+)\] encounters error:?")

# tritriage's own verdict lines (a repro script prints
# "TRITRIAGE-REPRO-RESULT {json}"): read before anything else.
RESULT_LINE = re.compile(r"^TRITRIAGE-[A-Z]+(?:-[A-Z]+)*-RESULT (?P<json>\{.*\})\s*$")

# MLIR diagnostics: "file:L:C: error: msg" and 'loc("file":L:C): error: msg'.
DIAG_FILE = re.compile(r"^(?P<file>[^\s:][^:]{0,500}?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning|remark|note): (?P<msg>.*)$")
DIAG_LOC = re.compile(r"^loc\((?P<loc>.{0,1500})\): (?P<sev>error|warning|remark|note): (?P<msg>.*)$")
DIAG_BARE = re.compile(r"^(?P<sev>error|warning|remark|note): (?P<msg>.*)$")
LOC_ITEM = re.compile(r'"(?P<file>[^"]{1,500})":(?P<line>\d+):(?P<col>\d+)')
CARET = re.compile(r"^\s*\^[\s~^]*$")

# Python: "at 4:31:" opens a CompilationError excerpt; a traceback's frames.
PY_AT = re.compile(r"^at (?P<line>\d+):(?P<col>\d+):\s*$")
PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
PY_EXC = re.compile(r"^(?P<exc>(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Failure|Construct|Exit|Interrupt|Warning)|KeyboardInterrupt|StopIteration)(?::\s?(?P<msg>.*))?$")
PY_NOISE = re.compile(r"^\s*(?:Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause|\^{3,}\s*$|~+\^*~*\s*$)")

# LLVM crash reports.
STACK_HEAD = re.compile(r"^(?:Stack dump:|PLEASE submit a bug report to )")
PROGRAM_ARGS = re.compile(r"^\s*\d+\.\s+Program arguments: (?P<prog>\S+)")
FRAME = re.compile(r"^\s*#(?P<n>\d+) +(?:0x[0-9a-fA-F]+(?: +(?:in +)?|$))?(?P<what>.*)$")
_FILE_LINE_COL = re.compile(r"\S+:\d+:\d+")

# Normalization, for fingerprints and to merge repeated blocks.
TEMP_DIR = re.compile(r"(?:/private)?/(?:tmp|var/tmp|var/folders/[^\s/]+/[^\s/]+/T)/[^\s/\"':)]+")
HEX = re.compile(r"0x[0-9a-fA-F]+")
SSA = re.compile(r"%[\w.#]+")
SHAPED = re.compile(r"\b(tensor|memref|vector)<[^<>]*(?:<[^<>]*>[^<>]*)*>")
LOC_EXPR = re.compile(r'loc\((?:[^()"]|"[^"]*"|\([^()]*\))*\)')
SYMBOL = re.compile(r"\(@[\w.$]+\)")
LONG_NUM = re.compile(r"\b\d{4,}\b")
PID = re.compile(r"\b(?:pid|PID|tid|task_id|stream_id|device_id|serial number is|core id is)[=: ]+\d+")
WS = re.compile(r"\s+")


@dataclass
class Line:
    text: str  # prefixes stripped, noise-free, right-stripped
    index: int


def to_text(data) -> str:
    """Any captured output as text: bytes decode with replacement, never raise."""
    if data is None:
        return ""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8", errors="replace")
    elif not isinstance(data, str):
        data = str(data)
    return data


def bounded(text: str) -> str:
    """Cut a huge log to its head and tail; what lies between is rarely the cause."""
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + "\n[... tritriage: middle of a long log skipped ...]\n" + text[-half:]
    return text


def split_lines(text: str) -> list[str]:
    text = ANSI.sub("", text)
    if CONTROL.search(text):
        text = CONTROL.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        half = MAX_LINES // 2
        lines = lines[:half] + ["[... tritriage: middle of a long log skipped ...]"] + lines[-half:]
    return [(ln[:MAX_LINE] if len(ln) > MAX_LINE else ln).rstrip() for ln in lines]


def strip_prefixes(lines: list[str], rules: TextRules) -> list[str]:
    """Remove capture prefixes; a run of pytest "E" lines loses its common indent too."""
    out: list[str] = []
    dedent_run: list[int] = []  # indexes in out of the current run of dedent-prefixed lines

    def flush():
        if not dedent_run:
            return
        widths = [len(out[i]) - len(out[i].lstrip(" ")) for i in dedent_run if out[i].strip()]
        cut = min(widths) if widths else 0
        if cut:
            for i in dedent_run:
                out[i] = out[i][cut:] if out[i].strip() else ""
        dedent_run.clear()

    any_prefix = rules.prefix_any
    prefixes = rules.prefixes
    for ln in lines:
        dedented = False
        for _ in range(6):  # prefixes stack: timestamp, worker tag, log header, pytest column
            if not any_prefix.match(ln):
                break
            for p in prefixes:
                m = p.regex.match(ln)
                if m:
                    ln = ln[m.end():]
                    dedented = dedented or p.dedent
                    break
        if dedented:
            dedent_run.append(len(out))
        else:
            flush()
        out.append(ln.replace("\t", "    ") if dedented else ln)
    flush()
    return out


def read(data, rules: TextRules) -> list[Line]:
    """Captured output -> clean lines (prefixes stripped, noise dropped)."""
    lines = strip_prefixes(split_lines(bounded(to_text(data))), rules)
    noise = rules.noise
    out = []
    for ln in lines:
        if noise is not None and noise.match(ln):
            continue
        out.append(Line(ln, len(out)))
    return out


def normalize(text: str, checkout: str | None = None) -> str:
    """What stays the same for one root cause across kernels, machines and runs."""
    if checkout:
        text = text.replace(checkout.rstrip("/") + "/", "")
    text = LOC_EXPR.sub("loc(?)", text)
    text = TEMP_DIR.sub("<tmp>", text)
    text = SHAPED.sub(lambda m: m.group(1) + "<?>", text)
    text = HEX.sub("0x?", text)
    text = SSA.sub("%?", text)
    text = SYMBOL.sub("", text)
    text = PID.sub("<id>", text)
    text = LONG_NUM.sub("N", text)
    return WS.sub(" ", text).strip()


def dedupe_key(text: str) -> str:
    """Cheaper than normalize: enough to see that a repeated block is the same."""
    return SSA.sub("%", HEX.sub("0x", TEMP_DIR.sub("<tmp>", text)))


def frame_function(what: str) -> str | None:
    """'ns::f(int, x) (bin+0x1)' -> 'ns::f'; None for an unsymbolized frame."""
    what = what.strip()
    if not what:
        return None
    # Drop the tail: " (/path/bin+0x1f)" or " File.cpp:0:0" (cheaper than a regex on long lines).
    cut = what.rfind(" (")
    if cut > 0 and what.endswith(")") and "+0x" in what[cut:]:
        what = what[:cut]
    else:
        sp = what.rfind(" ")
        if sp > 0 and _FILE_LINE_COL.fullmatch(what, sp + 1):
            what = what[:sp]
    what = what.strip()
    if not what or what.startswith("(") and not what.startswith("(anonymous namespace)"):
        return None
    if what.startswith(("/", "./")) or HEX.fullmatch(what):  # a bare path or address: unsymbolized
        return None
    # Cut the argument list: the first "(" outside template brackets that does
    # not open "(anonymous namespace)".
    depth = 0
    i = 0
    n = len(what)
    while i < n:
        c = what[i]
        if c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif c == "(" and depth == 0:
            if what.startswith("(anonymous namespace)", i):
                i += len("(anonymous namespace)")
                continue
            return what[:i].strip() or None
        i += 1
    return what.strip() or None

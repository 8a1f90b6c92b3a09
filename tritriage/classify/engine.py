"""Classify one failure's text into a Diagnosis, and clean it for reports.

The text is read into ranked candidates (see ``_candidates``); the first
candidate a pattern matches gives class, subclass and hint; the location comes
from that candidate; the fingerprint hashes what stays the same for one root
cause.  Nothing here raises on bad input: empty output, binary garbage or a
huge log all yield a Diagnosis.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import json

from tritriage.model import HANG_SUSPECTED, Diagnosis, Location

from . import text as T
from .rules import (CLASSES, RANKS, STAGE_CLASS, Pattern, PatternSet, TextRules, load_patterns,
                    load_text_rules, user_rules_file)

# triton-ascend's stage names (banner) and tritriage's (model.STAGES) -> class.
# The ttir stage ("MLIRCompile") is still Python-to-TTIR work: frontend.
STAGE_TO_CLASS = {
    "frontend": "frontend",
    "ttir": "frontend",
    "MLIRCompile": "frontend",
    "linalg": "ConvertTritonIRToLinalgIR",
    "ConvertTritonIRToLinalgIR": "ConvertTritonIRToLinalgIR",
    "binary": "ConvertLinalgRToBinary",
    "ConvertLinalgRToBinary": "ConvertLinalgRToBinary",
}
TOOL_TO_CLASS = {
    "triton-adapter-opt": "ConvertTritonIRToLinalgIR",
    "bishengir-compile": "ConvertLinalgRToBinary",
    "npuc": "ConvertLinalgRToBinary",
}
# Traceback frames that show which stage was running, in pipeline order.
STAGE_HINTS = (
    ("frontend", re.compile(r"\bast_to_ttir\b|code_generator\.py|\bin make_ir\b")),
    ("frontend", re.compile(r"\bmake_ttir\b")),
    ("ConvertTritonIRToLinalgIR", re.compile(r"\bttir_to_linalg\b|triton-(?:adapter|shared|linalg)-opt['\s:]|\bTritonTo(?:Linalg|Structured|Unstructure)\w*|/PtrAnalysis\.cpp")),
    ("ConvertLinalgRToBinary", re.compile(r"\blinalg_to_bin\w*|bishengir-compile['\s:]|\bBiSheng(?:HIR|IR|LIR)\b")),
)
PIPELINE = ("frontend", "ConvertTritonIRToLinalgIR", "ConvertLinalgRToBinary")
# One pass over a line for all hints: the group name says which stage.
STAGE_OF_GROUP = {f"h{k}": stage for k, (stage, _) in enumerate(STAGE_HINTS)}
HINT_ANY = re.compile("|".join(f"(?P<h{k}>{rx.pattern})" for k, (_, rx) in enumerate(STAGE_HINTS)))

# Ranks of candidate lines: a located frontend CompilationError ends the
# compile outright, so it beats the inner exception it wraps; otherwise the
# root cause is the first *error*; plain lines
# (runtime logs, warnings that name a missing op) come next; remarks and the
# errors that only wrap another one come last.
W_FRONTEND, W_ERROR, W_LINE, W_WEAK = -1, 0, 1, 2
ERRORISH = re.compile(r"^LLVM ERROR: |Assertion `.*' failed|UNREACHABLE executed")
IR_FILE = re.compile(r"(?:\.(?:mlir|ttir|ttgir|llir|ll|ptx)|<stdin>|<unknown>)$")
LIBRARY_FILE = re.compile(r"/(?:site|dist)-packages/triton/|/triton/language/|/triton/runtime/")
EXCERPT_LINES = 40
EXCERPT_CHARS = 4000


@dataclass
class Candidate:
    text: str  # what patterns see: "error: msg", "NameError: msg", or the line
    weight: int
    index: int
    loc: tuple[str, int, int] | None = None
    source: str = ""


@dataclass
class Reading:
    """What was read from one log."""

    lines: list[T.Line]
    candidates: list[Candidate] = field(default_factory=list)
    banner_stage: str | None = None
    tool: str | None = None
    frames: list[str] = field(default_factory=list)
    hinted_stage: str | None = None
    meaningful: list[str] | None = None  # symbolized frames below the signal handler
    result: dict | None = None  # a TRITRIAGE-*-RESULT line's verdict (a repro script's own)


class Classifier:
    """Rules loaded once; ``classify`` and ``clean`` run on any text."""

    def __init__(self, patterns: PatternSet | str | Path | None = None, prefixes: TextRules | str | Path | None = None,
                 rules: tuple | list = (), user_rules: bool = True):
        """``rules``: the user's rules files on top of ``patterns``; ``user_rules``:
        with the shipped patterns, also ``<data dir>/rules.yaml``."""
        if isinstance(patterns, PatternSet):
            self.patterns = patterns
        else:
            self.patterns = load_patterns(patterns, extra=tuple(rules), user=user_rules and patterns is None)
        self.text_rules = prefixes if isinstance(prefixes, TextRules) else load_text_rules(prefixes)
        self._wrapper = _union(self.patterns.wrappers)
        self._handler = _union(self.patterns.handler_frames)

    # ------------------------------------------------------------------ reading

    def read(self, data) -> Reading:
        lines = T.read(data, self.text_rules)
        r = Reading(lines)
        hinted = -1
        n = len(lines)
        skip_code = False  # inside a traceback frame's code excerpt
        skip_ir = False  # inside an IR dump printed after "see current operation:"
        consumed: set[int] = set()
        for i, ln in enumerate(lines):
            s = ln.text
            if not s.strip():
                skip_code = False
                skip_ir = False
                continue
            st = s.strip()
            if st.startswith("TRITRIAGE-"):
                m = T.RESULT_LINE.match(st)
                if m:
                    r.result = _result(m.group("json")) or r.result
                continue
            if st[0] == "#":  # stack frames are most of a crash log: cheapest test first
                m = T.FRAME.match(s)
                if m:
                    r.frames.append(m.group("what"))
                    continue
            if hinted < len(PIPELINE) - 1 and _maybe_hint(s):
                for hm in HINT_ANY.finditer(s):
                    pos = PIPELINE.index(STAGE_OF_GROUP[hm.lastgroup])
                    if pos > hinted:
                        hinted = pos
                        r.hinted_stage = PIPELINE[pos]
            if i in consumed:
                continue
            if skip_code:
                if s.startswith("    ") or T.PY_NOISE.match(s):
                    continue
                skip_code = False
            if st.startswith("File ") and T.PY_FRAME.match(s):
                skip_code = True
                continue
            if T.PY_NOISE.match(s):
                continue
            if st[0] == "/" and T.BANNER_BEG.match(st) or T.BANNER_END.match(st):
                continue
            m = T.BANNER_STAGE.match(st) if st[0] == "[" else None
            if m:
                r.banner_stage = r.banner_stage or m.group("stage")
                continue
            m = T.PROGRAM_ARGS.match(s) if "Program arguments:" in st else None
            if m:
                r.tool = r.tool or Path(m.group("prog").strip("'\"")).name
                r.frames = []  # a new dump starts
                continue
            diag = _parse_diag(st)
            if diag is not None:
                sev, msg, loc = diag
                if skip_ir and sev == "note":
                    continue
                skip_ir = False
                if sev == "note":
                    if msg.rstrip().endswith("see current operation:"):
                        skip_ir = True
                    continue
                source = ""
                if i + 2 < n and T.CARET.match(lines[i + 2].text) and _parse_diag(lines[i + 1].text.strip()) is None:
                    source = lines[i + 1].text.strip()
                    consumed.update((i + 1, i + 2))
                text = f"{sev}: {msg}"
                weight = W_ERROR if sev == "error" else W_WEAK
                if weight == W_ERROR and self._wrapper and self._wrapper.search(msg):
                    weight = W_WEAK
                r.candidates.append(Candidate(text, weight, i, loc, source))
                continue
            if skip_ir:
                continue
            fe = self._frontend(lines, i, consumed) if st.endswith(":") and "at " in st else None
            if fe is not None:
                r.candidates.append(fe)
                continue
            m = T.PY_EXC.match(st)
            if m:
                exc = m.group("exc").rsplit(".", 1)[-1]
                msg = (m.group("msg") or "").strip()
                text = f"{exc}: {msg}" if msg else f"{exc}:"
                weak = not msg or (self._wrapper is not None and self._wrapper.search(text))
                r.candidates.append(Candidate(text, W_WEAK if weak else W_ERROR, i))
                continue
            if T.CARET.match(s):
                continue
            weight = W_ERROR if ERRORISH.search(st) else W_LINE
            if self._wrapper is not None and self._wrapper.search(st):
                weight = W_WEAK
            r.candidates.append(Candidate(st, weight, i))
        r.candidates.sort(key=lambda c: (c.weight, c.index))
        return r

    def _frontend(self, lines: list[T.Line], i: int, consumed: set[int]) -> Candidate | None:
        """A CompilationError excerpt: 'X: at L:C:', source lines, caret, message."""
        s = lines[i].text.strip()
        m = T.PY_EXC.match(s)
        exc = "CompilationError"
        at = None
        if m and m.group("msg"):
            at = T.PY_AT.match(m.group("msg").strip())
            exc = m.group("exc").rsplit(".", 1)[-1]
        elif T.PY_AT.match(s):
            at = T.PY_AT.match(s)
        if at is None:
            return None
        caret = None
        for j in range(i + 1, min(i + 16, len(lines))):
            if T.CARET.match(lines[j].text):
                caret = j
                break
        if caret is None:
            return None
        source = lines[caret - 1].text.strip() if caret - 1 > i else ""
        message = ""
        last = caret
        for j in range(caret + 1, min(caret + 6, len(lines))):
            if lines[j].text.strip():
                message = lines[j].text.strip()
                last = j
                break
        consumed.update(range(i + 1, last + 1))
        if exc == "CompilationError" and not message:
            message = "compilation error"
        loc = ("<kernel>", int(at.group("line")), int(at.group("col")))
        # tritriage's worker appends where "at L:C" (counted from the def) lies
        # in the checkout: a real file:line is worth more than "<kernel>:L".
        for j in range(last + 1, min(last + 8, len(lines))):
            real = _REAL_FILE.match(lines[j].text)
            if real:
                loc = (real.group("path"), int(real.group("line")), int(at.group("col")))
                consumed.add(j)
                break
        return Candidate(f"{exc}: {message}", W_FRONTEND, i, loc, source)

    # -------------------------------------------------------------- classifying

    def classify(
        self,
        text,
        *,
        checkout: str | None = None,
        stage: str | None = None,
        outcome: str | None = None,
    ) -> Diagnosis:
        try:
            return self._classify(text, checkout=checkout, stage=stage, outcome=outcome)
        except Exception as e:  # a classifier must never take the run down with it
            first = _first_line(T.to_text(text)) if text is not None else ""
            sub = f"classifier error ({type(e).__name__}); first line: {first}" if first else f"classifier error ({type(e).__name__})"
            return Diagnosis("unknown", sub[:200], _hash("unknown", sub), None, None, None, "")

    def _classify(self, text, *, checkout, stage, outcome) -> Diagnosis:
        reading = self.read(text)
        excerpt = _truncate(self.clean_reading(reading))
        if reading.result is not None and outcome not in OUTCOME_CLASS:
            # The repro script classified its own compile with the same rules,
            # knowing stage and outcome; the printed text around it knows less.
            res = reading.result
            return Diagnosis(res["class"], res.get("subclass") or res["class"], res["fingerprint"],
                             _parse_location(res.get("location")), None, "tritriage-result", excerpt)
        stage_cls = self._stage_class(reading, stage)
        found = self._match(reading)
        checkout = checkout.rstrip("/") if checkout else None
        hint = None

        if found is not None:
            pattern, cand, m = found
            code = (m.groupdict().get("code") or "").upper()
            meaning = self.patterns.codes.get(code, (None, ""))[1] if code else ""
            cls = stage_cls or pattern.unstaged if pattern.cls == STAGE_CLASS else pattern.cls
            fields = {k: v for k, v in m.groupdict().items()}
            fields.update(
                crash_site=self._crash_site(reading),
                tool=reading.tool or "compiler",
                stage=stage_cls or "unknown stage",
                line=cand.text,
                meaning=meaning or "",
            )
            if fields.get("code"):
                fields["code"] = fields["code"].upper()
            subclass = _tidy(_format(pattern.subclass, fields))
            hint, pid = pattern.hint, pattern.id
            use_location = pattern.fingerprint_location
            if cls is None:  # a stage-dependent pattern with no stage anywhere
                cls, pid = "unknown", None
                hint = (f"best candidate: {_short(cand.text)!r}; why unknown: rule '{pattern.id}' matches it but "
                        f"its class depends on the compiler stage, and no banner, tool or caller names one")
        else:
            cand = _first_error(reading)
            cls, pid, use_location = "unknown", None, True
            subclass = _tidy(cand.text) if cand is not None else ("empty output" if not reading.lines or not any(l.text.strip() for l in reading.lines) else "no diagnostic found")
            if cand is not None:
                hint = self._why_unknown(cand)

        location = _location(cand, checkout, self.text_rules.package_roots) if cand is not None else None

        # The caller's outcome decides the class of failures outside the compiler.
        if outcome in OUTCOME_CLASS:
            cls = OUTCOME_CLASS[outcome]
            hint, pid = None, None
            if outcome in ("loader-error", "spec-error"):
                # The tool's own failure: its first error says why, whatever pattern it resembles.
                cand = _first_error(reading)
                location = _location(cand, checkout, self.text_rules.package_roots) if cand is not None else None
                subclass = _outcome_subclass(outcome, reading, stage_cls, _tidy(cand.text) if cand else "")
            else:
                subclass = _outcome_subclass(outcome, reading, stage_cls, subclass if found or cand else "")
            use_location = outcome in ("loader-error", "spec-error")

        key_loc = ""
        if location is not None and use_location:
            key_loc = f"{location.file}:{location.line}:{location.col}"
            if location.file == "<kernel>":
                key_loc += ":" + T.normalize(location.source)
        elif found is not None and found[0].id == "tool-crash" or (location is None and reading.frames and cls not in ("environment",)):
            key_loc = "frames:" + "|".join(self._top_frames(reading, 3))
        fingerprint = _hash(cls, T.normalize(subclass, checkout), key_loc)
        return Diagnosis(cls, subclass, fingerprint, location, hint, pid, excerpt)

    def _why_unknown(self, cand: Candidate) -> str:
        """For a user writing a rule: the line we would have used, and the
        rule whose examples share most of its words (or that none does)."""
        words = set(_WORD.findall(cand.text.lower()))
        best, score = None, 0
        for p in self.patterns.patterns:
            ex = set(_WORD.findall(" ".join(p.examples).lower()))
            common = len(words & ex)
            if common > score:
                best, score = p, common
        kind = {W_FRONTEND: "a located compile error", W_ERROR: "an error line",
                W_LINE: "a plain line (no error line in the log)", W_WEAK: "a wrapper or remark"}[cand.weight]
        near = (f"; nearest rule '{best.id}' ({best.cls}) shares {score} word(s) with it but its regex does not match"
                if best is not None and score >= 2 else "; no rule shares its words")
        return f"best candidate: {_short(cand.text)!r} ({kind}); why unknown: no rule matches it{near}"

    def _match(self, reading: Reading):
        """The best (pattern, candidate, match).

        Each candidate line takes the first pattern (in file order) that
        matches it; among those, the best pattern rank wins, then the line's
        own rank (located compile error, error, plain line, wrapper), then the
        earlier line.  With a compiler banner or crash report in the log, the
        run-time patterns count one rank lower: they describe the wrapper."""
        compiled = reading.banner_stage in STAGE_TO_CLASS or reading.tool in TOOL_TO_CLASS
        best = None
        best_key = None
        roots = [p for p in self.patterns.patterns if p.rank == 0]
        for cand in reading.candidates:  # sorted by (weight, index)
            if best_key is not None and best_key[0] <= 1:
                if best_key[0] == 0 or not roots:
                    break  # nothing later can beat a root, nor a cause without roots
            for p in self.patterns.patterns if best_key is None or best_key[0] > 1 else roots:
                m = p.match(cand.text)
                if not m:
                    continue
                rank = p.rank
                if compiled and p.cls in RUNTIME_CLASSES:
                    rank = min(rank + 1, len(RANKS) - 1)
                key = (rank, cand.weight, cand.index)
                if best_key is None or key < best_key:
                    best, best_key = (p, cand, m), key
                break
        return best

    def _stage_class(self, reading: Reading, stage: str | None) -> str | None:
        if reading.banner_stage and reading.banner_stage in STAGE_TO_CLASS:
            return STAGE_TO_CLASS[reading.banner_stage]
        if stage and stage in STAGE_TO_CLASS:
            return STAGE_TO_CLASS[stage]
        if reading.tool and reading.tool in TOOL_TO_CLASS:
            return TOOL_TO_CLASS[reading.tool]
        return reading.hinted_stage

    def _meaningful_frames(self, reading: Reading) -> list[str]:
        if reading.meaningful is None:
            reading.meaningful = [fn for fn in map(T.frame_function, reading.frames) if fn and not self._is_handler(fn)]
        return reading.meaningful

    def _is_handler(self, fn: str) -> bool:
        return self._handler is not None and self._handler.search(fn) is not None

    def _crash_site(self, reading: Reading) -> str:
        funcs = self._meaningful_frames(reading)
        tool = reading.tool or "compiler"
        if funcs:
            return f"crash in {funcs[0]}"
        if any(w.strip() and T.frame_function(w) is None and "linux-vdso" not in w and "libc.so" not in w for w in reading.frames):
            return f"{tool} crashed (unsymbolized stack)"
        return f"{tool} crashed (no stack frames)"

    def _top_frames(self, reading: Reading, n: int) -> list[str]:
        funcs = self._meaningful_frames(reading)[:n]
        return [T.normalize(f) for f in funcs] or [reading.tool or "compiler"]

    # ----------------------------------------------------------------- cleaning

    def clean(self, text, max_frames: int = 5) -> str:
        try:
            return self.clean_reading(self.read(text), max_frames)
        except Exception:
            return _first_line(T.to_text(text))

    def clean_reading(self, reading: Reading, max_frames: int = 5) -> str:
        """The lines that explain the failure: no prefixes, noise, tracebacks,
        IR dumps or handler frames, each diagnostic block once."""
        lines = reading.lines
        out: list[str] = []
        seen_blocks: set[str] = set()
        block: list[str] = []
        frames_kept = frames_dropped = 0
        in_frames = False
        skip_code = skip_ir = False

        def flush_block():
            if block:
                key = T.dedupe_key("\n".join(block))
                if key not in seen_blocks:
                    seen_blocks.add(key)
                    out.extend(block)
                block.clear()

        def end_frames():
            nonlocal in_frames, frames_kept, frames_dropped
            if in_frames and frames_dropped:
                out.append(f"    ... {frames_dropped} more frames")
            in_frames = False
            frames_kept = frames_dropped = 0

        for ln in lines:
            s = ln.text
            st = s.strip()
            if skip_code:
                if s.startswith("    ") or T.PY_NOISE.match(s):
                    continue
                skip_code = False
            if T.PY_FRAME.match(s):
                flush_block()
                skip_code = True
                continue
            if T.PY_NOISE.match(s) or T.BANNER_BEG.match(st) or T.BANNER_END.match(st):
                continue
            m = T.FRAME.match(s)
            if m and (in_frames or st.startswith("#")):
                flush_block()
                in_frames = True
                fn = T.frame_function(m.group("what"))
                if fn is None or self._is_handler(fn):
                    continue
                if frames_kept < max_frames:
                    out.append(f"    #{m.group('n')} {fn}")
                    frames_kept += 1
                else:
                    frames_dropped += 1
                continue
            end_frames()
            diag = _parse_diag(st)
            if diag is not None:
                if diag[0] == "note" and skip_ir:
                    continue
                skip_ir = diag[0] == "note" and diag[1].rstrip().endswith("see current operation:")
                if diag[0] != "note":
                    flush_block()
                block.append(st if len(st) <= 400 else st[:400] + " ...")
                continue
            if skip_ir:
                if not st:
                    skip_ir = False
                continue
            if not st:
                flush_block()
                if out and out[-1] != "":
                    out.append("")
                continue
            m = T.PY_EXC.match(st)
            if m and not m.group("msg"):
                continue  # "huawei.HuaweiCompilationError:" says nothing the banner does not
            line = s if len(s) <= 400 else s[:400] + " ..."
            if block:
                block.append(line)
            else:
                out.append(line)
        flush_block()
        end_frames()
        while out and not out[-1].strip():
            out.pop()
        while out and not out[0].strip():
            out.pop(0)
        return "\n".join(out)


# ---------------------------------------------------------------- helpers

OUTCOME_CLASS = {
    "timeout": "timeout",
    "crash": "crash",
    "oom": "crash",
    "loader-error": "loader",
    "spec-error": "spec",
}
SIGNAL = re.compile(r"\b(SIG[A-Z]+)\b|signal (\d+)")


def _outcome_subclass(outcome: str, reading: Reading, stage_cls: str | None, from_text: str) -> str:
    where = f" in {stage_cls}" if stage_cls else ""
    if outcome == "timeout":
        # Cut at a stage's budget (compile/hangs.py), not at --timeout: say so,
        # a patient rerun may still finish.
        if any(HANG_SUSPECTED in ln.text for ln in reading.lines[:50]):
            return f"hang suspected{where} (cut at its stage budget)"
        return f"compile timed out{where}"
    if outcome == "oom":
        return f"compile ran out of memory{where}"
    if outcome == "crash":
        for ln in reading.lines[-200:]:
            m = SIGNAL.search(ln.text)
            if m:
                return f"worker killed by {m.group(1) or 'signal ' + m.group(2)}"
        return from_text or "worker died outside any compiler stage"
    if outcome == "loader-error":
        return from_text or "kernel could not be loaded"
    return from_text or "spec does not fit the kernel"


_SEVERITIES = ("error: ", "remark: ", "warning: ", "note: ")


def _parse_diag(st: str):
    """'file:L:C: sev: msg' | 'loc(...): sev: msg' | 'sev: msg' -> (sev, msg, loc|None)."""
    if st.startswith(_SEVERITIES):
        m = T.DIAG_BARE.match(st)
        return (m.group("sev"), m.group("msg"), None) if m else None
    if not any(sev in st for sev in _SEVERITIES):
        return None
    if st.startswith("loc("):
        m = T.DIAG_LOC.match(st)
        if m:
            return m.group("sev"), m.group("msg"), _pick_loc(m.group("loc"))
    m = T.DIAG_FILE.match(st)
    if m:
        return m.group("sev"), m.group("msg"), (m.group("file"), int(m.group("line")), int(m.group("col")))
    return None


_HINT_WORDS = ("_to_", "adapter", "make_", "code_generator", "TritonTo", "BiSheng", "bishengir", "-opt", "PtrAnalysis")


def _maybe_hint(s: str) -> bool:
    return any(w in s for w in _HINT_WORDS)


def _pick_loc(expr: str) -> tuple[str, int, int] | None:
    """From loc(...): the kernel's own line.  callsite(a at b) lists the callee
    first; library frames (triton.language) are skipped either way."""
    items = [(m.group("file"), int(m.group("line")), int(m.group("col"))) for m in T.LOC_ITEM.finditer(expr)]
    if not items:
        return None
    user = [it for it in items if not LIBRARY_FILE.search(it[0])]
    if not user:
        return items[0]
    return user[-1] if expr.lstrip().startswith("callsite") else user[0]


_REAL_FILE = re.compile(r'^\s*File "(?P<path>[^"]+\.py)", line (?P<line>\d+)')


def _location(cand: Candidate, checkout: str | None, roots: tuple[str, ...]) -> Location | None:
    if cand.loc is None:
        return None
    file, line, col = cand.loc
    if IR_FILE.search(file):
        return None  # a temp IR file: the line means nothing to the kernel's author
    return Location(relative_path(file, checkout, roots), line, col, cand.source)


_HOME = re.compile(r"^/(?:home|Users)/[^/]+/|^/root/")


def relative_path(path: str, checkout: str | None = None, roots: tuple[str, ...] | None = None) -> str:
    """A source path as the checkout sees it, the same on every machine."""
    if path == "<kernel>":
        return path
    path = posixpath.normpath(path) if path.startswith("/") else path
    if checkout and path.startswith(checkout + "/"):
        return path[len(checkout) + 1:]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    if roots is None:
        roots = load_text_rules().package_roots
    parts = path.split("/")
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in roots:
            return "/".join(parts[k:])
    m = T.TEMP_DIR.match(path)
    if m and len(path) > m.end() + 1:
        return path[m.end() + 1:]
    m = _HOME.match(path)
    if m:
        return path[m.end():]
    return path


_FAILURE_WORDS = re.compile(r"(?i)\b(?:error|fail\w*|fault|abort\w*|exception|timed? ?out|killed|crash\w*|cannot|unsupported|not supported)\b")
RUNTIME_CLASSES = frozenset({"runtime", "timeout"})
_WORD = re.compile(r"[a-z_][a-z0-9_.]{2,}")


def _short(s: str, n: int = 160) -> str:
    return s if len(s) <= n else s[:n] + "..."


def _result(raw: str) -> dict | None:
    """A TRITRIAGE-*-RESULT line's JSON, when it carries a verdict."""
    try:
        res = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(res, dict) or res.get("class") not in CLASSES or not isinstance(res.get("fingerprint"), str):
        return None
    return res


_LOC_STR = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")


def _parse_location(s) -> Location | None:
    m = _LOC_STR.match(s) if isinstance(s, str) else None
    return Location(m.group("file"), int(m.group("line")), int(m.group("col") or 0)) if m else None


def _first_error(reading: Reading) -> Candidate | None:
    """For unknown output: the first error line, else the first line at all."""
    for c in reading.candidates:  # sorted: errors first
        if c.weight <= W_ERROR:
            return c
    first = None
    for ln in reading.lines:
        st = ln.text.strip()
        if st:
            if _FAILURE_WORDS.search(st):  # a plain line that says something went wrong
                return Candidate(st, W_LINE, ln.index)
            first = first or Candidate(st, W_LINE, ln.index)
    return first


class _SafeDict(dict):
    def __missing__(self, key):
        return "?"


def _format(template: str, fields: dict) -> str:
    return template.format_map(_SafeDict({k: ("" if v is None else v) for k, v in fields.items()}))


_SHAPE_DIMS = re.compile(r"\b(tensor|memref|vector)<((?:\d+|\?)x)+")


def _tidy(s: str) -> str:
    """A subclass that groups: no function names, temp paths, SSA ids, shapes."""
    s = T.SYMBOL.sub("", s)
    s = T.TEMP_DIR.sub("<tmp>", s)
    s = T.HEX.sub("0x?", s)
    s = T.SSA.sub("%", s)
    s = _SHAPE_DIMS.sub(lambda m: m.group(1) + "<" + "?x" * m.group(0).count("x"), s)
    s = T.WS.sub(" ", s).strip()
    return s[:200] + "..." if len(s) > 200 else s


def _hash(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:12]


def _first_line(text: str) -> str:
    for ln in text.splitlines()[:200]:
        if ln.strip():
            return ln.strip()[:200]
    return ""


def _truncate(text: str) -> str:
    lines = text.split("\n")
    if len(lines) > EXCERPT_LINES:
        lines = lines[:EXCERPT_LINES] + [f"... ({len(lines) - EXCERPT_LINES} more lines)"]
    out = "\n".join(lines)
    if len(out) > EXCERPT_CHARS:
        out = out[:EXCERPT_CHARS] + "\n... (truncated)"
    return out


def _union(rxs: tuple[re.Pattern, ...]) -> re.Pattern | None:
    return re.compile("|".join(f"(?:{r.pattern})" for r in rxs)) if rxs else None


# ------------------------------------------------------------- module API

_classifiers: dict = {}


def default_classifier(rules: tuple | list = ()) -> Classifier:
    """The shipped rules, ``<data dir>/rules.yaml`` and ``rules``, loaded once
    per set of files (and again when one of them changes)."""
    files = [user_rules_file(), *map(Path, rules)]
    key = tuple((str(f), _mtime(f)) for f in files if f is not None)
    c = _classifiers.get(key)
    if c is None:
        if len(_classifiers) > 8:
            _classifiers.clear()
        c = _classifiers[key] = Classifier(rules=tuple(rules))
    return c


def _mtime(f: Path) -> float:
    try:
        return f.stat().st_mtime
    except OSError:
        return 0.0


def classify(text, *, checkout: str | None = None, stage: str | None = None, outcome: str | None = None,
             rules: tuple | list = ()) -> Diagnosis:
    """Class, subclass, fingerprint and location of one failure's output.

    ``stage`` is the compiler stage that failed when the caller knows it
    (frontend/ttir/linalg/binary); ``outcome`` is the CompileResult outcome and
    decides the class of timeouts, crashes, loader and spec errors.  Text alone
    works too.  ``rules``: the user's rules files (``--rules FILE``), on top of
    the shipped patterns and ``<data dir>/rules.yaml``; a bad file raises
    ``UserError`` (one line), everything else never raises.
    """
    return default_classifier(rules).classify(text, checkout=checkout, stage=stage, outcome=outcome)


def clean(text, max_frames: int = 5) -> str:
    """The diagnostic as a report shows it: prefixes and noise gone, repeated
    blocks once, stack dumps cut to the frames below the signal handler."""
    return default_classifier().clean(text, max_frames=max_frames)

"""How to port: the hints a search stored, in words a porting team can act on.

Built only from stored results: each hint compile is a result under a spec
name marked ``HINT_MARK`` whose spec says what it changed against the spec it
was searched for (``compile/hints.py``).  A hint never changes the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritriage.model import HINT_MARK, PASSES, Kernel


@dataclass(frozen=True)
class HintView:
    kernel: str
    base_spec: str  # the failing spec the search started from
    found: bool
    spec: str | None  # the passing hint spec (repro --spec), or None
    change: dict = field(default_factory=dict)  # constexpr -> value, plus multibuffer when turned off
    ub_bits: int | None = None
    ub_available_bits: int | None = None
    tried: tuple[str, ...] = ()  # each configuration tried, in words, with its outcome
    text: str = ""  # the hint in one sentence
    config: str | None = None  # an Ascend triton.Config to paste, for autotuned kernels


def _words(change: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in change.items()) or "as written"


def _change(spec, base_constexprs: dict, base_signature: dict | None = None) -> dict:
    change = {k: v for k, v in spec.signature.items() if (base_signature or {}).get(k, v) != v}
    change.update({k: v for k, v in spec.constexprs.items() if base_constexprs.get(k) != v})
    if spec.options.get("multibuffer", True) is False:
        change["multibuffer"] = False
    return change


def hint_views(kernel: Kernel, verdicts: list, hint_results: list) -> tuple[HintView, ...]:
    """One view per spec a search ran for: the passing configuration that uses
    the most of the unified buffer, or what was tried."""
    bases = {r.spec_name: r for r in verdicts}
    groups: dict[str, list] = {}
    for h in hint_results:
        base = h.spec_name.split(HINT_MARK, 1)[0]
        if base in bases:
            groups.setdefault(base, []).append(h)
    out = []
    for base_name, hs in groups.items():
        base = bases[base_name]
        tried, passing = [], []
        for h in sorted(hs, key=lambda h: h.spec_name):
            change = _change(h.spec, dict(base.spec.constexprs), dict(base.spec.signature))
            binary = h.result.stage("binary")
            metrics = dict(binary.metrics) if binary is not None else {}
            if h.outcome in PASSES:
                ub = metrics.get("ub_bits")
                tried.append(f"{_words(change)}: passes"
                             + (f" (UB {ub:,} bits)" if ub else ""))
                passing.append((ub or 0, h, change, metrics))
            else:
                what = h.diagnosis.subclass if h.diagnosis is not None else h.outcome
                where = h.result.failed_stage or h.outcome
                tried.append(f"{_words(change)}: fails at {where} ({what})")
        if passing:
            ub, best, change, metrics = max(passing, key=lambda p: p[0])
            avail = metrics.get("ub_available_bits")
            use = f" (UB {ub:,} of {avail:,} bits)" if ub and avail else f" (UB {ub:,} bits)" if ub else ""
            # A tested workaround in the chain (compile/hints.py variant_configs)
            # says what the first gap is: the dtype, the precision option.
            whys = sorted({w for h in hs for w in [h.spec.origin.split(": ", 1)[-1]]
                           if h.spec.origin and ("fp8" in w or "precision" in w)})
            stage = "the binary stage" if best.result.stage("binary") is not None and \
                best.result.stage("binary").status == "passed" else "every stage that ran"
            text = (f"passes {stage} with {_words(change)}{use}"
                    + (f"; {', '.join(whys)}: that is the gap, not the kernel" if whys else "")
                    + f"; tried {len(hs)} configuration{'s' if len(hs) != 1 else ''}")
            config = _triton_config(kernel, best.spec) if kernel.autotune else None
            out.append(HintView(kernel.id, base_name, True, best.spec_name, change, ub or None, avail, tuple(tried),
                                text, config))
        else:
            text = (f"no configuration tried passes every stage that ran; tried {len(hs)}: " + "; ".join(tried))
            out.append(HintView(kernel.id, base_name, False, None, {}, None, None, tuple(tried), text))
    return tuple(out)


def _triton_config(kernel: Kernel, spec) -> str:
    """The passing configuration as an Ascend ``triton.Config`` for the
    kernel's autotune list: its constexprs, and multibuffer as the launch
    option triton-ascend reads from a config's kwargs."""
    # The keys the kernel's own autotune configs set, as the search changed them.
    tunables = {k: spec.constexprs[k] for k in kernel.autotune_keys if k in spec.constexprs}
    if spec.options.get("multibuffer", True) is False:
        tunables["multibuffer"] = False
    extra = "".join(f", {k}={spec.options[k]!r}" for k in ("num_warps", "num_stages") if k in spec.options)
    return f"triton.Config({tunables!r}{extra})"


__all__ = ["HintView", "hint_views"]

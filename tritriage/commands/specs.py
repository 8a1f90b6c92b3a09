"""``tritriage specs PATH``: each entry kernel's specs, where each came from, whether it holds."""

from __future__ import annotations

from pathlib import Path
from tritriage.model import Kernel
from tritriage.model import Spec
from tritriage.specs.catalog import check_catalog
from tritriage.specs.catalog import checkout_version
from tritriage.specs.catalog import params_fingerprint
from tritriage.specs.catalog import write_catalog
from typing import Any
from typing import Sequence
import json
import sys
from tritriage.specs.resolve import _CHECKED, Verdict, _catalog, specs_for, validate


def specs_command(path: str | Path, *, as_json: bool = False, write: str | Path | None = None,
                  reference: bool = False, kernel: str | None = None, catalog_dirs: Sequence[str] = (),
                  validate_specs: bool = True, python: str | None = None, jobs: int | None = None,
                  out=None) -> int:
    """``tritriage specs PATH``: specs per entry kernel, their source, staleness, validation."""
    from tritriage.discover.inventory import discover, resolve_kernel

    out = out or sys.stdout
    inventory = discover(path)
    root = Path(inventory.root)
    catalog = _catalog(catalog_dirs)
    notes = check_catalog(catalog, inventory, root)
    _CHECKED.add((id(catalog), inventory.root))
    if kernel:
        kernels = [resolve_kernel(inventory, kernel)]
    else:
        kernels = [k for k in inventory.kernels if k.kind == "entry"]
    per_kernel: list[tuple[Kernel, list[Spec]]] = []
    for k in kernels:
        per_kernel.append((k, specs_for(k, inventory, root, catalog=catalog, include_stale=True)))
    pairs = [(k, s) for k, specs in per_kernel for s in specs if not s.stale]
    verdicts: dict[tuple[str, str], Verdict] = {}
    if validate_specs and pairs:
        for (k, s), v in zip(pairs, validate(pairs, root, reference=reference, python=python, jobs=jobs)):
            verdicts[(k.id, s.name)] = v
    if write:
        inferred = [(k, [s for s in specs if s.source == "inferred"]) for k, specs in per_kernel]
        inferred = [(k, ss) for k, ss in inferred if ss]
        written = write_catalog(Path(write), inferred, checkout_version(root))
        print(f"wrote {len(written)} catalog file(s) for {len(inferred)} kernel(s) under {write}", file=sys.stderr)
    rows = []
    for k, specs in per_kernel:
        entry = catalog.get(k)
        row: dict[str, Any] = {"name": k.name, "id": k.id, "file": k.file, "line": k.line,
                               "params_fingerprint": params_fingerprint(k), "specs": []}
        if k.platform_only:
            # Listed for review, but an Ascend launch never passes these values.
            row["platform_only"], row["platform_reason"] = k.platform_only, k.platform_reason
        if entry is not None and entry.unsupported:
            row["unsupported"] = entry.unsupported
        if entry is not None and entry.tests:
            row["tests"] = list(entry.tests)
        for s in specs:
            d: dict[str, Any] = {"name": s.name, "source": s.source, "stale": bool(s.stale), "origin": s.origin,
                                 "signature": dict(s.signature), "constexprs": dict(s.constexprs),
                                 "options": dict(s.options)}
            if s.rules:
                d["rules"] = dict(s.rules)
            if s.stale:
                d["valid"] = False
                d["frontend"] = None
                d["reason"] = f"stale: {s.stale}"
            else:
                v = verdicts.get((k.id, s.name))
                if v is not None:
                    d["valid"] = bool(v.valid)
                    d["frontend"] = bool(v.frontend)
                    d["cross_checked"] = v.cross_checked
                    if v.reference is not None:
                        d["reference"] = v.reference
                    if v.reason:
                        d["reason"] = v.reason
                else:
                    d["valid"] = None
                    d["frontend"] = None
            row["specs"].append(d)
        rows.append(row)
    if as_json:
        out.write(json.dumps(rows, indent=2, default=str) + "\n")
    else:
        _print_table(rows, notes, reference, out)
    return 0


def _print_table(rows, notes, reference, out) -> None:
    n_ok = sum(1 for r in rows if any(s.get("valid") for s in r["specs"]))
    for r in rows:
        print(f"{r['file']}:{r['line']} {r['name']}  [params {r['params_fingerprint']}]", file=out)
        if r.get("platform_only"):
            print(f"    not used on Ascend ({r['platform_only']}-only: {r['platform_reason']})", file=out)
        if r.get("unsupported"):
            print(f"    unsupported: {r['unsupported']}", file=out)
        for s in r["specs"]:
            if s["stale"]:
                status = "STALE"
            elif s.get("valid") is None:
                status = "not checked"
            elif s.get("frontend"):
                status = "ok (frontend accepts)"
            elif s.get("valid"):
                status = "sound (Ascend gap, cross-checked)"
            else:
                status = "INVALID" + (" (cross-checked)" if s.get("cross_checked") else "")
            print(f"  - {s['name']} ({s['source']}): {status}", file=out)
            if s.get("reason"):
                print(f"      {s['reason']}", file=out)
    for n in notes:
        print(f"note: {n}", file=out)
    checked = "frontend + reference" if reference else "frontend only (--reference cross-checks rejections)"
    print(f"{n_ok}/{len(rows)} entry kernels have a sound spec; validation: {checked}", file=out)

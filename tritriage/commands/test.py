"""``tritriage test``: run the vLLM tests mapped to each kernel file, store and show the verdicts.

Results join the latest scan run of the same checkout, so that a report
shows compile and test verdicts side by side; a checkout never scanned gets a
run of its own.  Read them back with ``store.test_map(run)`` and
``store.test_results(run)``, and ``vtests.file_verdicts`` for one verdict per
kernel file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Sequence

from tritriage.vtests import run as vtests_run
from tritriage.vtests.mapping import MAX_IMPORT_TESTS, TestMap, file_verdicts, map_tests, select
from tritriage.errors import UserError

DEFAULT_TIMEOUT = 900.0


def _console(console=None):
    if console is not None:
        return console
    from rich.console import Console

    return Console()


def _python(python: str | None) -> str:
    from tritriage.compile.scan import resolve_python

    return resolve_python(python)


def build_map(root: str | Path, *, catalog_dirs: Sequence[str] = (), kernels: Sequence[str] = (),
              files: Sequence[str] = ()):
    """(inventory, test map) of a checkout, narrowed to ``kernels`` / ``files`` when given."""
    from tritriage.specs.catalog import PACKAGE_CATALOG, load_catalog
    from tritriage.discover.inventory import check_root, discover, find_kernels

    root = check_root(root)
    inventory = discover(root)
    catalog = load_catalog([PACKAGE_CATALOG, *catalog_dirs])
    test_map = map_tests(inventory, catalog)
    chosen_kernels = []
    for name in kernels:
        found = find_kernels(inventory, name)
        if not found:
            raise UserError(f"unknown kernel '{name}': no Triton jit function of that name or id in {root}")
        chosen_kernels.extend(found)
    known = sorted({k.file for k in inventory.kernels})
    chosen_files = []
    for f in files:
        if Path(f).is_absolute():
            try:
                f = str(Path(f).resolve().relative_to(root))
            except ValueError:
                raise UserError(f"--file {f}: not inside {root}") from None
        f = f.replace("\\", "/").removeprefix("./")
        hits = [k for k in known if k == f or k.endswith("/" + f)]
        if not hits:
            raise UserError(f"--file {f}: no kernel file of {root} matches (kernel files are paths like {known[0]})"
                            if known else f"--file {f}: {root} has no Triton kernels")
        chosen_files.extend(hits)
    return inventory, select(test_map, inventory, files=chosen_files, kernels=chosen_kernels)


def run_tests_command(path: str | Path, *, python: str | None = None, device: str = "npu",
                 timeout: float = DEFAULT_TIMEOUT, kernels: Sequence[str] = (), files: Sequence[str] = (),
                 catalog_dirs: Sequence[str] = (), json_out: bool = False, list_only: bool = False,
                 quiet: bool = False, store=None, console=None, argv: Sequence[str] | None = None,
                 fail_on: str | None = None) -> int:
    """Exit code: 0, or 1 when ``fail_on`` trips: ``failures`` (a mapped test
    failed) or ``not-run`` (also when tests could not run here)."""
    if fail_on not in (None, "failures", "not-run"):
        raise UserError(f"--fail-on must be 'failures' or 'not-run', not '{fail_on}'")
    if device not in vtests_run.DEVICES:
        raise UserError(f"--device must be one of {', '.join(vtests_run.DEVICES)}, not '{device}'")
    if timeout <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    inventory, test_map = build_map(path, catalog_dirs=catalog_dirs, kernels=kernels, files=files)
    root = inventory.root
    out = _console(console)
    if list_only:
        if json_out:
            print(json.dumps({"checkout": root, "mappings": [m.to_dict() for m in test_map.mappings],
                              "no_test": test_map.no_test, "more_imports": test_map.more_imports}, indent=2))
        else:
            _print_map(test_map, out)
        return 0

    python = _python(python)
    commands = test_map.commands()
    pre = vtests_run.check_preconditions(root, python, device) if commands else None
    if pre is not None and not pre.ok and not json_out:
        # Said once here; every row below is "not run" for this reason.
        out.print(f"[bold yellow]tests not run:[/] {pre.reason()}", highlight=False, soft_wrap=True)

    from tritriage.store import Store, _safe

    own = store is None
    store = store or Store.open()
    run_id, created = 0, False
    try:
        run = store.latest_run(root)
        created = run is None
        run_id = run.id if run else store.new_run(
            checkout=root, python=python, argv=list(argv if argv is not None else sys.argv),
            settings={"created_by": "tritriage test", "device": device})
        store.set_test_map(run_id, test_map.all_rows(), files=test_map.files())
        log_dir = store.root / "runs" / str(run_id) / "tests"
        for i, (command, maps) in enumerate(commands.items(), 1):
            kfiles = sorted({m.kernel_file for m in maps})
            missing = vtests_run.missing_paths(root, command)
            if pre is not None and not pre.ok:
                reason = pre.reason()
                if missing:
                    reason += f"; test file not in the checkout: {', '.join(missing)}"
                results = [vtests_run.not_run(command, kfiles, reason)]
            elif missing:
                results = [vtests_run.not_run(command, kfiles, f"test file not in the checkout: {', '.join(missing)}")]
            else:
                if not quiet and not json_out:
                    out.print(f"[dim][{i}/{len(commands)}][/] {command}", highlight=False)
                log_dir.mkdir(parents=True, exist_ok=True)
                log = log_dir / (_safe(re.sub(r"\s+", "_", command))[:120] + f".{i}.log")
                results = vtests_run.run_command(command, kfiles, root=root, python=python, device=device,
                                                 timeout=timeout, log_path=log).results
            store.add_test_results(run_id, command, results)
        if created:
            store.finish_run(run_id, "complete")
        verdicts = file_verdicts(store.test_map(run_id), store.test_results(run_id))
        verdicts = {f: v for f, v in verdicts.items() if f in set(test_map.files())}
    except KeyboardInterrupt:
        if created:
            store.finish_run(run_id, "interrupted")
        raise
    finally:
        if own:
            store.close()

    if json_out:
        print(json.dumps({
            "run_id": run_id, "checkout": root, "python": python, "device": device,
            "preconditions": pre.to_dict() if pre is not None else None,
            "files": [v.to_dict() for v in verdicts.values() if v.verdict != "no test"],
            "no_test": [f for f, v in verdicts.items() if v.verdict == "no test"],
        }, indent=2, default=str))
    else:
        print_verdicts(verdicts, out, run_id=run_id, global_reason=pre.reason() if pre is not None else "",
                       more=test_map.more_imports)
    tripped = {"failures": ("failed",), "not-run": ("failed", "not run")}.get(fail_on or "", ())
    return 1 if any(v.verdict in tripped for v in verdicts.values()) else 0


# --------------------------------------------------------------------------
# output


def _print_map(test_map: TestMap, out) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("kernel file", overflow="fold")
    table.add_column("test command", overflow="fold")
    table.add_column("source")
    table.add_column("via", overflow="fold")
    for m in sorted(test_map.mappings, key=lambda m: (m.kernel_file, m.source != "catalog", m.command or "")):
        table.add_row(m.kernel_file, m.command or "", m.source, m.via)
    out.print(table)
    for f, n in sorted(test_map.more_imports.items()):
        out.print(f"{f}: {n} more tests import it (left out: at most {MAX_IMPORT_TESTS} a file)", highlight=False)
    _print_no_test(test_map.no_test, out)


def _print_no_test(files, out) -> None:
    if files:
        out.print(f"[bold]no test[/] ({len(files)} kernel file{'s' if len(files) > 1 else ''}):", highlight=False)
        for f in files:
            out.print(f"  {f}", highlight=False)
    else:
        out.print("[bold]no test:[/] none (every kernel file has a mapped test)", highlight=False)


_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow", "not run": "dim", "no test": "dim"}


def print_verdicts(verdicts, out, *, run_id: int, global_reason: str = "", more: dict | None = None) -> None:
    from collections import Counter

    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"vLLM tests (run {run_id})", title_justify="left")
    table.add_column("kernel file / test command", overflow="fold", ratio=3)
    table.add_column("verdict", no_wrap=True)
    table.add_column("pass/fail/skip", justify="right", no_wrap=True, min_width=5)
    table.add_column("why", overflow="fold", ratio=2)
    tested = [v for v in verdicts.values() if v.verdict != "no test"]
    for v in tested:
        cmds = "".join(f"\n[dim]  {escape(m.command)} ({m.source}"
                       + (f", {escape(m.via)}" if m.via.startswith("called from") else "") + ")[/]"
                       for m in v.mappings)
        why = list(v.causes)
        # The reason every command shares was printed once above the table.
        for r in v.not_run:
            r = r.replace(global_reason, "").lstrip("; ") if global_reason else r
            if r:
                why.append(r)
        fails = sum(v.counts.get(o, 0) for o in ("failed", "error", "timeout"))
        counts = f"{v.counts.get('passed', 0)}/{fails}/{v.counts.get('skipped', 0)}"
        style = _STYLE.get(v.verdict, "")
        table.add_row(escape(v.file) + cmds, f"[{style}]{v.verdict}[/]", counts, escape("\n".join(why)))
    if tested:
        out.print(table)
    for f, n in sorted((more or {}).items()):
        out.print(f"{f}: {n} more tests import it (left out: at most {MAX_IMPORT_TESTS} a file)", highlight=False)
    _print_no_test([f for f, v in verdicts.items() if v.verdict == "no test"], out)
    tally = Counter(v.verdict for v in verdicts.values())
    parts = [f"{tally[k]} {k}" for k in ("passed", "failed", "skipped", "not run", "no test") if tally.get(k)]
    out.print(f"{len(verdicts)} kernel files: " + ", ".join(parts), highlight=False)

"""``tritriage hint --kernel NAME``: search a tile configuration that fits the unified buffer."""

from __future__ import annotations

from tritriage.commands.progress import factory
from tritriage.compile.scan import hint


def hint_command(*, kernel: str, run_id: int | None = None, budget: int = 8, python: str | None = None,
                 jobs: int | None = None, timeout: float | None = None, quiet: bool = False) -> int:
    """0 when the search ran (found or not: both are answers)."""
    from rich.console import Console

    from tritriage.report.view import build_view
    from tritriage.store import Store, writer_lock

    console = Console(stderr=True)
    say = (lambda line: None) if quiet else (lambda line: console.print(line, highlight=False))
    # Its compiles join a stored run: one writer at a time, as for scan.
    with writer_lock(what="hint"), Store.open() as store:
        rid, kid, summary = hint(kernel=kernel, run_id=run_id, budget=budget, python=python, jobs=jobs,
                                 timeout=timeout, store=store, progress_factory=factory(quiet, console), say=say)
        view = build_view(store, store.run(rid))
        kv = view.by_id().get(kid)
        if kv is None or not kv.hints:
            r = [x for x in store.results(rid) if x.kernel == kid]
            what = ", ".join(f"{x.spec_name}: {x.outcome}" + (f" [{x.diagnosis.cls}: {x.diagnosis.subclass}]"
                                                               if x.diagnosis else "") for x in r)
            print(f"{kid}: no failure with a workaround to test (a UB overflow, fp8 inputs, a dot precision): "
                  f"nothing to search ({what})")
            return 0
        for h in kv.hints:
            print(f"{kid} [{h.base_spec}]: {h.text}")
            if h.config:
                print(f"  as an Ascend config: {h.config}")
            if h.spec:
                print(f"  reproduce: {view.repro_cmd(kid, h.spec)}")
    return 0

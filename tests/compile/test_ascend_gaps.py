"""Frontend failures that are triton-ascend's, not the spec's: real compiles.

Each kernel of the fixture compiles on upstream Triton; triton-ascend 3.2.0
rejects it.  Its specs are inferred, the kind a frontend rejection makes
suspect, so the verdict must still say failed at the frontend, with a class
that names the gap and, where one is known, how to port.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tritriage.compile.scan import run_scan
from tritriage.store import Store

GAPS = Path(__file__).parents[1] / "fixtures" / "ascendgaps"


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    import os
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("TRITRIAGE_HOME")
    os.environ["TRITRIAGE_HOME"] = str(home)
    try:
        with Store.open() as store:
            summary = run_scan(GAPS, store=store, jobs=2, timeout=120, hints=0)
            yield {r.kernel.rsplit(".", 1)[-1]: r for r in store.results(summary.run_id)}
    finally:
        if old is None:
            os.environ.pop("TRITRIAGE_HOME", None)
        else:
            os.environ["TRITRIAGE_HOME"] = old


def _is_ascend_gap(r):
    assert r.spec.source == "inferred"
    assert r.outcome == "failed" and r.result.failed_stage == "frontend", (r.outcome, r.result.error[-400:])
    assert r.diagnosis.cls == "frontend"
    return r.diagnosis


def test_a_libdevice_call_that_returns_none_is_named_not_blamed_on_the_spec(verdicts):
    d = _is_ascend_gap(verdicts["exp_kernel"])
    assert "libdevice.exp" in d.subclass and "returns None" in d.subclass
    assert d.hint and "triton.language.extra.ascend.libdevice" in d.hint


def test_cdiv_of_constexprs_is_an_ascend_gap(verdicts):
    d = _is_ascend_gap(verdicts["reverse_chunks_kernel"])
    assert "tl.cdiv" in d.subclass


def test_tl_extra_cuda_in_a_dead_branch_has_its_own_class_and_a_porting_hint(verdicts):
    r = verdicts["pdl_kernel"]
    assert r.spec.constexprs["USE_PDL"] is False  # the branch is dead, and still it fails
    d = _is_ascend_gap(r)
    assert "tl.extra.cuda" in d.subclass and "dead" in d.subclass
    assert d.hint.startswith("how to port")


def test_the_report_shows_the_class_the_hint_and_what_the_emulated_host_answered(verdicts, capsys):
    import json

    from tritriage.cli import main

    try:
        main(["report", "--json"])
    except SystemExit as e:
        assert not e.code
    kernels = {k["name"]: k for k in json.loads(capsys.readouterr().out)["kernels"]}
    pdl = kernels["pdl_kernel"]
    assert pdl["error"]["hint"].startswith("how to port")
    (spec,) = pdl["specs"]
    assert "USE_PDL: current_platform.is_cuda() -> False" in spec["evaluated_as_ascend"]
    try:
        main(["report", "--md"])
    except SystemExit as e:
        assert not e.code
    md = capsys.readouterr().out
    line = next(ln for ln in md.splitlines() if "evaluated as Ascend" in ln)
    assert "current_platform.is_cuda() -> False" in line
    assert "how to port" in md

"""Bad input to every command: exit 2, one line on stderr that names what is
wrong, no traceback, and the store exactly as it was.

One case per option that takes a value (``tritriage/commands/validate.py``
checks them all, before any work).  The commands run in-process through
``cli.main`` as the ``tritriage`` script does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tritriage import cli
from tritriage.model import CompileResult
from tritriage.store import Store

FIXTURES = Path(__file__).parents[1] / "fixtures"
CHECKOUT = FIXTURES / "engine"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data directory holding one complete scan, and the files bad input points at."""
    h = tmp_path / "home"
    monkeypatch.setenv("TRITRIAGE_HOME", str(h))
    with Store.open() as store:
        run = store.new_run(checkout=str(CHECKOUT), arch="Ascend910B", stages_available=["frontend"])
        store.add_result(run, CompileResult(kernel="kernels.elementwise.relu_kernel", spec="default",
                                            outcome="passed-to-linalg"), None, "k1")
        store.finish_run(run, "complete")
    files = tmp_path / "in"
    files.mkdir()
    (files / "binary.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 20)
    (files / "latin1.txt").write_bytes("caf\xe9 error: x\n".encode("latin-1"))
    (files / "plain.txt").write_text("error: something\n")
    (files / "bad.j2").write_text("{% if %}\n")
    (files / "bad-rules.yaml").write_text("patterns: [\n  - id: x\n")
    (files / "empty-rules.yaml").write_text("patterns: []\n")
    cat_bad = files / "catalog-bad"
    cat_bad.mkdir()
    (cat_bad / "k.yaml").write_text("file: vllm/x.py\nkernels: [unclosed\n")
    cat_wrong = files / "catalog-wrong"
    cat_wrong.mkdir()
    (cat_wrong / "k.yaml").write_text("- just\n- a list\n")
    cat_bin = files / "catalog-bin"
    cat_bin.mkdir()
    (cat_bin / "k.yaml").write_bytes(b"\x00\x01binary")
    not_exec = files / "bishengir-compile"
    not_exec.write_text("#!/bin/sh\n")
    not_exec.chmod(0o644)
    return files


def snapshot(data_dir: Path) -> tuple:
    """What a user would compare: the store's content and the files beside it."""
    db = data_dir / "tritriage.db"
    conn = sqlite3.connect(str(db))
    try:
        dump = tuple(conn.iterdump())
    finally:
        conn.close()
    names = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                   if not p.name.endswith(("-wal", "-shm")))
    return dump, names


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


F = "{files}"
C = str(CHECKOUT)

# (command line, what the one line must say); "{files}" is the fixture's folder.
CASES = [
    # list
    (["list", "/nonexistent/vllm"], "no such directory"),
    (["list", f"{F}/plain.txt"], "not a directory"),
    (["list", C, "--kind", "kernel"], "--kind kernel: must be 'entry' or 'helper'"),
    # fetch
    (["fetch", "latest"], "'latest' is not a version"),
    (["fetch", "0.8.5", "--dest", f"{F}/plain.txt"], "--dest"),
    # scan
    (["scan", "/nonexistent/vllm"], "/nonexistent/vllm: no such directory"),
    (["scan", f"{F}/plain.txt"], "not a directory"),
    (["scan", C, "--timeout", "-5"], "--timeout -5: must be a positive number of seconds"),
    (["scan", C, "--timeout", "0"], "--timeout 0: must be a positive"),
    (["scan", C, "--timeout", "nan"], "--timeout nan: must be a positive"),
    (["scan", C, "--timeout", "soon"], "Invalid value for '--timeout'"),
    (["scan", C, "-j", "0"], "-j/--jobs 0: must be 1 or more"),
    (["scan", C, "-j", "two"], "Invalid value for '-j'"),
    (["scan", C, "--memory-mb", "0"], "--memory-mb 0: must be at least 64 MiB"),
    (["scan", C, "--catalog", "/nonexistent/catalog"], "--catalog /nonexistent/catalog: no such directory"),
    (["scan", C, "--catalog", f"{F}/catalog-bad"], "not valid YAML"),
    (["scan", C, "--catalog", f"{F}/catalog-wrong"], "top level must be a mapping"),
    (["scan", C, "--catalog", f"{F}/catalog-bin"], "a binary file, not a catalog YAML file"),
    (["scan", C, "--python", "/nonexistent/python3"], "--python /nonexistent/python3: no such file"),
    (["scan", C, "--python", "no-such-python-here"], "not found on PATH"),
    (["scan", C, "--bishengir", "/nonexistent/bishengir-compile"], "--bishengir /nonexistent/bishengir-compile"),
    (["scan", C, "--bishengir", f"{F}/bishengir-compile"], "not an executable file"),
    (["scan", C, "--kernel", " "], "--kernel: empty"),
    (["scan", C, "--arch", ""], "--arch: empty"),
    (["scan", C, "--hints", "-1"], "--hints"),
    (["scan", C, "--shard", "3/2"], "--shard 3/2: K must be between 1 and N"),
    (["scan", C, "--shard", "0/4"], "--shard 0/4: K must be between 1 and N"),
    (["scan", C, "--shard", "half"], "--shard half: expected K/N"),
    (["scan", C, "--hang-budget", "-1"], "--hang-budget"),
    (["scan", C, "--plugin", "/nonexistent/vllm-ascend"], "--plugin /nonexistent/vllm-ascend: no such directory"),
    (["scan", C, "--with", "/nonexistent/vllm"], "--with /nonexistent/vllm: no such directory"),
    (["scan", C, "--shard", "1/2", "--shard-times", "/nonexistent/r.json"],
     "--shard-times /nonexistent/r.json: no such file"),
    (["fetch", "liger-kernel==x.y"], "is not PROJECT==VERSION"),
    (["merge", "/nonexistent/shard.json"], "no such file"),
    (["scan", C, "--nonsense"], "No such option: --nonsense"),
    # rerun
    (["rerun", "--failed", "--timeout", "-1"], "--timeout -1: must be a positive"),
    (["rerun", "--failed", "-j", "0"], "-j/--jobs 0"),
    (["rerun", "--failed", "--memory-mb", "-5"], "--memory-mb -5"),
    (["rerun", "--failed", "--run", "0"], "--run 0: run ids start at 1"),
    (["rerun", "--failed", "--python", "/nonexistent/python3"], "--python /nonexistent/python3"),
    (["rerun", "--failed", "--bishengir", f"{F}/bishengir-compile"], "not an executable file"),
    (["rerun", "--kernel", ""], "--kernel: empty"),
    (["rerun", "--file", " "], "--file: empty"),
    (["rerun", "--class", " "], "--class: empty"),
    (["rerun"], "rerun needs --kernel, --file, --failed or --class"),
    # doctor
    (["doctor", "--python", "/nonexistent/python3"], "--python /nonexistent/python3"),
    (["doctor", "--bishengir", "/nonexistent/bishengir-compile"], "--bishengir"),
    (["doctor", "--arch", " "], "--arch: empty"),
    # specs
    (["specs", "/nonexistent/vllm"], "no such directory"),
    (["specs", C, "--write", f"{F}/plain.txt"], "--write"),
    (["specs", C, "-j", "-3"], "-j/--jobs -3"),
    (["specs", C, "--catalog", f"{F}/catalog-bad"], "not valid YAML"),
    (["specs", C, "--python", "/nonexistent/python3"], "--python"),
    (["specs", C, "--kernel", ""], "--kernel: empty"),
    # reference
    (["reference", "setup", "--version", "newest"], "'newest' is not a version"),
    # test
    (["test", "/nonexistent/vllm"], "no such directory"),
    (["test", C, "--timeout", "0"], "--timeout 0"),
    (["test", C, "--device", "gpu"], "--device gpu: must be 'npu' or 'cuda' or 'cpu'"),
    (["test", C, "--fail-on", "any-failure"], "--fail-on any-failure: must be 'failures' or 'not-run'"),
    (["test", C, "--catalog", "/nonexistent/catalog"], "--catalog"),
    (["test", C, "--python", "/nonexistent/python3"], "--python"),
    (["test", C, "--kernel", ""], "--kernel: empty"),
    (["test", C, "--file", ""], "--file: empty"),
    # classify
    (["classify", "/nonexistent/compile.log"], "/nonexistent/compile.log: no such log file"),
    (["classify", f"{F}/binary.bin"], "binary.bin: a binary file, not a text log"),
    (["classify", F], "is a directory, not a log file"),
    (["classify", f"{F}/plain.txt", "--checkout", "/nonexistent/vllm"], "--checkout /nonexistent/vllm"),
    (["classify", f"{F}/plain.txt", "--rules", "/nonexistent/rules.yaml"], "--rules /nonexistent/rules.yaml"),
    (["classify", f"{F}/plain.txt", "--rules", f"{F}/bad-rules.yaml"], "not valid YAML"),
    (["classify", f"{F}/plain.txt", "--rules", f"{F}/empty-rules.yaml"], "must be a non-empty list"),
    (["classify", f"{F}/plain.txt", "--rules", f"{F}/binary.bin"], "a binary file, not a rules YAML file"),
    # report
    (["report", "--run", "0"], "--run 0"),
    (["report", "--run", "99"], "no run #99"),
    (["report", "--against", "-2"], "--against -2"),
    (["report", "--fail-on", "failures"], "--fail-on failures: must be 'new-failures' or 'any-failure'"),
    (["report", "--md", "--template", "/nonexistent/t.j2"], "--template /nonexistent/t.j2: no such file"),
    (["report", "--md", "--template", f"{F}/bad.j2"], "not a valid jinja2 template"),
    (["report", "--md", "--template", f"{F}/binary.bin"], "a binary file, not a jinja2 template"),
    (["report", "--md", "--template", f"{F}/latin1.txt"], "not UTF-8 text"),
    (["report", "--md", "--max-detail-lines", "-1"], "--max-detail-lines -1: must be 0 or more"),
    (["report", "--md", "--max-bytes", "0"], "--max-bytes 0: must be at least 4096"),
    (["report", "-o", "/nonexistent/dir/report.md"], "directory /nonexistent/dir does not exist"),
    (["report", "-o", F], "is a directory"),
    (["report", "--md", "--json"], "choose one format"),
    # trace
    (["trace", "--checkout", "/nonexistent/vllm", "--", "true"], "--checkout /nonexistent/vllm"),
    (["trace", "--write", f"{F}/plain.txt", "--", "true"], "--write"),
    (["trace", "--records", f"{F}/plain.txt", "--", "true"], "--records"),
    # hint
    (["hint", "--kernel", ""], "--kernel: empty"),
    (["hint", "-k", "relu_kernel", "--budget", "0"], "--budget"),
    (["hint", "-k", "relu_kernel", "--run", "0"], "--run 0"),
    (["hint", "-k", "relu_kernel", "--python", "/nonexistent/python3"], "--python /nonexistent/python3"),
    (["hint", "-k", "relu_kernel", "--jobs", "0"], "--jobs"),
    (["hint", "-k", "relu_kernel", "--timeout", "-1"], "--timeout -1"),
    # repro
    (["repro", "--kernel", "relu_kernel", "--run", "0"], "--run 0"),
    (["repro", "--kernel", ""], "--kernel: empty"),
    (["repro", "--kernel", "relu_kernel", "--spec", " "], "--spec: empty"),
    (["repro", "--kernel", "relu_kernel", "-o", "/nonexistent/dir/r.py"], "does not exist"),
]


@pytest.mark.parametrize("argv,needle", CASES, ids=[" ".join(a).replace("{files}/", "")[:70] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(home, capsys, argv, needle):
    data_dir = Path(cli.os.environ["TRITRIAGE_HOME"])
    before = snapshot(data_dir)
    argv = [a.replace(F, str(home)) for a in argv]
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tritriage: error: "), err
    assert needle.replace(F, str(home)) in lines[0], err
    assert snapshot(data_dir) == before, "bad input changed the data directory"


def test_a_bad_scan_path_is_said_before_the_compiler_is_probed(home, capsys, monkeypatch):
    import tritriage.commands.scan as scan_cmd
    import tritriage.compile.environment as environment

    def no_probe(*a, **kw):
        raise AssertionError("the environment was probed before the path was checked")

    monkeypatch.setattr(environment, "check_environment", no_probe)
    monkeypatch.setattr(scan_cmd, "check_environment", no_probe)
    for argv in (["scan", "/nonexistent/vllm"], ["scan", C, "--timeout", "-5"], ["scan", C, "--catalog", "/no"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "AssertionError" not in err, err


def test_every_option_that_takes_a_value_has_a_bad_case():
    """A new option without a case here fails this test: the battery stays whole."""
    from typer.main import get_command

    given: dict = {}
    for argv, _ in CASES:
        key = tuple(argv[:2]) if argv[0] == "reference" else (argv[0],)
        given.setdefault(key, set()).update(x for x in argv if x.startswith("-"))
    missing = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None) or {}
        for name, sub in subs.items():
            walk(sub, path + (name,))
        if subs or not path:
            return
        key = path if path[0] == "reference" else path[:1]
        for p in cmd.params:
            if getattr(p, "is_flag", False) or p.param_type_name == "argument" or p.name == "help":
                continue
            if not set(p.opts) & given.get(key, set()):
                missing.append(f"{' '.join(path)} {p.opts[-1]}")

    walk(get_command(cli.app), ())
    assert missing == [], f"options that take a value but have no bad-input case: {missing}"

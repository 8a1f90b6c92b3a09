"""The ``tritriage`` command: typer only, one call into ``tritriage/commands/`` per verb.

Each command only parses options, checks them all first (``commands/validate.py``,
before any probe, discovery or store write) and calls one function of a stage; bad input
(a ``UserError`` from any stage) becomes a one-line message and exit code 2.
Exit codes: 0 ok, 1 the check asked for failed (``--fail-on``, doctor), 2 bad
input or an environment that cannot run, 130 interrupted.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tritriage.commands.validate import check
from tritriage.commands.validate import shard as validate_shard
from tritriage.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Which of vLLM's Triton kernels work on Ascend NPUs (triton-ascend), which fail, where and why.",
)
reference_app = typer.Typer(no_args_is_help=True, help="The upstream-Triton reference used to cross-check specs.")
app.add_typer(reference_app, name="reference")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _use_reference(flag: bool | None) -> bool:
    # The reference is what tells a bad spec from an Ascend gap: unless told
    # otherwise, use it whenever `tritriage reference setup` installed it.
    if flag is not None:
        return flag
    from tritriage.compile.reference import python as reference_python

    return reference_python().exists()


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


# --------------------------------------------------------------------------
# discovery


@app.command("list")
def list_cmd(
    path: Path = typer.Argument(..., help="root of a vLLM checkout (or any tree of Python files)"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON array, one object per jit function"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="show parameters too"),
    kind: Optional[str] = typer.Option(None, help="only 'entry' or 'helper' kernels"),
):
    """List every Triton jit function in PATH (static analysis; nothing is imported)."""
    check("list", path=path, kind=kind)
    from tritriage.discover.inventory import discover
    from tritriage.report.inventory import inventory_json, print_inventory

    inv = discover(path)
    if kind:
        inv = type(inv)(**{**inv.__dict__, "kernels": tuple(k for k in inv.kernels if k.kind == kind)})
    if json_out:
        print(inventory_json(inv))
    else:
        print_inventory(inv, _console(), verbose=verbose)


@app.command()
def fetch(
    versions: List[str] = typer.Argument(..., metavar="VERSION...",
                                         help="a vLLM release (0.8.5), or PROJECT==VERSION of any project on PyPI "
                                              "(vllm-ascend==0.23.0, liger-kernel==0.8.5)"),
    dest: Optional[Path] = typer.Option(None, help="where to unpack one (default: the data directory)"),
):
    """Download Python sources from PyPI (no install) and print their path, one line each."""
    for v in versions:
        check("fetch", version=v)
    check("fetch", dest=dest)
    if dest and len(versions) > 1:
        raise UserError("--dest takes one VERSION; without it each goes to the data directory")
    from tritriage.discover.fetch import fetch as fetch_sources

    for v in versions:
        print(fetch_sources(v, dest))


# --------------------------------------------------------------------------
# compiling


@app.command()
def scan(
    path: Path = typer.Argument(..., help="root of a vLLM checkout"),
    collect_only: bool = typer.Option(False, "--collect-only", help="find kernels, compile nothing"),
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend (default: this one)"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", help="parallel compiles (default: cores)"),
    arch: str = typer.Option("Ascend910B", help="Ascend SoC to compile for"),
    timeout: float = typer.Option(120.0, help="seconds per compile before it counts as a hang"),
    memory_mb: int = typer.Option(8192, "--memory-mb", help="memory limit per compile (MiB)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompile even unchanged kernels"),
    kernel: Optional[List[str]] = typer.Option(None, "--kernel", "-k", help="only this kernel (id or bare name)"),
    catalog: Optional[List[Path]] = typer.Option(None, "--catalog", help="extra spec catalog directory"),
    reference: Optional[bool] = typer.Option(
        None, "--reference/--no-reference",
        help="cross-check frontend failures on upstream Triton (default: when `tritriage reference setup` was run)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress, one summary line (for CI)"),
    new: bool = typer.Option(False, "--new", help="start a new run even if the last one was interrupted"),
    plugin: Optional[Path] = typer.Option(None, "--plugin", help="the platform plugin's checkout (vllm-ascend): "
                                                                 "which of PATH's kernels it replaces on Ascend"),
    with_: Optional[List[Path]] = typer.Option(
        None, "--with", metavar="PATH",
        help="another source tree PATH's kernels import jit helpers from (vLLM's, for a plugin; default: the "
             "matching vLLM fetched into the data directory, else an installed one)"),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N",
                                        help="compile only the K-th of N shares of the kernel/spec pairs (a CI "
                                             "matrix; `tritriage merge` joins the shards' report --json)"),
    all_platforms: bool = typer.Option(False, "--all-platforms",
                                       help="compile kernels an Ascend host never uses (CUDA-, ROCm-, XPU-only) "
                                            "too"),
    shard_times: Optional[Path] = typer.Option(
        None, "--shard-times", metavar="FILE",
        help="balance --shard by the compile times in FILE, an earlier scan's `report --json` (the same file on "
             "every machine); default: split by a hash of the names"),
    hang_budget: float = typer.Option(0.0, "--hang-budget", min=0,
                                      help="seconds the scan may add at its end to wait out suspected hangs with "
                                           "the full --timeout (0: none; `rerun --kernel` waits one out)"),
    hints: int = typer.Option(8, "--hints", min=0, help="after the verdicts, compile up to N smaller tile "
                                                        "configurations of each kernel that overflows the unified "
                                                        "buffer, to find one that fits (0: none)"),
    bishengir: Optional[str] = typer.Option(
        None, "--bishengir", help="bishengir-compile to run the binary stage with (default: CANN's, else the "
                                  "ascendnpu-ir wheel's; 'none': leave the binary stage out)"),
):
    """Compile every entry kernel of PATH on triton-ascend, stage by stage, and store the verdicts."""
    check("scan", path=path, python=python, jobs=jobs, arch=arch, timeout=timeout, memory_mb=memory_mb,
          kernel=kernel, catalog=catalog, bishengir=bishengir, hints=hints, shard=shard, hang_budget=hang_budget,
          plugin=plugin, with_=with_, shard_times=shard_times)
    if collect_only:
        from tritriage.discover.inventory import discover
        from tritriage.report.inventory import print_inventory, summary_line

        inv = discover(path)
        if quiet:
            print(summary_line(inv))
        else:
            print_inventory(inv, _console())
        return
    from tritriage.commands.scan import scan_command

    kwargs = dict(
        python=python, jobs=jobs, arch=arch, timeout=timeout, memory_mb=memory_mb, no_cache=no_cache,
        kernels=kernel or None, quiet=quiet, resume=False if new else None,
        catalog_dirs=[str(c) for c in (catalog or [])], bishengir=bishengir, hints=hints,
        hang_budget=hang_budget, all_platforms=all_platforms, shard=validate_shard("--shard", shard),
        shard_times=str(shard_times) if shard_times else None,
        plugin=str(plugin) if plugin else None,
        with_=[str(w) for w in (with_ or [])],
    )
    if _use_reference(reference):
        kwargs["reference"] = True
    _exit(scan_command(str(path), **kwargs))


@app.command()
def rerun(
    kernel: Optional[List[str]] = typer.Option(None, "--kernel", "-k", help="kernel id or bare name (repeat "
                                                                             "for several)"),
    file: Optional[str] = typer.Option(None, "--file", help="every kernel of this source file"),
    failed: bool = typer.Option(False, "--failed", help="every kernel that did not pass"),
    cls: Optional[str] = typer.Option(None, "--class", help="every kernel whose error has this class"),
    run: Optional[int] = typer.Option(None, "--run", help="run id (default: the latest scan)"),
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs"),
    timeout: Optional[float] = typer.Option(None, help="seconds per compile"),
    memory_mb: Optional[int] = typer.Option(None, "--memory-mb"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
    bishengir: Optional[str] = typer.Option(
        None, "--bishengir", help="bishengir-compile to run the binary stage with (default: CANN's, else the "
                                  "ascendnpu-ir wheel's; 'none': leave the binary stage out)"),
):
    """Recompile some kernels of a stored scan and print before -> after."""
    check("rerun", kernel=kernel, file=file, cls=cls, run=run, python=python, jobs=jobs, timeout=timeout,
          memory_mb=memory_mb, bishengir=bishengir)
    from tritriage.commands.rerun import rerun_command

    if not any([kernel, file, failed, cls]):
        raise UserError("rerun needs --kernel, --file, --failed or --class")
    _exit(rerun_command(kernel=kernel, file=file, failed=failed, cls=cls, run_id=run, python=python,
                        jobs=jobs, timeout=timeout, memory_mb=memory_mb, quiet=quiet, bishengir=bishengir))


@app.command()
def doctor(
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend (default: this one)"),
    arch: str = typer.Option("Ascend910B", help="Ascend SoC to compile for"),
    json_out: bool = typer.Option(False, "--json"),
    bishengir: Optional[str] = typer.Option(
        None, "--bishengir", help="bishengir-compile to run the binary stage with (default: CANN's, else the "
                                  "ascendnpu-ir wheel's; 'none': leave the binary stage out)"),
):
    """What this machine can compile: triton-ascend, the adapter, CANN, torch_npu, and the stages a scan runs."""
    check("doctor", python=python, arch=arch, bishengir=bishengir)
    from tritriage.commands.doctor import doctor_command

    _exit(doctor_command(python=python, arch=arch, json_out=json_out, bishengir=bishengir))


# --------------------------------------------------------------------------
# specs


@app.command()
def specs(
    path: Path = typer.Argument(..., help="root of a vLLM checkout"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON array, one object per entry kernel"),
    write: Optional[Path] = typer.Option(None, "--write", help="save inferred specs as catalog YAML under this directory"),
    reference: Optional[bool] = typer.Option(
        None, "--reference/--no-reference",
        help="cross-check frontend rejections on upstream Triton (default: when `tritriage reference setup` was run)"),
    kernel: Optional[str] = typer.Option(None, "--kernel", "-k", help="only this kernel (id or bare name)"),
    catalog: Optional[List[Path]] = typer.Option(None, "--catalog", help="extra spec catalog directory"),
    no_validate: bool = typer.Option(False, "--no-validate", help="list specs without compiling them"),
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend (default: this one)"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", help="parallel frontend checks (default: cores)"),
):
    """Specs per entry kernel: where each came from (catalog, traced, inferred), staleness, validation."""
    check("specs", path=path, write=write, kernel=kernel, catalog=catalog, python=python, jobs=jobs)
    from tritriage.commands.specs import specs_command

    _exit(specs_command(path, as_json=json_out, write=write, reference=_use_reference(reference), kernel=kernel,
                        catalog_dirs=[str(c) for c in (catalog or [])], validate_specs=not no_validate,
                        python=python, jobs=jobs))


@reference_app.command("setup")
def reference_setup(
    version: str = typer.Option("3.6.0", help="upstream triton version to install"),
):
    """Install upstream Triton into <data dir>/reference-venv and check it compiles for sm_90 here."""
    check("reference", version=version)
    from tritriage.commands.reference import reference_command

    _exit(reference_command("setup", version))


@reference_app.command("status")
def reference_status():
    """Say whether the reference compiler is set up, and its version."""
    from tritriage.commands.reference import reference_command

    _exit(reference_command("status"))


# --------------------------------------------------------------------------
# vLLM's own tests


@app.command("test")
def test_cmd(
    path: Path = typer.Argument(..., help="root of a vLLM checkout (a git checkout: wheels ship no tests/)"),
    kernel: Optional[List[str]] = typer.Option(None, "--kernel", "-k", help="only tests of this kernel (id or bare name)"),
    file: Optional[List[str]] = typer.Option(None, "--file", help="only tests of this kernel source file"),
    python: Optional[str] = typer.Option(None, help="interpreter that has vLLM (and torch_npu) installed "
                                                    "(default: this one)"),
    device: str = typer.Option("npu", help="where the tests run: npu, cuda or cpu"),
    timeout: float = typer.Option(900.0, help="seconds per test command before it is killed"),
    catalog: Optional[List[Path]] = typer.Option(None, "--catalog", help="extra catalog directory (tests: commands)"),
    list_only: bool = typer.Option(False, "--list", help="show which tests map to which kernel file; run nothing"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of the table"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress lines"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on",
                                          help="exit 1 on 'failures' (a test failed) or 'not-run' (also when tests "
                                               "could not run)"),
):
    """Run the vLLM tests that exercise each kernel file and classify every failing case.

    Tests come from the catalog's `tests:` commands and from the imports of
    PATH/tests/**/test_*.py.  Verdicts join the latest scan of PATH in the
    store.  When vLLM or the device is missing, nothing runs: every test is
    recorded as not run, with the reason.
    """
    check("test", path=path, kernel=kernel, file=file, python=python, device=device, timeout=timeout,
          catalog=catalog, fail_on=fail_on)
    from tritriage.commands.test import run_tests_command

    _exit(run_tests_command(path, python=python, device=device, timeout=timeout, kernels=kernel or (),
                            files=file or (), catalog_dirs=[str(c) for c in (catalog or [])], json_out=json_out,
                            list_only=list_only, quiet=quiet, fail_on=fail_on))


# --------------------------------------------------------------------------
# classify


@app.command()
def classify(
    logs: List[Path] = typer.Argument(..., help="saved compiler or test logs, one failure per file"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON array"),
    checkout: Optional[Path] = typer.Option(None, help="checkout root to strip from locations"),
    rules: Optional[List[Path]] = typer.Option(None, "--rules", help="YAML patterns that extend or override the "
                                                                      "shipped ones (same format as patterns.yaml)"),
):
    """Classify saved logs: class, subclass, fingerprint and source location of each."""
    check("classify", logs=logs, checkout=checkout, rules=rules)
    from tritriage.commands.classify import classify_command

    _exit(classify_command(logs, json_out=json_out, checkout=checkout, rules=rules))


# --------------------------------------------------------------------------
# report


@app.command()
def report(
    md: bool = typer.Option(False, "--md", help="markdown checklist (the porting team's report)"),
    json_out: bool = typer.Option(False, "--json", help="the full run as JSON (schema_version 1)"),
    junit: bool = typer.Option(False, "--junit", help="JUnit XML: one testcase per kernel and spec"),
    sarif: bool = typer.Option(False, "--sarif", help="SARIF 2.1.0 for code-scanning views"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write to FILE instead of stdout"),
    run: Optional[int] = typer.Option(None, "--run", help="run id (default: the latest scan)"),
    diff: bool = typer.Option(False, "--diff", help="show what changed against the previous scan of the same "
                                                    "checkout (or the run named by --against)"),
    against: Optional[int] = typer.Option(None, "--against", metavar="RUN",
                                          help="run to diff against (implies --diff)"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", metavar="new-failures|any-failure",
                                          help="exit 1 when a kernel newly fails (against the previous scan "
                                               "or --against RUN) or when any kernel fails"),
    template: Optional[Path] = typer.Option(None, "--template", help="jinja2 template replacing the markdown one"),
    max_detail_lines: int = typer.Option(40, "--max-detail-lines", help="lines kept per diagnostic in --md"),
    max_bytes: int = typer.Option(900 * 1024, "--max-bytes", help="size budget of --md (GitHub job summaries "
                                                                  "take 1 MiB)"),
):
    """Render a stored scan: terminal table, --md, --json, --junit or --sarif; --diff for changes.

    Works from any directory on the latest scan (--run ID for another).
    `report --diff` compares with the previous scan of the same checkout,
    `report --diff --against 12` with run 12.
    """
    check("report", output=output, run=run, against=against, fail_on=fail_on, template=template,
          max_detail_lines=max_detail_lines, max_bytes=max_bytes)
    from tritriage.commands.report import report_command

    chosen = [name for name, on in (("md", md), ("json", json_out), ("junit", junit), ("sarif", sarif)) if on]
    if len(chosen) > 1:
        raise UserError(f"choose one format, not --{' and --'.join(chosen)}")
    _exit(report_command(fmt=chosen[0] if chosen else "terminal", output=output, run_id=run, diff=diff,
                         against=against, fail_on=fail_on, template=template, max_detail_lines=max_detail_lines,
                         max_bytes=max_bytes))


# --------------------------------------------------------------------------
# trace and repro


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def trace(
    command: List[str] = typer.Argument(..., help="the command to run, after --: tritriage trace -- pytest ..."),
    checkout: Optional[Path] = typer.Option(None, "--checkout", help="checkout the kernels belong to "
                                                                     "(default: the current directory)"),
    write: Optional[Path] = typer.Option(None, "--write", help="also write the specs as catalog YAML here, "
                                                               "for review"),
    no_save: bool = typer.Option(False, "--no-save", help="do not add the specs to tritriage's traced specs"),
    bench_configs: bool = typer.Option(False, "--bench-configs", help="keep the launches autotune makes while "
                                                                      "benchmarking configs"),
    no_interpreter_fixes: bool = typer.Option(False, "--no-interpreter-fixes",
                                              help="leave triton-ascend's interpreter as it is "
                                                   "(TRITON_INTERPRET=1 with autotune then fails on CPU)"),
    keep_records: Optional[Path] = typer.Option(None, "--records", help="keep the raw launch records here"),
):
    """Run COMMAND and record the spec of every Triton launch it makes (exit code: the command's)."""
    check("trace", checkout=checkout, write=write, records=keep_records)
    from tritriage.commands.trace import trace_command

    result = trace_command(command, checkout=checkout, write=write, save_specs=not no_save,
                           bench_configs=bench_configs, interpreter_fixes=not no_interpreter_fixes,
                           keep_records=keep_records)
    _exit(result.exit_code)


@app.command()
def merge(
    files: List[Path] = typer.Argument(..., help="the `tritriage report --json` output of each shard"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Join the report --json outputs of a sharded scan (--shard K/N) into one run of the store."""
    from tritriage.commands.merge import merge_command

    _exit(merge_command(list(files), quiet=quiet))


@app.command()
def hint(
    kernel: str = typer.Option(..., "--kernel", "-k", help="kernel id or bare name"),
    budget: int = typer.Option(8, "--budget", min=1, help="most compiles to try"),
    run: Optional[int] = typer.Option(None, "--run", help="run id (default: the latest scan)"),
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend (default: the scan's)"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", min=1),
    timeout: Optional[float] = typer.Option(None, help="seconds per compile (default: the scan's)"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Search a tile configuration of KERNEL that fits the unified buffer (a hint; the verdict stays)."""
    check("hint", kernel=kernel, budget=budget, run=run, python=python, jobs=jobs, timeout=timeout)
    from tritriage.commands.hint import hint_command

    _exit(hint_command(kernel=kernel, run_id=run, budget=budget, python=python, jobs=jobs, timeout=timeout,
                       quiet=quiet))


@app.command()
def repro(
    kernel: str = typer.Option(..., "--kernel", "-k", help="kernel id or bare name"),
    spec: Optional[str] = typer.Option(None, "--spec", help="spec name (default: the first failing one)"),
    run: Optional[int] = typer.Option(None, "--run", help="run id (default: the latest scan)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="script path ('-' prints it)"),
    compile_only: bool = typer.Option(False, "--compile-only", help="a script that compiles only: no device needed"),
    ir: bool = typer.Option(False, "--ir", help="a shell script that replays only the failing stage's tool on "
                                                "its saved input"),
):
    """Write a standalone script that reproduces KERNEL's verdict from a stored scan."""
    check("repro", kernel=kernel, spec=spec, run=run, output=output)
    from tritriage.commands.repro import repro_command

    repro_command(kernel=kernel, spec=spec, run_id=run, output=output, compile_only=compile_only, ir=ir)


# --------------------------------------------------------------------------


def _store_failure(e: BaseException) -> str | None:
    from tritriage.errors import environment_message
    from tritriage.paths import data_dir
    from tritriage.store import damaged_message

    return damaged_message(e) or environment_message(e, str(data_dir()))


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode click returns a command's typer.Exit code
        # instead of raising it: keep it, or `--fail-on` and doctor exit 0.
        code = app(args=argv, standalone_mode=False)
    except UserError as e:
        print(f"tritriage: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    except (OSError, sqlite3.Error) as e:
        # The data directory's disk, not tritriage: full, read-only, damaged.
        message = _store_failure(e)
        if message is None:
            if os.environ.get("TRITRIAGE_DEBUG"):
                raise
            print(f"tritriage: internal error: {type(e).__name__}: {e} (set TRITRIAGE_DEBUG=1 for the traceback)",
                  file=sys.stderr)
            sys.exit(70)
        print(f"tritriage: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tritriage: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:
        # Usage errors come from click, which typer may vendor (typer._click):
        # recognise them by shape rather than by importing a module.
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            ctx = getattr(e, "ctx", None)
            message = " ".join(str(e.format_message() if hasattr(e, "format_message") else e).split())
            if not message or ctx is None or type(e).__name__ == "NoArgsIsHelpError":
                e.show()  # the bare command: its help is the answer
            else:
                # One line, like every other bad input, and where to look.
                print(f"tritriage: error: {message} (see `{ctx.command_path} --help`)", file=sys.stderr)
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            print("tritriage: aborted", file=sys.stderr)
            sys.exit(130)
        if os.environ.get("TRITRIAGE_DEBUG"):
            raise
        # A bug of tritriage's own: one line, the traceback on request.
        print(f"tritriage: internal error: {type(e).__name__}: {e} (set TRITRIAGE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

"""The ``tritriage`` command: wires collect, classify and report together.

Each command only parses options and calls one function of a stage; bad input
(a ``UserError`` from any stage) becomes a one-line message and exit code 2.
Exit codes: 0 ok, 1 the check asked for failed (``--fail-on``, doctor), 2 bad
input or an environment that cannot run, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

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
    from tritriage.collect.discover import discover
    from tritriage.report.inventory import inventory_json, print_inventory

    inv = discover(path)
    if kind:
        if kind not in ("entry", "helper"):
            raise UserError(f"--kind must be 'entry' or 'helper', not '{kind}'")
        inv = type(inv)(**{**inv.__dict__, "kernels": tuple(k for k in inv.kernels if k.kind == kind)})
    if json_out:
        print(inventory_json(inv))
    else:
        print_inventory(inv, _console(), verbose=verbose)


@app.command()
def fetch(
    version: str = typer.Argument(..., help="vLLM release, e.g. 0.8.5"),
    dest: Optional[Path] = typer.Option(None, help="where to unpack (default: the data directory)"),
):
    """Download vLLM VERSION's Python sources from PyPI (no install) and print their path."""
    from tritriage.collect.sources import fetch_vllm

    print(fetch_vllm(version, dest))


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
    reference: bool = typer.Option(False, "--reference", help="cross-check spec failures on upstream Triton"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress, one summary line (for CI)"),
    new: bool = typer.Option(False, "--new", help="start a new run even if the last one was interrupted"),
):
    """Compile every entry kernel of PATH on triton-ascend, stage by stage, and store the verdicts."""
    if collect_only:
        from tritriage.collect.discover import discover
        from tritriage.report.inventory import print_inventory, summary_line

        inv = discover(path)
        if quiet:
            print(summary_line(inv))
        else:
            print_inventory(inv, _console())
        return
    from tritriage.collect.scan import scan_command

    kwargs = dict(
        python=python, jobs=jobs, arch=arch, timeout=timeout, memory_mb=memory_mb, no_cache=no_cache,
        kernels=kernel or None, quiet=quiet, resume=False if new else None,
        catalog_dirs=[str(c) for c in (catalog or [])],
    )
    if reference:
        kwargs["reference"] = True
    _exit(scan_command(str(path), **kwargs))


@app.command()
def rerun(
    kernel: Optional[str] = typer.Option(None, "--kernel", "-k", help="kernel id or bare name"),
    file: Optional[str] = typer.Option(None, "--file", help="every kernel of this source file"),
    failed: bool = typer.Option(False, "--failed", help="every kernel that did not pass"),
    cls: Optional[str] = typer.Option(None, "--class", help="every kernel whose error has this class"),
    run: Optional[int] = typer.Option(None, "--run", help="run id (default: the latest scan)"),
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend"),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs"),
    timeout: Optional[float] = typer.Option(None, help="seconds per compile"),
    memory_mb: Optional[int] = typer.Option(None, "--memory-mb"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Recompile some kernels of a stored scan and print before -> after."""
    from tritriage.collect.scan import rerun_command

    if not any([kernel, file, failed, cls]):
        raise UserError("rerun needs --kernel, --file, --failed or --class")
    _exit(rerun_command(kernel=kernel, file=file, failed=failed, cls=cls, run_id=run, python=python,
                        jobs=jobs, timeout=timeout, memory_mb=memory_mb, quiet=quiet))


@app.command()
def doctor(
    python: Optional[str] = typer.Option(None, help="interpreter that has triton-ascend (default: this one)"),
    arch: str = typer.Option("Ascend910B", help="Ascend SoC to compile for"),
    json_out: bool = typer.Option(False, "--json"),
):
    """What this machine can compile: triton-ascend, the adapter, CANN, torch_npu, and the stages a scan runs."""
    from tritriage.collect.scan import doctor_command

    _exit(doctor_command(python=python, arch=arch, json_out=json_out))


# --------------------------------------------------------------------------
# classify


@app.command()
def classify(
    logs: List[Path] = typer.Argument(..., help="saved compiler or test logs, one failure per file"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON array"),
    checkout: Optional[Path] = typer.Option(None, help="checkout root to strip from locations"),
):
    """Classify saved logs: class, subclass, fingerprint and source location of each."""
    from tritriage.classify.cli_cmd import classify_command

    _exit(classify_command(logs, json_out=json_out, checkout=checkout))


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        print(f"tritriage: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print("tritriage: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors and aborts
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            print("tritriage: aborted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()

"""The ``atfr`` command line: a thin Typer layer over the ``atfr_analysis`` Python API.

Every command turns the library's known errors (bad model name, bad argument, unusable
checkpoint, undecodable input, bad log) into one line on stderr and exit status 2.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

app = typer.Typer(
    name="atfr",
    help="Build, profile and report 3D CNNs with adaptive temporal feature resolution (SGS / ATFR).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)


class CLIError(Exception):
    """An error to print as one line (exit 2)."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from atfr_analysis.checkpoint import CheckpointError
    from atfr_analysis.models.registry import UnknownModelError

    errs: list[type[BaseException]] = [CLIError, CheckpointError, UnknownModelError, ValueError, TypeError, FileNotFoundError]
    try:
        from atfr_analysis.data import DataError

        errs.append(DataError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from atfr_analysis.analysis import AnalysisError

        errs.append(AnalysisError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def _fail(msg: str, code: int = 2) -> None:
    msg = " ".join(str(msg).split())  # one line
    err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(code)


# ---------------------------------------------------------------------------- paper rows
@app.command("paper-baselines")
def paper_baselines_cmd(
    out: Path = typer.Option(Path("reports"), "--out", help="folder for paper_baselines.md / .csv"),
) -> None:
    """Reproduce the paper's baseline GFLOPs rows (and the bins its +ATFR rows imply): writes a report."""
    from atfr_analysis.flops.paper import write_paper_baselines

    md, csv = write_paper_baselines(out, progress=True)
    console.print(f"wrote {md} and {csv}")


# ---------------------------------------------------------------------------- entry point
def _register_optional_commands() -> None:
    """Commands that live in their own modules (added as they are written)."""
    import importlib

    for mod in ("atfr_cli.cmd_flops", "atfr_cli.cmd_profile", "atfr_cli.cmd_report", "atfr_cli.cmd_train", "atfr_cli.cmd_bench"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.register(app)


def main(argv: Optional[List[str]] = None) -> None:
    _register_optional_commands()
    from typer._click.exceptions import NoArgsIsHelpError
    from typer.exceptions import Abort, Exit, TyperException

    try:
        rv = app(args=argv, prog_name="atfr", standalone_mode=False)
        # with standalone_mode=False Typer returns (not raises) the status of an interrupt
        if isinstance(rv, int) and rv:
            if rv == 130:
                _fail("interrupted (a profiling run can be continued with --resume)", 130)
            raise SystemExit(rv)
    except NoArgsIsHelpError:
        app(args=["--help"], prog_name="atfr", standalone_mode=False)
    except Exit as e:
        raise SystemExit(e.exit_code)
    except Abort:
        _fail("aborted", 130)
    except TyperException as e:  # bad option, missing argument, bad value
        _fail(e.format_message(), 2)
    except KeyboardInterrupt:
        _fail("interrupted (a run can be continued with --resume)", 130)
    except _known_errors() as e:
        if os.environ.get("ATFR_DEBUG"):
            raise
        _fail(str(e) or type(e).__name__, 2)
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("ATFR_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (set ATFR_DEBUG=1 for the traceback)", 1)


if __name__ == "__main__":  # pragma: no cover
    main()

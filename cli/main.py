"""The ``atfr`` command line: a thin Typer layer over the ``atfr_analysis`` Python API.

Errors end as exactly one line on stderr, never a traceback:

* bad input, ``atfr_analysis.errors.AtfrError`` (a bad model name, argument, checkpoint, video
  list or log) and Typer's usage errors (unknown option, missing argument): ``error: <what to
  fix>``, exit status 2;
* the environment, ``EnvironmentFailure`` or an ``OSError`` of the operating system (permission
  denied, disk full, read-only file system, a missing folder): ``error: <path>: <the OS's
  reason>``, exit status 1;
* anything else is a bug in atfr-analysis: ``error: bug in atfr-analysis: <type>: <message>``,
  exit status 1; ``ATFR_DEBUG=1`` shows the traceback (of every error).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import typer
from rich.console import Console

from atfr_analysis.errors import AtfrError
from atfr_cli import cmd_bench, cmd_explain, cmd_export, cmd_flops, cmd_profile, cmd_report, cmd_train, cmd_views

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


#: errno values that mean the operating system refused (not a bug of ours): exit status 1
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, n)
    for n in (
        "EACCES",
        "EPERM",
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "ENOENT",
        "ENOTDIR",
        "EISDIR",
        "EEXIST",
        "ENAMETOOLONG",
        "EMFILE",
        "ENFILE",
        "EIO",
        "EBUSY",
        "ETXTBSY",
        "EFBIG",
        "ENOTEMPTY",
        "EXDEV",
    )
    if hasattr(errno, n)
)


def environment_message(e: OSError) -> str | None:
    """``<path>: <reason>`` of an OSError of the environment, or ``None`` (then it is a bug)."""
    if e.errno not in ENVIRONMENT_ERRNOS:
        return None
    reason = e.strerror or os.strerror(e.errno)
    where = [str(f) for f in (e.filename, e.filename2) if f is not None]
    if not where:
        return f"{reason} [{errno.errorcode.get(e.errno, e.errno)}] (the operating system gave no path)"
    return f"{' -> '.join(where)}: {reason}"


def bug_message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (
        f"bug in atfr-analysis: {type(e).__name__}{': ' + text if text else ''} "
        "(please report it; run again with ATFR_DEBUG=1 to see the traceback)"
    )


def _fail(msg: str, code: int = 2) -> None:
    msg = " ".join(str(msg).split())  # one line
    err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(code)


# ---------------------------------------------------------------------------- --version
def _print_version(value: bool) -> None:
    if value:
        from atfr_analysis import __version__

        typer.echo(f"atfr-analysis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Build, profile and report 3D CNNs with adaptive temporal feature resolution (SGS / ATFR)."""


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
# Each command module is a thin skin that imports only typer (and rich) at the top and the library
# (torch, pandas) inside its command functions: `atfr --help`, `atfr --version` and `atfr CMD
# --help` import no torch (tests/test_cli.py checks it).
for _cmd in (cmd_flops, cmd_profile, cmd_views, cmd_explain, cmd_report, cmd_export, cmd_train, cmd_bench):
    _cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    import sys

    from typer.exceptions import Abort, Exit, TyperException

    if not (sys.argv[1:] if argv is None else argv):  # `atfr` alone: its help, exit 0
        app(args=["--help"], prog_name="atfr", standalone_mode=False)
        return
    try:
        rv = app(args=argv, prog_name="atfr", standalone_mode=False)
        # with standalone_mode=False Typer returns (not raises) the status of an interrupt
        if isinstance(rv, int) and rv:
            if rv == 130:
                _fail("interrupted (a profiling run can be continued with --resume)", 130)
            raise SystemExit(rv)
    except Exit as e:
        raise SystemExit(e.exit_code) from None
    except Abort:
        _fail("aborted", 130)
    except TyperException as e:  # bad option, missing argument, bad value
        _fail(e.format_message(), 2)
    except KeyboardInterrupt:
        _fail("interrupted (a run can be continued with --resume)", 130)
    except AtfrError as e:  # bad input (2); EnvironmentFailure names path and reason (1)
        if os.environ.get("ATFR_DEBUG"):
            raise
        _fail(str(e) or type(e).__name__, getattr(e, "exit_code", 2))
    except OSError as e:
        if os.environ.get("ATFR_DEBUG"):
            raise
        msg = environment_message(e)
        _fail(msg if msg is not None else bug_message(e), 1)
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("ATFR_DEBUG"):
            raise
        _fail(bug_message(e), 1)


if __name__ == "__main__":  # pragma: no cover
    main()

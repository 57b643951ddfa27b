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
import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from atfr_analysis.errors import AtfrError, InputError

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


class CLIError(InputError):
    """A bad command-line argument (exit 2)."""


#: errno values that mean the operating system refused (not a bug of ours): exit status 1
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, n)
    for n in (
        "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EROFS", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST",
        "ENAMETOOLONG", "EMFILE", "ENFILE", "EIO", "EBUSY", "ETXTBSY", "EFBIG", "ENOTEMPTY", "EXDEV",
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


# ---------------------------------------------------------------------------- models / flops
@app.command("models")
def models_cmd(
    pattern: str = typer.Argument("*", help="shell-style filter, e.g. 'x3d*'"),
    flops: bool = typer.Option(True, "--flops/--no-flops", help="count GFLOPs at the test crop (slower)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List the model zoo: name, params (M), default frames x crop, GFLOPs at the test crop."""
    from atfr_analysis.flops.summary import model_flops, param_count
    from atfr_analysis.models import build_model, list_models

    rows = []
    names = list_models(pattern)
    if not names:
        raise CLIError(f"no model matches {pattern!r}; models: {', '.join(list_models())}")
    for name in names:
        m = build_model(name)
        row = {"model": name, "params_m": param_count(m) / 1e6, "input": m.spec.label(), "gmacs": None}
        if flops:
            row["gmacs"] = model_flops(name, model=m).gmacs
        rows.append(row)
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title="atfr model zoo (GFLOPs = GMACs, conv_fc convention, 1 view; _atfr: all bins active)")
    for col in ("model", "params (M)", "frames x crop", "GFLOPs"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        t.add_row(r["model"], f"{r['params_m']:.2f}", r["input"], "-" if r["gmacs"] is None else f"{r['gmacs']:.2f}")
    console.print(t)


@app.command("flops")
def flops_cmd(
    model: str = typer.Argument(..., help="registry name (see `atfr models`)"),
    frames: Optional[int] = typer.Option(None, "--frames", help="clip frames (fast pathway for SlowFast)"),
    crop: Optional[int] = typer.Option(None, "--crop", help="spatial size (default: the model's test crop)"),
    classes: int = typer.Option(400, "--classes", help="number of classes"),
    views: Optional[int] = typer.Option(None, "--views", help="views per video (default: the config's views x crops)"),
    bins: Optional[str] = typer.Option(
        None, "--bins", help="ATFR what-if: active bins per SGS layer, 'LAYER=B,...' or 'B1,B2' (slow,fast)"
    ),
    curve: bool = typer.Option(False, "--curve", help="ATFR: GMACs over every B' (plotted with --plot)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="with --curve: write the curve as a PNG"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """GMACs of a model (batch 1, one view) in both counting conventions, with a per-stage split."""
    from atfr_analysis.flops.summary import model_flops

    for opt, v in (("--frames", frames), ("--crop", crop), ("--classes", classes), ("--views", views)):
        if v is not None and v <= 0:
            raise CLIError(f"{opt} must be a positive integer, got {v}")
    s = model_flops(model, frames=frames, crop=crop, num_classes=classes, views=views, bins=bins, curve=curve or bool(plot))
    if plot:
        if not s.curve:
            raise CLIError("--plot needs an _atfr model")
        from atfr_analysis.flops.plots import plot_cost_curve

        plot_cost_curve(s, plot)
    if json_out:
        print(json.dumps(s.to_dict(), indent=1))
        return
    console.print(f"[bold]{s.model}[/]  input {'+'.join(map(str, s.frames))}x{s.crop}x{s.crop}, batch 1, {s.num_classes} classes")
    console.print(f"params           {s.params:,} ({s.params / 1e6:.2f} M)")
    if s.bins is not None:
        console.print("active bins      " + ", ".join(f"{k}={v}/{s.num_bins[k]}" for k, v in s.bins.items()))
    console.print(f"GMACs conv_fc    {s.gmacs:.4f}   (paper / PySlowFast 'GFLOPs': conv + linear, 1 MAC = 1)")
    console.print(f"GMACs fvcore     {s.gmacs_fvcore:.4f}   (fvcore default: BatchNorm included)")
    console.print(f"x {s.views} views      {s.gmacs_x_views:.2f} GMACs")
    if s.static_gmacs is not None:
        red = 100 * (1 - s.gmacs / s.static_gmacs)
        console.print(f"static backbone  {s.static_gmacs:.4f} GMACs without SGS (reduction {red:+.1f}%)")
    t = Table(title="per stage (conv_fc GMACs)")
    t.add_column("stage")
    t.add_column("GMACs", justify="right")
    t.add_column("share", justify="right")
    for k, v in s.stages.items():
        t.add_row(k, f"{v:.4f}", f"{100 * v / s.gmacs:.1f}%" if s.gmacs else "-")
    console.print(t)
    if s.unsupported_ops:
        console.print("not counted (fvcore has no handle): " + ", ".join(f"{k} x{v}" for k, v in sorted(s.unsupported_ops.items())))
    if s.uncalled_modules:
        console.print("uncalled modules: " + ", ".join(s.uncalled_modules))
    if s.curve:
        t = Table(title="cost curve over active bins")
        for name in s.bins:
            t.add_column(f"B' {name}", justify="right")
        t.add_column("GMACs", justify="right")
        t.add_column("vs static", justify="right")
        for pt in s.curve:
            t.add_row(*[str(v) for v in pt["bins"].values()], f"{pt['gmacs']:.4f}", f"{100 * pt['gmacs'] / s.static_gmacs:.1f}%")
        console.print(t)
    if plot:
        console.print(f"curve plot: {plot}")


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

    for mod in ("atfr_cli.cmd_profile", "atfr_cli.cmd_report", "atfr_cli.cmd_export", "atfr_cli.cmd_train", "atfr_cli.cmd_bench",
                "atfr_cli.cmd_explain"):
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

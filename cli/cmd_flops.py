"""``atfr models`` (the zoo with params and GFLOPs) and ``atfr flops MODEL`` (both conventions, the
per-stage split or, with ``--depth N``, the per-module table; ATFR what-ifs with ``--bins``).

Both count on the ``meta`` device (nothing computed) and keep their totals in the user cost cache
(``$ATFR_CACHE_DIR``, default ``$XDG_CACHE_HOME/atfr-analysis`` or ``~/.cache/atfr-analysis``;
``--no-cache`` to bypass it).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _cache(enabled: bool):
    if not enabled:
        return None
    from atfr_analysis.flops.cache import CostCache

    return CostCache.user()


def _fmt_params(n: int) -> str:
    return "" if not n else (f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)))


def print_module_table(s, out: Console = console) -> None:
    """The ``--depth`` table (rows of ``atfr_analysis.flops.table.module_table``)."""
    atfr = s.static_gmacs is not None
    t = Table(title=f"per module, depth {s.depth} (GMACs; a module includes its submodules)")
    width = max(
        (2 * r["depth"] + (9 if r["own"] else len(r["module"].rsplit(".", 1)[-1])) for r in s.modules), default=6
    )
    t.add_column("module", no_wrap=True, min_width=min(width, 40))
    t.add_column("#params", justify="right")
    t.add_column("conv_fc", justify="right")
    t.add_column("fvcore", justify="right")
    t.add_column("share", justify="right")
    if atfr:
        t.add_column("no SGS", justify="right")
        t.add_column("vs no SGS", justify="right")
    total = s.modules[0]["macs"] if s.modules else 0
    for r in s.modules:
        name = r["module"]
        if r["own"]:
            name = "(own ops)"
        elif r["depth"] > 1:
            name = name.rsplit(".", 1)[-1]  # a tree: the name below its parent's row
        row = [
            "  " * r["depth"] + name,
            _fmt_params(r["params"]),
            f"{r['macs'] / 1e9:.3f}",
            f"{r['macs_fvcore'] / 1e9:.3f}",
            f"{100 * r['macs'] / total:.1f}%" if total else "-",
        ]
        if atfr:
            st = r["static_macs"]
            row.append("-" if st is None else f"{st / 1e9:.3f}")
            row.append("-" if not st else f"{100 * (r['macs'] / st - 1):+.1f}%")
        t.add_row(*row)
    out.print(t)


def register(app: typer.Typer) -> None:
    _register_counters(app)

    @app.command("models")
    def models_cmd(
        pattern: str = typer.Argument("*", help="shell-style filter, e.g. 'x3d*'"),
        flops: bool = typer.Option(True, "--flops/--no-flops", help="count GFLOPs at the test crop"),
        json_out: bool = typer.Option(False, "--json", help="print JSON"),
        cache: bool = typer.Option(True, "--cache/--no-cache", help="use the user cost cache"),
    ) -> None:
        """List the model zoo: name, params (M), default frames x crop, GFLOPs at the test crop."""
        import torch
        from rich.progress import Progress

        from atfr_analysis.errors import InputError
        from atfr_analysis.flops.summary import model_row, param_count
        from atfr_analysis.models import build_model, list_models

        names = list_models(pattern)
        if not names:
            raise InputError(f"no model matches {pattern!r}; models: {', '.join(list_models())}")
        store = _cache(cache)
        rows = []
        with Progress(console=err_console, transient=True, disable=json_out or not err_console.is_terminal) as bar:
            task = bar.add_task("counting the zoo on the meta device", total=len(names))
            for name in names:
                bar.update(task, description=name)
                if flops:
                    rows.append(model_row(name, cache=store))
                else:
                    with torch.device("meta"):
                        m = build_model(name)
                    rows.append(
                        {"model": name, "params_m": param_count(m) / 1e6, "input": m.spec.label(), "gmacs": None}
                    )
                bar.advance(task)
        if json_out:
            print(json.dumps(rows, indent=1))
            return
        t = Table(title="atfr model zoo (GFLOPs = GMACs, conv_fc convention, 1 view; _atfr: all bins active)")
        for col in ("model", "params (M)", "frames x crop", "GFLOPs"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for r in rows:
            t.add_row(
                r["model"], f"{r['params_m']:.2f}", r["input"], "-" if r["gmacs"] is None else f"{r['gmacs']:.2f}"
            )
        console.print(t)

    @app.command("flops")
    def flops_cmd(
        model: str = typer.Argument(
            ..., help="registry name (see `atfr models`) or package.module:callable (your own model)"
        ),
        frames: int | None = typer.Option(None, "--frames", help="clip frames (fast pathway for SlowFast)"),
        crop: int | None = typer.Option(None, "--crop", help="spatial size (default: the model's test crop)"),
        classes: int | None = typer.Option(
            None, "--classes", help="number of classes (default: 400; your own model: its callable's default)"
        ),
        views: int | None = typer.Option(None, "--views", help="views per video (default: the config's views x crops)"),
        bins: str | None = typer.Option(
            None, "--bins", help="ATFR what-if: active bins per SGS layer, 'LAYER=B,...' or 'B1,B2' (slow,fast)"
        ),
        depth: int | None = typer.Option(
            None,
            "--depth",
            help="per-module table down to this depth (0 = the model; 1 = stages), instead of the stage split",
        ),
        curve: bool = typer.Option(False, "--curve", help="ATFR: GMACs over every B' (plotted with --plot)"),
        plot: Path | None = typer.Option(None, "--plot", help="with --curve: write the curve as a PNG"),
        counter: str = typer.Option(
            "meta", "--counter", help="counting backend: meta (nothing computed) or fvcore (the reference trace)"
        ),
        cache: bool = typer.Option(True, "--cache/--no-cache", help="use the user cost cache"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        save: Path | None = typer.Option(
            None,
            "--save",
            help="write a golden FLOP file (exact MACs per module to --depth (default 2), params, per signature)",
        ),
        check: Path | None = typer.Option(
            None, "--check", help="count again as the golden FILE says; exit 0 when equal, 1 with a table of what moved"
        ),
        signatures: str | None = typer.Option(
            None,
            "--signatures",
            help="with --save: the signatures to pin, 'B1,B2;B1,B2' (default: the grid, at most 64)",
        ),
    ) -> None:
        """GMACs of a model (batch 1, one view) in both counting conventions, with a per-stage split.
        MODEL: a registry name or your own package.module:callable."""
        from atfr_analysis.errors import InputError
        from atfr_analysis.flops.cost import BACKENDS
        from atfr_analysis.flops.summary import model_flops

        if classes is None and ":" not in model:
            classes = 400
        if save or check:
            _golden(model, save, check, frames, crop, classes, depth, signatures, _cache(cache))
            return

        for opt, v in (("--frames", frames), ("--crop", crop), ("--classes", classes), ("--views", views)):
            if v is not None and v <= 0:
                raise InputError(f"{opt} must be a positive integer, got {v}")
        if depth is not None and depth < 0:
            raise InputError(f"--depth must be >= 0, got {depth}")
        if counter not in BACKENDS:
            raise InputError(f"--counter must be one of {', '.join(BACKENDS)}, got {counter!r}")
        s = model_flops(
            model,
            model=_user_model(model, frames, crop, classes, meta=counter == "meta"),
            frames=frames,
            crop=crop,
            num_classes=classes,
            views=views,
            bins=bins,
            curve=curve or bool(plot),
            depth=depth,
            backend=counter,
            cache=_cache(cache),
        )
        if plot:
            if not s.curve:
                raise InputError("--plot needs an _atfr model")
            from atfr_analysis.flops.plots import plot_cost_curve

            plot_cost_curve(s, plot)
        if json_out:
            print(json.dumps(s.to_dict(), indent=1))
            return
        console.print(
            f"[bold]{s.model}[/]  input {'+'.join(map(str, s.frames))}x{s.crop}x{s.crop}, batch 1, "
            f"{s.num_classes} classes"
        )
        console.print(f"params           {s.params:,} ({s.params / 1e6:.2f} M)")
        if s.bins is not None:
            console.print("active bins      " + ", ".join(f"{k}={v}/{s.num_bins[k]}" for k, v in s.bins.items()))
        console.print(f"GMACs conv_fc    {s.gmacs:.4f}   (paper / PySlowFast 'GFLOPs': conv + linear, 1 MAC = 1)")
        console.print(f"GMACs fvcore     {s.gmacs_fvcore:.4f}   (fvcore default: BatchNorm included)")
        console.print(f"x {s.views} views      {s.gmacs_x_views:.2f} GMACs")
        if s.static_gmacs is not None:
            red = 100 * (1 - s.gmacs / s.static_gmacs)
            console.print(f"static backbone  {s.static_gmacs:.4f} GMACs without SGS (reduction {red:+.1f}%)")
        if s.depth is not None:
            print_module_table(s)
        else:
            t = Table(title="per stage (conv_fc GMACs)")
            t.add_column("stage")
            t.add_column("GMACs", justify="right")
            t.add_column("share", justify="right")
            for k, v in s.stages.items():
                t.add_row(k, f"{v:.4f}", f"{100 * v / s.gmacs:.1f}%" if s.gmacs else "-")
            console.print(t)
        if s.unsupported_ops:
            console.print(
                "not counted (no flop formula): " + ", ".join(f"{k} x{v}" for k, v in sorted(s.unsupported_ops.items()))
            )
        if s.uncalled_modules:
            console.print("uncalled modules: " + ", ".join(s.uncalled_modules))
        if s.curve:
            t = Table(title="cost curve over active bins")
            for name in s.bins:
                t.add_column(f"B' {name}", justify="right")
            t.add_column("GMACs", justify="right")
            t.add_column("vs static", justify="right")
            for pt in s.curve:
                t.add_row(
                    *[str(v) for v in pt["bins"].values()],
                    f"{pt['gmacs']:.4f}",
                    f"{100 * pt['gmacs'] / s.static_gmacs:.1f}%",
                )
            console.print(t)
        if plot:
            console.print(f"curve plot: {plot}")


def _user_model(name: str, frames: int | None, crop: int | None, classes: int | None, meta: bool):
    """One's own model (``package.module:callable``), its input spec from ``--frames`` and
    ``--crop`` when the module has none (on the meta device for the meta counter: the builder
    itself runs on the CPU); ``None`` for a registry name (``model_flops`` builds it)."""
    if ":" not in name:
        return None
    import contextlib

    import torch

    from atfr_analysis.models import build_model
    from atfr_analysis.models.user import spec_from_options

    spec = spec_from_options(frames, crop)
    with torch.device("meta") if meta else contextlib.nullcontext():
        return build_model(name, num_classes=classes, spec_if_none=spec)


def _golden(name, save, check, frames, crop, classes, depth, signatures, cache) -> None:
    """``--save`` / ``--check``: a golden FLOP file (:mod:`atfr_analysis.flops.golden`)."""
    import torch

    from atfr_analysis.errors import InputError
    from atfr_analysis.flops.golden import (
        compare,
        format_rows,
        golden,
        golden_like,
        parse_signatures,
        read_golden,
        write_golden,
    )
    from atfr_analysis.models import build_model, make_inputs

    if save and check:
        raise InputError("--save and --check exclude each other")
    before = read_golden(check) if check else None
    ncls = before.get("num_classes", classes) if before else classes
    model = _user_model(name, frames, crop, ncls, meta=True)
    if model is None:
        with torch.device("meta"):  # shapes only: nothing allocated
            model = build_model(name, num_classes=ncls)
    model.eval()
    if before is not None:
        after = golden_like(model, before, cache=cache)
        after["num_classes"] = getattr(model.config, "num_classes", ncls)
        rows = compare(before, after)
        if rows:
            console.print(f"[bold red]FLOPs moved[/] ({name} against {check}):")
            print(format_rows(rows))
            raise SystemExit(1)
        console.print(
            f"{name}: FLOPs equal to {check} ({len(after['signatures'])} signature(s), "
            f"{len(after['modules'])} module(s))"
        )
        return
    spec = model.spec.with_frames(frames)
    shapes = [tuple(x.shape) for x in make_inputs(spec, crop or spec.test_crop)]
    rec = golden(
        model,
        shapes,
        depth=2 if depth is None else depth,
        signatures=parse_signatures(signatures),
        name=name,
        cache=cache,
    )
    rec["num_classes"] = getattr(model.config, "num_classes", ncls)
    write_golden(save, rec)
    console.print(f"wrote {save}: {len(rec['signatures'])} signature(s), {len(rec['modules'])} module(s)")


def _register_counters(app: typer.Typer) -> None:
    @app.command("counters")
    def counters_cmd(
        n: int = typer.Option(20, "--n", help="random signatures per model"),
        models: str | None = typer.Option(
            None, "--models", help="name[:classes],... (default: SlowFast 4x16, SSv2 SlowFast 16x8, X3D-XL ATFR)"
        ),
        threads: int | None = typer.Option(None, "--threads", help="torch threads"),
        out: Path | None = typer.Option(None, "--out", help="write the results as JSON (e.g. reports/counters.json)"),
    ) -> None:
        """The meta-device counter against fvcore's trace on random signatures: equal counts, cold seconds per
        signature."""
        import torch

        from atfr_analysis.errors import InputError
        from atfr_analysis.flops.compare import DEFAULT_MODELS, compare_backends

        if n < 1:
            raise InputError(f"--n must be >= 1, got {n}")
        if threads:
            torch.set_num_threads(threads)
        items = (
            [(m, int(c or 400)) for m, _, c in (s.partition(":") for s in models.split(","))]
            if models
            else list(DEFAULT_MODELS)
        )
        results = []
        for name, classes in items:
            r = compare_backends(name, classes, n=n)
            results.append(r)
            s = r["seconds_per_signature"]
            typer.echo(
                f"{name}: {r['signatures']} signatures, identical: {r['equal']}; s/signature median "
                f"fvcore {s['fvcore']['median']:.3f}, meta {s['meta']['median']:.3f} (x{r['speedup_median']}); "
                f"warm-up {r['warmup_s']}"
            )
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
            typer.echo(f"wrote {out}")

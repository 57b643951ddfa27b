"""``atfr views``: the test views of one video (frames, scale, crop box, checksums), no model run."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("views")
    def views_cmd(
        video: Path = typer.Argument(..., help="a video file"),
        model: str = typer.Option(..., "--model", help="registry name (its frames, sampling rate and test protocol)"),
        views: int | None = typer.Option(
            None, "--views", help="temporal clips (default: the model config's, 10 for Kinetics models)"
        ),
        crops: int | None = typer.Option(
            None, "--crops", help="spatial crops per clip: 3 or 1 (default: the model config's)"
        ),
        short_side: int | None = typer.Option(
            None,
            "--short-side",
            help="scale the short side to S (default: 3 crops: the test crop; 1 crop: PySlowFast's 1-crop rule, X3D-S "
            "182)",
        ),
        crop: int | None = typer.Option(
            None,
            "--crop",
            help="crop size C (default: 3 crops: the test crop; 1 crop: the 1-crop test size, X3D-S 160)",
        ),
        apply_rotation: bool = typer.Option(
            False,
            "--apply-rotation",
            help="turn frames by their rotation metadata (default: as decoded, as PySlowFast)",
        ),
        checksums: bool = typer.Option(
            True, "--checksums/--no-checksums", help="mean and std of each view's normalised input"
        ),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object with a 'views' list"),
    ) -> None:
        """Print the test views PySlowFast's test path takes from VIDEO (source frames of the fastest
        pathway, resized size, crop box, checksum of the normalised input), without running a model.

        A partial video (a truncated file whose index survived) lists its failed views with the
        reason, says so on stderr and exits 0; a video of which no view decodes is an error (exit 2).
        """
        from atfr_analysis.data.views import Decoding, sample_views, view_protocol
        from atfr_analysis.errors import InputError

        for opt, v in (("--views", views), ("--crops", crops), ("--short-side", short_side), ("--crop", crop)):
            if v is not None and v <= 0:
                raise InputError(f"{opt} must be a positive integer, got {v}")
        protocol = view_protocol(model, views, crops, short_side, crop)
        r = sample_views(video, model, protocol, checksums=checksums, decoding=Decoding(apply_rotation=apply_rotation))
        facts = r.video.to_dict()
        facts.pop("seconds")
        facts.pop("path")
        rows = []
        for v in r.views:
            d = v.to_dict()
            d.pop("row")
            rows.append(d)
        if json_out:
            print(json.dumps({"video": str(video), "model": model, **facts, "views": rows}, indent=1))
        else:
            _print_table(video, model, r)
        if r.video.rotation:
            how = "turned" if r.video.rotated else "as decoded (not turned; --apply-rotation turns them)"
            typer.echo(f"warning: {video}: rotation metadata {r.video.rotation} degrees; frames {how}", err=True)
        if r.video.partial:
            typer.echo(
                f"warning: {video}: partial video: {r.video.failed_views} of {len(r.views)} views failed: "
                f"{r.video.error}",
                err=True,
            )


def _frames_text(frames: list[int]) -> str:
    if len(frames) <= 6:
        return ",".join(map(str, frames))
    return ",".join(map(str, frames[:3])) + ",...," + ",".join(map(str, frames[-2:]))


def _print_table(video: Path, model: str, r) -> None:
    """A plain fixed-width table (readable in a log and in a narrow terminal)."""
    f = r.video
    p = f.protocol
    rule = "pts windows" if f.rule == "window" else "full decode"
    typer.echo(
        f"{video}: {f.width}x{f.height}, {f.num_frames} frames at {f.fps:.3f} fps; {rule}; {f.decoded} frames decoded"
    )
    typer.echo(f"{model}: {p.views} clips x {p.crops} crops, short side {p.short_side}, crop {p.crop}")
    head = ("view", "clip", "pos", "frames", "resized", "crop box", "mean", "std", "status")
    rows = []
    for v in r.views:
        cs = v.checksum or {}
        rows.append(
            (
                str(v.view),
                str(v.temporal_index),
                str(v.spatial_idx),
                _frames_text(v.frames),
                "x".join(map(str, v.resized_hw or [])),
                ",".join(map(str, v.crop_box or [])),
                f"{cs['mean']:.6f}" if cs else "-",
                f"{cs['std']:.6f}" if cs else "-",
                "ok" if v.ok else f"failed: {v.error}",
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head[:-1])]
    for row in (head, *rows):
        typer.echo(
            "  ".join(c.rjust(w) if i in (0, 1, 2, 6, 7) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
            + "  "
            + row[-1]
        )

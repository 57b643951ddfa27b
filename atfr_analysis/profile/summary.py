"""The closing summary of a run folder, and the exit status it implies.

``summarize(run_dir)`` reads everything logged so far (every shard's parts): videos ok and
failed, the failures counted by reason, video-level top-1/top-5, GMACs x views against the
static backbone, the mean active bins. ``RunSummary.exit_code`` is what ``atfr profile`` exits
with:

====  ==========================================================================================
0     every logged video was profiled, or the failed ones are at most ``max_failed_fraction`` of
      the logged videos
3     partial failure: more than ``max_failed_fraction`` of the logged videos failed
4     no video could be profiled: every logged video failed (whatever ``max_failed_fraction``)
====  ==========================================================================================

In every case the log stays on disk as written (failed videos have ``failed`` rows with their
reason), and ``--resume --retry-failed`` tries the failed videos again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atfr_analysis.profile.log import load_run, load_videos, read_meta
from atfr_analysis.profile.schema import bins_column, bins_layers, topk_hits, video_accuracy

__all__ = ["RunSummary", "summarize", "failure_reason", "EXIT_OK", "EXIT_PARTIAL_FAILURE", "EXIT_NONE_PROFILED"]

EXIT_OK = 0
EXIT_PARTIAL_FAILURE = 3
EXIT_NONE_PROFILED = 4
#: failed videos the summary names one by one, and failure reasons it counts
_SHOW_FAILURES = 3
_SHOW_REASONS = 4


def failure_reason(error: str | None, path: str = "") -> str:
    """The kind of a failure, for counting: the error without the video's path and details
    (``cannot decode video: a.mp4: no such file`` -> ``no such file``)."""
    s = " ".join(str(error or "unknown error").split())
    if path:
        s = s.replace(f"cannot decode video: {path}: ", "", 1).replace(f" ({path})", "").replace(path, "")
    s = s.split(": ", 1)[0].strip(" :;,") or "unknown error"
    return s if len(s) <= 60 else s[:57] + "..."


@dataclass
class RunSummary:
    """The closing summary of a run folder (every shard's parts logged so far)."""

    run_dir: Path
    videos_ok: int
    videos_failed: int
    views: int  # rows (video, view) logged
    top1: float | None  # video-level, % of ok videos with a label (sum of softmax over views)
    top5: float | None
    gmacs_x_views: float | None  # mean over ok videos of the sum of their per-view GMACs
    static_gmacs_x_views: float | None  # the static backbone (no SGS) x views
    reduction_pct: float | None
    mean_bins: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    shard: tuple[int, int] = (0, 1)
    videos_total: int | None = None  # videos in the list
    views_per_video: int | None = None
    num_bins: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error), the first few
    processed: int = 0  # videos profiled by this call
    skipped: int = 0  # videos of this shard done earlier (resume)
    distributed: bool = False  # a torchrun rank
    loop_s: float = 0.0  # seconds spent decoding and profiling (elapsed_s less the setup)
    failure_reasons: dict[str, int] = field(default_factory=dict)  # reason -> failed videos, most first
    max_failed_fraction: float = 0.0  # failed / logged videos above which the run is a partial failure
    mean_class_acc: float | None = None  # video-level mean class accuracy (%), mmaction2's default metric
    checkpoint_format: str | None = None  # which checkpoint format was read (Checkpoint.describe())
    protocol: dict[str, int] | None = None  # views, crops, short_side, crop (run.json)
    videos_partial: int = 0  # ok videos some of whose views failed (partial files)
    views_failed: int = 0  # failed views rows of ok (partial) videos
    videos_rotated: int = 0  # videos with rotation metadata
    rotation_applied: bool = False  # --apply-rotation

    @property
    def complete(self) -> bool:
        return self.videos_total is not None and self.videos_ok + self.videos_failed >= self.videos_total

    @property
    def exit_code(self) -> int:
        """0, or 3 (more than ``max_failed_fraction`` of the logged videos failed), or 4 (all failed)."""
        logged = self.videos_ok + self.videos_failed
        if self.videos_failed and not self.videos_ok:
            return EXIT_NONE_PROFILED
        if logged and self.videos_failed / logged > self.max_failed_fraction:
            return EXIT_PARTIAL_FAILURE
        return EXIT_OK

    def reasons_text(self) -> str:
        """``2 x no such file, 1 x cannot open`` (the most frequent reasons first)."""
        items = list(self.failure_reasons.items())
        s = ", ".join(f"{n} x {r}" for r, n in items[:_SHOW_REASONS])
        rest = sum(n for _, n in items[_SHOW_REASONS:])
        return s + (f", {rest} x other reasons" if rest else "")

    def verdict(self) -> str | None:
        """The one-line error of a non-zero exit status (``None`` when the status is 0)."""
        code = self.exit_code
        logged = self.videos_ok + self.videos_failed
        where = (
            f"the log is in {self.run_dir} (status == 'failed' rows give each reason; "
            "--resume --retry-failed tries them again)"
        )
        if code == EXIT_NONE_PROFILED:
            return f"no video could be profiled: all {logged} failed ({self.reasons_text()}); {where}"
        if code == EXIT_PARTIAL_FAILURE:
            return (
                f"{self.videos_failed} of {logged} videos failed ({self.reasons_text()}), more than "
                f"--max-failed-fraction {self.max_failed_fraction:g}; {where}"
            )
        return None

    def rotation_warning(self) -> str | None:
        """The run's one warning about rotated videos (``None`` when there are none)."""
        if not self.videos_rotated:
            return None
        n = self.videos_rotated
        what = f"{n} video{'s' if n > 1 else ''} carr{'y' if n > 1 else 'ies'} rotation metadata (column 'rotation')"
        if self.rotation_applied:
            return f"{what}; their frames were turned upright (--apply-rotation)"
        return f"{what}; their frames were used as decoded, as PySlowFast does (--apply-rotation turns them)"

    def lines(self) -> list[str]:
        i, n = self.shard
        head = f"run: {self.run_dir}"
        if n > 1:
            head += (
                f"  (shard {i}/{n}{' of torchrun' if self.distributed else ''}; the numbers below cover every shard)"
            )
        out = [head]
        if self.checkpoint_format:
            out.append(f"checkpoint: {self.checkpoint_format}")
        logged = self.videos_ok + self.videos_failed
        s = f"videos: {self.videos_ok} ok, {self.videos_failed} failed"
        if self.videos_total is not None:
            s += f", {logged} of {self.videos_total} logged" + (
                "" if self.complete else " (incomplete: --resume continues)"
            )
        s += f"; {self.views} rows"
        if self.views_per_video:
            s += f" ({self.views_per_video} views per video)"
        out.append(s)
        if self.protocol:
            p = self.protocol
            out.append(f"views: {p['views']} x {p['crops']} per video, short side {p['short_side']}, crop {p['crop']}")
        if self.videos_partial:
            out.append(
                f"  {self.videos_partial} partial video{'s' if self.videos_partial > 1 else ''}: "
                f"{self.views_failed} views failed (their frames do not decode), the others profiled"
            )
        if self.videos_rotated:
            out.append(f"  warning: {self.rotation_warning()}")
        if self.videos_failed:
            out.append(f"  {self.videos_failed} failed: {self.reasons_text()}")
        for path, err in self.failures[:_SHOW_FAILURES]:
            out.append(f"  failed: {err}" if path in err else f"  failed: {path}: {err}")
        if self.videos_failed > _SHOW_FAILURES:
            out.append(
                f"  ... and {self.videos_failed - _SHOW_FAILURES} more failed videos (status == 'failed' in the log)"
            )
        if self.videos_failed:
            out.append("  (--resume --retry-failed tries the failed videos again)")
        if self.top1 is not None:
            out.append(
                f"video-level top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  mean class {self.mean_class_acc:.2f}%  "
                "(sum of softmax over views, as PySlowFast's TestMeter)"
            )
        if self.gmacs_x_views is not None:
            s = f"GFLOPs x views: {self.gmacs_x_views:.4g}"
            if self.views_per_video:
                s += f" (mean {self.gmacs_x_views / self.views_per_video:.4g} per view x {self.views_per_video})"
            if self.static_gmacs_x_views and self.num_bins:
                s += f"; static baseline {self.static_gmacs_x_views:.4g}; reduction {self.reduction_pct:.1f}%"
            out.append(s + "  [GMACs, conv+fc]")
        if self.mean_bins:
            out.append(
                "mean active bins B': "
                + ", ".join(
                    f"{k} {v:.2f}" + (f" of {self.num_bins[k]}" if k in self.num_bins else "")
                    for k, v in self.mean_bins.items()
                )
            )
        rate = ""
        if self.processed and self.loop_s > 0:
            rate = f" (setup {self.elapsed_s - self.loop_s:.1f} s): {self.processed / self.loop_s:.2f} videos/s"
            if self.views_per_video:
                rate += f", {self.processed * self.views_per_video / self.loop_s:.1f} views/s"
        skipped = f", {self.skipped} done earlier" if self.skipped else ""
        out.append(f"this call: {self.processed} videos profiled{skipped} in {self.elapsed_s:.1f} s{rate}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("run_dir")
        d["shard"] = list(self.shard)
        d["failures"] = [list(f) for f in self.failures]
        d["complete"] = self.complete
        d["exit_code"] = self.exit_code
        return d


def _video_accuracy(ok) -> tuple[float | None, float | None, float | None]:
    """Video-level top-1, top-5 and mean class accuracy (%) of the labelled ok videos, from their
    summed scores (the headline numbers of :func:`~atfr_analysis.profile.schema.video_accuracy`,
    which the analysis takes too); none when a score is NaN or inf (a log written before such
    views were failed rows): no accuracy is made from NaN."""
    labelled = ok[ok["label"] >= 0]
    if not len(labelled):
        return None, None, None
    sc = np.stack(labelled["scores_sum"].map(lambda s: np.asarray(s, dtype=np.float32)).tolist())
    if not np.isfinite(sc).all():
        return None, None, None
    lab = labelled["label"].to_numpy()
    return video_accuracy(topk_hits(sc, lab, 1), topk_hits(sc, lab, 5), lab)


def summarize(
    run_dir: str | Path, elapsed: float = 0.0, shard: tuple[int, int] = (0, 1), max_failed_fraction: float = 0.0
) -> RunSummary:
    """Summary of everything logged so far in a run folder (all shards)."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    vids = load_videos(run_dir)
    views = load_run(run_dir)
    ok = vids[vids["status"] == "ok"]
    top1, top5, mean_class = _video_accuracy(ok)
    okv = views[views["status"] == "ok"]
    gxv = float(okv.groupby("video_id")["gmacs"].sum().mean()) if len(okv) else None
    nviews = int(meta["views"]) * int(meta["crops"])
    static_xv = float(meta["static_gmacs"]) * nviews if meta.get("static_gmacs") else None
    red = 100 * (1 - gxv / static_xv) if (gxv is not None and static_xv) else None
    layers = bins_layers(okv.columns)
    bins = {l: float(okv[bins_column(l)].astype(float).mean()) for l in layers} if len(okv) else {}
    failed = vids[vids["status"] != "ok"]
    partial = ok[ok["partial"].astype(bool)] if "partial" in ok else ok.iloc[:0]
    ok_ids = set(ok["video_id"])
    views_failed = int(((views["status"] != "ok") & views["video_id"].isin(ok_ids)).sum())
    rotated = int((vids["rotation"].fillna(0).astype(int) != 0).sum()) if "rotation" in vids else 0
    proto = meta.get("protocol")
    reasons = Counter(failure_reason(e, p) for p, e in zip(failed["path"], failed["error"]))
    return RunSummary(
        run_dir=run_dir,
        videos_ok=int(len(ok)),
        videos_failed=int(len(failed)),
        views=int(len(views)),
        top1=top1,
        top5=top5,
        mean_class_acc=mean_class,
        checkpoint_format=meta.get("checkpoint_format"),
        gmacs_x_views=gxv,
        static_gmacs_x_views=static_xv,
        reduction_pct=red,
        mean_bins=bins,
        elapsed_s=elapsed,
        shard=tuple(shard),
        videos_total=meta.get("num_videos"),
        views_per_video=nviews,
        num_bins={k: int(v["num_bins"]) for k, v in (meta.get("sgs_layers") or {}).items()},
        failures=[
            (str(p), str(e)) for p, e in zip(failed["path"].head(_SHOW_FAILURES), failed["error"].head(_SHOW_FAILURES))
        ],
        failure_reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        max_failed_fraction=float(max_failed_fraction),
        protocol=dict(proto) if proto else None,
        videos_partial=int(len(partial)),
        views_failed=views_failed,
        videos_rotated=rotated,
        rotation_applied=bool(meta.get("apply_rotation", False)),
    )

"""Which classes need the lowest / highest temporal resolution (the poster's ranking), with
bootstrap confidence intervals over each class's videos."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError
from atfr_analysis.analysis.run_analysis import RunAnalysis, check_ensemble
from atfr_analysis.profile.schema import bins_column

__all__ = [
    "RANK_BY",
    "RankingSpec",
    "ranking",
    "rank_classes",
    "class_values",
    "below_min_videos",
    "per_video_values",
    "check_by",
]

RANK_BY = ("gmacs", "bins", "top1")
RANKING_COLUMNS = ["end", "rank", "class_name", "value", "ci_low", "ci_high", "videos", "overlaps_other_end"]


def check_by(by: str) -> str:
    if by not in RANK_BY:
        raise AnalysisError(f"unknown by={by!r}: choose one of {', '.join(repr(b) for b in RANK_BY)}")
    return by


@dataclass(frozen=True)
class RankingSpec:
    """How classes are ranked: by what (``RANK_BY``), ``k`` classes per end, classes with fewer
    than ``min_videos`` ok videos left out, ``n_boot`` bootstrap resamples from ``seed``, the
    views of a video combined by ``ensemble``. Validated when built (AnalysisError)."""

    by: str = "gmacs"
    k: int = 5
    min_videos: int = 1
    n_boot: int = 1000
    seed: int = 0
    ensemble: str = "sum"

    def __post_init__(self):
        check_by(self.by)
        check_ensemble(self.ensemble)
        if int(self.k) < 1:
            raise AnalysisError(f"k must be >= 1, got {self.k}")
        if int(self.n_boot) < 0:
            raise AnalysisError(f"n_boot (bootstrap resamples) must be >= 0, got {self.n_boot}")


def _metric(a: RunAnalysis, by: str) -> tuple[pd.Series, str]:
    """The per-view quantity ranked, and a description of it."""
    check_by(by)
    df = a.views
    if by == "gmacs":
        return df["gmacs"], "mean GMACs per view (conv_fc)"
    if not a.layers:
        raise AnalysisError(
            "by='bins' needs bins.<layer> columns, and this log has none (a run without SGS layers); use by='gmacs'"
        )
    if "frac_kept" in df.columns:
        what = "mean fraction of bins kept" + (" over SGS layers" if len(a.num_bins) > 1 else "")
        return df["frac_kept"], what
    # B unknown: rank by the mean of the active bins themselves
    return df[[bins_column(x) for x in a.layers]].mean(axis=1, skipna=True), "mean active bins (B unknown)"


def per_video_values(log: pd.DataFrame | RunAnalysis, by: str, ensemble: str = "sum") -> tuple[pd.DataFrame, str]:
    """Per ok video: class, sum and count of the ranked per-view quantity (``by="top1"``: per
    labelled ok video, 100 when its top-1 is right, else 0, count 1), and what it is."""
    a = RunAnalysis.of(log)
    df = a.views
    if by == "top1":
        v = a.videos(check_ensemble(ensemble))
        v = v[(v["status"] == "ok") & v["top1"].notna()]
        pv = pd.DataFrame(
            {
                "video_id": v["video_id"].to_numpy(),
                "class_name": v["class_name"].to_numpy(),
                "sum": 100.0 * v["top1"].astype("float64").to_numpy(),
                "n": np.ones(len(v)),
            }
        )
        return pv, f"top-1 accuracy (%, video-level, views combined by {ensemble})"
    x, what = _metric(a, by)
    ok = df["_ok"] & x.notna()
    t = pd.DataFrame({"video_id": df["video_id"][ok], "class_name": df["class_name"][ok], "x": x[ok].astype(float)})
    g = t.groupby("video_id", sort=True)
    pv = pd.DataFrame({"class_name": g["class_name"].first(), "sum": g["x"].sum(), "n": g["x"].size()})
    return pv.reset_index(), what


def _bootstrap(sums: np.ndarray, counts: np.ndarray, n_boot: int, seed: int, name: str) -> tuple[float, float]:
    """Percentile 95% CI of the view-weighted mean (sum of sums / sum of counts), resampling videos.

    Each class draws from its own generator, seeded by (seed, crc32(class name)), so a class's
    interval does not depend on which other classes are in the log."""
    n = len(sums)
    if n == 0:
        return np.nan, np.nan
    if n == 1 or n_boot <= 0:
        v = sums.sum() / counts.sum()
        return float(v), float(v)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])
    stats = np.empty(n_boot)
    step = max(1, 2_000_000 // n)  # bound the index matrix
    for a in range(0, n_boot, step):
        b = min(n_boot, a + step)
        idx = rng.integers(0, n, size=(b - a, n))
        stats[a:b] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def class_values(
    log: pd.DataFrame | RunAnalysis, by: str = "gmacs", n_boot: int = 1000, seed: int = 0, ensemble: str = "sum"
) -> pd.DataFrame:
    """Per class (with at least one ok video): ``class_name, value, ci_low, ci_high, videos``.

    ``value`` is the mean over the class's ok views of the ranked quantity (GMACs per view, or the
    fraction of bins kept averaged over SGS layers), or with ``by="top1"`` the class's video-level
    top-1 (%, over its labelled ok videos); the CI is a percentile bootstrap (95%) that
    resamples the class's videos. Sorted by value, then class name."""
    check_by(by)
    pv, what = per_video_values(log, by, ensemble)
    rows = []
    for name, grp in pv.groupby("class_name", sort=True):
        s, c = grp["sum"].to_numpy(float), grp["n"].to_numpy(float)
        lo, hi = _bootstrap(s, c, n_boot, seed, str(name))
        rows.append({"class_name": name, "value": s.sum() / c.sum(), "ci_low": lo, "ci_high": hi, "videos": len(grp)})
    out = pd.DataFrame(rows, columns=["class_name", "value", "ci_low", "ci_high", "videos"])
    out["videos"] = out["videos"].astype("int64")
    out = out.sort_values(["value", "class_name"], kind="stable").reset_index(drop=True)
    out.attrs = {"by": by, "metric": what}
    return out


def below_min_videos(
    log: pd.DataFrame | RunAnalysis, min_videos: int, by: str = "gmacs", ensemble: str = "sum"
) -> pd.DataFrame:
    """Classes left out of a ranking because they have fewer than ``min_videos`` ok videos
    (``by="top1"``: labelled ok videos): ``class_name, videos`` (0 for classes whose every video
    failed), sorted by name."""
    check_by(by)
    a = RunAnalysis.of(log)
    pv, _ = per_video_values(a, by, ensemble)
    counts = pv.groupby("class_name").size().reindex(sorted(set(a.views["class_name"])), fill_value=0)
    small = counts[counts < max(1, int(min_videos))]
    return pd.DataFrame({"class_name": small.index.astype(str), "videos": small.to_numpy(dtype="int64")})


def _overlaps(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Per row of ``a``: its CI overlaps the CI of some row of ``b``."""
    if len(b) == 0:
        return np.zeros(len(a), bool)
    lo, hi = a["ci_low"].to_numpy()[:, None], a["ci_high"].to_numpy()[:, None]
    return ((lo <= b["ci_high"].to_numpy()[None, :]) & (b["ci_low"].to_numpy()[None, :] <= hi)).any(axis=1)


def rank_classes(log: pd.DataFrame | RunAnalysis, spec: RankingSpec) -> pd.DataFrame:
    """:func:`ranking` of a run by a :class:`RankingSpec`."""
    a = RunAnalysis.of(log)
    vals = class_values(a, spec.by, spec.n_boot, spec.seed, spec.ensemble)
    small = below_min_videos(a, spec.min_videos, spec.by, spec.ensemble)
    eligible = vals[~vals["class_name"].isin(set(small["class_name"]))].reset_index(drop=True)
    n, k = len(eligible), int(spec.k)
    n_low, n_high = min(k, (n + 1) // 2), min(k, n // 2)
    low = eligible.iloc[:n_low].copy()
    low["end"], low["rank"] = "lowest", np.arange(1, n_low + 1)
    high = eligible.iloc[::-1].iloc[:n_high].copy() if n_high else eligible.iloc[:0].copy()
    high["end"], high["rank"] = "highest", np.arange(1, n_high + 1)
    low["overlaps_other_end"] = _overlaps(low, high)
    high["overlaps_other_end"] = _overlaps(high, low)
    out = pd.concat([low, high], ignore_index=True)[RANKING_COLUMNS]
    out["rank"] = out["rank"].astype("int64")
    out["overlaps_other_end"] = out["overlaps_other_end"].astype(bool)
    out.attrs = {
        "by": spec.by,
        "ensemble": spec.ensemble,
        "metric": vals.attrs.get("metric", spec.by),
        "k": k,
        "min_videos": int(spec.min_videos),
        "n_ranked": int(n),
        "below_min_videos": {str(c): int(v) for c, v in zip(small["class_name"], small["videos"])},
    }
    return out


def ranking(
    log: pd.DataFrame | RunAnalysis,
    by: str = "gmacs",
    k: int = 5,
    min_videos: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ensemble: str = "sum",
) -> pd.DataFrame:
    """The k classes with the lowest and the k with the highest ``by`` value.

    ``by="gmacs"``: mean GMACs per view; ``by="bins"``: mean fraction of bins kept over the SGS
    layers (mean active bins when B is unknown; AnalysisError for a log without bins columns);
    ``by="top1"``: video-level top-1 (%; views combined by ``ensemble``).
    Only classes with at least ``min_videos`` ok videos are ranked. With fewer than 2k of them the
    two ends split the classes (the lowest end gets the odd one), so no class is at both ends.

    Returns a DataFrame with columns ``end`` ("lowest" | "highest"), ``rank`` (1 = most extreme),
    ``class_name, value, ci_low, ci_high`` (bootstrap 95% CI over the class's videos,
    ``n_boot`` resamples, deterministic for a ``seed``), ``videos`` and ``overlaps_other_end``
    (its CI overlaps the CI of some class at the other end). ``attrs``: ``by``, ``metric`` (what
    ``value`` is), ``k``, ``min_videos``, ``n_ranked`` and ``below_min_videos`` ({class: ok
    videos} of the classes left out; the same as :func:`below_min_videos`).
    """
    return rank_classes(log, RankingSpec(by, k, min_videos, n_boot, seed, ensemble))

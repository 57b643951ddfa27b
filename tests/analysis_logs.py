"""Synthetic profiling logs (schema version 1) for the analysis tests: no model, no video."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

LAYER = "s2.ts_layer"


def build_log(
    videos: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    layers: dict[str, int] | None = None,
    crops: int = 1,
    meta: dict[str, Any] | None = None,
    drop_meta: Sequence[str] = (),
) -> pd.DataFrame:
    """A views table from explicit videos.

    Each video: ``{"label": int, "views": [view, ...]}`` with a view ``{"bins": {layer: int} or
    int (single layer), "gmacs": float, "scores": [float, ...], "status": "ok"|"failed"}``;
    views are ordered temporal-major (view = t * crops + s). ``layers``: {layer: B}; None -> no
    bins columns (a baseline run). ``meta`` overrides defaults; ``drop_meta`` removes keys."""
    layers = dict(layers or {})
    C = len(class_names)
    rows = []
    for vid, v in enumerate(videos):
        for i, view in enumerate(v["views"]):
            ok = view.get("status", "ok") == "ok"
            scores = np.asarray(view.get("scores", np.full(C, 1.0 / C)), dtype="float32")
            order = np.argsort(-scores, kind="stable")[:5]
            row = {
                "video_id": vid,
                "path": f"videos/{vid:04d}.mp4",
                "label": int(v["label"]),
                "class_name": class_names[v["label"]] if v["label"] >= 0 else "",
                "view": i,
                "temporal_index": i // crops,
                "spatial_index": i % crops,
                "frame_start": 10 * (i // crops),
                "frame_end": 10 * (i // crops) + 15,
                "status": "ok" if ok else "failed",
                "error": None if ok else "RuntimeError: decode failed",
            }
            b = view.get("bins")
            for layer in layers:
                val = b.get(layer) if isinstance(b, dict) else b
                row[f"bins.{layer}"] = val if ok else None
            g = float(view.get("gmacs", np.nan))
            row["gmacs"] = g if ok else np.nan
            row["gmacs_fvcore"] = 1.05 * g if ok else np.nan
            row["gmacs_executed"] = g if ok else np.nan
            row["top5_ids"] = order.astype("int64") if ok else None
            row["top5_scores"] = scores[order] if ok else None
            row["scores"] = scores if ok else None
            rows.append(row)
    cols = (
        [
            "video_id",
            "path",
            "label",
            "class_name",
            "view",
            "temporal_index",
            "spatial_index",
            "frame_start",
            "frame_end",
            "status",
            "error",
        ]
        + [f"bins.{l}" for l in layers]
        + ["gmacs", "gmacs_fvcore", "gmacs_executed", "top5_ids", "top5_scores", "scores"]
    )
    df = pd.DataFrame(rows, columns=cols)
    for l in layers:
        df[f"bins.{l}"] = df[f"bins.{l}"].astype("Int64")
    for c in ("gmacs", "gmacs_fvcore", "gmacs_executed"):
        df[c] = df[c].astype("float64")
    df["error"] = df["error"].astype(object)
    nviews = max((len(v["views"]) for v in videos), default=0)
    m = {
        "schema_version": 1,
        "model": "x3d_s_atfr" if layers else "x3d_s",
        "params": 3_790_000,
        "num_classes": C,
        "class_names": list(class_names),
        "views": nviews // crops,
        "crops": crops,
        "crop": 160,
        "frames": [13],
        "sgs_layers": {l: {"num_bins": b} for l, b in layers.items()},
        "static_gmacs": 2.0,
        "static_gmacs_fvcore": 2.1,
        "convention": "conv_fc",
        "batching": "exact",
    }
    m.update(meta or {})
    for k in drop_meta:
        m.pop(k, None)
    df.attrs["meta"] = m
    return df


def one_hot(C: int, label: int, p: float = 0.6) -> list[float]:
    s = np.full(C, (1 - p) / (C - 1)) if C > 1 else np.ones(1)
    if C > 1:
        s[label] = p
    return s.tolist()


def planted_log(
    n_classes: int = 8,
    videos_per_class: int = 6,
    views: int = 4,
    crops: int = 1,
    B: int = 16,
    layers: Sequence[str] = (LAYER,),
    seed: int = 0,
    baseline: bool = False,
    failed_views: int = 0,
    static_gmacs: float = 2.0,
) -> pd.DataFrame:
    """Class i keeps about 2 + i bins (of B) with view noise, so its bins and GMACs rank as i.
    GMACs per view = 0.5 + 0.1 * total active bins (baseline: static_gmacs). Scores are random
    with the label boosted on most videos. The first ``failed_views`` views (video order) fail."""
    rng = np.random.default_rng(seed)
    names = [f"class {chr(ord('a') + i)} with a long name number {i}" for i in range(n_classes)]
    vids = []
    nfail = failed_views
    for c in range(n_classes):
        for _ in range(videos_per_class):
            vv = []
            for _ in range(views * crops):
                bins = {l: int(np.clip(2 + c + rng.integers(-1, 2), 1, B)) for l in layers}
                s = rng.dirichlet(np.ones(n_classes))
                if rng.random() < 0.35 + 0.1 * (c % 4):
                    s = 0.6 * s + 0.4 * np.eye(n_classes)[c]
                g = static_gmacs if baseline else 0.5 + 0.1 * sum(bins.values())
                status = "ok"
                if nfail > 0:
                    status, nfail = "failed", nfail - 1
                vv.append({"bins": bins, "gmacs": g, "scores": s.tolist(), "status": status})
            vids.append({"label": c, "views": vv})
    return build_log(
        vids,
        names,
        layers=None if baseline else {l: B for l in layers},
        crops=crops,
        meta={"static_gmacs": static_gmacs},
    )


def write_run(run_dir, log: pd.DataFrame, meta: dict[str, Any] | None = None):
    """Write a views table as a run folder (run.json + one part), as the profiler does, so the
    CLI can read it; ``meta`` overrides keys of ``log.attrs["meta"]``. Returns the folder."""
    from pathlib import Path

    from atfr_analysis.profile.log import write_meta, write_parts

    run_dir = Path(run_dir)
    m = dict(log.attrs["meta"])
    m.update(meta or {})
    layers = [c[len("bins.") :] for c in log.columns if c.startswith("bins.")]
    vids = []
    for vid, g in log.groupby("video_id"):
        ok = g[g["status"] == "ok"]
        s = np.sum(np.stack(ok["scores"].tolist()), axis=0).astype("float32") if len(ok) else None
        vids.append(
            {
                "video_id": vid,
                "path": g["path"].iloc[0],
                "label": g["label"].iloc[0],
                "class_name": g["class_name"].iloc[0],
                "status": "ok" if len(ok) else "failed",
                "error": None if len(ok) else "all views failed",
                "views_ok": len(ok),
                "scores_sum": s,
                "top1_id": int(np.argmax(s)) if s is not None else -1,
            }
        )
    write_meta(run_dir, m)
    write_parts(run_dir, log.to_dict("records"), vids, layers, "0of1-20260101T000000000000-test-0")
    return run_dir

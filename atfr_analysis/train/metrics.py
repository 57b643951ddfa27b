"""``metrics.csv`` (one row per epoch) and ``metrics.png`` (accuracy, loss and GFLOPs x views
against the epoch), written by rank 0 into the run folder after every epoch."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["append_metrics", "plot_metrics", "METRIC_COLUMNS"]

#: the fixed columns; one ``mean_bins_<layer>`` column per SGS layer follows ``val_mean_class_acc``
METRIC_COLUMNS = (
    "epoch",
    "step",
    "loss",
    "lr",
    "train_top1",
    "val_top1",
    "val_top5",
    "val_mean_class_acc",
    "gmacs_x_views",
    "clips_per_s",
    "seconds",
)


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def append_metrics(path: Path, row: dict) -> list[dict]:
    """Add the row of the epoch just ended (a resumed run's rows of epochs it runs again replace
    the old ones); rewrites the file atomically. Returns all rows."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < int(row["epoch"])]
    flat = {k: _fmt(v) for k, v in row.items() if k != "mean_bins"}
    flat.update({f"mean_bins_{k}": _fmt(v) for k, v in (row.get("mean_bins") or {}).items()})
    rows.append(flat)
    bins = sorted({k for r in rows for k in r if k.startswith("mean_bins_")})
    cols = list(METRIC_COLUMNS[:8]) + bins + list(METRIC_COLUMNS[8:])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return rows


def _col(rows, name):
    pts = [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_metrics(rows: list[dict], path: Path) -> Path:
    """Three panels against the epoch: top-1 (train, validation), loss, GFLOPs x views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atfr_analysis.analysis.plots import PNG_METADATA

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    try:
        for name, label in (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5")):
            x, y = _col(rows, name)
            if x:
                axes[0].plot(x, y, marker="o", label=label)
        axes[0].set(xlabel="epoch", ylabel="%", title="accuracy")
        axes[0].legend(fontsize=8)
        axes[1].plot(*_col(rows, "loss"), marker="o")
        axes[1].set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
        x, y = _col(rows, "gmacs_x_views")
        axes[2].plot(x, y, marker="o")
        if not x:
            axes[2].text(0.5, 0.5, "no validation run", ha="center", va="center", transform=axes[2].transAxes)
        axes[2].set(xlabel="epoch", ylabel="GFLOPs x views (1 FLOP = 1 MAC, fvcore)", title="validation cost")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    finally:
        plt.close(fig)
    return path

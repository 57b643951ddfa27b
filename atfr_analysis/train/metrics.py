"""``metrics.csv``: one row per epoch of the run (rank 0 appends it)."""
from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["append_metrics", "METRIC_COLUMNS"]

METRIC_COLUMNS = ("epoch", "step", "loss", "lr", "train_top1", "val_top1", "seconds")


def append_metrics(path: Path, state, lr: float, seconds: float) -> None:
    """The row of the epoch just ended; a resumed run appends to its file (rows of epochs that it
    runs again after an interruption are replaced)."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < state.epoch]
    rows.append({
        "epoch": state.epoch, "step": state.step, "loss": f"{state.losses[-1]:.6g}", "lr": f"{lr:.6g}",
        "train_top1": f"{state.accs[-1]:.4g}", "val_top1": f"{state.val_accs[-1]:.4g}" if state.val_accs else "",
        "seconds": f"{seconds:.1f}",
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)

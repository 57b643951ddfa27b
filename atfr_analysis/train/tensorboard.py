"""``--tensorboard DIR`` (the optional ``tensorboard`` extra): the scalars of ``metrics.csv`` per
epoch, and the histogram of each SGS layer's active bins B' over the validation views, where
PySlowFast users look for them."""

from __future__ import annotations

import numbers
from pathlib import Path

from atfr_analysis.errors import InputError

__all__ = ["TensorBoard"]


class TensorBoard:
    def __init__(self, logdir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError(
                "--tensorboard needs the tensorboard package: pip install 'atfr-analysis[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(logdir))

    def epoch(self, row: dict) -> None:
        """One epoch's row: scalars at its global step, the bins' histograms of its validation."""
        step = int(row["step"])
        for k, v in row.items():
            if k not in ("epoch", "step") and isinstance(v, numbers.Real):
                self.writer.add_scalar(f"train/{k}", float(v), step)
        for layer, v in (row.get("mean_bins") or {}).items():
            self.writer.add_scalar(f"bins/mean/{layer}", float(v), step)
        if row.get("val_folder"):
            self._bins(Path(row["val_folder"]), step)
        self.writer.flush()

    def _bins(self, folder: Path, step: int) -> None:
        from atfr_analysis.profile.log import load_run
        from atfr_analysis.profile.schema import bins_column, bins_layers

        df = load_run(folder)
        for layer in bins_layers(df.columns):
            vals = df[bins_column(layer)].dropna().to_numpy()
            if len(vals):
                self.writer.add_histogram(f"bins/{layer}", vals, step)

    def close(self) -> None:
        self.writer.close()

"""Validation into the profile's own log: the epoch's weights through ``run_profile`` with the
test protocol asked for (``val_views`` x ``val_crops``; 1 x 1 centre view by default), written as
a run folder ``<run>/val/epoch_NNN/`` that ``atfr report`` and ``atfr table`` open, with the
checkpoint it profiled beside it (``epoch_NNN.pyth``)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

__all__ = ["validate_epoch", "write_val_list"]


def write_val_list(entries, path: Path) -> Path:
    """The validation videos as a PySlowFast list (absolute paths), for the profile to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{Path(e.path).resolve()} {int(e.label)}\n" for e in entries))
    return path


def validate_epoch(net: nn.Module, cfg, root: Path, val_list: Path, epoch: int, device) -> dict:
    """Profile the weights of ``epoch`` on ``val_list``; the metrics of its summary."""
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.profile.config import ProfileConfig
    from atfr_analysis.profile.run import run_profile
    from atfr_analysis.train.recipe import make_record

    was_training = net.training
    ck = save_checkpoint(
        root / "val" / f"epoch_{epoch:03d}.pyth",
        net,
        make_record(net, cfg.model, {"validation_of_epoch": epoch}),
        epoch=epoch,
    )
    out = root / "val" / f"epoch_{epoch:03d}"
    pc = ProfileConfig(
        ck,
        cfg.model,
        val_list,
        out,
        labels=cfg.labels,
        views=cfg.val_views,
        crops=cfg.val_crops,
        batching=cfg.batching,
        device=str(device),
        workers=cfg.workers,
        batch_size=1,
        max_failed_fraction=1.0,
        quiet=True,
        resume=out.exists(),
        command=["atfr", "train", "(validation of epoch", str(epoch) + ")"],
    )
    s = run_profile(pc)
    net.train(was_training)
    bins = s.mean_bins or {}
    return {
        "val_top1": s.top1,
        "val_top5": s.top5,
        "val_mean_class_acc": s.mean_class_acc,
        "gmacs_x_views": s.gmacs_x_views,
        "mean_bins": {str(k): float(v) for k, v in bins.items()},
        "val_folder": str(out),
    }

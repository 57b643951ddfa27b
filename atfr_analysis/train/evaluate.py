"""Validation on the centre view (one clip, centre crop) of each video."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["evaluate_centre"]


@torch.no_grad()
def evaluate_centre(model: nn.Module, entries, spec, dev) -> float:
    """Top-1 (%) on the centre view of each video (one temporal clip, centre crop)."""
    from atfr_analysis.data.datasets import ViewDataset

    model.eval()
    ds = ViewDataset(entries, spec, views=1, crops=1)
    correct = n = 0
    for k in range(len(ds)):
        item = ds[k]
        if item["status"] != "ok":
            continue
        xs = [p.to(dev) for p in item["pathways"]]
        pred = int(model(xs).argmax(1)[0])
        correct += int(pred == entries[k].label)
        n += 1
    model.train()
    return 100.0 * correct / max(n, 1)

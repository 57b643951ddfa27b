"""Can a data set's classes be told apart by what a clip shows? A quick probe, before training long.

``separability(list_path, labels)`` decodes every clip of a PySlowFast list, describes each by its
*change profile*: the mean absolute difference between consecutive frames (``T - 1`` values, on
frames scaled to ``[0, 1]``), sorted, as ``log(1e-4 + d)``; then holds out a stratified
``val_fraction`` of the clips (the trainer's hold-out, :func:`atfr_analysis.train.data.split_validation`,
with the same seed) and classifies each held-out clip by its nearest class mean of the others
(standardised features). Returns the held-out top-1 per class and overall.

What it measures: whether how much and how often a clip's picture changes separates its classes
(what a temporal-redundancy class is about), not what a network learns. A class near chance here
differs from another only in something the profile does not see (appearance, direction of time:
``reverse`` has the profile of ``normal``); a 3D CNN may still tell it apart, but not from this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["change_profile", "separability"]


def change_profile(frames) -> np.ndarray:
    """``[T, H, W, C]`` uint8 frames -> the sorted ``log(1e-4 + mean |frame[t+1] - frame[t]|)``, ``T - 1`` values."""
    x = np.asarray(frames, dtype=np.float32) / 255.0
    d = np.abs(np.diff(x, axis=0)).reshape(x.shape[0] - 1, -1).mean(axis=1)
    return np.log(1e-4 + np.sort(d))


def separability(
    list_path: str | Path,
    labels: str | Path | dict | None = None,
    *,
    data_root: str | Path | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Held-out nearest-class-mean top-1 (%) per class on change profiles: columns ``class_name``,
    ``videos`` (held out), ``top1``; the last row is ``overall``."""
    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.data.video import decode_video
    from atfr_analysis.errors import InputError
    from atfr_analysis.train.data import split_validation

    entries = read_video_list(list_path, labels=labels, data_root=data_root)
    train, val = split_validation(entries, val_fraction, seed)
    if not val:
        raise InputError("separability: the hold-out is empty; give a val_fraction > 0 and two or more clips per class")

    def features(es) -> np.ndarray:
        return np.stack([change_profile(decode_video(e.path)[0].numpy()) for e in es])

    xt, xv = features(train), features(val)
    yt, yv = np.array([e.label for e in train]), np.array([e.label for e in val])
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    xt, xv = (xt - mu) / sd, (xv - mu) / sd
    classes = sorted(set(yt.tolist()))
    centres = np.stack([xt[yt == c].mean(0) for c in classes])
    pred = np.array(classes)[((xv[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)]
    names = {e.label: e.class_name for e in entries}
    rows = [
        {"class_name": names[c], "videos": int((yv == c).sum()), "top1": float(100 * (pred[yv == c] == c).mean())}
        for c in sorted(set(yv.tolist()))
    ]
    rows.append({"class_name": "overall", "videos": len(yv), "top1": float(100 * (pred == yv).mean())})
    return pd.DataFrame(rows)

"""The whole-video view pipeline the tests compare ``data.views.sample_views`` with: decode every
frame, resize and normalise the frames some view needs (float), cut the ``views x crops`` views
(PySlowFast's order and crops). Test-only: the library samples views with ``sample_views``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atfr_analysis.data.transforms import (
    TARGET_FPS,
    crop_offset,
    crop_positions,
    pack_pathways,
    prepare_frame,
    view_indices,
)
from atfr_analysis.models.base import InputSpec


def prepare_frames(frames: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 ``[K, H, W, 3]`` -> float ``[K, 3, H', W']``: short side resized to ``crop``, normalised.

    Frames are processed one at a time (bounded memory); the result equals PySlowFast's
    resize of the whole clip (every frame plane is interpolated independently).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {tuple(frames.shape)}")
    return torch.stack([prepare_frame(f, crop) for f in frames])


def views_from_frames(
    frames: torch.Tensor,
    frame_ids: Sequence[int] | None,
    num_video_frames: int,
    fps: float,
    spec: InputSpec,
    views: int,
    crops: int,
    crop: int | None = None,
    target_fps: float = TARGET_FPS,
) -> tuple[list[torch.Tensor], dict[str, list]]:
    """The ``views x crops`` test views from prepared frames.

    ``frames``: float ``[K, 3, H', W']`` from ``prepare_frames`` (short side = ``crop``);
    ``frames[k]`` is video frame ``frame_ids[k]`` (``None``: the whole video, ``k`` itself).
    Returns the pathway tensors ``[V * Cr, 3, T_p, S, S]`` and per-view metadata lists
    (``view``, ``temporal_index``, ``spatial_index``, ``crop_position``, ``frame_start``,
    ``frame_end``, ``clip_start``, ``clip_end``, ``frame_indices``); ``view = temporal_index *
    crops + spatial_index``.
    """
    crop = spec.test_crop if crop is None else int(crop)
    positions = crop_positions(crops)
    tviews = view_indices(num_video_frames, fps, spec, views, target_fps)
    if frame_ids is None:
        row = None
    else:
        row = {int(f): k for k, f in enumerate(frame_ids)}
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected prepared frames [K, 3, H, W], got {tuple(frames.shape)}")
    _, _, h, w = frames.shape
    if min(h, w) != crop:
        raise ValueError(f"frames must have their short side at the crop {crop}, got {h}x{w}")
    t = spec.clip_frames
    n = views * crops
    fast = frames.new_empty((n, 3, t, crop, crop))
    meta: dict[str, list] = {
        k: []
        for k in (
            "view",
            "temporal_index",
            "spatial_index",
            "crop_position",
            "frame_start",
            "frame_end",
            "clip_start",
            "clip_end",
            "frame_indices",
        )
    }
    offsets = [crop_offset(h, w, crop, p) for p in positions]
    for tv in tviews:
        ids = tv.indices.tolist()
        if row is not None:
            try:
                rows = [row[i] for i in ids]
            except KeyError as e:
                raise ValueError(f"frame {e.args[0]} needed by view {tv.temporal_index} was not decoded") from None
        else:
            rows = ids
        for s, (p, (y0, x0)) in enumerate(zip(positions, offsets)):
            v = tv.temporal_index * crops + s
            out_v = fast[v]
            # frame by frame, straight into the output (much faster than index_select on a crop)
            for j, r in enumerate(rows):
                out_v[:, j].copy_(frames[r, :, y0 : y0 + crop, x0 : x0 + crop])
            meta["view"].append(v)
            meta["temporal_index"].append(tv.temporal_index)
            meta["spatial_index"].append(s)
            meta["crop_position"].append(p)
            meta["frame_start"].append(tv.frame_start)
            meta["frame_end"].append(tv.frame_end)
            meta["clip_start"].append(float(tv.start))
            meta["clip_end"].append(float(tv.end))
            meta["frame_indices"].append(ids)
    return pack_pathways(fast, spec), meta


def make_views(
    frames: torch.Tensor,
    fps: float,
    spec: InputSpec,
    views: int | None = None,
    crops: int | None = None,
    crop: int | None = None,
    target_fps: float = TARGET_FPS,
) -> tuple[list[torch.Tensor], dict[str, list]]:
    """All test views of a whole decoded video (uint8 ``[N, H, W, 3]``): the pathway tensors
    ``[V * Cr, 3, T_p, S, S]`` (float32) and per-view metadata (see ``views_from_frames``).

    ``views``/``crops``/``crop`` default to the spec's ``num_views``/``num_crops``/``test_crop``.
    Only the frames some view uses are resized.
    """
    views = spec.num_views if views is None else views
    crops = spec.num_crops if crops is None else crops
    crop = spec.test_crop if crop is None else crop
    n = frames.shape[0]
    needed = sorted({i for tv in view_indices(n, fps, spec, views, target_fps) for i in tv.indices.tolist()})
    prepared = prepare_frames(frames[needed], crop)
    return views_from_frames(prepared, needed, n, fps, spec, views, crops, crop, target_fps)

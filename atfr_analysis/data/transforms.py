"""PySlowFast's multi-view test protocol (and its random training clip), natively.

Temporal sampling (PySlowFast ``decoder.get_start_end_idx`` / ``temporal_sampling`` on a fully
decoded video, ``DATA.TARGET_FPS = 30``): a clip covers
``clip_size = sampling_rate * num_frames / target_fps * fps`` video frames; the ``i``-th of ``views``
test clips starts at ``start = max(N - clip_size, 0) * i / views`` and ends at
``end = start + clip_size - 1``; its frames are ``linspace(start, end, num_frames)`` clamped to
``[0, N - 1]`` and truncated to integers (a video shorter than a clip repeats its last frames).

Spatial (PySlowFast ``transform.random_short_side_scale_jitter`` with min = max = the test crop,
then ``uniform_crop``): the short side is resized to the crop (bilinear, ``align_corners=False``;
the long side becomes ``floor(long / short * crop)``), then a ``crop x crop`` square is taken at
one end, the centre or the other end of the long side (PySlowFast's ``spatial_idx`` 0, 1, 2; with
one crop, the centre: ``spatial_idx`` 1).

Normalisation: ``(x / 255 - 0.45) / 0.225`` per channel. PySlowFast normalises before resizing;
bilinear interpolation is an affine combination with weights summing to 1, so the order changes
results only by float rounding (about 1e-6); here frames are resized first (cheaper).

Layout ``[3, T, S, S]``; SlowFast packing as PySlowFast's ``pack_pathway_output``: the slow
pathway is ``index_select(fast, T, linspace(0, T - 1, T // alpha).long())``.

View order (``make_views``): ``view = temporal_index * crops + spatial_index``, ``spatial_index``
in ``0 .. crops - 1``; ``crop_position`` holds PySlowFast's ``spatial_idx`` (0/1/2; 1 when
``crops == 1``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from atfr_analysis.models.base import InputSpec

__all__ = [
    "TARGET_FPS",
    "MEAN",
    "STD",
    "TemporalView",
    "clip_size",
    "get_start_end_idx",
    "sample_indices",
    "temporal_indices",
    "view_indices",
    "crop_positions",
    "short_side_size",
    "resize_short_side",
    "crop_offset",
    "uniform_crop",
    "normalize",
    "pack_pathways",
    "prepare_frames",
    "views_from_frames",
    "make_views",
]

TARGET_FPS = 30
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


# ----------------------------------------------------------------------------- temporal
def clip_size(spec: InputSpec, fps: float, target_fps: float = TARGET_FPS) -> float:
    """Video frames covered by one clip: ``sampling_rate * num_frames / target_fps * fps``."""
    return spec.sampling_rate * spec.clip_frames / target_fps * fps


def get_start_end_idx(
    video_size: int,
    size: float,
    clip_idx: int,
    num_clips: int,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Start and end (float frame positions) of a clip of ``size`` frames, as PySlowFast.

    ``clip_idx == -1``: a random start, uniform in ``[0, delta]`` (training); otherwise the
    ``clip_idx``-th of ``num_clips`` uniformly spaced starts ``delta * clip_idx / num_clips``.
    """
    if clip_idx < -1 or (clip_idx >= 0 and not 0 <= clip_idx < num_clips):
        raise ValueError(f"clip_idx must be -1 or in [0, {num_clips}), got {clip_idx}")
    delta = max(video_size - size, 0)
    if clip_idx == -1:
        start = float(torch.rand((), generator=generator, dtype=torch.float64)) * delta
    else:
        start = delta * clip_idx / num_clips
    return start, start + size - 1


def sample_indices(start: float, end: float, num_samples: int, video_size: int) -> torch.Tensor:
    """``linspace(start, end, num_samples)`` clamped to ``[0, video_size - 1]``, truncated (long)."""
    idx = torch.linspace(start, end, num_samples)
    return torch.clamp(idx, 0, video_size - 1).long()


@dataclass(frozen=True)
class TemporalView:
    """One temporal test clip: PySlowFast's float ``start``/``end`` and the sampled frame ``indices``."""

    temporal_index: int
    start: float
    end: float
    indices: torch.Tensor

    @property
    def frame_start(self) -> int:
        return int(self.indices[0])

    @property
    def frame_end(self) -> int:
        return int(self.indices[-1])


def _check_video(num_video_frames: int, fps: float) -> None:
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_video_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")


def temporal_indices(
    num_video_frames: int,
    fps: float,
    spec: InputSpec,
    clip_idx: int = -1,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
    target_fps: float = TARGET_FPS,
) -> torch.Tensor:
    """Frame indices (long ``[T]``, T = ``spec.clip_frames``) of one clip.

    ``clip_idx = -1`` samples a random clip (PySlowFast's training sampling, drawn from
    ``generator``); ``clip_idx = i`` gives the ``i``-th of ``num_clips`` test clips.
    """
    _check_video(num_video_frames, fps)
    start, end = get_start_end_idx(
        num_video_frames, clip_size(spec, fps, target_fps), clip_idx, num_clips, generator
    )
    return sample_indices(start, end, spec.clip_frames, num_video_frames)


def view_indices(
    num_video_frames: int,
    fps: float,
    spec: InputSpec,
    views: int,
    target_fps: float = TARGET_FPS,
) -> list[TemporalView]:
    """The ``views`` temporal test clips of a video of ``num_video_frames`` frames at ``fps``."""
    _check_video(num_video_frames, fps)
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    size = clip_size(spec, fps, target_fps)
    out = []
    for i in range(views):
        start, end = get_start_end_idx(num_video_frames, size, i, views)
        out.append(TemporalView(i, start, end, sample_indices(start, end, spec.clip_frames, num_video_frames)))
    return out


# ----------------------------------------------------------------------------- spatial
def crop_positions(crops: int) -> list[int]:
    """PySlowFast ``spatial_idx`` of each crop: ``[0, 1, 2]`` for 3 crops, ``[1]`` (centre) for 1."""
    if crops == 3:
        return [0, 1, 2]
    if crops == 1:
        return [1]
    raise ValueError(f"crops must be 1 or 3 (PySlowFast's uniform crops), got {crops}")


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new height, new width) with the short side at ``size``, the long side ``floor``-ed."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[..., H, W]`` (float) so that its short side is ``size`` (bilinear, no corner
    alignment); returned unchanged when the short side already is ``size``."""
    h, w = x.shape[-2:]
    if (w <= h and w == size) or (h <= w and h == size):
        return x
    nh, nw = short_side_size(h, w, size)
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(1, -1, h, w), size=(nh, nw), mode="bilinear", align_corners=False)
    return y.reshape(*lead, nh, nw)


def crop_offset(height: int, width: int, size: int, spatial_idx: int) -> tuple[int, int]:
    """(y, x) of PySlowFast's ``uniform_crop``: centre, or one end of the long side (0 / 2)."""
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} out of {height}x{width}")
    y = int(math.ceil((height - size) / 2))
    x = int(math.ceil((width - size) / 2))
    if height > width:
        if spatial_idx == 0:
            y = 0
        elif spatial_idx == 2:
            y = height - size
    else:
        if spatial_idx == 0:
            x = 0
        elif spatial_idx == 2:
            x = width - size
    return y, x


def uniform_crop(x: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """The ``size x size`` crop of ``[..., H, W]`` at PySlowFast's ``spatial_idx`` (0, 1 = centre, 2)."""
    h, w = x.shape[-2:]
    y0, x0 = crop_offset(h, w, size, spatial_idx)
    return x[..., y0 : y0 + size, x0 : x0 + size]


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    channel_dim: int = 0,
) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel; ``x`` on the 0..255 scale (uint8 or float), channels at
    ``channel_dim`` (``[3, T, H, W]`` by default). Returns float32 (a new tensor)."""
    x = x.float() if x.dtype != torch.float32 else x
    c = x.shape[channel_dim]
    shape = [1] * x.ndim
    shape[channel_dim] = c
    m = torch.as_tensor(mean, dtype=torch.float32).reshape(shape)
    s = torch.as_tensor(std, dtype=torch.float32).reshape(shape)
    return (x / 255.0 - m) / s


def pack_pathways(clip: torch.Tensor, spec: InputSpec | int | None) -> list[torch.Tensor]:
    """PySlowFast's ``pack_pathway_output``: ``[clip]`` for single-pathway models, ``[slow, fast]``
    for SlowFast (``spec.alpha`` set, or ``spec`` an int alpha), the slow pathway being
    ``T // alpha`` frames of the fast one at ``linspace(0, T - 1, T // alpha).long()``.

    ``clip`` is ``[3, T, H, W]`` or ``[N, 3, T, H, W]`` (time is dim -3).
    """
    if isinstance(spec, InputSpec):
        alpha = spec.alpha if spec.num_pathways == 2 else None
    else:
        alpha = spec
    if not alpha:
        return [clip]
    t = clip.shape[-3]
    idx = torch.linspace(0, t - 1, t // alpha).long().to(clip.device)
    return [clip.index_select(clip.ndim - 3, idx), clip]


# ----------------------------------------------------------------------------- views
def prepare_frames(frames: torch.Tensor, crop: int) -> torch.Tensor:
    """uint8 ``[K, H, W, 3]`` -> float ``[K, 3, H', W']``: short side resized to ``crop``, normalised.

    Frames are processed one at a time (bounded memory); the result equals PySlowFast's
    resize of the whole clip (every frame plane is interpolated independently).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {tuple(frames.shape)}")
    return torch.stack([prepare_frame(f, crop) for f in frames])


def prepare_frame(frame, crop: int) -> torch.Tensor:
    """One uint8 ``[H, W, 3]`` frame (tensor or ndarray) -> float ``[3, H', W']`` resized, normalised."""
    x = torch.as_tensor(frame).permute(2, 0, 1).float()
    return normalize(resize_short_side(x, crop), channel_dim=0)


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
    meta: dict[str, list] = {k: [] for k in (
        "view", "temporal_index", "spatial_index", "crop_position", "frame_start", "frame_end",
        "clip_start", "clip_end", "frame_indices",
    )}
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

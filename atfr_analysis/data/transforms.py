"""PySlowFast's multi-view test protocol (and its random training clip), natively.

Temporal sampling (``DATA.TARGET_FPS = 30``): a clip covers
``clip_size = sampling_rate * num_frames / target_fps * fps`` video frames; the ``i``-th of ``views``
test clips starts at ``start = max(N - clip_size, 0) * i / views`` and ends at
``end = start + clip_size - 1`` (float frame positions). Two rules, as PySlowFast's PyAV path:

* full decode (``view_indices``; containers without a duration): the frames are
  ``linspace(start, end, num_frames)`` clamped to ``[0, N - 1]`` and truncated to integers (a
  video shorter than a clip repeats its last frames);
* presentation-time window (``clip_windows`` / ``window_span`` / ``window_positions``; containers
  with a duration, ``N`` the header's frame count): the window ``[int(start * tb), int(end * tb)]``
  in pts units (``tb = duration / N``) holds the frames whose pts fall in it, plus the first frame
  after it; inside those ``K`` frames the clip takes ``floor(linspace(0, clip_size - 1, T))``
  clamped to ``K - 1``.

Spatial (PySlowFast ``transform.random_short_side_scale_jitter`` with min = max = the short side
``S``, then ``uniform_crop``): the short side is resized to ``S`` (bilinear,
``align_corners=False``; the long side becomes ``floor(long / short * S)``; nothing is resized when
the short side already is ``S``), then a ``crop x crop`` square is taken at one end, the centre or
the other end of the long side (PySlowFast's ``spatial_idx`` 0, 1, 2; with one crop, the centre:
``spatial_idx`` 1). 3 crops: ``S = crop =`` the test crop; 1 crop: ``S`` is the first train jitter
scale and ``crop`` the 1-crop test size (``InputSpec.one_crop``, ``atfr_analysis.data.views.ViewProtocol``).

Normalisation: ``(x / 255 - 0.45) / 0.225`` per channel. PySlowFast normalises before resizing;
bilinear interpolation is an affine combination with weights summing to 1, so the order changes
results only by float rounding (about 1e-6); here frames are resized first (cheaper). Views may
also be kept in uint8 (the resized frames rounded to integers; exact when nothing is resized) and
normalised on the device that runs the model (``normalize_views``).

Layout ``[3, T, S, S]``; SlowFast packing as PySlowFast's ``pack_pathway_output``: the slow
pathway is ``index_select(fast, T, linspace(0, T - 1, T // alpha).long())``.

View order (``atfr_analysis.data.views.sample_views``): ``view = temporal_index * crops +
spatial_index``, ``spatial_index`` in ``0 .. crops - 1``; PySlowFast's ``spatial_idx`` is 0/1/2
(1 when ``crops == 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
    "ClipWindow",
    "clip_windows",
    "window_span",
    "window_positions",
    "crop_positions",
    "resized_size",
    "crop_box",
    "short_side_size",
    "resize_short_side",
    "crop_offset",
    "uniform_crop",
    "normalize",
    "normalize_views",
    "normalized_values",
    "checksum",
    "checksum_uint8",
    "resize_frame",
    "to_uint8",
    "pack_pathways",
    "slow_positions",
    "prepare_frame",
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
    start, end = get_start_end_idx(num_video_frames, clip_size(spec, fps, target_fps), clip_idx, num_clips, generator)
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


# ----------------------------------------------------------------------------- pts windows
@dataclass(frozen=True)
class ClipWindow:
    """One temporal test clip of a container with a duration: PySlowFast's float ``start``/``end``
    frame positions and the presentation-time window ``[start_pts, end_pts]`` (stream time base)
    that selective decoding asks for."""

    temporal_index: int
    start: float
    end: float
    start_pts: int
    end_pts: int
    size: float


def clip_windows(
    num_frames: int,
    duration: int,
    fps: float,
    spec: InputSpec,
    views: int,
    target_fps: float = TARGET_FPS,
) -> list[ClipWindow]:
    """The ``views`` clip windows of a video whose header lists ``num_frames`` frames and a stream
    ``duration`` (in time-base units): ``start``/``end`` as ``view_indices``, mapped to pts through
    ``tb = duration / num_frames`` (pts units per frame) as ``int(start * tb)``, ``int(end * tb)``."""
    _check_video(num_frames, fps)
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if not duration or duration <= 0:
        raise ValueError(f"a pts window needs a positive duration, got {duration}")
    size = clip_size(spec, fps, target_fps)
    tb = duration / num_frames
    out = []
    for i in range(views):
        start, end = get_start_end_idx(num_frames, size, i, views)
        out.append(ClipWindow(i, start, end, int(start * tb), int(end * tb), size))
    return out


def window_span(pts: Sequence[int], window: ClipWindow) -> tuple[int, int, bool] | None:
    """Which frames selective decoding gets for ``window``: ``(first, last, after)``, source indices
    into ``pts`` (every frame's pts, ascending: the presentation order of a full decode).

    The frames whose pts lie in ``[start_pts, end_pts]``, and the first frame after the window when
    the video has one (``after`` tells whether ``last`` is that frame). ``None`` when no frame falls
    in the window.
    """
    import bisect

    first = bisect.bisect_left(pts, window.start_pts)
    last = bisect.bisect_right(pts, window.end_pts) - 1
    if last < first:
        return None
    after = last + 1 < len(pts)
    return first, last + 1 if after else last, after


def window_positions(num_window_frames: int, size: float, num_samples: int) -> torch.Tensor:
    """Positions (long) inside a decoded window of ``num_window_frames`` frames:
    ``floor(linspace(0, size - 1, num_samples))`` clamped to ``num_window_frames - 1``."""
    if num_window_frames < 1:
        raise ValueError(f"a window needs at least one frame, got {num_window_frames}")
    return sample_indices(0.0, size - 1, num_samples, num_window_frames)


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


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after the short-side scale to ``short_side``: unchanged when the short side
    already is ``short_side``, else ``short_side_size``."""
    if min(height, width) == short_side:
        return height, width
    return short_side_size(height, width, short_side)


def crop_box(height: int, width: int, crop: int, spatial_idx: int) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` (end exclusive) of the ``crop x crop`` square at ``spatial_idx`` in a
    ``height x width`` (resized) frame; the fixtures' ``crop_box``."""
    y0, x0 = crop_offset(height, width, crop, spatial_idx)
    return y0, x0, y0 + crop, x0 + crop


def resize_frame(frame, short_side: int) -> torch.Tensor:
    """One uint8 ``[H, W, 3]`` frame (tensor or ndarray) -> float ``[3, H', W']`` on the 0..255 scale,
    the short side at ``short_side`` (bilinear, as ``resize_short_side``; not normalised)."""
    x = torch.as_tensor(frame).permute(2, 0, 1).float()
    return resize_short_side(x, short_side)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float 0..255 values rounded to the nearest integer (ties to even) and clamped, as uint8."""
    if x.dtype == torch.uint8:
        return x
    return x.round().clamp_(0, 255).to(torch.uint8)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    channel_dim: int = 0,
) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel; ``x`` on the 0..255 scale (uint8 or float), channels at
    ``channel_dim`` (``[3, T, H, W]`` by default). Returns float32 (a new tensor).

    One float32 buffer is allocated and the three steps run in place on it: the same float32
    operations in the same order as ``(x / 255 - mean) / std``, so bit-identical to it, without its
    two temporaries of the full size (a batch of SlowFast views at 256 is about 230 MB each)."""
    y = x.to(torch.float32, copy=True)
    c = y.shape[channel_dim]
    shape = [1] * y.ndim
    shape[channel_dim] = c
    m = torch.as_tensor(mean, dtype=torch.float32, device=y.device).reshape(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=y.device).reshape(shape)
    return y.div_(255.0).sub_(m).div_(s)


def normalize_views(
    x: torch.Tensor | Sequence[torch.Tensor],
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    device: torch.device | str | None = None,
    non_blocking: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Normalise views on ``device`` (the model's): uint8 (or float 0..255) ``[..., 3, T, H, W]``,
    or a list of pathway tensors, -> float32 ``(x / 255 - mean) / std`` on ``device``.

    The uint8 tensor is moved first (a quarter of the float32 bytes; ``non_blocking`` for pinned
    memory), then converted there. On the CPU the result is bit-identical to ``normalize`` of the
    same values (the same float32 operations).
    """
    if not isinstance(x, torch.Tensor):
        return [normalize_views(p, mean, std, device, non_blocking) for p in x]
    if x.ndim < 4 or x.shape[-4] != 3:
        raise ValueError(f"expected views [..., 3, T, H, W], got {tuple(x.shape)}")
    if device is not None:
        x = x.to(device, non_blocking=non_blocking)
    return normalize(x, mean, std, channel_dim=x.ndim - 4)


def normalized_values(mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """float32 ``[3, 256]``: what ``normalize`` maps each uint8 value of each channel to."""
    return normalize(torch.arange(256, dtype=torch.float32).expand(3, 256), mean, std, channel_dim=0)


def checksum(x: torch.Tensor) -> dict[str, float]:
    """``{"mean", "std"}`` of a (normalised) tensor in float64, population std (``ddof=0``)."""
    xd = x.detach().to("cpu", torch.float64)
    return {"mean": float(xd.mean()), "std": float(xd.std(correction=0))}


def checksum_uint8(
    x: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD, channel_dim: int = 0
) -> dict[str, float]:
    """``checksum(normalize(x))`` of a uint8 tensor without materialising the float tensor: every
    uint8 value of a channel has one normalised float32 value (``normalized_values``), so the
    moments follow from a histogram per channel (equal up to float64 summation order)."""
    if x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 tensor, got {x.dtype}")
    table = normalized_values(mean, std).double()
    xc = x.detach().cpu().movedim(channel_dim, 0)
    counts = torch.stack([torch.bincount(xc[c].reshape(-1), minlength=256) for c in range(xc.shape[0])]).double()
    n = counts.sum()
    m = (counts * table).sum() / n
    var = (counts * (table - m) ** 2).sum() / n
    return {"mean": float(m), "std": float(var.sqrt())}


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
    idx = slow_positions(clip.shape[-3], alpha).to(clip.device)
    return [clip.index_select(clip.ndim - 3, idx), clip]


def slow_positions(num_frames: int, alpha: int) -> torch.Tensor:
    """Positions of the fast clip that the slow pathway takes: ``linspace(0, T - 1, T // alpha)``
    truncated to integers (``[0, 10, 20, 31]`` for 32 frames and alpha 8)."""
    return torch.linspace(0, num_frames - 1, num_frames // alpha).long()


# ----------------------------------------------------------------------------- frames
def prepare_frame(frame, crop: int) -> torch.Tensor:
    """One uint8 ``[H, W, 3]`` frame (tensor or ndarray) -> float ``[3, H', W']`` resized, normalised."""
    x = torch.as_tensor(frame).permute(2, 0, 1).float()
    return normalize(resize_short_side(x, crop), channel_dim=0)

"""The Similarity Guided Sampling (SGS) layer, numerically as the official ATFR code does it.

Pipeline of :class:`SimilarityGuidedSampling` on ``x`` of shape ``[N, C, T, H, W]``:

1. **Embedding** (module): ``adaptive_avg_pool3d`` to ``(T, 1, 1)``, then ``fc`` =
   ``Linear(C, C/2) -> ReLU -> Linear(C/2, latent_dim)`` applied to the ``[N, T, C]`` view, then
   ``bn`` = ``BatchNorm1d(latent_dim)`` over ``[N, latent_dim, T]`` (train mode: batch statistics
   over the N*T positions, so a clip's bins depend on the rest of its batch; eval mode: clips are
   independent). Gives ``z`` ``[N, L, T]``.
2. **Sampling** (:func:`sample_from_embedding`, a pure function of ``x`` and ``z``):

   * distance ``Delta[n, t]``:

     - ``"l2_to_mean"`` (official, default): ``|| zbar - z_t + 1e-6 ||_2`` with ``zbar`` the
       clip's temporal mean of ``z``; mean *minus* frame, *then* the eps (what
       ``pairwise_distance(zbar, z)`` computes; the other order changes which bins are active
       when the embeddings are small).
     - ``"l2_norm"``: ``|| z_t ||_2``, the poster's formula (no mean, no eps).

   * rescaling per clip: ``Delta' = Delta * (2B / max_t Delta)`` (in that order: bit-exact with
     the official code), so the frame with the largest distance lands on ``2B`` (or one ulp
     below);
   * bins: size ``s = max_t Delta' / B`` (about 2) and centres ``mu_b = b*s + s/2`` (about
     ``2b + 1``), ``b = 0..B-1``;
   * kernel ``K[n, b, t]``, ``[N, B, T]`` (:mod:`atfr_analysis.sgs.kernels`): ``"tent"``
     (official ``linear``): ``max(0, 1 + 1e-7 - |Delta' - mu_b|)``; ``"delta"``: the indicator of
     ``|Delta' - mu_b| <= s/2``;
   * dropping: bins whose kernel row sums to 0 are removed (in training too). The remaining
     ``B'_n`` bins keep ascending ``b`` and are left-aligned; rows after ``B'_n`` up to the batch
     maximum ``B'_max`` are zero;
   * aggregation: one ``torch.bmm(K_dropped [N, B'_max, T], x [N, T, C*H*W])``: bin ``j`` is the
     kernel-weighted **sum** (not the mean) of the frames, so repeated frames add up;
   * mask: ``mask[n, j] = out[n, :, j].sum() != 0``, computed from the output values as the
     official code does.

Under autocast (bf16 / fp16 training or inference) the embedding, the distances, the rescaling,
the bins and the kernel are computed in fp32 (autocast off, low-precision inputs cast up): they
decide which bins exist, and bf16's 8-bit mantissa moves frames across bin edges. Only the
aggregation (the bmm) runs in the autocast dtype.

Semantics worth knowing:

* Output bins are ordered by ``Delta`` (the distance to the clip's mean embedding), **not by
  time**: bin 0 holds the frames most similar to the average clip, the last active bin the most
  distant frame.
* The frame with the largest ``Delta`` sits on the upper edge of the last bin ``B-1`` and gets a
  weight of about 1e-7 (``2**-23`` in float32) with the tent kernel, yet that bin counts as active.
  Hence bin ``B-1`` is always kept. With the delta kernel that frame is dropped altogether when
  ``Delta'`` rounds to just below ``2B`` (an ulp-level event, about 15% of clips); a frozen clip
  (all frames at the max distance) then keeps **0** bins, and a batch of such clips gives an
  output with ``B'_max = 0`` (official semantics, kept as is).
* The tent has half-width 1 and centres 2 apart, so each frame has positive weight in one bin; a
  frame near an even ``Delta'`` gets a weight near 0.
* A clip of identical frames keeps exactly one bin; ``B'`` never exceeds the number of distinct
  frames.
* ``mask`` can disagree with the kernel count: an all-zero clip keeps 1 bin (the active-bin
  count says 1) but its mask is all False; a kept bin that only holds all-zero frames is masked
  out. So the active bins are returned (``return_bins=True``), never derived from the mask.
* Non-finite input: NaN or inf in the features (weights before the layer that hold NaN or inf, a
  NaN BatchNorm ``running_var``) or in the embedding (its MLP, its BatchNorm) makes the distances
  non-finite, and no bin would be kept. The sampler counts the non-finite distances in the same
  host sync as ``B'_max`` (no extra cost) and raises a one-line
  :class:`~atfr_analysis.errors.NonFiniteError` naming the layer (``name``: its qualified name in
  the model, which ``VideoModel.sgs_layers`` gives it) and where the NaN or inf came from.
* Padded batching (the official one): in a batch, clips are zero-padded to ``B'_max`` with no
  mask downstream, so a clip's prediction depends on the other clips of its batch. Batching is
  the *model's* concern (``VideoModel.batching``, :mod:`atfr_analysis.models.exact`): in exact
  batching it groups samples by their active bins after this layer. The layer has no batching
  setting; its output is the same whichever mode the model runs.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from atfr_analysis.errors import NonFiniteError
from atfr_analysis.sgs.kernels import delta_kernel, tent_kernel

__all__ = [
    "SimilarityGuidedSampling",
    "SamplingResult",
    "sample_from_embedding",
    "DISTANCES",
    "KERNELS",
    "DISTANCE_EPS",
]

DISTANCES = ("l2_to_mean", "l2_norm")
KERNELS = ("tent", "delta")
#: eps of the official distance (``pairwise_distance``'s default), added to ``mean - frame``
DISTANCE_EPS = 1e-6


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


class SamplingResult(NamedTuple):
    """Output and intermediates of :func:`sample_from_embedding`.

    ``out`` ``[N, C, B'_max, H, W]``, ``mask`` ``[N, B'_max]`` bool, ``active_bins`` ``[N]`` long
    (bins with nonzero kernel mass, or ``force_bins``), ``delta`` / ``delta_scaled`` ``[N, T]``,
    ``centres`` ``[N, B]``, ``bin_size`` ``[N]``, ``kernel_matrix`` ``[N, B, T]``,
    ``kernel_dropped`` ``[N, B'_max, T]``.
    """

    out: torch.Tensor
    mask: torch.Tensor
    active_bins: torch.Tensor
    delta: torch.Tensor
    delta_scaled: torch.Tensor
    centres: torch.Tensor
    bin_size: torch.Tensor
    kernel_matrix: torch.Tensor
    kernel_dropped: torch.Tensor


def sample_from_embedding(
    x: torch.Tensor,
    z: torch.Tensor,
    num_bins: int,
    kernel: str = "tent",
    distance: str = "l2_to_mean",
    force_bins: int | None = None,
    name: str | None = None,
) -> SamplingResult:
    """The sampler stage of SGS: from the input ``x`` ``[N, C, T, H, W]`` and its embedding ``z``
    ``[N, L, T]`` (after BN) to the compacted output (see the module doc for the semantics).

    ``force_bins``: select bins ``0..force_bins-1`` (their kernel rows, whatever their mass) as the
    active set of every sample instead of the data-driven set; the op sequence is the same, so
    traced op shapes equal those of an input with that many active bins.

    Non-finite distances (NaN or inf in ``x`` or ``z``) raise :class:`NonFiniteError`, naming the
    layer ``name`` (its qualified name in the model, when known).
    """
    _check_choice("kernel", kernel, KERNELS)
    _check_choice("distance", distance, DISTANCES)
    if x.dim() != 5 or z.dim() != 3:
        raise ValueError(f"expected x [N, C, T, H, W] and z [N, L, T], got {tuple(x.shape)} and {tuple(z.shape)}")
    n, t = x.shape[0], x.shape[2]
    if z.shape[0] != n or z.shape[2] != t:
        raise ValueError(f"z {tuple(z.shape)} does not match x {tuple(x.shape)}")
    b = int(num_bins)
    if b < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if force_bins is not None and not 1 <= int(force_bins) <= b:
        raise ValueError(f"force_bins must be in [1, {b}], got {force_bins}")

    # distances, rescaling, bins and kernel in fp32 at least, autocast off: they decide which bins
    # exist, and bf16's 8-bit mantissa moves frames across bin edges (tests/test_train_precision.py)
    with _no_autocast(z.device.type):
        k, keep, scaled, centres, size, delta = _kernel(_at_least_fp32(z), b, kernel, distance, force_bins)
    active = keep.sum(dim=1)  # [N] long
    # the one host sync: B'_max, and the non-finite distances (NaN/inf keep no bin). A distance is
    # a norm (>= 0 or NaN): "< inf" is False for NaN and inf alone (comparison ops only, which the
    # cost counters leave out). A forced count needs none (B'_max = force_bins), so it also runs on
    # ``meta``
    if force_bins is not None:
        b_max = int(force_bins)
    else:
        b_max, nonfinite = torch.stack([active.max(), (~(delta < math.inf)).sum()]).tolist()
        if nonfinite:
            raise NonFiniteError(_nonfinite_message(x, z, nonfinite, delta.numel(), name))
    return _aggregate(x, k, keep, active, b_max, delta, scaled, centres, size)


_LOW = (torch.float16, torch.bfloat16)


def _no_autocast(device_type: str):
    """Autocast switched off on ``device_type`` (the meta device, where costs are counted, has no
    autocast to switch off: nothing there)."""
    if device_type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def _at_least_fp32(z: torch.Tensor) -> torch.Tensor:
    return z.float() if z.dtype in _LOW else z


def _kernel(z: torch.Tensor, b: int, kernel: str, distance: str, force_bins: int | None):
    """``(k [N, B, T], keep [N, B], Delta', centres, bin size, Delta)`` from the embedding ``z``."""
    n = z.shape[0]
    # distances [N, T]
    if distance == "l2_to_mean":
        zbar = z.mean(dim=2, keepdim=True)
        delta = torch.linalg.vector_norm(zbar - z + DISTANCE_EPS, ord=2, dim=1)
    else:
        delta = torch.linalg.vector_norm(z, ord=2, dim=1)
    # rescaling per clip: the factor first, then multiplied in (bit-exact with upstream)
    dmax = delta.max(dim=1, keepdim=True)[0]
    if distance == "l2_to_mean":
        scaled = delta * ((2 * b) / dmax)  # [N, T]
    else:
        # no eps in the poster's formula: ||z_t|| is 0 for every frame when z == 0 (e.g. a frozen
        # clip alone in a train-mode batch, BN bias 0). Such a clip is treated as all frames at
        # the max distance (Delta' = 2B), without 0/0 in the forward or the backward.
        pos = dmax > 0
        safe = torch.where(pos, dmax, torch.ones_like(dmax))
        scaled = torch.where(pos, delta * ((2 * b) / safe), torch.full_like(delta, 2 * b))
    # bins: size s = max Delta' / B, centres b*s + s/2
    size = scaled.max(dim=1, keepdim=True)[0] / b  # [N, 1]
    idx = torch.arange(b, device=z.device, dtype=z.dtype)
    centres = idx * size + size / 2  # [N, B]

    if kernel == "tent":
        k = tent_kernel(scaled.unsqueeze(1), centres.unsqueeze(2))
    else:
        k = delta_kernel(scaled.unsqueeze(1), centres.unsqueeze(2), size.unsqueeze(2))
    # k: [N, B, T]

    # active set; the same ops whether forced or not (traced shapes depend on B'_max only)
    bin_idx = torch.arange(b, device=z.device).unsqueeze(0).expand(n, b)
    mass = k.detach().sum(dim=2)
    forced = force_bins is not None
    # real: mass > 0 (| nothing); forced: (mass > inf, never) | b < force_bins
    keep = (mass > (float("inf") if forced else 0.0)) | (bin_idx < (int(force_bins) if forced else 0))
    return k, keep, scaled, centres, size, delta


def _aggregate(x, k, keep, active, b_max: int, delta, scaled, centres, size) -> SamplingResult:
    """Compaction (kept bins first, in ascending b; rows past a clip's own count zeroed) and the
    aggregation, one bmm ``[N, B'_max, T] x [N, T, C*H*W]`` (under autocast: in its dtype)."""
    n, c, t, h, w = x.shape
    b = k.shape[1]
    bin_idx = torch.arange(b, device=k.device).unsqueeze(0).expand(n, b)
    order = torch.where(keep, bin_idx, bin_idx + b).argsort(dim=1)[:, :b_max]
    kd = k.gather(1, order.unsqueeze(2).expand(n, b_max, t))
    pad = torch.arange(b_max, device=k.device).unsqueeze(0) >= active.unsqueeze(1)
    kd = kd.masked_fill(pad.unsqueeze(2), 0)
    xs = x.permute(0, 2, 1, 3, 4).reshape(n, t, c * h * w)
    if kd.dtype != xs.dtype and not torch.is_autocast_enabled(xs.device.type):
        kd = kd.to(xs.dtype)
    out = torch.bmm(kd, xs).view(n, b_max, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
    mask = out.sum(dim=(1, 3, 4)) != 0
    return SamplingResult(out, mask, active, delta, scaled, centres, size.squeeze(1), k, kd)


def _nonfinite_message(x: torch.Tensor, z: torch.Tensor, bad: int, total: int, name: str | None) -> str:
    """The one line of non-finite distances (computed on the error path only)."""
    x_bad = int((~torch.isfinite(x)).sum())
    if x_bad:
        where = (
            f"its input features hold {x_bad} NaN/inf values (from the layers before it: weights or "
            "BatchNorm statistics that hold NaN or inf, or an input that does)"
        )
    elif not bool(torch.isfinite(z).all()):
        where = "its input is finite, its embedding is not (its MLP or BatchNorm weights or statistics hold NaN or inf)"
    else:
        where = "the embedding is finite but its distances overflow"
    layer = f"SGS layer {name}" if name else "an SGS layer"
    return f"non-finite values reach {layer}: {bad} of its {total} frame distances are NaN or inf; {where}"


class SimilarityGuidedSampling(nn.Module):
    """Similarity Guided Sampling (Fayyaz, Bahrami et al., CVPR 2021), as the official code does it.

    Args:
        in_channels: ``C`` of the input ``[N, C, T, H, W]``.
        num_bins: ``B``; ``None`` (the official ``NUM_BINS: -1``) means ``B = T`` of each input.
        latent_dim: embedding size (8 officially).
        distance: ``"l2_to_mean"`` (official, default): ``Delta_t = ||mean_t(z) - z_t + 1e-6||_2``,
            the distance of each frame's embedding to the clip's mean embedding (eps added to
            mean minus frame); ``"l2_norm"``: ``Delta_t = ||z_t||_2``, the formula of the poster.
        kernel: ``"tent"`` (official ``linear``, default) or ``"delta"`` (hard indicator, with the
            official surrogate backward).

    State-dict keys are the official ones: ``fc.0.*``, ``fc.2.*`` (``fc`` =
    ``Linear(C, C//2), ReLU, Linear(C//2, latent_dim)``) and ``bn.*`` (``BatchNorm1d(latent_dim)``).
    Linear weights are initialised N(0, 0.01^2) with zero biases (official ``init_weights``).

    ``forward(x, force_bins=None, return_bins=False)`` returns ``(out, mask)``, as the official
    layer: ``out`` ``[N, C, B'_max, H, W]`` with each clip's active bins left-aligned in ascending
    bin index (i.e. ordered by distance to the clip's mean, **not by time**) and zero-padded to
    the batch maximum, ``mask`` ``[N, B'_max]`` bool computed from the output values (see
    :mod:`atfr_analysis.sgs.layer`). With ``return_bins=True`` it returns ``(out, mask,
    active_bins)``, ``active_bins`` the per-clip number of kept bins (``[N]`` long, on the input's
    device; 1 for an all-zero clip even though its mask is all False). The layer keeps no state
    between calls; ``resolve_bins(T)`` is the ``B`` it uses for ``T`` input frames.

    ``force_bins`` (for the FLOP cost cache and what-if analysis): the same op sequence (pooling,
    MLP, BN, distance, kernel, compaction, bmm), but bins ``0..force_bins-1`` are the active set of
    every clip, whatever their kernel mass, so the output has exactly ``force_bins`` bins and traced
    op shapes equal those of a real input with that many active bins; the active bins are then
    ``force_bins`` for every clip. ``1 <= force_bins <= B``, else ``ValueError``.

    In padded batching a clip's output, and so its prediction, depends on its batch (padding to
    the batch's ``B'_max``; in train mode also the BN batch statistics).

    Costs one host sync per call (``B'_max`` sizes the output, and non-finite distances are
    counted with it: NaN or inf in the input or the embedding raises a one-line
    :class:`~atfr_analysis.errors.NonFiniteError` naming the layer by ``name``, its qualified name
    in the model, set by ``VideoModel.sgs_layers``).
    """

    #: the layer's qualified name in its model (e.g. ``s2.ts_layer``), for its errors
    name: str | None = None

    def __init__(
        self,
        in_channels: int,
        num_bins: int | None = None,
        latent_dim: int = 8,
        distance: str = "l2_to_mean",
        kernel: str = "tent",
    ) -> None:
        super().__init__()
        _check_choice("distance", distance, DISTANCES)
        _check_choice("kernel", kernel, KERNELS)
        if int(in_channels) < 2:
            raise ValueError(f"in_channels must be >= 2, got {in_channels}")
        if num_bins is not None and int(num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1 or None, got {num_bins}")
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.in_channels = int(in_channels)
        self.num_bins = None if num_bins is None else int(num_bins)
        self.latent_dim = int(latent_dim)
        self.distance = distance
        self.kernel = kernel
        self.fc = nn.Sequential(
            nn.Linear(self.in_channels, self.in_channels // 2),
            nn.ReLU(),
            nn.Linear(self.in_channels // 2, self.latent_dim),
        )
        self.bn = nn.BatchNorm1d(self.latent_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official ``init_weights``: Linear weights N(0, 0.01^2), biases 0; BN at its defaults."""
        for m in self.fc:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)
        self.bn.reset_parameters()
        self.bn.reset_running_stats()

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, num_bins={self.num_bins}, latent_dim={self.latent_dim}, "
            f"distance={self.distance!r}, kernel={self.kernel!r}"
        )

    def resolve_bins(self, t: int) -> int:
        """``B`` for an input of ``t`` frames."""
        return int(t) if self.num_bins is None else self.num_bins

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``z`` ``[N, latent_dim, T]``: pool over H, W, MLP per frame, BatchNorm1d."""
        n, c, t = x.shape[:3]
        pooled = F.adaptive_avg_pool3d(x, (t, 1, 1)).view(n, c, t).permute(0, 2, 1)  # [N, T, C]
        z = self.fc(pooled).permute(0, 2, 1)  # [N, L, T]
        return self.bn(z)

    def forward(self, x: torch.Tensor, force_bins: int | None = None, return_bins: bool = False):
        if x.dim() != 5:
            raise ValueError(f"expected [N, C, T, H, W], got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got {x.shape[1]}")
        b = self.resolve_bins(x.shape[2])
        if force_bins is not None and not 1 <= int(force_bins) <= b:
            raise ValueError(f"force_bins must be in [1, {b}] (B = {b}), got {force_bins}")
        with _no_autocast(x.device.type):  # the embedding decides the bins: fp32 under autocast
            # in the MLP's own dtype: fp32 weights take a low-precision input up to fp32, a model cast to
            # bf16 / fp16 takes its input down (as autocast would have)
            w = self.fc[0].weight.dtype
            z = self.embed(x if x.dtype == w or not w.is_floating_point else x.to(w))
        res = sample_from_embedding(
            x, z, b, kernel=self.kernel, distance=self.distance, force_bins=force_bins, name=self.name
        )
        if return_bins:
            return res.out, res.mask, res.active_bins
        return res.out, res.mask

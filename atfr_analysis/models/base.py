"""What every model of the zoo shares: its default input, pathway packing and the ATFR split.

A model of the zoo is a ``VideoModel``: a ``torch.nn.Module`` whose ``forward`` takes the
PySlowFast input (a list with one tensor per pathway, ``[N, 3, T, H, W]``; a bare tensor is
accepted for single-pathway models) and returns class scores (logits in train mode, softmax in
eval mode, as PySlowFast's heads do).

An ATFR model (``_atfr`` in the registry) additionally splits its forward pass at the Similarity
Guided Sampling layers, so that the instrumentation (``atfr_analysis.profile``) and the cost cache
(``atfr_analysis.flops``) can run and count the parts separately:

``forward_pre(xs) -> list[Tensor]``
    everything before SGS: one feature tensor ``[N, C, T, H, W]`` per SGS layer, in the order of
    ``sgs_layer_names()``.
``forward_post(feats) -> Tensor``
    everything after SGS, given the SGS outputs ``[N, C, B', H, W]`` in the same order.

``forward`` = pre, each SGS layer, post; with ``batching="exact"`` the samples of a batch are
grouped by their tuple of active bins after SGS and ``forward_post`` runs once per group, so that
every sample's output equals its batch-1 output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

__all__ = ["InputSpec", "VideoModel", "as_pathways", "make_inputs", "BATCHING_MODES"]

BATCHING_MODES = ("padded", "exact")


@dataclass(frozen=True)
class InputSpec:
    """Default input of a model, as its PySlowFast config defines it.

    ``frames`` holds the frames of each pathway: ``(T,)`` for single-pathway models,
    ``(T_slow, T_fast)`` for SlowFast. ``sampling_rate`` is the stride between sampled frames of
    the fastest pathway (PySlowFast's ``DATA.SAMPLING_RATE``); ``alpha`` the slow/fast frame-rate
    ratio (SlowFast only).
    """

    frames: tuple[int, ...]
    train_crop: int
    test_crop: int
    sampling_rate: int
    alpha: int | None = None
    num_views: int = 10
    num_crops: int = 3

    @property
    def num_pathways(self) -> int:
        return len(self.frames)

    @property
    def clip_frames(self) -> int:
        """Frames decoded per clip (those of the fastest pathway)."""
        return max(self.frames)

    def label(self, crop: int | None = None) -> str:
        """``13x160x160`` or ``4+32x256x256`` (the fixtures' ``input_key``)."""
        s = self.test_crop if crop is None else crop
        return "+".join(str(t) for t in self.frames) + f"x{s}x{s}"

    def with_frames(self, frames: int | Sequence[int] | None) -> "InputSpec":
        """The same spec at another clip length (fast frames for SlowFast; slow = fast / alpha)."""
        if frames is None:
            return self
        if isinstance(frames, int):
            if self.alpha is not None:
                if frames % self.alpha:
                    raise ValueError(f"frames must be a multiple of alpha={self.alpha}, got {frames}")
                frames = (frames // self.alpha, frames)
            else:
                frames = (frames,)
        frames = tuple(int(t) for t in frames)
        if len(frames) != len(self.frames):
            raise ValueError(f"expected {len(self.frames)} frame counts, got {len(frames)}")
        from dataclasses import replace

        return replace(self, frames=frames)


def as_pathways(x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalise a model input to PySlowFast's list of pathway tensors."""
    if isinstance(x, torch.Tensor):
        return [x]
    return list(x)


def make_inputs(
    spec: InputSpec,
    crop: int | None = None,
    batch: int = 1,
    frames: int | Sequence[int] | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Random inputs (``torch.rand``, as the fixtures) of the model's default shape."""
    spec = spec.with_frames(frames)
    s = spec.test_crop if crop is None else crop
    return [
        torch.rand(batch, 3, t, s, s, generator=generator, device=device) for t in spec.frames
    ]


class VideoModel(nn.Module):
    """Base class of the zoo. Subclasses set ``self.spec`` and implement ``forward``.

    ATFR subclasses implement ``forward_pre`` / ``forward_post`` and register their SGS layers as
    submodules at the official state-dict paths (``s2.ts_layer``, ``s2.pathway0_ts_layer``, ...);
    they inherit ``forward`` from here.
    """

    spec: InputSpec
    #: name in the registry, set by ``build_model``
    model_name: str = ""
    #: the dataclass config the model was built from, set by ``build_model``
    config: object | None = None

    def __init__(self) -> None:
        super().__init__()
        self.batching = "padded"

    # ------------------------------------------------------------------ ATFR protocol
    def sgs_layer_names(self) -> list[str]:
        """State-dict prefixes of the SGS layers, in the order ``forward_pre`` returns features."""
        from atfr_analysis.sgs import SimilarityGuidedSampling

        return [n for n, m in self.named_modules() if isinstance(m, SimilarityGuidedSampling)]

    def sgs_layers(self) -> list[nn.Module]:
        return [self.get_submodule(n) for n in self.sgs_layer_names()]

    @property
    def is_atfr(self) -> bool:
        return bool(self.sgs_layer_names())

    def forward_pre(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no SGS layer")

    def forward_post(self, feats: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no SGS layer")

    def set_batching(self, mode: str) -> "VideoModel":
        if mode not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {mode!r}")
        self.batching = mode
        return self

    def forward_sgs(self, xs):
        """Run pre and SGS; returns (sgs outputs, active bins per layer as [N] long tensors)."""
        feats = self.forward_pre(as_pathways(xs))
        outs, bins = [], []
        for layer, f in zip(self.sgs_layers(), feats):
            out, _mask = layer(f)
            outs.append(out)
            bins.append(layer.last_active_bins)
        return outs, bins

    def forward(self, x):  # ATFR forward; baselines override
        outs, bins = self.forward_sgs(x)
        if self.batching == "padded" or outs[0].shape[0] == 1:
            return self.forward_post(outs)
        return self._forward_post_exact(outs, bins)

    def _forward_post_exact(self, outs, bins):
        """Group samples by their signature (B' per layer) and run the rest once per group."""
        sig = torch.stack(bins, dim=1).cpu()  # [N, L], one host sync for the whole batch
        uniq, inverse = torch.unique(sig, dim=0, return_inverse=True)
        result = None
        for g in range(uniq.shape[0]):
            idx = (inverse == g).nonzero(as_tuple=True)[0]
            idx_dev = idx.to(outs[0].device)
            group = [o.index_select(0, idx_dev)[:, :, : int(b)] for o, b in zip(outs, uniq[g])]
            y = self.forward_post(group)
            if result is None:
                result = y.new_empty((sig.shape[0],) + tuple(y.shape[1:]))
            result.index_copy_(0, idx_dev, y)
        return result

"""What every model of the zoo shares: its default input, pathway packing and the ATFR step.

A model of the zoo is a ``VideoModel``: a ``torch.nn.Module`` whose ``forward`` takes the
PySlowFast input (a list with one tensor per pathway, ``[N, 3, T, H, W]``; a bare tensor is
accepted for single-pathway models) and returns class scores (logits in train mode, softmax in
eval mode, as PySlowFast's heads do).

Every model splits its forward pass where the Similarity Guided Sampling layers sit (a baseline
where its ATFR variant puts them), so that the instrumentation (``atfr_analysis.profile``), the
cost cache (``atfr_analysis.flops``) and the benchmarks can run and count the parts separately:

``forward_pre(xs) -> list[Tensor]``
    everything before SGS: one feature tensor ``[N, C, T, H, W]`` per SGS layer, in the order of
    ``sgs_layer_names()`` (a baseline: its features at that point).
``forward_sgs(xs) -> (outs, bins)``
    ``forward_pre`` and each SGS layer: the SGS outputs ``[N, C, B'_max, H, W]`` and the active
    bins ``[N]`` of each layer (on the device).
``forward_post(feats) -> Tensor``
    everything after SGS, given the SGS outputs in the same order.
``atfr_step(xs, batching=None) -> AtfrStep``
    the whole step: scores, each clip's signature (its active bins per SGS layer, on the host)
    and what the batch executed. ``forward(x)`` is ``atfr_step(x).scores``.

Batching has one source of truth, the model's ``batching`` (``set_batching``), which
``atfr_step`` takes as its default: ``"padded"`` (official: the batch runs after SGS at its
largest ``B'`` per layer, a clip's output depends on its batch) or ``"exact"`` (the clips are
grouped by signature and ``forward_post`` runs once per group, see
:mod:`atfr_analysis.models.exact`, so that every clip's output equals its batch-1 output).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.models import exact
from atfr_analysis.models.blocks import init_weights
from atfr_analysis.sgs import SimilarityGuidedSampling

__all__ = [
    "InputSpec",
    "VideoModel",
    "AtfrStep",
    "as_pathways",
    "make_inputs",
    "check_batching",
    "BATCHING_MODES",
    "is_split_model",
]

#: how a batch runs after SGS (see the module doc); the one definition
BATCHING_MODES = ("padded", "exact")


def check_batching(mode: str) -> str:
    """``mode`` if it is one of :data:`BATCHING_MODES`, else :class:`InputError`."""
    if mode not in BATCHING_MODES:
        raise InputError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {mode!r}")
    return mode


def is_split_model(model: nn.Module) -> bool:
    """A zoo-style model: a :class:`VideoModel` cut at its SGS layers (``forward_pre`` /
    ``forward_post``). Any other module (one's own network) is run whole and counted whole
    (:mod:`atfr_analysis.flops.module_cost`)."""
    return (
        isinstance(model, VideoModel)
        and getattr(model, "split", True)
        and type(model).forward_pre is not VideoModel.forward_pre
    )


@dataclass(frozen=True)
class InputSpec:
    """Default input of a model, as its PySlowFast config defines it.

    ``frames`` holds the frames of each pathway: ``(T,)`` for single-pathway models,
    ``(T_slow, T_fast)`` for SlowFast. ``sampling_rate`` is the stride between sampled frames of
    the fastest pathway (PySlowFast's ``DATA.SAMPLING_RATE``); ``alpha`` the slow/fast frame-rate
    ratio (SlowFast only).

    ``one_crop`` is PySlowFast's 1-crop test rule (``kinetics.py`` with ``TEST.NUM_SPATIAL_CROPS:
    1``): ``(short side, crop)`` = (``DATA.TRAIN_JITTER_SCALES[0]``, the 1-crop config's
    ``DATA.TEST_CROP_SIZE``), set by each family; ``None`` when unknown (a spec built by hand).
    X3D_{XS,S,M,L}.yaml: the jitter scale is the 3-crop test crop (182, 182, 256, 356) and the 1-crop
    test crop is the train crop (160, 160, 224, 312); the ResNet/Slow/SlowFast configs (Kinetics,
    SSv2): jitter scales [256, 320] and one test crop, 256: both the test crop.
    """

    frames: tuple[int, ...]
    train_crop: int
    test_crop: int
    sampling_rate: int
    alpha: int | None = None
    num_views: int = 10
    num_crops: int = 3
    one_crop: tuple[int, int] | None = None

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

    def with_frames(self, frames: int | Sequence[int] | None) -> InputSpec:
        """The same spec at another clip length (fast frames for SlowFast; slow = fast / alpha).

        The one place that turns ``--frames`` into the frames of each pathway: every command
        (``train``, ``bench``, ``flops``) goes through it, a zoo model's config through
        :meth:`VideoModel.frames_overrides`."""
        if frames is None:
            return self
        if isinstance(frames, numbers.Integral) and not isinstance(frames, bool):
            frames = int(frames)
            if frames < 1:
                raise InputError(f"--frames must be a positive integer, got {frames}")
            if self.alpha is not None:
                if frames % self.alpha:
                    raise InputError(
                        f"--frames must be a multiple of alpha={self.alpha} (the fast pathway's frames; the slow "
                        f"pathway takes frames / alpha), got {frames}"
                    )
                frames = (frames // self.alpha, frames)
            else:
                frames = (frames,)
        frames = tuple(int(t) for t in frames)
        if len(frames) != len(self.frames):
            raise InputError(f"expected {len(self.frames)} frame counts, got {len(frames)}")
        if min(frames) < 1:
            raise InputError(f"frames must be positive, got {frames}")
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
    return [torch.rand(batch, 3, t, s, s, generator=generator, device=device) for t in spec.frames]


@dataclass(frozen=True)
class AtfrStep:
    """What :meth:`VideoModel.atfr_step` returns for a batch of ``N`` clips.

    ``scores``
        the model's output ``[N, K]`` (softmax in eval mode, logits in train mode).
    ``signatures``
        ``[N, L]`` long on the host: the active bins of each of the ``L`` SGS layers per clip, in
        the order of ``sgs_layer_names()`` (``L = 0`` for a baseline).
    ``executed``
        ``None`` when each clip ran at its own signature (exact batching, a batch of one, a
        baseline); else the bins per layer that the padded batch ran every clip at (the batch's
        largest ``B'`` per layer).
    """

    scores: torch.Tensor
    signatures: torch.Tensor
    executed: tuple[int, ...] | None = None


class VideoModel(nn.Module):
    """Base class of the zoo; one model family is one subclass built from one config dataclass.

    A family subclass sets ``family`` (its name in the registry), calls ``super().__init__(cfg)``,
    sets ``self.spec``, builds its modules (SGS layers with :meth:`make_sgs` where ``cfg.sgs``, at
    the official state-dict paths ``s2.ts_layer``, ``s2.pathway0_ts_layer``, ...), initialises
    them with :meth:`init_weights` and implements ``forward_pre`` and ``forward_post`` (see the
    module doc); ``forward`` and ``atfr_step`` are inherited. Its config is a frozen dataclass
    validated in ``__post_init__`` with the SGS fields ``sgs``, ``num_bins``, ``latent_dim``,
    ``distance``, ``kernel`` and the init fields ``fc_init_std``, ``zero_init_final_bn``. Its
    named configurations are registered with ``@register_model(ModelClass)``
    (:mod:`atfr_analysis.models.registry`), which also registers the ATFR variant made by
    :meth:`atfr_config`.
    """

    spec: InputSpec
    #: the family's name in the registry
    family: ClassVar[str] = ""
    #: cut at its SGS layers (``forward_pre`` / ``forward_post``); False: run and counted whole
    split: ClassVar[bool] = True
    #: name in the registry, set by ``build_model``
    model_name: str = ""
    #: the dataclass config the model was built from
    config: Any = None

    #: exact batching on CUDA: replay ``forward_post`` as CUDA graphs, one per (signature, group
    #: size rounded up to a power of two), in eval mode without autograd (``exact.PostGraphs``)
    exact_cuda_graphs: bool = False
    #: most graphs kept (least recently used are dropped)
    exact_cuda_graphs_max: int = 128
    #: exact batching on CPU (eval mode, no autograd): run the groups concurrently on this many
    #: threads, one intra-op thread each (None: ``torch.get_num_threads()``; 0 or 1: one group
    #: after the other with all intra-op threads)
    exact_cpu_workers: int | None = None

    def __init__(self, cfg: Any = None) -> None:
        super().__init__()
        self.batching = "padded"
        self.cfg = cfg
        if cfg is not None:
            self.config = cfg

    # ------------------------------------------------------------------ family protocol
    @classmethod
    def atfr_config(cls, cfg: Any, **overrides: Any) -> Any:
        """The config of the ATFR variant of a registered baseline config."""
        return replace(cfg, sgs=True, **overrides)

    @classmethod
    def atfr_description(cls, description: str) -> str:
        """The registry description of the ATFR variant."""
        return f"{description}; ATFR: Similarity Guided Sampling"

    def frames_overrides(self, frames: int | Sequence[int] | None) -> dict[str, Any]:
        """The config change that builds this model at clip length ``frames`` (``build_model(name,
        **this)``): the pathways' frames from :meth:`InputSpec.with_frames`, in the form of the
        family's ``frames`` field (a tuple per pathway, or one int for a one-pathway family such as
        X3D). ``{}`` for ``None``."""
        if frames is None:
            return {}
        current = getattr(self.config, "frames", None)
        spec = self.spec.with_frames(frames)
        if current is None:
            if spec.frames == self.spec.frames:
                return {}  # already at that length: nothing to change
            raise InputError(
                f"{self.model_name or type(self).__name__}: its config has no frames to change "
                f"(it takes {self.spec.label()} clips)"
            )
        return {"frames": spec.frames[0] if isinstance(current, numbers.Integral) else spec.frames}

    def make_sgs(self, channels: int) -> SimilarityGuidedSampling:
        """An SGS layer for ``channels`` input channels, as the config says."""
        c = self.cfg
        return SimilarityGuidedSampling(
            channels, num_bins=c.num_bins, latent_dim=c.latent_dim, distance=c.distance, kernel=c.kernel
        )

    def init_weights(self) -> None:
        """PySlowFast's initialisation (:func:`blocks.init_weights`) of every module but the SGS
        layers, which keep the official initialisation of their own."""
        sgs = tuple(self.sgs_layer_names())

        def skip(name: str) -> bool:
            return any(name == p or name.startswith(p + ".") for p in sgs)

        init_weights(self, self.cfg.fc_init_std, self.cfg.zero_init_final_bn, skip=skip if sgs else None)

    # ------------------------------------------------------------------ ATFR protocol
    def sgs_layer_names(self) -> list[str]:
        """State-dict prefixes of the SGS layers, in the order ``forward_pre`` returns features."""
        return [n for n, m in self.named_modules() if isinstance(m, SimilarityGuidedSampling)]

    def sgs_layers(self) -> list[SimilarityGuidedSampling]:
        """The SGS layers, in the order of ``sgs_layer_names()``; each learns its name there (its
        errors give it)."""
        layers = []
        for n in self.sgs_layer_names():
            layer = self.get_submodule(n)
            layer.name = n
            layers.append(layer)
        return layers

    @property
    def is_atfr(self) -> bool:
        return bool(self.sgs_layer_names())

    def forward_pre(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward_post(self, feats: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def set_batching(self, mode: str) -> VideoModel:
        """Set the model's batching mode (``"padded"`` or ``"exact"``); returns the model."""
        self.batching = check_batching(mode)
        return self

    def forward_sgs(self, xs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run pre and SGS; returns (SGS outputs, active bins per layer as [N] long tensors)."""
        feats = self.forward_pre(as_pathways(xs))
        outs, bins = [], []
        for layer, f in zip(self.sgs_layers(), feats):
            out, _mask, active = layer(f, return_bins=True)
            outs.append(out)
            bins.append(active)
        return outs, bins

    def forward_post_exact(self, outs: list[torch.Tensor], signatures: torch.Tensor) -> torch.Tensor:
        """``forward_post`` per group of clips with equal ``signatures`` (``[N, L]`` long, on the
        host), outputs in batch order: exact batching (:func:`exact.forward_post_exact`)."""
        return exact.forward_post_exact(self, outs, signatures)

    def atfr_step(self, xs, batching: str | None = None) -> AtfrStep:
        """One ATFR step on a batch: scores, signatures and what the batch executed.

        ``batching``: ``"padded"`` or ``"exact"``; ``None`` takes the model's ``batching``. One
        host synchronisation for the signatures (besides SGS's own, for ``B'_max``), shared with
        exact batching's grouping. A baseline runs pre and post and returns ``L = 0`` signatures.
        """
        mode = self.batching if batching is None else check_batching(batching)
        xs = as_pathways(xs)
        if not self.is_atfr:
            scores = self.forward_post(self.forward_pre(xs))
            return AtfrStep(scores, torch.zeros(xs[0].shape[0], 0, dtype=torch.long))
        outs, bins = self.forward_sgs(xs)
        sig = torch.stack(bins, dim=1).cpu()  # [N, L], the one host sync for the whole batch
        n = sig.shape[0]
        if mode == "exact" and n > 1:
            return AtfrStep(self.forward_post_exact(outs, sig), sig)
        scores = self.forward_post(outs)
        # padded batching: every clip ran at the batch's largest B' (the SGS outputs' length)
        executed = None if n == 1 else tuple(int(o.shape[2]) for o in outs)
        return AtfrStep(scores, sig, executed)

    def forward(self, x) -> torch.Tensor:
        return self.atfr_step(x).scores

    # ------------------------------------------------------------------ exact batching's graphs
    @property
    def post_graphs(self) -> exact.PostGraphs | None:
        """The captured CUDA graphs of exact batching (``None`` before the first graphed call)."""
        return exact.post_graphs(self)

    def reset_post_graphs(self) -> None:
        """Drop the captured CUDA graphs of exact batching (after changing weights or devices)."""
        exact.reset_post_graphs(self)

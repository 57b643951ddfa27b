"""The ResNet family of the zoo: Slow, SlowFast and the ATFR fork's "3dresnet", with ATFR variants.

State-dict keys and shapes are PySlowFast's (``s1.pathway0_stem.conv.weight``, ``s2_fuse.conv_f2s``,
``s3.pathway1_res2.branch2.b_bn.running_var``, ``head.projection.weight``, ...), so that
PySlowFast / ATFR-fork checkpoints load with ``strict=True``; the fixtures in
``../shared/fixtures/reference_keys/`` pin them.

Registry names and the configuration each one reproduces
--------------------------------------------------------
============================  ============================================================================
``slow_8x8_r50``              PySlowFast ``configs/Kinetics/c2/SLOW_8x8_R50.yaml``: 8 frames, sampling rate 8,
                              train/test crop 224/256, temporal kernels 1,1,1,3,3, fixed-kernel head.
``slowfast_4x16_r50``         PySlowFast ``configs/Kinetics/c2/SLOWFAST_4x16_R50.yaml``: 4 + 32 frames,
                              sampling rate 2, alpha 8, beta_inv 8, fusion kernel 5, ratio 2.
``slowfast_8x8_r50``          PySlowFast ``configs/Kinetics/c2/SLOWFAST_8x8_R50.yaml``: 8 + 32 frames,
                              sampling rate 2, alpha 4, fusion kernel 7.
``slowfast_16x8_r50``         PySlowFast ``configs/SSv2/SLOWFAST_16x8_R50.yaml`` (Something-Something V2):
                              16 + 64 frames, sampling rate 2, alpha 4, fusion kernel 7, 174 classes in its
                              config (``build_model`` still defaults to 400: pass ``num_classes=174``), and
                              that config's 1 view x 1 crop at test time.
``resnet3d_50``               the ATFR fork's ``configs/Kinetics/3DResNet50.yaml`` (``MODEL.ARCH: 3dresnet``):
                              32 frames, sampling rate 1, stem 3->8 channels 5x7x7, widths 32/256/512/1024,
                              inner widths 8/64/128/256, temporal kernels 5,3,1,1,3, no temporal stride or
                              pooling, adaptive head. Its ``NUM_CLASSES: 194`` is not kept (400 by default).
``resnet3d_18``               the fork's ``configs/Mini_Kinetics200/3DResNet18.yaml``: as ``resnet3d_50`` with
                              2 bottleneck blocks per stage.
``<name>_atfr``               the same network with one Similarity Guided Sampling layer per pathway at the end
                              of res2 (the fork's ``MODEL.TEMPORAL_LAYER_STAGE: res2``, ``TEMPORAL_SAMPLING``
                              ``NUM_BINS: -1``, ``LATENT_DIMENSION: 8``, ``DISTANCE_TYPE: L2``, ``KERNEL_TYPE:
                              linear``, ``PATHWAYS: [0, 1]``). ``slowfast_4x16_r50_atfr`` /
                              ``slowfast_8x8_r50_atfr`` reproduce the fork's ``configs/Kinetics/SLOWFAST+ATFR_
                              {4x16,8x8}_R50.yaml``, ``resnet3d_50_atfr`` its ``3DResNet50+ATFR.yaml``
                              (sampling rate 1) and ``resnet3d_18_atfr`` its ``Mini_Kinetics200/3DResNet18+
                              ATFR.yaml`` (sampling rate 2, as that file says). ``slow_8x8_r50_atfr`` and
                              ``slowfast_16x8_r50_atfr`` apply the same recipe to PySlowFast configs the fork
                              has no file for.
============================  ============================================================================

Forward semantics
-----------------
Baselines follow PySlowFast: the input is a list with one ``[N, 3, T, H, W]`` tensor per pathway,
ReLU after every residual sum, ``pathway{p}_pool`` (1x1x1 max pools, kept for graph fidelity) after
res2, and for Slow / SlowFast the ``ResNetBasicHead``: ``AvgPool3d`` with the fixed kernel
``(T_p, train_crop // 32, train_crop // 32)`` and stride 1, so that at the 256 test crop the
projection runs at 2x2 positions and the eval output is the mean of their softmaxes. The 3dresnet
uses the fork's ``ResNetAdaptHead`` (adaptive average pooling to 1x1x1), baseline included.

ATFR variants follow the official fork:

* the SGS layer of a pathway takes the last res2 block's residual sum *before* its ReLU; the ReLU
  is applied to the SGS output (``forward_pre`` returns those pre-ReLU sums, ``forward_post``
  starts with the ReLU);
* the head is adaptive (T after SGS varies);
* every ``FuseFastToSlow`` (``s2_fuse``..``s4_fuse``) zero-pads the shorter temporal axis before the
  concatenation. After SGS the slow pathway has ``B'_s`` bins and the fast one ``B'_f``; ``conv_f2s``
  (temporal stride alpha, padding k // 2) turns the fast bins into ``ceil(B'_f / alpha)`` frames.
  The two lengths are independent (e.g. 4x16: ``B'_s`` in 1..4, ``ceil(B'_f / 8)`` in 1..4), and the
  fork pads the shorter one with zeros, centred (``(L - T) // 2`` in front, the rest behind):
  when the fused part is longer the *slow pathway* is padded and keeps ``L = max(B'_s,
  ceil(B'_f / alpha))`` frames through res3..res5; at ``s3_fuse``/``s4_fuse`` the fused part is
  padded again whenever ``B'_s`` was the longer. The padded zero frames are ordinary positions
  for the later temporal convolutions and for the head's average. Bins of the two pathways are
  ordered by their own similarity, so the concatenation pairs unaligned bins; that is the
  official behaviour and it is kept.
* In "padded" batching (the official one) a batch is padded to its largest B' per pathway; with
  ``set_batching("exact")`` the base class runs ``forward_post`` per group of equal B'.

Baseline and ATFR variant are one class, :class:`VideoResNet`; ``cfg.sgs`` adds the SGS layers
(and the fork's padded fusion). Each registry name is a ``@register_model(VideoResNet)`` function
at the end of this module, returning the baseline config; the decorator registers the
``_atfr`` variant too (:meth:`VideoResNet.atfr_config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.models.base import InputSpec, VideoModel, as_pathways
from atfr_analysis.models.blocks import (
    FuseFastToSlow,
    ResNetBasicHead,
    ResStage,
    VideoModelStem,
    head_pool_kernel,
)
from atfr_analysis.models.registry import register_model

__all__ = ["ResNetConfig", "VideoResNet", "STAGE_BLOCKS", "ARCHES"]

#: blocks per stage (res2..res5) for each depth, as PySlowFast's ``_MODEL_STAGE_DEPTH``
STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
ARCHES = ("slow", "slowfast", "resnet3d")
HEADS = ("fixed", "adaptive")
SPATIAL_STRIDES = (1, 2, 2, 2)  # res2..res5


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that defines a model of this family (no global config object).

    Widths are those of pathway 0 (the slow pathway of SlowFast); the fast pathway's are divided
    by ``beta_inv``. ``temporal_kernels`` holds, per pathway, the temporal kernel of the stem and
    of the first conv of the res2..res5 blocks; ``num_block_temp_kernel`` how many blocks of each
    stage use it (the rest use 1; ``None`` = all blocks).
    """

    arch: str = "slow"
    depth: int = 50
    num_classes: int = 400
    #: frames per pathway: ``(T,)``, or ``(T_slow, T_fast)`` for SlowFast
    frames: tuple[int, ...] = (8,)
    #: stride between sampled frames of the fastest pathway (``DATA.SAMPLING_RATE``)
    sampling_rate: int = 8
    #: SlowFast only: frame-rate ratio, channel ratio, lateral connection
    alpha: int | None = None
    beta_inv: int = 8
    fusion_kernel: int = 5
    fusion_conv_channel_ratio: int = 2
    train_crop: int = 224
    test_crop: int = 256
    dropout_rate: float = 0.5
    stem_width: int = 64
    widths: tuple[int, int, int, int] = (256, 512, 1024, 2048)
    inner_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    temporal_kernels: tuple[tuple[int, int, int, int, int], ...] = ((1, 1, 1, 3, 3),)
    num_block_temp_kernel: tuple[int, int, int, int] | None = None
    num_groups: int = 1
    trans_func: str = "bottleneck"
    #: "fixed": PySlowFast's AvgPool3d kernel from train crop and frames; "adaptive": 1x1x1 (fork)
    head: str = "fixed"
    head_act: str = "softmax"
    fc_init_std: float = 0.01
    zero_init_final_bn: bool = True
    num_views: int = 10
    num_crops: int = 3
    #: ATFR: one Similarity Guided Sampling layer per pathway at the end of res2
    sgs: bool = False
    num_bins: int | None = None
    latent_dim: int = 8
    distance: str = "l2_to_mean"
    #: SGS sampling kernel
    kernel: str = "tent"

    @property
    def num_pathways(self) -> int:
        return 2 if self.arch == "slowfast" else 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """:class:`InputError` naming the first inconsistent field (run on construction)."""
        if self.arch not in ARCHES:
            raise InputError(f"arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        if self.depth not in STAGE_BLOCKS:
            raise InputError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {self.depth}")
        if self.head not in HEADS:
            raise InputError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        n = self.num_pathways
        if len(self.frames) != n or len(self.temporal_kernels) != n:
            raise InputError(f"{self.arch}: frames and temporal_kernels need {n} entries (one per pathway)")
        if any(len(k) != 5 for k in self.temporal_kernels):
            raise InputError("temporal_kernels: 5 entries per pathway (stem, res2..res5)")
        if len(self.widths) != 4 or len(self.inner_widths) != 4:
            raise InputError("widths and inner_widths need 4 entries (res2..res5)")
        if self.num_block_temp_kernel is not None and len(self.num_block_temp_kernel) != 4:
            raise InputError("num_block_temp_kernel needs 4 entries (res2..res5)")
        if self.arch == "slowfast":
            if not self.alpha or self.frames[1] != self.frames[0] * self.alpha:
                raise InputError(
                    f"slowfast needs frames = (T_fast / alpha, T_fast); got frames={self.frames}, alpha={self.alpha}"
                )
        if self.sgs and self.head != "adaptive":
            raise InputError("an ATFR model needs head='adaptive' (the number of frames after SGS varies)")


def _stage_dims(cfg: ResNetConfig) -> list[dict]:
    """Per stage res2..res5: dim_in / dim_out / dim_inner per pathway, as PySlowFast computes them."""
    blocks = STAGE_BLOCKS[cfg.depth]
    slowfast = cfg.arch == "slowfast"
    stages = []
    prev = cfg.stem_width
    for s in range(4):
        out, inner = cfg.widths[s], cfg.inner_widths[s]
        if slowfast:
            fast_prev = prev // cfg.beta_inv
            fused = fast_prev * cfg.fusion_conv_channel_ratio  # channels that s{s+1}_fuse adds
            dims = {
                "dim_in": [prev + fused, fast_prev],
                "dim_out": [out, out // cfg.beta_inv],
                "dim_inner": [inner, inner // cfg.beta_inv],
            }
        else:
            dims = {"dim_in": [prev], "dim_out": [out], "dim_inner": [inner]}
        dims["num_blocks"] = [blocks[s]] * cfg.num_pathways
        stages.append(dims)
        prev = out
    return stages


class VideoResNet(VideoModel):
    """Slow / SlowFast / 3dresnet with PySlowFast module names, and with ``cfg.sgs`` their ATFR
    variant (see the module docstring)."""

    family = "resnet"

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__(cfg)
        n = cfg.num_pathways
        self.num_pathways = n
        self.slowfast = cfg.arch == "slowfast"
        self.spec = InputSpec(
            frames=tuple(int(t) for t in cfg.frames),
            train_crop=cfg.train_crop,
            test_crop=cfg.test_crop,
            sampling_rate=cfg.sampling_rate,
            alpha=cfg.alpha if self.slowfast else None,
            num_views=cfg.num_views,
            num_crops=cfg.num_crops,
            one_crop=(cfg.test_crop, cfg.test_crop),
        )
        pad = cfg.sgs  # the fork's FuseFastToSlow pads the shorter temporal axis
        tk = [list(k) for k in cfg.temporal_kernels]
        stem_out = [cfg.stem_width] + ([cfg.stem_width // cfg.beta_inv] if self.slowfast else [])
        self.s1 = VideoModelStem(
            dim_in=[3] * n,
            dim_out=stem_out,
            kernel=[(tk[p][0], 7, 7) for p in range(n)],
            stride=[(1, 2, 2)] * n,
            padding=[(tk[p][0] // 2, 3, 3) for p in range(n)],
        )
        if self.slowfast:
            self.s1_fuse = self._fuse(stem_out[1], pad)
        dims = _stage_dims(cfg)
        nbtk = cfg.num_block_temp_kernel
        for s in range(4):
            stage = ResStage(
                **dims[s],
                temp_kernel_sizes=[tk[p][s + 1] for p in range(n)],
                stride=[SPATIAL_STRIDES[s]] * n,
                num_block_temp_kernel=None if nbtk is None else [nbtk[s]] * n,
                num_groups=[cfg.num_groups] * n,
                trans_func=cfg.trans_func,
                sgs_factory=self.make_sgs if (cfg.sgs and s == 0) else None,
            )
            self.add_module(f"s{s + 2}", stage)
            if self.slowfast and s < 3:
                self.add_module(f"s{s + 2}_fuse", self._fuse(dims[s]["dim_out"][1], pad))
            if s == 0:
                for p in range(n):
                    self.add_module(f"pathway{p}_pool", nn.MaxPool3d(kernel_size=1, stride=1, padding=0))
        head_dims = dims[3]["dim_out"]
        if cfg.head == "fixed":
            pool = [head_pool_kernel(cfg.frames[p], cfg.train_crop) for p in range(n)]
        else:
            pool = [None] * n
        self.head = ResNetBasicHead(head_dims, cfg.num_classes, pool, cfg.dropout_rate, cfg.head_act)
        self.init_weights()

    @classmethod
    def atfr_config(cls, cfg: ResNetConfig, **overrides: Any) -> ResNetConfig:
        """SGS at the end of res2 on every pathway, the adaptive head (T after SGS varies)."""
        return replace(cfg, sgs=True, head="adaptive", **overrides)

    @classmethod
    def atfr_description(cls, description: str) -> str:
        return description.split(" (")[0] + " + ATFR: SGS at the end of res2 on every pathway (official ATFR code)"

    # ----------------------------------------------------------------------------- building
    def _fuse(self, fast_channels: int, pad: bool) -> FuseFastToSlow:
        c = self.cfg
        return FuseFastToSlow(fast_channels, c.fusion_conv_channel_ratio, c.fusion_kernel, c.alpha, pad_temporal=pad)

    # ------------------------------------------------------------------------------ forward
    def _inputs(self, x) -> list[torch.Tensor]:
        xs = as_pathways(x)
        if len(xs) != self.num_pathways:
            raise ValueError(
                f"{type(self).__name__} ({self.cfg.arch}) takes {self.num_pathways} pathway tensor(s), got {len(xs)}"
            )
        return xs

    def _stem(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.s1(xs)
        return self.s1_fuse(x) if self.slowfast else x

    def forward_pre(self, xs) -> list[torch.Tensor]:
        """Stem (and s1_fuse) and res2. ATFR: up to each pathway's last residual sum, before its
        ReLU (the SGS inputs); baseline: the ReLU included (the same split, for phase timings)."""
        x = self._stem(self._inputs(xs))
        return self.s2.forward_preact(x) if self.cfg.sgs else self.s2(x)

    def forward_post(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """ATFR: the ReLU of the last res2 block on the SGS outputs; then s2_fuse, the pathway
        pools, res3..res5 (with fuses) and the head."""
        if len(feats) != self.num_pathways:
            raise ValueError(f"expected {self.num_pathways} feature tensor(s), got {len(feats)}")
        x = [F.relu(f) for f in feats] if self.cfg.sgs else list(feats)
        if self.slowfast:
            x = self.s2_fuse(x)
        x = [getattr(self, f"pathway{p}_pool")(t) for p, t in enumerate(x)]
        for s in (3, 4, 5):
            x = getattr(self, f"s{s}")(x)
            if self.slowfast and s < 5:
                x = getattr(self, f"s{s}_fuse")(x)
        return self.head(x)


# ---------------------------------------------------------------------------------- registry
_R50_SLOW = dict(stem_width=64, widths=(256, 512, 1024, 2048), inner_widths=(64, 128, 256, 512))
_SLOWFAST_TK = ((1, 1, 1, 3, 3), (5, 3, 3, 3, 3))  # PySlowFast _TEMPORAL_KERNEL_BASIS["slowfast"]
_FORK_3DRESNET = dict(
    arch="resnet3d",
    stem_width=8,
    widths=(32, 256, 512, 1024),
    inner_widths=(8, 64, 128, 256),
    temporal_kernels=((5, 3, 1, 1, 3),),
    frames=(32,),
    sampling_rate=1,
    head="adaptive",
)


@register_model(VideoResNet)
def slow_8x8_r50() -> ResNetConfig:
    """Slow 8x8 R50 (PySlowFast configs/Kinetics/c2/SLOW_8x8_R50.yaml)"""
    return ResNetConfig(arch="slow", frames=(8,), sampling_rate=8, temporal_kernels=((1, 1, 1, 3, 3),), **_R50_SLOW)


@register_model(VideoResNet)
def slowfast_4x16_r50() -> ResNetConfig:
    """SlowFast 4x16 R50 (PySlowFast configs/Kinetics/c2/SLOWFAST_4x16_R50.yaml)"""
    return ResNetConfig(
        arch="slowfast",
        frames=(4, 32),
        sampling_rate=2,
        alpha=8,
        fusion_kernel=5,
        temporal_kernels=_SLOWFAST_TK,
        **_R50_SLOW,
    )


@register_model(VideoResNet)
def slowfast_8x8_r50() -> ResNetConfig:
    """SlowFast 8x8 R50 (PySlowFast configs/Kinetics/c2/SLOWFAST_8x8_R50.yaml)"""
    return ResNetConfig(
        arch="slowfast",
        frames=(8, 32),
        sampling_rate=2,
        alpha=4,
        fusion_kernel=7,
        temporal_kernels=_SLOWFAST_TK,
        **_R50_SLOW,
    )


@register_model(VideoResNet)
def slowfast_16x8_r50() -> ResNetConfig:
    """SlowFast 16x8 R50 for Something-Something V2 (PySlowFast configs/SSv2/SLOWFAST_16x8_R50.yaml; 174 classes)"""
    return ResNetConfig(
        arch="slowfast",
        frames=(16, 64),
        sampling_rate=2,
        alpha=4,
        fusion_kernel=7,
        num_classes=174,
        temporal_kernels=_SLOWFAST_TK,
        num_views=1,
        num_crops=1,
        **_R50_SLOW,
    )


@register_model(VideoResNet)
def resnet3d_50() -> ResNetConfig:
    """3DResNet-50 of the official ATFR code (configs/Kinetics/3DResNet50.yaml; 7.3M params)"""
    return ResNetConfig(depth=50, **_FORK_3DRESNET)


# the fork's 3DResNet18+ATFR.yaml samples every 2nd frame (its baseline config every frame)
@register_model(VideoResNet, sampling_rate=2)
def resnet3d_18() -> ResNetConfig:
    """3DResNet-18 of the official ATFR code (configs/Mini_Kinetics200/3DResNet18.yaml; 2 bottlenecks per stage)"""
    return ResNetConfig(depth=18, **_FORK_3DRESNET)


@register_model(VideoResNet)
def slow_tiny() -> ResNetConfig:
    """Slow ResNet-18 (bottleneck) at a quarter of R50's width, 16x64x64: the demo's backbone, small enough to train on a CPU; temporal kernel 1 in the stem and res2, so nothing mixes frames before SGS"""  # noqa: E501
    return ResNetConfig(
        arch="slow",
        depth=18,
        frames=(16,),
        sampling_rate=1,
        train_crop=64,
        test_crop=64,
        stem_width=16,
        widths=(64, 128, 256, 512),
        inner_widths=(16, 32, 64, 128),
        temporal_kernels=((1, 1, 3, 3, 3),),
        dropout_rate=0.3,
        num_views=1,
        num_crops=3,
    )

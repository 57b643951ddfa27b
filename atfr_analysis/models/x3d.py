"""X3D (Feichtenhofer, CVPR 2020) with PySlowFast state-dict names, and its ATFR variants.

The network is written natively (no PySlowFast / PyTorchVideo import) from the description of
PySlowFast's ``X3D`` model (``MODEL.ARCH: x3d``, ``RESNET.TRANS_FUNC: x3d_transform``), and builds
the same state dict, key for key and shape for shape (``shared/fixtures/reference_keys/x3d_*.json``):

* stem ``s1.pathway0_stem``: ``conv_xy`` (1x3x3, spatial stride 2) -> ``conv`` (5x1x1, depthwise)
  -> ``bn`` -> ReLU;
* stages ``s2`` .. ``s5``, blocks ``pathway0_res{i}``: ``branch1`` (+ ``branch1_bn``) in the first
  block only (it carries the spatial stride 2), ``branch2.a`` (1x1x1) -> BN -> ReLU ->
  ``branch2.b`` (3x3x3, channel-wise) -> BN -> squeeze-excitation ``branch2.se`` (in blocks
  0, 2, 4, ...) -> Swish -> ``branch2.c`` (1x1x1) -> BN; residual sum, ReLU;
* head ``head.conv_5`` (1x1x1) -> ``conv_5_bn`` -> ReLU -> average pool -> ``head.lin_5``
  (1x1x1, no BN) -> ReLU -> dropout -> ``head.projection`` (Linear); in eval softmax, then the
  mean over the pooled positions.

The baseline head pools like PySlowFast's ``X3DHead``: an ``AvgPool3d`` with stride 1 and the
fixed kernel ``[frames, ceil(train_crop / 32), ceil(train_crop / 32)]``, so at the larger test crop
``lin_5`` and the projection run at several spatial positions (fully convolutional testing,
e.g. 9 positions for 356 px with a 312 px train crop); the kernel is clipped to the feature size,
so shorter clips or smaller crops than the config's still run (PySlowFast would fail there).
fvcore therefore counts the same graph as the reference at the train and the test crop.

Registered models (frames x sampling rate, train / test crop; 10 clips x 3 crops at test), each
reproducing a PySlowFast ``configs/Kinetics`` file (``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE``,
``DATA.TRAIN_CROP_SIZE``, ``DATA.TEST_CROP_SIZE``, ``X3D.*``):

=========  ============================================  =========  =========  =====  =====
name       PySlowFast config                             frames     crops      width  depth
=========  ============================================  =========  =========  =====  =====
x3d_xs     ``X3D_XS.yaml``                               4 x 12     160 / 182  2.0    2.2
x3d_s      ``X3D_S.yaml``                                13 x 6     160 / 182  2.0    2.2
x3d_m      ``X3D_M.yaml``                                16 x 5     224 / 256  2.0    2.2
x3d_l      ``X3D_L.yaml``                                16 x 5     312 / 356  2.0    5.0
x3d_xl     ``X3D_L.yaml`` + ``X3D.WIDTH_FACTOR: 2.9``    16 x 5     312 / 356  2.9    5.0
=========  ============================================  =========  =========  =====  =====

``x3d_xl`` rounds its widths to multiples of 8, as the published X3D-XL (11,095,904 parameters,
35.84 / 48.42 GMACs conv+fc at 16x312² / 16x356²); ``build_model("x3d_xl", width_divisor=1)`` is
PySlowFast's X3D_L.yaml with width factor 2.9 key for key (11,087,571 parameters). XS, S and M
share one state dict. Each has an ``_atfr`` variant (``sgs=True``, ``sgs_stage="res2"``).

Widths. PySlowFast rounds the widths scaled by ``X3D.WIDTH_FACTOR`` with divisor 1 (plain
rounding), PyTorchVideo and the published X3D-XL with divisor 8. For width factor 2.0 (XS, S, M, L)
both agree; for X3D-XL (2.9) they differ (see ``X3DConfig.width_divisor``).

ATFR (``_atfr`` names, ``sgs=True``). The official ATFR code (a PySlowFast fork) prepared a hook
for X3D -- its ``X3DStem`` can host a ``ts_layer`` after the temporal conv and its BN, before the
ReLU -- but it released no X3D model builder and no X3D config, so no reference X3D+ATFR exists.
Here the Similarity Guided Sampling layer sits either

* ``sgs_stage="res2"`` (default, the official convention of its released single-pathway models):
  at the end of res2, on the last block's residual sum before its ReLU, state-dict key
  ``s2.ts_layer.*``; or
* ``sgs_stage="stem"``: after the stem's depthwise temporal (5x1x1) conv and its BN, before the
  ReLU (where the official hook sits), key ``s1.ts_layer.*``. Note: the official hook registers
  the layer inside the stem module, i.e. at ``s1.pathway0_stem.ts_layer.*``; as no X3D+ATFR
  checkpoint exists, this project keeps the stage-level name ``s1.ts_layer``.

Because the number of frames after SGS varies, the ATFR head pools adaptively (global average
over T, H and W); its keys are the baseline's, so a baseline checkpoint loads into the ATFR model
with ``strict=False`` and only the ``ts_layer`` keys missing (torch does not list the missing
``bn.num_batches_tracked``).

Swish is computed as PySlowFast computes it, ``x * torch.sigmoid(x)`` (:func:`swish`), not with
``F.silu``, which rounds differently (one ulp in about a quarter of the elements, growing to about
1e-4 relative on X3D-L's logits); outputs are bit-identical to PySlowFast's for the same weights
(``shared/fixtures/pyslowfast_forward``). fvcore counts neither it nor the SE gating multiply.

As every family of the zoo: one class for the baseline and the ATFR variant (``cfg.sgs``), the
config validated on construction, PySlowFast's weight init (``VideoModel.init_weights``), the head
built from :mod:`atfr_analysis.models.blocks`, and the registry names as
``@register_model(X3D)`` functions at the end of this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.models.base import InputSpec, VideoModel, as_pathways
from atfr_analysis.models.blocks import classify_positions, head_pool_kernel, make_activation, make_head_pool
from atfr_analysis.models.registry import register_model

__all__ = ["X3DConfig", "X3D", "round_width", "x3d_widths", "swish"]

# blocks per stage before the depth factor, PySlowFast's X3D ``block_basis``
_BASE_BLOCKS = (1, 2, 5, 3)
# base stage widths relative to DIM_C1: res2 = c1, then x2 per stage (rounded to 8)
_STAGE_EXPANSION = 2.0
_SGS_STAGES = ("res2", "stem")


def round_width(width: float, multiplier: float, divisor: int = 8, min_width: int | None = None) -> int:
    """Scale ``width`` by ``multiplier`` and round to a multiple of ``divisor``.

    Rounds to the nearest multiple (halves up), at least ``min_width`` (default ``divisor``), and
    adds one ``divisor`` when rounding lost more than 10 %. ``divisor=1`` is plain rounding
    (PySlowFast's X3D width rounding); ``divisor=8`` is PyTorchVideo's default.
    """
    if not multiplier:
        return int(width)
    w = width * multiplier
    min_width = min_width or divisor
    out = max(min_width, int(w + divisor / 2) // divisor * divisor)
    if out < 0.9 * w:
        out += divisor
    return int(out)


@dataclass(frozen=True)
class X3DConfig:
    """Explicit configuration of an X3D model (PySlowFast's ``X3D.*`` and ``DATA.*`` keys).

    ``width_divisor``: 8 (default) rounds the widths scaled by ``width_factor`` to multiples of 8,
    as the published X3D-XL (11.10 M parameters); 1 is PySlowFast's rounding (X3D-XL: 11.09 M,
    stage widths 35/35/70/139/278). Both agree for ``width_factor=2.0``.
    ``sgs`` adds a Similarity Guided Sampling layer at ``sgs_stage`` (``"res2"`` or ``"stem"``);
    ``num_bins`` (None: B = T at the layer's input), ``latent_dim``, ``distance`` and ``kernel``
    are passed to it.
    """

    #: PySlowFast's ``MODEL.ARCH`` (a class constant, not a field)
    arch: ClassVar[str] = "x3d"

    width_factor: float = 2.0
    depth_factor: float = 2.2
    bottleneck_factor: float = 2.25
    dim_c1: int = 12
    dim_c5: int = 2048
    channelwise: bool = True  # channel-wise 3x3x3 convs (X3D.CHANNELWISE_3x3x3)
    width_divisor: int = 8
    se_ratio: float = 0.0625
    frames: int = 13
    sampling_rate: int = 6
    train_crop: int = 160
    test_crop: int = 182
    num_classes: int = 400
    dropout: float = 0.5
    fc_init_std: float = 0.01
    zero_init_final_bn: bool = True
    sgs: bool = False
    sgs_stage: str = "res2"
    num_bins: int | None = None
    latent_dim: int = 8
    distance: str = "l2_to_mean"
    kernel: str = "tent"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """:class:`InputError` naming the first inconsistent field (run on construction)."""
        if self.sgs_stage not in _SGS_STAGES:
            raise InputError(f"sgs_stage must be one of {', '.join(_SGS_STAGES)}, got {self.sgs_stage!r}")
        if self.width_divisor < 1:
            raise InputError(f"width_divisor must be >= 1, got {self.width_divisor}")


def x3d_widths(cfg: X3DConfig) -> dict:
    """Stem width, per-stage (out, inner, blocks), SE widths, and the head's inner width."""
    base = [cfg.dim_c1]
    for _ in range(3):
        base.append(round_width(base[-1], _STAGE_EXPANSION, divisor=8))
    stem = round_width(cfg.dim_c1, cfg.width_factor, divisor=cfg.width_divisor)
    stages = []
    for b, n in zip(base, _BASE_BLOCKS):
        out = round_width(b, cfg.width_factor, divisor=cfg.width_divisor)
        inner = int(cfg.bottleneck_factor * out)
        blocks = int(math.ceil(cfg.depth_factor * n)) if cfg.depth_factor else n
        stages.append((out, inner, blocks))
    return {"stem": stem, "stages": stages, "head_inner": stages[-1][1], "head_out": cfg.dim_c5}


# ---------------------------------------------------------------------------------- modules
def swish(x: torch.Tensor) -> torch.Tensor:
    """Swish as PySlowFast computes it: ``x * torch.sigmoid(x)`` (bit for bit; not ``F.silu``)."""
    return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation with 1x1x1 convs (``fc1`` / ``fc2``, with bias), ReLU then sigmoid."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        dim_fc = round_width(dim, ratio, divisor=8, min_width=8)
        self.fc1 = nn.Conv3d(dim, dim_fc, 1, bias=True)
        self.fc2 = nn.Conv3d(dim_fc, dim, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool3d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class X3DTransform(nn.Module):
    """``branch2``: 1x1x1 -> BN -> ReLU -> 3x3x3 (channel-wise) -> BN -> [SE] -> Swish -> 1x1x1 -> BN."""

    def __init__(
        self, dim_in: int, dim_out: int, dim_inner: int, stride: int, groups: int, use_se: bool, se_ratio: float
    ) -> None:
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner)
        self.b = nn.Conv3d(
            dim_inner, dim_inner, (3, 3, 3), stride=(1, stride, stride), padding=(1, 1, 1), groups=groups, bias=False
        )
        self.b_bn = nn.BatchNorm3d(dim_inner)
        if use_se:
            self.se = SqueezeExcitation(dim_inner, se_ratio)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.c_bn.transform_final_bn = True  # zero-initialised (ZERO_INIT_FINAL_BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if hasattr(self, "se"):
            x = self.se(x)
        x = swish(x)
        return self.c_bn(self.c(x))


class X3DBlock(nn.Module):
    """Residual block: ``relu(shortcut(x) + branch2(x))``; ``forward_preact`` returns the sum
    before the ReLU (the SGS input), as ``blocks.ResBlock``."""

    def __init__(
        self, dim_in: int, dim_out: int, dim_inner: int, stride: int, groups: int, use_se: bool, se_ratio: float
    ) -> None:
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out)
        self.branch2 = X3DTransform(dim_in, dim_out, dim_inner, stride, groups, use_se, se_ratio)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        f = self.branch2(x)
        if hasattr(self, "branch1"):
            return self.branch1_bn(self.branch1(x)) + f
        return x + f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.forward_preact(x))


class X3DStage(nn.Module):
    """``s{2..5}``: blocks ``pathway0_res{i}``, the first with the spatial stride 2 and ``branch1``."""

    def __init__(
        self, dim_in: int, dim_out: int, dim_inner: int, num_blocks: int, channelwise: bool, se_ratio: float
    ) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        for i in range(num_blocks):
            block = X3DBlock(
                dim_in if i == 0 else dim_out,
                dim_out,
                dim_inner,
                stride=2 if i == 0 else 1,
                groups=dim_inner if channelwise else 1,
                use_se=se_ratio > 0 and i % 2 == 0,
                se_ratio=se_ratio,
            )
            self.add_module(f"pathway0_res{i}", block)

    def blocks(self) -> list[X3DBlock]:
        return [getattr(self, f"pathway0_res{i}") for i in range(self.num_blocks)]

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """Every block; the last one's residual sum *before* its ReLU."""
        *head, last = self.blocks()
        for blk in head:
            x = blk(x)
        return last.forward_preact(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks():
            x = blk(x)
        return x


class X3DStem(nn.Module):
    """``pathway0_stem``: 1x3x3 conv (stride 1,2,2) -> 5x1x1 depthwise conv -> BN -> ReLU."""

    def __init__(self, dim_in: int, dim_out: int, temporal_kernel: int = 5) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(
            dim_out, dim_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), groups=dim_out, bias=False
        )
        self.bn = nn.BatchNorm3d(dim_out)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The BN output before the ReLU (where the official hook puts SGS)."""
        return self.bn(self.conv(self.conv_xy(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.forward_preact(x))


class X3DStemStage(nn.Module):
    """``s1``: holds ``pathway0_stem`` (and ``ts_layer`` for ``sgs_stage="stem"``)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.pathway0_stem = X3DStem(dim_in, dim_out)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        return self.pathway0_stem.forward_preact(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pathway0_stem(x)


class X3DHead(nn.Module):
    """``conv_5`` -> BN -> ReLU -> avg pool -> ``lin_5`` -> ReLU -> dropout -> ``projection``.

    ``pool_size=None`` pools adaptively (global average, the ATFR head); otherwise an average pool
    with stride 1 and that kernel (clipped to the feature size, ``blocks.FittedAvgPool3d``),
    applied fully convolutionally: the projection runs at every pooled position and, in eval,
    softmax is taken per position and averaged, as PySlowFast's ``X3DHead``
    (``blocks.classify_positions``). In train mode the logits are averaged over positions (there
    is one position at the train crop).
    """

    def __init__(
        self,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        num_classes: int,
        pool_size: tuple[int, int, int] | None,
        dropout: float,
        act: str | None = "softmax",
    ) -> None:
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner)
        self.pool = make_head_pool(pool_size, fit=True)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.projection = nn.Linear(dim_out, num_classes, bias=True)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv_5_bn(self.conv_5(x))))
        x = F.relu(self.lin_5(x))
        return classify_positions(x, self.projection, self.dropout, self.act, self.training, always_mean=True)


# ---------------------------------------------------------------------------------- model
class X3D(VideoModel):
    """X3D with PySlowFast state-dict names; with ``cfg.sgs`` an ATFR model (see module doc)."""

    family = "x3d"

    def __init__(self, cfg: X3DConfig) -> None:
        super().__init__(cfg)
        self.spec = InputSpec(
            frames=(cfg.frames,),
            train_crop=cfg.train_crop,
            test_crop=cfg.test_crop,
            sampling_rate=cfg.sampling_rate,
            num_views=10,
            num_crops=3,
            one_crop=(cfg.test_crop, cfg.train_crop),
        )
        w = x3d_widths(cfg)
        self.widths = w
        self.s1 = X3DStemStage(3, w["stem"])
        dim_in = w["stem"]
        for i, (out, inner, blocks) in enumerate(w["stages"]):
            self.add_module(f"s{i + 2}", X3DStage(dim_in, out, inner, blocks, cfg.channelwise, cfg.se_ratio))
            dim_in = out
        self.head = X3DHead(
            dim_in,
            w["head_inner"],
            w["head_out"],
            cfg.num_classes,
            pool_size=None if cfg.sgs else head_pool_kernel(cfg.frames, cfg.train_crop, ceil=True),
            dropout=cfg.dropout,
        )
        self.init_weights()
        if cfg.sgs:
            host = self.s2 if cfg.sgs_stage == "res2" else self.s1
            channels = w["stages"][0][0] if cfg.sgs_stage == "res2" else w["stem"]
            # registered last, so its keys follow the host's blocks, as in the official state dict
            # (and after the init, which it does not take part in)
            host.ts_layer = self.make_sgs(channels)

    @classmethod
    def atfr_description(cls, description: str) -> str:
        return (
            f"{description}; ATFR: Similarity Guided Sampling at the end of res2 (s2.ts_layer), "
            "adaptive head (no official X3D+ATFR config exists)"
        )

    # ------------------------------------------------------------------ forward
    def forward_pre(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Everything before SGS: the stem's BN output (``stem``) or res2's last pre-ReLU sum.
        Without SGS the same split (for phase timings), the ReLU included."""
        (x,) = as_pathways(xs)
        if self.cfg.sgs_stage == "stem":
            return [self.s1.forward_preact(x) if self.cfg.sgs else self.s1(x)]
        x = self.s1(x)
        return [self.s2.forward_preact(x) if self.cfg.sgs else self.s2(x)]

    def forward_post(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Everything after SGS: the deferred ReLU (ATFR), the remaining stages and the head."""
        (x,) = feats
        if self.cfg.sgs:
            x = F.relu(x)
        if self.cfg.sgs_stage == "stem":
            x = self.s2(x)
        for s in (self.s3, self.s4, self.s5):
            x = s(x)
        return self.head(x)


# ---------------------------------------------------------------------------------- registry
@register_model(X3D)
def x3d_xs() -> X3DConfig:
    """X3D-XS, PySlowFast configs/Kinetics/X3D_XS.yaml: 4x12 frames, 160 px train / 182 px test (3 crops), width 2.0, depth 2.2"""  # noqa: E501
    return X3DConfig(frames=4, sampling_rate=12, train_crop=160, test_crop=182)


@register_model(X3D)
def x3d_s() -> X3DConfig:
    """X3D-S, PySlowFast configs/Kinetics/X3D_S.yaml: 13x6 frames, 160 px train / 182 px test (3 crops), width 2.0, depth 2.2"""  # noqa: E501
    return X3DConfig(frames=13, sampling_rate=6, train_crop=160, test_crop=182)


@register_model(X3D)
def x3d_m() -> X3DConfig:
    """X3D-M, PySlowFast configs/Kinetics/X3D_M.yaml: 16x5 frames, 224 px train / 256 px test (3 crops), width 2.0, depth 2.2"""  # noqa: E501
    return X3DConfig(frames=16, sampling_rate=5, train_crop=224, test_crop=256)


@register_model(X3D)
def x3d_l() -> X3DConfig:
    """X3D-L, PySlowFast configs/Kinetics/X3D_L.yaml: 16x5 frames, 312 px train / 356 px test (3 crops), width 2.0, depth 5.0"""  # noqa: E501
    return X3DConfig(depth_factor=5.0, frames=16, sampling_rate=5, train_crop=312, test_crop=356)


@register_model(X3D)
def x3d_xl() -> X3DConfig:
    """X3D-XL as published (X3D_L.yaml with X3D.WIDTH_FACTOR 2.9, widths rounded to multiples of 8: 11.10 M params); width_divisor=1 gives PySlowFast's rounding (11.09 M)"""  # noqa: E501
    return X3DConfig(width_factor=2.9, depth_factor=5.0, frames=16, sampling_rate=5, train_crop=312, test_crop=356)

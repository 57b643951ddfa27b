"""Building blocks of PySlowFast-style 3D CNNs, named so that state dicts match PySlowFast's.

Every module here is a plain ``torch.nn.Module`` built from explicit arguments (no global config).
Sub-module names are PySlowFast's, because they become the state-dict keys:

``ResNetBasicStem``
    ``conv`` (k_t x 7 x 7, stride 1x2x2), ``bn``, ReLU, ``pool_layer`` (max 1x3x3, stride 1x2x2).
``VideoModelStem``
    one ``ResNetBasicStem`` per pathway: ``pathway{p}_stem``.
``BottleneckTransform`` / ``BasicTransform``
    ``a``/``a_bn`` (k_t x 1 x 1), ``b``/``b_bn`` (1 x 3 x 3, carries the spatial stride), ``c``/``c_bn``
    (1 x 1 x 1; bottleneck only). The last BN of a transform is flagged ``transform_final_bn`` so
    that :func:`init_weights` can zero it.
``ResBlock``
    ``branch1``/``branch1_bn`` (1x1x1 projection, only where the width or the stride changes) and
    ``branch2`` (the transform); ReLU after the residual sum. ``forward_preact`` returns the sum
    before that ReLU (where the ATFR fork inserts its SGS layer).
``ResStage``
    ``pathway{p}_res{i}`` for every pathway, plus optionally one SGS layer per pathway after the
    last block (``pathway{p}_ts_layer``; ``ts_layer`` for a single pathway, as the fork names them).
    The stage only hosts those layers (their state-dict place); the model runs them
    (``VideoModel.forward_sgs``) on ``forward_preact``'s output.
``FuseFastToSlow``
    SlowFast's lateral connection ``conv_f2s`` (k x 1 x 1, temporal stride alpha) + ``bn`` + ReLU,
    concatenated to the slow pathway. With ``pad_temporal=True`` it reproduces the ATFR fork, which
    zero-pads whichever temporal axis is shorter (see :func:`pad_to_common_length`).
``ResNetBasicHead``
    ``pathway{p}_avgpool``, dropout, ``projection`` (Linear), softmax in eval mode. The pooling is
    either PySlowFast's fixed ``AvgPool3d`` with stride 1 (fully convolutional at a larger test
    crop: the projection runs at every position, softmax, then mean over positions) or adaptive
    average pooling to 1x1x1 (the fork's ``ResNetAdaptHead``; pass ``None`` as the pool size).

The head logic is split into reusable functions that every head of the zoo uses (X3D's
``X3DHead`` pools with a fixed kernel too, then runs ``lin_5`` and the projection at every
position): :func:`head_pool_kernel` (the kernel PySlowFast derives from the train crop),
:func:`make_head_pool` (optionally clipping the kernel to the input, :class:`FittedAvgPool3d`),
:func:`make_activation` and :func:`classify_positions` (permute, dropout, projection, activation in
eval mode and the mean over positions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ResNetBasicStem",
    "VideoModelStem",
    "BottleneckTransform",
    "BasicTransform",
    "ResBlock",
    "ResStage",
    "FuseFastToSlow",
    "pad_to_common_length",
    "ResNetBasicHead",
    "head_pool_kernel",
    "make_head_pool",
    "FittedAvgPool3d",
    "make_activation",
    "classify_positions",
    "init_weights",
    "TRANSFORMS",
]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def _bn3d(channels: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=eps, momentum=momentum)


# --------------------------------------------------------------------------------------- stems
class ResNetBasicStem(nn.Module):
    """Conv (no bias) -> BN -> ReLU -> max pool 1x3x3 / stride 1x2x2 (``pool=False`` drops it)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel: Sequence[int],
        stride: Sequence[int] = (1, 2, 2),
        padding: Sequence[int] | None = None,
        pool: bool = True,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        kernel = tuple(kernel)
        padding = tuple(k // 2 for k in kernel) if padding is None else tuple(padding)
        self.conv = nn.Conv3d(dim_in, dim_out, kernel, stride=tuple(stride), padding=padding, bias=False)
        self.bn = _bn3d(dim_out)
        self.relu = nn.ReLU(inplace=inplace_relu)
        self.pool_layer = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return x if self.pool_layer is None else self.pool_layer(x)


class VideoModelStem(nn.Module):
    """One :class:`ResNetBasicStem` per pathway (``pathway{p}_stem``); list in, list out."""

    def __init__(
        self,
        dim_in: Sequence[int],
        dim_out: Sequence[int],
        kernel: Sequence[Sequence[int]],
        stride: Sequence[Sequence[int]],
        padding: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        n = len(dim_in)
        if not (len(dim_out) == len(kernel) == len(stride) == n):
            raise ValueError("stem arguments must have one entry per pathway")
        padding = [None] * n if padding is None else padding
        self.num_pathways = n
        for p in range(n):
            self.add_module(
                f"pathway{p}_stem",
                ResNetBasicStem(dim_in[p], dim_out[p], kernel[p], stride[p], padding[p]),
            )

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_pathways:
            raise ValueError(f"expected {self.num_pathways} pathway tensor(s), got {len(xs)}")
        return [getattr(self, f"pathway{p}_stem")(x) for p, x in enumerate(xs)]


# ------------------------------------------------------------------------------ transforms
class BottleneckTransform(nn.Module):
    """k_t x 1 x 1 -> 1 x 3 x 3 (spatial stride, groups, dilation) -> 1 x 1 x 1, each with BN."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        temp_kernel_size: int,
        stride: int,
        dim_inner: int,
        num_groups: int = 1,
        stride_1x1: bool = False,
        dilation: int = 1,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_1x1 else (1, stride)
        kt = temp_kernel_size
        self.a = nn.Conv3d(dim_in, dim_inner, (kt, 1, 1), stride=(1, s1, s1), padding=(kt // 2, 0, 0), bias=False)
        self.a_bn = _bn3d(dim_inner)
        self.a_relu = nn.ReLU(inplace=inplace_relu)
        self.b = nn.Conv3d(
            dim_inner,
            dim_inner,
            (1, 3, 3),
            stride=(1, s3, s3),
            padding=(0, dilation, dilation),
            dilation=(1, dilation, dilation),
            groups=num_groups,
            bias=False,
        )
        self.b_bn = _bn3d(dim_inner)
        self.b_relu = nn.ReLU(inplace=inplace_relu)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = _bn3d(dim_out)
        self.c_bn.transform_final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class BasicTransform(nn.Module):
    """k_t x 3 x 3 (spatial stride) -> 1 x 3 x 3, each with BN (``dim_inner`` is unused)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        temp_kernel_size: int,
        stride: int,
        dim_inner: int | None = None,
        num_groups: int = 1,
        stride_1x1: bool = False,
        dilation: int = 1,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        kt = temp_kernel_size
        self.a = nn.Conv3d(dim_in, dim_out, (kt, 3, 3), stride=(1, stride, stride), padding=(kt // 2, 1, 1), bias=False)
        self.a_bn = _bn3d(dim_out)
        self.a_relu = nn.ReLU(inplace=inplace_relu)
        self.b = nn.Conv3d(dim_out, dim_out, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.b_bn = _bn3d(dim_out)
        self.b_bn.transform_final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        return self.b_bn(self.b(x))


TRANSFORMS: dict[str, type[nn.Module]] = {
    "bottleneck": BottleneckTransform,
    "basic": BasicTransform,
}


# ---------------------------------------------------------------------------------- blocks
class ResBlock(nn.Module):
    """Residual block: ``relu(shortcut(x) + branch2(x))``; the shortcut projects where needed."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        temp_kernel_size: int,
        stride: int,
        dim_inner: int,
        num_groups: int = 1,
        trans_func: str = "bottleneck",
        stride_1x1: bool = False,
        dilation: int = 1,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        if trans_func not in TRANSFORMS:
            raise ValueError(f"trans_func must be one of {', '.join(TRANSFORMS)}, got {trans_func!r}")
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = _bn3d(dim_out)
        else:
            self.branch1 = None
        self.branch2 = TRANSFORMS[trans_func](
            dim_in,
            dim_out,
            temp_kernel_size,
            stride,
            dim_inner,
            num_groups,
            stride_1x1=stride_1x1,
            dilation=dilation,
            inplace_relu=inplace_relu,
        )
        self.relu = nn.ReLU(inplace=inplace_relu)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The residual sum before the block's final ReLU."""
        f_x = self.branch2(x)
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return shortcut + f_x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.forward_preact(x))


class ResStage(nn.Module):
    """One stage of a (multi-pathway) 3D ResNet: ``pathway{p}_res{i}`` for each pathway ``p``.

    Per pathway: ``dim_in``/``dim_out``/``dim_inner`` widths, ``temp_kernel_sizes`` (the temporal
    kernel of the blocks' first conv), ``num_blocks``, and ``num_block_temp_kernel`` (the first that
    many blocks use the temporal kernel, the others 1; ``None`` = all). ``stride`` is the spatial
    stride of the first block.

    ``sgs_factory(channels) -> module``, when given, adds one Similarity Guided Sampling layer per
    pathway after its last block, registered as ``pathway{p}_ts_layer`` (``ts_layer`` for a
    single pathway) right after that pathway's blocks; ``sgs_names`` lists them. The stage only
    hosts them: the model runs each layer on the last block's residual sum before its ReLU
    (:meth:`forward_preact`) and applies the ReLU to the layer's output; ``forward`` runs the
    blocks only.
    """

    def __init__(
        self,
        dim_in: Sequence[int],
        dim_out: Sequence[int],
        dim_inner: Sequence[int],
        temp_kernel_sizes: Sequence[int],
        stride: Sequence[int],
        num_blocks: Sequence[int],
        num_block_temp_kernel: Sequence[int] | None = None,
        num_groups: Sequence[int] | None = None,
        trans_func: str = "bottleneck",
        dilation: Sequence[int] | None = None,
        stride_1x1: bool = False,
        inplace_relu: bool = True,
        sgs_factory: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        n = len(dim_in)
        num_block_temp_kernel = list(num_blocks) if num_block_temp_kernel is None else list(num_block_temp_kernel)
        num_groups = [1] * n if num_groups is None else list(num_groups)
        dilation = [1] * n if dilation is None else list(dilation)
        lengths = {
            len(x)
            for x in (
                dim_out,
                dim_inner,
                temp_kernel_sizes,
                stride,
                num_blocks,
                num_block_temp_kernel,
                num_groups,
                dilation,
            )
        }
        if lengths != {n}:
            raise ValueError("ResStage arguments must have one entry per pathway")
        self.num_pathways = n
        self.num_blocks = list(num_blocks)
        self.sgs_names: list[str] = []
        for p in range(n):
            if not 0 <= num_block_temp_kernel[p] <= num_blocks[p]:
                raise ValueError("num_block_temp_kernel must lie between 0 and num_blocks")
            for i in range(num_blocks[p]):
                kt = temp_kernel_sizes[p] if i < num_block_temp_kernel[p] else 1
                block = ResBlock(
                    dim_in[p] if i == 0 else dim_out[p],
                    dim_out[p],
                    kt,
                    stride[p] if i == 0 else 1,
                    dim_inner[p],
                    num_groups[p],
                    trans_func=trans_func,
                    stride_1x1=stride_1x1,
                    dilation=dilation[p],
                    inplace_relu=inplace_relu,
                )
                self.add_module(f"pathway{p}_res{i}", block)
            if sgs_factory is not None:
                name = "ts_layer" if n == 1 else f"pathway{p}_ts_layer"
                self.add_module(name, sgs_factory(dim_out[p]))
                self.sgs_names.append(name)

    def _blocks(self, p: int) -> list[ResBlock]:
        return [getattr(self, f"pathway{p}_res{i}") for i in range(self.num_blocks[p])]

    def forward_preact(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Run every block; return each pathway's last residual sum *before* its ReLU."""
        out = []
        for p, x in enumerate(xs):
            *head, last = self._blocks(p)
            for block in head:
                x = block(x)
            out.append(last.forward_preact(x))
        return out

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_pathways:
            raise ValueError(f"expected {self.num_pathways} pathway tensor(s), got {len(xs)}")
        out = []
        for p, x in enumerate(xs):
            for block in self._blocks(p):
                x = block(x)
            out.append(x)
        return out


# ---------------------------------------------------------------------------------- fusion
def pad_to_common_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad the temporal axis (dim 2) of the shorter of ``a``, ``b`` to the longer one.

    The padding is centred as the ATFR fork does it: ``(L - T) // 2`` zero frames in front, the
    rest behind. Tensors of equal length are returned unchanged (no op enters the graph).
    """
    length = max(a.shape[2], b.shape[2])

    def pad(x: torch.Tensor) -> torch.Tensor:
        missing = length - x.shape[2]
        if missing <= 0:
            return x
        front = missing // 2
        return F.pad(x, (0, 0, 0, 0, front, missing - front))

    return pad(a), pad(b)


class FuseFastToSlow(nn.Module):
    """SlowFast lateral connection: ``[cat(slow, relu(bn(conv_f2s(fast)))), fast]``.

    ``conv_f2s`` has kernel ``fusion_kernel x 1 x 1``, temporal stride ``alpha`` and padding
    ``fusion_kernel // 2``: from ``T_f`` fast frames it makes ``ceil(T_f / alpha)`` (odd kernel).

    ``pad_temporal=False`` is PySlowFast: the two lengths must agree. ``pad_temporal=True`` is the
    ATFR fork, where SGS has changed both lengths independently (slow ``B'_s`` bins, fast ``B'_f``
    bins, so the fused part has ``ceil(B'_f / alpha)`` frames): the shorter of the slow tensor and
    the fused tensor is zero-padded, centred, to the longer (:func:`pad_to_common_length`). If the
    fused part is longer, the *slow pathway itself* is padded and keeps that length in the later
    stages; the fast pathway passes through unchanged.
    """

    def __init__(
        self,
        dim_in: int,
        fusion_conv_channel_ratio: int,
        fusion_kernel: int,
        alpha: int,
        pad_temporal: bool = False,
        inplace_relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv_f2s = nn.Conv3d(
            dim_in,
            dim_in * fusion_conv_channel_ratio,
            (fusion_kernel, 1, 1),
            stride=(alpha, 1, 1),
            padding=(fusion_kernel // 2, 0, 0),
            bias=False,
        )
        self.bn = _bn3d(dim_in * fusion_conv_channel_ratio)
        self.relu = nn.ReLU(inplace=inplace_relu)
        self.pad_temporal = pad_temporal

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x_s, x_f = xs
        fuse = self.relu(self.bn(self.conv_f2s(x_f)))
        if self.pad_temporal:
            x_s, fuse = pad_to_common_length(x_s, fuse)
        return [torch.cat([x_s, fuse], 1), x_f]


# ------------------------------------------------------------------------------------ heads
def head_pool_kernel(frames: int, crop: int, total_stride: int = 32, ceil: bool = False) -> tuple[int, int, int]:
    """The fixed head pooling kernel PySlowFast derives from the *train* crop.

    ``(frames, crop // stride, crop // stride)`` for ResNets; X3D rounds up (``ceil=True``).
    """
    side = math.ceil(crop / total_stride) if ceil else crop // total_stride
    return (int(frames), int(side), int(side))


class FittedAvgPool3d(nn.Module):
    """``avg_pool3d`` with stride 1 and ``kernel`` clipped to the input's size, so that shorter
    clips or smaller crops than the config's still run (PySlowFast's fixed kernel would fail)."""

    def __init__(self, kernel: Sequence[int]) -> None:
        super().__init__()
        self.kernel = tuple(int(k) for k in kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, [min(k, s) for k, s in zip(self.kernel, x.shape[2:])], stride=1)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride=1, clipped to the input"


def make_head_pool(kernel: Sequence[int] | None, fit: bool = False) -> nn.Module:
    """``AvgPool3d(kernel, stride=1)`` (PySlowFast), or adaptive pooling to 1x1x1 for ``None``.
    ``fit=True``: the kernel is clipped to the input (:class:`FittedAvgPool3d`)."""
    if kernel is None:
        return nn.AdaptiveAvgPool3d((1, 1, 1))
    if fit:
        return FittedAvgPool3d(kernel)
    return nn.AvgPool3d(tuple(kernel), stride=1)


def make_activation(act: str | None) -> nn.Module | None:
    """The eval-mode activation of PySlowFast heads: ``"softmax"`` (over classes), ``"sigmoid"``."""
    if act is None or act == "none":
        return None
    if act == "softmax":
        return nn.Softmax(dim=-1)
    if act == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"act must be 'softmax', 'sigmoid' or None, got {act!r}")


def classify_positions(
    x: torch.Tensor,
    projection: nn.Module,
    dropout: nn.Module | None = None,
    act: nn.Module | None = None,
    training: bool = False,
    always_mean: bool = False,
) -> torch.Tensor:
    """Fully convolutional classification of pooled features ``[N, C, T, H, W]`` -> ``[N, K]``.

    As PySlowFast's heads: channels last, dropout, ``projection`` at every (t, h, w) position; in
    eval mode the activation (softmax) is applied per position and the scores are averaged over
    the positions (one position at the train crop, several at a larger test crop). In training
    mode the logits are returned (averaged over positions if there are several).
    ``always_mean``: take the mean even over one position (a no-op on the values), as
    PySlowFast's ``X3DHead`` does, so that the traced graph is upstream's.
    """
    x = x.permute(0, 2, 3, 4, 1)
    if dropout is not None:
        x = dropout(x)
    x = projection(x)
    if not training and act is not None:
        x = act(x)
    if always_mean or x.shape[1] * x.shape[2] * x.shape[3] > 1:
        x = x.mean(dim=(1, 2, 3))
    return x.reshape(x.shape[0], -1)


class ResNetBasicHead(nn.Module):
    """PySlowFast's ``ResNetBasicHead`` (and, with ``pool_size=[None, ...]``, the fork's adaptive head).

    ``pool_size`` holds one entry per pathway: a fixed ``AvgPool3d`` kernel (stride 1, from the
    train crop, see :func:`head_pool_kernel`) or ``None`` for adaptive average pooling to 1x1x1.
    The pooled pathways are concatenated along channels before the projection.
    """

    def __init__(
        self,
        dim_in: Sequence[int],
        num_classes: int,
        pool_size: Sequence[Sequence[int] | None],
        dropout_rate: float = 0.0,
        act: str | None = "softmax",
    ) -> None:
        super().__init__()
        if len(dim_in) != len(pool_size):
            raise ValueError("dim_in and pool_size need one entry per pathway")
        self.num_pathways = len(dim_in)
        for p, kernel in enumerate(pool_size):
            self.add_module(f"pathway{p}_avgpool", make_head_pool(kernel))
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.projection = nn.Linear(sum(dim_in), num_classes, bias=True)
        self.act = make_activation(act)

    def forward(self, xs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(xs, torch.Tensor):
            xs = [xs]
        if len(xs) != self.num_pathways:
            raise ValueError(f"expected {self.num_pathways} pathway tensor(s), got {len(xs)}")
        pooled = [getattr(self, f"pathway{p}_avgpool")(x) for p, x in enumerate(xs)]
        x = torch.cat(pooled, 1) if len(pooled) > 1 else pooled[0]
        return classify_positions(x, self.projection, self.dropout, self.act, self.training)


# ------------------------------------------------------------------------------------- init
def init_weights(
    model: nn.Module,
    fc_init_std: float = 0.01,
    zero_init_final_bn: bool = True,
    skip: Callable[[str], bool] | None = None,
) -> None:
    """PySlowFast's initialisation: convolutions He-normal (fan-out), BN weight 1 (0 for the last
    BN of each residual transform if ``zero_init_final_bn``) and bias 0, linear N(0, std^2) and
    bias 0. Modules whose qualified name satisfies ``skip`` keep their own initialisation.
    """
    for name, m in model.named_modules():
        if skip is not None and skip(name):
            continue
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                final = getattr(m, "transform_final_bn", False) and zero_init_final_bn
                nn.init.constant_(m.weight, 0.0 if final else 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=fc_init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

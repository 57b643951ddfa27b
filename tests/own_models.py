"""Tiny networks that are not in the zoo, with SGS layers where the zoo never puts them.

Importable as ``own_models:<fn>`` (``tests/`` on the path) by the CLI tests. Each builder takes
``num_classes`` and keyword changes (``width``, ``where``) that the regression tests use to move
a model's cost.
"""

from __future__ import annotations

import torch
from torch import nn

from atfr_analysis.models import InputSpec
from atfr_analysis.sgs import SimilarityGuidedSampling

SPEC = InputSpec(frames=(8,), train_crop=32, test_crop=32, sampling_rate=2, num_views=2, num_crops=3)


def _unit(cin: int, cout: int, stride=(1, 2, 2)) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU())


class Select(nn.Module):
    """Keeps the SGS output of ``(out, mask)`` (so the layer can sit inside an ``nn.Sequential``)."""

    def forward(self, pair):
        return pair[0]


class TwoInSequence(nn.Module):
    """Two SGS layers in sequence in one pathway: the second sees the first's B' bins."""

    input_spec = SPEC

    def __init__(self, num_classes: int = 5, width: int = 8):
        super().__init__()
        self.stem = _unit(3, width)
        self.sgs1 = SimilarityGuidedSampling(width)
        self.mid = _unit(width, 2 * width)
        self.sgs2 = SimilarityGuidedSampling(2 * width, num_bins=4)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x, _ = self.sgs1(self.stem(x))
        x, _ = self.sgs2(self.mid(x))
        return self.head(x.mean(dim=(2, 3, 4)))


class TwoBranch(nn.Module):
    """Two parallel branches on the same clip, each with its own SGS layer."""

    input_spec = SPEC

    def __init__(self, num_classes: int = 5, width: int = 8):
        super().__init__()
        self.fine = nn.ModuleDict({"conv": _unit(3, width), "sgs": SimilarityGuidedSampling(width)})
        self.coarse = nn.ModuleDict({"conv": _unit(3, width, (2, 4, 4)), "sgs": SimilarityGuidedSampling(width, 3)})
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        a, _ = self.fine["sgs"](self.fine["conv"](x))
        b, _ = self.coarse["sgs"](self.coarse["conv"](x))
        return self.head(torch.cat([a.mean(dim=(2, 3, 4)), b.mean(dim=(2, 3, 4))], dim=1))


def plain_cnn(num_classes: int = 5, width: int = 8, where: int = 1) -> nn.Module:
    """A plain 3D CNN as one ``nn.Sequential``, its SGS layer after unit ``where`` (1 or 2)."""
    layers: list[nn.Module] = [_unit(3, width), _unit(width, width)]
    layers[where:where] = [SimilarityGuidedSampling(width), Select()]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, num_classes))
    net.input_spec = SPEC
    return net


def static_cnn(num_classes: int = 5, width: int = 8) -> nn.Module:
    """No SGS at all: a static cost."""
    net = nn.Sequential(
        _unit(3, width), _unit(width, width), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, num_classes)
    )
    net.input_spec = SPEC
    return net


def two_in_sequence(num_classes: int = 5, width: int = 8) -> nn.Module:
    return TwoInSequence(num_classes, width)


def two_branch(num_classes: int = 5, width: int = 8) -> nn.Module:
    return TwoBranch(num_classes, width)


def not_a_module():
    return "a string"


def clips(kind: str, n: int = 3, t: int = 8, s: int = 32, seed: int = 0) -> torch.Tensor:
    """``random`` clips, ``frozen`` clips (one frame repeated) or ``slowmo`` (each frame twice)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, t, s, s, generator=g)
    if kind == "frozen":
        x = x[:, :, :1].expand(-1, -1, t, -1, -1).contiguous()
    elif kind == "slowmo":
        x = x[:, :, : (t + 1) // 2].repeat_interleave(2, dim=2)[:, :, :t].contiguous()
    return x

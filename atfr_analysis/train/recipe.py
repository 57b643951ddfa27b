"""The recipe's pieces: the learning-rate schedule, the optimizer's parameter groups, the
checkpoint record, initialisation tricks and the guards on SGS (gradient clamp, non-finite stop)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atfr_analysis.errors import InputError

__all__ = [
    "cosine_lr",
    "make_record",
    "plain",
    "param_groups",
    "temporal_difference_init",
    "sgs_grad_clamp_hooks",
    "nonfinite_guards",
    "NonFinite",
    "OFFICIAL_RECIPE",
]

#: the official ATFR from-scratch recipe (PySlowFast's Kinetics-400 SlowOnly/R50 settings), for reference
OFFICIAL_RECIPE = {
    "lr_per_64_clips": 0.1,
    "epochs": 196,
    "warmup_epochs": 34,
    "lr_policy": "cosine",
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "dropout": 0.5,
}


class NonFinite(Exception):
    """Raised by the guard hooks inside a forward; the loop turns it into ``TrainingDiverged`` with the step."""


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """PySlowFast's schedule: linear warm-up from base/100 to base, then half a cosine down to 0."""
    if warmup > 0 and step < warmup:
        start = base * 0.01
        return start + (base - start) * step / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_record(model: nn.Module, name: str, extra: dict | None = None) -> dict:
    """A PySlowFast-like ``cfg`` record, so our checkpoints are checked like PySlowFast's."""
    spec = model.spec
    cfg = model.config
    arch = getattr(cfg, "arch", None) or ("x3d" if name.startswith("x3d") else None)
    arch = {"resnet3d": "3dresnet"}.get(arch, arch)
    rec: dict[str, Any] = {
        "MODEL": {"ARCH": arch, "MODEL_NAME": name, "NUM_CLASSES": int(cfg.num_classes)},
        "DATA": {
            "NUM_FRAMES": int(spec.clip_frames),
            "SAMPLING_RATE": int(spec.sampling_rate),
            "TRAIN_CROP_SIZE": int(spec.train_crop),
            "TEST_CROP_SIZE": int(spec.test_crop),
        },
        "TEST": {"NUM_ENSEMBLE_VIEWS": spec.num_views, "NUM_SPATIAL_CROPS": spec.num_crops},
        "ATFR_ANALYSIS": {
            "model": name,
            "config": plain(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else None,
        },
    }
    if spec.alpha is not None:
        rec["SLOWFAST"] = {"ALPHA": int(spec.alpha)}
    if extra:
        rec["ATFR_ANALYSIS"].update(plain(extra))
    return rec


def plain(obj):
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (Path, str)):
        return str(obj)  # also str subclasses such as torch's version string
    return obj


def param_groups(model: nn.Module, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (p.ndim <= 1 or ".bn" in n or "bn." in n) else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def temporal_difference_init(model: nn.Module, fraction: float) -> int:
    """Make the temporal kernel of the first ``fraction`` of the output channels of every Conv3d
    with a temporal extent > 1 zero-sum over time (its mean over the temporal taps subtracted), so
    that those channels respond only to change between frames. Returns the number of layers."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"the temporal-difference fraction must be in (0, 1], got {fraction}")
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv3d) and m.kernel_size[0] > 1:
            k = int(round(fraction * m.out_channels))
            w = m.weight[:k]
            w -= w.mean(dim=2, keepdim=True)
            n += 1
    return n


def sgs_grad_clamp_hooks(model: nn.Module, clamp: float) -> list:
    """Forward hooks on every SGS layer's embedding BatchNorm that clamp the gradient flowing back
    into the embedding to [-clamp, clamp] (the forward is unchanged). Returns the hook handles."""
    from atfr_analysis.sgs import SimilarityGuidedSampling

    if clamp < 0:
        raise InputError(f"--sgs-grad-clamp must be >= 0, got {clamp}")

    def hook(_mod, _inp, out):
        if out.requires_grad:
            out.register_hook(lambda g: g.clamp(-clamp, clamp) if clamp > 0 else torch.zeros_like(g))

    handles = [m.bn.register_forward_hook(hook) for m in model.modules() if isinstance(m, SimilarityGuidedSampling)]
    if not handles:
        raise InputError("--sgs-grad-clamp needs a model with an SGS layer (an _atfr model)")
    return handles


def nonfinite_guards(model: nn.Module) -> list:
    """Hooks on every SGS layer that stop the step when its input is not finite, or when its
    embedding's squared distances would overflow (a finite but huge input overflows in the
    embedding's MLP; an exploding SGS BatchNorm gives finite embeddings of 1e30 whose squares are
    inf): SGS would keep no bin and the next pooling fail on an empty tensor. Returns the handles."""
    from atfr_analysis.sgs import SimilarityGuidedSampling

    def check_input(t: torch.Tensor, name: str) -> None:
        if not bool(torch.isfinite(t.detach()).all()):
            raise NonFinite(f"the input of SGS layer {name} is not finite")

    def check_embedding(z: torch.Tensor, name: str) -> None:
        z = z.detach().float()
        if not bool(torch.isfinite(z.square().sum(dim=1)).all()):
            big = float(z.abs().nan_to_num(float("inf")).max())
            raise NonFinite(f"the embedding of SGS layer {name} is not finite or overflows (|z| up to {big:.3g})")

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, SimilarityGuidedSampling):
            handles.append(m.register_forward_pre_hook(lambda _m, inp, n=name: check_input(inp[0], n)))
            handles.append(m.bn.register_forward_hook(lambda _m, _i, z, n=name: check_embedding(z, n)))
    return handles

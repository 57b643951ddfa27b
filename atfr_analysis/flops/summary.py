"""FLOP summaries of registry models: what ``atfr flops`` and ``atfr models`` print."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import CostModel, static_model
from atfr_analysis.models import build_model, make_inputs
from atfr_analysis.models.base import VideoModel

__all__ = ["FlopSummary", "model_flops", "parse_bins", "param_count"]


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class FlopSummary:
    model: str
    frames: list[int]
    crop: int
    num_classes: int
    params: int
    views: int
    gmacs: float
    gmacs_fvcore: float
    stages: dict[str, float]
    unsupported_ops: dict[str, int]
    uncalled_modules: list[str]
    bins: dict[str, int] | None = None  # ATFR: the B' the cost was counted at
    num_bins: dict[str, int] | None = None  # ATFR: B per layer
    static_gmacs: float | None = None  # ATFR: the backbone without SGS
    static_gmacs_fvcore: float | None = None
    curve: list[dict] = field(default_factory=list)

    @property
    def gmacs_x_views(self) -> float:
        return self.gmacs * self.views

    def to_dict(self) -> dict:
        d = {
            "model": self.model,
            "frames": self.frames if len(self.frames) > 1 else self.frames[0],
            "crop": self.crop,
            "num_classes": self.num_classes,
            "gmacs": self.gmacs,
            "gmacs_fvcore": self.gmacs_fvcore,
            "params": self.params,
            "views": self.views,
            "gmacs_x_views": self.gmacs_x_views,
            "convention": "conv_fc (gmacs) and fvcore default incl. BN (gmacs_fvcore); 1 multiply-add = 1",
            "stages": self.stages,
            "unsupported_ops": self.unsupported_ops,
            "uncalled_modules": self.uncalled_modules,
        }
        if self.bins is not None:
            d.update(
                bins=self.bins,
                num_bins=self.num_bins,
                static_gmacs=self.static_gmacs,
                static_gmacs_fvcore=self.static_gmacs_fvcore,
            )
        if self.curve:
            d["curve"] = self.curve
        return d


def parse_bins(text: str | None, layer_names: Sequence[str]) -> list[int] | None:
    """``"s2.ts_layer=12"`` / ``"s2.pathway0_ts_layer=3,s2.pathway1_ts_layer=20"`` / ``"4,16"``."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not layer_names:
        raise InputError("--bins needs an _atfr model (this model has no SGS layer)")
    if all("=" in p for p in parts):
        values = {}
        for p in parts:
            k, v = p.split("=", 1)
            k = k.strip().removeprefix("bins.")
            if k not in layer_names:
                raise InputError(f"unknown SGS layer {k!r}; layers: {', '.join(layer_names)}")
            values[k] = v
        missing = [n for n in layer_names if n not in values]
        if missing:
            raise InputError(f"--bins misses layer(s) {', '.join(missing)}")
        raw = [values[n] for n in layer_names]
    elif any("=" in p for p in parts):
        raise InputError("--bins: use either LAYER=B for every layer or one number per layer")
    else:
        raw = parts
    if len(raw) != len(layer_names):
        raise InputError(
            f"--bins needs {len(layer_names)} value(s), one per SGS layer ({', '.join(layer_names)}), got {len(raw)}"
        )
    try:
        return [int(v) for v in raw]
    except ValueError:
        raise InputError(f"--bins values must be integers, got {text!r}") from None


def model_flops(
    name: str,
    frames: int | None = None,
    crop: int | None = None,
    num_classes: int = 400,
    views: int | None = None,
    bins: str | Sequence[int] | None = None,
    curve: bool = False,
    model: VideoModel | None = None,
) -> FlopSummary:
    """Count a registry model at its default (or the given) input, batch 1, one view."""
    if model is None:
        model = build_model(name, num_classes=num_classes)
    model.eval()
    spec = model.spec.with_frames(frames)
    s = crop or spec.test_crop
    if s <= 0:
        raise InputError(f"--crop must be positive, got {s}")
    xs = make_inputs(spec, s)
    shapes = [tuple(x.shape) for x in xs]
    cost = CostModel(model, shapes)
    nviews = views if views is not None else spec.num_views * spec.num_crops
    layer_names = model.sgs_layer_names()
    common = dict(
        model=name,
        frames=list(spec.frames),
        crop=s,
        num_classes=num_classes,
        params=param_count(model),
        views=nviews,
    )
    if not layer_names:
        if bins is not None:
            raise InputError(f"--bins needs an _atfr model; {name} has no SGS layer (try {name}_atfr)")
        c = cost.static()
        return FlopSummary(
            gmacs=c.gmacs,
            gmacs_fvcore=c.gmacs_fvcore,
            stages=c.stages(),
            unsupported_ops=c.unsupported_ops,
            uncalled_modules=c.uncalled_modules,
            **common,
        )
    sig = parse_bins(bins, layer_names) if isinstance(bins, str) or bins is None else list(bins)
    if sig is None:
        sig = cost.num_bins  # no --bins: every bin active (the most a clip can cost)
    c = cost.cost(sig)
    base = CostModel(static_model(model).eval(), shapes).static()
    out = FlopSummary(
        gmacs=c.gmacs,
        gmacs_fvcore=c.gmacs_fvcore,
        stages=c.stages(),
        unsupported_ops=c.unsupported_ops,
        uncalled_modules=[m for m in c.uncalled_modules if m],
        bins=dict(zip(layer_names, sig)),
        num_bins=dict(zip(layer_names, cost.num_bins)),
        static_gmacs=base.gmacs,
        static_gmacs_fvcore=base.gmacs_fvcore,
        **common,
    )
    if curve:
        out.curve = [
            {"bins": dict(zip(layer_names, sg)), "gmacs": g, "gmacs_fvcore": gf}
            for sg, g, gf in cost.curve()
        ]
    return out

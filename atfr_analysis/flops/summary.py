"""FLOP summaries of registry models: what ``atfr flops`` and ``atfr models`` print."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import static_model
from atfr_analysis.flops.module_cost import cost_model
from atfr_analysis.flops.table import module_table
from atfr_analysis.models import build_model, make_inputs
from atfr_analysis.models.base import VideoModel
from atfr_analysis.profile.schema import layer_name

__all__ = ["FlopSummary", "model_flops", "model_row", "parse_bins", "param_count"]


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
    modules: list[dict] = field(default_factory=list)  # --depth: the module table (see flops.table)
    depth: int | None = None
    backend: str = "meta"

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
        if self.depth is not None:
            d["depth"] = self.depth
            d["modules"] = self.modules
        d["counter"] = self.backend
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
            k = layer_name(k.strip())
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
    num_classes: int | None = 400,
    views: int | None = None,
    bins: str | Sequence[int] | None = None,
    curve: bool = False,
    model: VideoModel | None = None,
    depth: int | None = None,
    backend: str = "meta",
    cache=None,
) -> FlopSummary:
    """Count a registry model at its default (or the given) input, batch 1, one view.

    Without ``model``, the model is built on the ``meta`` device for the meta backend (no weights
    initialised: only shapes matter). ``depth``: also the per-module table down to that depth
    (``modules``). ``cache``: a ``CostCache`` for the totals (the tables are counted each time).
    """
    if depth is not None and depth < 0:
        raise InputError(f"--depth must be >= 0, got {depth}")
    if model is None:
        if backend == "meta":
            with torch.device("meta"):
                model = build_model(name, num_classes=num_classes)
        else:
            model = build_model(name, num_classes=num_classes)
    model.eval()
    num_classes = getattr(model.config, "num_classes", num_classes)  # one's own model: its callable's
    spec = model.spec.with_frames(frames)
    s = crop or spec.test_crop
    if s <= 0:
        raise InputError(f"--crop must be positive, got {s}")
    xs = make_inputs(spec, s)
    shapes = [tuple(x.shape) for x in xs]
    cost = cost_model(model, shapes, backend=backend, cache=cache)
    nviews = views if views is not None else spec.num_views * spec.num_crops
    layer_names = model.sgs_layer_names()
    common = dict(
        model=name,
        frames=list(spec.frames),
        crop=s,
        num_classes=num_classes,
        params=param_count(model),
        views=nviews,
        depth=depth,
        backend=backend,
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
            modules=module_table(c, model, depth) if depth is not None else [],
            **common,
        )
    sig = parse_bins(bins, layer_names) if isinstance(bins, str) or bins is None else list(bins)
    if sig is None:
        sig = cost.num_bins  # no --bins: every bin active (the most a clip can cost)
    c = cost.cost(sig)
    static_net = static_model(model).eval()
    base = cost_model(static_net, shapes, backend=backend, cache=cache).static()
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
        modules=module_table(c, model, depth, static=base) if depth is not None else [],
        **common,
    )
    if curve:
        out.curve = [{"bins": dict(zip(layer_names, sg)), "gmacs": g, "gmacs_fvcore": gf} for sg, g, gf in cost.curve()]
    return out


def model_row(name: str, cache=None) -> dict:
    """One row of ``atfr models``: params (M), default input, GMACs at the test crop (conv_fc;
    ``_atfr``: every bin active). Served whole from ``cache`` when it holds the row (keyed by the
    model's name, config and the package's code), else counted on the ``meta`` device."""
    from atfr_analysis.flops.cache import code_fingerprint
    from atfr_analysis.flops.cost import backend_version
    from atfr_analysis.models.registry import get_config

    cfg = get_config(name)
    key = {
        "model": name,
        "config": dataclasses.asdict(cfg),
        "code": code_fingerprint(),
        "part": "models_row",
        "signature": [],
        "backend": "meta",
        "counter": backend_version("meta"),
    }
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return dict(hit)
    with torch.device("meta"):
        m = build_model(name)
    s = model_flops(name, model=m, cache=cache)
    row = {"model": name, "params_m": param_count(m) / 1e6, "input": m.spec.label(), "gmacs": s.gmacs}
    if cache is not None:
        cache.put(key, row)
    return row

"""Exact per-clip dynamic GMACs of ATFR models without re-tracing every clip.

The cost of one clip through an ATFR model depends only on the input size and on its
*signature*: the tuple of active bins B' of every SGS layer. ``CostModel`` traces the model in
three kinds of parts, each once, with fvcore:

* ``pre``: everything before the SGS layers (one trace per input size);
* ``sgs[l](B')``: SGS layer ``l`` run with ``force_bins=B'`` (same op sequence as a real clip with
  B' active bins: MLP, BN, distances, kernel, compaction, the aggregation ``bmm``);
* ``post(signature)``: everything after SGS, on zero tensors of the post-SGS shapes.

A clip's count is the sum of its parts. Since fvcore counts by operator shapes only, this sum
equals a direct fvcore trace of the whole model on that clip alone (tested to 1e-9 relative).
After warm-up, ``gmacs(signature)`` is a dictionary look-up.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, Sequence

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.flops.count import FlopCount, count_flops
from atfr_analysis.models.base import VideoModel, as_pathways

__all__ = ["CostModel", "static_model", "Signature"]

Signature = tuple[int, ...]


class _Pre(nn.Module):
    def __init__(self, model: VideoModel):
        super().__init__()
        self.model = model

    def forward(self, xs):
        return tuple(self.model.forward_pre(list(xs)))


class _Post(nn.Module):
    def __init__(self, model: VideoModel):
        super().__init__()
        self.model = model

    def forward(self, feats):
        return self.model.forward_post(list(feats))


class _Forced(nn.Module):
    def __init__(self, layer: nn.Module, bins: int):
        super().__init__()
        self.layer = layer
        self.bins = bins

    def forward(self, x):
        out, mask = self.layer(x[0], force_bins=self.bins)
        return out


def _renamed(fc: FlopCount, prefix_from: str, prefix_to: str) -> FlopCount:
    """Re-root a wrapper's per-module split: ``prefix_from.x`` becomes ``prefix_to.x``, and the
    wrapped module's count is also added to every ancestor of ``prefix_to``."""

    def fix(d: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, v in d.items():
            if k == "":
                out[""] = out.get("", 0) + v
            elif k == prefix_from or k.startswith(prefix_from + "."):
                rest = k[len(prefix_from) + 1:]
                new = ".".join(p for p in (prefix_to, rest) if p)
                out[new] = out.get(new, 0) + v
        if prefix_to and prefix_from in d:
            parts = prefix_to.split(".")
            for i in range(1, len(parts)):
                anc = ".".join(parts[:i])
                out[anc] = out.get(anc, 0) + d[prefix_from]
        return out

    fc.by_module = fix(fc.by_module)
    fc.by_module_fvcore = fix(fc.by_module_fvcore)
    if prefix_to == "":
        fc.uncalled_modules = [m[len(prefix_from) + 1:] for m in fc.uncalled_modules if m.startswith(prefix_from + ".")]
    return fc


class _EvalMode:
    """Context: model in eval mode (the counting convention), restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def static_model(model: VideoModel) -> VideoModel:
    """The same backbone without SGS (same config, ``sgs=False``), random weights."""
    from atfr_analysis.models.registry import get_entry

    cfg = model.config
    if cfg is None or not hasattr(cfg, "sgs"):
        raise ValueError("static_model needs a model built by build_model (with a config)")
    base = get_entry(model.model_name).builder(dataclasses.replace(cfg, sgs=False))
    base.model_name = model.model_name.removesuffix("_atfr")
    base.config = dataclasses.replace(cfg, sgs=False)
    return base


class CostModel:
    """Per-signature cost cache of one model at one input size (batch 1, eval mode).

    ``input_shapes``: the shapes of one clip's pathway tensors, with or without the leading
    batch dimension (``[(3, T, S, S)]`` or ``[(1, 3, T, S, S)]``).
    """

    def __init__(self, model: VideoModel, input_shapes: Sequence[Sequence[int]]):
        self.model = model
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        self.input_shapes = [s if len(s) == 5 else (1,) + s for s in shapes]
        if any(s[0] != 1 for s in self.input_shapes):
            raise ValueError("CostModel counts one clip: batch dimension must be 1")
        self.layer_names = model.sgs_layer_names() if isinstance(model, VideoModel) else []
        self._pre: FlopCount | None = None
        self._feat_shapes: list[tuple[int, ...]] | None = None
        self._sgs: dict[tuple[int, int], FlopCount] = {}
        self._post: dict[Signature, FlopCount] = {}
        self._full: dict[Signature, FlopCount] = {}
        self._gmacs: dict[Signature, tuple[float, float]] = {}
        self._static: FlopCount | None = None

    # ------------------------------------------------------------------ helpers
    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _zeros(self, shape) -> torch.Tensor:
        p = self._param()
        return torch.zeros(shape, dtype=p.dtype, device=p.device)

    @property
    def is_dynamic(self) -> bool:
        return bool(self.layer_names)

    @property
    def num_bins(self) -> list[int]:
        """B of each SGS layer (its input length when ``num_bins`` is None)."""
        self._ensure_pre()
        out = []
        for layer, shape in zip(self.model.sgs_layers(), self._feat_shapes):
            out.append(int(layer.num_bins) if getattr(layer, "num_bins", None) else int(shape[2]))
        return out

    def _ensure_pre(self) -> None:
        if self._pre is not None:
            return
        xs = [self._zeros(s) for s in self.input_shapes]
        with _EvalMode(self.model), torch.no_grad():
            feats = self.model.forward_pre(xs)
            self._feat_shapes = [tuple(f.shape) for f in feats]
            self._pre = _renamed(count_flops(_Pre(self.model), xs), "model", "")
            # the post part's modules are not called before SGS: not "uncalled" for the whole
            self._pre.uncalled_modules = []

    def _sgs_cost(self, i: int, bins: int) -> FlopCount:
        key = (i, bins)
        if key not in self._sgs:
            layer = self.model.sgs_layers()[i]
            x = self._zeros(self._feat_shapes[i])
            with _EvalMode(layer):
                fc = count_flops(_Forced(layer, bins), [x])
                self._sgs[key] = _renamed(fc, "layer", self.layer_names[i])
                self._sgs[key].uncalled_modules = []
        return self._sgs[key]

    def _post_cost(self, sig: Signature) -> FlopCount:
        if sig not in self._post:
            feats = []
            for shape, b in zip(self._feat_shapes, sig):
                n, c, _t, h, w = shape
                feats.append(self._zeros((n, c, b, h, w)))
            with _EvalMode(self.model):
                fc = _renamed(count_flops(_Post(self.model), feats), "model", "")
                fc.uncalled_modules = []  # modules before SGS are not called here, by design
                self._post[sig] = fc
        return self._post[sig]

    def check_signature(self, sig: Iterable[int]) -> Signature:
        sig = tuple(int(b) for b in sig)
        bins = self.num_bins
        if len(sig) != len(bins):
            raise InputError(
                f"signature needs {len(bins)} value(s) (one per SGS layer: {', '.join(self.layer_names)}), got {len(sig)}"
            )
        for name, b, B in zip(self.layer_names, sig, bins):
            if not 1 <= b <= B:
                raise InputError(f"active bins of {name} must be in 1..{B}, got {b}")
        return sig

    # ------------------------------------------------------------------ public
    def cost(self, sig: Iterable[int] = ()) -> FlopCount:
        """Full FlopCount (both conventions, per-module split) of a clip with this signature."""
        if not self.is_dynamic:
            return self.static()
        sig = self.check_signature(sig)
        if sig not in self._full:
            total = self._pre
            for i, b in enumerate(sig):
                total = total + self._sgs_cost(i, b)
            self._full[sig] = total + self._post_cost(sig)
        return self._full[sig]

    def gmacs(self, sig: Iterable[int] = ()) -> tuple[float, float]:
        """``(conv_fc, fvcore)`` GMACs of a clip with this signature (cached look-up)."""
        sig = tuple(sig)
        hit = self._gmacs.get(sig)
        if hit is None:
            c = self.cost(sig)
            hit = self._gmacs[sig] = (c.gmacs, c.gmacs_fvcore)
        return hit

    def static(self) -> FlopCount:
        """Cost of one clip through the model as it is traced directly (baselines: the model)."""
        if self._static is None:
            xs = [self._zeros(s) for s in self.input_shapes]
            with _EvalMode(self.model):
                self._static = count_flops(self.model, xs)
        return self._static

    def curve(self, max_points: int = 64) -> list[tuple[Signature, float, float]]:
        """GMACs over B'. One layer: every B' in 1..B. Several layers: the full grid when it has
        at most ``max_points`` points, else the diagonal where every layer keeps the same
        fraction of its bins (B'_l = ceil(f * B_l) for f = k / max(B))."""
        bins = self.num_bins
        grid = list(itertools.product(*[range(1, b + 1) for b in bins]))
        if len(grid) > max_points:
            steps = max(bins)
            grid = sorted({tuple(max(1, -(-k * b // steps)) for b in bins) for k in range(1, steps + 1)})
        return [(sig, *self.gmacs(sig)) for sig in grid]


def direct_trace(model: VideoModel, clip: Sequence[torch.Tensor]) -> FlopCount:
    """Reference: one fvcore trace of the whole model on one clip (batch 1, eval mode)."""
    xs = as_pathways(clip)
    with _EvalMode(model):
        return count_flops(model, xs)

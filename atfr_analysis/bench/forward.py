"""The ATFR forward split into its parts, as bench times them.

Bench times pre, each SGS layer and post (exact batching) apart and locates differences between
them. These functions are the one place where it does so, through the models' public API
(``VideoModel.forward_post_exact``, the SGS layer's ``return_bins``, ``VideoModel.post_graphs``)
the profiler's (``Profiler.use_cost_model``) and the cost model's (``CostModel.pre_cost``,
``CostModel.post_cost``).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["post_exact", "sgs_layer", "sgs_layers", "post_graphs", "profiler_with_costs", "part_gmacs"]


def post_exact(
    model, outs: list[torch.Tensor], bins: list[torch.Tensor], sig: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact batching's post part: every group of clips sharing a signature run at its own B'."""
    return model.forward_post_exact(outs, torch.stack(bins, dim=1).cpu() if sig is None else sig)


def sgs_layer(layer, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGS layer on ``feat``: its output and the per-clip active bins ``[N]``."""
    out, _mask, bins = layer(feat, return_bins=True)
    return out, bins


def sgs_layers(model, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every SGS layer of ``model`` on pre's features: outputs and active bins per layer."""
    pairs = [sgs_layer(layer, f) for layer, f in zip(model.sgs_layers(), feats)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def post_graphs(model) -> Any:
    """Exact batching's CUDA graph cache (``captures``, ``error``), or None before any capture."""
    return model.post_graphs


def profiler_with_costs(model, shapes, cm):
    """A ``Profiler`` (exact batching) whose cost cache for ``shapes`` is the warm ``cm``."""
    from atfr_analysis.profile.instrument import Profiler

    prof = Profiler(model, batching="exact")
    prof.use_cost_model(shapes, cm)
    return prof


def part_gmacs(cm, sigs) -> tuple[float, list[float]]:
    """conv_fc GMACs of the part before SGS, and of the part after SGS for each signature."""
    return cm.pre_cost().gmacs, [cm.post_cost(s).gmacs for s in sigs]

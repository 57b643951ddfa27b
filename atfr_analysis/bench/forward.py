"""The one place where bench reaches into other packages' internals.

Bench splits the ATFR forward into its parts (pre, each SGS layer, post with exact batching) to
time them and to locate differences. ``VideoModel`` does not offer that split publicly yet: these
functions wrap the private calls (``_forward_post_exact``, ``SGSLayer.last_active_bins``, the CUDA
graph cache, the profiler's and the cost model's caches), so that a public ATFR step replaces them
here and nowhere else.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["post_exact", "sgs_layer", "sgs_layers", "post_graphs", "profiler_with_costs", "part_gmacs"]


def post_exact(model, outs: list[torch.Tensor], bins: list[torch.Tensor], sig: torch.Tensor | None = None) -> torch.Tensor:
    """Exact batching's post part: every group of clips sharing a signature run at its own B'."""
    return model._forward_post_exact(outs, bins, sig=sig)


def sgs_layer(layer, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGS layer on ``feat``: its output and the per-clip active bins ``[N]``."""
    out, _mask = layer(feat)
    return out, layer.last_active_bins


def sgs_layers(model, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every SGS layer of ``model`` on pre's features: outputs and active bins per layer."""
    pairs = [sgs_layer(layer, f) for layer, f in zip(model.sgs_layers(), feats)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def post_graphs(model) -> Any:
    """Exact batching's CUDA graph cache (``captures``, ``error``), or None before any capture."""
    return model.__dict__.get("_post_graph_cache")


def profiler_with_costs(model, shapes, cm):
    """A ``Profiler`` (exact batching) whose cost cache for ``shapes`` is the warm ``cm``."""
    from atfr_analysis.profile.instrument import Profiler

    prof = Profiler(model, batching="exact")
    prof._costs[tuple(tuple(s) for s in shapes)] = cm
    return prof


def part_gmacs(cm, sigs) -> tuple[float, list[float]]:
    """conv_fc GMACs of the part before SGS, and of the part after SGS for each signature."""
    cm.num_bins  # pre traced
    return cm._pre.gmacs, [cm._post_cost(s).gmacs for s in sigs]

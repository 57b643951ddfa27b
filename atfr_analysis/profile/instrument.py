"""Instrumented inference: per-clip active bins, exact dynamic GMACs and class scores.

``profile_clips(model, clips)`` runs a batch of clips and returns one row per clip. The GMACs
come from a ``CostModel`` (one fvcore trace per part and signature, then look-ups), and equal a
direct fvcore trace of the whole model on that clip alone.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import CostModel
from atfr_analysis.models.base import BATCHING_MODES, VideoModel, as_pathways
from atfr_analysis.profile.schema import BINS, bins_column, view_topk

__all__ = ["Profiler", "profile_clips"]


class Profiler:
    """Keeps the cost caches of one model (per input size) across batches."""

    def __init__(self, model: VideoModel, batching: str = "exact", topk: int = 5):
        if batching not in BATCHING_MODES:
            raise InputError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {batching!r}")
        self.model = model
        self.batching = batching
        self.topk = topk
        self.layers = model.sgs_layer_names()
        self._costs: dict[tuple, CostModel] = {}

    def use_cost_model(self, shapes: Sequence[Sequence[int]], cost: CostModel) -> None:
        """Use ``cost`` (built elsewhere) for inputs of these per-pathway ``shapes`` (batch 1)."""
        self._costs[tuple((1,) + tuple(s[1:]) for s in shapes)] = cost

    def cost_model(self, xs: Sequence[torch.Tensor]) -> CostModel:
        key = tuple((1,) + tuple(x.shape[1:]) for x in xs)
        cm = self._costs.get(key)
        if cm is None:
            cm = self._costs[key] = CostModel(self.model, list(key))
        return cm

    @torch.no_grad()
    def run(self, clips) -> dict:
        """Forward a batch; returns ``scores`` [N, K] (softmax), ``bins`` [N, L] and the GMACs lists."""
        xs = as_pathways(clips)
        cm = self.cost_model(xs)
        step = self.model.atfr_step(xs, batching=self.batching)
        return self.record(cm, step.scores, step.signatures, step.executed)

    def record(self, cm: CostModel, scores: torch.Tensor, sig: torch.Tensor, executed=None) -> dict:
        """The bookkeeping after the forward: GMACs look-ups per clip and the scores on the host.
        ``executed``: the signature padded batching ran every clip at (None: exact batching)."""
        n = sig.shape[0]
        if self.layers:
            costs = [cm.gmacs(tuple(s)) for s in sig.tolist()]
            if executed is None:
                exec_costs = [c[0] for c in costs]
            else:
                exec_costs = [cm.gmacs(executed)[0]] * n
        else:
            c = cm.static()
            costs = [(c.gmacs, c.gmacs_fvcore)] * n
            exec_costs = [c.gmacs] * n
        if self.model.training:  # logits in train mode; the log holds probabilities
            scores = scores.softmax(-1)
        return {
            "scores": scores.float().cpu(),
            "bins": sig,
            "gmacs": [c[0] for c in costs],
            "gmacs_fvcore": [c[1] for c in costs],
            "gmacs_executed": exec_costs,
        }

    def frame(self, result: dict) -> pd.DataFrame:
        """The result of :meth:`run` as a frame of the log's result columns (one row per clip)."""
        scores = result["scores"]
        ids, vals = view_topk(scores, self.topk)
        data: dict[str, object] = {}
        for j, name in enumerate(self.layers):
            data[bins_column(name)] = pd.array(result["bins"][:, j].tolist(), dtype=BINS.dtype)
        data["gmacs"] = result["gmacs"]
        data["gmacs_fvcore"] = result["gmacs_fvcore"]
        data["gmacs_executed"] = result["gmacs_executed"]
        data["top5_ids"] = ids
        data["top5_scores"] = vals
        data["scores"] = scores.tolist()
        return pd.DataFrame(data)


def profile_clips(model: VideoModel, clips, batching: str = "exact", topk: int = 5) -> pd.DataFrame:
    """Profile a batch of clips: one row per clip.

    Columns: ``bins.<layer>`` (active bins of each SGS layer), ``gmacs`` (conv_fc), ``gmacs_fvcore``
    (BN included), ``gmacs_executed`` (what the batch executed for the clip: in padded batching the
    cost at the batch's largest B'), ``top5_ids``, ``top5_scores`` and ``scores`` (softmax, as
    PySlowFast's test head). ``clips``: a tensor [N, 3, T, H, W] or, for SlowFast, [slow, fast].
    The model is put in eval mode.
    """
    model.eval()
    prof = Profiler(model, batching=batching, topk=topk)
    return prof.frame(prof.run(clips))

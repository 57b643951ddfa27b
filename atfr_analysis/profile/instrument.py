"""Instrumented inference: per-clip active bins, exact dynamic GMACs and class scores.

``profile_clips(model, clips)`` runs a batch of clips and returns one row per clip. The GMACs
come from a ``CostModel`` (one count per part and signature, then look-ups), and equal a
direct fvcore trace of the whole model on that clip alone.

``model`` is a zoo ``VideoModel`` (cut at its SGS layers: ``atfr_step``) or **any** ``nn.Module``
with :class:`~atfr_analysis.sgs.SimilarityGuidedSampling` layers anywhere, or none (one's own
network). Such a module runs its own ``forward``; an :class:`~atfr_analysis.sgs.tap.SgsTap` reads
each layer's active bins (one ``bins.<qualified module name>`` column per layer) and
:class:`~atfr_analysis.flops.module_cost.ModuleCostModel` counts each signature once, whole, on
the ``meta`` device. Its batching:

* ``"padded"`` (as the model runs a batch): the batch goes through the forward once; each SGS
  layer pads its output to the batch's largest B', and ``gmacs_executed`` is the cost of a clip at
  those lengths. A layer that follows another SGS layer sees the padded input, so its bins (and
  the scores) may depend on the batch;
* ``"exact"`` (per clip, the default of ``profile_clips``): each clip runs alone, so every
  output, bin and GMACs is the clip's own, independent of its batch.

Scores: a module's output is taken as logits and turned into probabilities (softmax) unless the
module says ``scores_are_probabilities = True`` (the zoo's heads give probabilities in eval mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import CostModel
from atfr_analysis.flops.module_cost import cost_model
from atfr_analysis.models.base import BATCHING_MODES, as_pathways, is_split_model
from atfr_analysis.models.user import module_step
from atfr_analysis.profile.schema import BINS, bins_column, view_topk
from atfr_analysis.sgs.tap import sgs_layer_names

__all__ = ["Profiler", "profile_clips", "module_step"]


class Profiler:
    """Keeps the cost caches of one model (per input size) across batches."""

    def __init__(self, model: nn.Module, batching: str = "exact", topk: int = 5, cache=None):
        if batching not in BATCHING_MODES:
            raise InputError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {batching!r}")
        self.model = model
        self.batching = batching
        self.topk = topk
        self.split = is_split_model(model)
        self.layers = model.sgs_layer_names() if self.split else sgs_layer_names(model)
        self.cache = cache
        self._costs: dict[tuple, CostModel] = {}

    def use_cost_model(self, shapes: Sequence[Sequence[int]], cost: CostModel) -> None:
        """Use ``cost`` (built elsewhere) for inputs of these per-pathway ``shapes`` (batch 1)."""
        self._costs[tuple((1,) + tuple(s[1:]) for s in shapes)] = cost

    def cost_model(self, xs: Sequence[torch.Tensor], list_input: bool | None = None) -> CostModel:
        key = tuple((1,) + tuple(x.shape[1:]) for x in xs)
        cm = self._costs.get(key)
        if cm is None:
            cm = self._costs[key] = cost_model(self.model, list(key), cache=self.cache, list_input=list_input)
        return cm

    @torch.no_grad()
    def run(self, clips) -> dict:
        """Forward a batch; returns ``scores`` [N, K] (softmax), ``bins`` [N, L] and the GMACs lists."""
        xs = as_pathways(clips)
        if not self.split:  # one's own module: its forward, as it takes the input
            cm = self.cost_model(xs, list_input=not isinstance(clips, torch.Tensor))
            step = module_step(self.model, clips, self.batching)
            scores = step.scores
            if not getattr(self.model, "scores_are_probabilities", False):
                scores = scores.float().softmax(-1)
            try:
                return self.record(cm, scores, step.signatures, step.executed, probabilities=True)
            except InputError as e:
                if self.batching != "padded":
                    raise
                raise InputError(
                    f"padded batching gave bins no clip can have alone ({e}): an SGS layer that "
                    "follows another one sees the padded batch; use batching='exact'"
                ) from None
        cm = self.cost_model(xs)
        step = self.model.atfr_step(xs, batching=self.batching)
        return self.record(cm, step.scores, step.signatures, step.executed)

    def record(
        self, cm: CostModel, scores: torch.Tensor, sig: torch.Tensor, executed=None, probabilities: bool = False
    ) -> dict:
        """The bookkeeping after the forward: GMACs look-ups per clip and the scores on the host.
        ``executed``: the signature padded batching ran every clip at (None: exact batching);
        ``probabilities``: the scores are probabilities already."""
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
        if self.model.training and not probabilities:  # logits in train mode; the log holds probabilities
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


def profile_clips(model: nn.Module, clips, batching: str = "exact", topk: int = 5, cache=None) -> pd.DataFrame:
    """Profile a batch of clips: one row per clip.

    Columns: ``bins.<layer>`` (active bins of each SGS layer), ``gmacs`` (conv_fc), ``gmacs_fvcore``
    (BN included), ``gmacs_executed`` (what the batch executed for the clip: in padded batching the
    cost at the batch's largest B'), ``top5_ids``, ``top5_scores`` and ``scores`` (softmax, as
    PySlowFast's test head). ``clips``: a tensor [N, 3, T, H, W] or, for SlowFast, [slow, fast].
    ``model``: a zoo model or any module with SGS layers anywhere (see the module doc; for such a
    module ``clips`` is passed to its forward as given). ``cache``: a ``CostCache`` for the
    counts (a module of one's own). The model is put in eval mode.
    """
    model.eval()
    prof = Profiler(model, batching=batching, topk=topk, cache=cache)
    return prof.frame(prof.run(clips))

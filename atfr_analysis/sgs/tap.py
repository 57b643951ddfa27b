"""Hooks on the SGS layers of any ``nn.Module``: read each clip's active bins, or hold a layer at B'.

A model of one's own need not be cut where its SGS layers sit (as the zoo's ``VideoModel`` is):
``SgsTap(model)`` hooks every :class:`SimilarityGuidedSampling` layer found in ``model`` (in
sequence, in parallel branches, inside an ``nn.Sequential``: anywhere), for the duration of a
``with`` block, and the model's own ``forward`` runs unchanged.

* recording (``force=None``): each layer is called with ``return_bins=True`` (the third output
  is taken off again before the caller sees it, unless the caller asked for it) and the tap keeps
  each layer's active bins ``[N]`` and the length ``B'_max`` of its output;
* holding (``force={name: B'}``, or ``force="full"``: every layer at all its bins): each layer is
  called with ``force_bins=B'`` (the same operator sequence as a clip with B' active bins, see
  :mod:`atfr_analysis.sgs.layer`). A forced layer reads no value, so the whole model can run on
  the ``meta`` device: that is how :mod:`atfr_analysis.flops.module_cost` counts a signature.

The layer order (of signatures and ``bins.<layer>`` columns) is :func:`sgs_layer_names`'s: the
order of ``model.named_modules()``. Each layer must run exactly once per forward
(:meth:`SgsTap.signatures` says which did not).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.sgs.layer import SimilarityGuidedSampling

__all__ = ["SgsBypass", "SgsTap", "sgs_layer_names", "without_sgs"]


def sgs_layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the SGS layers of ``model`` (``""``: the model is one), in module order."""
    return [n for n, m in model.named_modules() if isinstance(m, SimilarityGuidedSampling)]


class SgsTap:
    """Context manager: record (or hold) the active bins of every SGS layer of ``model``."""

    def __init__(self, model: nn.Module, force: Mapping[str, int] | str | None = None):
        self.model = model
        self.names = sgs_layer_names(model)
        if isinstance(force, str) and force != "full":
            raise ValueError(f"force must be a mapping, 'full' or None, got {force!r}")
        if isinstance(force, Mapping):
            unknown = sorted(set(force) - set(self.names))
            if unknown:
                raise InputError(f"no SGS layer named {', '.join(unknown)}; layers: {', '.join(self.names) or 'none'}")
        self.force = force
        self._handles: list = []
        self._asked: dict[str, bool] = {}
        self.reset()

    def reset(self) -> None:
        """Forget what was recorded (before the next forward)."""
        self.bins: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self.lengths: dict[str, int] = {}
        self.frames: dict[str, int] = {}  # T of each layer's input
        self.num_bins: dict[str, int] = {}  # B of each layer at that input

    # ------------------------------------------------------------------ hooks
    def _pre(self, name: str):
        def hook(layer, args, kwargs):
            x = args[0] if args else kwargs["x"]
            t = int(x.shape[2])
            self.frames[name] = t
            self.num_bins[name] = layer.resolve_bins(t)
            kwargs = dict(kwargs)
            self._asked[name] = bool(kwargs.get("return_bins", False))
            kwargs["return_bins"] = True
            if self.force == "full":
                kwargs["force_bins"] = layer.resolve_bins(t)
            elif self.force is not None and name in self.force:
                b = int(self.force[name])
                if not 1 <= b <= self.num_bins[name]:
                    raise InputError(f"active bins of {name} must be in 1..{self.num_bins[name]}, got {b}")
                kwargs["force_bins"] = b
            return args, kwargs

        return hook

    def _post(self, name: str):
        def hook(layer, args, kwargs, output):
            out, mask, active = output
            self.bins[name].append(active)
            self.lengths[name] = int(out.shape[2])
            return output if self._asked.get(name) else (out, mask)

        return hook

    def __enter__(self) -> SgsTap:
        self.reset()
        for name in self.names:
            layer = self.model.get_submodule(name)
            self._handles.append(layer.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self._handles.append(layer.register_forward_hook(self._post(name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ results
    def calls(self) -> dict[str, int]:
        return {n: len(v) for n, v in self.bins.items()}

    def check_once(self) -> None:
        """Every layer ran exactly once in the forward (else a one-line ``InputError``)."""
        wrong = {n: c for n, c in self.calls().items() if c != 1}
        if wrong:
            said = ", ".join(f"{n} ran {c} time(s)" for n, c in wrong.items())
            raise InputError(f"each SGS layer must run exactly once per forward: {said}")

    def signatures(self) -> torch.Tensor:
        """``[N, L]`` long on the host: each clip's active bins at every layer (one host sync)."""
        self.check_once()
        if not self.names:
            return torch.zeros(0, 0, dtype=torch.long)
        return torch.stack([self.bins[n][0].long() for n in self.names], dim=1).cpu()

    def executed(self) -> tuple[int, ...]:
        """Each layer's output length ``B'_max``: the bins every clip of the batch ran at."""
        self.check_once()
        return tuple(self.lengths[n] for n in self.names)


class SgsBypass(nn.Module):
    """What an SGS layer becomes in the model without SGS: the input passes through, every bin kept
    (``(x, mask)``, ``mask`` all True; with ``return_bins=True`` also ``T`` active bins per clip)."""

    def forward(self, x: torch.Tensor, force_bins: int | None = None, return_bins: bool = False):
        n, t = x.shape[0], x.shape[2]
        mask = torch.ones(n, t, dtype=torch.bool, device=x.device)
        if return_bins:
            return x, mask, torch.full((n,), t, dtype=torch.long, device=x.device)
        return x, mask


def without_sgs(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each SGS layer replaced by :class:`SgsBypass` (the static backbone:
    every frame goes on). The model itself is not changed."""
    import copy

    names = sgs_layer_names(model)
    if "" in names:
        return SgsBypass()
    clone = copy.deepcopy(model)
    for name in names:
        parent, _, leaf = name.rpartition(".")
        setattr(clone.get_submodule(parent), leaf, SgsBypass())
    return clone

"""Exact per-clip GMACs of any ``nn.Module`` with SGS layers anywhere (one's own network).

The zoo's :class:`~atfr_analysis.flops.cost.CostModel` counts a ``VideoModel`` in parts cut at
its SGS layers. A model of one's own is not cut: ``ModuleCostModel`` counts it **whole**, once per
input size and signature (the B' of every SGS layer, in :func:`~atfr_analysis.sgs.tap.sgs_layer_names`
order), by running its own ``forward`` on the ``meta`` device with every SGS layer held at its B'
(:class:`~atfr_analysis.sgs.tap.SgsTap`, ``force_bins``): nothing is computed, and since both
counters count by operator shapes only, the count equals a direct fvcore trace of the model on
any clip with that signature, alone, at batch 1, in both conventions (tested). Layers in sequence
work too: a later layer's input length is the earlier layer's B', as in the real forward.

Counts are kept in the same disk cache as the zoo's (:class:`~atfr_analysis.flops.cache.CostCache`),
keyed by the model's class, structure (its ``repr``), parameter shapes, the source files of its
module classes, the input shapes, the signature and the counter. ``backend="fvcore"`` traces the
model on zeros with the layers held (the reference); the meta counter falls back to it for the
operators it has no fvcore formula for.

``cost_model(model, shapes)`` gives the zoo's ``CostModel`` for a zoo model and this class for
anything else, with one interface (``gmacs(sig)``, ``exact_counts``, ``cost``, ``static``,
``num_bins``, ``grid``, ``curve``, ``cross_check``, ``stats``).
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import BACKENDS, CostModel, EvalMode, Signature, backend_version
from atfr_analysis.flops.count import FlopCount, count_flops
from atfr_analysis.models.base import VideoModel, is_split_model
from atfr_analysis.sgs.tap import SgsTap, sgs_layer_names

__all__ = ["ModuleCostModel", "cost_model", "module_files"]


def cost_model(
    model: nn.Module,
    input_shapes: Sequence[Sequence[int]],
    backend: str = "meta",
    cache=None,
    list_input: bool | None = None,
) -> CostModel:
    """The cost model of ``model``: the zoo's part-wise ``CostModel`` for a zoo model, else a
    :class:`ModuleCostModel` (the whole module per signature)."""
    if is_split_model(model):
        return CostModel(model, input_shapes, backend=backend, cache=cache)
    return ModuleCostModel(model, input_shapes, backend=backend, cache=cache, list_input=list_input)


def module_files(model: nn.Module) -> list[str]:
    """Source files of the classes of ``model``'s modules outside torch (part of the cache key)."""
    files = set()
    for m in itertools.chain(model.modules(), [getattr(model, "net", None)]):
        if m is None or type(m).__module__.startswith("torch."):
            continue
        try:
            files.add(inspect.getfile(type(m)))
        except (TypeError, OSError):
            pass
    return sorted(files)


class ModuleCostModel(CostModel):
    """Per-signature cost of any module at one input size (batch 1, eval mode), counted whole.

    ``input_shapes``: one clip's input tensors (with or without the batch dimension 1);
    ``list_input``: call the model with a list of tensors (default: for a ``VideoModel`` or
    several inputs) or with the one tensor. See the module doc.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shapes: Sequence[Sequence[int]],
        backend: str = "meta",
        cache=None,
        list_input: bool | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        super().__init__(model, input_shapes, backend=backend, cache=cache)
        self.layer_names = sgs_layer_names(model)
        if "" in self.layer_names:
            raise InputError("the model is an SGS layer itself; count the network it sits in")
        if list_input is None:
            list_input = isinstance(model, VideoModel) or len(self.input_shapes) > 1
        if not list_input and len(self.input_shapes) != 1:
            raise ValueError("list_input=False needs exactly one input shape")
        self.list_input = bool(list_input)
        self._layout: dict | None = None

    # ------------------------------------------------------------------ helpers
    def _param(self) -> torch.Tensor:
        p = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return p if p is not None else torch.zeros(())

    def _call_inputs(self, xs: list[torch.Tensor]):
        return list(xs) if self.list_input else xs[0]

    def meta_inputs(self):
        """One clip's input as the model is called with it (a tensor or a list), on ``meta``."""
        p = self._param()
        return self._call_inputs([torch.empty(s, dtype=p.dtype, device="meta") for s in self.input_shapes])

    def _reference(self) -> CostModel:
        return ModuleCostModel(self.model, self.input_shapes, backend="fvcore", list_input=self.list_input)

    def cache_key(self, part: tuple) -> dict:
        if self._base_key is None:
            import dataclasses

            from atfr_analysis.flops.cache import code_fingerprint

            m = self.model
            cfg = getattr(m, "config", None)
            h = hashlib.sha256()
            for name, t in itertools.chain(m.named_parameters(), m.named_buffers()):
                h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
            self._base_key = {
                "model": getattr(m, "model_name", "") or type(m).__name__,
                "class": f"{type(m).__module__}.{type(m).__qualname__}",
                "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg),
                "tensors": h.hexdigest()[:16],
                "structure": hashlib.sha256(repr(m).encode()).hexdigest()[:16],
                "code": code_fingerprint(module_files(m)),
                "input_shapes": [list(s) for s in self.input_shapes],
                "list_input": self.list_input,
                "counted": "whole",
                "conventions": ["conv_fc", "fvcore"],
                "backend": self.backend,
                "counter": backend_version(self.backend),
            }
        key = dict(self._base_key)
        key["part"] = part[0]
        key["signature"] = list(part[1:])
        return key

    def _count_held(self, force) -> tuple[FlopCount, SgsTap]:
        """One count of the whole model with the SGS layers held (``force``: mapping, ``"full"`` or None)."""
        t = time.perf_counter()
        tap = SgsTap(self.model, force=force)
        try:
            with EvalMode(self.model), tap:
                fc = self._count_whole()
            tap.check_once()
        finally:
            self.stats["computed"] += 1
            self.stats["seconds_computing"] += time.perf_counter() - t
        return fc, tap

    def _count_whole(self) -> FlopCount:
        from atfr_analysis.flops.meta import MetaUnsupported, count_meta

        if self.backend == "meta":
            try:
                return count_meta(self.model, self._call_inputs(self._inputs(self.input_shapes)))
            except MetaUnsupported:
                self.stats["fallbacks"] += 1
            except (NotImplementedError, RuntimeError) as e:
                raise InputError(
                    f"{type(self.model).__name__}'s forward failed on the meta device "
                    f"({str(e).splitlines()[0][:120]}); "
                    "a model that reads tensor values outside its SGS layers is counted with backend='fvcore' "
                    "(--counter fvcore)"
                ) from None
        p = self._param()
        if p.is_meta:
            raise InputError("the fvcore counter needs real weights (the model is on the meta device)")
        xs = [torch.zeros(s, dtype=p.dtype, device=p.device) for s in self.input_shapes]
        return count_flops(self.model, self._call_inputs(xs))

    # ------------------------------------------------------------------ layout and parts
    def _ensure_layout(self) -> dict:
        """B of every layer with every bin active (and that signature's count)."""
        if self._layout is None:
            hit = self._load(("layout",))
            if hit is None:
                fc, tap = self._count_held("full" if self.is_dynamic else None)
                sig = tuple(tap.num_bins[n] for n in self.layer_names)
                hit = self._store(("layout",), fc, {"num_bins": list(sig)})
                part = ("full",) + sig if self.is_dynamic else ("static",)
                self._parts[part] = fc
                if part not in self._part_totals:
                    self._store(part, fc)
            self._layout = hit
        return self._layout

    @property
    def num_bins(self) -> list[int]:
        """B of each SGS layer when every earlier layer keeps all its bins (a layer after another
        one with ``num_bins=None`` has B = the earlier layer's B')."""
        return [int(b) for b in self._ensure_layout()["num_bins"]]

    def check_signature(self, sig: Iterable[int]) -> Signature:
        """Length and range against :attr:`num_bins` (a layer whose B depends on an earlier B' is
        checked again when the signature is counted)."""
        return CostModel.check_signature(self, sig)

    def _full_count(self, part: tuple) -> FlopCount:
        fc = self._parts.get(part)
        if fc is None:
            force = dict(zip(self.layer_names, part[1:])) if part[0] == "full" else None
            fc, _tap = self._count_held(force)
            if part in self._part_totals:
                self._parts[part] = fc
            else:
                self._store(part, fc)
        return fc

    def _part(self, part: tuple) -> dict:
        hit = self._load(part)
        if hit is not None:
            return hit
        if part[0] == "layout":
            return self._ensure_layout()
        self._full_count(part)
        return self._part_totals[part]

    # ------------------------------------------------------------------ public
    def cost(self, sig: Iterable[int] = ()) -> FlopCount:
        """Full FlopCount (both conventions, per-module split) of a clip with this signature."""
        if not self.is_dynamic:
            return self.static()
        return self._full_count(("full",) + self.check_signature(sig))

    def exact_counts(self, sig: Iterable[int] = ()) -> tuple[int, int]:
        part = ("full",) + self.check_signature(sig) if self.is_dynamic else ("static",)
        v = self._part(part)
        return int(v["conv_fc"]), int(v["fvcore"])

    def static(self) -> FlopCount:
        """A model without SGS: its count. With SGS: the count with every bin active."""
        if not self.is_dynamic:
            return self._full_count(("static",))
        return self._full_count(("full",) + tuple(self.num_bins))

    def static_gmacs(self) -> tuple[float, float]:
        if self.is_dynamic:
            return self.gmacs(self.num_bins)
        v = self._part(("static",))
        return int(v["conv_fc"]) / 1e9, int(v["fvcore"]) / 1e9

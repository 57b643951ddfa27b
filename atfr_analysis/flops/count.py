"""Counting GMACs of a model on given inputs, with explicit conventions.

Two conventions are always reported (one multiply-add = one flop, as fvcore, PySlowFast,
mmaction2 and the paper count):

``conv_fc``
    everything fvcore counts except normalisation layers. For the 3D CNNs of this project that
    is convolutions and linear layers (plus the SGS layer's MLP and its aggregation ``bmm``).
    This reproduces the "GFLOPs" of PySlowFast's model zoo and of the paper.
``fvcore``
    fvcore's default handles, BatchNorm included (0.7% to 3.5% higher for these models).

Both come from one fvcore trace: ``conv_fc`` is the total minus the normalisation operators
(``set_op_handle("aten::batch_norm", None)`` would *not* remove BN in fvcore: a ``None`` handle
falls back to its default; a handle returning 0 does). A second, independent backend,
``torch.utils.flop_counter.FlopCounterMode`` (which counts 2 flops per multiply-add and knows no
normalisation), must agree with ``conv_fc`` after dividing by 2.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "NORM_OPS",
    "FlopCount",
    "count_flops",
    "count_flopcounter",
    "CONVENTIONS",
]

#: fvcore operator names (as in ``by_operator()``) that the ``conv_fc`` convention leaves out
NORM_OPS = ("batch_norm", "group_norm", "layer_norm", "instance_norm")
CONVENTIONS = {
    "conv_fc": "fvcore count without normalisation layers (convolutions and linear layers); "
    "one multiply-add = 1; the paper's and PySlowFast model zoo's GFLOPs",
    "fvcore": "fvcore's default count, BatchNorm included; one multiply-add = 1",
}


@dataclass
class FlopCount:
    """The result of one trace. Counts are exact integers (MACs); properties give GMACs."""

    count_conv_fc: int
    count_fvcore: int
    by_operator: dict[str, int]
    by_module: dict[str, int]  # conv_fc counts per module (all depths)
    by_module_fvcore: dict[str, int]
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    uncalled_modules: list[str] = field(default_factory=list)

    @property
    def gmacs(self) -> float:
        return self.count_conv_fc / 1e9

    @property
    def gmacs_fvcore(self) -> float:
        return self.count_fvcore / 1e9

    def stages(self, depth: int = 1) -> dict[str, float]:
        """conv_fc GMACs per module at a given depth of the module tree (1 = top-level stages)."""
        out = {}
        for name, c in self.by_module.items():
            if name and name.count(".") == depth - 1:
                out[name] = c / 1e9
        return out

    def __add__(self, other: FlopCount) -> FlopCount:
        def add(a: dict, b: dict) -> dict:
            c = Counter(a)
            c.update(b)
            return dict(c)

        return FlopCount(
            self.count_conv_fc + other.count_conv_fc,
            self.count_fvcore + other.count_fvcore,
            add(self.by_operator, other.by_operator),
            add(self.by_module, other.by_module),
            add(self.by_module_fvcore, other.by_module_fvcore),
            add(self.unsupported_ops, other.unsupported_ops),
            sorted(set(self.uncalled_modules) | set(other.uncalled_modules)),
        )


@torch.no_grad()
def count_flops(model: nn.Module, inputs: Any) -> FlopCount:
    """Trace ``model(inputs)`` once with fvcore and return both conventions.

    ``inputs`` is what the model's forward takes as its one argument (for the zoo: the list of
    pathway tensors). The model is counted in its current mode; put it in ``eval()`` first for
    the conventions of the paper (BN in eval mode).
    """
    # importing the package installed the filter of fvcore's torch.jit.script warning
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(model, (inputs,))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = int(fca.total())
        by_op = {k: int(v) for k, v in fca.by_operator().items()}
        by_mod_op = fca.by_module_and_operator()
        unsupported = dict(fca.unsupported_ops())
        uncalled = sorted(fca.uncalled_modules())
    norm = sum(by_op.get(k, 0) for k in NORM_OPS)
    by_module_fv = {m: int(sum(c.values())) for m, c in by_mod_op.items()}
    by_module = {m: int(sum(v for k, v in c.items() if k not in NORM_OPS)) for m, c in by_mod_op.items()}
    return FlopCount(total - norm, total, by_op, by_module, by_module_fv, unsupported, uncalled)


@torch.no_grad()
def count_flopcounter(model: nn.Module, inputs: Any) -> int:
    """MACs by ``torch.utils.flop_counter.FlopCounterMode`` (its flops / 2): a second backend."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as mode:
        model(inputs)
    flops = mode.get_total_flops()
    if flops % 2:
        raise AssertionError(f"FlopCounterMode returned an odd flop count {flops}")
    return flops // 2

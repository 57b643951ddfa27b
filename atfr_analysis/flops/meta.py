"""Counting GMACs without computing anything: the model runs on the ``meta`` device.

``count_meta(module, inputs)`` swaps the module's parameters and buffers for ``meta`` tensors of
the same shapes (``torch.func.functional_call``; the module itself is not touched), turns the
inputs into ``meta`` tensors, runs the forward under a ``TorchDispatchMode`` and counts each
operator with the formulas of ``torch.utils.flop_counter`` (the table ``FlopCounterMode`` uses:
2 flops per multiply-add, divided by 2 here), plus fvcore's batch-norm formula for the
``fvcore`` convention. Nothing is computed and no memory is touched; the cost is the Python
dispatch of each operator, independent of the model's GMACs.

Why not ``FlopCounterMode`` itself: it decomposes every operator it has no formula for (batch
norm into primitives, a third of the time and no batch-norm operator left to count), and its
module tracker attributes an operator to the modules on the *call stack*; fvcore attributes it
to the module that owns the call and every ancestor of that module by name (``ancestor_mode
"owner"``), which this counter does too (the SGS layer ``s2.ts_layer`` is called from the
model's forward, not from ``s2``'s, and still counts in ``s2``). ``count_conv_fc`` equals
``FlopCounterMode`` / 2 (tested).

What cannot run on ``meta``: anything that reads a tensor's values on the host. In this project
that is the SGS layer (``int(active.max())`` sizes its output); ``real=True`` runs the module on
the given real tensors instead (same counting), which ``CostModel`` does for the SGS layers only
(``B`` cases per layer, on zeros).

Operators fvcore counts besides convolutions, matrix products and batch norm (group/layer norm,
``adaptive_avg_pool2d``, upsampling, ``grid_sampler``, ``einsum``) have no formula here: a module
that uses one raises :class:`MetaUnsupported` (``CostModel`` then counts with fvcore).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from atfr_analysis.flops.count import NORM_OPS, FlopCount

__all__ = ["count_meta", "run_on_meta", "MetaUnsupported", "META_COUNTER_VERSION", "to_meta"]

#: bump when the counting rules change (part of the cost cache's key)
META_COUNTER_VERSION = 1

aten = torch.ops.aten


class MetaUnsupported(RuntimeError):
    """The module uses an operator whose fvcore count the meta counter does not reproduce."""


def _flop_registry() -> dict:
    from torch.utils.flop_counter import flop_registry

    return flop_registry


_MATMUL = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}
_CONV = {aten.convolution, aten._convolution, aten.cudnn_convolution, aten.convolution_overrideable}
# batch-norm operators as the dispatcher sees them: (index of the training flag or None = eval, always training)
_BN: dict[Any, int | bool] = {
    aten.native_batch_norm: 5,
    aten._native_batch_norm_legit: 5,
    aten.cudnn_batch_norm: 5,
    aten._native_batch_norm_legit_no_training: False,
    aten._batch_norm_no_update: False,
    aten._batch_norm_with_update: True,
}
# operators fvcore counts that this counter has no exact formula for
_REFUSED = {
    aten.native_group_norm,
    aten.native_layer_norm,
    aten._adaptive_avg_pool2d,
    aten.adaptive_avg_pool2d,
    aten.upsample_nearest2d,
    aten.upsample_bilinear2d,
    aten.grid_sampler_2d,
    aten.grid_sampler,
}
_KNOWN = _MATMUL | _CONV | set(_BN) | _REFUSED
_REFUSED_MODULES = (nn.GroupNorm, nn.LayerNorm, nn.AdaptiveAvgPool2d, nn.Upsample)
# not arithmetic (or not counted by convention): left out of ``unsupported_ops``
_DATA_OPS = {
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_empty",
    "new_zeros",
    "new_full",
    "arange",
    "clone",
    "copy",
    "_to_copy",
    "contiguous",
    "cat",
    "stack",
    "gather",
    "index_select",
    "index_copy",
    "masked_fill",
    "where",
    "constant_pad_nd",
    "detach",
    "lift_fresh",
    "scalar_tensor",
    "relu",
    "threshold",
    "fill",
    "zero",
    "argsort",
    "sort",
    "sum",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "unsafe_view",
    "logical_not",
    "bitwise_not",
    "max",
    "min",
    "amax",
    "topk",
    "_local_scalar_dense",
    "dropout",
}


def _bn_macs(func_packet, args, kwargs) -> int:
    """fvcore's batch-norm handle: eval mode numel x (2 if affine else 1); training numel x (5 or 4)."""
    x, weight = args[0], args[1] if len(args) > 1 else kwargs.get("weight")
    where = _BN[func_packet]
    training = where if isinstance(where, bool) else bool(args[where] if len(args) > where else kwargs.get("training"))
    n = x.numel()
    affine = weight is not None
    if training:
        return n * (5 if affine else 4)
    return n * (2 if affine else 1)


def _op_name(packet) -> str:
    name = packet.__name__.split(".")[-1]
    return name


class _Counter(TorchDispatchMode):
    def __init__(self, names: dict[int, str], ancestors: dict[str, tuple[str, ...]], linear: set[str]):
        super().__init__()
        self.registry = _flop_registry()
        self.names = names
        self.ancestors = ancestors
        self.linear = linear
        self.stack: list[str] = [""]
        self.by_mod_op: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.called: set[str] = set()
        self.uncounted: dict[str, int] = defaultdict(int)

    # module hooks (global, installed by count_meta)
    def push(self, mod, _args):
        name = self.names.get(id(mod), self.stack[-1])
        self.called.add(name)
        self.stack.append(name)

    def pop(self, mod, _args, _out):
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in _KNOWN:
            # a composite operator reaches the mode undecomposed where autograd is off (inference
            # mode: aten.linear, aten.batch_norm, aten.conv3d): count what it decomposes into
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        owner = self.stack[-1]
        if packet in _MATMUL or packet in _CONV:
            flops = self.registry[packet](*args, **kwargs, out_val=out)
            if flops % 2:
                raise AssertionError(f"odd flop count {flops} for {packet}")
            macs = flops // 2
            op = "conv" if packet in _CONV else ("linear" if owner in self.linear else _op_name(packet))
        elif packet in _BN:
            macs, op = _bn_macs(packet, args, kwargs), "batch_norm"
        elif packet in _REFUSED:
            raise MetaUnsupported(f"the meta counter has no fvcore formula for {packet}; count with fvcore")
        else:
            if not func.is_view:
                name = _op_name(packet).rstrip("_")
                if name.lstrip("_") not in _DATA_OPS and name not in _DATA_OPS:
                    self.uncounted["aten::" + name.lstrip("_")] += 1
            return out
        if macs:
            for m in self.ancestors[owner]:
                self.by_mod_op[m][op] += macs
        return out


def to_meta(x: Any) -> Any:
    """Tensors (in lists/tuples) as ``meta`` tensors of the same shape and dtype."""
    if isinstance(x, torch.Tensor):
        return torch.empty(x.shape, dtype=x.dtype, device="meta")
    if isinstance(x, (list, tuple)):
        return type(x)(to_meta(v) for v in x)
    return x


def _module_tables(module: nn.Module):
    names: dict[int, str] = {}
    for name, m in module.named_modules():  # first name of a shared module wins, as in fvcore
        names.setdefault(id(m), name)
    ancestors: dict[str, tuple[str, ...]] = {}
    for name in names.values():
        parts = name.split(".") if name else []
        ancestors[name] = ("",) + tuple(".".join(parts[: i + 1]) for i in range(len(parts)))
    linear = {n for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    return names, ancestors, linear


def _refuse_modules(module: nn.Module) -> None:
    for name, m in module.named_modules():
        if isinstance(m, _REFUSED_MODULES):
            raise MetaUnsupported(f"{name} ({type(m).__name__}): the meta counter has no fvcore formula for it")


def count_meta(module: nn.Module, inputs: Any, real: bool = False) -> FlopCount:
    """Count ``module(inputs)`` in both conventions (``FlopCount`` as ``count_flops`` returns).

    ``real=False`` (default): on the ``meta`` device, nothing computed. ``real=True``: on the given
    tensors and the module's own parameters (for parts that read values, e.g. the SGS layer).
    The module is counted in its current mode (put it in ``eval()`` for the paper's conventions).
    """
    return run_on_meta(module, inputs, real=real)[0]


@torch.no_grad()
def run_on_meta(module: nn.Module, inputs: Any, real: bool = False) -> tuple[FlopCount, Any]:
    """``count_meta`` that also returns the module's output (``meta`` tensors unless ``real``)."""
    _refuse_modules(module)
    names, ancestors, linear = _module_tables(module)
    counter = _Counter(names, ancestors, linear)
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    pre = register_module_forward_pre_hook(counter.push)
    post = register_module_forward_hook(counter.pop)
    try:
        with counter:
            if real:
                out = module(inputs)
            else:
                state = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in module.named_parameters()}
                state.update({k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in module.named_buffers()})
                out = torch.func.functional_call(module, state, (to_meta(inputs),), strict=False)
    finally:
        pre.remove()
        post.remove()
    by_mod_op = counter.by_mod_op
    by_module_fv = {n: 0 for n in ancestors}
    by_module = {n: 0 for n in ancestors}
    for m, ops in by_mod_op.items():
        by_module_fv[m] = int(sum(ops.values()))
        by_module[m] = int(sum(v for k, v in ops.items() if k not in NORM_OPS))
    by_op = {k: int(v) for k, v in by_mod_op.get("", {}).items()}
    # a module is "called" when its forward ran, or a descendant's did
    called = set()
    for s in counter.called:
        called.update(ancestors.get(s, ("",)))
    uncalled = sorted(n for n in ancestors if n and n not in called)
    fc = FlopCount(by_module[""], by_module_fv[""], by_op, by_module, by_module_fv, dict(counter.uncounted), uncalled)
    return fc, out

"""BatchNorm while training: precise BN (population statistics over training batches) and frozen BN."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["precise_bn", "freeze_bn_layers", "bn_layers"]


def bn_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_bn_layers(model: nn.Module) -> None:
    """Every BatchNorm in eval mode (running statistics used and kept), the rest as it is."""
    for m in bn_layers(model):
        m.eval()


@torch.no_grad()
def precise_bn(model: nn.Module, loader, num_batches: int, dev: torch.device | str = "cpu") -> int:
    """Recompute every BatchNorm's running statistics over ``num_batches`` training batches
    (PySlowFast's precise BN): the running averages kept during training lag behind the weights,
    and inserting SGS into a trained model changes the statistics of everything after it.

    The statistics are those of the population: the sum and the sum of squares of every BN's input
    over all the samples seen (the forward itself normalises with batch statistics, as in
    training). With exact batching an SGS model runs each group of clips of one B' on its own, so
    an average of per-call statistics would weight a one-clip group like a full batch and miss the
    variance between groups; the population statistics do neither. Returns the batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    acc: dict[int, list] = {}

    def pre_hook(mod, inp):
        x = inp[0].detach()
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // max(x.shape[1], 1)
        a = acc.setdefault(id(mod), [0, 0.0, 0.0])
        a[0] += n
        a[1] = a[1] + x.sum(dim=dims, dtype=torch.float64)
        a[2] = a[2] + x.double().pow(2).sum(dim=dims)

    handles = [bn.register_forward_pre_hook(pre_hook) for bn in bns]
    was_training = model.training
    model.train()
    used = 0
    try:
        while used < num_batches:
            for batch in loader:
                xs = batch.pathways if hasattr(batch, "pathways") else batch[0]
                model([x.to(dev) for x in xs])
                used += 1
                if used >= num_batches:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for bn in bns:
        a = acc.get(id(bn))
        if not a or a[0] < 2:
            continue
        n, s1, s2 = a
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0) * (n / (n - 1))
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(used)
    return used

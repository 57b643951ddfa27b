"""Sampling kernels of Similarity Guided Sampling, with the official custom backward passes.

Both kernels map the rescaled distances ``Delta'`` (shape ``[N, 1, T]``) and the bin centres
``mu`` (shape ``[N, B, 1]``) to a kernel matrix ``K`` of shape ``[N, B, T]``: ``K[n, b, t]`` is the
weight with which frame ``t`` of clip ``n`` enters output bin ``b``.

``TentKernel`` (the official ``linear`` kernel, the default)
    ``K = max(0, (1 + 1e-7) - |Delta' - mu|)``: a tent of half-width 1 (not the bin size) around
    each centre. The ``1e-7`` is added to the constant 1 in the tensor's dtype, so in float32 the
    frame that sits exactly on a bin edge gets ``2**-23`` (``1 + 1e-7`` rounds to ``1 + 2**-23``),
    in float64 ``1.0000000005838672e-07``. The backward w.r.t. ``Delta'`` is ``+g`` where
    ``mu >= Delta'``, ``-g`` where ``mu < Delta'``, and 0 where ``|Delta' - mu| > 1`` (a constant 1,
    not the bin size); no gradient flows to the centres.

``DeltaKernel`` (the official hard / Kronecker kernel)
    ``K = 1`` where ``|Delta' - mu| <= s / 2`` (``s`` the bin size), else 0, with no normalisation.
    Its backward is the official surrogate: the upstream gradient, masked to the kernel support,
    is passed unchanged to ``Delta'``, to the centres and to the bin size (each summed to its own
    shape). It is not a derivative of the forward (which is piecewise constant).

Use them through :func:`tent_kernel` / :func:`delta_kernel` (or ``TentKernel.apply``); the
Functions are never instantiated.
"""

from __future__ import annotations

import torch

__all__ = ["TentKernel", "DeltaKernel", "tent_kernel", "delta_kernel", "TENT_EPS"]

#: added to the tent's height so that a frame exactly on a bin edge keeps a (tiny) weight
TENT_EPS = 1e-7


class TentKernel(torch.autograd.Function):
    """``K = relu((1 + 1e-7) - |Delta' - mu|)`` with the official backward (see module doc)."""

    @staticmethod
    def forward(ctx, scaled: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        diff = scaled - centres  # [N, B, T]
        ctx.save_for_backward(diff)
        return torch.clamp((1 + TENT_EPS) - diff.abs(), min=0)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (diff,) = ctx.saved_tensors
        grad_scaled = None
        if ctx.needs_input_grad[0]:
            # +g where mu >= Delta' (diff <= 0), -g where mu < Delta'; 0 outside |diff| <= 1
            g = torch.where(diff <= 0, grad_out, -grad_out)
            g = g.masked_fill(diff.abs() > 1, 0)
            grad_scaled = g.sum(dim=1, keepdim=True)
        return grad_scaled, None


class DeltaKernel(torch.autograd.Function):
    """``K = 1[|Delta' - mu| <= s/2]`` with the official surrogate backward (see module doc)."""

    @staticmethod
    def forward(ctx, scaled: torch.Tensor, centres: torch.Tensor, bin_size: torch.Tensor) -> torch.Tensor:
        k = ((scaled - centres).abs() <= bin_size / 2).to(scaled.dtype)
        ctx.save_for_backward(k)
        ctx.shapes = (scaled.shape, centres.shape, bin_size.shape)
        return k

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (k,) = ctx.saved_tensors
        masked = grad_out * k
        grads = []
        for needed, shape in zip(ctx.needs_input_grad, ctx.shapes):
            if not needed:
                grads.append(None)
                continue
            # the same tensor for every input, reduced over the broadcast dimensions
            dims = tuple(d for d in range(masked.dim()) if shape[d] == 1 and masked.shape[d] != 1)
            grads.append(masked.sum(dim=dims, keepdim=True) if dims else masked)
        return tuple(grads)


def tent_kernel(scaled: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Tent kernel matrix ``[N, B, T]`` from ``scaled`` ``[N, 1, T]`` and ``centres`` ``[N, B, 1]``."""
    return TentKernel.apply(scaled, centres)


def delta_kernel(scaled: torch.Tensor, centres: torch.Tensor, bin_size: torch.Tensor) -> torch.Tensor:
    """Indicator kernel matrix ``[N, B, T]``; ``bin_size`` is ``[N, 1, 1]``."""
    return DeltaKernel.apply(scaled, centres, bin_size)

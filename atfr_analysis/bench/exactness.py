"""Exact batching against batch-1 outputs, and where a difference would start."""

from __future__ import annotations

from typing import Any

import torch

from atfr_analysis.bench.forward import post_exact, post_graphs, sgs_layer
from atfr_analysis.bench.inputs import Workload

__all__ = ["exactness_check"]


def _sgs_differences(model, pre_b, pre_1, k: int) -> dict[str, Any]:
    """Each SGS layer once on the batch's features (its distances kept: SGS rescales each clip's
    distances by 2B / max(delta), which is how much it magnifies rounding) against the layer on
    each clip's own features."""
    from atfr_analysis.sgs.layer import sample_from_embedding

    sgs_diff, bins_equal, rescale = 0.0, True, 0.0
    for j, layer in enumerate(model.sgs_layers()):
        nb = layer.resolve_bins(pre_b[j].shape[2])
        res = sample_from_embedding(
            pre_b[j], layer.embed(pre_b[j]), nb, kernel=layer.kernel, distance=layer.distance, name=layer.name
        )
        ob, bb = res.out, res.active_bins.tolist()
        dmax = res.delta.float().amax(dim=1)
        dmax = dmax[dmax > 0]
        if dmax.numel():
            rescale = max(rescale, float((2 * nb / dmax).max()))
        for i in range(k):
            o1, b1 = sgs_layer(layer, pre_1[i][j])
            b1 = int(b1[0])
            if b1 != bb[i]:
                bins_equal = False
                continue
            sgs_diff = max(sgs_diff, float((ob[i, :, :b1] - o1[0, :, :b1]).abs().max()))
    return {"max_abs_diff_sgs_out": sgs_diff, "bins_equal": bins_equal, "sgs_rescale_max": rescale}


def exactness_check(w: Workload, clips: int) -> dict[str, Any]:
    """The first ``clips`` clips as one batch and one at a time (softmax scores); exact batching's
    own error (the same SGS outputs grouped vs one clip at a time); pre's and SGS's differences."""
    model = w.model
    check: dict[str, Any] = {"clips": min(clips, w.n)}
    k = check["clips"]
    if not k:
        return check
    bs = w.batches[0][0].shape[0]
    xs = [p[:k] for p in w.batches[0]] if k <= bs else [p[:k].to(w.dev) for p in w.xs_all]
    with torch.no_grad(), w.amp():
        model.set_batching("exact")
        ys = model(xs).float()
        one = torch.cat([model([p[i : i + 1] for p in xs]).float() for i in range(k)])
        outs, bins = model.forward_sgs(xs)
        grouped = post_exact(model, outs, bins).float()
        single = torch.cat(
            [model.forward_post([o[i : i + 1, :, : int(b[i])] for o, b in zip(outs, bins)]).float() for i in range(k)]
        )
        check["max_abs_diff_post_only"] = float((grouped - single).abs().max())
        # where a difference to batch-1 starts: pre's features (float rounding of another batch size)
        pre_b = model.forward_pre(xs)
        pre_1 = [model.forward_pre([p[i : i + 1] for p in xs]) for i in range(k)]
        check["max_abs_diff_pre"] = max(
            float((fb - torch.cat([f[j] for f in pre_1])).abs().max()) for j, fb in enumerate(pre_b)
        )
        check["max_abs_pre"] = max(float(fb.abs().max()) for fb in pre_b)
        check.update(_sgs_differences(model, pre_b, pre_1, k))
        graphs = post_graphs(model)
        if model.exact_cuda_graphs:
            model.exact_cuda_graphs = False
            ye = model(xs).float()
            model.exact_cuda_graphs = True
            check["max_abs_diff_eager_vs_graphs"] = float((ye - ys).abs().max())
    check["max_abs_diff_vs_batch1"] = float((ys - one).abs().max())
    check["tolerance"] = 1e-5 if w.precision == "fp32" else None
    if graphs is not None and graphs.error:
        check["cuda_graphs_error"] = graphs.error
    return check

"""Exact batching: run the part after SGS once per group of clips with the same active bins.

In padded batching (the official one) a batch runs after SGS at its largest ``B'`` per layer, so
a clip's prediction depends on its batch. :func:`forward_post_exact` instead groups the clips by
their *signature* (``B'`` of every SGS layer, a row of ``[N, L]``) and runs ``forward_post`` once
per group on exactly the group's ``B'`` bins, so that every clip's output equals its batch-1
output (up to the float rounding of another batch size).

One host synchronisation for the whole batch (the signatures, which the caller brings on the
host); the samples are ordered by group on the host, each group is gathered with one
``index_select`` per layer of exactly its ``B'`` bins (contiguous, no copy of the padding), and the
groups' outputs are put back in batch order with one ``index_copy_`` each.

Speed, set on the model (:class:`~atfr_analysis.models.base.VideoModel`):

``exact_cuda_graphs`` (CUDA, eval mode, no autograd)
    each group replays a captured CUDA graph of ``forward_post`` (:class:`PostGraphs`) instead of
    launching its kernels one by one; ``exact_cuda_graphs_max`` graphs are kept.
``exact_cpu_workers`` (CPU, eval mode, no autograd)
    the groups run concurrently on that many threads with one intra-op thread each
    (:func:`run_groups_threaded`; ``None``: ``torch.get_num_threads()``; 0 or 1: one group after
    the other with all intra-op threads). Small groups (often one clip) parallelise badly inside
    an operator -- PyTorch even falls back to its native 3D convolution for one-clip inputs, which
    is parallel over the batch only -- while distinct groups are independent work.

This module holds no model state: the graph cache lives on the model (:func:`post_graphs`), the
thread pools per process (:func:`cpu_pool`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import torch
from torch import nn

__all__ = [
    "forward_post_exact",
    "group_jobs",
    "cpu_workers",
    "use_post_graphs",
    "post_graphs",
    "reset_post_graphs",
    "run_groups_threaded",
    "cpu_pool",
    "bucket",
    "PostGraphs",
]

#: where a model keeps its graphs (an instance attribute, not a submodule: not in the state dict)
_GRAPH_ATTR = "_post_graph_cache"


def _gather(outs, idx, sig):
    """The group's SGS outputs: rows ``idx``, exactly ``sig[l]`` bins of layer ``l``."""
    return [o[:, :, :b].index_select(0, idx) for o, b in zip(outs, sig)]


def group_jobs(sig: torch.Tensor, device: torch.device):
    """Groups of equal signature: ``[(row indices on device, signature tuple), ...]`` in order of
    first appearance of the sorted signatures; rows keep batch order within a group."""
    uniq, inverse, counts = torch.unique(sig, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)  # samples grouped, in batch order within a group
    if device.type == "cuda":
        order = order.pin_memory().to(device, non_blocking=True)
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0] + ends[:-1]
    return [(order[a:e], tuple(int(b) for b in uniq[g])) for g, (a, e) in enumerate(zip(starts, ends))]


def forward_post_exact(model: nn.Module, outs: list[torch.Tensor], sig: torch.Tensor) -> torch.Tensor:
    """``model.forward_post`` per group of equal signature, outputs in batch order.

    ``outs``: the SGS outputs ``[N, C, B'_max, H, W]`` of each layer; ``sig``: the signatures
    ``[N, L]`` (long, on the host).
    """
    n = outs[0].shape[0]
    device = outs[0].device
    graphs = post_graphs(model, create=True) if use_post_graphs(model, device) else None
    if graphs is None and bool((sig == sig[:1]).all()):  # one signature: no gather, no scatter
        return model.forward_post([o[:, :, : int(b)] for o, b in zip(outs, sig[0])])
    jobs = group_jobs(sig, device)
    result = None

    def put(idx, y):
        nonlocal result
        if result is None:
            result = y.new_empty((n,) + tuple(y.shape[1:]))
        result.index_copy_(0, idx, y)  # consumed at once: a graph's static output is reused

    if graphs is not None:
        for idx, sig_g in jobs:
            put(idx, graphs.run(sig_g, outs, idx))
        return result
    workers = cpu_workers(model, device, outs, jobs)
    if workers > 1:
        for (idx, _s), y in zip(jobs, run_groups_threaded(model, outs, jobs, workers)):
            put(idx, y)
        return result
    for idx, sig_g in jobs:
        put(idx, model.forward_post(_gather(outs, idx, sig_g)))
    return result


def _job_costs(outs, jobs) -> list[int]:
    """Work of each group: clips x sum over layers of bins x elements per bin."""
    per_bin = [o[0, :, 0].numel() for o in outs]
    return [len(idx) * sum(b * c for b, c in zip(sg, per_bin)) for idx, sg in jobs]


def cpu_workers(model: nn.Module, device: torch.device, outs, jobs) -> int:
    """Threads for the groups on CPU: 1 unless eval mode without autograd, several groups,
    and no group dominating the work (it would run on one intra-op thread)."""
    if device.type != "cpu" or len(jobs) < 2 or model.training or torch.is_grad_enabled():
        return 1
    w = model.exact_cpu_workers
    w = torch.get_num_threads() if w is None else int(w)
    w = min(w, len(jobs))
    if w <= 1:
        return 1
    cost = _job_costs(outs, jobs)
    if max(cost) * w > 1.25 * sum(cost):
        return 1
    return w


def use_post_graphs(model: nn.Module, device: torch.device) -> bool:
    """CUDA graphs for this call: asked for, on CUDA, eval mode, no autograd."""
    return (
        bool(model.exact_cuda_graphs) and device.type == "cuda" and not model.training and not torch.is_grad_enabled()
    )


def post_graphs(model: nn.Module, create: bool = False) -> PostGraphs | None:
    """The model's graph cache (``None`` before the first graphed call, unless ``create``)."""
    g = model.__dict__.get(_GRAPH_ATTR)
    if g is None and create:
        g = PostGraphs(model)
        model.__dict__[_GRAPH_ATTR] = g  # not a submodule, not in the state dict
    return g


def reset_post_graphs(model: nn.Module) -> None:
    """Drop the model's captured graphs (after changing weights or devices)."""
    model.__dict__.pop(_GRAPH_ATTR, None)


_CPU_POOLS: dict = {}


def cpu_pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of ``workers`` threads with one intra-op thread each (per process: a forked
    child makes its own). The calling thread's intra-op thread count is restored afterwards."""
    key = (os.getpid(), workers)
    pool = _CPU_POOLS.get(key)
    if pool is None:
        main_threads = torch.get_num_threads()
        started = threading.Barrier(workers)
        pool = ThreadPoolExecutor(
            workers, thread_name_prefix="atfr-exact", initializer=torch.set_num_threads, initargs=(1,)
        )
        for f in [pool.submit(started.wait) for _ in range(workers)]:  # start every thread now
            f.result()
        torch.set_num_threads(main_threads)  # set_num_threads also stores a process-wide default
        _CPU_POOLS[key] = pool
    return pool


def run_groups_threaded(model: nn.Module, outs, jobs, workers: int) -> list:
    """``forward_post`` of each group on the CPU pool (largest groups first); outputs in job order."""
    amp = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None

    def task(job):
        idx, sig = job
        ctx = torch.autocast("cpu", dtype=amp) if amp is not None else nullcontext()
        with torch.no_grad(), ctx:  # grad mode and autocast are per thread
            return model.forward_post(_gather(outs, idx, sig))

    pool = cpu_pool(workers)
    cost = _job_costs(outs, jobs)
    order = sorted(range(len(jobs)), key=lambda i: -cost[i])
    futures = {i: pool.submit(task, jobs[i]) for i in order}
    return [futures[i].result() for i in range(len(jobs))]


def bucket(count: int) -> int:
    """Group size rounded up to a power of two (graphs are captured per bucket)."""
    return 1 << max(0, int(count) - 1).bit_length()


class PostGraphs:
    """CUDA graphs of ``forward_post`` for exact batching, keyed by (signature, bucket, input
    dtypes, autocast dtype).

    A group of ``k`` samples is gathered (one ``index_select`` per layer, written straight into the
    graph's static input) into a batch of ``bucket(k)`` rows, the missing rows repeating the
    group's last sample; in eval mode samples do not interact, so the padding rows change nothing
    for the real ones. All graphs share one memory pool: they run one after the other on one
    stream and each output is consumed (copied out) before the next replay, which is what makes
    sharing safe. Capture: three warm-up runs on a side stream (cuDNN picks its algorithms), then
    the capture; autocast, if on, is re-entered with ``cache_enabled=False`` as capture requires.
    A failed capture turns graphs off for the model (``exact_cuda_graphs = False``) and reruns
    the group eagerly; the reason is kept in ``error``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.graphs: OrderedDict[tuple, tuple] = OrderedDict()
        self.pool = None
        self.captures = 0
        self.replays = 0
        self.error: str | None = None

    def _autocast_dtype(self):
        if torch.is_autocast_enabled("cuda"):
            return torch.get_autocast_dtype("cuda")
        return None

    def _capture(self, sig, outs, size):
        model = self.model
        static_in = [
            torch.empty((size, o.shape[1], b) + tuple(o.shape[3:]), dtype=o.dtype, device=o.device)
            for o, b in zip(outs, sig)
        ]
        for s, o, b in zip(static_in, outs, sig):
            s.copy_(o[:1, :, :b].expand_as(s))
        amp = self._autocast_dtype()

        def fn():
            if amp is None:
                return model.forward_post(static_in)
            with torch.autocast("cuda", dtype=amp, cache_enabled=False):
                return model.forward_post(static_in)

        replay, static_out = self._make_graph(fn, outs[0].device)
        self.captures += 1
        return replay, static_in, static_out

    def _make_graph(self, fn, device):
        """Warm ``fn`` up on a side stream, capture it; returns (replay, static output)."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.autocast("cuda", enabled=False):  # fn re-enters autocast itself
            with torch.cuda.graph(graph, pool=self.pool):
                static_out = fn()
        return graph.replay, static_out

    def run(self, sig, outs, idx):
        model = self.model
        k = int(idx.shape[0])
        size = bucket(k)
        key = (
            sig,
            size,
            tuple((o.dtype, o.shape[1]) + tuple(o.shape[3:]) for o in outs),
            str(outs[0].device),
            self._autocast_dtype(),
        )
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(sig, outs, size)
            except Exception as e:  # noqa: BLE001 - fall back to eager, once and for all
                self.error = f"{type(e).__name__}: {e}"
                model.exact_cuda_graphs = False
                self.graphs.clear()
                return model.forward_post(_gather(outs, idx, sig))
            self.graphs[key] = entry
            while len(self.graphs) > max(1, int(model.exact_cuda_graphs_max)):
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        replay, static_in, static_out = entry
        if size > k:
            idx = torch.cat([idx, idx[-1:].expand(size - k)])
        for s, o, b in zip(static_in, outs, sig):
            torch.index_select(o[:, :, :b], 0, idx, out=s)
        replay()
        self.replays += 1
        return static_out[:k]

"""What every model of the zoo shares: its default input, pathway packing and the ATFR split.

A model of the zoo is a ``VideoModel``: a ``torch.nn.Module`` whose ``forward`` takes the
PySlowFast input (a list with one tensor per pathway, ``[N, 3, T, H, W]``; a bare tensor is
accepted for single-pathway models) and returns class scores (logits in train mode, softmax in
eval mode, as PySlowFast's heads do).

An ATFR model (``_atfr`` in the registry) additionally splits its forward pass at the Similarity
Guided Sampling layers, so that the instrumentation (``atfr_analysis.profile``) and the cost cache
(``atfr_analysis.flops``) can run and count the parts separately:

``forward_pre(xs) -> list[Tensor]``
    everything before SGS: one feature tensor ``[N, C, T, H, W]`` per SGS layer, in the order of
    ``sgs_layer_names()``.
``forward_post(feats) -> Tensor``
    everything after SGS, given the SGS outputs ``[N, C, B', H, W]`` in the same order.

``forward`` = pre, each SGS layer, post; with ``batching="exact"`` the samples of a batch are
grouped by their tuple of active bins after SGS and ``forward_post`` runs once per group, so that
every sample's output equals its batch-1 output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from atfr_analysis.errors import InputError

__all__ = ["InputSpec", "VideoModel", "as_pathways", "make_inputs", "BATCHING_MODES"]

BATCHING_MODES = ("padded", "exact")


@dataclass(frozen=True)
class InputSpec:
    """Default input of a model, as its PySlowFast config defines it.

    ``frames`` holds the frames of each pathway: ``(T,)`` for single-pathway models,
    ``(T_slow, T_fast)`` for SlowFast. ``sampling_rate`` is the stride between sampled frames of
    the fastest pathway (PySlowFast's ``DATA.SAMPLING_RATE``); ``alpha`` the slow/fast frame-rate
    ratio (SlowFast only).
    """

    frames: tuple[int, ...]
    train_crop: int
    test_crop: int
    sampling_rate: int
    alpha: int | None = None
    num_views: int = 10
    num_crops: int = 3

    @property
    def num_pathways(self) -> int:
        return len(self.frames)

    @property
    def clip_frames(self) -> int:
        """Frames decoded per clip (those of the fastest pathway)."""
        return max(self.frames)

    def label(self, crop: int | None = None) -> str:
        """``13x160x160`` or ``4+32x256x256`` (the fixtures' ``input_key``)."""
        s = self.test_crop if crop is None else crop
        return "+".join(str(t) for t in self.frames) + f"x{s}x{s}"

    def with_frames(self, frames: int | Sequence[int] | None) -> "InputSpec":
        """The same spec at another clip length (fast frames for SlowFast; slow = fast / alpha)."""
        if frames is None:
            return self
        if isinstance(frames, int):
            if self.alpha is not None:
                if frames % self.alpha:
                    raise InputError(f"frames must be a multiple of alpha={self.alpha}, got {frames}")
                frames = (frames // self.alpha, frames)
            else:
                frames = (frames,)
        frames = tuple(int(t) for t in frames)
        if len(frames) != len(self.frames):
            raise InputError(f"expected {len(self.frames)} frame counts, got {len(frames)}")
        from dataclasses import replace

        return replace(self, frames=frames)


def as_pathways(x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalise a model input to PySlowFast's list of pathway tensors."""
    if isinstance(x, torch.Tensor):
        return [x]
    return list(x)


def make_inputs(
    spec: InputSpec,
    crop: int | None = None,
    batch: int = 1,
    frames: int | Sequence[int] | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Random inputs (``torch.rand``, as the fixtures) of the model's default shape."""
    spec = spec.with_frames(frames)
    s = spec.test_crop if crop is None else crop
    return [
        torch.rand(batch, 3, t, s, s, generator=generator, device=device) for t in spec.frames
    ]


class VideoModel(nn.Module):
    """Base class of the zoo. Subclasses set ``self.spec`` and implement ``forward``.

    ATFR subclasses implement ``forward_pre`` / ``forward_post`` and register their SGS layers as
    submodules at the official state-dict paths (``s2.ts_layer``, ``s2.pathway0_ts_layer``, ...);
    they inherit ``forward`` from here.
    """

    spec: InputSpec
    #: name in the registry, set by ``build_model``
    model_name: str = ""
    #: the dataclass config the model was built from, set by ``build_model``
    config: object | None = None

    def __init__(self) -> None:
        super().__init__()
        self.batching = "padded"

    # ------------------------------------------------------------------ ATFR protocol
    def sgs_layer_names(self) -> list[str]:
        """State-dict prefixes of the SGS layers, in the order ``forward_pre`` returns features."""
        from atfr_analysis.sgs import SimilarityGuidedSampling

        return [n for n, m in self.named_modules() if isinstance(m, SimilarityGuidedSampling)]

    def sgs_layers(self) -> list[nn.Module]:
        return [self.get_submodule(n) for n in self.sgs_layer_names()]

    @property
    def is_atfr(self) -> bool:
        return bool(self.sgs_layer_names())

    def forward_pre(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no SGS layer")

    def forward_post(self, feats: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no SGS layer")

    def set_batching(self, mode: str) -> "VideoModel":
        if mode not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {mode!r}")
        self.batching = mode
        return self

    def forward_sgs(self, xs):
        """Run pre and SGS; returns (sgs outputs, active bins per layer as [N] long tensors)."""
        feats = self.forward_pre(as_pathways(xs))
        outs, bins = [], []
        for layer, f in zip(self.sgs_layers(), feats):
            out, _mask = layer(f)
            outs.append(out)
            bins.append(layer.last_active_bins)
        return outs, bins

    def forward(self, x):  # ATFR forward; baselines override
        outs, bins = self.forward_sgs(x)
        if self.batching == "padded" or outs[0].shape[0] == 1:
            return self.forward_post(outs)
        return self._forward_post_exact(outs, bins)

    #: exact batching on CUDA: replay ``forward_post`` as CUDA graphs, one per (signature, group
    #: size rounded up to a power of two), in eval mode without autograd (see ``_PostGraphs``)
    exact_cuda_graphs: bool = False
    #: most graphs kept (least recently used are dropped)
    exact_cuda_graphs_max: int = 128
    #: exact batching on CPU (eval mode, no autograd): run the groups concurrently on this many
    #: threads, one intra-op thread each (None: ``torch.get_num_threads()``; 0 or 1: one group
    #: after the other with all intra-op threads)
    exact_cpu_workers: int | None = None

    def _forward_post_exact(self, outs, bins, sig: torch.Tensor | None = None):
        """Group samples by their signature (B' per layer) and run the rest once per group.

        ``sig``: the signatures ``torch.stack(bins, 1)`` already on the host, when the caller has
        them (the profiler does: it logs them), saving the host synchronisation.

        One host synchronisation for the whole batch (the signatures); the samples are ordered by
        group on the host, each group is gathered with one ``index_select`` per layer of exactly its
        ``B'`` bins (contiguous, no copy of the padding), and the groups' outputs are put back in
        batch order with one ``index_copy_`` each. Every sample's output equals its batch-1 output
        (up to the float rounding of another batch size).

        Speed: on CUDA with ``exact_cuda_graphs`` (eval mode, no autograd) each group replays a
        captured graph instead of launching its kernels one by one. On CPU (eval mode, no autograd)
        the groups run concurrently on ``exact_cpu_workers`` threads with one intra-op thread each:
        small groups (often one clip) parallelise badly inside an operator -- PyTorch even falls
        back to its native 3D convolution for one-clip inputs, which is parallel over the batch
        only -- while distinct groups are independent work.
        """
        n = outs[0].shape[0]
        device = outs[0].device
        if sig is None:
            sig = torch.stack(bins, dim=1).cpu()  # [N, L], the one host sync for the whole batch
        uniq, inverse, counts = torch.unique(sig, dim=0, return_inverse=True, return_counts=True)
        graphs = self._post_graphs() if self._use_post_graphs(device) else None
        if uniq.shape[0] == 1 and graphs is None:  # one signature: no gather, no scatter
            return self.forward_post([o[:, :, : int(b)] for o, b in zip(outs, uniq[0])])
        order = torch.argsort(inverse, stable=True)  # samples grouped, in batch order within a group
        if device.type == "cuda":
            order_dev = order.pin_memory().to(device, non_blocking=True)
        else:
            order_dev = order
        ends = torch.cumsum(counts, 0).tolist()
        starts = [0] + ends[:-1]
        jobs = [(order_dev[a:e], tuple(int(b) for b in uniq[g])) for g, (a, e) in enumerate(zip(starts, ends))]
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
        workers = self._cpu_workers(device, outs, jobs)
        if workers > 1:
            for (idx, _s), y in zip(jobs, _run_groups_threaded(self, outs, jobs, workers)):
                put(idx, y)
            return result
        for idx, sig_g in jobs:
            put(idx, self.forward_post([o[:, :, :b].index_select(0, idx) for o, b in zip(outs, sig_g)]))
        return result

    def _cpu_workers(self, device: torch.device, outs, jobs) -> int:
        """Threads for the groups on CPU: 1 unless eval mode without autograd, several groups,
        and no group dominating the work (it would run on one intra-op thread)."""
        if device.type != "cpu" or len(jobs) < 2 or self.training or torch.is_grad_enabled():
            return 1
        w = self.exact_cpu_workers
        w = torch.get_num_threads() if w is None else int(w)
        w = min(w, len(jobs))
        if w <= 1:
            return 1
        per_bin = [o[0, :, 0].numel() for o in outs]
        cost = [len(idx) * sum(b * c for b, c in zip(sg, per_bin)) for idx, sg in jobs]
        if max(cost) * w > 1.25 * sum(cost):
            return 1
        return w

    def _use_post_graphs(self, device: torch.device) -> bool:
        return (
            bool(self.exact_cuda_graphs)
            and device.type == "cuda"
            and not self.training
            and not torch.is_grad_enabled()
        )

    def _post_graphs(self) -> "_PostGraphs":
        g = self.__dict__.get("_post_graph_cache")
        if g is None:
            g = _PostGraphs(self)
            self.__dict__["_post_graph_cache"] = g  # not a submodule, not in the state dict
        return g

    def reset_post_graphs(self) -> None:
        """Drop the captured CUDA graphs of exact batching (after changing weights or devices)."""
        self.__dict__.pop("_post_graph_cache", None)


_CPU_POOLS: dict = {}


def _cpu_pool(workers: int):
    """A thread pool of ``workers`` threads with one intra-op thread each (per process: a forked
    child makes its own). The calling thread's intra-op thread count is restored afterwards."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    key = (os.getpid(), workers)
    pool = _CPU_POOLS.get(key)
    if pool is None:
        main_threads = torch.get_num_threads()
        started = threading.Barrier(workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="atfr-exact", initializer=torch.set_num_threads, initargs=(1,))
        for f in [pool.submit(started.wait) for _ in range(workers)]:  # start every thread now
            f.result()
        torch.set_num_threads(main_threads)  # set_num_threads also stores a process-wide default
        _CPU_POOLS[key] = pool
    return pool


def _run_groups_threaded(model, outs, jobs, workers: int) -> list:
    """``forward_post`` of each group on the CPU pool (largest groups first); outputs in job order."""
    from contextlib import nullcontext

    amp = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None

    def task(job):
        idx, sig = job
        ctx = torch.autocast("cpu", dtype=amp) if amp is not None else nullcontext()
        with torch.no_grad(), ctx:  # grad mode and autocast are per thread
            return model.forward_post([o[:, :, :b].index_select(0, idx) for o, b in zip(outs, sig)])

    pool = _cpu_pool(workers)
    per_bin = [o[0, :, 0].numel() for o in outs]
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]) * sum(b * c for b, c in zip(jobs[i][1], per_bin)))
    futures = {i: pool.submit(task, jobs[i]) for i in order}
    return [futures[i].result() for i in range(len(jobs))]


def _bucket(count: int) -> int:
    """Group size rounded up to a power of two (graphs are captured per bucket)."""
    return 1 << max(0, int(count) - 1).bit_length()


class _PostGraphs:
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

    def __init__(self, model: "VideoModel") -> None:
        from collections import OrderedDict

        self.model = model
        self.graphs: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.pool = None
        self.captures = 0
        self.replays = 0
        self.error: str | None = None

    def _autocast_dtype(self):
        if torch.is_autocast_enabled("cuda"):
            return torch.get_autocast_dtype("cuda")
        return None

    def _capture(self, sig, outs, bucket):
        model = self.model
        static_in = [
            torch.empty((bucket, o.shape[1], b) + tuple(o.shape[3:]), dtype=o.dtype, device=o.device)
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
        bucket = _bucket(k)
        key = (
            sig,
            bucket,
            tuple((o.dtype, o.shape[1]) + tuple(o.shape[3:]) for o in outs),
            str(outs[0].device),
            self._autocast_dtype(),
        )
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(sig, outs, bucket)
            except Exception as e:  # noqa: BLE001 - fall back to eager, once and for all
                self.error = f"{type(e).__name__}: {e}"
                model.exact_cuda_graphs = False
                self.graphs.clear()
                return model.forward_post([o[:, :, :b].index_select(0, idx) for o, b in zip(outs, sig)])
            self.graphs[key] = entry
            while len(self.graphs) > max(1, int(model.exact_cuda_graphs_max)):
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        replay, static_in, static_out = entry
        if bucket > k:
            idx = torch.cat([idx, idx[-1:].expand(bucket - k)])
        for s, o, b in zip(static_in, outs, sig):
            torch.index_select(o[:, :, :b], 0, idx, out=s)
        replay()
        self.replays += 1
        return static_out[:k]

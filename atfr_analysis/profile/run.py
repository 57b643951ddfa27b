"""``profile``: a checkpoint and a video list in, a per-view log of bins, GMACs and scores out.

The run follows PySlowFast's multi-view test protocol (``views`` temporal clips x ``crops``
spatial crops per video), writes Parquet parts as it goes (a killed run loses at most the videos
not yet flushed, and ``resume=True`` continues it), records undecodable videos as ``failed`` rows,
and shards deterministically over ranks (``torchrun``: ``RANK`` / ``WORLD_SIZE``) or job-array
indices (``shard="i/n"``): shard ``i`` of ``n`` takes the videos at list positions ``k`` with
``k % n == i``, and every shard writes its own part files into the same run folder.

Order of the checks (a one-line error at the first problem, nothing written before the run
folder is opened): the settings (``ProfileConfig``), the device and shard, the checkpoint against
``model`` (strict keys and shapes, its PySlowFast cfg), the label map against the head (equal
size, or ``class_subset``), the video list (empty, unknown label, duplicate path, more classes
than the head), the run folder (a run with other settings, or results present without
``resume``). Then the videos are decoded and profiled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.data import one_line
from atfr_analysis.data.transforms import normalize_views
from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import static_model
from atfr_analysis.flops.module_cost import cost_model
from atfr_analysis.loading import load_model_from_checkpoint
from atfr_analysis.profile.classes import ClassSet, check_label_map, class_set
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.profile.instrument import Profiler
from atfr_analysis.profile.log import failed_video_ids, write_parts
from atfr_analysis.profile.model import CheckpointFacts, ProfiledModel
from atfr_analysis.profile.record import note_costs, note_resumed, open_run, run_record, stamp_end
from atfr_analysis.profile.schema import (
    failed_view_rows,
    nonfinite_scores_error,
    video_facts,
    video_row,
    view_results,
    view_row,
)
from atfr_analysis.profile.summary import RunSummary, summarize
from atfr_analysis.runtime import Shard, resolve_device, resolve_shard, sigterm_as_interrupt
from atfr_analysis.tuning import HeapRelease, configure_inference, decoder_niceness, ffmpeg_threads, lower_priority

__all__ = ["profile", "run_profile", "ProfileConfig", "RunSummary", "summarize"]


def profile(
    checkpoint: str | Path | ProfileConfig, model: str | None = None, data=None, out=None, **opts
) -> RunSummary:
    """``profile(ckpt, model, data, out, **opts)``: run ``ProfileConfig(ckpt, model, data, out,
    **opts)`` (see :class:`ProfileConfig` for the options); ``profile(config)`` runs a config.

    Returns the summary of the run folder (all shards; ``summary.exit_code`` tells whether
    videos failed); the log is read with ``load_run(out)``.
    """
    if isinstance(checkpoint, ProfileConfig):
        if model is not None or data is not None or out is not None or opts:
            raise TypeError("profile(config) takes no other arguments; use config.replace(...)")
        return run_profile(checkpoint)
    return run_profile(ProfileConfig(checkpoint, model, data, out, **opts))


def run_profile(cfg: ProfileConfig, on_video: Callable[[dict], None] | None = None) -> RunSummary:
    """Profile ``cfg.checkpoint`` on the videos of ``cfg.data`` into ``cfg.out``.

    ``on_video``: called with each video's row once the video is logged (progress displays,
    ``atfr bench``'s steady-state throughput)."""
    t0 = time.perf_counter()
    place = _placement(cfg)
    cfg = cfg.for_device(place.device)  # batch size and workers left to the device
    model = _load_model(cfg)
    classes, entries = _read_classes_and_videos(cfg, model.head_classes)
    out = Path(cfg.out)
    model = _with_costs(model, out)
    todo, skipped = _open_folder(cfg, out, run_record(cfg, model, classes, entries, place.device), entries, place.shard)
    model.cost.cache.release()
    processed, loop_s = _profile_videos(cfg, out, model, classes, todo, place, skipped, on_video)
    _record_costs(cfg, out, model, place.shard)
    return _finish(cfg, out, place.shard, time.perf_counter() - t0, processed=processed, skipped=skipped, loop_s=loop_s)


# ----------------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class _Placement:
    device: torch.device
    shard: Shard


def _placement(cfg: ProfileConfig) -> _Placement:
    """The device (checked to exist) and this process's shard."""
    shard = resolve_shard(cfg.shard)
    dev = resolve_device(cfg.device)
    if cfg.precision != "fp32" and dev.type != "cuda":
        raise InputError("--precision bf16/fp16 is offered on CUDA only")
    return _Placement(dev, shard)


def _load_model(cfg: ProfileConfig) -> ProfiledModel:
    """The checkpoint into ``cfg.model``, before any video is read."""
    from atfr_analysis.data.views import view_protocol

    net, ckpt, info = load_model_from_checkpoint(
        cfg.checkpoint, cfg.model, cfg.allow_missing, cfg.allow_nonfinite_weights
    )
    ckpt = CheckpointFacts(ckpt.facts, ckpt.describe())  # the weights are in net: keep no second copy
    proto = view_protocol(net, cfg.views, cfg.crops, cfg.short_side, cfg.crop)
    # the costs follow the crop the views really have
    return ProfiledModel(net, ckpt, info, proto, shapes=[(1, 3, t, proto.crop, proto.crop) for t in net.spec.frames])


def _read_classes_and_videos(cfg: ProfileConfig, head: int):
    """The label map against the head (before the list is read), then the video list, its paths
    made absolute (the log and the resume check see one spelling)."""
    from atfr_analysis.data import ListError
    from atfr_analysis.data.datasets import VideoList, read_folder, read_label_map, read_video_list

    label_map = read_label_map(cfg.labels) if cfg.labels else None
    check_label_map(label_map, head, cfg.class_subset, cfg.labels)
    data = Path(cfg.data)
    if data.is_dir():
        entries = read_folder(data, labels=label_map)
    elif data.is_file():
        entries = read_video_list(data, data_root=cfg.data_root, labels=label_map, skip_missing=cfg.skip_missing)
    else:
        raise ListError(f"--data not found: {data} (a video list file or a folder of class folders)")
    fmt, skipped = getattr(entries, "format", "folder"), list(getattr(entries, "skipped", []))
    entries = VideoList([dataclasses.replace(e, path=Path(os.path.abspath(e.path))) for e in entries], fmt, skipped)
    return class_set(label_map, entries, head, cfg.class_subset), entries


#: the run folder's cost cache (hidden: the folder check before run.json exists ignores it)
RUN_COST_CACHE = ".cache"


def _static_cost(net, shapes, cache) -> tuple[float, float]:
    """GMACs (conv_fc, fvcore) of the same backbone without SGS at the same input (cached on disk)."""
    base = static_model(net).eval() if net.sgs_layer_names() else net
    return cost_model(base, shapes, cache=cache).static_gmacs()


def _with_costs(model: ProfiledModel, out: Path) -> ProfiledModel:
    """The static backbone's cost and the model's cost model, at the test input. Counts are kept
    in the run folder and the user cache (``flops.cache``): a resumed run, every shard and every
    torchrun rank count each signature once."""
    from atfr_analysis.flops.cache import CostCache

    model.net.eval()
    cache = CostCache.user(out / RUN_COST_CACHE)
    cache.defer(out / RUN_COST_CACHE)  # written once the folder is opened as this run's
    static, static_fvcore = _static_cost(model.net, model.shapes, cache)
    cost = cost_model(model.net, model.shapes, cache=cache)
    num_bins = dict(zip(model.layers, cost.num_bins)) if model.layers else {}
    return dataclasses.replace(
        model, cost=cost, static_gmacs=static, static_gmacs_fvcore=static_fvcore, num_bins=num_bins
    )


def _open_folder(cfg: ProfileConfig, out: Path, meta: dict, entries, shard: Shard):
    """The run folder (new, joined or resumed); this shard's videos not yet logged, and how many were."""
    mine = [e for k, e in enumerate(entries) if shard.takes(k)]
    _, done = open_run(out, meta, cfg.resume, {e.video_id for e in mine}, shard.count)
    retried = (failed_video_ids(out) & done) if cfg.retry_failed else set()
    done -= retried
    todo = [e for e in mine if e.video_id not in done]
    if cfg.resume and (done or retried) and shard.index == 0:
        note_resumed(out, logged=len(done) + len(retried), retried=len(retried))
    return todo, len(mine) - len(todo)


class _PartWriter:
    """Buffers whole videos' rows and writes them as one part every ``every`` videos or
    ``seconds`` seconds (and at the end)."""

    def __init__(self, out: Path, layers: list[str], shard: Shard, every: int, seconds: float):
        now = time.time()  # to the microsecond: parts sort in the order the calls started (see log._part_order)
        stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now)) + f"{int(now * 1e6) % 1_000_000:06d}"
        self.tag = f"{shard.index:03d}of{shard.count:03d}-{stamp}-{uuid.uuid4().hex[:6]}"
        self.out, self.layers, self.every, self.seconds = out, layers, every, seconds
        self.seq = 0
        self.views: list[dict] = []
        self.videos: list[dict] = []
        self.last = time.monotonic()

    def add(self, view_rows: list[dict], video_row: dict) -> None:
        self.views.extend(view_rows)
        self.videos.append(video_row)
        if len(self.videos) >= self.every or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.videos:
            write_parts(self.out, self.views, self.videos, self.layers, f"{self.tag}-{self.seq:05d}")
            self.seq += 1
            self.views, self.videos = [], []
        self.last = time.monotonic()


def _loader(todo, model: ProfiledModel, cfg: ProfileConfig, dev: torch.device):
    from atfr_analysis.data.datasets import ViewDataset, collate_videos, loader_context
    from atfr_analysis.data.video import Decoding

    workers = cfg.workers
    # views travel as uint8 (a quarter of float32's bytes) and are normalised on the device
    decoding = Decoding(thread_type="AUTO", thread_count=ffmpeg_threads(workers), apply_rotation=cfg.apply_rotation)
    ds = ViewDataset(todo, model.net, model.protocol, dtype=torch.uint8, decoding=decoding)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=1,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_videos,
        # an item holds every view of a video (30 x 3 x T x S x S bytes): keep few in flight
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=dev.type == "cuda",
        multiprocessing_context=loader_context(workers),
        # on the CPU the decoders yield to the model's threads (tuning.decoder_niceness)
        worker_init_fn=functools.partial(lower_priority, decoder_niceness(dev)) if workers > 0 else None,
    )


def _profile_videos(
    cfg: ProfileConfig,
    out: Path,
    model: ProfiledModel,
    classes: ClassSet,
    todo,
    place: _Placement,
    skipped: int,
    on_video: Callable[[dict], None] | None = None,
):
    """Decode and profile ``todo``, writing parts as it goes; (videos profiled, seconds)."""
    from atfr_analysis.profile.progress import ProfileProgress

    net, dev, shard = model.net, place.device, place.shard
    net.to(dev)
    configure_inference(net, dev, cuda_graphs=cfg.cuda_graphs, cudnn_benchmark=cfg.cudnn_benchmark)
    heap = HeapRelease(dev)
    profiler = Profiler(net, batching=cfg.batching)
    profiler.use_cost_model(model.shapes, model.cost)  # the cost cache built above
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)
        if cfg.precision != "fp32"
        else None
    )
    infer = _Inference(profiler, classes, model.layers, cfg.batch_size, dev, autocast)
    writer = _PartWriter(out, model.layers, shard, cfg.flush_every, cfg.flush_seconds)
    desc = "profiling" + (f" [shard {shard.index}/{shard.count}]" if shard.count > 1 else "")
    show = not cfg.quiet and (shard.index == 0 or not shard.distributed)
    processed = 0
    t_loop = time.perf_counter()
    with (
        sigterm_as_interrupt(),
        ProfileProgress(
            total=len(todo),
            quiet=not show,
            layers=model.layers,
            description=desc,
            done_before=skipped,
            views_per_video=model.protocol.num_views,
        ) as bar,
    ):
        try:
            for items in _loader(todo, model, cfg, dev):
                for item in items:
                    entry, proto = todo[item["index"]], model.protocol
                    view_rows, video_row = infer.video(item, entry, proto.num_views, proto.crops)
                    writer.add(view_rows, video_row)
                    processed += 1
                    bar.update(video_row, view_rows)
                    if on_video is not None:
                        on_video(video_row)
                items = item = None  # drop the decoded views before the heap is trimmed
                heap.after_video()
                if cfg.stop_after is not None and processed >= cfg.stop_after:
                    break
        finally:
            writer.flush()
    return processed, time.perf_counter() - t_loop


@dataclass
class _Inference:
    """One video's views through the profiler, in batches: its views rows and its videos row."""

    profiler: Profiler
    classes: ClassSet
    layers: list[str]
    batch_size: int
    device: torch.device
    autocast: Any

    def video(self, item: dict, entry, nviews: int, crops: int) -> tuple[list[dict], dict]:
        """The views rows (in view order; a partial video's views that did not decode are
        ``failed`` rows with their reason) and the videos row. A video any of whose views has
        scores that are not finite fails, every view a ``failed`` row (``non-finite scores``)."""
        video = video_facts(entry, item)
        if item["status"] != "ok":
            err = item.get("error") or "unknown error"
            return failed_view_rows(video, err, self.layers, nviews, crops), video_row(video, None, err)
        pathways, meta = item["pathways"], item["views"]
        failed = dict(item.get("failed_views") or [])
        if pathways[0].shape[0] + len(failed) != nviews:  # pragma: no cover - the data layer's contract
            raise RuntimeError(f"{entry.path}: {pathways[0].shape[0]} + {len(failed)} views, {nviews} expected")
        results, scores = self.views(pathways)
        nonfinite = nonfinite_scores_error(scores)
        if nonfinite:  # NaN or inf is never a result
            results = [None] * len(results)
        rows = [
            view_row(video, v, crops, self.layers, meta=meta, meta_row=r, result=res, error=nonfinite)
            for r, (v, res) in enumerate(zip(meta["view"], results))
        ]
        rows += [view_row(video, v, crops, self.layers, error=one_line(err)) for v, err in failed.items()]
        rows.sort(key=lambda row: row["view"])
        if nonfinite:
            return rows, video_row(video, None, nonfinite)
        return rows, video_row(video, scores, item.get("error") if failed else None)

    def views(self, pathways) -> tuple[list[dict], torch.Tensor]:
        """Per-view results and the ``[n, K]`` scores (restricted to the run's classes)."""
        n = pathways[0].shape[0]
        scores, bins, gm, gf, ge = [], [], [], [], []
        for s in range(0, n, self.batch_size):
            # uint8 views to the device (non-blocking from pinned memory), normalised there
            chunk = normalize_views(
                [p[s : s + self.batch_size] for p in pathways], device=self.device, non_blocking=True
            )
            if self.autocast is not None:
                with self.autocast:
                    r = self.profiler.run(chunk)
            else:
                r = self.profiler.run(chunk)
            scores.append(r["scores"])
            bins.append(r["bins"])
            gm += r["gmacs"]
            gf += r["gmacs_fvcore"]
            ge += r["gmacs_executed"]
        scores_t = self.classes.restrict(torch.cat(scores).float())  # [n, K] softmax, on the host
        return view_results(scores_t, torch.cat(bins), gm, gf, ge, self.layers), scores_t


def _record_costs(cfg: ProfileConfig, out: Path, model: ProfiledModel, shard: Shard) -> None:
    """How this call counted its costs (counted vs read from the cache), and with ``cross_check``
    the first K signatures counted again with fvcore, into ``run.json`` (``costs``, per shard)."""
    cost = model.cost
    info = {"backend": cost.backend, "stats": dict(cost.stats), "cache": dict(cost.cache.stats) if cost.cache else None}
    if cfg.cross_check:
        info["cross_check"] = cost.cross_check(cfg.cross_check)
    note_costs(out, f"{shard.index}/{shard.count}", info)


def _finish(cfg: ProfileConfig, out: Path, shard: Shard, elapsed: float, **this_call) -> RunSummary:
    """Wait for the other ranks (torchrun), then summarise the folder and stamp run.json."""
    if shard.distributed:
        import torch.distributed as dist

        own = not dist.is_initialized()
        if own:
            # ranks may finish hours apart on a long run: a generous timeout for the rendezvous
            dist.init_process_group("gloo", timeout=_dt.timedelta(days=7))
        dist.barrier()  # every rank's parts are on disk
    summary = summarize(
        out, elapsed=elapsed, shard=(shard.index, shard.count), max_failed_fraction=cfg.max_failed_fraction
    )
    summary.distributed = shard.distributed
    for k, v in this_call.items():
        setattr(summary, k, v)
    if shard.index == 0 or not shard.distributed:  # job-array shards each stamp it (the last one wins)
        stamp_end(out, summary.to_dict())
    if shard.distributed:
        dist.barrier()
        if own:
            dist.destroy_process_group()
    return summary

"""The training phase: clips/s of the train step (forward, backward, SGD update; what ``atfr
train --freeze-bn`` runs per batch) on the workload's clips, in fp32 and bf16 autocast, with 1 process and
(CPU, ``train_processes``) 2 gloo processes under DDP; and the data loading of the train-time
clips (decoded on the fly) against the step, per clip."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["train_throughput"]


def _model(name: str, classes: int, dev: torch.device, overrides: dict | None = None):
    """The workload's model (its config changes, e.g. ``--frames``), seeded, in train mode."""
    from atfr_analysis.models import build_model
    from atfr_analysis.train.bn import freeze_bn_layers

    torch.manual_seed(0)
    m = build_model(name, num_classes=classes, **(overrides or {})).to(dev).train()
    if m.sgs_layer_names():
        m.set_batching("exact")
    freeze_bn_layers(m)  # exact batching can leave one clip in a group after SGS: no batch statistics
    return m


def _time_steps(model, xs, y, dev, precision: str, steps: int) -> float:
    """Median seconds of one train step (after one untimed step); every step starts from the
    weights and optimizer state of the first, restored untimed."""
    from atfr_analysis.bench.timing import median, sync

    # The step is timed, not trained: each starts from the same weights. Random weights on the
    # bench's clips (a frozen clip: identical frames) give non-finite gradients under bf16
    # autocast, and an SGD step with them makes the weights NaN at any learning rate (0 * NaN),
    # so the next forward sent NaN into SGS: `atfr bench` with its defaults ended so (issue 30).
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]

    @torch.no_grad()
    def restore() -> None:  # untimed: the first step's weights, a zero momentum buffer
        for p, p0 in zip(params, start):
            p.copy_(p0)
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.zero_()

    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    times = []
    for k in range(steps + 1):
        restore()
        sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = F.cross_entropy(model(xs).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(dev)
        if k:
            times.append(time.perf_counter() - t0)
    restore()
    return median(times)


def _rank(rank: int, world: int, port: int, name: str, classes: int, shapes, steps: int, q, overrides=None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dev = torch.device("cpu")
        model = torch.nn.parallel.DistributedDataParallel(_model(name, classes, dev, overrides))
        g = torch.Generator().manual_seed(rank)
        xs = [torch.randn(*s, generator=g) for s in shapes]
        y = torch.randint(0, classes, (shapes[0][0],), generator=g)
        s = _time_steps(model, xs, y, dev, "fp32", steps)
        if rank == 0:
            q.put(s)
    finally:
        torch.distributed.destroy_process_group()


def _two_processes(name: str, classes: int, shapes, steps: int, overrides: dict | None = None) -> float:
    """Seconds per step of 2 gloo processes, each at the given per-rank batch."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("forkserver")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, name, classes, shapes, steps, q, overrides)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a training process failed (exit codes {[p.exitcode for p in procs]})")
    return float(q.get(timeout=5))


def _loading(w, batch: int) -> float | None:
    """Seconds per train-time clip (decoded on the fly, augmented) from the workload's videos."""
    if not w.data_entries:
        return None
    from atfr_analysis.train.data import TrainClips

    ds = TrainClips(w.data_entries[:batch], w.spec, w.crop, cache=False)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return (time.perf_counter() - t0) / len(ds)


def train_throughput(w, cfg, log) -> dict[str, Any]:
    """The training phase's numbers (see the module doc)."""
    name, classes = w.model.model_name, int(w.model.config.num_classes)
    over = w.model.frames_overrides(w.spec.frames)  # the workload's clip length (--frames)
    batch = max(2, min(4, w.n))
    xs = [p[:batch].to(w.dev) for p in w.xs_all]
    y = torch.arange(batch, device=w.dev) % classes
    steps = cfg.train_steps
    out: dict[str, Any] = {"batch_per_process": batch, "steps": steps, "clips_per_s": {}}
    for precision in ("fp32", "bf16"):
        s = _time_steps(_model(name, classes, w.dev, over), xs, y, w.dev, precision, steps)
        out["clips_per_s"][f"1 process {precision}"] = batch / s
    if w.dev.type == "cpu" and cfg.train_processes >= 2:
        s = _two_processes(name, classes, [tuple(p.shape) for p in xs], steps, over)
        out["clips_per_s"]["2 processes fp32"] = 2 * batch / s
    load = _loading(w, batch)
    out["loading_s_per_clip"] = load
    out["step_s_per_clip"] = batch / out["clips_per_s"]["1 process fp32"]
    log(
        "train step clips/s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in out["clips_per_s"].items())
        + (f"; train-time loading {load:.3f} s/clip vs step {out['step_s_per_clip']:.3f} s/clip" if load else "")
    )
    return out

"""Many processes: torchrun's environment, the process group, the DDP wrapper.

``torchrun --nproc_per_node N [--nnodes ...] -m atfr_cli.main train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous; one process needs none of it. The backend is
NCCL on CUDA and gloo on the CPU; each CUDA rank uses the device of its ``LOCAL_RANK``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["World", "init_world", "wrap_model", "gather_objects", "all_mean", "barrier"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this run created the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.started_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_world(device: torch.device) -> World:
    """This process's place (from torchrun's variables) and, with several, the process group."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not torch.distributed.is_initialized():
        # the longest wait: the ranks' shards of a validation (each rank profiles every n-th video) end apart
        torch.distributed.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2)
        )
        started = True
    return World(rank, size, local, started)


def wrap_model(model: nn.Module, world: World, device: torch.device, sync_bn: bool) -> nn.Module:
    """DDP over the ranks (SyncBatchNorm first with ``sync_bn``); the model itself with one process."""
    if world.size <= 1:
        return model
    if sync_bn:
        if device.type != "cuda":
            from atfr_analysis.errors import InputError

            raise InputError(
                "--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only); on the CPU use --freeze-bn"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # BN buffers (running statistics) are broadcast from rank 0 before each forward, as PySlowFast's DDP does
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gather_objects(obj, world: World) -> list:
    if world.size <= 1:
        return [obj]
    out = [None] * world.size
    torch.distributed.all_gather_object(out, obj)
    return out


def all_mean(values: list[float], world: World) -> list[float]:
    """The mean over ranks of each value (float64)."""
    if world.size <= 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return (t / world.size).tolist()


def barrier(world: World) -> None:
    """Every rank waits for the others (nothing with one process)."""
    if world.size > 1:
        torch.distributed.barrier()

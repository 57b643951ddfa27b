"""The training data: PySlowFast's train-time sampling, decoded on the fly in the loader workers.

Each item is a random clip of ``frames x sampling_rate`` frames (at 30 fps) in its video, only
those frames decoded (``read_frames`` with the indices drawn from the header's count and fps),
short-side scale jitter, a random crop and a horizontal flip, PySlowFast's normalisation. Every
random draw of an item comes from its own seed, a function of (run seed, epoch, item)
(:func:`item_seed`): a clip is the same whichever loader worker or rank draws it, in any order,
so a resumed or a distributed run sees the clips an uninterrupted single process does. Nothing is
kept in memory unless ``cache`` (small data sets; each worker keeps its own copy).

A video that cannot be decoded when its clip is drawn is recorded (the batch carries its path and
reason) and the next video of the list stands in, so that every batch keeps its size (PySlowFast
retries another index the same way). :class:`EpochSampler` orders the items of an epoch: a
permutation drawn from (seed, epoch), split into global batches, each split into contiguous
per-rank parts, and started at any batch of the epoch (exact resume).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from atfr_analysis.errors import InputError

__all__ = [
    "TrainClips",
    "EpochSampler",
    "item_seed",
    "split_validation",
    "probe_videos",
    "data_fingerprint",
    "unique_failures",
    "collate_clips",
    "make_loader",
    "TrainBatch",
]

#: videos tried in a row when an item's video cannot be decoded (PySlowFast's NUM_RETRIES is 10)
RETRIES = 10


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training clip's augmentation: a function of (run seed, epoch, item) only, so
    a clip is the same whichever loader worker draws it, in whatever order."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def _decode_clip(path, spec, g: torch.Generator) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]``: a random clip of ``path`` (PySlowFast's training window), only its frames decoded."""
    from atfr_analysis.data.transforms import temporal_indices
    from atfr_analysis.data.video import Decoding, read_frames

    want: list = []

    def pick(info):
        want.append(temporal_indices(max(int(info.frames), 1), info.fps, spec, clip_idx=-1, num_clips=1, generator=g))
        return want[0].tolist()

    fs = read_frames(path, pick, decoding=Decoding(check_count=False))
    have = torch.tensor(fs.index)  # ascending; frames past the real end are absent
    pos = torch.searchsorted(have, want[0], right=True).sub(1).clamp(0, len(have) - 1)
    return fs.frames.index_select(0, pos)


def _video_clip(frames: torch.Tensor, fps: float, spec, g: torch.Generator) -> torch.Tensor:
    from atfr_analysis.data.transforms import temporal_indices

    return frames.index_select(0, temporal_indices(frames.shape[0], fps, spec, clip_idx=-1, num_clips=1, generator=g))


def augment(clip: torch.Tensor, crop: int, scale_jitter, g: torch.Generator) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> normalised float ``[3, T, crop, crop]``: short side to
    ``crop x U(a, b)``, random crop, horizontal flip with probability 1/2."""
    from atfr_analysis.data.transforms import normalize

    x = clip.permute(3, 0, 1, 2).float()  # [3, T, H, W]
    lo, hi = scale_jitter
    short = max(int(round(crop * (lo + (hi - lo) * torch.rand(1, generator=g).item()))), crop)
    h, w = x.shape[-2:]
    size = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    y0 = int(torch.randint(0, x.shape[-2] - crop + 1, (1,), generator=g))
    x0 = int(torch.randint(0, x.shape[-1] - crop + 1, (1,), generator=g))
    x = x[..., y0 : y0 + crop, x0 : x0 + crop]
    if torch.rand(1, generator=g).item() < 0.5:
        x = x.flip(-1)
    return normalize(x)


class TrainClips(torch.utils.data.Dataset):
    """Random training clips of a video list, decoded when drawn (cached in memory when ``cache``).

    ``dataset[(epoch, i)]`` (what :class:`EpochSampler` yields) or ``dataset[i]`` (at ``.epoch``)
    gives ``(pathways, label, failures)``, ``failures`` the ``{"path", "reason"}`` of videos that
    could not be decoded on the way (the next videos of the list stood in)."""

    def __init__(self, entries, spec, crop: int, scale_jitter=(1.0, 1.25), cache: bool = False, seed: int = 0):
        self.entries = list(entries)
        self.spec = spec
        self.crop = crop
        self.scale_jitter = tuple(scale_jitter)
        self.cache = cache
        self.seed = seed
        self.epoch = 0
        self._videos: dict[int, tuple[torch.Tensor, float]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _clip(self, i: int, g: torch.Generator) -> torch.Tensor:
        if i in self._videos:
            return _video_clip(*self._videos[i], self.spec, g)
        if self.cache:
            from atfr_analysis.data.video import decode_video

            self._videos[i] = tuple(decode_video(self.entries[i].path))
            return _video_clip(*self._videos[i], self.spec, g)
        return _decode_clip(self.entries[i].path, self.spec, g)

    def __getitem__(self, key):
        from atfr_analysis.data import DataError
        from atfr_analysis.data.transforms import pack_pathways

        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        failures = []
        for k in range(RETRIES):
            j = (i + k) % len(self.entries)
            g = torch.Generator().manual_seed(item_seed(self.seed, epoch, j))
            try:
                clip = self._clip(j, g)
            except (DataError, OSError, RuntimeError, ValueError) as exc:
                failures.append({"path": str(self.entries[j].path), "reason": " ".join(str(exc).split())})
                continue
            x = augment(clip, self.crop, self.scale_jitter, g)
            return pack_pathways(x, self.spec), int(self.entries[j].label), failures
        first = failures[0]
        raise InputError(f"{RETRIES} videos in a row cannot be decoded, from {first['path']}: {first['reason']}")


@dataclass
class TrainBatch:
    pathways: list
    labels: torch.Tensor
    failures: list


def collate_clips(batch) -> TrainBatch:
    paths = list(zip(*[b[0] for b in batch]))
    return TrainBatch(
        [torch.stack(p) for p in paths], torch.tensor([b[1] for b in batch]), [f for b in batch for f in b[2]]
    )


class EpochSampler(torch.utils.data.Sampler):
    """The items of one rank in one epoch, as ``(epoch, index)`` keys: a permutation of the data
    set drawn from (seed, epoch), cut into global batches of ``global_batch`` (the last partial
    one dropped when there is more than one), each cut into ``world`` contiguous per-rank parts.
    ``start_batch`` skips the epoch's first batches (exact resume). The same global batches, as
    sets, whatever the number of ranks."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise InputError(f"--batch-size {global_batch} is not a multiple of the {world} processes")
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return max(1, self.n // self.global_batch) if self.n > self.global_batch else 1

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1 & 0xFFFFFFFF))
        perm = torch.randperm(self.n, generator=g).tolist()
        return (perm * (1 + self.global_batch // max(self.n, 1)))[: max(self.n, self.global_batch)]

    def __iter__(self):
        order, per = self._order(), self.global_batch // self.world
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield from ((self.epoch, i) for i in chunk[self.rank * per : (self.rank + 1) * per])

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * (self.global_batch // self.world)


def make_loader(ds: TrainClips, sampler: EpochSampler, workers: int):
    """A DataLoader of per-rank batches; its workers start from the forkserver (as the profile's)."""
    from atfr_analysis.data.datasets import loader_context

    return torch.utils.data.DataLoader(
        ds,
        batch_size=sampler.global_batch // sampler.world,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        multiprocessing_context=loader_context(workers),
        persistent_workers=workers > 0,
        # its own generator: a DataLoader draws its workers' base seed when an epoch's iterator
        # starts, from the global RNG otherwise, which would shift the dropout draws of a resumed run
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def split_validation(entries, fraction: float, seed: int = 0):
    """``(train, val)``: a stratified hold-out of ``fraction`` of each label's videos (at least one
    per label when ``fraction > 0`` and the label has two or more), drawn with ``seed``; both keep
    the list's order."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"the validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(entries), []
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, e in enumerate(entries):
        by_label.setdefault(int(e.label), []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.update(rng.sample(idx, k))
    return [e for i, e in enumerate(entries) if i not in held], [e for i, e in enumerate(entries) if i in held]


def probe_videos(entries):
    """Open every video's header (no decoding): ``(ok, failed)``, ``failed`` a list of ``{"path", "reason"}``."""
    from atfr_analysis.data import DataError
    from atfr_analysis.data.video import probe

    ok, failed = [], []
    for e in entries:
        try:
            probe(e.path)
        except (DataError, OSError, RuntimeError, ValueError) as exc:
            failed.append({"path": str(e.path), "reason": " ".join(str(exc).split())})
            continue
        ok.append(e)
    return ok, failed


def unique_failures(*lists) -> list[dict]:
    """The ``{"path", "reason"}`` failures of ``lists``, one per video (its first), in order."""
    seen: dict[str, dict] = {}
    for f in (f for lst in lists for f in lst):
        seen.setdefault(f["path"], f)
    return list(seen.values())


def _digest(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def data_fingerprint(cfg, entries, label_map, val) -> dict:
    """What a run trains on, kept in its training states and compared on resume: the training list
    (``entries`` as read, before any video is opened) and the validation list ``val`` (each path
    and label, in order), and the label map (each name and id)."""

    def videos(path, es):
        return {"path": path, "videos": len(es), "sha256": _digest(f"{e.path}\t{int(e.label)}" for e in es)}

    labels = None
    if label_map is not None:
        pairs = sorted(label_map.items(), key=lambda kv: (kv[1], kv[0]))
        labels = {"path": cfg.labels, "classes": len(label_map), "sha256": _digest(f"{k}\t{v}" for k, v in pairs)}
    return {
        "data": videos(cfg.data, entries),
        "labels": labels,
        "val_data": videos(cfg.val_data, val) if val is not None else None,
    }

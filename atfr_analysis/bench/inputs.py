"""What a bench run measures: the ATFR model, its backbone without SGS, and the clips on the device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from atfr_analysis.bench.clips import build_clips, clips_from_data, mix_description
from atfr_analysis.bench.config import CPU_CROP, DEFAULT_MODEL, BenchConfig
from atfr_analysis.bench.timing import autocast
from atfr_analysis.errors import InputError
from atfr_analysis.tuning import configure_inference

__all__ = ["Workload", "resolve_inputs", "load_model", "baseline_of", "prepare"]


@dataclass
class Workload:
    """The model, the baseline and the clips of one run (batches already on the device)."""

    model: Any
    base: Any
    dev: torch.device
    precision: str
    crop: int
    xs_all: list[torch.Tensor]  # every clip, per pathway, on the host
    recs: list[dict]  # one record per clip (source, kind, ...)
    clip_source: str
    batches: list[list[torch.Tensor]]
    data_entries: list | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self):
        return self.model.spec

    @property
    def n(self) -> int:
        return int(self.xs_all[0].shape[0])

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """One clip's pathway shapes (batch 1)."""
        return [(1,) + tuple(p.shape[1:]) for p in self.xs_all]

    def amp(self):
        return autocast(self.dev, self.precision)


def _checkpoint_model_name(path) -> str | None:
    """The registry name a checkpoint records (ours: ``ATFR_ANALYSIS.model``; PySlowFast-style:
    ``MODEL.MODEL_NAME``), or None."""
    from atfr_analysis.checkpoint import load_checkpoint

    cfg = load_checkpoint(path).cfg
    if not isinstance(cfg, dict):
        return None
    own = cfg.get("ATFR_ANALYSIS") if isinstance(cfg.get("ATFR_ANALYSIS"), dict) else {}
    mod = cfg.get("MODEL") if isinstance(cfg.get("MODEL"), dict) else {}
    name = own.get("model") or cfg.get("model") or mod.get("MODEL_NAME")
    return str(name) if name else None


def resolve_inputs(cfg: BenchConfig) -> BenchConfig:
    """``checkpoint="demo"``, ``data="demo"`` and the default model, made concrete."""
    change: dict = {}
    if cfg.checkpoint == "demo":
        from atfr_analysis.shipped import ATFR, checkpoint_path

        change["checkpoint"] = str(checkpoint_path(ATFR))
    if cfg.data == "demo":
        from atfr_analysis.demo import demo_cache, demo_data

        root = demo_data(demo_cache() / "data", quiet=cfg.quiet)
        change.update(data=str(root / "test.csv"), data_root=str(root))
    if cfg.model in (None, "auto"):
        ckpt = change.get("checkpoint", cfg.checkpoint)
        if ckpt:
            change["model"] = _checkpoint_model_name(ckpt)
            if not change["model"]:
                raise InputError("the checkpoint does not name its model: pass --model")
        elif cfg.model == "auto":
            raise InputError("--model auto needs --checkpoint")
        else:
            change["model"] = DEFAULT_MODEL
    return dataclasses.replace(cfg, **change)


def load_model(cfg: BenchConfig):
    """The ATFR model: the checkpoint's weights, or random weights seeded by ``cfg.seed``."""
    from atfr_analysis.models import build_model, frames_overrides

    if cfg.checkpoint:
        from atfr_analysis.loading import load_model_from_checkpoint

        model, _ck, _info = load_model_from_checkpoint(cfg.checkpoint, cfg.model)
        if cfg.frames is not None and cfg.frames != model.spec.clip_frames:
            raise InputError("--frames cannot change a checkpoint's clip length")
    else:
        over = frames_overrides(cfg.model, cfg.frames)  # --frames as every command takes it
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, **over)
    if not model.is_atfr:
        raise InputError(f"atfr bench needs an _atfr model, got {cfg.model!r}")
    return model


def baseline_of(model):
    """The backbone without SGS, carrying the ATFR model's weights where names and shapes agree."""
    from atfr_analysis.flops.cost import static_model

    base = static_model(model)
    own = base.state_dict()
    src = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    base.load_state_dict(src, strict=False)
    return base


def _notes(cfg: BenchConfig, spec, crop: int) -> list[str]:
    notes = []
    if crop != spec.test_crop:
        notes.append(
            f"crop {crop} instead of the model's test crop {spec.test_crop} (reduced for a CPU run: "
            f"GMACs and times are at {crop}x{crop})"
        )
    if cfg.checkpoint:
        notes.append(f"trained weights: {cfg.checkpoint}")
    else:
        notes.append(
            "random weights (no --checkpoint): an untrained SGS layer keeps about half of the bins on "
            "changing content; B' spreads because the clips hold different numbers of distinct frames"
        )
    if cfg.precision != "fp32":
        notes.append(f"precision {cfg.precision} (autocast): GMACs are counted in fp32 and do not change")
    return notes


def prepare(cfg: BenchConfig, dev: torch.device) -> Workload:
    """Build the model and baseline (eval mode, on ``dev``) and the clips, batched on ``dev``."""
    from atfr_analysis.data.transforms import pack_pathways

    model = load_model(cfg).eval()
    spec = model.spec
    crop = cfg.crop or (spec.test_crop if dev.type == "cuda" else min(CPU_CROP, spec.test_crop))
    base = baseline_of(model).eval()
    data_entries = None
    if cfg.data:
        xs_all, recs, data_entries = clips_from_data(cfg.data, cfg.data_root, spec, crop, cfg.clips)
        clip_source = (
            f"the test views of {cfg.data} ({spec.num_views} temporal view(s) per video, centre crop; "
            "videos round-robin over the classes)"
        )
    else:
        fast, recs = build_clips(spec, crop, cfg.clips, cfg.seed)
        xs_all = pack_pathways(fast, spec)
        clip_source = mix_description()
    model.to(dev)
    base.to(dev)
    bs = cfg.batch_size
    batches = [[p[i : i + bs].to(dev) for p in xs_all] for i in range(0, cfg.clips, bs)]
    # the same CUDA settings as ``atfr profile`` (cuDNN autotuning, CUDA graphs)
    configure_inference(model, dev, cuda_graphs=bool(cfg.cuda_graphs), cudnn_benchmark=cfg.cudnn_benchmark)
    model.reset_post_graphs()
    return Workload(
        model=model,
        base=base,
        dev=dev,
        precision=cfg.precision,
        crop=crop,
        xs_all=xs_all,
        recs=recs,
        clip_source=clip_source,
        batches=batches,
        data_entries=data_entries,
        notes=_notes(cfg, spec, crop),
    )

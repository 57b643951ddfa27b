"""``atfr explain``: what Similarity Guided Sampling does to one video.

For every test view of a video (the model's ``views x crops`` protocol) and every SGS layer of an
ATFR model, :func:`explain_video` records each temporal position's distance ``Delta_t`` (raw and
rescaled to ``[0, 2B]``), the bin it falls into, the active bins ``B'``, which source frames each
bin merges (its *span*), and the view's GMACs at its signature. :func:`write_explain` writes that
as a JSON file and a figure (:mod:`atfr_analysis.analysis.explain_plot`).

How the numbers are obtained (nothing re-implemented): the model runs ``forward_pre`` on one view
(batch 1, eval mode, so a clip is independent of any other); each SGS layer's ``embed`` gives the
embedding ``z`` and :func:`atfr_analysis.sgs.sample_from_embedding`, with the layer's own
``num_bins`` (``resolve_bins``), ``kernel`` and ``distance``, gives ``Delta``, ``Delta'``, the
kernel matrix and the active bins -- the calls the layer's ``forward`` makes. A frame's bin is the
bin of its largest kernel weight. With the tent kernel the frame with the largest ``Delta`` lands
on the upper edge of the last bin with a weight of about 1e-7 (``2**-23`` in float32): it still
*is* in that bin (the bin counts as active), so it is reported there, with its weight. With the
delta kernel a frame can have no weight at all (dropped); its bin is then ``None``.

Time: SGS runs at the temporal resolution of the feature it receives. A feature time step ``j``
of pathway ``p`` stands for the pathway's input frames ``j*stride .. (j+1)*stride - 1`` with
``stride = T_p(input) / T_p(feature)`` (1 for every model of the zoo: no temporal stride before
SGS); the pathway's input frames are the view's sampled source frames (fast pathway), or for the
slow pathway of SlowFast the fast frames at ``linspace(0, T - 1, T / alpha)`` (PySlowFast's
``pack_pathway_output``). The JSON gives, per step, the source-video frame numbers it stands for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.errors import InputError

__all__ = [
    "load_model_and_views",
    "sgs_inputs",
    "check_layers_see_frames",
    "ExplainConfig",
    "ViewClips",
    "load_view_clips",
    "explain_model",
    "explain_video",
    "write_explain",
    "run_explain",
    "thumbnails_of",
    "SCHEMA",
]

#: identifies the JSON layout
SCHEMA = "atfr-explain/1"


@dataclass(frozen=True)
class ExplainConfig:
    """What to explain.

    ``view``: the view drawn in detail (``None``: view 0); every view is in the JSON.
    ``views`` / ``crops``: the test protocol (default: the model's, ``spec.num_views`` x
    ``spec.num_crops``). ``allow_nonfinite_weights``: load a checkpoint whose weights hold NaN or
    inf (refused by default); NaN or inf that reaches an SGS layer is then its one-line error.
    """

    checkpoint: str | Path
    model: str
    video: str | Path
    view: int | None = None
    views: int | None = None
    crops: int | None = None
    allow_missing: str | None = None
    allow_nonfinite_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("views", "crops"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise InputError(f"{name} must be a positive integer, got {v}")
        if self.crops is not None:
            from atfr_analysis.data.transforms import crop_positions

            try:
                crop_positions(int(self.crops))
            except ValueError as e:
                raise InputError(str(e)) from None
        if self.view is not None and int(self.view) < 0:
            raise InputError(f"view must be >= 0, got {self.view}")


@dataclass
class ViewClips:
    """A video's test views: ``pathways`` (one ``[V, 3, T_p, S, S]`` tensor per pathway, slow
    first), ``frame_indices`` (per view, the source frames of the fastest pathway), per-view
    metadata lists and facts about the video (``num_frames``, ``fps``)."""

    pathways: list[torch.Tensor]
    frame_indices: list[list[int]]
    meta: dict[str, list]
    facts: dict[str, Any]


def load_view_clips(video: str | Path, spec, views: int | None = None, crops: int | None = None) -> ViewClips:
    """The one place that samples a video's views (today ``datasets.load_views``; the
    PySlowFast-exact sampler drops in here)."""
    from atfr_analysis.data.datasets import load_views
    from atfr_analysis.data.views import ViewProtocol

    path = Path(video)
    if not path.is_file():
        from atfr_analysis.data import VideoNotFoundError

        raise VideoNotFoundError(path, "no such file")
    pathways, meta, facts = load_views(path, spec, ViewProtocol.at_crop(spec, views, crops))
    return ViewClips(pathways, [list(map(int, f)) for f in meta["frame_indices"]], meta, facts)


def _layer_pathway(name: str, index: int, num_pathways: int) -> int:
    """The pathway an SGS layer sits on: ``pathway<p>`` in its name, else its position."""
    import re

    m = re.search(r"pathway(\d+)", name)
    if m:
        return int(m.group(1))
    return min(index, num_pathways - 1)


def _pathway_positions(spec, p: int, t_fast: int) -> list[int]:
    """Positions in the fast clip of pathway ``p``'s input frames (``pack_pathways``' rule)."""
    if spec.num_pathways == 1 or p == spec.num_pathways - 1:
        return list(range(t_fast))
    t = t_fast // spec.alpha
    return torch.linspace(0, t_fast - 1, t).long().tolist()


def sgs_inputs(model, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each SGS layer's input for the clips ``xs``, in the order of ``sgs_layer_names()``: a zoo
    model's ``forward_pre``; one's own module runs its ``forward`` whole, each layer's input read by
    a forward pre-hook (each layer must run once)."""
    from atfr_analysis.models.base import is_split_model

    if is_split_model(model):
        return model.forward_pre(xs)
    names, layers = model.sgs_layer_names(), model.sgs_layers()
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [
        layer.register_forward_pre_hook(
            lambda m, args, kwargs, n=n: seen[n].append(args[0] if args else kwargs["x"]), with_kwargs=True
        )
        for n, layer in zip(names, layers)
    ]
    try:
        model(xs)
    finally:
        for h in hooks:
            h.remove()
    wrong = [n for n in names if len(seen[n]) != 1]
    if wrong:
        raise InputError(f"explain needs each SGS layer to run once per clip; {', '.join(wrong)} did not")
    return [seen[n][0] for n in names]


def check_layers_see_frames(model, xs: list[torch.Tensor]) -> None:
    """One line when an SGS layer of one's own module takes another SGS layer's output: its steps
    are that layer's bins, not frames of the video, which is what explain maps them to. Measured:
    every layer held at all its bins, then at one; a layer whose input length follows is such."""
    from atfr_analysis.models.base import is_split_model
    from atfr_analysis.sgs.tap import SgsTap

    if is_split_model(model):
        return  # cut at its SGS layers: every layer's input comes from forward_pre
    names = model.sgs_layer_names()
    lengths = []
    for force in ("full", dict.fromkeys(names, 1)):
        with SgsTap(model, force=force) as tap:
            model(xs)
        lengths.append(dict(tap.frames))
    after = [n for n in names if lengths[0].get(n) != lengths[1].get(n)]
    if after:
        raise InputError(
            f"explain maps each step of an SGS layer to video frames; {', '.join(after)} of "
            f"{model.model_name or type(model).__name__} take(s) the output of another SGS layer (steps that are "
            "its bins, not frames): explain needs every SGS layer to see frames"
        )


def _temporal_reach(model, xs: list[torch.Tensor], feats: list[torch.Tensor], pathways: list[int]) -> list:
    """Measured, per SGS layer: which of its steps a change of one input frame of its own pathway
    reaches, as ``[lo, hi]`` offsets in steps from the frame's step (``[0, 0]``: nothing mixes
    frames before SGS). The middle frame is perturbed; a step counts as reached when its
    feature moves by more than 1e-4 of the feature's largest magnitude."""
    out = []
    for i, p in enumerate(pathways):
        t_in = int(xs[p].shape[2])
        m = t_in // 2
        ys = [x.clone() for x in xs]
        ys[p][:, :, m] += 1.0
        f0, f1 = feats[i], sgs_inputs(model, ys)[i]
        stride = t_in // int(f0.shape[2])
        moved = (f1 - f0).abs().amax(dim=(0, 1, 3, 4)) > 1e-4 * float(f0.detach().abs().max())
        steps = moved.nonzero().flatten().tolist()
        out.append([steps[0] - m // stride, steps[-1] - m // stride] if steps else None)
    return out


def _f(x: torch.Tensor | float) -> float:
    return float(x)


def _explain_layer(layer, feat: torch.Tensor, positions: list[int], src: list[int]) -> dict:
    from atfr_analysis.sgs import sample_from_embedding

    t_feat = int(feat.shape[2])
    if len(positions) % t_feat:
        raise InputError(
            f"explain maps each step of an SGS layer to whole input frames: {layer.name} has {t_feat} steps for "
            f"its pathway's {len(positions)} frames"
        )
    stride = len(positions) // t_feat
    b = layer.resolve_bins(t_feat)
    z = layer.embed(feat)
    res = sample_from_embedding(feat, z, b, kernel=layer.kernel, distance=layer.distance, name=layer.name)
    k = res.kernel_matrix[0]  # [B, T]
    mass = k.sum(dim=1)
    active_ids = [i for i in range(b) if float(mass[i]) > 0]
    steps = []
    for j in range(t_feat):
        col = k[:, j]
        w, bi = col.max(dim=0)
        bin_id = int(bi) if float(w) > 0 else None
        pos = positions[j * stride : (j + 1) * stride]
        steps.append(
            {
                "t": j,
                "clip_positions": pos,
                "source_frames": [src[q] for q in pos],
                "delta": _f(res.delta[0, j]),
                "delta_scaled": _f(res.delta_scaled[0, j]),
                "bin": bin_id,
                "weight": _f(w),
            }
        )
    bins = []
    for i in active_ids:
        members = [s for s in steps if s["bin"] == i]
        frames = sorted({f for s in members for f in s["source_frames"]})
        bins.append(
            {
                "bin": i,
                "centre": _f(res.centres[0, i]),
                "mass": _f(mass[i]),
                "steps": [s["t"] for s in members],
                "source_frames": frames,
                "span": [frames[0], frames[-1]] if frames else None,
            }
        )
    return {
        "active_bins": int(res.active_bins[0]),
        "active_bin_ids": active_ids,
        "num_bins": b,
        "bin_size": _f(res.bin_size[0]),
        "bin_edges": [_f(res.bin_size[0] * i) for i in range(b + 1)],
        "distinct_bins_of_steps": len({s["bin"] for s in steps if s["bin"] is not None}),
        "steps": steps,
        "bins": bins,
    }


#: how a step of an SGS layer maps to the video's frames (the explanation's "time_mapping")
TIME_MAPPING = (
    "SGS runs at the feature's temporal resolution: step t of a layer stands for its pathway's input "
    "frames t*temporal_stride .. (t+1)*temporal_stride-1 (clip_positions, positions in the fast clip; "
    "the slow pathway of SlowFast takes the fast frames at linspace(0, T-1, T/alpha)); source_frames are "
    "those positions' frame numbers in the video. temporal_reach (measured by perturbing one input frame): "
    "the steps [t+lo, t+hi] that frame t of the layer's own pathway reaches through the layers before SGS "
    "(temporal convolutions mix neighbouring frames; in SlowFast the lateral connections also bring the "
    "other pathway in). bin: the bin of the step's largest kernel weight "
    "(bins ordered by distance to the clip's mean embedding, not by time); the step with the largest "
    "distance sits on the last bin's upper edge with weight ~1e-7 and is reported in that bin"
)


def _explain_view(model, clips: ViewClips, v: int, cost) -> tuple[dict, list[dict]]:
    """One view's explanation, and what each SGS layer is (pathway, steps, stride, B, kernel)."""
    spec, names, layers = model.spec, model.sgs_layer_names(), model.sgs_layers()
    t_fast = int(clips.pathways[-1].shape[2])
    xs = [p[v : v + 1] for p in clips.pathways]
    feats = sgs_inputs(model, xs)
    src = clips.frame_indices[v]
    per_layer, info = [], []
    for i, (name, layer, f) in enumerate(zip(names, layers, feats)):
        p = _layer_pathway(name, i, spec.num_pathways)
        positions = _pathway_positions(spec, p, t_fast)
        d = _explain_layer(layer, f, positions, src)
        # the layer's own forward must agree (the same calls, made by the model's code)
        _out, _mask, active = layer(f, return_bins=True)
        if int(active[0]) != d["active_bins"]:  # pragma: no cover - a bug if it happens
            raise RuntimeError(f"{name}: {d['active_bins']} active bins here, {int(active[0])} in the layer's forward")
        per_layer.append({"name": name, **d})
        info.append(
            {
                "name": name,
                "pathway": p,
                "pathway_frames": len(positions),
                "feature_frames": int(f.shape[2]),
                "temporal_stride": len(positions) // int(f.shape[2]),
                "num_bins": d["num_bins"],
                "kernel": layer.kernel,
                "distance": layer.distance,
                "feature_shape": list(f.shape[1:]),
            }
        )
    if v == 0:
        reach = _temporal_reach(model, xs, feats, [li["pathway"] for li in info])
        for li, r in zip(info, reach):
            li["temporal_reach"] = r
    sig = tuple(d["active_bins"] for d in per_layer)
    m = clips.meta
    return {
        "view": v,
        "temporal_index": int(m["temporal_index"][v]),
        "spatial_index": int(m["spatial_index"][v]),
        "crop_position": int(m["crop_position"][v]),
        "frame_indices": src,
        "signature": list(sig),
        "gmacs": cost.gmacs(sig)[0],
        "layers": per_layer,
    }, info


@torch.no_grad()
def explain_model(model, clips: ViewClips, detail_view: int | None = None, cost=None) -> dict:
    """The explanation (a JSON-ready dict) of ``clips`` through an ATFR ``model`` (set to eval
    mode here; its training flag is restored afterwards). ``cost``: a ``CostModel`` of this model
    at the clips' input size to reuse (its cache), else one is built."""
    from atfr_analysis.flops.module_cost import cost_model

    if not model.is_atfr:
        raise InputError(
            f"model {model.model_name or type(model).__name__} has no SGS layer: explain needs an _atfr model"
        )
    nviews = int(clips.pathways[0].shape[0])
    view = 0 if detail_view is None else int(detail_view)
    if not 0 <= view < nviews:
        raise InputError(f"view {view} is out of range: this video has {nviews} views (0..{nviews - 1})")
    was_training = model.training
    model.eval()
    try:
        shapes = [(1,) + tuple(p.shape[1:]) for p in clips.pathways]
        if cost is None or cost.model is not model or list(cost.input_shapes) != shapes:
            cost = cost_model(model, shapes)
        check_layers_see_frames(model, [p[:1] for p in clips.pathways])
        gmacs_full = cost.gmacs(tuple(cost.num_bins))[0]
        explained = [_explain_view(model, clips, v, cost) for v in range(nviews)]
    finally:
        model.train(was_training)
    return {
        "schema": SCHEMA,
        "model": model.model_name,
        "detail_view": view,
        "num_views": nviews,
        "video": {k: clips.facts.get(k) for k in ("num_frames", "fps", "width", "height")},
        "input": [list(p.shape[1:]) for p in clips.pathways],
        "layers": explained[0][1] if explained else None,
        "time_mapping": TIME_MAPPING,
        "gmacs_all_bins": gmacs_full,
        "gmacs_convention": "conv_fc (conv + linear, 1 MAC = 1; the paper's GFLOPs), batch 1, one view",
        "views": [e[0] for e in explained],
    }


def load_model_and_views(cfg: ExplainConfig):
    """(model, clips) of a config; one-line errors for an unknown model, a missing file, a
    baseline model."""
    from atfr_analysis.loading import load_model_from_checkpoint
    from atfr_analysis.models.registry import get_entry

    get_entry(cfg.model)  # an unknown name fails before anything is read
    if Path(cfg.checkpoint).is_dir():
        raise InputError(f"checkpoint {cfg.checkpoint} is a directory, not a checkpoint file")
    if not Path(cfg.checkpoint).is_file():
        raise InputError(f"checkpoint not found: {cfg.checkpoint}")
    if not Path(cfg.video).is_file():
        raise InputError(f"video not found: {cfg.video}")
    model, _ckpt, _info = load_model_from_checkpoint(
        cfg.checkpoint, cfg.model, cfg.allow_missing, cfg.allow_nonfinite_weights
    )
    if not model.is_atfr:
        raise InputError(f"model {cfg.model} has no SGS layer: explain needs an _atfr model")
    return model, load_view_clips(cfg.video, model.spec, cfg.views, cfg.crops)


def explain_video(cfg: ExplainConfig, labels: dict | None = None) -> tuple[dict, ViewClips]:
    """Load the checkpoint into ``cfg.model``, sample the video's views and explain them.
    ``labels``: what the JSON calls the ``checkpoint`` and ``video`` (default: their paths)."""
    model, clips = load_model_and_views(cfg)
    out = explain_model(model, clips, cfg.view)
    labels = labels or {}
    out["checkpoint"] = str(labels.get("checkpoint", cfg.checkpoint))
    out["video"]["path"] = str(labels.get("video", cfg.video))
    return out, clips


def write_explain(result: dict, out: str | Path, thumbnails: torch.Tensor | None = None) -> tuple[Path, Path]:
    """Write ``<out>.json`` and ``<out>.png`` (``out`` without suffix, or with ``.json``/``.png``)."""
    from atfr_analysis.analysis.explain_plot import plot_explain

    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".png") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    jpath, ppath = stem.with_suffix(".json"), stem.with_suffix(".png")
    jpath.write_text(json.dumps(result, indent=1) + "\n")
    plot_explain(result, ppath, thumbnails=thumbnails)
    return jpath, ppath


def thumbnails_of(clips: ViewClips, view: int) -> torch.Tensor:
    """The view's fast-pathway frames as displayable ``[T, S, S, 3]`` floats in ``[0, 1]``."""
    from atfr_analysis.data.transforms import MEAN, STD

    x = clips.pathways[-1][view]  # [3, T, S, S], normalised
    mean = torch.tensor(MEAN).view(3, 1, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1, 1)
    return (x * std + mean).clamp(0, 1).permute(1, 2, 3, 0).contiguous()


def run_explain(cfg: ExplainConfig, out: str | Path, labels: dict | None = None) -> tuple[dict, Path, Path]:
    """:func:`explain_video`, then :func:`write_explain` with the detailed view's thumbnails."""
    res, clips = explain_video(cfg, labels)
    j, p = write_explain(res, out, thumbnails=thumbnails_of(clips, res["detail_view"]))
    return res, j, p

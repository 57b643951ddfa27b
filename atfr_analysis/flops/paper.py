"""The paper's baseline GFLOPs rows, reproduced with our models; and the B' its ATFR rows imply.

The paper values below are the published numbers (the poster's tables), kept as reference data;
every "ours" number is counted by fvcore when the report is written.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from atfr_analysis.flops.cost import CostModel
from atfr_analysis.flops.summary import model_flops
from atfr_analysis.models import build_model, make_inputs

__all__ = ["PaperRow", "PAPER_ROWS", "paper_baselines", "implied_bins", "write_paper_baselines"]


@dataclass(frozen=True)
class PaperRow:
    row: str  # the paper's row
    model: str  # our registry name
    frames: int  # clip frames (fast pathway for SlowFast)
    crop: int
    num_classes: int
    views: int | None  # the paper's views (None: not stated)
    paper_gflops: float
    paper_params_m: float | None
    paper_atfr_gflops: float
    note: str


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow(
        "K400 SlowFast 4x16 R50",
        "slowfast_4x16_r50",
        32,
        256,
        400,
        30,
        36.1,
        34.40,
        20.8,
        "params: ours 34.48M (PySlowFast's fusion kernel 5, identical to the reference fixture); "
        "the paper's 34.40M is 0.2% lower, not explained by the architecture as far as we can establish",
    ),
    PaperRow(
        "K400 X3D-S (10 views)",
        "x3d_s",
        13,
        160,
        400,
        10,
        1.9,
        3.79,
        1.0,
        "the paper prints 1.9: 1.96 truncated to one decimal",
    ),
    PaperRow(
        "K400 X3D-XL (10 views)",
        "x3d_xl",
        16,
        312,
        400,
        10,
        35.8,
        11.09,
        20.0,
        "X3D-XL widths rounded to multiples of 8, as the published X3D-XL (11.10M params)",
    ),
    PaperRow(
        "K400 X3D-XL (30 views)",
        "x3d_xl",
        16,
        356,
        400,
        30,
        48.4,
        11.09,
        26.3,
        "PySlowFast head at the larger test crop (fixed pooling window, fully convolutional)",
    ),
    PaperRow(
        "SSv2 SlowFast 16x8 R50",
        "slowfast_16x8_r50",
        64,
        256,
        174,
        None,
        132.8,
        None,
        87.8,
        "ours about 1% lower; the difference is not explained by the published configuration",
    ),
)


def atfr_cost(name: str, frames: int, crop: int, num_classes: int) -> CostModel:
    """The cost cache of ``name``'s ``_atfr`` variant at one input (its model is ``cost.model``)."""
    model = build_model(name + "_atfr", num_classes=num_classes).eval()
    spec = model.spec.with_frames(frames)
    return CostModel(model, [tuple(x.shape) for x in make_inputs(spec, crop)])


def implied_bins(name: str, frames: int, crop: int, num_classes: int, target: float, cost: CostModel | None = None):
    """Mean B' per SGS layer at which the ``_atfr`` model's cost equals ``target`` GMACs.

    One layer: linear interpolation between the integer B' whose costs bracket the target.
    Several layers (SlowFast): assumes every pathway keeps the same fraction of its bins and
    walks the diagonal ``B'_l = ceil(k * B_l / B_max)``, interpolating between bracketing ``k``.
    Returns ``(bins per layer (floats), fraction kept, costs at the bracket)``.
    """
    if cost is None:
        cost = atfr_cost(name, frames, crop, num_classes)
    bins = cost.num_bins
    bmax = max(bins)

    def sig(k: int) -> tuple[int, ...]:
        return tuple(max(1, math.ceil(k * b / bmax)) for b in bins)

    def g(k: int) -> float:
        return cost.gmacs(sig(k))[0]

    lo, hi = 1, bmax
    if target <= g(lo):
        return [float(b) for b in sig(lo)], sig(lo)[-1] / bins[-1], (g(lo), g(lo))
    if target >= g(hi):
        return [float(b) for b in bins], 1.0, (g(hi), g(hi))
    while hi - lo > 1:  # cost grows with k
        mid = (lo + hi) // 2
        if g(mid) <= target:
            lo = mid
        else:
            hi = mid
    t = (target - g(lo)) / (g(hi) - g(lo))
    k = lo + t
    return [k * b / bmax for b in bins], k / bmax, (g(lo), g(hi))


def paper_baselines(progress: bool = False) -> list[dict]:
    rows = []
    iterator = PAPER_ROWS
    if progress:
        from rich.progress import track

        iterator = track(PAPER_ROWS, description="counting the paper's rows")
    for r in iterator:
        s = model_flops(r.model, frames=r.frames, crop=r.crop, num_classes=r.num_classes, views=r.views or 1)
        cost = atfr_cost(r.model, r.frames, r.crop, r.num_classes)
        atfr = cost.model
        bins, frac, _ = implied_bins(r.model, r.frames, r.crop, r.num_classes, r.paper_atfr_gflops, cost=cost)
        rows.append(
            {
                "row": r.row,
                "model": r.model,
                "input": "+".join(map(str, s.frames)) + f"x{r.crop}x{r.crop}",
                "num_classes": r.num_classes,
                "views": r.views if r.views is not None else "",
                "paper_gflops": r.paper_gflops,
                "ours_conv_fc": round(s.gmacs, 4),
                "ours_fvcore": round(s.gmacs_fvcore, 4),
                "ratio_conv_fc": round(s.gmacs / r.paper_gflops, 4),
                "paper_params_m": "" if r.paper_params_m is None else r.paper_params_m,
                "ours_params_m": round(s.params / 1e6, 3),
                "paper_atfr_gflops": r.paper_atfr_gflops,
                "atfr_layers": " / ".join(atfr.sgs_layer_names()),
                "implied_mean_bins": " / ".join(f"{b:.2f}" for b in bins),
                "num_bins": " / ".join(str(b) for b in cost.num_bins),
                "implied_fraction_kept": round(frac, 4),
                "note": r.note,
            }
        )
    return rows


def write_paper_baselines(out_dir: str | Path, progress: bool = False) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = paper_baselines(progress=progress)
    csv_path = out_dir / "paper_baselines.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = [
        "# The paper's baseline rows, reproduced",
        "",
        "Generated by `atfr paper-baselines` (do not edit by hand; `tests/test_paper_baselines.py` checks that",
        "this file is what the command produces). GFLOPs are GMACs: one multiply-add counts as one flop, as in",
        "fvcore, PySlowFast, mmaction2 and the paper. Batch 1, one view, eval mode.",
        "",
        "* **conv_fc**: fvcore's count without normalisation layers (convolutions + linear layers): the",
        "  convention that reproduces the paper.",
        "* **fvcore**: fvcore's default count, BatchNorm included.",
        "",
        "| paper row | our model | input | paper GFLOPs | ours conv_fc | ours fvcore | ratio | paper params (M) | ours "
        "params (M) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['row']} | `{r['model']}` | {r['input']}, {r['num_classes']} classes | {r['paper_gflops']} | "
            f"{r['ours_conv_fc']:.2f} | {r['ours_fvcore']:.2f} | {r['ratio_conv_fc']:.3f} | "
            f"{r['paper_params_m'] or '-'} | {r['ours_params_m']:.2f} |"
        )
    md += ["", "Where ours and the paper differ:", ""]
    md += [f"* {r['row']}: {r['note']}." for r in rows]
    md += [
        "",
        "## What the paper's +ATFR GFLOPs mean in bins",
        "",
        "The mean number of active bins B' per SGS layer at which our `_atfr` model costs what the paper's",
        "+ATFR row reports (SGS after res2, B = T at its input). For SlowFast (two SGS layers) we assume",
        "both pathways keep the same fraction of their bins. Read off the measured cost curve",
        "(`atfr flops MODEL_atfr --curve`), interpolated linearly between integer B'.",
        "",
        "| paper row | paper +ATFR GFLOPs | SGS layer(s) | B | implied mean B' | fraction of bins kept |",
        "|---|---:|---|---|---|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['row']} | {r['paper_atfr_gflops']} | {r['atfr_layers']} | {r['num_bins']} | "
            f"{r['implied_mean_bins']} | {100 * r['implied_fraction_kept']:.1f}% |"
        )
    md.append("")
    md_path = out_dir / "paper_baselines.md"
    md_path.write_text("\n".join(md))
    return md_path, csv_path

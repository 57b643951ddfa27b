"""The figure of ``atfr explain`` (:mod:`atfr_analysis.analysis.explain`), drawn from its JSON.

Top to bottom: the detailed view's film strip (the sampled frames, with one row of bin cells per
SGS layer under them), one panel per SGS layer with each step's rescaled distance ``Delta'_t``
against the bin edges, and the bins' spans over all views of the video (which source frames each
active bin merges), with each view's ``B'`` and GMACs. A bin has the same colour everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_explain", "bin_colours"]


def bin_colours(num_bins: int) -> list:
    """One colour per bin index: qualitative, so that neighbouring bins differ (``tab10`` up to 10
    bins, else ``tab20``'s dark shades then its light ones, cycled past 20 bins; the figure also
    prints every bin's number)."""
    import matplotlib

    if num_bins <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(i) for i in range(num_bins)]
    cmap = matplotlib.colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(num_bins)]


def _layout(n_views: int, nl: int, t: int):
    """The figure and its panels' rectangles (figure fractions): film strip, one per layer, spans."""
    import matplotlib.pyplot as plt

    left, right = (2.6 if nl > 1 else 1.9), 0.7
    width = float(np.clip(0.62 * t + left + right, 10.0, 20.0))
    per_frame = (width - left - right) / t
    row_h = 0.42
    strip_units = 1.25 + nl * row_h + 0.02  # the strip's y range in data units (1 = a thumbnail)
    span_rows = n_views * nl
    # the panels top to bottom, in inches: (space above, axis height, space below)
    boxes = [(0.75, per_frame * strip_units, 0.25)]
    boxes += [(0.35, 2.0, 0.5)] * nl
    boxes += [(0.35, float(np.clip(0.2 + 0.55 * span_rows, 1.4, 12.0)), 0.5)]
    height = sum(sum(bx) for bx in boxes) + 0.1
    fig = plt.figure(figsize=(width, height))
    axes_at, y = [], height
    for above, h, below in boxes:
        y -= above + h
        axes_at.append([left / width, y / height, (width - left - right) / width, h / height])
        y -= below
    return fig, axes_at, height


def _film_strip(fig, box, result: dict, d: dict, thumbnails, colours, nl: int, t: int) -> None:
    """The detailed view's sampled frames, with one row of bin cells per SGS layer under them."""
    from matplotlib.patches import Rectangle

    row_h = 0.42
    ax = fig.add_axes(box)
    if thumbnails is not None:
        thumbs = np.asarray(thumbnails, dtype=np.float32)
        for i in range(min(t, len(thumbs))):
            ax.imshow(thumbs[i], extent=(i + 0.04, i + 0.96, 0.0, 0.92), interpolation="nearest", zorder=1)
    else:
        for i in range(t):
            ax.add_patch(Rectangle((i + 0.04, 0.0), 0.92, 0.92, facecolor="0.9", edgecolor="0.6", lw=0.5))
    for i, f in enumerate(d["frame_indices"]):
        ax.text(i + 0.5, 0.97, str(f), ha="center", va="bottom", fontsize=8)
    ax.text(-0.08, 0.97, "frame", ha="right", va="bottom", fontsize=8)
    for li, lay in enumerate(d["layers"]):
        y0 = -(li + 1) * row_h
        for s in lay["steps"]:
            b = s["bin"]
            for q in s["clip_positions"]:
                fc = colours[b] if b is not None else "white"
                ax.add_patch(
                    Rectangle((q + 0.04, y0 + 0.04), 0.92, row_h - 0.08, facecolor=fc, edgecolor="0.3", lw=0.5)
                )
                ax.text(
                    q + 0.5,
                    y0 + row_h / 2,
                    "-" if b is None else str(b),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if b is not None else "black",
                    fontweight="bold",
                )
        ax.text(-0.08, y0 + row_h / 2, f"bin @ {lay['name']}", ha="right", va="center", fontsize=8)
    ax.set_xlim(0, t)
    ax.set_ylim(-nl * row_h - 0.02, 1.25)  # square thumbnails: the axis is per_frame * strip_units high
    ax.axis("off")
    ax.set_title(
        f"view {d['view']} of {result['num_views']} (temporal {d['temporal_index']}, crop {d['spatial_index']}): "
        f"its {t} sampled frames and the bin each falls into",
        fontsize=10,
        loc="left",
    )


def _distance_panel(fig, box, info: dict, lay: dict, colours, t: int) -> None:
    """One SGS layer's rescaled distances per step against its bin edges."""
    ax = fig.add_axes(box)
    b = lay["num_bins"]
    edges = lay["bin_edges"]
    for i in lay["active_bin_ids"]:
        ax.axhspan(edges[i], edges[i + 1], color=colours[i], alpha=0.18, lw=0)
    for e in edges:
        ax.axhline(e, color="0.75", lw=0.5, zorder=0)
    xs = [np.mean(s["clip_positions"]) + 0.5 for s in lay["steps"]]
    ys = [s["delta_scaled"] for s in lay["steps"]]
    ax.plot(xs, ys, color="0.5", lw=0.8, zorder=1)
    for x, y, s in zip(xs, ys, lay["steps"]):
        c = colours[s["bin"]] if s["bin"] is not None else "white"
        ax.scatter([x], [y], s=36, color=c, edgecolor="black", lw=0.6, zorder=3)
    ax.set_xlim(0, t)
    ax.set_ylim(-0.04 * edges[-1], edges[-1] * 1.06)
    ax.set_xticks([i + 0.5 for i in range(t)], [str(i) for i in range(t)], fontsize=7)
    ax.set_xlabel("position in the clip (the film strip's columns)", fontsize=8)
    ax.set_ylabel("Δ'_t (rescaled, 0 to 2B)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    dmax = max(s["delta"] for s in lay["steps"])
    if dmax > 0 and edges[-1] > 0:
        k = dmax / edges[-1]
        sec = ax.secondary_yaxis("right", functions=(lambda y, k=k: y * k, lambda y, k=k: y / k))
        sec.set_ylabel("Δ_t", fontsize=8)
        sec.tick_params(labelsize=7)
    ax.set_title(
        f"{info['name']} (pathway {info['pathway']}, {info['feature_frames']} steps, temporal stride "
        f"{info['temporal_stride']}, {info['kernel']} kernel, {info['distance']}): "
        f"B' = {lay['active_bins']} of {b} bins active; lines: bin edges, bands: active bins",
        fontsize=9,
        loc="left",
    )


def _spans_panel(fig, box, views: list, d: dict, colours, nl: int) -> None:
    """The bins' spans over every view of the video: the source frames each active bin merges."""
    ax = fig.add_axes(box)
    all_frames = [f for v in views for f in v["frame_indices"]]
    lo, hi = min(all_frames), max(all_frames)
    labels, ticks = [], []
    row = 0
    for v in views:
        for li, lay in enumerate(v["layers"]):
            y = -row
            nb = max(len(lay["bins"]), 1)
            for r, bn in enumerate(lay["bins"]):
                if not bn["source_frames"]:
                    continue
                off = 0.0 if nb == 1 else 0.32 - 0.64 * r / (nb - 1)
                c = colours[bn["bin"]]
                a, z = bn["span"]
                ax.plot([a, z], [y + off, y + off], color=c, lw=2.2, solid_capstyle="butt", zorder=2)
                ax.scatter(
                    bn["source_frames"],
                    [y + off] * len(bn["source_frames"]),
                    s=14,
                    color=c,
                    edgecolor="black",
                    lw=0.4,
                    zorder=3,
                )
                ax.text(z + 0.15, y + off, str(bn["bin"]), ha="left", va="center", fontsize=7, color="0.25")
            name = f"view {v['view']}" + (" (shown)" if v["view"] == d["view"] else "")
            if nl > 1:
                name += f"\n{lay['name']}"
            name += f"\nB' = {lay['active_bins']}"
            if li == nl - 1:
                name += f", {v['gmacs']:.4f} GMACs"
            labels.append(name)
            ticks.append(y)
            row += 1
    ax.set_yticks(ticks, labels, fontsize=7.5)
    ax.set_ylim(-row + 0.5, 0.5)
    ax.set_xlim(lo - 0.7, hi + 0.7)
    ax.set_xlabel("source frame of the video", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", color="0.9", lw=0.5)
    ax.set_title(
        "bins' spans over the video's views: the source frames each active bin merges (one colour per bin)",
        fontsize=9,
        loc="left",
    )


def plot_explain(result: dict, path: str | Path, thumbnails=None, dpi: int = 100) -> Path:
    """Draw ``result`` (``explain_model``'s dict) into the PNG ``path``; ``thumbnails``: the
    detailed view's frames ``[T, S, S, 3]`` in ``[0, 1]`` (``None``: cells without images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    views = result["views"]
    d = views[result["detail_view"]]
    layers = result["layers"]
    nl = len(layers)
    t = len(d["frame_indices"])
    colours = bin_colours(max(li["num_bins"] for li in layers))
    fig, axes_at, height = _layout(len(views), nl, t)
    _film_strip(fig, axes_at[0], result, d, thumbnails, colours, nl, t)
    for li, (info, lay) in enumerate(zip(layers, d["layers"])):
        _distance_panel(fig, axes_at[1 + li], info, lay, colours, t)
    _spans_panel(fig, axes_at[-1], views, d, colours, nl)

    vid = result.get("video", {})
    g = d["gmacs"]
    fig.suptitle(
        f"atfr explain: {result.get('model')} on {vid.get('path', '?')} ({vid.get('num_frames')} frames)   "
        f"view {d['view']}: B' = {', '.join(map(str, d['signature']))}, {g:.4f} GMACs "
        f"({100 * g / result['gmacs_all_bins']:.1f}% of {result['gmacs_all_bins']:.4f} at all bins)",
        fontsize=10,
        x=0.01,
        y=1 - 0.15 / height,
        ha="left",
        va="top",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return path

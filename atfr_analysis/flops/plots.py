"""Plot of an ATFR model's cost over its active bins (``atfr flops MODEL_atfr --curve --plot``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_cost_curve"]


def plot_cost_curve(summary, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(summary.bins)
    xs = [pt["bins"][layers[-1]] for pt in summary.curve]
    ys = [pt["gmacs"] for pt in summary.curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, ys, marker="o", ms=3, label=f"{summary.model} (SGS)")
    ax.axhline(summary.static_gmacs, color="k", ls="--", lw=1, label="static backbone (no SGS)")
    label = f"active bins B' of {layers[-1]} (of {summary.num_bins[layers[-1]]})"
    if len(layers) > 1:
        label += "; other layers keep the same fraction"
    ax.set_xlabel(label)
    ax.set_ylabel("GMACs per view (conv_fc)")
    ax.set_title(f"{summary.model}: cost over active bins, input {'+'.join(map(str, summary.frames))}x{summary.crop}²")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

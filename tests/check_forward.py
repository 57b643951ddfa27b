"""Compare our models with upstream's recorded forward passes (``shared/fixtures/pyslowfast_forward``).

Rebuilds the weights and the input of each fixture from the recipe of that folder's README (one
generator per state-dict key, seeded with the CRC-32 of the key; a seeded ``torch.rand`` input),
runs the model in eval mode on CPU in fp32, and compares the head's projection output per
position (``logits``), the model's output and, for ATFR models, the active bins of each SGS layer.

A fixture matches when ``max |ours - ref| <= 1e-4 * max |ref|`` for ``logits`` and ``output``
separately and the bins are equal. Run as a script::

    python tests/check_forward.py ../shared/fixtures/pyslowfast_forward [...]

Imports only torch, atfr_analysis and the standard library.
"""

from __future__ import annotations

import math
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from atfr_analysis.models import build_model

#: relative tolerance of the README: max |ours - ref| <= REL_TOL * max |ref|
REL_TOL = 1e-4


def recipe_tensor(key: str, value: torch.Tensor) -> torch.Tensor:
    """The README's deterministic value of one state-dict entry."""
    if key.endswith("num_batches_tracked"):
        return value
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    shape = tuple(value.shape)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    if value.dim() == 1:
        return 1 + 0.1 * torch.randn(shape, generator=g)
    fan_in = value.numel() // shape[0]
    return torch.randn(shape, generator=g) * math.sqrt(1 / fan_in)


def recipe_state_dict(model: torch.nn.Module, classifier_gain: float = 1.0) -> dict[str, torch.Tensor]:
    sd = {k: recipe_tensor(k, v) for k, v in model.state_dict().items()}
    sd["head.projection.weight"] = sd["head.projection.weight"] * classifier_gain
    return sd


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def build_fixture_model(fx: dict) -> torch.nn.Module:
    kwargs = {k: _tuples(v) for k, v in (fx.get("build_kwargs") or {}).items()}
    model = build_model(fx["model"], num_classes=fx["num_classes"], **kwargs)
    model.load_state_dict(recipe_state_dict(model, float(fx["classifier_gain"])), strict=True)
    return model.eval()


def fixture_input(fx: dict) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(int(fx["input_seed"]))
    x = torch.rand(tuple(fx["input_shapes"][-1]), generator=g)
    if fx.get("slow_index") is None:
        return [x]
    return [x.index_select(2, fx["slow_index"]), x]


def slow_index(t: int, alpha: int) -> torch.Tensor:
    """PySlowFast's ``pack_pathway_output``: a truncated ``linspace`` over the fast frames."""
    return torch.linspace(0, t - 1, t // alpha).long()


@dataclass
class ForwardCheck:
    name: str
    logits_rel: float
    output_rel: float
    bins: dict[str, list[int]] | None
    ref_bins: dict[str, list[int]] | None

    @property
    def ok(self) -> bool:
        return self.logits_rel <= REL_TOL and self.output_rel <= REL_TOL and self.bins == self.ref_bins

    def line(self) -> str:
        verdict = "match" if self.ok else "DIFFER"
        bins = "" if self.ref_bins is None else f", bins {self.bins} (upstream {self.ref_bins})"
        return f"{self.name}: {verdict}: logits {self.logits_rel:.2e}, output {self.output_rel:.2e} relative{bins}"


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    if ours.shape != ref.shape:
        return math.inf
    return float((ours - ref).abs().max() / ref.abs().max())


def check_fixture(path: str | Path) -> ForwardCheck:
    fx = torch.load(path, weights_only=True)
    model = build_fixture_model(fx)
    xs = fixture_input(fx)
    logits: list[torch.Tensor] = []
    hook = model.head.projection.register_forward_hook(lambda _m, _i, out: logits.append(out))
    try:
        with torch.no_grad():
            step = model.atfr_step(xs)
    finally:
        hook.remove()
    bins = None
    if fx.get("bins") is not None:
        names = model.sgs_layer_names()
        bins = {name: step.signatures[:, j].tolist() for j, name in enumerate(names)}
        # upstream's layer order
        bins = {name: bins.get(name) for name in fx["bins_layers"]} if set(names) == set(fx["bins_layers"]) else bins
    (lg,) = logits
    if lg.dim() == 2:  # a head without positions
        lg = lg.reshape(lg.shape[0], 1, 1, 1, -1)
    return ForwardCheck(Path(path).stem, _rel(lg, fx["logits"]), _rel(step.scores, fx["output"]), bins, fx.get("bins"))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_forward.py FIXTURE_DIR_OR_FILE [...]", file=sys.stderr)
        return 2
    paths: list[Path] = []
    for a in argv:
        p = Path(a)
        paths.extend(sorted(p.glob("*.pt")) if p.is_dir() else [p])
    results = [check_fixture(p) for p in paths]
    for r in results:
        print(r.line())
    good = sum(r.ok for r in results)
    print(f"{good}/{len(results)} models match upstream")
    return 0 if results and good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

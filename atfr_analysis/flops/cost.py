"""Exact per-clip dynamic GMACs of ATFR models without re-tracing every clip.

The cost of one clip through an ATFR model depends only on the input size and on its
*signature*: the tuple of active bins B' of every SGS layer. ``CostModel`` counts the model in
three kinds of parts, each once, with one of two backends (``backend=``):

* ``"meta"`` (default): the part runs on the ``meta`` device, nothing computed
  (:mod:`atfr_analysis.flops.meta`); the SGS layer, which reads values, runs on zeros on the CPU
  with a zero-weight copy of the layer (``B`` cases per layer);
* ``"fvcore"``: fvcore's trace of each part on zeros (the reference; runs the part).

The parts:

* ``pre``: everything before the SGS layers (one trace per input size);
* ``sgs[l](B')``: SGS layer ``l`` run with ``force_bins=B'`` (same op sequence as a real clip with
  B' active bins: MLP, BN, distances, kernel, compaction, the aggregation ``bmm``);
* ``post(signature)``: everything after SGS, on zero tensors of the post-SGS shapes.

A clip's count is the sum of its parts. Since both backends count by operator shapes only, this
sum equals a direct fvcore trace of the whole model on that clip alone (tested: exact integers).
After warm-up, ``gmacs(signature)`` is a dictionary look-up.

``cache=CostCache(...)`` (:mod:`atfr_analysis.flops.cache`) keeps each part's totals on disk, so
that another process, rank, shard or a resumed run counts nothing it finds there;
``stats`` says how many parts were computed and how many loaded. ``cross_check(k)`` counts the
first ``k`` signatures again with fvcore and returns the comparison (for ``run.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.flops.count import FlopCount, count_flops
from atfr_analysis.models.base import VideoModel, as_pathways

__all__ = ["CostModel", "static_model", "Signature", "BACKENDS", "backend_version", "EvalMode"]

#: counting backends of ``CostModel``
BACKENDS = ("meta", "fvcore")

Signature = tuple[int, ...]


class _Pre(nn.Module):
    def __init__(self, model: VideoModel):
        super().__init__()
        self.model = model

    def forward(self, xs):
        return tuple(self.model.forward_pre(list(xs)))


class _Post(nn.Module):
    def __init__(self, model: VideoModel):
        super().__init__()
        self.model = model

    def forward(self, feats):
        return self.model.forward_post(list(feats))


class _Forced(nn.Module):
    def __init__(self, layer: nn.Module, bins: int):
        super().__init__()
        self.layer = layer
        self.bins = bins

    def forward(self, x):
        out, mask = self.layer(x[0], force_bins=self.bins)
        return out


def _renamed(fc: FlopCount, prefix_from: str, prefix_to: str) -> FlopCount:
    """Re-root a wrapper's per-module split: ``prefix_from.x`` becomes ``prefix_to.x``, and the
    wrapped module's count is also added to every ancestor of ``prefix_to``."""

    def fix(d: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, v in d.items():
            if k == "":
                out[""] = out.get("", 0) + v
            elif k == prefix_from and not prefix_to:
                continue  # the wrapper's root ("") already holds everything, ops outside the module too
            elif k == prefix_from or k.startswith(prefix_from + "."):
                rest = k[len(prefix_from) + 1 :]
                new = ".".join(p for p in (prefix_to, rest) if p)
                out[new] = out.get(new, 0) + v
        if prefix_to and prefix_from in d:
            parts = prefix_to.split(".")
            for i in range(1, len(parts)):
                anc = ".".join(parts[:i])
                out[anc] = out.get(anc, 0) + d[prefix_from]
        return out

    fc.by_module = fix(fc.by_module)
    fc.by_module_fvcore = fix(fc.by_module_fvcore)
    if prefix_to == "":
        fc.uncalled_modules = [
            m[len(prefix_from) + 1 :] for m in fc.uncalled_modules if m.startswith(prefix_from + ".")
        ]
    return fc


class EvalMode:
    """Context: model in eval mode (the counting convention), restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def static_model(model: VideoModel) -> VideoModel:
    """The same backbone without SGS (same config, ``sgs=False``), random weights. A model that is
    not cut at its SGS layers (one's own): a copy with each SGS layer passing its input through
    (:func:`atfr_analysis.sgs.tap.without_sgs`)."""
    from atfr_analysis.models.base import is_split_model
    from atfr_analysis.models.registry import get_entry

    if not is_split_model(model):
        from atfr_analysis.sgs.tap import without_sgs

        return without_sgs(model)

    cfg = model.config
    if cfg is None or not hasattr(cfg, "sgs"):
        raise ValueError("static_model needs a model built by build_model (with a config)")
    p = next(model.parameters(), None)
    with torch.device("meta") if p is not None and p.is_meta else _nullcontext():  # a meta model: a meta backbone
        base = get_entry(model.model_name).builder(dataclasses.replace(cfg, sgs=False))
    base.model_name = model.model_name.removesuffix("_atfr")
    base.config = dataclasses.replace(cfg, sgs=False)
    return base


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def backend_version(backend: str) -> str:
    """The counter's version string (part of the cache key)."""
    if backend == "meta":
        from atfr_analysis.flops.meta import META_COUNTER_VERSION

        return f"meta-{META_COUNTER_VERSION}/torch-{torch.__version__}"
    if backend == "fvcore":
        from importlib.metadata import version

        return f"fvcore-{version('fvcore')}/torch-{torch.__version__}"
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _sgs_clone(layer: nn.Module) -> nn.Module:
    """A CPU copy of an SGS layer with zero weights (BN: mean 0, var 1), for counting on zeros.
    The count depends on shapes only; the copy keeps the model (and its device) untouched."""
    memo: dict[int, Any] = {}
    for attr in ("last_active_bins",):
        v = getattr(layer, attr, None)
        if v is not None:
            memo[id(v)] = None
    clone = copy.deepcopy(layer, memo)
    clone.to_empty(device="cpu")
    with torch.no_grad():
        for p in clone.parameters():
            p.zero_()
        for name, b in clone.named_buffers():
            b.fill_(1 if name.endswith("running_var") else 0)
    return clone.eval()


def _totals(fc: FlopCount) -> dict:
    return {"conv_fc": int(fc.count_conv_fc), "fvcore": int(fc.count_fvcore), "by_operator": dict(fc.by_operator)}


class CostModel:
    """Per-signature cost cache of one model at one input size (batch 1, eval mode).

    ``input_shapes``: the shapes of one clip's pathway tensors, with or without the leading
    batch dimension (``[(3, T, S, S)]`` or ``[(1, 3, T, S, S)]``).
    ``backend``: ``"meta"`` (default; the model may live on the ``meta`` device) or ``"fvcore"``
    (the reference; needs real weights). ``cache``: a :class:`~atfr_analysis.flops.cache.CostCache`
    for the parts' totals (None: this process only).

    ``stats``: ``computed`` (parts counted by the backend), ``loaded`` (parts read from the cache),
    ``fallbacks`` (parts the meta counter refused, counted with fvcore).
    """

    def __init__(self, model: VideoModel, input_shapes: Sequence[Sequence[int]], backend: str = "meta", cache=None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model = model
        self.backend = backend
        self.cache = cache
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        self.input_shapes = [s if len(s) == 5 else (1,) + s for s in shapes]
        if any(s[0] != 1 for s in self.input_shapes):
            raise ValueError("CostModel counts one clip: batch dimension must be 1")
        self.layer_names = model.sgs_layer_names() if isinstance(model, VideoModel) else []
        self._pre: FlopCount | None = None
        self._feat_shapes: list[tuple[int, ...]] | None = None
        self._sgs: dict[tuple[int, int], FlopCount] = {}
        self._post: dict[Signature, Any] = {}  # signature -> totals of the post part (counted or loaded)
        self._parts: dict[tuple, FlopCount] = {}  # full counts (per-module split), this process
        self._part_totals: dict[tuple, dict] = {}
        self._full: dict[Signature, FlopCount] = {}
        self._gmacs: dict[Signature, tuple[float, float]] = {}
        self._static: FlopCount | None = None
        self._sgs_layers: dict[int, nn.Module] = {}
        self._base_key: dict | None = None
        self.signatures_seen: list[Signature] = []
        self.stats = {"computed": 0, "loaded": 0, "fallbacks": 0, "seconds_computing": 0.0}

    # ------------------------------------------------------------------ helpers
    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _zeros(self, shape) -> torch.Tensor:
        p = self._param()
        return torch.zeros(shape, dtype=p.dtype, device=p.device)

    @property
    def is_dynamic(self) -> bool:
        return bool(self.layer_names)

    def cache_key(self, part: tuple) -> dict:
        """The cache key of one part: everything its count depends on."""
        if self._base_key is None:
            from atfr_analysis.flops.cache import code_fingerprint

            m = self.model
            cfg = m.config
            cfg = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
            h = hashlib.sha256()
            for name, t in itertools.chain(m.named_parameters(), m.named_buffers()):
                h.update(f"{name}:{tuple(t.shape)};".encode())
            import inspect

            try:
                extra = [inspect.getfile(type(m))]
            except (TypeError, OSError):
                extra = []
            self._base_key = {
                "model": getattr(m, "model_name", "") or type(m).__name__,
                "class": f"{type(m).__module__}.{type(m).__qualname__}",
                "config": cfg,
                "tensors": h.hexdigest()[:16],
                "code": code_fingerprint(extra),
                "input_shapes": [list(s) for s in self.input_shapes],
                "conventions": ["conv_fc", "fvcore"],
                "backend": self.backend,
                "counter": backend_version(self.backend),
            }
        key = dict(self._base_key)
        key["part"] = part[0]
        key["signature"] = list(part[1:])
        return key

    def _count(self, module: nn.Module, inputs, real_module: nn.Module | None = None, real_inputs=None) -> FlopCount:
        """One part with the backend (the meta counter falls back to fvcore where it refuses)."""
        t = time.perf_counter()
        try:
            if self.backend == "meta":
                from atfr_analysis.flops.meta import MetaUnsupported, count_meta

                try:
                    if real_module is not None:
                        return count_meta(real_module, real_inputs, real=True)
                    return count_meta(module, inputs)
                except MetaUnsupported:
                    self.stats["fallbacks"] += 1
            if real_module is not None and self.backend == "meta":
                return count_flops(real_module, real_inputs)
            return count_flops(module, [x if not x.is_meta else torch.zeros(x.shape, dtype=x.dtype) for x in inputs])
        finally:
            self.stats["computed"] += 1
            self.stats["seconds_computing"] += time.perf_counter() - t

    def _inputs(self, shapes) -> list[torch.Tensor]:
        if self.backend == "meta":
            p = self._param()
            return [torch.empty(s, dtype=p.dtype, device="meta") for s in shapes]
        return [self._zeros(s) for s in shapes]

    def _load(self, part: tuple) -> dict | None:
        if part in self._part_totals:
            return self._part_totals[part]
        if self.cache is None:
            return None
        value = self.cache.get(self.cache_key(part))
        if value is not None:
            self._part_totals[part] = value
            self.stats["loaded"] += 1
        return value

    def _store(self, part: tuple, fc: FlopCount, extra: dict | None = None) -> dict:
        value = _totals(fc)
        if extra:
            value.update(extra)
        self._parts[part] = fc
        self._part_totals[part] = value
        if self.cache is not None:
            self.cache.put(self.cache_key(part), value)
        return value

    # ------------------------------------------------------------------ parts
    def _count_pre(self) -> FlopCount:
        from atfr_analysis.flops.meta import run_on_meta

        with EvalMode(self.model), torch.no_grad():
            if self.backend == "meta":
                t = time.perf_counter()
                try:
                    fc, feats = run_on_meta(_Pre(self.model), self._inputs(self.input_shapes))
                finally:
                    self.stats["computed"] += 1
                    self.stats["seconds_computing"] += time.perf_counter() - t
                self._feat_shapes = [tuple(f.shape) for f in feats]
            else:
                xs = self._inputs(self.input_shapes)
                self._feat_shapes = [tuple(f.shape) for f in self.model.forward_pre(xs)]
                fc = self._count(_Pre(self.model), xs)
        fc = _renamed(fc, "model", "")
        # the post part's modules are not called before SGS: not "uncalled" for the whole
        fc.uncalled_modules = []
        return fc

    def _ensure_pre(self) -> None:
        if self._feat_shapes is not None:
            return
        hit = self._load(("pre",))
        if hit is not None and "feat_shapes" in hit:
            self._feat_shapes = [tuple(s) for s in hit["feat_shapes"]]
            return
        self._pre = self._count_pre()
        self._store(("pre",), self._pre, {"feat_shapes": [list(s) for s in self._feat_shapes]})

    def _pre_full(self) -> FlopCount:
        if self._pre is None:
            self._pre = self._count_pre()
        return self._pre

    def _count_sgs(self, i: int, bins: int) -> FlopCount:
        self._ensure_pre()
        layer = self.model.sgs_layers()[i]
        if self.backend == "meta":
            clone = self._sgs_layers.get(i)
            if clone is None:
                clone = self._sgs_layers[i] = _sgs_clone(layer)
            x = torch.zeros(self._feat_shapes[i], dtype=torch.float32)
            fc = self._count(None, None, real_module=_Forced(clone, bins), real_inputs=[x])
        else:
            x = self._zeros(self._feat_shapes[i])
            with EvalMode(layer):
                fc = self._count(_Forced(layer, bins), [x])
        fc = _renamed(fc, "layer", self.layer_names[i])
        fc.uncalled_modules = []
        return fc

    def _sgs_cost(self, i: int, bins: int) -> FlopCount:
        key = (i, bins)
        if key not in self._sgs:
            self._sgs[key] = self._count_sgs(i, bins)
            if ("sgs", i, bins) not in self._part_totals:
                self._store(("sgs", i, bins), self._sgs[key])
        return self._sgs[key]

    def _count_post(self, sig: Signature) -> FlopCount:
        self._ensure_pre()
        shapes = [(n, c, b, h, w) for (n, c, _t, h, w), b in zip(self._feat_shapes, sig)]
        with EvalMode(self.model):
            fc = _renamed(self._count(_Post(self.model), self._inputs(shapes)), "model", "")
        fc.uncalled_modules = []  # modules before SGS are not called here, by design
        return fc

    def _post_cost(self, sig: Signature) -> FlopCount:
        part = ("post",) + tuple(sig)
        fc = self._parts.get(part)
        if fc is None:
            fc = self._count_post(sig)
            if part in self._part_totals:
                self._parts[part] = fc
            else:
                self._store(part, fc)
            self._post[sig] = self._part_totals[part]
        return fc

    def _part(self, part: tuple) -> dict:
        """Totals of one part: memory, then the cache, then the backend."""
        hit = self._load(part)
        if hit is not None:
            if part[0] == "post":
                self._post[tuple(part[1:])] = hit
            return hit
        if part[0] == "pre":
            self._ensure_pre()
            return self._part_totals[part]
        if part[0] == "sgs":
            self._sgs_cost(part[1], part[2])
        elif part[0] == "post":
            self._post_cost(tuple(part[1:]))
        elif part[0] == "static":
            self.static()
        return self._part_totals[part]

    @property
    def num_bins(self) -> list[int]:
        """B of each SGS layer (its input length when ``num_bins`` is None)."""
        self._ensure_pre()
        out = []
        for layer, shape in zip(self.model.sgs_layers(), self._feat_shapes):
            out.append(int(layer.num_bins) if getattr(layer, "num_bins", None) else int(shape[2]))
        return out

    def check_signature(self, sig: Iterable[int]) -> Signature:
        sig = tuple(int(b) for b in sig)
        bins = self.num_bins
        if len(sig) != len(bins):
            raise InputError(
                f"signature needs {len(bins)} value(s) (one per SGS layer: {', '.join(self.layer_names)}), "
                f"got {len(sig)}"
            )
        for name, b, B in zip(self.layer_names, sig, bins):
            if not 1 <= b <= B:
                raise InputError(f"active bins of {name} must be in 1..{B}, got {b}")
        return sig

    # ------------------------------------------------------------------ public
    def cost(self, sig: Iterable[int] = ()) -> FlopCount:
        """Full FlopCount (both conventions, per-module split) of a clip with this signature.
        Counted in this process (the disk cache holds totals only)."""
        if not self.is_dynamic:
            return self.static()
        sig = self.check_signature(sig)
        if sig not in self._full:
            total = self._pre_full()
            for i, b in enumerate(sig):
                total = total + self._sgs_cost(i, b)
            self._full[sig] = total + self._post_cost(sig)
        return self._full[sig]

    def pre_cost(self) -> FlopCount:
        """FlopCount of the part before SGS, which every signature shares (counted in this process)."""
        return self._pre_full()

    def post_cost(self, sig: Iterable[int]) -> FlopCount:
        """FlopCount of the part after SGS at the signature ``sig`` (counted in this process)."""
        return self._post_cost(self.check_signature(sig))

    def exact_counts(self, sig: Iterable[int] = ()) -> tuple[int, int]:
        """``(conv_fc, fvcore)`` MACs of a clip with this signature, as exact integers (cache-backed)."""
        if not self.is_dynamic:
            v = self._part(("static",))
            return int(v["conv_fc"]), int(v["fvcore"])
        sig = self.check_signature(sig)
        parts = [("pre",)] + [("sgs", i, b) for i, b in enumerate(sig)] + [("post",) + sig]
        vals = [self._part(p) for p in parts]
        return sum(int(v["conv_fc"]) for v in vals), sum(int(v["fvcore"]) for v in vals)

    def gmacs(self, sig: Iterable[int] = ()) -> tuple[float, float]:
        """``(conv_fc, fvcore)`` GMACs of a clip with this signature (cached look-up)."""
        sig = tuple(sig)
        hit = self._gmacs.get(sig)
        if hit is None:
            a, b = self.exact_counts(sig)
            hit = self._gmacs[sig] = (a / 1e9, b / 1e9)
            self.signatures_seen.append(sig)
        return hit

    def static(self) -> FlopCount:
        """Cost of one clip through the model as it is traced directly (baselines: the model)."""
        if self._static is None:
            with EvalMode(self.model):
                self._static = self._count(self.model, self._inputs(self.input_shapes))
            if ("static",) not in self._part_totals:
                self._store(("static",), self._static)
        return self._static

    def static_gmacs(self) -> tuple[float, float]:
        """``(conv_fc, fvcore)`` GMACs of the model traced directly (cache-backed)."""
        v = self._part(("static",))
        return int(v["conv_fc"]) / 1e9, int(v["fvcore"]) / 1e9

    def grid(self, max_points: int = 64) -> list[Signature]:
        """The signatures of ``curve``."""
        bins = self.num_bins
        grid = list(itertools.product(*[range(1, b + 1) for b in bins]))
        if len(grid) > max_points:
            steps = max(bins)
            grid = sorted({tuple(max(1, -(-k * b // steps)) for b in bins) for k in range(1, steps + 1)})
        return grid

    def curve(self, max_points: int = 64) -> list[tuple[Signature, float, float]]:
        """GMACs over B'. One layer: every B' in 1..B. Several layers: the full grid when it has
        at most ``max_points`` points, else the diagonal where every layer keeps the same
        fraction of its bins (B'_l = ceil(f * B_l) for f = k / max(B))."""
        return [(sig, *self.gmacs(sig)) for sig in self.grid(max_points)]

    def _reference(self) -> CostModel:
        """The same model counted with fvcore (the reference of ``cross_check``)."""
        return CostModel(self.model, self.input_shapes, backend="fvcore")

    def cross_check(self, k: int = 8, signatures: Iterable[Iterable[int]] | None = None) -> dict:
        """Count the first ``k`` signatures (default: the first ones this model was asked for, in
        order; none asked: the diagonal of ``curve``) again with fvcore and compare exactly.

        Returns a JSON-able dict: ``backend``, ``reference`` ("fvcore"), ``checked``, ``equal``
        (every count identical in both conventions), ``mismatches`` (the signatures that differ),
        ``rows`` (per signature: both counts of both), ``seconds`` (counting time of each backend,
        the reference's parts counted cold). Needs real weights (not a ``meta`` model).
        """
        if self.is_dynamic:
            sigs = (
                [tuple(int(b) for b in s) for s in signatures] if signatures is not None else list(self.signatures_seen)
            )
            if not sigs:
                sigs = self.grid(max_points=1)[::-1]  # the diagonal, every bin active first
        else:
            sigs = [()]
        sigs = sigs[: max(0, int(k))]
        ref = self._reference()
        rows, t_self, t_ref = [], 0.0, 0.0
        for sig in sigs:
            t = time.perf_counter()
            a = self.exact_counts(sig)
            t_self += time.perf_counter() - t
            t = time.perf_counter()
            b = ref.exact_counts(sig)
            t_ref += time.perf_counter() - t
            rows.append(
                {
                    "signature": list(sig),
                    "conv_fc": a[0],
                    "fvcore": a[1],
                    "ref_conv_fc": b[0],
                    "ref_fvcore": b[1],
                    "equal": a == b,
                }
            )
        return {
            "backend": self.backend,
            "counter": backend_version(self.backend),
            "reference": "fvcore",
            "reference_counter": backend_version("fvcore"),
            "checked": len(rows),
            "equal": all(r["equal"] for r in rows),
            "mismatches": [r["signature"] for r in rows if not r["equal"]],
            "rows": rows,
            "seconds": {"backend": round(t_self, 4), "reference": round(t_ref, 4)},
        }


def direct_trace(model: VideoModel, clip: Sequence[torch.Tensor]) -> FlopCount:
    """Reference: one fvcore trace of the whole model on one clip (batch 1, eval mode)."""
    xs = as_pathways(clip)
    with EvalMode(model):
        return count_flops(model, xs)

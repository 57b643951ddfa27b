"""One's own network where a zoo name is accepted: ``package.module:callable``.

``build_model("my_pkg.nets:r2plus1d_sgs")`` (and so ``atfr flops``, ``atfr profile --model``,
``atfr explain --model``, ``atfr train``) imports ``my_pkg.nets``, calls ``r2plus1d_sgs`` (with
``num_classes=`` when it takes that argument, and the caller's keyword changes) and wraps the
``nn.Module`` it returns in a :class:`UserModel`: a ``VideoModel`` that *is* that module (it shares
its submodules, parameters and buffers, so state-dict keys, ``bins.<layer>`` names and module
names are the module's own) and runs its ``forward`` unchanged. Its cost is counted whole, per
signature (:mod:`atfr_analysis.flops.module_cost`), its steps read the SGS layers' bins through
hooks (:mod:`atfr_analysis.sgs.tap`).

The input spec comes from the module: an ``input_spec`` (or ``spec``) attribute that is an
:class:`~atfr_analysis.models.base.InputSpec`, or ``input_spec=`` given by the caller. The module
is called with one tensor ``[N, 3, T, H, W]`` for a one-pathway spec and with the list of pathway
tensors otherwise (``takes_list = True`` on the module: always a list). Its output is taken as
logits (``scores_are_probabilities = True``: probabilities already).

Bad references are one-line :class:`UserModelError` s: no colon, a module that cannot be imported,
a missing attribute, something not callable, a result that is not an ``nn.Module``, no input spec.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from atfr_analysis.errors import InputError
from atfr_analysis.models.base import AtfrStep, InputSpec, VideoModel, as_pathways
from atfr_analysis.sgs.tap import SgsTap, sgs_layer_names

__all__ = [
    "UserConfig",
    "UserModel",
    "UserModelError",
    "build_user_model",
    "is_user_ref",
    "load_callable",
    "module_step",
    "user_entry",
]


def module_step(model: nn.Module, x, batching: str = "exact") -> AtfrStep:
    """One step of any module on a batch ``x`` (a tensor ``[N, ...]`` or a list of them): its
    output, each clip's signature ``[N, L]`` (host) and, in ``"padded"`` batching, the lengths the
    batch ran at. ``"exact"``: clip after clip, each alone."""
    xs = as_pathways(x)
    n = xs[0].shape[0]
    if batching == "exact" and n > 1:
        steps = [
            module_step(model, [t[i : i + 1] for t in xs] if isinstance(x, (list, tuple)) else x[i : i + 1])
            for i in range(n)
        ]
        return AtfrStep(torch.cat([s.scores for s in steps]), torch.cat([s.signatures for s in steps]))
    with SgsTap(model) as tap:
        scores = model(x)
    if not tap.names:
        return AtfrStep(scores, torch.zeros(n, 0, dtype=torch.long))
    sig = tap.signatures()
    return AtfrStep(scores, sig, tap.executed() if n > 1 else None)


class UserModelError(InputError):
    """A ``package.module:callable`` that does not give a usable model (one line)."""


def is_user_ref(name: str) -> bool:
    """``True`` for ``package.module:callable`` (a registry name has no colon)."""
    return isinstance(name, str) and ":" in name


def load_callable(ref: str):
    """The callable ``ref`` names (``package.module:callable``; ``callable`` may be dotted)."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise UserModelError(f"--model {ref!r}: expected a registry name or package.module:callable")
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr:
        raise UserModelError(f"--model {ref!r}: expected package.module:callable (both parts non-empty)")
    if "" not in sys.path and "." not in sys.path:
        sys.path.append("")  # the working directory, as `python -m` has it
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserModelError(f"--model {ref!r}: cannot import {mod_name!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserModelError(f"--model {ref!r}: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserModelError(f"--model {ref!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj


@dataclass(frozen=True)
class UserConfig:
    """What a :class:`UserModel` was built from (kept in checkpoints and ``run.json``)."""

    ref: str
    num_classes: int | None = None  # None: the callable's default
    kwargs: dict = field(default_factory=dict)
    sgs: bool = False


def user_entry(ref: str) -> tuple:
    """``(builder, config, description)`` of the registry entry of ``ref`` (``get_entry`` makes the
    entry): the builder calls the callable with the config's ``num_classes`` and ``kwargs``. The
    callable is imported (a bad reference fails here), not called."""
    fn = load_callable(ref)

    def builder(cfg: UserConfig) -> VideoModel:
        return build_user_model(cfg.ref, num_classes=cfg.num_classes, **cfg.kwargs)

    return builder, UserConfig(ref), (inspect.getdoc(fn) or "").split("\n")[0]


def _call(fn, ref: str, num_classes: int | None, kwargs: dict) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = dict(kwargs)
    if num_classes is not None and ("num_classes" in params or takes_any):
        kw["num_classes"] = num_classes
    bad = sorted(k for k in kwargs if k not in params and not takes_any)
    if bad:
        raise UserModelError(f"--model {ref!r}: the callable takes no argument(s) {', '.join(bad)}")
    net = fn(**kw)
    if not isinstance(net, nn.Module):
        raise UserModelError(f"--model {ref!r} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def _spec_of(net: nn.Module, ref: str, spec: InputSpec | None) -> InputSpec:
    for cand in (spec, getattr(net, "input_spec", None), getattr(net, "spec", None)):
        if isinstance(cand, InputSpec):
            return cand
    raise UserModelError(
        f"--model {ref!r}: the module has no input spec; give it an attribute input_spec = "
        "atfr_analysis.models.InputSpec(frames=(T,), train_crop=S, test_crop=S, sampling_rate=R)"
    )


def build_user_model(
    ref: str, num_classes: int | None = None, input_spec: InputSpec | None = None, **kwargs: Any
) -> VideoModel:
    """Import and call ``ref``; a zoo model it returns is kept as is, any other module wrapped."""
    net = _call(load_callable(ref), ref, num_classes, kwargs)
    if isinstance(net, VideoModel):
        net.model_name = net.model_name or ref
        return net
    return UserModel(net, ref, _spec_of(net, ref, input_spec), kwargs)


class UserModel(VideoModel):
    """A ``VideoModel`` that is the module ``net`` (see the module doc); ``net`` stays usable."""

    family = "user"
    split = False

    def __init__(self, net: nn.Module, ref: str, spec: InputSpec, kwargs: dict | None = None):
        super().__init__(None)
        object.__setattr__(self, "net", net)  # not a submodule: its registries are ours
        self._modules = net._modules
        self._parameters = net._parameters
        self._buffers = net._buffers
        self.spec = spec
        self.model_name = ref
        self.takes_list = bool(getattr(net, "takes_list", spec.num_pathways > 1))
        self.scores_are_probabilities = bool(getattr(net, "scores_are_probabilities", False))
        self.config = UserConfig(ref, self._classes(), dict(kwargs or {}), sgs=bool(sgs_layer_names(net)))
        self.cfg = self.config

    def _classes(self) -> int:
        """The output size, from one forward on the ``meta`` device (every bin kept)."""
        from atfr_analysis.flops.meta import to_meta
        from atfr_analysis.models.base import make_inputs

        state = {k: to_meta(v) for k, v in self.net.state_dict(keep_vars=True).items()}
        xs = to_meta(make_inputs(self.spec))
        was = self.net.training
        try:
            with torch.no_grad(), SgsTap(self.net, force="full"):
                self.net.eval()
                out = torch.func.functional_call(self.net, state, (self._input(xs),), strict=False)
        except Exception as e:  # noqa: BLE001 - any failure of the user's forward is theirs: one line
            raise UserModelError(
                f"--model {self.model_name!r}: its forward fails on the input spec "
                f"{self.spec.label()}: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
            ) from None
        finally:
            self.net.train(was)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise UserModelError(f"--model {self.model_name!r}: its forward must return [N, classes] scores")
        return int(out.shape[1])

    def _input(self, x):
        xs = as_pathways(x)
        return xs if self.takes_list else xs[0]

    def train(self, mode: bool = True) -> UserModel:
        super().train(mode)
        self.net.training = mode
        return self

    def forward(self, x) -> torch.Tensor:
        return self.net(self._input(x))

    def forward_pre(self, xs):
        raise UserModelError(
            f"{self.model_name}: this needs a zoo model cut at its SGS layers (forward_pre / "
            "forward_post); your own model runs whole (profile, flops, train)"
        )

    forward_post = forward_pre

    def atfr_step(self, xs, batching: str | None = None) -> AtfrStep:
        """The module's own forward on the batch, bins read by hooks (``exact``: clip by clip)."""
        from atfr_analysis.models.base import check_batching

        mode = self.batching if batching is None else check_batching(batching)
        return module_step(self, as_pathways(xs), mode)

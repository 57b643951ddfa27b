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

from atfr_analysis.errors import AtfrError, EnvironmentFailure, InputError
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
    "spec_from_options",
    "user_code_error",
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
    try:
        if torch.get_default_device().type == "meta":
            # a builder may compute (a jit.trace, a dummy forward): it runs on the CPU, the module
            # it returns moves to the meta device afterwards (what the caller asked for)
            with torch.device("cpu"):
                net = fn(**kw)
            net = net.to("meta") if isinstance(net, nn.Module) else net
        else:
            net = fn(**kw)
    except Exception as e:  # noqa: BLE001 - whatever the user's builder raises is theirs: one line
        raise user_code_error(f"building {ref}", e) from None
    if not isinstance(net, nn.Module):
        raise UserModelError(f"--model {ref!r} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def user_code_error(doing: str, e: Exception) -> AtfrError:
    """The one line for an exception raised by one's own code (``building pkg.mod:fn failed:
    ValueError: ...``): an OS refusal stays an :class:`EnvironmentFailure` (exit 1), anything else
    is a :class:`UserModelError` (exit 2); never reported as a bug of atfr-analysis."""
    lines = str(e).strip().splitlines()
    msg = f"{doing} failed: {type(e).__name__}" + (f": {lines[0][:200]}" if lines else "")
    if isinstance(e, OSError) or getattr(e, "exit_code", 2) == 1:
        return EnvironmentFailure(msg)
    return UserModelError(msg)


def spec_from_options(
    frames: int | None, crop: int | None, sampling_rate: int | None = None, options: str = "--frames and --crop"
) -> InputSpec | None:
    """The input spec of one's own one-pathway model from the command's options (``--frames``,
    ``--crop``, ``--sampling-rate``, default 1), for a module that has none; ``None`` unless both
    frames and crop are given. ``options`` names them in the error of a module without a spec."""
    if frames is None or crop is None:
        return None
    for name, v in (("--frames", frames), ("--crop", crop), ("--sampling-rate", sampling_rate)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    return InputSpec(frames=(frames,), train_crop=crop, test_crop=crop, sampling_rate=sampling_rate or 1)


def _spec_of(net: nn.Module, ref: str, spec: InputSpec | None, spec_if_none: InputSpec | None) -> InputSpec:
    for cand in (spec, getattr(net, "input_spec", None), getattr(net, "spec", None), spec_if_none):
        if isinstance(cand, InputSpec):
            return cand
    raise UserModelError(
        f"--model {ref!r}: the module has no input spec; give it an attribute input_spec = "
        "atfr_analysis.models.InputSpec(frames=(T,), train_crop=S, test_crop=S, sampling_rate=R) "
        "(atfr flops also takes it from --frames and --crop)"
    )


def build_user_model(
    ref: str,
    num_classes: int | None = None,
    input_spec: InputSpec | None = None,
    spec_if_none: InputSpec | None = None,
    **kwargs: Any,
) -> VideoModel:
    """Import and call ``ref``; a zoo model it returns is kept as is, any other module wrapped.
    Its input spec: ``input_spec``, else the module's own, else ``spec_if_none`` (the command's
    options: :func:`spec_from_options`). The callable runs on the CPU even under a ``meta``
    device context (the module is moved there afterwards); what it raises is reported as its own
    (:func:`user_code_error`)."""
    net = _call(load_callable(ref), ref, num_classes, kwargs)
    if isinstance(net, VideoModel):
        net.model_name = net.model_name or ref
        return net
    return UserModel(net, ref, _spec_of(net, ref, input_spec, spec_if_none), kwargs)


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

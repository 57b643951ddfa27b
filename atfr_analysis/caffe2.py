"""PySlowFast's Caffe2-converted checkpoints (``.pkl``), read without running any code.

PySlowFast publishes its Kinetics Slow 8x8, SlowFast 4x16 and SlowFast 8x8 R50 weights as a
pickle written by Python 2: a dict whose ``blobs`` maps Caffe2 blob names to numpy arrays.

Reading: a restricted unpickler that resolves exactly the three globals such a file needs
(numpy's array reconstructor, ``numpy.ndarray`` and ``numpy.dtype``; also ``_codecs.encode``,
how Python 3 writes bytes in a protocol-2 pickle of a re-saved file); a pickle that would import
anything else is refused with a one-line error naming what it tried to import, before anything
of it runs. Python 2 strings (the arrays' raw bytes) are decoded as latin-1, as upstream does.
Only ``blobs`` is used (other top-level keys are ignored, as upstream does).

Naming (PySlowFast's scheme, in words, see ``caffe2_key``): a blob name is a layer prefix, ``_``,
and a parameter suffix. ``w``/``b`` are a conv or linear ``weight``/``bias``; ``bn_s``, ``bn_b``,
``bn_rm``, ``bn_riv`` are a batch norm's ``weight`` (scale), ``bias``, ``running_mean`` and
``running_var`` (copied as it is, no inversion). A ``t_`` prefix is the fast pathway
(``pathway1``); without it the slow (or only) pathway (``pathway0``). Layers: ``conv1`` /
``res_conv1`` (stem conv / its BN), ``res{i}_{j}_branch2{a,b,c}`` and ``res{i}_{j}_branch1``
(block ``j`` of stage ``i``, its BNs suffixed ``_bn``), the fast-to-slow laterals
``t_pool1_subsample`` (after the stem) and ``t_res{i}_{j}_branch2c_bn_subsample`` (after stage
``i``, the block index ``j`` is ignored), and ``pred`` (the classifier ``head.projection``).

Blobs of the training state (names containing ``momentum``, ``lr`` or ``model_iter``, the
substring test upstream uses) are skipped and recorded. Unlike upstream, which skips any other
unconvertible blob with a warning and loads non-strictly, a blob that follows no rule is refused
here, and the state dict is loaded as strictly as a ``.pyth`` (missing, unexpected and
shape-mismatched keys are refused by ``checkpoint.load_state_into``).
"""

from __future__ import annotations

import codecs
import pickle
import re
from pathlib import Path
from typing import Any

__all__ = [
    "Caffe2Error",
    "ForbiddenGlobal",
    "caffe2_key",
    "is_training_state",
    "read_caffe2_blobs",
    "caffe2_state_dict",
    "RestrictedUnpickler",
]


class Caffe2Error(Exception):
    """Raised inside this module; ``checkpoint.load_checkpoint`` turns it into a ``CheckpointError``."""


class ForbiddenGlobal(Caffe2Error):
    """The pickle would import ``name`` (``module.qualname``): refused before anything runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"it would import {name}")


# ----------------------------------------------------------------------------- unpickling
def _allowed_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:  # numpy >= 2 keeps the implementation in numpy._core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    out: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = _reconstruct
    out[("numpy", "ndarray")] = np.ndarray
    out[("numpy", "dtype")] = np.dtype
    # how Python 3 spells bytes in a protocol-2 pickle (a re-saved file); a pure function
    out[("_codecs", "encode")] = codecs.encode
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays and plain containers only.

    ``find_class`` resolves numpy's array reconstructor, ``numpy.ndarray``, ``numpy.dtype`` and
    ``_codecs.encode`` and refuses every other global (``Caffe2Error`` naming it), so no other callable can be
    reached by ``REDUCE``/``BUILD``; persistent ids are refused too.
    """

    def __init__(self, file, **kw) -> None:
        super().__init__(file, **kw)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's hook
        obj = self._allowed.get((module, name))
        if obj is None:
            raise ForbiddenGlobal(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise Caffe2Error("it uses persistent ids (a torch file?)")


def _restricted_load(f) -> Any:
    return RestrictedUnpickler(f, encoding="latin1").load()


# ----------------------------------------------------------------------------- names
_TRAINING_STATE = ("momentum", "lr", "model_iter")
_BN_SUFFIX = {"bn_s": "weight", "bn_b": "bias", "bn_rm": "running_mean", "bn_riv": "running_var"}
_SUFFIX = {"w": "weight", "b": "bias"}
_BLOCK = re.compile(r"res(?P<i>[2-5])_(?P<j>\d+)_branch(?P<br>1|2[abc])")
_FUSE = re.compile(r"res(?P<i>[2-5])_\d+_branch2c_bn_subsample")


def is_training_state(blob: str) -> bool:
    """Blobs that carry no weight (optimizer momentum, learning rate, iteration): upstream skips
    them silently when their name contains ``momentum``, ``lr`` or ``model_iter``."""
    return any(s in blob for s in _TRAINING_STATE)


def _split(blob: str) -> tuple[str, str, bool] | None:
    """``(layer prefix, torch parameter name, is_bn)`` of a blob name, or ``None``."""
    for suf, param in _BN_SUFFIX.items():
        if blob.endswith("_" + suf):
            return blob[: -len(suf) - 1], param, True
    for suf, param in _SUFFIX.items():
        if blob.endswith("_" + suf):
            return blob[: -len(suf) - 1], param, False
    return None


def caffe2_key(blob: str) -> str | None:
    """The state-dict key of a Caffe2 blob name under PySlowFast's naming, or ``None``."""
    parts = _split(blob)
    if parts is None:
        return None
    layer, param, is_bn = parts
    if layer == "pred":
        return None if is_bn else f"head.projection.{param}"
    fast = layer.startswith("t_")
    if fast:
        layer = layer[2:]
    pw = f"pathway{int(fast)}"
    if layer in ("conv1", "res_conv1"):
        if is_bn != (layer == "res_conv1"):  # conv1_w is the conv, res_conv1_bn_* its BN
            return None
        return f"s1.{pw}_stem.{'bn' if is_bn else 'conv'}.{param}"
    fuse = "bn" if is_bn else "conv_f2s"
    if layer == "pool1_subsample":
        return f"s1_fuse.{fuse}.{param}" if fast else None
    m = _FUSE.fullmatch(layer)
    if m:
        return f"s{m['i']}_fuse.{fuse}.{param}" if fast else None
    m = _BLOCK.fullmatch(layer)
    if m:
        br = m["br"]
        mod = "branch1" if br == "1" else f"branch2.{br[1]}"
        return f"s{m['i']}.{pw}_res{int(m['j'])}.{mod}{'_bn' if is_bn else ''}.{param}"
    return None


# ----------------------------------------------------------------------------- files
def read_caffe2_blobs(path: str | Path) -> dict[str, Any]:
    """The ``blobs`` dict (name -> numpy array) of a Caffe2-converted ``.pkl``.

    Raises ``Caffe2Error`` (one line, without the path) when the pickle would import anything
    but numpy's array pieces, is not a dict with a ``blobs`` dict, or holds a blob that is not a
    numeric numpy array.
    """
    import numpy as np

    with open(path, "rb") as f:
        try:
            obj = _restricted_load(f)
        except Caffe2Error:
            raise
        except Exception as e:  # truncated, not a pickle, ...
            text = " ".join(str(e).split()) or type(e).__name__
            raise Caffe2Error(f"not a readable pickle ({type(e).__name__}: {text[:160]})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("blobs"), dict):
        what = (
            f"a dict without 'blobs' (keys: {', '.join(map(str, list(obj)[:5]))})"
            if isinstance(obj, dict)
            else type(obj).__name__
        )
        raise Caffe2Error(f"not a Caffe2 checkpoint (expected a dict with 'blobs', got {what})")
    blobs: dict[str, Any] = {}
    for name, arr in obj["blobs"].items():
        if isinstance(name, bytes):
            name = name.decode("latin1")
        if not isinstance(name, str):
            raise Caffe2Error(f"blob name {name!r} is not a string")
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
            kind = type(arr).__name__ if not isinstance(arr, np.ndarray) else f"array of dtype {arr.dtype}"
            raise Caffe2Error(f"blob {name!r} is not a numeric numpy array ({kind})")
        blobs[name] = arr
    if not blobs:
        raise Caffe2Error("'blobs' is empty")
    return blobs


def caffe2_state_dict(blobs: dict[str, Any]):
    """``(state_dict, skipped)``: the weight blobs under their state-dict keys (float tensors as
    float32), and the names of the training-state blobs that were skipped.

    Raises ``Caffe2Error`` when a weight blob follows no naming rule, or two blobs land on one key.
    """
    import numpy as np
    import torch

    state: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    skipped: list[str] = []
    unknown: list[str] = []
    for name, arr in blobs.items():
        key = caffe2_key(name)
        if key is None:
            (skipped if is_training_state(name) else unknown).append(name)
            continue
        if key in state:
            raise Caffe2Error(f"blobs {source[key]!r} and {name!r} both land on {key}")
        t = torch.from_numpy(np.array(arr, copy=True, order="C"))
        state[key] = t.float() if t.is_floating_point() else t
        source[key] = name
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise Caffe2Error(f"{len(unknown)} blob(s) follow no PySlowFast naming rule: {', '.join(unknown[:3])}{more}")
    if not state:
        raise Caffe2Error("no weight blob (only training state: " + ", ".join(skipped[:3]) + ")")
    return state, sorted(skipped)

"""Reading and writing checkpoints, treated as untrusted files.

Formats read (``Checkpoint.format`` says which one a file was):

``"pyslowfast"``
    PySlowFast / official ATFR checkpoints (a ``torch.save`` dict with ``model_state`` and usually
    a ``cfg`` YAML string), and this project's own training checkpoints (the same format; weights
    may be stored in fp16 and are loaded back to fp32);
``"state_dict"``
    a ``torch.save`` plain state dict, or a dict with ``state_dict``;
``"caffe2"``
    PySlowFast's Caffe2-converted ``.pkl`` files (a Python 2 pickle of ``{"blobs": {name:
    array}}``), see ``atfr_analysis.caffe2``: blob names are mapped onto state-dict keys;
``"pytorchvideo"``
    PyTorchVideo's model-zoo ``.pyth`` (``model_state`` in PyTorchVideo's ``blocks.N`` layout, or
    that state dict alone, with or without a ``model.`` prefix), see ``atfr_analysis.pytorchvideo``:
    keys are mapped onto ours, models the zoo lacks are refused by name.

``torch.save`` files go through ``torch.load(..., weights_only=True)``; any other pickle through a
restricted unpickler that admits numpy arrays and plain containers only. A file that needs
arbitrary unpickling is refused, naming what it would import, and nothing of it runs.

Loading is strict: missing, unexpected or shape-mismatched keys are refused with a short report,
unless the caller allows exactly the SGS parameters to be missing (``allow_missing="sgs"``: a
baseline checkpoint into its ``_atfr`` variant, to fine-tune with SGS). Weights holding NaN or inf
(a diverged training; BN buffers such as ``running_var`` included) are refused too, naming the
tensor, unless the caller allows them (``allow_nonfinite_weights=True``: to inspect such a model).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atfr_analysis.errors import AtfrError, NonFiniteError

__all__ = [
    "CheckpointError",
    "NonFiniteWeightsError",
    "Checkpoint",
    "load_checkpoint",
    "load_state_into",
    "check_finite_weights",
    "parse_cfg",
    "cfg_facts",
    "check_cfg",
    "save_checkpoint",
    "save_torch_atomic",
    "sha256sum",
    "ALLOW_MISSING_CHOICES",
]

ALLOW_MISSING_CHOICES = ("sgs",)
_SGS_KEY_MARK = "ts_layer."
_COUNTER = ".num_batches_tracked"


class CheckpointError(AtfrError, ValueError):
    """A checkpoint that cannot be used as asked; the message is one line."""


class NonFiniteWeightsError(CheckpointError, NonFiniteError):
    """A checkpoint whose weights hold NaN or inf (refused unless ``allow_nonfinite_weights``)."""


@dataclass
class Checkpoint:
    path: Path
    state_dict: dict[str, torch.Tensor]
    cfg: dict | None = None  # the parsed PySlowFast cfg (or our own record), when present
    meta: dict[str, Any] = field(default_factory=dict)  # epoch etc.
    format: str = "pyslowfast"  # which format was read: "pyslowfast", "state_dict", "caffe2" or "pytorchvideo"

    @property
    def facts(self) -> dict[str, Any]:
        return cfg_facts(self.cfg) if self.cfg else {}

    def describe(self) -> str:
        """One line saying which format was read, e.g. for the profiler's summary and run.json."""
        if self.format == "caffe2":
            skipped = self.meta.get("caffe2_skipped", [])
            return (
                f"caffe2 (PySlowFast's Caffe2-converted .pkl: {len(self.state_dict)} weight blobs mapped onto "
                f"state-dict keys, {len(skipped)} training-state blobs skipped)"
            )
        if self.format == "pytorchvideo":
            from atfr_analysis.pytorchvideo import describe

            return describe(self.meta)
        if self.format == "pyslowfast":
            return "pyslowfast (torch.save dict with model_state" + (", cfg)" if self.cfg else ")")
        return "state_dict (torch.save state dict)"

    def num_classes(self) -> int | None:
        """Class count from the classifier weights (``head.projection.weight``), else the cfg."""
        w = self.state_dict.get("head.projection.weight")
        if w is not None:
            return int(w.shape[0])
        return self.facts.get("num_classes")


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def parse_cfg(cfg: Any) -> dict | None:
    """A checkpoint's ``cfg``: a PySlowFast YAML dump (string), or already a mapping."""
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if isinstance(cfg, str):
        import yaml

        try:
            out = yaml.safe_load(cfg)
        except yaml.YAMLError as e:
            raise CheckpointError(f"checkpoint cfg is not valid YAML: {str(e).splitlines()[0]}") from None
        return out if isinstance(out, dict) else None
    return None


def _get(d: Mapping, dotted: str, default=None):
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def cfg_facts(cfg: Mapping) -> dict[str, Any]:
    """The facts of a PySlowFast cfg that decide the model and its input."""
    arch = _get(cfg, "MODEL.ARCH")
    facts = {
        "arch": arch,
        "num_classes": _get(cfg, "MODEL.NUM_CLASSES"),
        "frames": _get(cfg, "DATA.NUM_FRAMES"),
        "sampling_rate": _get(cfg, "DATA.SAMPLING_RATE"),
        "train_crop": _get(cfg, "DATA.TRAIN_CROP_SIZE"),
        "test_crop": _get(cfg, "DATA.TEST_CROP_SIZE"),
        "views": _get(cfg, "TEST.NUM_ENSEMBLE_VIEWS"),
        "crops": _get(cfg, "TEST.NUM_SPATIAL_CROPS"),
        "atfr": _get(cfg, "TEMPORAL_SAMPLING") is not None and _get(cfg, "MODEL.TEMPORAL_LAYER_STAGE") is not None,
    }
    if arch == "slowfast":
        facts["alpha"] = _get(cfg, "SLOWFAST.ALPHA")
        facts["fusion_kernel"] = _get(cfg, "SLOWFAST.FUSION_KERNEL_SZ")
    if arch == "x3d":
        facts["width_factor"] = _get(cfg, "X3D.WIDTH_FACTOR")
        facts["depth_factor"] = _get(cfg, "X3D.DEPTH_FACTOR")
    if facts["atfr"]:
        facts["temporal_sampling"] = _get(cfg, "TEMPORAL_SAMPLING")
    return {k: v for k, v in facts.items() if v is not None}


_ARCH_OF_FAMILY = {"slowfast": "slowfast", "slow": "slow", "resnet3d": "3dresnet", "x3d": "x3d"}


def check_cfg(facts: Mapping[str, Any], model: nn.Module) -> list[str]:
    """Differences between a checkpoint's cfg facts and the model (empty when they agree)."""
    spec = getattr(model, "spec", None)
    cfg = getattr(model, "config", None)
    problems = []
    model_arch = getattr(cfg, "arch", None) or ("x3d" if "x3d" in getattr(model, "model_name", "") else None)
    if facts.get("arch") and model_arch:
        want = _ARCH_OF_FAMILY.get(model_arch, model_arch)
        if facts["arch"] != want:
            problems.append(f"MODEL.ARCH={facts['arch']} but the model is {want}")
    if spec is not None:
        pairs = [
            ("frames", "DATA.NUM_FRAMES", spec.clip_frames),
            ("sampling_rate", "DATA.SAMPLING_RATE", spec.sampling_rate),
            ("train_crop", "DATA.TRAIN_CROP_SIZE", spec.train_crop),
            ("test_crop", "DATA.TEST_CROP_SIZE", spec.test_crop),
        ]
        if spec.alpha is not None:
            pairs.append(("alpha", "SLOWFAST.ALPHA", spec.alpha))
        for key, cfg_name, ours in pairs:
            if key in facts and int(facts[key]) != int(ours):
                problems.append(f"{cfg_name}={facts[key]} but the model has {ours}")
    ncls = getattr(cfg, "num_classes", None)
    if ncls is not None and "num_classes" in facts and int(facts["num_classes"]) != int(ncls):
        problems.append(f"MODEL.NUM_CLASSES={facts['num_classes']} but the model has {ncls}")
    return problems


def _unwrap_state(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint (expected a dict, got {type(obj).__name__})")
    meta: dict[str, Any] = {}
    cfg = None
    if "model_state" in obj:
        state = obj["model_state"]
        cfg = parse_cfg(obj.get("cfg"))
        meta = {k: v for k, v in obj.items() if k in ("epoch", "record", "atfr_analysis")}
        if isinstance(obj.get("record"), Mapping) and cfg is None:
            cfg = None
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state = obj["state_dict"]
    else:
        state = obj
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: holds no weights (empty or missing model_state)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict ({len(bad)} non-tensor entries, e.g. {bad[0]!r})")
    state = dict(state)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    # fp16 storage (our shipped checkpoints) is loaded back to fp32
    state = {k: (v.float() if v.is_floating_point() and v.dtype != torch.float64 else v) for k, v in state.items()}
    return state, cfg, meta


# torch.save's legacy (non-zip) format starts with a protocol-2 pickle of this magic number
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_REFUSED = (
    "a checkpoint is read with torch's weights_only=True, or, for a plain pickle (Caffe2 .pkl), "
    "with an unpickler that admits numpy arrays and plain containers only"
)


def _is_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(len(_TORCH_LEGACY_MAGIC))
    return head.startswith(b"PK\x03\x04") or head == _TORCH_LEGACY_MAGIC


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint without running code; one-line ``CheckpointError`` on any problem.

    ``torch.save`` files (zip or legacy) are read with ``weights_only=True``; any other file is
    taken as a Caffe2-converted ``.pkl`` (``atfr_analysis.caffe2``). ``Checkpoint.format`` says
    which format was read. A file that cannot be read for a reason of the operating system
    (permissions) raises ``EnvironmentFailure``.
    """
    from atfr_analysis.errors import environment_failure

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if not _is_torch_file(path):
            return _load_caffe2(path)
    except OSError as e:
        raise environment_failure(e, path, "read") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        import re

        text = str(e)
        glob = re.search(r"GLOBAL (\S+)", text)
        if glob:
            raise CheckpointError(
                f"refusing {path}: it needs arbitrary code to unpickle (imports {glob.group(1).rstrip('.,')}); "
                f"{_REFUSED}"
            ) from None
        op = re.search(r"Unsupported operand (\S+)", text)
        why = f"Unsupported operand {op.group(1)}" if op else (text.strip().splitlines() or [type(e).__name__])[0][:120]
        raise CheckpointError(
            f"cannot read checkpoint {path} with weights_only=True ({why}): not a torch.save file of "
            "tensors (a plain pickle, possibly one that would run code, is refused)"
        ) from None
    except OSError as e:  # PermissionError, an I/O error: the environment; else a bad file
        if isinstance(e, PermissionError) or e.errno == errno.EIO:
            raise environment_failure(e, path, "read") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:200]}") from None
    except Exception as e:  # corrupt zip, truncated file, not a torch file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first[:200]}") from None
    state, cfg, meta = _unwrap_state(obj, path)
    from atfr_analysis.pytorchvideo import is_pytorchvideo_state

    if is_pytorchvideo_state(state):
        return _load_pytorchvideo(path, state, meta)
    fmt = "pyslowfast" if isinstance(obj, Mapping) and "model_state" in obj else "state_dict"
    return Checkpoint(path=path, state_dict=state, cfg=cfg, meta=meta, format=fmt)


def _load_caffe2(path: Path) -> Checkpoint:
    from atfr_analysis.caffe2 import Caffe2Error, ForbiddenGlobal, caffe2_state_dict, read_caffe2_blobs

    try:
        blobs = read_caffe2_blobs(path)
        state, skipped = caffe2_state_dict(blobs)
    except ForbiddenGlobal as e:
        raise CheckpointError(
            f"refusing {path}: it needs arbitrary code to unpickle (imports {e.name}); {_REFUSED}"
        ) from None
    except Caffe2Error as e:
        raise CheckpointError(f"cannot read checkpoint {path} (not a torch.save file; as a Caffe2 .pkl: {e})") from None
    meta = {"epoch": -1, "caffe2_blobs": len(blobs), "caffe2_skipped": skipped}
    return Checkpoint(path=path, state_dict=state, cfg=None, meta=meta, format="caffe2")


def _load_pytorchvideo(path: Path, state: dict, meta: dict) -> Checkpoint:
    from atfr_analysis.pytorchvideo import PyTorchVideoError, pytorchvideo_state_dict

    try:
        ours, layout, info = pytorchvideo_state_dict(state)
    except PyTorchVideoError as e:
        raise CheckpointError(f"cannot use checkpoint {path} (PyTorchVideo layout): {e}") from None
    meta = {**meta, "pytorchvideo_layout": layout, "pytorchvideo_source": info["source"]}
    meta["pytorchvideo_identity_norms"] = info["identity_norms"]
    return Checkpoint(path=path, state_dict=ours, cfg=None, meta=meta, format="pytorchvideo")


def _preview(keys: list[str], n: int = 3) -> str:
    more = f", ... (+{len(keys) - n})" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_finite_weights(state: Mapping[str, torch.Tensor], allow: bool = False) -> list[str]:
    """The names of the floating tensors of ``state`` that hold NaN or inf (parameters and buffers
    alike, e.g. a BN ``running_var``); unless ``allow``, the first of them is a one-line
    :class:`NonFiniteWeightsError` (its NaN and inf counts, how many other tensors)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad and not allow:
        v = state[bad[0]]
        nan = int(torch.isnan(v).sum())
        inf = int(torch.isinf(v).sum())
        what = " and ".join(s for s in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "") if s)
        others = len(bad) - 1
        more = f"; {others} more tensor{'s' if others > 1 else ''} too ({_preview(bad[1:], 2)})" if others else ""
        raise NonFiniteWeightsError(
            f"checkpoint holds non-finite weights: {bad[0]} has {what} of its {v.numel()} values{more} "
            "(a diverged training?); pass --allow-nonfinite-weights (allow_nonfinite_weights=True) to load it anyway"
        )
    return bad


def load_state_into(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    allow_missing: str | None = None,
    allow_nonfinite_weights: bool = False,
) -> dict[str, list[str]]:
    """Load ``state`` into ``model``, refusing any missing / unexpected / mismatched key, and any
    weight holding NaN or inf unless ``allow_nonfinite_weights`` (:func:`check_finite_weights`).

    ``allow_missing="sgs"`` permits exactly the SGS (``*ts_layer.*``) parameters to be missing.
    A state without any BN batch counter (``*.num_batches_tracked``; Caffe2 files hold none) leaves
    the model's counters as they are; a state with some counters must have all of them.
    Returns ``{"missing": [...], "nonfinite": [...]}``: the keys that were allowed to stay at their
    initial values, and those allowed to hold NaN or inf.
    """
    if allow_missing is not None and allow_missing not in ALLOW_MISSING_CHOICES:
        raise CheckpointError(f"allow_missing must be one of {', '.join(ALLOW_MISSING_CHOICES)}, got {allow_missing!r}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    counters = [k for k in missing if k.endswith(_COUNTER)]
    if counters and not any(k.endswith(_COUNTER) for k in state):
        # a format without BN batch counters (Caffe2): they stay as initialised, as upstream does
        missing = [k for k in missing if not k.endswith(_COUNTER)]
    else:
        counters = []
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    allowed = []
    if allow_missing == "sgs":
        allowed = [k for k in missing if _SGS_KEY_MARK in k]
        missing = [k for k in missing if _SGS_KEY_MARK not in k]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape-mismatched ({_preview(mismatched, 2)})")
        hint = ""
        if missing and all(_SGS_KEY_MARK in k for k in missing):
            hint = (
                "; only SGS weights are missing: pass allow_missing='sgs' (--allow-missing sgs) to fine-tune a baseline"
            )
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(parts) + hint)
    nonfinite = check_finite_weights(state, allow=allow_nonfinite_weights)
    model.load_state_dict(dict(state), strict=not (allowed or counters))
    return {"missing": allowed, "nonfinite": nonfinite}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    record: Mapping[str, Any],
    epoch: int = 0,
    half: bool = False,
    optimizer_state: Mapping | None = None,
) -> Path:
    """Write PySlowFast's checkpoint format: ``model_state``, ``epoch``, ``cfg`` (a YAML string).

    ``record`` (model name, config, training command, seed, ...) is stored as the ``cfg`` YAML so
    that the file stays loadable with ``weights_only=True``. ``half=True`` stores floating
    tensors in fp16 (the shipped demo checkpoints), loaded back to fp32 by ``load_checkpoint``.
    """
    import yaml

    f16 = torch.finfo(torch.float16)

    def store(v: torch.Tensor) -> torch.Tensor:
        v = v.detach()
        # fp16 only where it holds the values (BN running variances can exceed its range)
        if half and v.is_floating_point() and torch.isfinite(v).all() and v.abs().max() <= f16.max:
            v = v.half()
        return v.cpu().clone()

    state = {k: store(v) for k, v in model.state_dict().items()}
    obj: dict[str, Any] = {
        "epoch": int(epoch),
        "model_state": state,
        "cfg": yaml.safe_dump(dict(record), sort_keys=True),
    }
    if optimizer_state is not None:
        obj["optimizer_state"] = optimizer_state
    path = Path(path)
    save_torch_atomic(obj, path)
    return path


class _HashingSink:
    """A file object for ``torch.save`` that hashes what it writes and keeps the OS's error of a
    failed write (torch turns it into a ``RuntimeError`` without the errno)."""

    def __init__(self, f) -> None:
        self.f, self.digest, self.error = f, hashlib.sha256(), None

    def write(self, b) -> int:
        try:
            n = self.f.write(b)
        except OSError as e:
            self.error = e
            raise
        self.digest.update(b)
        return n

    def flush(self) -> None:
        self.f.flush()


def save_torch_atomic(obj: Any, path: str | Path, before_replace=None) -> str:
    """``torch.save(obj)`` into ``path`` atomically: a temporary file beside it, flushed to disk,
    then renamed (``before_replace(sha256)`` runs just before the rename). Returns the file's
    sha256. A write the OS refuses (a full disk, a read-only or missing folder) is an
    ``EnvironmentFailure`` naming ``path`` (``cannot write <path>: No space left on device``), and
    no temporary file remains."""
    from atfr_analysis.errors import environment_failure

    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    sink = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            sink = _HashingSink(f)
            torch.save(obj, sink)
            f.flush()
            os.fsync(f.fileno())
        digest = sink.digest.hexdigest()
        if before_replace is not None:
            before_replace(digest)
        os.replace(tmp, path)
        return digest
    except (OSError, RuntimeError) as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else (sink.error if sink is not None else None)
        if cause is None or isinstance(cause, AtfrError):  # a bug, or already named
            raise
        raise environment_failure(cause, path) from None

"""A checkpoint into a registry model: the class count from its head, its cfg checked, its
weights loaded strictly. Used by ``profile``, ``bench``, ``demo`` and ``train``."""

from __future__ import annotations

import warnings
from pathlib import Path

from atfr_analysis.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_cfg,
    load_checkpoint,
    load_state_into,
)
from atfr_analysis.models import build_model
from atfr_analysis.models.registry import get_entry

__all__ = ["load_into", "load_model_from_checkpoint"]

#: the head size assumed when a checkpoint does not say (Kinetics-400)
DEFAULT_NUM_CLASSES = 400


def load_model_from_checkpoint(
    checkpoint: str | Path, model_name: str, allow_missing: str | None = None, allow_nonfinite_weights: bool = False
):
    """Build ``model_name`` to fit ``checkpoint`` (class count from its head) and load it strictly.

    Returns ``(model, checkpoint, info)``: the model (on the CPU, in train mode as built), the
    loaded checkpoint (``load_checkpoint``'s object: facts, state dict) and what
    ``load_state_into`` reports (``info["missing"]``: the parameters allowed to be missing).

    Raises a one-line ``CheckpointError`` when the file needs arbitrary unpickling, when its
    PySlowFast cfg disagrees with the model (arch, frames, sampling rate, alpha, crop sizes,
    classes), when keys are missing, unexpected or shape-mismatched (``allow_missing="sgs"``
    lets exactly the SGS parameters be missing), or when a weight holds NaN or inf (unless
    ``allow_nonfinite_weights``: ``info["nonfinite"]`` then names those tensors). A PyTorchVideo
    checkpoint must be of the model's architecture (``pytorchvideo.check_fits``: errors name
    PyTorchVideo's keys).
    """
    if ":" in str(model_name):  # one's own network, package.module:callable
        return _load_user_model(checkpoint, model_name, allow_missing, allow_nonfinite_weights)
    get_entry(model_name)  # unknown name: one-line error before reading anything
    with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
        warnings.simplefilter("ignore")
        ckpt = load_checkpoint(checkpoint)
    ncls = ckpt.num_classes() or DEFAULT_NUM_CLASSES
    model = build_model(model_name, num_classes=ncls)
    info = load_into(model, model_name, ckpt, allow_missing, allow_nonfinite_weights=allow_nonfinite_weights)
    return model, ckpt, info


def load_into(
    model, model_name: str, ckpt: Checkpoint, allow_missing: str | None = None, allow_nonfinite_weights: bool = False
) -> dict:
    """Load a read checkpoint (any format ``load_checkpoint`` reads) into a built ``model_name``:
    its PySlowFast cfg checked, a PyTorchVideo file's architecture and keys checked in its own
    names, then ``load_state_into`` (strict). Returns ``load_state_into``'s report; one-line
    ``CheckpointError`` on any mismatch. For callers that build the model themselves (training)."""
    problems = check_cfg(ckpt.facts, model)
    if problems:
        raise CheckpointError(f"checkpoint cfg does not match --model {model_name}: " + "; ".join(problems))
    if ckpt.format == "pytorchvideo":
        from atfr_analysis.pytorchvideo import check_fits

        problems = check_fits(model_name, model, ckpt.state_dict, ckpt.meta)
        if problems:
            raise CheckpointError(f"checkpoint does not fit --model {model_name}: " + "; ".join(problems))
    return load_state_into(
        model, ckpt.state_dict, allow_missing=allow_missing, allow_nonfinite_weights=allow_nonfinite_weights
    )


def _load_user_model(
    checkpoint: str | Path, ref: str, allow_missing: str | None = None, allow_nonfinite_weights: bool = False
):
    """``package.module:callable`` built (checked before reading anything), then the checkpoint's
    state dict loaded strictly into it (the callable's own class count: a head of another size is
    a shape mismatch, named)."""
    from atfr_analysis.models.user import build_user_model

    get_entry(ref)  # a bad reference: one line, before anything is read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt = load_checkpoint(checkpoint)
    # the head size the checkpoint's cfg records (ours from `atfr train`), else the callable's default
    model = build_user_model(ref, num_classes=ckpt.facts.get("num_classes"))
    problems = check_cfg(ckpt.facts, model)
    if problems:
        raise CheckpointError(f"checkpoint cfg does not match --model {ref}: " + "; ".join(problems))
    info = load_state_into(
        model, ckpt.state_dict, allow_missing=allow_missing, allow_nonfinite_weights=allow_nonfinite_weights
    )
    return model, ckpt, info

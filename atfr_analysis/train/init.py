"""``--init-from``: start from weights in any format ``atfr profile`` reads (PySlowFast ``.pyth``,
Caffe2 ``.pkl``, our checkpoints), into the model being trained.

Only the SGS weights may be missing (an ``_atfr`` model from its baseline); a head with another
class count is re-initialised only with ``reset_head`` (PySlowFast silently skips mismatched
shapes; this never does); anything else that does not fit is a one-line error. Returns what was
loaded and what was re-initialised, for the run's record.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

__all__ = ["init_from", "HEAD_PREFIX"]

HEAD_PREFIX = "head."


def init_from(model: nn.Module, path: str | Path, reset_head: bool = False) -> dict:
    from atfr_analysis.checkpoint import CheckpointError, load_checkpoint, load_state_into

    ck = load_checkpoint(path)
    state = dict(ck.state_dict)
    own = model.state_dict()
    head = [k for k in own if k.startswith(HEAD_PREFIX) and k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if head and not reset_head:
        got, want = tuple(state[head[0]].shape), tuple(own[head[0]].shape)
        raise CheckpointError(
            f"the head of {path} does not fit the model ({head[0]} {got} vs {want}: another class count); "
            "pass --reset-head to re-initialise it"
        )
    for k in head:  # the model's own initial values: nothing else may be absent or misfit
        state[k] = own[k]
    loaded = load_state_into(model, state, allow_missing="sgs")
    return {
        "path": str(path),
        "format": ck.format,
        "reinitialised": sorted(head) + sorted(loaded["missing"]),
        "head_reset": bool(head),
    }

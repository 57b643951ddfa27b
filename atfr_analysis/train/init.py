"""``--init-from``: start from weights in any format ``atfr profile`` reads (PySlowFast ``.pyth``,
Caffe2 ``.pkl``, PyTorchVideo model-zoo ``.pyth``, our checkpoints), into the model being trained.

Only the SGS weights may be missing (an ``_atfr`` model from its baseline); a head with another
class count is re-initialised only with ``reset_head`` (PySlowFast silently skips mismatched
shapes; this never does); anything else that does not fit is a one-line error. A PyTorchVideo
file is checked as ``atfr profile`` checks it (``pytorchvideo.check_fits``: another architecture,
or missing / unexpected / mis-shaped tensors, named in PyTorchVideo's keys), and the run says what
``atfr profile`` says of it (``Checkpoint.describe()``: the layout read, the identity norms added
where PyTorchVideo's layout has none) and what was re-initialised (:func:`init_lines`). Returns
what was loaded and what was re-initialised, for the run's record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

__all__ = ["init_from", "init_lines", "HEAD_PREFIX"]

HEAD_PREFIX = "head."


def init_from(
    model: nn.Module, path: str | Path, reset_head: bool = False, say: Callable[[str], None] | None = None
) -> dict:
    """Load ``path`` into ``model`` (see the module doc); ``say`` gets :func:`init_lines`."""
    from atfr_analysis.checkpoint import CheckpointError, load_checkpoint, load_state_into

    ck = load_checkpoint(path)
    own = model.state_dict()
    head = [
        k for k in own if k.startswith(HEAD_PREFIX) and k in ck.state_dict and ck.state_dict[k].shape != own[k].shape
    ]
    # the model's own initial values for a head of another class count: nothing else may be absent or misfit
    state = {**ck.state_dict, **{k: own[k] for k in head}}
    if ck.format == "pytorchvideo":
        _check_pytorchvideo(model, path, state, ck.meta)
    if head and not reset_head:
        got, want = tuple(ck.state_dict[head[0]].shape), tuple(own[head[0]].shape)
        raise CheckpointError(
            f"the head of {path} does not fit the model ({head[0]} {got} vs {want}: another class count); "
            "pass --reset-head to re-initialise it"
        )
    loaded = load_state_into(model, state, allow_missing="sgs")
    info = {
        "path": str(path),
        "format": ck.format,
        "read_as": ck.describe(),
        "reinitialised": sorted(head) + sorted(loaded["missing"]),
        "head_reset": bool(head),
    }
    for line in init_lines(info) if say is not None else ():
        say(line)
    return info


def _check_pytorchvideo(model: nn.Module, path, state: dict, meta: dict) -> None:
    """``atfr profile``'s check of a PyTorchVideo file against the model (one line, PyTorchVideo's names)."""
    from atfr_analysis.checkpoint import CheckpointError
    from atfr_analysis.pytorchvideo import check_fits

    name = getattr(model, "model_name", "") or type(model).__name__
    problems = check_fits(name, model, state, meta)
    if problems:
        raise CheckpointError(f"--init-from {path} does not fit --model {name}: " + "; ".join(problems))


def init_lines(info: dict) -> list[str]:
    """What a run prints of its ``--init-from`` (``info`` as :func:`init_from` returns it): the format
    read, as ``atfr profile`` prints it, and the tensors re-initialised (the head, the SGS layers)."""
    again = info["reinitialised"]
    head = [k for k in again if k.startswith(HEAD_PREFIX)]
    rest = [k for k in again if not k.startswith(HEAD_PREFIX)]
    out = [f"init-from {info['path']}: {info.get('read_as') or info['format']}"]
    parts = [f"{len(head)} head tensor(s) (another class count: --reset-head)"] if head else []
    parts += [f"{len(rest)} tensor(s) the file does not hold ({_layers(rest)})"] if rest else []
    out.append("re-initialised: " + ("; ".join(parts) if parts else "nothing (every tensor read from the file)"))
    return out


def _layers(keys: list[str]) -> str:
    """The modules of ``keys`` (``s2.pathway0_ts_layer.x`` -> ``s2.pathway0_ts_layer``), in order."""
    mods = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in keys))
    return ", ".join(mods[:4]) + (f", ... (+{len(mods) - 4})" if len(mods) > 4 else "")

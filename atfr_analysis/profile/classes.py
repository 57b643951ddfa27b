"""The classes of a run: their names, and which outputs of the checkpoint's head they are.

A label map (``--labels``) must name exactly the head's classes, or say with ``--class-subset``
which head outputs its entries are (entry ``k`` of the map = head output ``class_subset[k]``):
the log's scores, top-5 and predictions are then over those outputs only, renormalised to sum 1
(= the softmax of the head restricted to them). Both are checked when the model is loaded,
before the video list is read and before any video is decoded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atfr_analysis.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["ClassSet", "parse_class_subset", "check_label_map", "class_set"]


def parse_class_subset(spec: str | Path | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,5,7"`` (head indices, comma- or space-separated), a file holding them (commas,
    whitespace or one per line; ``#`` comments), or a sequence of ints."""
    if spec is None:
        return None
    if isinstance(spec, str) and not spec.strip():
        raise InputError("--class-subset: no head index given")
    if isinstance(spec, (str, Path)) and not (isinstance(spec, str) and re.fullmatch(r"[\d,\s]+", spec)):
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"--class-subset: {spec} is neither a comma list of head indices nor a file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--class-subset: cannot read {path}: {e}") from None
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        where = str(path)
    elif isinstance(spec, str):
        text, where = spec, "--class-subset"
    else:
        text, where = ",".join(str(v) for v in spec), "--class-subset"
    fields = [f for f in re.split(r"[,\s]+", text.strip()) if f]
    bad = [f for f in fields if not re.fullmatch(r"\d+", f)]
    if bad:
        raise InputError(f"{where}: {bad[0]!r} is not a head index (a non-negative integer)")
    ids = tuple(int(f) for f in fields)
    if not ids:
        raise InputError(f"{where}: no head index given")
    seen: dict[int, int] = {}
    for k, i in enumerate(ids):
        if i in seen:
            raise InputError(f"{where}: head index {i} is given twice (entries {seen[i]} and {k})")
        seen[i] = k
    return ids


@dataclass(frozen=True)
class ClassSet:
    """The run's class names (index = the class id of the log) and the head outputs they are."""

    names: list[str]
    head_classes: int
    subset: tuple[int, ...] | None = None  # head output of each class; None: the whole head

    @property
    def num_classes(self) -> int:
        """The length of the log's score vectors."""
        return len(self.subset) if self.subset is not None else self.head_classes

    def restrict(self, scores: torch.Tensor) -> torch.Tensor:
        """``[N, head]`` softmax -> ``[N, num_classes]``: the subset's outputs, renormalised."""
        import torch

        if self.subset is None:
            return scores
        sub = scores[:, list(self.subset)]
        return sub / sub.sum(dim=1, keepdim=True).clamp_min(torch.finfo(sub.dtype).tiny)


def _names_of_map(label_map: dict[str, int]) -> list[str]:
    names = [None] * (max(label_map.values()) + 1)
    for n, i in label_map.items():
        names[i] = n
    return [n if n is not None else str(i) for i, n in enumerate(names)]


def _names_of_entries(entries) -> list[str]:
    pairs = sorted({(e.label, e.class_name) for e in entries if e.label >= 0})
    if not pairs:
        return []
    names = [str(i) for i in range(pairs[-1][0] + 1)]
    for i, n in pairs:
        names[i] = n
    return names


def check_label_map(label_map: dict[str, int] | None, head: int, subset: tuple[int, ...] | None, labels=None) -> None:
    """A label map against the head (and ``--class-subset``), before the list is read."""
    if subset is not None:
        if label_map is None:
            raise InputError("--class-subset needs --labels: the label map whose entries the subset's head indices are")
        if len(subset) != len(label_map):
            raise InputError(
                f"--class-subset gives {len(subset)} head indices but the label map {labels} has "
                f"{len(label_map)} classes (one index per label-map entry)"
            )
        out = [i for i in subset if i >= head]
        if out:
            raise InputError(
                f"--class-subset: head index {out[0]} is out of range: the checkpoint's head has {head} outputs "
                f"(0..{head - 1})"
            )
        return
    if label_map is not None and len(label_map) != head:
        raise InputError(
            f"the label map {labels} has {len(label_map)} classes but the checkpoint's head has {head} outputs; "
            "pass a map of all the head's classes, or --class-subset to say which head outputs its entries are"
        )


def class_set(label_map: dict[str, int] | None, entries, head: int, subset: tuple[int, ...] | None) -> ClassSet:
    """The run's classes: the label map's names, else the list's (at most the head's size)."""
    if label_map:
        return ClassSet(_names_of_map(label_map), head, subset)
    names = _names_of_entries(entries)
    if len(names) > head:
        raise InputError(f"the video list names {len(names)} classes but the checkpoint's head has {head} outputs")
    return ClassSet(names, head, None)

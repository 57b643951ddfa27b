"""The training tests' data: seven synthetic classes, tiny (16 frames at 64 px), train clips only."""

from pathlib import Path

from atfr_analysis.data.synthetic import CLASSES, SyntheticConfig, make_dataset

#: the tests' seven classes (the first seven the module knows; the tests count clips and classes)
SEVEN = CLASSES[:7]


def tiny_train_set(root: Path, per_class: int = 1, classes=SEVEN) -> Path:
    """Write ``per_class`` train clips of each of ``classes`` under ``root`` (seed 3); returns ``root``."""
    make_dataset(
        root,
        SyntheticConfig(
            seed=3, frames=16, size=64, classes=classes, clips_per_class_train=per_class, clips_per_class_test=0
        ),
    )
    return root


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc): torchrun starts its workers in sessions of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(proc) -> None:
    """SIGKILL a ``Popen`` and every process below it (a hung torchrun leaves none behind)."""
    import os
    import signal

    for pid in [proc.pid] + descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()

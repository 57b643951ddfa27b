"""The training tests' data: synthetic classes, tiny (16 frames at 64 px): seven with train clips
only, or the shipped checkpoints' four with a train and a test clip each."""

from pathlib import Path

from atfr_analysis.data.synthetic import CLASSES, SyntheticConfig, make_dataset

#: the tests' seven classes (the first seven the module knows; the tests count clips and classes)
SEVEN = CLASSES[:7]
#: the classes the shipped slow_tiny checkpoints were trained on
SHIPPED_CLASSES = ("still", "slow_4x", "slow_2x", "normal")


def tiny_train_set(root: Path, per_class: int = 1, classes=SEVEN, test_per_class: int = 0) -> Path:
    """Write ``per_class`` train clips (and ``test_per_class`` test clips) of each of ``classes``
    under ``root`` (seed 3); returns ``root``."""
    make_dataset(
        root,
        SyntheticConfig(
            seed=3,
            frames=16,
            size=64,
            classes=classes,
            clips_per_class_train=per_class,
            clips_per_class_test=test_per_class,
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

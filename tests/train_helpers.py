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

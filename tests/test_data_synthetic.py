"""Data layer: the synthetic data set of known temporal redundancy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atfr_analysis.data import DataError
from atfr_analysis.data.datasets import read_folder, read_label_map, read_video_list
from atfr_analysis.data.synthetic import (
    CLASSES,
    DEFAULT_CLASSES,
    DEFAULT_SOURCES,
    SyntheticConfig,
    count_distinct,
    distinct_frames,
    make_dataset,
    source_offsets,
    source_span,
    split_ranges,
)
from atfr_analysis.data.video import decode_video, probe
from atfr_analysis.errors import InputError

T = 16
KW = dict(frames=T, size=48, clips_per_class_train=1, clips_per_class_test=1)


def test_distinct_frames_and_spans():
    assert {c: distinct_frames(c, 16) for c in CLASSES} == {
        "still": 1,
        "slow_4x": 4,
        "slow_2x": 8,
        "normal": 16,
        "fast_2x": 16,
        "fast_4x": 16,
        "reverse": 16,
        "slow_8x": 2,
    }
    assert {c: distinct_frames(c, 10) for c in CLASSES} == {
        "still": 1,
        "slow_4x": 3,
        "slow_2x": 5,
        "normal": 10,
        "fast_2x": 10,
        "fast_4x": 10,
        "reverse": 10,
        "slow_8x": 2,
    }
    assert source_span("fast_4x", 16) == 61 and source_span("fast_2x", 16) == 31 and source_span("still", 16) == 1
    assert source_offsets("reverse", 4) == [3, 2, 1, 0] and source_offsets("slow_2x", 4) == [0, 0, 1, 1]
    assert split_ranges(250) == {"train": (0, 175), "test": (175, 250)}
    with pytest.raises(ValueError):
        distinct_frames("sideways", 16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    a = make_dataset(tmp_path_factory.mktemp("syn_a"), SyntheticConfig(seed=0, **KW))
    b = make_dataset(tmp_path_factory.mktemp("syn_b"), SyntheticConfig(seed=0, **KW))
    return a, b


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(built):
    a, b = built
    fa, fb = _files(a.root), _files(b.root)
    assert len(fa) == 8 + 5  # 4 classes x (1 train + 1 test) clips, 2 lists, labels, manifest, card
    assert fa == fb  # byte-identical files, manifest included
    assert a.to_dict() == b.to_dict()
    assert a.total_bytes > 0 and a.seconds > 0


def test_other_seed_and_class_subset(built, tmp_path):
    a, _ = built
    calls = []
    c = make_dataset(
        tmp_path, SyntheticConfig(seed=1, classes=["fast_4x", "normal"], **KW), progress=lambda *a: calls.append(a)
    )
    assert [x.class_name for x in c.clips] == ["fast_4x", "normal", "fast_4x", "normal"]
    n = len(c.sources)  # progress: each step from 0 to its total, one call per unit of work
    assert calls == [("decoding the source clips", i, n) for i in range(n + 1)] + [
        ("writing clips", i, 4) for i in range(5)
    ]
    assert c.labels == {"fast_4x": 0, "normal": 1}
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 1
    assert all(x.decoded_distinct == distinct_frames(x.class_name, T) for x in c.clips)
    windows = lambda m: [(x.source, x.start, x.box, x.pan) for x in m.clips if x.class_name == "normal"]  # noqa: E731
    assert windows(a) != windows(c)
    # at 16 frames only bikes' test range (75 frames) holds a fast_4x window (61 frames)
    assert [x.source for x in c.clips if x.class_name == "fast_4x" and x.split == "test"] == ["bikes"]


def test_decoded_distinct_frames_match_each_class(built):
    a, _ = built
    assert {x.class_name for x in a.clips} == set(DEFAULT_CLASSES)
    for clip in a.clips:
        path = a.root / clip.path
        frames, fps = decode_video(path)
        assert frames.shape[0] == T and fps == pytest.approx(30.0)
        assert tuple(frames.shape[1:]) == (48, 64, 3)
        assert probe(path).frames == T
        assert count_distinct(frames.numpy()) == distinct_frames(clip.class_name, T) == clip.decoded_distinct
        # frames showing the same source frame decode identically, different ones differently
        keys = [f.numpy().tobytes() for f in frames]
        src = clip.source_frames
        for i in range(T):
            for j in range(i):
                assert (keys[i] == keys[j]) == (src[i] == src[j]), (clip.path, i, j)
        assert [s - clip.start for s in src] == source_offsets(clip.class_name, T)


def test_train_and_test_time_ranges_are_disjoint(built):
    a, _ = built
    used: dict[tuple[str, str], set[int]] = {}
    for clip in a.clips:
        lo, hi = a.sources[clip.source][clip.split]
        assert lo <= min(clip.source_frames) and max(clip.source_frames) < hi, clip.path
        used.setdefault((clip.source, clip.split), set()).update(clip.source_frames)
    for s, info in a.sources.items():
        assert info["train"][1] == info["test"][0]  # [0, a) and [a, N)
        assert not used.get((s, "train"), set()) & used.get((s, "test"), set())
    assert not any(x.flip for x in a.clips)  # flip=False by default
    # the camera moves between distinct source frames only: a still clip has no move, the others one
    assert all((x.pan == [0.0, 0.0]) == (x.class_name == "still") for x in a.clips)


def test_lists_and_labels_read_back(built):
    a, _ = built
    labels = read_label_map(a.labels_path)
    assert labels == {c: i for i, c in enumerate(DEFAULT_CLASSES)}
    for split in ("train", "test"):
        entries = read_video_list(a.root / f"{split}.csv", labels=labels)
        clips = [x for x in a.clips if x.split == split]
        assert [e.path for e in entries] == [a.root / x.path for x in clips]
        assert [e.class_name for e in entries] == [x.class_name for x in clips]
        assert all(e.path.is_file() for e in entries)
        assert len(read_folder(a.root / split, labels=labels)) == len(clips)
    card = a.card_path.read_text()
    assert "[0, 175)" in card and "qp=0" in card


def test_errors_before_any_work(tmp_path, built):
    with pytest.raises(DataError) as ei:
        make_dataset(
            tmp_path / "long",
            SyntheticConfig(frames=32, classes=CLASSES, clips_per_class_train=1, clips_per_class_test=1),
        )
    msg = str(ei.value)
    assert "\n" not in msg and "fast_4x" in msg and "test range" in msg
    assert not (tmp_path / "long").exists()
    a, _ = built
    with pytest.raises(DataError, match="not empty"):
        make_dataset(a.root, SyntheticConfig(**KW))
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        make_dataset(other, SyntheticConfig(**KW), overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "bad",
    [
        dict(frames=0),
        dict(size=8),
        dict(classes=["still", "still"]),
        dict(classes=["sideways"]),
        dict(classes=[]),
        dict(train_fraction=1.0),
        dict(clips_per_class_test=-1),
        dict(pan=9),
        dict(pan=-1),
        dict(flip=True, classes=["normal", "reverse"]),
    ],
)
def test_config_is_checked_when_built(bad):
    with pytest.raises(InputError):
        SyntheticConfig(**bad)
    assert SyntheticConfig(size=47).height == 48 and SyntheticConfig(size=48).out_width == 64


def test_every_class_draws_from_every_source_in_turn(tmp_path):
    """The source tells nothing of the class: the k-th clip of each class comes from the k-th source."""
    m = make_dataset(
        tmp_path, SyntheticConfig(seed=3, classes=("still", "normal"), **dict(KW, clips_per_class_train=4))
    )
    for c in ("still", "normal"):
        assert [x.source for x in m.clips if x.class_name == c and x.split == "train"] == list(DEFAULT_SOURCES)
    assert "never flipped" in m.card_path.read_text()
    flipped = make_dataset(tmp_path / "f", SyntheticConfig(seed=3, classes=("normal",), flip=True, **KW))
    assert "flipped horizontally with probability 1/2" in flipped.card_path.read_text()


def test_separability_probe_tells_change_profiles_apart(tmp_path):
    """The quick probe before training: still and normal clips differ in how often the picture
    changes; the held-out nearest-class-mean top-1 is per class and overall."""
    from atfr_analysis.data.separability import change_profile, separability

    m = make_dataset(
        tmp_path, SyntheticConfig(seed=5, classes=("still", "normal"), **dict(KW, clips_per_class_train=4))
    )
    df = separability(m.train_list, m.labels_path, val_fraction=0.5, seed=0)
    assert df["class_name"].tolist() == ["still", "normal", "overall"]
    assert df["videos"].tolist() == [2, 2, 4] and (df["top1"] == 100.0).all()
    frames = np.zeros((4, 2, 2, 3), np.uint8)
    frames[2:] = 255
    assert np.allclose(np.exp(change_profile(frames)) - 1e-4, [0, 0, 1], atol=1e-6)  # sorted
    with pytest.raises(InputError, match="hold-out is empty"):
        separability(m.train_list, m.labels_path, val_fraction=0.0)

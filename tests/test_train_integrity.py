"""Issue 30: training never goes on, silently, on data or states that changed, and refuses what it
can tell without training before the first step.

Decode failures while training count against --max-failed-fraction (and the record says how many
videos were trained); the lists and the label map a run trains on are fingerprinted in its states
and compared on resume; every state has its sha256 beside it and a corrupted one is refused; a full
disk while a state or the final checkpoint is written is one line naming the file, leaving no
temporary file; the checks that need no training come before the first step; --val's relative
paths are taken under its own folder.
"""

import builtins
import errno
import os
import shutil
import zipfile

import pytest
import torch
from train_helpers import tiny_train_set

from atfr_analysis.checkpoint import CheckpointError, load_checkpoint
from atfr_analysis.train import ResumeError, RunFolder, TrainConfig, TrainDataError, train


@pytest.fixture(scope="module")
def base_data(tmp_path_factory):
    return tiny_train_set(tmp_path_factory.mktemp("synth") / "d", per_class=2)  # 14 videos, 2 per class


@pytest.fixture
def data(base_data, tmp_path):
    """A copy of the data set of its own (the tests remove and edit files)."""
    return shutil.copytree(base_data, tmp_path / "d")


def _one_per_class(d, tmp_path):
    lines = d.joinpath("train.csv").read_text().splitlines()[::2]  # still_000, slow_4x_000, ...
    lst = tmp_path / "seven.csv"
    lst.write_text("".join(f"{d / line.split()[0]} {line.split()[1]}\n" for line in lines))
    return lst


def _cfg(d, **kw):
    args = dict(
        model="slow_tiny",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        epochs=2,
        batch_size=14,
        crop=64,
        lr=0.1,
        threads=1,
        quiet=True,
    )
    args.update(kw)
    return TrainConfig(**args)


def _after_first_step(monkeypatch, action):
    """Run ``action()`` once, right after the run's first optimizer step."""
    step, calls = torch.optim.SGD.step, []

    def wrapped(self, *a, **kw):
        out = step(self, *a, **kw)
        calls.append(1)
        if len(calls) == 1:
            action()
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", wrapped)


def _videos(d):
    return [d / line.split()[0] for line in d.joinpath("train.csv").read_text().splitlines()]


# ----------------------------------------------------------------------------- decode failures
def test_videos_that_vanish_mid_run_stop_it_above_max_failed_fraction(data, tmp_path, monkeypatch):
    """8 of 14 videos removed after step 1: the run stops before the next step (it used to train on
    and write a checkpoint whose record said 14 videos were trained); its state at step 1 is kept."""
    _after_first_step(monkeypatch, lambda: [p.unlink() for p in _videos(data)[3:11]])
    with pytest.raises(TrainDataError) as ei:
        train(_cfg(data), tmp_path / "m.pyth")
    msg = str(ei.value)
    assert "of 14 training videos cannot be decoded (more than --max-failed-fraction 0.1)" in msg, msg
    assert "while training, at step 2" in msg and "the training state at step 1 is kept" in msg, msg
    folder = RunFolder.of(tmp_path / "m.pyth")
    assert not folder.final.exists()
    assert [p.name for p in folder.states()] == ["checkpoint_step_000000001.pyth"]


def test_videos_that_fail_while_training_are_not_counted_as_trained(data, tmp_path, monkeypatch):
    """1 of 14 removed after step 1 (below the bar): the stand-in trains, and the record says 13
    videos were trained and 1 failed (it said 14 trained)."""
    gone = _videos(data)[5]
    _after_first_step(monkeypatch, gone.unlink)
    r = train(_cfg(data, max_failed_fraction=0.2), tmp_path / "m.pyth")
    rec = load_checkpoint(r.checkpoint).cfg["ATFR_ANALYSIS"]
    assert r.failed == 1 and rec["failed_videos"] == 1 and rec["failed"][0]["path"] == str(gone)
    assert rec["videos_listed"] == 14 and rec["videos_trained"] == 13


# ----------------------------------------------------------------------------- resume on other data
def _interrupted_run(d, tmp_path, **kw):
    """A run of 1 step (of 2 epochs) whose final checkpoint is gone: the next call resumes it."""
    out = tmp_path / "m.pyth"
    train(_cfg(d, max_steps=1, **kw), out)
    out.unlink()
    return out


def _shorten_list(d):
    p = d / "train.csv"
    p.write_text("".join(p.read_text().splitlines(keepends=True)[:-2]))


def _swap_labels(d):
    p = d / "labels.json"
    text = p.read_text().replace('"still"', '"tmp"').replace('"slow_4x"', '"still"')
    p.write_text(text.replace('"tmp"', '"slow_4x"'))


def _edit_val(d):
    p = d / "val.csv"
    p.write_text(p.read_text().replace(" 1\n", " 2\n"))


@pytest.mark.parametrize(
    "edit, flag, what",
    [
        (_shorten_list, "--data", "other videos or labels than when the run started (14 videos then, 12 now)"),
        (_swap_labels, "--labels", "other class names or ids than when the run started (7 classes then, 7 now)"),
        (_edit_val, "--val", "other videos or labels than when the run started (2 videos then, 2 now)"),
    ],
    ids=["shortened-list", "swapped-label-map", "edited-val-list"],
)
def test_a_list_or_label_map_edited_under_the_same_path_is_refused_on_resume(data, tmp_path, edit, flag, what):
    """It used to be taken as it was ("0 epochs, 2 steps; loss 1.397 -> nan" on a shortened list;
    two labellings mixed on a swapped label map)."""
    (data / "val.csv").write_text("train/still/still_000.mp4 0\ntrain/slow_4x/slow_4x_000.mp4 1\n")
    kw = dict(val_data=str(data / "val.csv"), val_crops=3, batch_size=2)  # 7 steps per epoch: no validation
    out = _interrupted_run(data, tmp_path, **kw)
    edit(data)
    with pytest.raises(ResumeError) as ei:
        train(_cfg(data, **kw), out)
    msg = str(ei.value)
    assert "holds a run on other data" in msg and f"{flag} " in msg and what in msg, msg
    assert not out.exists()


# ----------------------------------------------------------------------------- corrupted states
def _flip_a_byte_inside_a_tensor(path):
    """Flip one byte in the middle of the state's largest tensor record (stored uncompressed)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))


def test_a_corrupted_training_state_is_refused_naming_the_previous_good_one(data, tmp_path):
    """A byte flipped inside a tensor of the newest state: torch still loads it (so it used to be
    resumed from), the run refuses it and names the state before it, which resumes."""
    out = tmp_path / "m.pyth"
    train(_cfg(data, max_steps=2, checkpoint_every=1, batch_size=2), out)
    out.unlink()
    folder = RunFolder.of(out)
    first, newest = folder.states()
    before = torch.load(newest, weights_only=True)["model_state"]
    _flip_a_byte_inside_a_tensor(newest)
    after = torch.load(newest, weights_only=True)["model_state"]  # the silent kind: it loads
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError) as ei:
        train(_cfg(data, max_steps=2, checkpoint_every=1, batch_size=2), out)
    msg = str(ei.value)
    assert f"the training state {newest} is corrupted" in msg, msg
    assert f"the previous state {first} is intact: delete {newest.name} to resume from it" in msg, msg
    newest.unlink()
    r = train(_cfg(data, max_steps=2, checkpoint_every=1, batch_size=2), out)
    assert r.steps == 2 and out.exists()


# ----------------------------------------------------------------------------- a full disk
def _full_disk_for(monkeypatch, name_part: str, budget: int = 4096):
    """Files opened for writing whose name holds ``name_part`` take ``budget`` bytes, then the OS
    says ENOSPC (as a full disk does: no path in the error)."""
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f, self.left = f, budget

        def write(self, b):
            if len(b) > self.left:
                self.f.write(bytes(b[: self.left]))
                self.left = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(b)
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *a, **kw):
        f = real_open(file, mode, *a, **kw)
        return Full(f) if "w" in mode and name_part in os.fspath(file) else f

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize("target", ["state", "final"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_tmp(data, tmp_path, monkeypatch, capsys, target):
    """It used to be "bug in atfr-analysis: RuntimeError: [enforce fail at inline_container.cc:672]"
    with the .tmp file left behind, so that each retry filled the disk more."""
    from atfr_cli.main import main

    out = tmp_path / "m.pyth"
    path = RunFolder.of(out).state_path(1) if target == "state" else out
    _full_disk_for(monkeypatch, path.name + ".tmp")
    args = ["train", "slow_tiny", "--data", str(_one_per_class(data, tmp_path)), "--out", str(out)]
    with pytest.raises(SystemExit) as ei:
        main(args + ["--epochs", "1", "--batch-size", "7", "--crop", "64", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert ei.value.code == 1 and err == [f"error: cannot write {path}: No space left on device"], err
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not out.exists()


# ----------------------------------------------------------------------------- before the first step
@pytest.fixture
def no_step(monkeypatch):
    def step(self, *a, **kw):
        raise AssertionError("a training step ran before the refusal")

    monkeypatch.setattr(torch.optim.SGD, "step", step)


def _own_model_with_val(d, tmp_path):
    return ["own_models:plain_cnn", "--val", str(d / "train.csv")], 2, "cannot validate own_models:plain_cnn on 1 crop"


def _val_label_beyond_classes(d, tmp_path):
    (tmp_path / "val.csv").write_text(f"{d / 'train/still/still_000.mp4'} 9\n")
    args = ["slow_tiny", "--val", str(tmp_path / "val.csv")]
    return args, 2, "1 videos have labels beyond the 7 training classes of the labels of --data"


def _unwritable_out(d, tmp_path):
    (tmp_path / "a_file").write_text("")
    return ["slow_tiny", "--out", str(tmp_path / "a_file" / "m.pyth")], 1, "cannot write"


def _val_fraction_holds_out_nothing(d, tmp_path):
    return ["slow_tiny", "--val-fraction", "0.2"], 2, "--val-fraction 0.2 holds out no video"


@pytest.mark.parametrize(
    "case", [_own_model_with_val, _val_label_beyond_classes, _unwritable_out, _val_fraction_holds_out_nothing]
)
def test_checks_that_need_no_training_refuse_before_the_first_step(data, tmp_path, capsys, no_step, case):
    """They used to come after an epoch of training (or never: --val-fraction on one video per
    label trained without validation, without a word)."""
    from atfr_cli.main import main

    extra, code, want = case(data, tmp_path)
    args = ["train", extra[0], "--data", str(_one_per_class(data, tmp_path))]
    args += ["--out", str(tmp_path / "m.pyth"), "--epochs", "1", "--batch-size", "7", "--threads", "1", "--quiet"]
    with pytest.raises(SystemExit) as ei:
        main(args + extra[1:])
    err = capsys.readouterr().err.strip().splitlines()
    assert ei.value.code == code and len(err) == 1 and err[0].startswith("error: ") and want in err[0], err
    assert "bug in" not in err[0]


def test_val_paths_are_taken_under_the_val_lists_own_folder(data, tmp_path):
    """--val elsewhere with paths relative to its own folder validates (it was resolved under the
    training list's folder: 'missing video files')."""
    from atfr_cli.main import main

    vdir = tmp_path / "v"
    (vdir / "clips").mkdir(parents=True)
    for name in ("still_000", "slow_4x_000"):
        shutil.copy(next(data.rglob(f"{name}.mp4")), vdir / "clips")
    (vdir / "val.csv").write_text("clips/still_000.mp4 0\nclips/slow_4x_000.mp4 1\n")
    out = tmp_path / "m.pyth"
    args = ["train", "slow_tiny", "--data", str(_one_per_class(data, tmp_path)), "--val", str(vdir / "val.csv")]
    main(args + ["--out", str(out), "--epochs", "1", "--batch-size", "7", "--crop", "64", "--threads", "1", "--quiet"])
    rec = load_checkpoint(out).cfg["ATFR_ANALYSIS"]
    assert rec["val_videos"] == 2 and len(rec["val_acc"]) == 1

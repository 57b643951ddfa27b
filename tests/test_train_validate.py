"""Validation through the profile: each epoch's folder opens with `atfr report`; metrics.csv and
its PNG exist, with the validation's top-1/top-5, mean class accuracy, bins and GFLOPs."""

import csv

import pytest
from train_helpers import tiny_train_set

from atfr_analysis.train import RunFolder, TrainConfig, train


@pytest.mark.slow
def test_validation_folders_open_with_report_and_metrics_are_written(tmp_path):
    from atfr_cli.main import main

    d = tmp_path / "d"
    tiny_train_set(d, per_class=2)  # 14 videos
    cfg = TrainConfig(
        model="slow_tiny_atfr",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        epochs=2,
        batch_size=7,
        crop=64,
        lr=0.1,
        val_fraction=0.5,
        clip_grad=10.0,
        threads=1,
        quiet=True,
    )
    r = train(cfg, tmp_path / "run")
    folder = RunFolder.of(tmp_path / "run")
    assert len(r.val_acc) == 2
    with open(folder.root / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(x["epoch"]) for x in rows] == [1, 2]
    for col in (
        "loss",
        "lr",
        "train_top1",
        "val_top1",
        "val_top5",
        "val_mean_class_acc",
        "gmacs_x_views",
        "clips_per_s",
        "seconds",
    ):
        assert rows[-1][col] != "", col
    assert any(c.startswith("mean_bins_") for c in rows[0])
    assert float(rows[-1]["val_top1"]) == pytest.approx(r.val_acc[-1])
    assert (folder.root / "metrics.png").stat().st_size > 1000
    try:
        code = main(["report", str(folder.root / "val" / "epoch_002"), "--out", str(tmp_path / "rep")])
    except SystemExit as e:
        code = e.code
    assert code in (0, None)
    assert any((tmp_path / "rep").iterdir())


def test_tensorboard_logs_or_says_what_is_missing(tmp_path, capsys):
    """--tensorboard writes event files with the tensorboard extra; without it, one line (exit 2)."""
    import importlib.util

    from atfr_cli.main import main

    d = tmp_path / "d"
    tiny_train_set(d, per_class=1)
    args = [
        "train",
        "slow_tiny",
        "--data",
        str(d / "train.csv"),
        "--labels",
        str(d / "labels.json"),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--crop",
        "64",
        "--max-steps",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--tensorboard",
        str(tmp_path / "tb"),
        "--out",
        str(tmp_path / "m.pyth"),
    ]
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "tensorboard" in err[0], err
    else:
        try:
            main(args)
        except SystemExit as e:
            assert e.code in (0, None)
        assert any((tmp_path / "tb").iterdir())

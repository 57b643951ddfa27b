"""What ``atfr train`` prints: the loss it measured when ``--max-steps`` stops inside an epoch, and
nothing but its closing line with ``--quiet``."""

import math
import re

import pytest
from train_helpers import tiny_train_set

from atfr_analysis.train.progress import last_loss
from atfr_cli.main import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_train_set(tmp_path_factory.mktemp("d") / "d")  # seven clips: three steps of two per epoch


def _train(tiny, out, *extra) -> tuple[str, str]:
    args = ["train", "slow_tiny", "--data", str(tiny / "train.csv"), "--labels", str(tiny / "labels.json")]
    args += ["--epochs", "1", "--batch-size", "2", "--crop", "64", "--threads", "1", "--out", str(out), *extra]
    main(args)
    return out


def test_a_max_steps_stop_prints_the_loss_it_measured(tiny, tmp_path, capsys):
    _train(tiny, tmp_path / "m.pyth", "--max-steps", "1", "--quiet")
    out = capsys.readouterr().out
    m = re.search(r"0 epochs, 1 steps, .*; loss (\S+) -> (\S+)", out)
    assert m, out
    first, last = float(m.group(1)), float(m.group(2))
    assert math.isfinite(last) and last == first, out  # one step: the loss measured is the first loss


def test_last_loss():
    assert last_loss([2.0], [3.0, 1.0, 2]) == 1.5  # inside an epoch: that epoch so far
    assert last_loss([2.0], [0.0, 0.0, 0]) == 2.0  # at an epoch's end: its mean
    assert math.isnan(last_loss([], [0.0, 0.0, 0]))  # no step


def test_quiet_prints_only_the_closing_line(tiny, tmp_path, capsys):
    _train(tiny, tmp_path / "q.pyth", "--quiet")
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote ") and "1 epochs" in lines[0], cap.out
    assert cap.err == "", cap.err

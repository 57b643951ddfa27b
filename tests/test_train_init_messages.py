"""``train --init-from`` a PyTorchVideo file: checked and described as ``atfr profile`` checks and
describes it (``pytorchvideo.check_fits``, ``Checkpoint.describe()``), and the run says what it
re-initialised."""

import pytest
from test_pytorchvideo import _fixture, ptv_state, write_ptv
from train_helpers import tiny_train_set

from atfr_analysis import build_model
from atfr_analysis.checkpoint import CheckpointError, load_checkpoint
from atfr_analysis.train.init import init_from
from atfr_cli.main import main


@pytest.fixture(scope="module")
def x3d_xs_file(tmp_path_factory):
    return write_ptv(tmp_path_factory.mktemp("ptv") / "x3d_xs_ptv.pyth", ptv_state(_fixture("x3d_xs")))


def test_init_from_pytorchvideo_says_what_profile_says(x3d_xs_file):
    lines: list[str] = []
    info = init_from(build_model("x3d_xs_atfr", num_classes=5), x3d_xs_file, reset_head=True, say=lines.append)
    described = load_checkpoint(x3d_xs_file).describe()  # what `atfr profile` prints after "checkpoint: "
    assert "identity norm on 1 shortcut conv" in described
    assert len(lines) == 2 and lines[0] == f"init-from {x3d_xs_file}: {described}", lines
    assert info["read_as"] == described
    assert lines[1].startswith("re-initialised: 2 head tensor(s)") and "ts_layer" in lines[1], lines


def test_init_from_pytorchvideo_of_another_architecture_names_it(x3d_xs_file):
    with pytest.raises(CheckpointError) as e:
        init_from(build_model("slow_tiny"), x3d_xs_file, reset_head=True)
    msg = str(e.value)
    assert "\n" not in msg and "it is PyTorchVideo's x3d_xs/x3d_s/x3d_m" in msg and "not slow_tiny" in msg, msg


def test_train_cli_refuses_a_pytorchvideo_file_of_another_architecture(x3d_xs_file, tmp_path, capsys):
    d = tiny_train_set(tmp_path / "d")
    args = ["train", "slow_tiny", "--data", str(d / "train.csv"), "--labels", str(d / "labels.json")]
    args += ["--init-from", str(x3d_xs_file), "--reset-head", "--max-steps", "1", "--out", str(tmp_path / "m.pyth")]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "PyTorchVideo's x3d_xs/x3d_s/x3d_m" in err[0], err


def test_train_prints_what_it_read_and_reinitialised(tmp_path, capsys):
    """The lines reach the run's output (stderr, rank 0): the shipped baseline into its _atfr model."""
    from pathlib import Path

    base = Path(__file__).resolve().parents[1] / "atfr_analysis" / "checkpoints" / "slow_tiny.pyth"
    d = tiny_train_set(tmp_path / "d")  # seven classes: not the baseline's head
    args = ["train", "slow_tiny_atfr", "--data", str(d / "train.csv"), "--labels", str(d / "labels.json")]
    args += ["--init-from", str(base), "--reset-head", "--epochs", "1", "--max-steps", "1", "--batch-size", "4"]
    main(args + ["--crop", "64", "--threads", "1", "--out", str(tmp_path / "m.pyth")])
    err = capsys.readouterr().err
    assert f"init-from {base}: {load_checkpoint(base).describe()}" in err, err
    assert "re-initialised: 2 head tensor(s)" in err and "the file does not hold (s2.ts_layer" in err, err

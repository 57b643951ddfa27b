"""--init-from: a baseline (our .pyth, a Caffe2 .pkl) fine-tunes into an _atfr model with only
the SGS weights missing; a head with another class count needs --reset-head, and the record says
what was re-initialised."""

import json
import pickle

import pytest
import torch
from train_helpers import tiny_train_set

from atfr_analysis import build_model
from atfr_analysis.checkpoint import load_checkpoint
from atfr_analysis.data.synthetic import SyntheticConfig
from atfr_analysis.train import TrainConfig, train

BASELINE = "atfr_analysis/checkpoints/slow_tiny.pyth"
DEMO_CLASSES = SyntheticConfig().classes


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    # the classes of the shipped checkpoints (the demo's), so that the baseline's head fits
    tiny_train_set(root / "d", per_class=1, classes=DEMO_CLASSES)
    return root / "d"


def _cfg(d, **kw):
    args = dict(
        model="slow_tiny_atfr",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        epochs=1,
        batch_size=4,
        crop=64,
        lr=0.05,
        max_steps=1,
        threads=1,
        quiet=True,
    )
    args.update(kw)
    return TrainConfig(**args)


def _record(r):
    return load_checkpoint(r.checkpoint).cfg["ATFR_ANALYSIS"]


def test_a_baseline_fine_tunes_into_its_atfr_model(tiny_data, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = train(_cfg(tiny_data, init_from=str(root / BASELINE)), tmp_path / "m.pyth")
    init = _record(r)["init_from"]
    assert init["format"] and not init["head_reset"]
    assert init["reinitialised"] and all("ts_layer" in k for k in init["reinitialised"])
    assert _record(r)["train"]["init_from"].endswith("slow_tiny.pyth")


def test_another_class_count_needs_reset_head(tiny_data, tmp_path, capsys):
    from pathlib import Path

    from atfr_cli.main import main

    root = Path(__file__).resolve().parents[1]
    base = torch.load(root / BASELINE, weights_only=True)
    state = dict(base["model_state"])
    state["head.projection.weight"] = torch.zeros(5, state["head.projection.weight"].shape[1])
    state["head.projection.bias"] = torch.zeros(5)
    ck = tmp_path / "five.pyth"
    torch.save({"model_state": state, "epoch": 1}, ck)
    args = [
        "train",
        "slow_tiny_atfr",
        "--data",
        str(tiny_data / "train.csv"),
        "--labels",
        str(tiny_data / "labels.json"),
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
        "--init-from",
        str(ck),
    ]
    with pytest.raises(SystemExit) as e:
        main(args + ["--out", str(tmp_path / "a.pyth")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another class count" in err[0] and "--reset-head" in err[0], err
    assert not (tmp_path / "a.pyth").exists()
    r = train(_cfg(tiny_data, init_from=str(ck), reset_head=True), tmp_path / "b.pyth")
    init = _record(r)["init_from"]
    assert init["head_reset"] and {"head.projection.weight", "head.projection.bias"} <= set(init["reinitialised"])


def test_a_caffe2_pkl_baseline_fine_tunes_into_atfr(tiny_data, tmp_path, shared_dir):
    """A Caffe2-converted .pkl (PySlowFast's blob names, from the shared fixture's table) of the
    slow_tiny baseline: read by the same loader as `atfr profile`, only SGS re-initialised."""
    fx = json.loads((shared_dir / "fixtures" / "caffe2" / "slow_8x8_r50.json").read_text())
    blob_of = {v["key"]: b for b, v in fx["blobs"].items()}
    torch.manual_seed(0)
    m = build_model("slow_tiny", num_classes=len(DEMO_CLASSES))
    blobs = {blob_of[k]: v.numpy() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    pkl = tmp_path / "slow_tiny.pkl"
    pkl.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    r = train(_cfg(tiny_data, init_from=str(pkl)), tmp_path / "m.pyth")
    init = _record(r)["init_from"]
    assert init["format"] == "caffe2" and all("ts_layer" in k for k in init["reinitialised"])


@pytest.mark.slow
def test_a_pytorchvideo_baseline_fine_tunes_into_atfr(tiny_data, tmp_path):
    """PyTorchVideo's X3D-XS (its model-zoo layout, 400 classes, weights by the fixture's recipe)
    into x3d_xs_atfr on the demo's classes: SGS and the head re-initialised, nothing else, and said so."""
    from test_pytorchvideo import _fixture, ptv_state, write_ptv

    fx = _fixture("x3d_xs")
    ck = write_ptv(tmp_path / "x3d_xs_ptv.pyth", ptv_state(fx))
    r = train(
        _cfg(tiny_data, model="x3d_xs_atfr", crop=160, batch_size=2, init_from=str(ck), reset_head=True),
        tmp_path / "m.pyth",
    )
    init = _record(r)["init_from"]
    assert init["format"] == "pytorchvideo" and init["head_reset"]
    assert init["reinitialised"]
    assert all("sgs" in k or "ts_layer" in k or k.startswith("head.") for k in init["reinitialised"]), init
    assert any(k.startswith("head.") for k in init["reinitialised"])
    assert any(not k.startswith("head.") for k in init["reinitialised"])

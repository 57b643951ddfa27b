"""A short training run lowers the loss; the checkpoint it writes loads back strictly."""
import pytest

from atfr_analysis import build_model
from atfr_analysis.checkpoint import check_cfg, load_checkpoint, load_state_into
from atfr_analysis.data.synthetic import make_dataset
from atfr_analysis.train import TrainConfig, cosine_lr, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root / "d", seed=3, frames=16, size=64, clips_per_class_train=1, clips_per_class_test=0)
    return root / "d"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["slow_tiny", "slow_tiny_atfr"])
def test_short_training_lowers_the_loss(tiny_data, tmp_path, model):
    cfg = TrainConfig(
        model=model, data=str(tiny_data / "train.csv"), labels=str(tiny_data / "labels.json"),
        epochs=12, batch_size=7, lr=0.4, warmup_epochs=1, weight_decay=0.0, crop=64,
        scale_jitter=(1.0, 1.0), clip_grad=10.0, seed=0, quiet=True,
    )
    r = train(cfg, tmp_path / "m.pyth")
    assert r.steps == 12 and len(r.losses) == 12
    first, last = sum(r.losses[:3]) / 3, sum(r.losses[-3:]) / 3
    assert last < first, r.losses
    ck = load_checkpoint(r.checkpoint)
    m = build_model(model, num_classes=7)
    assert check_cfg(ck.facts, m) == []
    load_state_into(m, ck.state_dict)
    rec = ck.cfg["ATFR_ANALYSIS"]
    assert rec["model"] == model and rec["steps"] == 12 and rec["class_names"][0] == "still"


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1.0, 10) == pytest.approx(0.01)
    assert cosine_lr(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, 10) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0, 10) == pytest.approx(0.0, abs=1e-12)

"""A short training run lowers the loss; the checkpoint it writes loads back strictly."""

import pytest
from train_helpers import tiny_train_set

from atfr_analysis import build_model
from atfr_analysis.checkpoint import check_cfg, load_checkpoint, load_state_into
from atfr_analysis.train import TrainConfig, cosine_lr, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return tiny_train_set(tmp_path_factory.mktemp("synth") / "d")


def _cfg(tiny_data, model="slow_tiny_atfr", **kw):
    args = dict(
        model=model,
        data=str(tiny_data / "train.csv"),
        labels=str(tiny_data / "labels.json"),
        epochs=3,
        batch_size=4,
        lr=0.4,
        warmup_epochs=1,
        weight_decay=0.0,
        crop=64,
        scale_jitter=(1.0, 1.25),
        clip_grad=10.0,
        seed=0,
        quiet=True,
        threads=1,
    )
    args.update(kw)
    return TrainConfig(**args)


def test_two_seeded_trainings_give_identical_losses(tiny_data, tmp_path):
    """Issue 21 item 4: the same seed gives the same losses, bit for bit, on the CPU, even when
    something else in the process changed torch's thread count in between (the run sets its own:
    a CPU reduction's order, and so its last bits, follows the thread count)."""
    import torch

    before = torch.get_num_threads()
    a = train(_cfg(tiny_data), tmp_path / "a.pyth")
    torch.set_num_threads(2 if before == 1 else 1)
    try:
        b = train(_cfg(tiny_data), tmp_path / "b.pyth")
    finally:
        torch.set_num_threads(before)
    assert a.steps == b.steps == 3
    assert [x.hex() for x in a.losses] == [x.hex() for x in b.losses]
    wa, wb = load_checkpoint(a.checkpoint).state_dict, load_checkpoint(b.checkpoint).state_dict
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.get_num_threads() == before  # restored after the run


def test_a_clip_is_the_same_whatever_worker_draws_it(tiny_data):
    """A clip's augmentation is a function of (seed, epoch, item) only: the same in any order."""
    import torch

    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.train import TrainClips, item_seed

    entries = read_video_list(str(tiny_data / "train.csv"), data_root=str(tiny_data))[:3]
    spec = build_model("slow_tiny", num_classes=7).spec
    ds = TrainClips(entries, spec, 64, cache=False, seed=5)
    ds.epoch = 2
    fwd = [ds[i][0][0] for i in range(3)]
    rev = [ds[i][0][0] for i in reversed(range(3))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(fwd, rev))
    assert item_seed(5, 2, 0) == item_seed(5, 2, 0) != item_seed(5, 3, 0)


@pytest.mark.slow
def test_training_overfits_a_small_set_far_below_chance(tiny_data, tmp_path):
    """Learning that cannot be noise: 7 clips (one per class), 16 steps; the last 4 losses average
    below half of ln 7 (1.95, a uniform guess, where the model starts)."""
    import math

    r = train(
        _cfg(tiny_data, model="slow_tiny", epochs=16, batch_size=7, warmup_epochs=0, scale_jitter=(1.0, 1.0)),
        tmp_path / "m.pyth",
    )
    assert r.steps == 16
    assert abs(r.losses[0] - math.log(7)) < 0.25, r.losses
    assert sum(r.losses[-4:]) / 4 < 0.5 * math.log(7), r.losses
    ck = load_checkpoint(r.checkpoint)
    m = build_model("slow_tiny", num_classes=7)
    assert check_cfg(ck.facts, m) == []
    load_state_into(m, ck.state_dict)
    rec = ck.cfg["ATFR_ANALYSIS"]
    assert rec["model"] == "slow_tiny" and rec["steps"] == 16 and rec["class_names"][0] == "still"
    assert rec["threads"] == 1


@pytest.mark.parametrize("model", ["slow_tiny", "slow_tiny_atfr"])
def test_diverging_training_stops_with_one_line_and_keeps_the_last_checkpoint(tiny_data, tmp_path, capsys, model):
    """Issue 21 item 3: --lr 1e12 stops at the step it diverges with a one-line error (exit 2),
    no longer a crash inside SGS's pooling; the checkpoint of the last finished epoch stays."""
    from atfr_cli.main import main

    out = tmp_path / "m.pyth"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "train",
                model,
                "--data",
                str(tiny_data / "train.csv"),
                "--labels",
                str(tiny_data / "labels.json"),
                "--out",
                str(out),
                "--epochs",
                "5",
                "--batch-size",
                "4",
                "--crop",
                "64",
                "--lr",
                "1e12",
                "--warmup-epochs",
                "0",
                "--threads",
                "1",
                "--quiet",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training diverged at step "), err
    step = int(err[0].split("step ")[1].split()[0])
    assert step >= 2 and f"(epoch {step - 1}) is kept" in err[0], err
    kept = err[0].split("the last good checkpoint ")[1].split(" (epoch")[0]
    ck = load_checkpoint(kept)  # the last good epoch's weights: finite
    assert ck.meta["epoch"] == step - 1 and not out.exists()
    assert all(bool(v.isfinite().all()) for v in ck.state_dict.values() if v.is_floating_point())


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1.0, 10) == pytest.approx(0.01)
    assert cosine_lr(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, 10) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0, 10) == pytest.approx(0.0, abs=1e-12)


def _list_with_bad_video(tiny_data, tmp_path, bad: int):
    lines = (tiny_data / "train.csv").read_text().splitlines()
    for k in range(bad):
        (tmp_path / f"broken{k}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 50)
        lines.append(f"{tmp_path / f'broken{k}.mp4'} 3")
    lst = tmp_path / "with_bad.csv"
    lst.write_text("\n".join(lines) + "\n")
    return lst


def test_undecodable_videos_are_recorded_and_skipped(tiny_data, tmp_path):
    """Issue 14 item 7: one undecodable video of 8 is skipped and counted in the checkpoint's record."""
    lst = _list_with_bad_video(tiny_data, tmp_path, 1)
    cfg = TrainConfig(
        model="slow_tiny",
        data=str(lst),
        labels=str(tiny_data / "labels.json"),
        data_root=str(tiny_data),
        epochs=1,
        batch_size=4,
        crop=64,
        max_steps=1,
        max_failed_fraction=0.2,
        seed=0,
        quiet=True,
    )
    r = train(cfg, tmp_path / "m.pyth")
    assert r.failed == 1
    rec = load_checkpoint(r.checkpoint).cfg["ATFR_ANALYSIS"]
    assert rec["failed_videos"] == 1 and rec["videos_listed"] == 8 and rec["videos_trained"] == 7
    assert rec["failed"][0]["path"].endswith("broken0.mp4") and rec["failed"][0]["reason"]


def test_too_many_undecodable_videos_stop_with_one_line(tiny_data, tmp_path, capsys):
    """Above --max-failed-fraction: a one-line error (exit 2) before any training step."""
    from atfr_cli.main import main

    lst = _list_with_bad_video(tiny_data, tmp_path, 2)  # 2 of 9 > 0.1
    with pytest.raises(SystemExit) as e:
        main(
            [
                "train",
                "slow_tiny",
                "--data",
                str(lst),
                "--labels",
                str(tiny_data / "labels.json"),
                "--data-root",
                str(tiny_data),
                "--out",
                str(tmp_path / "m.pyth"),
                "--epochs",
                "1",
                "--quiet",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 2 of 9 training videos cannot be decoded"), err
    assert not (tmp_path / "m.pyth").exists()


def test_validation_split_is_stratified_and_disjoint(tiny_data):
    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.train import split_validation

    entries = read_video_list(str(tiny_data / "train.csv"), data_root=str(tiny_data)) * 4  # 4 per label
    tr, va = split_validation(entries, 0.25, seed=0)
    assert len(tr) + len(va) == len(entries) and len(va) == 7
    assert sorted(e.label for e in va) == list(range(7))
    assert split_validation(entries, 0.25, seed=0)[1] == va


def test_precise_bn_uses_population_statistics():
    """Batches of unequal sizes and different means: the running statistics are the population's
    (as exact batching after SGS feeds one BN groups of different sizes)."""
    import torch
    from torch import nn

    from atfr_analysis.train import precise_bn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm3d(2)

        def forward(self, xs):
            return self.bn(xs[0])

    g = torch.Generator().manual_seed(0)
    batches = [
        ([torch.randn(n, 2, 3, 2, 2, generator=g) * s + m], None)
        for n, s, m in ((1, 1.0, 5.0), (4, 2.0, -1.0), (2, 0.5, 0.0))
    ]
    m = M()
    assert precise_bn(m, batches, 3) == 3
    x = torch.cat([b[0][0] for b in batches]).transpose(0, 1).reshape(2, -1).double()
    assert torch.allclose(m.bn.running_mean.double(), x.mean(1), atol=1e-6)
    assert torch.allclose(m.bn.running_var.double(), x.var(1, unbiased=True), atol=1e-5)


def test_sgs_grad_clamp_zero_stops_the_embedding_gradient_only():
    import torch

    from atfr_analysis.train import sgs_grad_clamp_hooks

    torch.manual_seed(0)
    m = build_model("slow_tiny_atfr", num_classes=7)
    m.set_batching("exact")
    hooks = sgs_grad_clamp_hooks(m, 0.0)
    x = torch.randn(2, 3, 16, 64, 64)
    m([x]).sum().backward()
    for h in hooks:
        h.remove()
    sgs = [(n, p) for n, p in m.named_parameters() if "ts_layer" in n]  # the SGS embedding: MLP and BN1d
    assert sgs and all(p.grad is None or float(p.grad.abs().max()) == 0.0 for _, p in sgs), [n for n, _ in sgs]
    stem = next(p for n, p in m.named_parameters() if n.startswith("s1"))
    assert stem.grad is not None and float(stem.grad.abs().max()) > 0


@pytest.mark.slow
def test_loader_workers_give_the_losses_of_the_main_process(tiny_data, tmp_path):
    """Clips decoded in 2 forkserver workers are the clips the main process decodes: the same
    losses, bit for bit (each clip's draws come from its own seed, the loader has its own generator)."""
    a = train(_cfg(tiny_data, batch_size=2), tmp_path / "a.pyth")
    b = train(_cfg(tiny_data, batch_size=2, workers=2), tmp_path / "b.pyth")
    assert [x.hex() for x in a.losses] == [x.hex() for x in b.losses]


def test_a_video_that_fails_when_drawn_is_recorded_and_the_next_stands_in(tiny_data, tmp_path):
    """On-the-fly decoding: a video gone (or broken) after the list was checked is recorded with its
    reason, and the next video of the list gives the item, so the batch keeps its size."""
    import dataclasses

    import torch

    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.train import TrainClips
    from atfr_analysis.train.data import collate_clips

    entries = list(read_video_list(str(tiny_data / "train.csv"), data_root=str(tiny_data))[:3])
    gone = dataclasses.replace(entries[0], path=tmp_path / "gone.mp4")
    ds = TrainClips([gone] + entries[1:], build_model("slow_tiny", num_classes=7).spec, 64, seed=0)
    x, label, failures = ds[(0, 0)]
    assert label == entries[1].label and len(failures) == 1
    assert failures[0]["path"].endswith("gone.mp4") and failures[0]["reason"]
    assert torch.equal(x[0], ds[(0, 1)][0][0])  # the stand-in is item 1's clip of that epoch
    batch = collate_clips([ds[(0, 0)], ds[(0, 2)]])
    assert batch.labels.shape[0] == 2 and len(batch.failures) == 1

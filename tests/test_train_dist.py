"""DDP on the CPU (gloo): 2 processes at a global batch of 8 train the weights 1 process at 8 does."""

import os
import socket

import pytest
import torch
from train_helpers import kill_tree, tiny_train_set

from atfr_analysis.train import RunFolder, TrainConfig, train


def _cfg(d, **kw):
    args = dict(
        model="slow_tiny",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        data_root=str(d),
        epochs=2,
        batch_size=8,
        crop=64,
        lr=0.1,
        warmup_epochs=0,
        threads=1,
        quiet=True,
        freeze_bn=True,
        model_overrides={"dropout_rate": 0.0},
        weight_decay=1e-4,
    )
    args.update(kw)
    return TrainConfig(**args)


def _rank(rank: int, world: int, port: int, d, out) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    train(_cfg(d), out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_at_the_same_global_batch(tmp_path):
    """Frozen BN, no dropout: the global batches are the same sets (the sampler cuts each into
    per-rank parts), DDP averages the gradients, the lr follows the global batch; after 4 steps
    the weights agree to 1e-5 relative (1e-7 absolute). The two differ only by rounding (the order
    of the gradient sums), which each step's update carries forward in proportion to the learning
    rate: at lr 0.4 one near-zero weight of s4 ended 1.3e-7 apart on the panning data set, at lr
    0.1 (this test) the largest difference is 1.5e-8. (The baseline. With SGS, slow_tiny_atfr, they do not: after
    one step every tensor agrees to 5e-6 relative but the bias of the SGS MLP's last layer, whose
    gradient is zero in exact arithmetic (the distance to the clip's mean embedding is blind to a
    shift of the embedding), so rounding noise, which depends on the order of the sums and which
    SGS's backward, 2B / max(Delta), amplifies: 1.1e-3 apart on values of 4.8e-3; after 4 steps the
    stem's weights are 0.9% apart. Measured on this 2-core CPU.)"""
    import torch.multiprocessing as mp

    d = tmp_path / "d"
    tiny_train_set(d, per_class=3)  # 21 videos
    one = train(_cfg(d), tmp_path / "one")
    assert one.steps == 4
    ctx = mp.get_context("forkserver")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, d, tmp_path / "two")) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0, 0]
    a = torch.load(one.checkpoint, weights_only=True)["model_state"]
    b = torch.load(RunFolder.of(tmp_path / "two").final, weights_only=True)["model_state"]
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k
    rec = torch.load(RunFolder.of(tmp_path / "two").latest(), weights_only=True)["train_state"]
    assert rec["world_size"] == 2 and len(rec["rng"]) == 2


def _torchrun_train(d, out, *val) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "atfr_cli.main",
        "train",
        "slow_tiny",
        "--data",
        str(d / "train.csv"),
        "--labels",
        str(d / "labels.json"),
        *val,
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--crop",
        "64",
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["val", "val_fraction"])
def test_torchrun_training_with_validation_profiles_every_video_once(tmp_path, how):
    """The README's multi-GPU command with validation (2 gloo processes): it used to hang at the end
    of epoch 1 (rank 0's profile took torchrun's RANK/WORLD_SIZE as its shard, 0 of 2, and waited for
    a rank 1 that waited in the trainer). Now each rank profiles its shard into the one folder: the
    run finishes, val/epoch_001 holds every validation video once, from both shards, and opens with
    `atfr report`."""
    import subprocess

    from atfr_analysis.profile.log import load_videos, read_meta
    from atfr_cli.main import main

    d = tmp_path / "d"
    tiny_train_set(d, per_class=2)  # 14 videos
    if how == "val":
        lines = (d / "train.csv").read_text().splitlines()
        (d / "val.csv").write_text("".join(f"{x}\n" for x in lines[::2]))
        val, expected = ["--val", str(d / "val.csv")], len(lines[::2])
    else:
        val, expected = ["--val-fraction", "0.5"], 7  # one of each class's two
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_torchrun_train(d, tmp_path / "run", *val), stderr=subprocess.PIPE, text=True, env=env)
    try:
        err = proc.communicate(timeout=180)[1]
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError("torchrun training with validation did not finish in 180 s") from None
    assert proc.returncode == 0, err[-3000:]
    folder = tmp_path / "run" / "val" / "epoch_001"
    vids = load_videos(folder)
    assert len(vids) == vids["video_id"].nunique() == expected and (vids["status"] == "ok").all()
    assert {p.name.split("-")[1] for p in folder.glob("videos-*.parquet")} == {"000of002", "001of002"}
    meta = read_meta(folder)
    assert meta["num_videos"] == expected and meta["summary"]["videos_ok"] == expected and meta["end_time"]
    try:
        code = main(["report", str(folder), "--out", str(tmp_path / "rep")])
    except SystemExit as e:
        code = e.code
    assert code in (0, None) and any((tmp_path / "rep").iterdir())

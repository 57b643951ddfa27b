"""The options of ``atfr train`` that no other test passes, each with its effect
(tests/test_cli_options.py lists them): short runs of the shipped ``slow_tiny_atfr`` (or
``slow_tiny`` from scratch) on four synthetic clips of its four classes, one step or one epoch."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from profile_helpers import run_cli
from train_helpers import SHIPPED_CLASSES, tiny_train_set

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "atfr_analysis" / "checkpoints"
ATFR = SHIPPED / "slow_tiny_atfr.pyth"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One train and one test clip of each of the shipped model's classes (16 frames, 64 px)."""
    return tiny_train_set(tmp_path_factory.mktemp("cover_train") / "d", classes=SHIPPED_CLASSES, test_per_class=1)


def _train(capsys, data: Path, out: Path, *extra, model: str = "slow_tiny_atfr") -> tuple[int, str, str]:
    return run_cli(
        capsys,
        "train",
        model,
        "--data",
        data / "train.csv",
        "--labels",
        data / "labels.json",
        "--out",
        out,
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
        *extra,
    )


def _ok(result) -> str:
    code, out, err = result
    assert code == 0, err
    return out


def _record(path: Path) -> dict:
    from atfr_analysis.checkpoint import load_checkpoint

    return load_checkpoint(path).cfg["ATFR_ANALYSIS"]


def _raw_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def _bn_buffers(state) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def _first_loss(out: str) -> float:
    return float(out.split("loss ")[1].split(" ->")[0])


def test_seed_batching_and_cache(data, tmp_path, capsys):
    """One step each: another --seed draws other clips' windows and crops (another first loss);
    --batching padded runs the batch at its largest B' (another loss); --cache changes nothing."""
    base = ("--init-from", ATFR, "--max-steps", "1")
    a = _ok(_train(capsys, data, tmp_path / "a", *base, "--seed", "1", "--batching", "exact"))
    b = _ok(_train(capsys, data, tmp_path / "b", *base, "--seed", "2"))
    c = _ok(_train(capsys, data, tmp_path / "c", *base, "--seed", "1", "--batching", "padded"))
    d = _ok(_train(capsys, data, tmp_path / "d", *base, "--seed", "1", "--cache"))
    assert _first_loss(a) != _first_loss(b)
    assert _first_loss(a) != _first_loss(c)
    assert _first_loss(a) == _first_loss(d)
    wa, wd = _raw_state(tmp_path / "a" / "model.pyth"), _raw_state(tmp_path / "d" / "model.pyth")
    assert all(torch.equal(wa[k], wd[k]) for k in wa)
    rec = _record(tmp_path / "c" / "model.pyth")["train"]
    assert rec["seed"] == 1 and rec["batching"] == "padded" and _record(tmp_path / "d" / "model.pyth")["train"]["cache"]


def test_frozen_bn_no_sgs_gradient_no_weight_decay_fp16_checkpoint(data, tmp_path, capsys):
    """--freeze-bn keeps every BN statistic, --sgs-grad-clamp 0 with --weight-decay 0 every SGS
    embedding weight, while the rest trains; --fp16-checkpoint stores the weights in fp16."""
    out = tmp_path / "m"
    _ok(
        _train(
            capsys, data, out, "--init-from", ATFR, "--freeze-bn", "--sgs-grad-clamp", "0", "--weight-decay", "0",
            "--fp16-checkpoint", "--lr", "0.5",
        )
    )  # fmt: skip
    init, got = _raw_state(ATFR), _raw_state(out / "model.pyth")
    floats = [k for k, v in got.items() if v.is_floating_point()]
    assert floats and all(got[k].dtype == torch.float16 for k in floats)
    same = {k for k in floats if torch.equal(got[k], init[k].half())}
    sgs = {k for k in floats if k.startswith("s2.ts_layer.") and not k.endswith(("running_mean", "running_var"))}
    assert sgs and sgs <= same
    assert set(_bn_buffers({k: got[k] for k in floats})) <= same
    assert any(k not in same for k in floats if not k.startswith("s2.ts_layer.")), "nothing trained"
    rec = _record(out / "model.pyth")["train"]
    assert rec["weight_decay"] == 0 and rec["sgs_grad_clamp"] == 0 and rec["fp16_checkpoint"] is True


def _bn_moved(out: Path) -> int:
    """How many BN statistics of the run's checkpoint differ from the shipped checkpoint's."""
    init, got = _bn_buffers(_raw_state(ATFR)), _bn_buffers(_raw_state(out / "model.pyth"))
    assert set(init) == set(got)
    return sum(not torch.equal(got[k], init[k]) for k in init)


def test_precise_bn_first_and_precise_bn_recompute_frozen_statistics(data, tmp_path, capsys):
    """With --freeze-bn the statistics stay as read (above); --precise-bn-first N recomputes them
    before the first step, --precise-bn N after the last."""
    n = len(_bn_buffers(_raw_state(ATFR)))
    first, last = tmp_path / "first", tmp_path / "last"
    _ok(_train(capsys, data, first, "--init-from", ATFR, "--freeze-bn", "--lr", "1e-6", "--precise-bn-first", "2"))
    _ok(_train(capsys, data, last, "--init-from", ATFR, "--freeze-bn", "--lr", "1e-6", "--precise-bn", "2"))
    assert _bn_moved(first) > n // 2 and _bn_moved(last) > n // 2
    assert _record(first / "model.pyth")["train"]["precise_bn_first"] == 2
    assert _record(last / "model.pyth")["train"]["precise_bn"] == 2


def _zero_sum_share(state) -> float:
    """The mean share of zero-sum (over time) output channels of the temporal convolutions."""
    shares = []
    for k, w in state.items():
        if k.endswith(".weight") and w.dim() == 5 and w.shape[2] > 1:
            s = w.float().sum(dim=2).flatten(1).abs().amax(dim=1)
            shares.append(float((s < 1e-6).float().mean()))
    assert shares, "no temporal convolution"
    return sum(shares) / len(shares)


def test_temporal_diff_init(data, tmp_path, capsys):
    """From scratch, --temporal-diff-init 0.5 starts half of each temporal conv's output channels as
    zero-sum kernels over time (a learning rate of 1e-9 leaves them so); 0 (the default) none."""
    half, none = tmp_path / "half", tmp_path / "none"
    _ok(
        _train(capsys, data, half, "--temporal-diff-init", "0.5", "--lr", "1e-9", "--max-steps", "1", model="slow_tiny")
    )
    _ok(_train(capsys, data, none, "--temporal-diff-init", "0", "--lr", "1e-9", "--max-steps", "1", model="slow_tiny"))
    assert math.isclose(_zero_sum_share(_raw_state(half / "model.pyth")), 0.5, abs_tol=0.05)
    assert _zero_sum_share(_raw_state(none / "model.pyth")) < 0.05


def test_max_loss_stops_the_run_with_one_line(data, tmp_path, capsys):
    code, _, err = _train(capsys, data, tmp_path / "m", "--init-from", ATFR, "--max-loss", "1e-3")
    lines = err.strip().splitlines()
    assert (
        code == 2
        and len(lines) == 1
        and "diverged at step 1" in lines[0]
        and "1e-03" in lines[0].replace("0.001", "1e-03")
    )
    assert not (tmp_path / "m" / "model.pyth").exists()


def test_max_failed_fraction(data, tmp_path, capsys):
    """One of five videos cannot be decoded: more than the default 0.1 fails, refused in one line
    with no checkpoint; --max-failed-fraction 0.5 trains on the other four and records the one."""
    d = tmp_path / "d"
    shutil.copytree(data, d)
    (d / "train" / "broken.mp4").write_text("not a video\n" * 10)
    with open(d / "train.csv", "a") as f:
        f.write("train/broken.mp4 0\n")
    code, _, err = _train(capsys, d, tmp_path / "refused", "--init-from", ATFR)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "refused" / "model.pyth").exists()
    _ok(_train(capsys, d, tmp_path / "ok", "--init-from", ATFR, "--max-failed-fraction", "0.5"))
    rec = _record(tmp_path / "ok" / "model.pyth")
    assert rec["failed_videos"] == 1 and rec["videos_trained"] == 4 and rec["train"]["max_failed_fraction"] == 0.5


def test_resume(data, tmp_path, capsys):
    """--resume continues from the newest state (here step 1's, as after a kill before step 2's was
    written) to the weights of the run never interrupted; with no state it is refused."""
    code, _, err = _train(capsys, data, tmp_path / "empty", "--resume")
    assert code == 2 and "holds no training state" in err
    full = tmp_path / "full"
    _ok(_train(capsys, data, full, "--init-from", ATFR, "--checkpoint-every", "1"))
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    (cut / "model.pyth").unlink()
    for p in (cut / "checkpoints").glob("checkpoint_step_000000002.pyth*"):
        p.unlink()
    assert sorted(p.name for p in (cut / "checkpoints").glob("*.pyth")) == ["checkpoint_step_000000001.pyth"]
    _ok(_train(capsys, data, cut, "--init-from", ATFR, "--checkpoint-every", "1", "--resume"))
    a, b = _raw_state(full / "model.pyth"), _raw_state(cut / "model.pyth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _record(cut / "model.pyth")["train"]["resume"] is True


def test_val_views_and_val_crops(data, tmp_path, capsys):
    """The validation run profiles --val-views x --val-crops views of every validation video."""
    import json

    out = tmp_path / "m"
    _ok(
        _train(
            capsys,
            data,
            out,
            "--init-from",
            ATFR,
            "--freeze-bn",
            "--lr",
            "0.01",
            "--clip-grad",
            "10",
            "--val",
            data / "test.csv",
            "--val-views",
            "2",
            "--val-crops",
            "3",
        )  # fmt: skip
    )
    meta = json.loads((out / "val" / "epoch_001" / "run.json").read_text())
    assert (meta["views"], meta["crops"], meta["num_videos"]) == (2, 3, 4)
    from atfr_analysis import load_run

    assert len(load_run(out / "val" / "epoch_001")) == 4 * 2 * 3


def test_sync_bn_with_freeze_bn_is_refused(data, tmp_path, capsys):
    code, _, err = _train(capsys, data, tmp_path / "m", "--init-from", ATFR, "--sync-bn", "--freeze-bn")
    assert code == 2 and "exclude each other" in err


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_sync_bn_under_torchrun_needs_cuda(data, tmp_path):
    """torchrun on the CPU: --sync-bn (torch's SyncBatchNorm runs on GPUs only) is one line, before
    any step, no checkpoint (the baseline: with SGS, exact batching refuses --sync-bn first)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    argv = [
        str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "atfr_cli.main",
        "train", "slow_tiny", "--data", str(data / "train.csv"), "--labels", str(data / "labels.json"),
        "--out", str(tmp_path / "m"), "--batch-size", "2", "--epochs", "1", "--threads", "1", "--quiet", "--sync-bn",
    ]  # fmt: skip
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    ours = p.stderr.split("Traceback")[0]  # what follows is torchrun's own report of the failed workers
    assert "error: --sync-bn needs CUDA" in ours and "bug in atfr-analysis" not in p.stderr
    assert not (tmp_path / "m" / "model.pyth").exists() and not list((tmp_path / "m").rglob("checkpoint_step_*"))

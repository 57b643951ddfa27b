"""Resume that loses nothing: a SIGKILLed run resumed ends bit-identical to an uninterrupted one;
the run folder is never overwritten; other settings are a one-line error; the last K states kept."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import tiny_train_set

from atfr_analysis.train import ResumeError, RunFolder, TrainConfig, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    tiny_train_set(root / "d", per_class=1)
    return root / "d"


def _cfg(d, **kw):
    args = dict(
        model="slow_tiny_atfr",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        data_root=str(d),
        epochs=3,
        batch_size=2,
        crop=64,
        lr=0.2,
        checkpoint_every=1,
        keep_last=2,
        threads=1,
        quiet=True,
    )
    args.update(kw)
    return TrainConfig(**args)


def _command(d, out):
    return [
        sys.executable,
        "-m",
        "atfr_cli.main",
        "train",
        "slow_tiny_atfr",
        "--data",
        str(d / "train.csv"),
        "--labels",
        str(d / "labels.json"),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--crop",
        "64",
        "--lr",
        "0.2",
        "--checkpoint-every",
        "1",
        "--keep-last",
        "2",
        "--threads",
        "1",
        "--quiet",
    ]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


@pytest.mark.slow
def test_sigkill_mid_epoch_and_resume_is_bit_identical(tiny_data, tmp_path):
    """A real process killed with SIGKILL after its state at step 2 (of 3 in the first epoch), then
    the same command again: the final weights equal an uninterrupted run's, bit for bit (CPU, 1 process)."""
    ref = train(_cfg(tiny_data), tmp_path / "ref")
    out = tmp_path / "killed"
    folder = RunFolder.of(out)
    proc = subprocess.Popen(_command(tiny_data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not folder.state_path(2).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not folder.final.exists() and folder.latest() is not None
    killed_at = int(folder.latest().stem.rsplit("_", 1)[1])
    assert killed_at < ref.steps
    done = subprocess.run(_command(tiny_data, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(ref.checkpoint), _weights(folder.final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "metrics.csv").read_text().count("\n") == 4  # header + 3 epochs, none twice


def test_other_settings_are_a_one_line_error_naming_them(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_data, model="slow_tiny", max_steps=1), out)
    RunFolder.of(out).final.unlink()  # an unfinished run: its state only
    with pytest.raises(ResumeError) as e:
        train(_cfg(tiny_data, model="slow_tiny", lr=0.1, batch_size=4, max_steps=1), out)
    msg = str(e.value)
    assert "\n" not in msg and "lr 0.2 -> 0.1" in msg and "batch_size 2 -> 4" in msg, msg


def test_a_finished_run_is_never_overwritten(tiny_data, tmp_path, capsys):
    from atfr_cli.main import main

    out = tmp_path / "m.pyth"
    train(_cfg(tiny_data, model="slow_tiny", max_steps=2), out)
    before = out.read_bytes()
    with pytest.raises(SystemExit) as e:
        main(
            [
                "train",
                "slow_tiny",
                "--data",
                str(tiny_data / "train.csv"),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--crop",
                "64",
                "--quiet",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists (a finished run)" in err[0], err
    assert out.read_bytes() == before


def test_states_are_atomic_and_the_last_k_kept(tiny_data, tmp_path):
    out = tmp_path / "m.pyth"
    train(_cfg(tiny_data, model="slow_tiny", max_steps=3, keep_last=2), out)
    folder = RunFolder.of(out)
    assert folder.root == tmp_path / "m.run"
    assert [p.name for p in folder.states()] == ["checkpoint_step_000000002.pyth", "checkpoint_step_000000003.pyth"]
    assert not [p for p in folder.checkpoints.iterdir() if ".tmp" in p.name]
    obj = torch.load(folder.latest(), weights_only=True)
    assert {"model_state", "optimizer_state", "scaler_state", "epoch", "cfg", "train_state"} <= obj.keys()
    ts = obj["train_state"]
    assert ts["step"] == 3 and ts["epoch"] == 1 and ts["batch"] == 0 and len(ts["rng"]) == 1


def test_resume_without_a_state_is_an_error(tiny_data, tmp_path):
    with pytest.raises(ResumeError, match="holds no training state"):
        train(_cfg(tiny_data, model="slow_tiny", resume=True), tmp_path / "none")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _torchrun(d, out):
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
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--crop",
        "64",
        "--lr",
        "0.2",
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.slow
def test_sigkill_and_resume_with_two_processes_is_bit_identical(tmp_path):
    """torchrun with 2 gloo processes, the whole process group SIGKILLed after the state at step 2,
    the same command again: bit-identical to an uninterrupted 2-process run."""
    import os

    d = tmp_path / "d"
    tiny_train_set(d, per_class=2)  # 14 videos, 3 steps/epoch
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = subprocess.run(_torchrun(d, tmp_path / "ref"), capture_output=True, text=True, timeout=600, env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    folder = RunFolder.of(out)
    proc = subprocess.Popen(_torchrun(d, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not folder.state_path(2).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victims = [proc.pid] + _descendants(proc.pid)  # torchrun starts its workers in sessions of their own
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the workers' ends reaped by init
    assert not folder.final.exists() and folder.latest() is not None
    done = subprocess.run(_torchrun(d, out), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(RunFolder.of(tmp_path / "ref").final), _weights(folder.final)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(torch.load(folder.latest(), weights_only=True)["train_state"]["rng"]) == 2

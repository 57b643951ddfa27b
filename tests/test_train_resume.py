"""Resume that loses nothing: a SIGKILLed run resumed ends bit-identical to an uninterrupted one;
the run folder is never overwritten; other settings are a one-line error; the last K states kept."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import descendants, tiny_train_set

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


def _command(d, out, epochs: int = 3, extra=(), launch=("-m", "atfr_cli.main")):
    return [
        sys.executable,
        *launch,
        "train",
        "slow_tiny_atfr",
        "--data",
        str(d / "train.csv"),
        "--labels",
        str(d / "labels.json"),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
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
        *extra,
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
    victims = [proc.pid] + descendants(proc.pid)  # torchrun starts its workers in sessions of their own
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


# ----------------------------------------------------------------------------- kills at every point, --precise-bn
@pytest.fixture(scope="module")
def val_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_val")
    tiny_train_set(root / "d", per_class=2)  # 14 videos: 7 trained (3 steps per epoch), 7 validated
    return root / "d"


#: 2 epochs of 3 steps, validation (the held-out half) after each, precise BN after the last
_PBN = dict(epochs=2, val_fraction=0.5, precise_bn=6)
_PBN_ARGS = ["--val-fraction", "0.5", "--precise-bn", "6"]
_LAST = 6  # the last step, whose state precedes precise BN

#: the CLI, SIGKILLed by itself inside the write of the training state of step argv[1]: the
#: temporary file written and flushed to disk, not yet renamed into place
_KILL_IN_STATE_WRITE = """
import os, signal, sys
step = int(sys.argv.pop(1))
real = os.fsync
def fsync(fd):
    real(fd)
    if f"checkpoint_step_{step:09d}" in os.readlink(f"/proc/self/fd/{fd}"):
        os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync
from atfr_cli.main import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def pbn_reference(val_data, tmp_path_factory):
    """The uninterrupted run's final weights."""
    r = train(_cfg(val_data, **_PBN), tmp_path_factory.mktemp("pbn_ref") / "ref")
    assert r.steps == _LAST and len(r.val_acc) == 2
    return _weights(r.checkpoint)


def _wait_then_kill(proc, ready, pause: float = 0.0) -> None:
    deadline = time.monotonic() + 300
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["state_write", "validation", "precise_bn", "last_epoch"])
def test_sigkill_at_any_point_with_precise_bn_resumes_bit_identical(val_data, pbn_reference, tmp_path, point):
    """SIGKILL during the last state's write, during the last validation, during precise BN, mid
    last epoch; the same command again ends with the uninterrupted run's weights and BN buffers,
    bit for bit. (Precise BN used to draw the batches where the loader stopped: those of the last
    epoch from the batch a resumed run started at, or of epoch 0 after a kill during precise BN:
    81 BN buffers differed.)"""
    out = tmp_path / "killed"
    folder = RunFolder.of(out)
    if point == "state_write":
        launch = ("-c", _KILL_IN_STATE_WRITE, str(_LAST))
        proc = subprocess.Popen(_command(val_data, out, 2, _PBN_ARGS, launch), stderr=subprocess.PIPE)
        proc.wait()
        assert folder.latest() is not None and folder.latest() != folder.state_path(_LAST)
    else:
        proc = subprocess.Popen(_command(val_data, out, 2, _PBN_ARGS), stderr=subprocess.PIPE)
        ready = {
            "validation": lambda: (out / "val" / "epoch_002" / "run.json").exists(),
            "precise_bn": lambda: folder.state_path(_LAST).exists(),
            "last_epoch": lambda: folder.state_path(_LAST - 2).exists(),
        }[point]
        _wait_then_kill(proc, ready, 0.05 if point == "precise_bn" else 0.0)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not folder.final.exists()
    done = subprocess.run(_command(val_data, out, 2, _PBN_ARGS), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    b = _weights(folder.final)
    assert pbn_reference.keys() == b.keys()
    assert [k for k in b if not torch.equal(pbn_reference[k], b[k])] == []
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs, none twice


# ----------------------------------------------------------------------------- killed during validation, other settings
@pytest.mark.slow
@pytest.mark.parametrize("change", [["--threads", "2"], ["--val-views", "2"]])
def test_killed_during_validation_resumes_with_other_threads_or_val_views(val_data, tmp_path, change):
    """A run killed during its validation and run again with a setting the trainer lets change
    (--threads: other last bits in the weights; --val-views: another protocol) used to be stuck
    ("val/epoch_001 holds a run with other settings; choose another --out", after training the step
    again, at every rerun). The validation folder is the trainer's own: it is profiled again from
    scratch, for the weights and the protocol of the run that finishes. A folder that atfr train
    did not write is refused, and kept."""
    from atfr_analysis.checkpoint import sha256sum
    from atfr_analysis.profile.log import load_videos, read_meta, write_meta

    out = tmp_path / "run"
    val = out / "val" / "epoch_001"
    cmd = _command(val_data, out, 1, ["--val-fraction", "0.5"])
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    _wait_then_kill(proc, lambda: (val / "run.json").exists())
    assert proc.returncode == -signal.SIGKILL and not RunFolder.of(out).final.exists()
    again = cmd + change  # (the last of a repeated option counts)
    if change[0] == "--val-views":  # someone else's run in the folder: refused, not removed
        meta = read_meta(val)
        write_meta(val, dict(meta, command=["atfr", "profile", "x.pyth"]))
        bad = subprocess.run(again, capture_output=True, text=True, timeout=600)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and "atfr train did not write" in lines[0], bad.stderr[-2000:]
        assert (val / "run.json").exists()
        write_meta(val, meta)
    done = subprocess.run(again, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = read_meta(val)
    assert meta["views"] == (2 if change[0] == "--val-views" else 1) and meta["end_time"]
    assert meta["checkpoint_sha256"] == sha256sum(out / "val" / "epoch_001.pyth")
    vids = load_videos(val)
    assert len(vids) == vids["video_id"].nunique() == meta["num_videos"] == 7 and (vids["status"] == "ok").all()

"""Resuming: a run killed part-way (a real process, SIGKILL or SIGTERM) and continued with
``--resume`` gives the same log as an uninterrupted run: same rows, equal values."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from profile_helpers import (
    MODEL,
    assert_same_log,
    atfr_cmd,
    cli_env,
    frozen_and_moving,
    make_checkpoint,
    reference_run,
    run_cli,
    run_subprocess,
    torch_threads,
    write_list,
)

import atfr_analysis
from atfr_analysis.profile.log import done_video_ids, load_videos

VIEWS = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, a list of six real clips, and the log of an uninterrupted run of it."""
    from atfr_analysis.data.samples import sample_videos

    d = tmp_path_factory.mktemp("resume")
    ck = make_checkpoint(d / "ck.pyth")
    frozen, moving = frozen_and_moving(d / "clips")
    v = sample_videos()
    videos = [v["bikes"], v["bigbuckbunny"], moving, v["carphone_pristine"], frozen, v["carphone_distorted"]]
    lst = write_list(d / "val.csv", videos, labels=[0, 1, 0, 2, 3, 3])
    return (ck, lst) + reference_run(ck, lst, d / "ref", VIEWS)


def cmd(ck, lst, out, *extra):
    return atfr_cmd(
        "profile",
        ck,
        "--model",
        MODEL,
        "--data",
        lst,
        "--out",
        out,
        "--views",
        VIEWS,
        "--crops",
        1,
        "--device",
        "cpu",
        "--quiet",
        "--flush-every",
        1,
        *extra,
    )


def start_and_stop_after_first_part(args, out, sig, timeout=240):
    """Start ``atfr profile`` and send ``sig`` as soon as its first part file is on disk."""
    p = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while not list(out.glob("videos-*.parquet")):
            assert p.poll() is None, f"the run ended before its first part: {p.communicate()}"
            assert time.monotonic() - t0 < timeout, "no part file appeared"
            time.sleep(0.02)
        os.kill(p.pid, sig)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, stdout, stderr


def compare_with_reference(out, ref, ref_videos):
    log = atfr_analysis.load_run(out)
    assert_same_log(log, ref)
    assert_same_log(load_videos(out), ref_videos)
    assert log.attrs["meta"]["summary"]["complete"]
    return log


@pytest.mark.slow
def test_killed_process_resumes_to_the_uninterrupted_log(setup, tmp_path):
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    code, _, _ = start_and_stop_after_first_part(cmd(ck, lst, out), out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    done = done_video_ids(out)
    assert 0 < len(done) < len(ref_videos)  # killed part-way
    partial = atfr_analysis.load_run(out)
    assert set(partial["video_id"]) == done
    assert_same_log(partial, ref[ref["video_id"].isin(done)])  # what was written is intact

    p = run_subprocess(cmd(ck, lst, out, "--resume"))
    assert p.returncode == 0, p.stderr
    assert f"{len(done)} done earlier" in p.stdout and "6 ok, 0 failed" in p.stdout
    log = compare_with_reference(out, ref, ref_videos)
    assert len(log) == 6 * VIEWS
    assert log.attrs["meta"]["resumed"][0]["videos_logged"] == len(done)


@pytest.mark.slow
def test_sigterm_flushes_says_one_line_and_resumes(setup, tmp_path):
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    code, stdout, stderr = start_and_stop_after_first_part(cmd(ck, lst, out), out, signal.SIGTERM)
    assert code == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted") and "--resume" in lines[0], stderr
    done = done_video_ids(out)
    assert 0 < len(done) < len(ref_videos)
    with torch_threads(1):
        s = atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, resume=True)
    assert s.skipped == len(done) and s.processed == len(ref_videos) - len(done)
    compare_with_reference(out, ref, ref_videos)


def test_sigterm_in_process_flushes_the_buffered_videos(setup, tmp_path, monkeypatch):
    """SIGTERM while the third video runs: the two buffered ones are written before the end."""
    from atfr_analysis.profile.instrument import Profiler

    ck, lst, ref, ref_videos = setup
    real_run = Profiler.run
    calls = {"n": 0}

    def run(self, clips):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        return real_run(self, clips)

    monkeypatch.setattr(Profiler, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        atfr_analysis.profile(
            ck,
            MODEL,
            lst,
            tmp_path / "run",
            views=VIEWS,
            crops=1,
            batch_size=VIEWS,
            device="cpu",
            quiet=True,
            flush_every=100,
        )
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is restored
    assert done_video_ids(tmp_path / "run") == {0, 1}


def test_stop_and_resume_in_process_equals_the_uninterrupted_run(setup, tmp_path, capsys):
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    with torch_threads(1):
        s1 = atfr_analysis.profile(
            ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, flush_every=1, stop_after=2
        )
        assert s1.processed == 2 and not s1.complete
        assert "incomplete" in "\n".join(s1.lines())
        # a resumption with other settings is refused, and changes nothing
        other = make_checkpoint(tmp_path / "other.pyth", seed=1)
        code, _, err = run_cli(
            capsys,
            "profile",
            other,
            "--model",
            MODEL,
            "--data",
            lst,
            "--out",
            out,
            "--views",
            VIEWS,
            "--crops",
            1,
            "--device",
            "cpu",
            "--quiet",
            "--resume",
        )
        assert code == 2 and "checkpoint_sha256" in err and len(err.strip().splitlines()) == 1
        assert done_video_ids(out) == {0, 1}
        s2 = atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, resume=True)
    assert s2.skipped == 2 and s2.processed == 4 and s2.complete
    compare_with_reference(out, ref, ref_videos)
    # resuming a complete run profiles nothing and changes no row
    s3 = atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, resume=True)
    assert s3.processed == 0 and s3.skipped == 6
    compare_with_reference(out, ref, ref_videos)


def test_orphan_views_part_is_ignored_and_redone(setup, tmp_path):
    """Killed between a part's views file and its videos file: those rows are not in the log, and
    the resumed run writes them again (no duplicates)."""
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    with torch_threads(1):
        atfr_analysis.profile(
            ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, flush_every=1, stop_after=3
        )
        last_videos = sorted(out.glob("videos-*.parquet"))[-1]
        orphan_id = int(np.asarray(load_videos(out)["video_id"]).max())
        last_videos.unlink()  # as if killed before the videos file landed
        assert orphan_id not in set(atfr_analysis.load_run(out)["video_id"])
        atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, resume=True)
    compare_with_reference(out, ref, ref_videos)

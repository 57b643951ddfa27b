"""Sharding: ``torchrun --nproc_per_node 2`` (gloo, CPU) and ``--shard i/n`` job arrays give the
same rows as one process; every shard writes its own parts; load_run reads them all."""

import pandas as pd
import pytest
from profile_helpers import (
    MODEL,
    VENV_BIN,
    assert_same_log,
    make_checkpoint,
    reference_run,
    run_cli,
    run_subprocess,
    sample_list,
    torch_threads,
)

import atfr_analysis
from atfr_analysis.profile.log import load_videos
from atfr_analysis.runtime import parse_shard

VIEWS = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    ck = make_checkpoint(d / "ck.pyth")
    lst = sample_list(d / "val.csv")
    return (ck, lst) + reference_run(ck, lst, d / "ref", VIEWS)


def args(ck, lst, out, *extra):
    return [
        "profile",
        str(ck),
        "--model",
        MODEL,
        "--data",
        str(lst),
        "--out",
        str(out),
        "--views",
        str(VIEWS),
        "--crops",
        "1",
        "--device",
        "cpu",
        *map(str, extra),
    ]


@pytest.mark.slow
def test_torchrun_two_ranks_equals_one_process(setup, tmp_path):
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    torchrun = VENV_BIN / "torchrun"
    assert torchrun.exists()
    p = run_subprocess(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "atfr_cli.main", *args(ck, lst, out, "--quiet")],
        timeout=400,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    # rank 0 prints the summary of the whole run, once
    assert p.stdout.count("run: ") == 1 and "4 ok, 0 failed, 4 of 4 logged" in p.stdout and "shard 0/2" in p.stdout
    names = sorted(f.name for f in out.glob("*.parquet"))
    assert any(n.startswith("views-000of002") for n in names) and any(n.startswith("views-001of002") for n in names)
    log = atfr_analysis.load_run(out)
    assert_same_log(log, ref)
    assert_same_log(load_videos(out), ref_videos)
    meta = log.attrs["meta"]
    assert meta["end_time"] and meta["summary"]["complete"] and meta["summary"]["videos_ok"] == 4
    # rank i took the videos at list positions k % 2 == i
    for i in (0, 1):
        part = list(out.glob(f"videos-00{i}of002-*.parquet"))
        ids = sorted(pd.concat([pd.read_parquet(f) for f in part])["video_id"])
        assert ids == [k for k in range(4) if k % 2 == i]


def test_job_array_shards_equal_one_process(setup, tmp_path, capsys):
    ck, lst, ref, ref_videos = setup
    out = tmp_path / "run"
    with torch_threads(1):
        code, o1, err = run_cli(capsys, *args(ck, lst, out, "--quiet", "--shard", "1/2"))  # any order
        assert code == 0, err
        assert "shard 1/2" in o1 and "2 of 4 logged" in o1 and "incomplete" in o1
        code, o0, err = run_cli(capsys, *args(ck, lst, out, "--quiet", "--shard", "0/2"))
        assert code == 0, err
    assert "4 of 4 logged" in o0
    assert_same_log(atfr_analysis.load_run(out), ref)
    assert_same_log(load_videos(out), ref_videos)
    # a shard run again without --resume is refused; with --resume it has nothing left to do
    code, _, err = run_cli(capsys, *args(ck, lst, out, "--quiet", "--shard", "0/2"))
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, o, err = run_cli(capsys, *args(ck, lst, out, "--quiet", "--shard", "0/2", "--resume"))
    assert code == 0 and "0 videos profiled, 2 done earlier" in o
    # a shard with other settings cannot join the run
    code, _, err = run_cli(capsys, *args(ck, lst, out, "--quiet", "--shard", "1/2", "--batching", "padded"))
    assert code == 2 and "batching" in err
    assert_same_log(atfr_analysis.load_run(out), ref)


def test_resume_with_another_shard_count(setup, tmp_path):
    """Videos are skipped by id: a run begun with 2 shards can be finished by one process."""
    ck, lst, ref, _ = setup
    out = tmp_path / "run"
    with torch_threads(1):
        atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, shard="0/2")
        s = atfr_analysis.profile(ck, MODEL, lst, out, views=VIEWS, crops=1, device="cpu", quiet=True, resume=True)
    assert s.processed == 2 and s.skipped == 2 and s.complete
    assert_same_log(atfr_analysis.load_run(out), ref)


def test_parse_shard(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parse_shard(None) == (0, 1)
    assert parse_shard("2/5") == (2, 5)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert parse_shard(None) == (1, 3)
    assert parse_shard("0/2") == (0, 2)  # --shard wins over the environment
    for bad in ("2/2", "-1/2", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK"):
        parse_shard(None)

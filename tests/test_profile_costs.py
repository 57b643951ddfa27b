"""The run's cost cache: a resumed run and a second shard count no signature that is already on
disk (the counts are read back), and ``--cross-check K`` records fvcore's counts beside the
meta counter's in ``run.json``."""

import json

import pytest
from profile_helpers import MODEL, make_checkpoint, torch_threads, write_list

from atfr_analysis.data.samples import sample_videos
from atfr_analysis.profile import ProfileConfig
from atfr_analysis.profile.run import RUN_COST_CACHE, run_profile


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("ATFR_CACHE_DIR", "off")  # the run folder's cache alone
    ck = make_checkpoint(tmp_path / "atfr.pyth")
    clip = sample_videos()["carphone_pristine"]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(clip.read_bytes())
    lst = write_list(tmp_path / "list.csv", [clip, copy], [0, 0])  # the same frames twice: the same signatures
    return ck, lst


def _cfg(ck, lst, out, **kw):
    return ProfileConfig(ck, MODEL, lst, out, views=2, crops=1, batch_size=2, quiet=True, **kw)


def _costs(out):
    return json.loads((out / "run.json").read_text())["costs"]


def test_resumed_run_counts_nothing_already_on_disk(setup, tmp_path):
    ck, lst = setup
    out = tmp_path / "run"
    with torch_threads(1):
        run_profile(_cfg(ck, lst, out, stop_after=1))
        first = _costs(out)["0/1"]["stats"]
        assert first["computed"] > 0 and (out / RUN_COST_CACHE / "costs").is_dir()
        s = run_profile(_cfg(ck, lst, out, resume=True))
    assert s.videos_ok == 2
    again = _costs(out)["0/1"]["stats"]
    assert again["computed"] == 0 and again["loaded"] > 0, again


def test_second_shard_reuses_the_first_shards_counts(setup, tmp_path):
    ck, lst = setup
    out = tmp_path / "run"
    with torch_threads(1):
        run_profile(_cfg(ck, lst, out, shard="0/2"))
        run_profile(_cfg(ck, lst, out, shard="1/2"))
    costs = _costs(out)
    assert costs["0/2"]["stats"]["computed"] > 0
    assert costs["1/2"]["stats"]["computed"] == 0 and costs["1/2"]["stats"]["loaded"] > 0, costs


def test_cross_check_records_fvcore_beside_the_meta_counter(setup, tmp_path):
    ck, lst = setup
    out = tmp_path / "run"
    with torch_threads(1):
        run_profile(_cfg(ck, lst, out, cross_check=2))
    cc = _costs(out)["0/1"]["cross_check"]
    assert cc["reference"] == "fvcore" and cc["checked"] >= 1 and cc["equal"] is True and not cc["mismatches"]

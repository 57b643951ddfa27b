"""The persistent cost cache: a second process (rank, shard, resumed run) counts nothing that is on
disk; atomic files under concurrent writers; the run folder gets what the user cache served."""

import json
import multiprocessing as mp
import os

import pytest

import atfr_analysis.flops.cost as cost_mod
from atfr_analysis.flops import CostModel
from atfr_analysis.flops.cache import CostCache, user_cache_dir
from atfr_analysis.models import build_model, make_inputs


@pytest.fixture
def counted(monkeypatch):
    """Counts every backend call (meta and fvcore) of CostModel."""
    import atfr_analysis.flops.meta as meta

    calls = {"n": 0}
    for mod, name in ((meta, "count_meta"), (meta, "run_on_meta"), (cost_mod, "count_flops")):
        orig = getattr(mod, name)

        def wrapped(*a, _orig=orig, **k):
            calls["n"] += 1
            return _orig(*a, **k)

        monkeypatch.setattr(mod, name, wrapped)
    return calls


def _model(name="x3d_xs_atfr"):
    m = build_model(name).eval()
    return m, [tuple(x.shape) for x in make_inputs(m.spec, 64)]


def test_second_cost_model_counts_nothing_on_disk(tmp_path, counted):
    model, shapes = _model()
    run, user = tmp_path / "run", tmp_path / "user"
    first = CostModel(model, shapes, cache=CostCache(dirs=[run, user]))
    g = first.gmacs((2,))
    assert first.stats["computed"] == 3 and first.stats["loaded"] == 0  # pre, sgs(2), post(2)
    n = counted["n"]
    assert n >= 3
    # another process: a resumed run or another shard, same folders
    second = CostModel(model, shapes, cache=CostCache(dirs=[run, user]))
    assert second.gmacs((2,)) == g
    assert second.num_bins == first.num_bins
    assert counted["n"] == n and second.stats["computed"] == 0 and second.stats["loaded"] == 3
    # a new signature counts only its new parts (the pre part is on disk)
    second.gmacs((3,))
    assert second.stats["computed"] == 2


def test_user_cache_fills_a_new_run_folder(tmp_path, counted):
    model, shapes = _model()
    user = tmp_path / "user"
    a = CostModel(model, shapes, cache=CostCache(dirs=[tmp_path / "run1", user]))
    g = a.gmacs((1,))
    n = counted["n"]
    b = CostModel(model, shapes, cache=CostCache(dirs=[tmp_path / "run2", user]))
    assert b.gmacs((1,)) == g and counted["n"] == n
    assert sorted(p.name for p in (tmp_path / "run2").rglob("*.json")) == sorted(p.name for p in user.rglob("*.json"))


def test_key_holds_what_the_cost_depends_on(tmp_path):
    model, shapes = _model()
    cm = CostModel(model, shapes)
    key = cm.cache_key(("post", 2))
    for k in (
        "model",
        "config",
        "tensors",
        "code",
        "input_shapes",
        "conventions",
        "backend",
        "counter",
        "part",
        "signature",
    ):
        assert k in key
    other_input = CostModel(model, [(1, 3, 4, 96, 96)]).cache_key(("post", 2))
    other_cfg = CostModel(build_model("x3d_xs_atfr", num_classes=10).eval(), shapes).cache_key(("post", 2))
    fv = CostModel(model, shapes, backend="fvcore").cache_key(("post", 2))
    cache = CostCache(dirs=[tmp_path])
    paths = {cache._path(tmp_path, k) for k in (key, other_input, other_cfg, fv, cm.cache_key(("post", 3)))}
    assert len(paths) == 5


def test_corrupt_or_foreign_file_is_a_miss(tmp_path, counted):
    model, shapes = _model()
    cache = CostCache(dirs=[tmp_path])
    g = CostModel(model, shapes, cache=cache).gmacs((2,))
    files = list(tmp_path.rglob("*.json"))
    files[0].write_text("{not json")
    rec = json.loads(files[1].read_text())
    rec["key"]["signature"] = [99]
    files[1].write_text(json.dumps(rec))
    again = CostModel(model, shapes, cache=CostCache(dirs=[tmp_path]))
    assert again.gmacs((2,)) == g and again.stats["computed"] == 2 and again.stats["loaded"] == 1


def _writer(args):
    folder, i = args
    cache = CostCache(dirs=[folder])
    key = {"model": "m", "part": "post", "signature": [1]}
    for _ in range(30):
        cache.put(key, {"conv_fc": 123, "fvcore": 456, "by_operator": {"conv": 123}, "writer": 0})
        assert cache.get(key)["conv_fc"] == 123
    return cache.stats["stored"]


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_concurrent_writers_of_one_key(tmp_path):
    with mp.get_context("fork").Pool(4) as pool:
        stored = pool.map(_writer, [(str(tmp_path), i) for i in range(4)])
    assert sum(stored) == 120
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    assert json.loads(files[0].read_text())["value"]["conv_fc"] == 123


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_is_used_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        model, shapes = _model()
        cache = CostCache(dirs=[ro, tmp_path / "ok"])
        CostModel(model, shapes, cache=cache).gmacs((1,))
        assert cache.stats["write_errors"] == 1 and list((tmp_path / "ok").rglob("*.json"))
    finally:
        ro.chmod(0o700)


def test_user_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ATFR_CACHE_DIR", str(tmp_path / "mine"))
    assert user_cache_dir() == tmp_path / "mine"
    for off in ("off", "none", "0", ""):
        monkeypatch.setenv("ATFR_CACHE_DIR", off)
        assert user_cache_dir() is None
    monkeypatch.delenv("ATFR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "atfr-analysis"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == __import__("pathlib").Path.home() / ".cache" / "atfr-analysis"


def test_models_row_is_served_from_the_cache(tmp_path, monkeypatch):
    import atfr_analysis.flops.summary as summary

    cache = CostCache(dirs=[tmp_path])
    row = summary.model_row("x3d_xs_atfr", cache=cache)
    assert row["model"] == "x3d_xs_atfr" and row["gmacs"] > 0

    def no_build(*a, **k):
        raise AssertionError("built a model for a cached row")

    monkeypatch.setattr(summary, "build_model", no_build)
    assert summary.model_row("x3d_xs_atfr", cache=CostCache(dirs=[tmp_path])) == row


def test_static_gmacs_are_cached(tmp_path, counted):
    m = build_model("x3d_xs").eval()
    shapes = [tuple(x.shape) for x in make_inputs(m.spec, 64)]
    a = CostModel(m, shapes, cache=CostCache(dirs=[tmp_path])).static_gmacs()
    n = counted["n"]
    b = CostModel(m, shapes, cache=CostCache(dirs=[tmp_path])).static_gmacs()
    assert a == b and counted["n"] == n
    assert a == (CostModel(m, shapes).static().gmacs, CostModel(m, shapes).static().gmacs_fvcore)

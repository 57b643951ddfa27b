"""The options of ``atfr models``, ``atfr flops``, ``atfr counters`` and ``atfr paper-baselines``
that no other test passes, each with its effect (tests/test_cli_options.py lists them)."""

from __future__ import annotations

import csv
import json

from profile_helpers import run_cli


def _cache_files(root) -> list:
    return sorted(p for p in root.rglob("*.json")) if root.exists() else []


def _runs_and_cache(capsys, cache, *argvs) -> list[tuple[dict, list]]:
    """Each argv's JSON output and the cache's files after it."""
    out = []
    for argv in argvs:
        code, stdout, err = run_cli(capsys, *argv)
        assert code == 0, err
        out.append((json.loads(stdout), _cache_files(cache)))
    return out


def _check_cache(runs) -> None:
    """--no-cache neither reads nor writes the user cache; --cache keeps the counted totals there
    and a second run reads them (nothing new written); the numbers are equal every way."""
    (plain, none), (first, written), (second, again) = runs
    assert none == [] and written and again == written
    assert plain == first == second


def test_models_cache_and_no_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATFR_CACHE_DIR", str(tmp_path / "cache"))
    argv = ("models", "slow_tiny", "--json")
    _check_cache(
        _runs_and_cache(capsys, tmp_path / "cache", (*argv, "--no-cache"), (*argv, "--cache"), (*argv, "--cache"))
    )


def test_flops_cache_and_no_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATFR_CACHE_DIR", str(tmp_path / "cache"))
    argv = ("flops", "slow_tiny", "--json")
    _check_cache(
        _runs_and_cache(capsys, tmp_path / "cache", (*argv, "--no-cache"), (*argv, "--cache"), (*argv, "--cache"))
    )


def test_models_flops_and_no_flops(capsys):
    code, out, err = run_cli(capsys, "models", "slow_tiny*", "--json", "--flops", "--no-cache")
    assert code == 0, err
    with_flops = {r["model"]: r for r in json.loads(out)}
    code, out, err = run_cli(capsys, "models", "slow_tiny*", "--json", "--no-flops")
    assert code == 0, err
    without = {r["model"]: r for r in json.loads(out)}
    assert set(with_flops) == set(without) == {"slow_tiny", "slow_tiny_atfr"}
    for name, r in without.items():
        assert r["gmacs"] is None and with_flops[name]["gmacs"] > 0
        assert r["params_m"] == with_flops[name]["params_m"] and r["input"] == with_flops[name]["input"]


def test_flops_counter_fvcore_equals_meta_and_a_bad_counter_is_refused(capsys):
    """--counter fvcore (the reference trace) gives the meta counter's numbers exactly."""
    res = {}
    for counter in ("meta", "fvcore"):
        code, out, err = run_cli(capsys, "flops", "slow_tiny_atfr", "--json", "--no-cache", "--counter", counter)
        assert code == 0, err
        res[counter] = json.loads(out)
    for k in ("gmacs", "gmacs_fvcore", "params", "stages", "static_gmacs"):
        assert res["meta"][k] == res["fvcore"][k], k
    code, _, err = run_cli(capsys, "flops", "slow_tiny_atfr", "--counter", "abacus")
    assert code == 2 and "--counter must be one of" in err


def test_counters_n_models_threads_out(tmp_path, capsys):
    """``atfr counters --n 1 --models NAME:CLASSES --threads 1 --out F``: one signature of that
    model at that class count, fvcore and the meta counter equal, the threads recorded."""
    import torch

    out = tmp_path / "r" / "counters.json"
    before = torch.get_num_threads()
    try:
        code, stdout, err = run_cli(
            capsys, "counters", "--n", "1", "--models", "slow_tiny_atfr:4", "--threads", "1", "--out", out
        )
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    (r,) = json.loads(out.read_text())
    assert r["model"] == "slow_tiny_atfr" and r["num_classes"] == 4 and r["signatures"] == 1
    assert r["threads"] == 1 and r["equal"] is True and r["mismatches"] == []
    assert f"wrote {out}" in stdout
    code, _, err = run_cli(capsys, "counters", "--n", "0")
    assert code == 2 and "--n must be >= 1" in err


def test_paper_baselines_out(tmp_path, capsys, monkeypatch):
    """``atfr paper-baselines --out DIR`` writes the committed report's rows into DIR (here the X3D-S
    row alone, the cheapest to count; tests/test_paper_baselines.py reproduces every row)."""
    from pathlib import Path

    import atfr_analysis.flops.paper as paper

    (x3d_s,) = [r for r in paper.PAPER_ROWS if r.model == "x3d_s"]
    monkeypatch.setattr(paper, "PAPER_ROWS", (x3d_s,))
    code, stdout, err = run_cli(capsys, "paper-baselines", "--out", tmp_path / "rep")
    assert code == 0, err
    reports = Path(__file__).resolve().parents[1] / "reports"
    with open(tmp_path / "rep" / "paper_baselines.csv") as f:
        (row,) = list(csv.DictReader(f))
    with open(reports / "paper_baselines.csv") as f:
        committed = [r for r in csv.DictReader(f) if r["model"] == "x3d_s"]
    assert [row] == committed
    line = next(ln for ln in (tmp_path / "rep" / "paper_baselines.md").read_text().splitlines() if "`x3d_s`" in ln)
    assert line in (reports / "paper_baselines.md").read_text().splitlines()
    assert str(tmp_path / "rep") in stdout

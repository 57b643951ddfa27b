"""`atfr demo` reproduces the committed reports/demo numbers (the shipped checkpoints, real footage)."""

import json
import math
from pathlib import Path

import pytest

from atfr_analysis.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
def test_demo_reproduces_committed_numbers(tmp_path):
    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    res = run_demo(out=tmp_path / "demo", cache=tmp_path / "cache", quiet=True)
    produced = json.loads((tmp_path / "demo" / "demo_numbers.json").read_text())
    _close(produced, committed)
    for f in ("README.md", "report.md", "per_class.csv", "ranking.csv", "sources.csv", "class_distributions.png"):
        assert (tmp_path / "demo" / f).stat().st_size > 0
    assert res.seconds < 600
    # the data set is in the cache given, the reports name videos relative to it (as committed)
    assert (tmp_path / "cache" / "data").is_dir()
    import pandas as pd

    paths = pd.read_csv(tmp_path / "demo" / "videos.csv")["path"]
    assert paths.tolist() == pd.read_csv(ROOT / "reports" / "demo" / "videos.csv")["path"].tolist()
    assert paths.str.match(r"test/[a-z0-9_]+/[a-z0-9_]+\.mp4$").all()
    assert str(tmp_path) not in (tmp_path / "demo" / "report.md").read_text()

    # `atfr report` and `atfr table` on those real profile runs (the CLI, one line of output each)
    from atfr_cli.main import main

    runs = tmp_path / "cache" / "runs"
    out = tmp_path / "report"
    main(
        [
            "report",
            str(runs / "slow_tiny_atfr"),
            "--out",
            str(out),
            "--baseline",
            str(runs / "slow_tiny"),
            "--by",
            "bins",
            "--k",
            "3",
        ]
    )
    for f in (
        "report.md",
        "per_class.csv",
        "ranking.csv",
        "paper_table.md",
        "paper_table.tex",
        "bins_hist.png",
        "class_distributions.png",
        "gmacs_vs_accuracy.png",
        "gmacs_distribution.png",
        "accuracy_vs_views.png",
        "delta_vs_reduction.png",
    ):
        p = out / f
        assert p.stat().st_size > 0, f
        if f.endswith(".png"):
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["table", str(runs / "slow_tiny"), str(runs / "slow_tiny_atfr"), "--out", str(tmp_path / "table")])
    assert (tmp_path / "table" / "paper_table.csv").is_file()


def _readme_demo_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## The demo (`atfr demo`)")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_readme_demo_numbers_come_from_demo_numbers_json():
    """Every measured number of README.md's demo section is the generated block of
    reports/demo/demo_numbers.json (`atfr demo` writes it to reports/demo/readme_section.md)."""
    import re

    from atfr_analysis.demo import README_BEGIN, README_END, readme_section

    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    section = _readme_demo_section()
    assert README_BEGIN in section and README_END in section, "README's demo section lacks the generated block"
    block = section[section.index(README_BEGIN) : section.index(README_END) + len(README_END)] + "\n"
    assert block == readme_section(committed)
    assert (ROOT / "reports" / "demo" / "readme_section.md").read_text() == block
    # no other measured number in the section: no percentage, no GFLOPs-like or correlation-like decimal
    rest = section.replace(block.rstrip("\n"), "")
    stray = re.findall(r"\d+(?:\.\d+)?\s*%|\b\d\.\d{3}\b|\btop-1 of \d", rest)
    assert not stray, f"numbers in README's demo section outside the generated block: {stray}"


def test_demo_checks_follow_the_acceptance():
    from atfr_analysis.demo import demo_checks

    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    assert committed["checks"] == demo_checks(committed)
    n = dict(
        committed,
        top1_baseline=80.0,
        top1_atfr=77.9,
        reduction_pct=40.0,
        per_class_top1_baseline={c: 59.9 for c in committed["per_class_top1_baseline"]},
        other_seed_top1_baseline=86.0,
        other_seed_top1_atfr=77.9,
    )
    got = demo_checks(n)
    assert got["ATFR top-1 within 2 points of the baseline"] is False
    assert got["GFLOPs x views reduction >= 40%"] is True and got["baseline top-1 >= 85%"] is False
    assert got["every class's baseline top-1 >= 60%"] is False
    assert got["seed 1's test clips: top-1 within 5 points (baseline and ATFR)"] is False  # 86.0 vs 80.0
    rank = "classes rank by GMACs as by distinct frames (fewest lowest)"
    swapped = n["gmacs_order"][:]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    got = demo_checks(dict(n, other_seed_top1_baseline=75.0, gmacs_order=swapped))
    assert got["seed 1's test clips: top-1 within 5 points (baseline and ATFR)"] is True
    assert got[rank] is False
    assert demo_checks(n)[rank] is (n["gmacs_order"] == ["still", "slow_4x", "slow_2x", "normal"])


def test_model_card_quotes_the_demo_numbers(tmp_path):
    """The model card is what `write_model_card` writes from the shipped checkpoints' records and the
    committed demo numbers (those of the README's block): it quotes no other number."""
    from atfr_analysis.shipped import CHECKPOINT_DIR, write_model_card

    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    card = write_model_card(tmp_path / "MODEL_CARD.md", committed).read_text()
    assert card == (CHECKPOINT_DIR / "MODEL_CARD.md").read_text()
    # per stage: final training loss and top-1, validation top-1, wall time, device
    rows = [r for r in card.splitlines() if r.startswith("| ") and "`slow_tiny" in r]
    assert len(rows) == 3
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert all(c and c != "not recorded" for c in cells), r
    assert f"baseline {committed['top1_baseline']:.1f}%, ATFR {committed['top1_atfr']:.1f}%" in card


@pytest.mark.slow
def test_dataset_card_is_the_training_data_sets(tmp_path):
    """DATASET_CARD.md is the card `make_dataset` writes for the train split the checkpoints were trained on."""
    import re

    from atfr_analysis.demo import demo_data
    from atfr_analysis.shipped import CHECKPOINT_DIR

    data = demo_data(tmp_path, train=True)
    # The card names the PyAV that encoded the files; a newer PyAV on this machine makes the same
    # data set (the distinct-frame counts are checked when it is made), so only that stamp may differ.
    stamp = re.compile(r"\(PyAV \d+(\.\d+)*\)")
    made, shipped = (data / "dataset_card.md").read_text(), (CHECKPOINT_DIR / "DATASET_CARD.md").read_text()
    assert len(stamp.findall(shipped)) == 1, "the shipped card names the PyAV that encoded it"
    assert stamp.sub("(PyAV)", made) == stamp.sub("(PyAV)", shipped)


# ------------------------------------------------------------------ the demo's cache (issue 21, item 5)
def test_demo_cache_is_the_tools_user_cache(monkeypatch, tmp_path):
    """`atfr demo` keeps its data set and runs where the cost cache lives: $ATFR_CACHE_DIR, else
    $XDG_CACHE_HOME/atfr-analysis; the old undocumented $ATFR_CACHE is not read; --cache wins."""
    from atfr_analysis.demo import demo_cache
    from atfr_analysis.errors import InputError
    from atfr_analysis.flops.cache import user_cache_dir

    monkeypatch.setenv("ATFR_CACHE", str(tmp_path / "old"))
    monkeypatch.setenv("ATFR_CACHE_DIR", str(tmp_path / "mine"))
    assert demo_cache() == tmp_path / "mine" == user_cache_dir()
    assert demo_cache(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("ATFR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_cache() == tmp_path / "xdg" / "atfr-analysis"
    monkeypatch.setenv("ATFR_CACHE_DIR", "off")
    with pytest.raises(InputError, match="--cache"):
        demo_cache()


FAKE_CLIP = b"the bytes of a clip"


def _fake_make_dataset(out, cfg=None, *, progress=None, overwrite=False):
    """make_dataset's contract at no cost: reports progress, writes a clip, the lists, the label map
    and the manifest (with the clip's size and sha256)."""
    import hashlib

    out = Path(out)
    for i in range(3):
        progress("writing clips", i, 2)
    rel = "test/still/still_000.mp4"
    (out / rel).parent.mkdir(parents=True)
    (out / rel).write_bytes(FAKE_CLIP)
    (out / "train.csv").write_text("")
    (out / "test.csv").write_text(f"{rel} 0\n")
    (out / "labels.json").write_text('{"still": 0}\n')
    clip = {"split": "test", "path": rel, "label": 0, "bytes": len(FAKE_CLIP)}
    clip["sha256"] = hashlib.sha256(FAKE_CLIP).hexdigest()
    (out / "manifest.json").write_text(json.dumps({"labels": {"still": 0}, "clips": [clip]}) + "\n")


def test_demo_data_is_built_under_ATFR_CACHE_DIR_and_says_so(monkeypatch, tmp_path):
    import io

    from rich.console import Console

    import atfr_analysis.data.synthetic as synthetic
    from atfr_analysis.demo import demo_cache, demo_data

    monkeypatch.setattr(synthetic, "make_dataset", _fake_make_dataset)
    monkeypatch.setenv("ATFR_CACHE_DIR", str(tmp_path / "cache"))
    text = io.StringIO()
    data = demo_data(demo_cache() / "data", quiet=False, console=Console(file=text, width=200))
    assert data.parent == tmp_path / "cache" / "data" and (data / "test.csv").is_file()
    assert not list(data.parent.glob("*.partial"))
    lines = text.getvalue().splitlines()  # not a terminal: plain lines
    assert lines[0] == f"building the demo data set in {data} (once; later runs reuse it)"
    assert lines[1:3] == ["writing clips: 0/2", "writing clips: 2/2"]  # a step's start and end
    assert len(lines) == 4 and lines[3].startswith(f"built the demo data set in {data} in ")
    text.truncate(0)
    assert demo_data(demo_cache() / "data", quiet=False, console=Console(file=text)) == data  # reused, silently
    assert text.getvalue() == ""
    # on a terminal: a rich progress bar per step, between the same first and last lines
    tty = io.StringIO()
    demo_data(tmp_path / "tty", quiet=False, console=Console(file=tty, force_terminal=True, width=120))
    shown = tty.getvalue()
    assert shown.startswith("building the demo data set in ") and "writing clips" in shown and "2/2" in shown
    assert "built the demo data set in " in shown.rstrip().splitlines()[-1]  # after the bar (and its escapes)
    quiet = io.StringIO()
    demo_data(tmp_path / "quiet", quiet=True, console=Console(file=quiet))
    assert quiet.getvalue() == ""


def test_demo_data_rebuilds_a_cached_split_that_differs_from_its_manifest(monkeypatch, tmp_path):
    """A cached clip replaced (same name, other bytes) is noticed against manifest.json's sha256:
    the split is rebuilt, saying why; a folder that cannot be removed is refused in one line."""
    import io

    from rich.console import Console

    import atfr_analysis.data.synthetic as synthetic
    from atfr_analysis.demo import demo_data
    from atfr_analysis.errors import EnvironmentFailure

    monkeypatch.setattr(synthetic, "make_dataset", _fake_make_dataset)
    data = demo_data(tmp_path, quiet=True)
    clip = data / "test" / "still" / "still_000.mp4"
    clip.write_bytes(b"other bytes, other numbers")
    text = io.StringIO()
    assert demo_data(tmp_path, quiet=False, console=Console(file=text, width=300)) == data
    lines = text.getvalue().splitlines()
    assert lines[0] == (
        f"the cached demo data set {data} does not match its manifest.json: test/still/still_000.mp4 is not the "
        "clip manifest.json records (sha256 differs); rebuilding it"
    ), lines
    assert lines[1].startswith("building the demo data set in ") and clip.read_bytes() == FAKE_CLIP
    for change in (lambda: clip.unlink(), lambda: (data / "test.csv").write_text("test/still/still_000.mp4 1\n")):
        change()
        assert demo_data(tmp_path, quiet=True) == data and synthetic.dataset_mismatch(data) is None
    clip.write_bytes(b"x" * len(FAKE_CLIP))  # the same size, other bytes

    def cannot(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("atfr_analysis.demo.shutil.rmtree", cannot)
    with pytest.raises(EnvironmentFailure) as e:
        demo_data(tmp_path, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and str(data) in msg and "sha256 differs" in msg and "Permission denied" in msg, msg


def test_dataset_mismatch_of_a_real_data_set(tmp_path):
    """synthetic.dataset_mismatch on a data set make_dataset wrote: None as written, the clip named
    when its bytes are replaced by another clip's."""
    from train_helpers import tiny_train_set

    from atfr_analysis.data.synthetic import dataset_mismatch

    root = tiny_train_set(tmp_path / "d")
    assert dataset_mismatch(root) is None
    a, b = sorted((root / "train").glob("*/*.mp4"))[:2]
    a.write_bytes(b.read_bytes())
    assert (
        dataset_mismatch(root)
        == f"{a.relative_to(root).as_posix()} is not the clip manifest.json records (sha256 differs)"
    )


def test_demo_log_is_cache_free(tmp_path):
    """The demo reports name videos relative to the data set and no run folder: the committed
    reports are the same wherever the cache lives."""
    import pandas as pd

    from atfr_analysis.demo import _cache_free

    data = tmp_path / "cache" / "data" / "synthetic"
    log = pd.DataFrame({"path": [str(data / "test" / "still" / "still_000.mp4"), "/elsewhere/x.mp4"]})
    log.attrs.update(run_dir=str(tmp_path / "cache" / "runs" / "slow_tiny_atfr"), meta={"model": "m"})
    out = _cache_free(log, data)
    assert out["path"].tolist() == ["test/still/still_000.mp4", "/elsewhere/x.mp4"]
    assert "run_dir" not in out.attrs and out.attrs["meta"] == {"model": "m"}


_ABSOLUTE = r"(?:^|[\s,`\"'(=])(?:~/|/(?:home|root|tmp|Users|var|work|mnt|private)/|[A-Za-z]:\\)"


def test_committed_demo_reports_hold_no_absolute_path():
    import re

    hits = []
    for p in sorted((ROOT / "reports" / "demo").iterdir()):
        if p.suffix in (".csv", ".md", ".json", ".tex"):
            for i, line in enumerate(p.read_text().splitlines(), 1):
                if re.search(_ABSOLUTE, line):
                    hits.append(f"{p.name}:{i}: {line[:100]}")
    assert not hits, hits

"""Data layer: video lists, folders, label maps and the per-video view dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atfr_analysis.data import DataError, LabelMapError, ListError
from atfr_analysis.data.datasets import (
    VideoEntry,
    ViewDataset,
    collate_videos,
    load_views,
    read_folder,
    read_label_map,
    read_video_list,
)
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.data.video import Decoding
from atfr_analysis.data.views import ViewProtocol
from atfr_analysis.models.base import InputSpec

TINY = InputSpec(frames=(8,), train_crop=32, test_crop=32, sampling_rate=4)
TINY_SF = InputSpec(frames=(2, 8), train_crop=32, test_crop=32, sampling_rate=4, alpha=4)


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg
    return msg


def _write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _touch(root: Path, *names: str) -> None:
    """Empty files for a list's rows (lists refuse files that do not exist; these are not decoded)."""
    for n in names:
        _write(root / n, "")


# ----------------------------------------------------------------------------- label maps
def test_label_map_json_list_and_lines(tmp_path):
    m = read_label_map(_write(tmp_path / "a.json", json.dumps({"b": 1, "a": 0, "c": 2})))
    assert m == {"a": 0, "b": 1, "c": 2} and list(m) == ["a", "b", "c"]
    assert read_label_map(_write(tmp_path / "l.json", '["x", "y"]')) == {"x": 0, "y": 1}
    assert read_label_map(_write(tmp_path / "m.txt", "air drumming\nabseiling\n\n")) == {
        "air drumming": 0,
        "abseiling": 1,
    }


@pytest.mark.parametrize(
    "name,text,needle",
    [
        ("gap.json", '{"a": 0, "b": 2}', "without gaps"),
        ("dupid.json", '{"a": 0, "b": 0}', "id 0 is given to both"),
        ("dupname.json", '{"a": 0, "a": 1}', "appears twice"),
        ("str.json", '{"a": "zero"}', "expected an integer"),
        ("bad.json", '{"a": 0,', "not valid JSON"),
        ("empty.txt", "\n\n", "empty"),
        ("dup.txt", "a\nb\na\n", "repeats line 1"),
        ("hole.txt", "a\n\nb\n", "line 2: empty line"),
    ],
)
def test_label_map_errors(tmp_path, name, text, needle):
    with pytest.raises(LabelMapError) as ei:
        read_label_map(_write(tmp_path / name, text))
    msg = _one_line(ei.value)
    assert needle in msg and name in msg


def test_label_map_missing(tmp_path):
    with pytest.raises(LabelMapError, match="not found"):
        read_label_map(tmp_path / "none.json")


# ----------------------------------------------------------------------------- lists
def test_list_space_separated_ids_relative_to_list(tmp_path):
    lst = _write(tmp_path / "lists" / "val.csv", f"# comment\nv/a.mp4 3\n\nv/b.mp4 0\n{tmp_path}/abs/c.mp4 1\n")
    _touch(tmp_path, "lists/v/a.mp4", "lists/v/b.mp4", "abs/c.mp4", "root/v/a.mp4", "root/v/b.mp4")
    es = read_video_list(lst)
    assert [e.video_id for e in es] == [0, 1, 2]
    assert es[0] == VideoEntry(0, tmp_path / "lists" / "v" / "a.mp4", 3, "3")
    assert es[2].path == tmp_path / "abs" / "c.mp4"
    es = read_video_list(lst, data_root=tmp_path / "root")
    assert es[1].path == tmp_path / "root" / "v" / "b.mp4"


def test_list_csv_header_and_names(tmp_path):
    lst = _write(tmp_path / "l.csv", "path,label\nx/1.mp4,walking\nx/2.mp4,abseiling\nx 3.mp4,walking\n")
    _touch(tmp_path, "x/1.mp4", "x/2.mp4", "x 3.mp4")
    es = read_video_list(lst)
    assert [(e.path.name, e.label, e.class_name) for e in es] == [
        ("1.mp4", 1, "walking"),
        ("2.mp4", 0, "abseiling"),
        ("x 3.mp4", 1, "walking"),
    ]


def test_list_with_label_map(tmp_path):
    labels = {"abseiling": 0, "air drumming": 1, "walking": 2}
    lst = _write(tmp_path / "l.txt", "a.mp4 air drumming\nb.mp4 2\nc.mp4 abseiling\n")
    _touch(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    es = read_video_list(lst, labels=labels)
    assert [(e.label, e.class_name) for e in es] == [(1, "air drumming"), (2, "walking"), (0, "abseiling")]
    lm = _write(tmp_path / "labels.json", json.dumps(labels))
    assert read_video_list(lst, labels=lm) == es


@pytest.mark.parametrize(
    "text,labels,needle,line",
    [
        ("a.mp4 0\nb.mp4\n", None, "malformed line", 2),
        ("a.mp4 0\nb.mp4 0\na.mp4 1\n", None, "duplicate path", 3),
        ("a.mp4 0\nb.mp4 dancing\n", None, "is a class name", 2),
        ("a.mp4,0\nb.mp4,dancing\n", None, "is a class name", 2),
        ("a.mp4 -1\n", None, "negative label", 1),
        ("a.mp4 walking\nb.mp4 dancing\n", {"walking": 0}, "unknown label 'dancing'", 2),
        ("a.mp4 0\nb.mp4 5\n", {"walking": 0}, "unknown label '5'", 2),
    ],
)
def test_list_errors(tmp_path, text, labels, needle, line):
    lst = _write(tmp_path / "l.csv", text)
    with pytest.raises(ListError) as ei:
        read_video_list(lst, labels=labels)
    msg = _one_line(ei.value)
    assert needle in msg and f"line {line}" in msg and str(lst) in msg


def test_list_empty_and_missing(tmp_path):
    with pytest.raises(ListError, match="is empty"):
        read_video_list(_write(tmp_path / "e.csv", "# nothing\n\n"))
    with pytest.raises(ListError, match="not found"):
        read_video_list(tmp_path / "none.csv")
    assert issubclass(ListError, DataError)


def test_list_duplicate_after_normalisation(tmp_path):
    lst = _write(tmp_path / "l.csv", "d/a.mp4 0\nd/../d/a.mp4 0\n")
    with pytest.raises(ListError, match="line 2: duplicate path"):
        read_video_list(lst)


@pytest.mark.parametrize("fmt", ["space", "csv"])
def test_list_missing_files_are_one_error_up_front_or_skipped(tmp_path, monkeypatch, fmt):
    """As the Kinetics reader: files that do not exist are refused before any video is opened, in
    one line (how many, the first few), or skipped and recorded with skip_missing."""
    import atfr_analysis.data.video as video

    sep = " " if fmt == "space" else ","
    rows = [f"clips/v{i:04d}.mp4{sep}{i % 3}" for i in range(2000)]
    _touch(tmp_path, "clips/v0007.mp4", "clips/v1500.mp4")
    lst = _write(tmp_path / "l.txt", "\n".join(rows) + "\n")
    monkeypatch.setattr(video, "probe", lambda *a, **k: pytest.fail("a video was opened"))
    with pytest.raises(ListError) as ei:
        read_video_list(lst)
    msg = _one_line(ei.value)
    assert f"{lst}: 1998 of 2000 video files of the list do not exist" in msg
    assert f"line 1: clips/v0000.mp4 ({tmp_path / 'clips' / 'v0000.mp4'})" in msg and "line 3: clips/v0002.mp4" in msg
    assert "line 4:" not in msg and "--data-root" in msg and "--skip-missing" in msg
    es = read_video_list(lst, skip_missing=True)
    assert [(e.video_id, e.path.name, e.label) for e in es] == [(0, "v0007.mp4", 1), (1, "v1500.mp4", 0)]
    assert len(es.skipped) == 1998 and es.skipped[0] == (1, "clips/v0000.mp4")
    _write(tmp_path / "none.txt", "gone.mp4 0\n")
    with pytest.raises(ListError, match="none of its 1 video files exists"):
        read_video_list(tmp_path / "none.txt", skip_missing=True)


# ----------------------------------------------------------------------------- list formats
FORMATS_NEEDLE = "we read 'path label'"


@pytest.mark.parametrize(
    "text,labels,line,needles",
    [
        # mmaction2 rawframe list: frame folders, not videos (main read path 'vid 300', label 3)
        ("a.mp4 0\nvid 300 3\n", None, 2, ["rawframe", "frame folders are not videos", FORMATS_NEEDLE]),
        # multi-label line (main read path 'a.mp4 1 4', label 7)
        ("b.mp4 2\na.mp4 1 4 7\n", None, 2, ["3 labels", "multi-label", FORMATS_NEEDLE]),
        # more fields than 'path label' (main read a path with spaces)
        ("my video.mp4 3\n", None, 1, ["3 fields", "has 2 (path label)", "CSV", FORMATS_NEEDLE]),
        # a class name with spaces and no label map (main split it at the last space)
        ("a.mp4 air drumming\n", None, 1, ["3 fields", "needs --labels"]),
        # with a label map, an unknown multi-word label is still an error naming the line
        ("a.mp4 air drumming\nb.mp4 sky diving\n", {"air drumming": 0}, 2, ["3 fields", FORMATS_NEEDLE]),
        # CSV with a third field (main read path 'a.mp4,1', label 2)
        ("a.mp4,1\nb.mp4,1,2\n", None, 2, ["3 field(s)", "a CSV list has 2", FORMATS_NEEDLE]),
    ],
)
def test_list_lines_with_more_fields_than_the_format_allows(tmp_path, text, labels, line, needles):
    lst = _write(tmp_path / "val.txt", text)
    with pytest.raises(ListError) as ei:
        read_video_list(lst, labels=labels)
    msg = _one_line(ei.value)
    assert f"{lst} line {line}:" in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_list_format_is_detected_and_reported(tmp_path):
    from atfr_analysis.data.lists import detect_format

    assert detect_format("a.mp4 3") == "space" and detect_format("a.mp4,3") == "csv"
    assert detect_format("path,label") == "csv" and detect_format("a,b.mp4 3") == "space"
    assert detect_format("label,youtube_id,time_start,time_end,split") == "kinetics"
    _touch(tmp_path, "a.mp4")
    assert read_video_list(_write(tmp_path / "a.csv", "a.mp4 3\n")).format == "space"
    assert read_video_list(_write(tmp_path / "b.csv", "a.mp4,3\n")).format == "csv"


def test_commas_and_spaces_in_paths(tmp_path):
    # a real CSV reader: a quoted path holds commas (main split it at the last comma)
    _touch(tmp_path, "clips/a, b.mp4", "c d.mp4", "x/a,b.mp4", "y/c,d.mp4")
    es = read_video_list(_write(tmp_path / "l.csv", 'path,label\n"clips/a, b.mp4",3\n"c d.mp4", 1\n'))
    assert [(e.path.name, e.label) for e in es] == [("a, b.mp4", 3), ("c d.mp4", 1)]
    # a space-separated list whose paths hold commas (main: 'unknown label' / path 'x/a')
    es = read_video_list(_write(tmp_path / "s.txt", "x/a,b.mp4 3\ny/c,d.mp4 0\n"))
    assert [(e.path.name, e.label) for e in es] == [("a,b.mp4", 3), ("c,d.mp4", 0)]


def test_class_names_with_spaces_need_the_label_map(tmp_path):
    labels = {"air": 0, "air drumming": 1, "drumming": 2}
    lst = _write(tmp_path / "l.txt", "a.mp4 air drumming\nb.mp4 drumming\nc.mp4 air\n")
    _touch(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    es = read_video_list(lst, labels=labels)  # all after the path is the class name (main split at the last space)
    assert [(e.path.name, e.class_name) for e in es] == [
        ("a.mp4", "air drumming"),
        ("b.mp4", "drumming"),
        ("c.mp4", "air"),
    ]


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split\n"


def _kinetics(tmp_path, rows, files):
    root = tmp_path / "k400" / "val"
    for rel in files:
        _write(root / rel, "x")
    return _write(tmp_path / "validate.csv", KINETICS_HEADER + "".join(rows)), root


def test_kinetics_annotation_csv(tmp_path):
    rows = [
        "abseiling,0wR5jVB-WPk,417,427,val\n",
        '"air drumming",--nQbRBEz2s,104,114,val\n',
        "air drumming,-0J8iWtLavA,0,10,val\n",
        "abseiling,3caPS4FHFF8,36,46,val\n",
    ]
    files = [
        "abseiling/0wR5jVB-WPk_000417_000427.mp4",  # the ActivityNet crawler: <root>/<label>/<file>
        "air drumming/--nQbRBEz2s_000104_000114.mp4",
        "air_drumming/-0J8iWtLavA_000000_000010.mkv",  # label folder with underscores, another extension
        "3caPS4FHFF8_000036_000046.mp4",  # flat (the CVDF tarballs)
    ]
    lst, root = _kinetics(tmp_path, rows, files)
    es = read_video_list(lst, data_root=root)  # main: "unknown label 'split'"
    assert es.format == "kinetics" and es.skipped == []
    assert [(e.path, e.label, e.class_name) for e in es] == [
        (root / files[0], 0, "abseiling"),
        (root / files[1], 1, "air drumming"),
        (root / files[2], 1, "air drumming"),
        (root / files[3], 0, "abseiling"),
    ]
    es = read_video_list(lst, data_root=root, labels={"air drumming": 0, "abseiling": 1, "zumba": 2})
    assert [e.label for e in es] == [1, 0, 0, 1]
    with pytest.raises(ListError, match="line 2: unknown label 'abseiling'"):
        read_video_list(lst, data_root=root, labels={"air drumming": 0})


def test_kinetics_missing_files_are_one_error_or_skipped(tmp_path):
    rows = [f"abseiling,vid{i:08d}xyz,{i},{i + 10},val\n" for i in range(6)]
    lst, root = _kinetics(tmp_path, rows, ["abseiling/vid00000000xyz_000000_000010.mp4"])
    with pytest.raises(ListError) as ei:
        read_video_list(lst, data_root=root)
    msg = _one_line(ei.value)
    assert "5 of 6 videos of the Kinetics list are not under" in msg and str(root) in msg
    assert "line 3: abseiling/vid00000001xyz_000001_000011.mp4" in msg and "--skip-missing" in msg
    assert msg.count("vid0000000") == 3  # a few examples, not one per row
    es = read_video_list(lst, data_root=root, skip_missing=True)
    assert len(es) == 1 and es[0].path.name == "vid00000000xyz_000000_000010.mp4"
    assert [no for no, _ in es.skipped] == [3, 4, 5, 6, 7] and es.skipped[0][1] == "vid00000001xyz_000001_000011.mp4"


@pytest.mark.parametrize(
    "row,needle",
    [
        ("abseiling,abc,x,10,val\n", "time_start 'x' is not a whole number"),
        ("abseiling,abc,0,10\n", "4 fields, the header names 5"),
        ("abseiling,,0,10,val\n", "empty label or youtube_id"),
    ],
)
def test_kinetics_bad_rows_name_the_line(tmp_path, row, needle):
    lst, root = _kinetics(tmp_path, ["abseiling,ok,0,10,val\n", row], ["abseiling/ok_000000_000010.mp4"])
    with pytest.raises(ListError) as ei:
        read_video_list(lst, data_root=root)
    msg = _one_line(ei.value)
    assert "line 3" in msg and needle in msg


# ----------------------------------------------------------------------------- folders
def test_read_folder(tmp_path):
    for rel in ("walking/b.mp4", "walking/a.MKV", "abseiling/sub/c.webm", "abseiling/notes.txt", "empty/.keep"):
        _write(tmp_path / "root" / rel, "x")
    es = read_folder(tmp_path / "root")
    assert [(e.video_id, e.path.name, e.label, e.class_name) for e in es] == [
        (0, "c.webm", 0, "abseiling"),
        (1, "a.MKV", 2, "walking"),
        (2, "b.mp4", 2, "walking"),
    ]
    es = read_folder(tmp_path / "root", labels={"walking": 0, "abseiling": 1})
    assert [e.label for e in es] == [1, 0, 0]


def test_read_folder_errors(tmp_path):
    _write(tmp_path / "r1" / "walking" / "a.mp4", "x")
    with pytest.raises(ListError) as ei:
        read_folder(tmp_path / "r1", labels={"running": 0})
    assert "'walking' is not a class name" in _one_line(ei.value)
    _write(tmp_path / "r2" / "loose.mp4", "x")
    with pytest.raises(ListError, match="directly in the folder"):
        read_folder(tmp_path / "r2")
    (tmp_path / "r3" / "walking").mkdir(parents=True)
    with pytest.raises(ListError, match="holds no video"):
        read_folder(tmp_path / "r3")
    with pytest.raises(ListError, match="not found"):
        read_folder(tmp_path / "r4")


# ----------------------------------------------------------------------------- views
@pytest.fixture(scope="module")
def carphone():
    return sample_videos()["carphone_pristine"]


def test_load_views_equals_sample_views(carphone):
    """``load_views`` is ``sample_views`` (PySlowFast's PyAV test path) in the profiler's shape."""
    from atfr_analysis.data.views import sample_views

    pathways, meta, facts = load_views(carphone, TINY_SF, ViewProtocol.of(TINY_SF, 4, 3))
    ref = sample_views(carphone, TINY_SF, ViewProtocol.of(TINY_SF, 4, 3), checksums=False)
    assert [tuple(p.shape) for p in pathways] == [(12, 3, 2, 32, 32), (12, 3, 8, 32, 32)]
    for a, b in zip(pathways, ref.pathways):
        assert torch.equal(a, b)
    assert meta == ref.meta() and meta["frame_indices"][5] == ref.views[5].frames
    assert facts["num_frames"] == 120 and facts["decoded"] <= 120 and not facts["partial"]
    assert facts["protocol"] == {"views": 4, "crops": 3, "short_side": 32, "crop": 32}


def test_view_dataset_ok_and_failed_items(tmp_path, carphone):
    text = _write(tmp_path / "text.mp4", "not a video\n")
    entries = [
        VideoEntry(0, carphone, 1, "phone"),
        VideoEntry(1, tmp_path / "missing.mp4", 0, "x"),
        VideoEntry(2, text, 0, "x"),
    ]
    ds = ViewDataset(entries, TINY, ViewProtocol.of(TINY, 2, 3))
    assert len(ds) == 3
    ok, missing, bad = (ds[i] for i in range(3))
    assert ok["status"] == "ok" and ok["error"] is None and ok["video_id"] == 0 and ok["label"] == 1
    (x,) = ok["pathways"]
    assert tuple(x.shape) == (6, 3, 8, 32, 32) and x.dtype == torch.float32
    assert ok["views"]["temporal_index"] == [0, 0, 0, 1, 1, 1]
    assert ok["views"]["spatial_index"] == [0, 1, 2, 0, 1, 2]
    assert len(ok["views"]["frame_start"]) == 6 and ok["num_frames"] == 120
    for item, needle in ((missing, "no such file"), (bad, "not a video")):
        assert item["status"] == "failed" and item["pathways"] is None
        assert needle in _one_line(item["error"]) and item["path"] in item["error"]


def test_view_dataset_in_a_dataloader_with_a_worker(tmp_path, carphone):
    entries = [VideoEntry(0, tmp_path / "missing.mp4", 0, "x"), VideoEntry(1, carphone, 0, "x")]
    ds = ViewDataset(entries, TINY, ViewProtocol.at_crop(TINY, 1, 1), decoding=Decoding(thread_type=None))
    # the workers' context the profile uses: a fork of this threaded test process can hang in the child
    from atfr_analysis.data.datasets import loader_context

    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, num_workers=1, collate_fn=collate_videos, multiprocessing_context=loader_context(1)
    )
    items = [it for batch in loader for it in batch]
    assert [it["status"] for it in items] == ["failed", "ok"]
    assert tuple(items[1]["pathways"][0].shape) == (1, 3, 8, 32, 32)
    assert items[1]["views"]["crop_position"] == [1]


def test_view_dataset_without_header_count(tmp_path):
    """Matroska has no frame count in its header: the whole video is decoded, then viewed."""
    import av
    import numpy as np

    p = tmp_path / "v.mkv"
    with av.open(str(p), "w") as c:
        st = c.add_stream("ffv1", rate=30)
        st.width, st.height, st.pix_fmt = 48, 40, "yuv420p"
        for i in range(20):
            img = np.full((40, 48, 3), 10 * i, dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    item = ViewDataset([VideoEntry(0, p, 0, "x")], TINY, ViewProtocol.at_crop(TINY, 3, 1))[0]
    assert item["status"] == "ok", item["error"]
    assert item["num_frames"] == 20
    assert tuple(item["pathways"][0].shape) == (3, 3, 8, 32, 32)

"""The README stays a five-minute read and every page of ``docs/`` is reachable from it; the links
of the README and ``docs/`` point at files that exist (issue 31)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _links(path: Path) -> list[str]:
    """The relative targets of ``path``'s Markdown links (anchors dropped), outside code blocks."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http", "#"))]


def test_readme_is_at_most_12_kb():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 12 * 1024, f"README.md is {size} bytes; move reference material into docs/"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t).resolve() for t in _links(ROOT / "README.md")}
    assert DOCS, "no docs/ pages"
    assert not [p.name for p in DOCS if p.resolve() not in linked]


def test_links_point_at_files_that_exist():
    broken = [
        f"{p.relative_to(ROOT)} -> {t}"
        for p in [ROOT / "README.md", *DOCS]
        for t in _links(p)
        if not (p.parent / t).exists()
    ]
    assert not broken, broken


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("[a](nowhere.md) [b](x.md#top) [c](https://example.org)\n```\n[d](in_code.md)\n```\n")
    assert _links(page) == ["nowhere.md", "x.md"]

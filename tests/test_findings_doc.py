"""docs/findings.md: its index links every section, and every link of the
index names a section (the anchors GitHub derives from the headings)."""

import re
from pathlib import Path

FINDINGS = Path(__file__).resolve().parent.parent / "docs" / "findings.md"


def anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than
    ``-`` and ``_`` dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_the_index_links_every_section_and_nothing_else():
    text = FINDINGS.read_text()
    index, body = text.split("\n## Index\n", 1)[1].split("\n## ", 1)
    headings = re.findall(r"^##+ (.+)$", "## " + body, re.M)
    anchors = [anchor(h) for h in headings]
    assert len(set(anchors)) == len(anchors), "two sections with one anchor"
    linked = re.findall(r"^- \[.+\]\(#([^)]+)\)$", index, re.M)
    assert len(linked) == len(set(linked)), "a section listed twice"
    assert set(linked) <= set(anchors), set(linked) - set(anchors)
    # every section but the heading that only groups subsections
    grouping = {anchor(h) for h in headings if h == "Xen's own writers"}
    assert set(anchors) - grouping - set(linked) == set()


def test_anchor_follows_github():
    assert anchor("libxenguest: PAGE_DATA before X86_PV_P2M_FRAMES crashes the restorer (SIGSEGV)") \
        == "libxenguest-page_data-before-x86_pv_p2m_frames-crashes-the-restorer-sigsegv"
    assert anchor("convert-legacy-stream: `-x` never recognises the xl header") \
        == "convert-legacy-stream--x-never-recognises-the-xl-header"

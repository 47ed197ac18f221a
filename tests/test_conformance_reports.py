"""What a conformance run reports besides pytest's log: JUnit XML properties,
the HTML matrix (conformance/html_report.py), rendered by Chromium when it is
installed."""

from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET

import pytest

import conformance_toy as toy  # tests/ is on pytest's pythonpath (pyproject.toml)
from xenstream.reference.examples import all_examples

all_examples()   # see test_conformance_plugin.py: import the example modules once

pytest_plugins = ["pytester"]

BASE = ["--corpus=corpus", "--sources=corpus", "--formats=toy", "-p", "no:cacheprovider",
        "--impl-timeout=30"]


@pytest.fixture
def suite(pytester, monkeypatch):
    return toy.make_suite(pytester, monkeypatch)


def junit_cases(path: pathlib.Path) -> dict[str, dict[str, str]]:
    """test name -> its properties, from a JUnit XML file."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[case.get("name")] = props
    return out


def test_junitxml_carries_rule_section_and_verdict(suite):
    r = suite.runpytest(*BASE, f"--impl={suite.fake}", "--delivery=file", "--junitxml=out.xml")
    assert r.ret == 1
    cases = junit_cases(suite.path / "out.xml")
    by_name = {name.split("/")[2].rsplit("-", 1)[0]: props for name, props in cases.items()
               if name.startswith("test_case[")}
    assert set(by_name) == {name for name, *_ in toy.CASES}
    reserved = by_name["reserved-set"]
    assert reserved["xenstream.rule"] == "toy.reserved.zero"
    assert reserved["xenstream.section"].endswith('section "toy section"')
    assert (reserved["xenstream.expected"], reserved["xenstream.required"]) == ("writer", "reject")
    assert (reserved["xenstream.verdict"], reserved["xenstream.outcome"],
            reserved["xenstream.kind"]) == ("accept", "fail", "wrong-verdict")
    assert reserved["xenstream.replay"].startswith(f"{suite.fake} -f toy -i ")
    odd = by_name["odd"]
    assert (odd["xenstream.required"], odd["xenstream.verdict"]) == ("any", "crash (exit 2)")
    plain = by_name["plain"]
    assert "xenstream.rule" not in plain and "xenstream.section" not in plain  # a valid stream
    assert (plain["xenstream.verdict"], plain["xenstream.outcome"]) == ("accept", "pass")
    # the whole result, as JSON
    import json

    assert json.loads(plain["xenstream"])["id"] == plain["xenstream.case"]


# the HTML matrix -------------------------------------------------------------

import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

from xenstream.conformance.html_report import CLASSES, case_class, cell_count, render_html
from xenstream.conformance.results import CaseResult, Run


class _Page(html.parser.HTMLParser):
    """What the tests look at in a page: cells (class, href), panels, rows, outside links."""

    def __init__(self, text: str):
        super().__init__()
        self.cells, self.panels, self.rows, self.outside = [], set(), [], []
        self._in_cell = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        for name in ("src", "href", "action"):
            value = a.get(name) or ""
            if value and not value.startswith("#"):
                self.outside.append(value)
        if tag in ("link", "iframe", "img", "object", "embed"):
            self.outside.append(f"<{tag}>")
        if tag == "td" and "cell" in classes:
            self.cells.append({"none": "none" in classes, "class": None, "href": None})
            self._in_cell = True
        elif tag == "a" and self._in_cell:
            self.cells[-1]["class"] = classes[0]
            self.cells[-1]["href"] = a.get("href")
        elif tag == "section" and "detail" in classes:
            self.panels.add(a["id"])
        elif tag == "tr" and "rule" in classes:
            self.rows.append({"format": a["data-format"], "classes": a["data-classes"].split(),
                              "hidden": "hidden" in a})

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False


def _result(id, fmt, rule, outcome, kind="", observed="accept", source="examples", expected="reject"):
    return CaseResult(id=id, format=fmt, rule=rule, family=(rule or "").rsplit(".", 1)[0],
                      source=source, expected=expected, required="reject", observed=observed,
                      outcome=outcome, kind=kind, section='spec.md, section "S"' if rule else "",
                      replay=f"prog -f {fmt} -i /s/{id}.bin" if outcome == "fail" else "")


def _runs() -> list[tuple[str, Run]]:
    a = Run("impl-a", formats=["libxc", "xl"])
    a.cases = [_result("libxc/valid/v-1", "libxc", None, "pass", expected="accept"),
               _result("libxc/r.x/a-1", "libxc", "libxc.r.x", "pass", observed="reject"),
               _result("libxc/r.x/b-1", "libxc", "libxc.r.x", "fail", "wrong-verdict"),
               _result("libxc/r.y/a-1", "libxc", "libxc.r.y", "fail", "crash", "timeout (after 5 s)"),
               _result("xl/r.z/a-1", "xl", "xl.r.z", "reported"),
               _result("libxc/strategies/valid", "libxc", None, "pass", source="strategies")]
    b = Run("impl-b", formats=["libxc"])
    b.cases = [_result("libxc/valid/v-1", "libxc", None, "pass", expected="accept"),
               _result("libxc/r.x/a-1", "libxc", "libxc.r.x", "xfail", "wrong-verdict"),
               _result("libxc/r.y/a-1", "libxc", "libxc.r.y", "fail", "crash", "signal (SIGSEGV)"),
               _result("libxc/r.w/a-1", "libxc", "libxc.r.w", "fail", "inconsistent",
                       "file: reject, pipe: accept")]
    return [("a", a), ("b", b)]


def test_case_classes_name_what_went_wrong():
    runs = _runs()
    assert [case_class(c) for c in runs[0][1].cases] == [
        "pass", "pass", "fail", "timeout", "reported", "pass"]
    assert [case_class(c) for c in runs[1][1].cases] == ["pass", "known", "crash", "inconsistent"]
    assert {name for name, _, _ in CLASSES} >= {"pass", "fail", "known", "reported", "crash",
                                                 "timeout", "memory", "flaky", "harness"}


def test_html_matrix_is_self_contained_with_a_cell_per_rule_and_run():
    runs = _runs()
    page = render_html(runs)
    p = _Page(page)
    assert p.outside == []            # no network: every link is to this page
    assert "<script src" not in page and "@import" not in page and "url(" not in page
    # rows: libxc valid, r.x, r.y, r.w, strategies; xl r.z -> 6 rows x 2 runs
    assert len(p.cells) == cell_count([r for _, r in runs]) == 12
    filled = [c for c in p.cells if not c["none"]]
    assert len(filled) == 9                    # impl-b has no xl and no properties
    assert {c["href"][1:] for c in filled} == p.panels
    by_row = {}
    for row, cells in zip(p.rows, zip(*[iter(p.cells)] * 2)):
        by_row.setdefault(row["format"], []).append([c["class"] for c in cells])
    assert ["v-fail", "v-known"] in by_row["libxc"]             # worst of pass+fail; xfail
    assert ["v-timeout", "v-crash"] in by_row["libxc"]
    assert [None, "v-inconsistent"] in by_row["libxc"]
    assert by_row["xl"] == [["v-reported", None]]
    assert "prog -f libxc -i /s/libxc/r.x/b-1.bin" in page       # the replay command
    assert 'spec.md, section &quot;S&quot;' in page


def test_report_dir_and_report_command_write_the_html(tmp_path):
    folders = []
    for name, run in _runs():
        run.write(tmp_path / name)
        folders.append(str(tmp_path / name))
        single = _Page((tmp_path / name / "report.html").read_text())
        assert len(single.cells) == cell_count([run]) and single.outside == []
    out = tmp_path / "matrix.html"
    r = subprocess.run([sys.executable, "-m", "xenstream", "report", *folders, "--html", "-o",
                        str(out)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert len(_Page(out.read_text()).cells) == 12


ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    """Debian's chromium; CI (XENSTREAM_NEED_CHROMIUM=1) must have it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("XENSTREAM_NEED_CHROMIUM"):
            pytest.fail("chromium is not installed, and .ci/run asked for the rendering test")
        pytest.skip("no chromium to render report.html (apt-get install chromium)")
    return found


def run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=120, cwd=tmp_path)


def png_pixels(path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) octets) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = head[:4]
    assert depth == 8 and colour in (2, 6), head
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, bpp)]


def test_chromium_renders_the_matrix(tmp_path):
    runs = _runs()
    page = tmp_path / "report.html"
    page.write_text(render_html(runs))
    shot = tmp_path / "shot.png"
    r = run_chromium(tmp_path, "--window-size=1200,900", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1200, 900)
    counts = {}
    for px in pixels:
        counts[px] = counts.get(px, 0) + 1
    background = max(counts, key=counts.get)
    assert counts[background] < 0.8 * len(pixels)           # not blank
    assert len(counts) > 50                                  # text, gradients, colours
    near = lambda rgb: sum(n for px, n in counts.items()     # noqa: E731
                           if all(abs(p - q) < 12 for p, q in zip(px, rgb)))
    assert near((0xE5, 0x48, 0x4D)) > 200                    # a fail cell, painted red
    assert near((0xD3, 0xEF, 0xD9)) > 200                    # a pass cell
    # the DOM after the script ran: every cell, and a view filtered by its URL
    dom = run_chromium(tmp_path, "--dump-dom", page.as_uri()).stdout.decode()
    p = _Page(dom)
    assert len(p.cells) == cell_count([r for _, r in runs]) and not any(r["hidden"] for r in p.rows)
    dom = run_chromium(tmp_path, "--dump-dom", page.as_uri() + "?verdict=crash&format=libxc").stdout
    shown = [r for r in _Page(dom.decode()).rows if not r["hidden"]]
    assert [r["classes"] for r in shown] == [["crash", "timeout"]]
    # rows whose runs differ (a run without the rule's cases is no difference)
    dom = run_chromium(tmp_path, "--dump-dom", page.as_uri() + "?diff=1").stdout
    shown = [r for r in _Page(dom.decode()).rows if not r["hidden"]]
    assert sorted(r["classes"] for r in shown) == [["crash", "timeout"], ["fail", "known"]]

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

SUITE = pathlib.Path(__file__).resolve().parent.parent / "conformance" / "test_conformance.py"
BASE = ["--corpus=corpus", "--sources=corpus", "--formats=toy", "-p", "no:cacheprovider",
        "--impl-timeout=30"]


@pytest.fixture
def suite(pytester, monkeypatch):
    toy.register(monkeypatch)
    pytester.makeconftest("from xenstream.conformance.conftest import *  # noqa\n")
    pytester.makepyfile(test_conformance=SUITE.read_text())
    toy.write_corpus(pytester.path / "corpus")
    pytester.fake = toy.write_fake_verifier(pytester.path)
    return pytester


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

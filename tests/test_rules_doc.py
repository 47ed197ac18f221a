"""docs/rules.md is generated from the rule catalogue and must not go stale."""

from pathlib import Path

from xenstream.reference.rules import SPECS, Severity, catalogue, render_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_rules_doc_is_current():
    assert DOC.read_text() == render_markdown(), (
        "docs/rules.md is stale: regenerate it with `xenstream rules --markdown > docs/rules.md`")


def test_every_rule_is_well_formed():
    for rid, rule in catalogue().items():
        parts = rid.split(".")
        assert len(parts) >= 3 and all(p and p == p.lower() for p in parts), rid
        assert rule.spec in SPECS and rule.format in SPECS, rid
        assert rule.section and rule.summary, rid
        assert isinstance(rule.severity, Severity)
        if rule.severity is Severity.EITHER:
            # an `either` rule says why the spec does not decide
            assert any(w in rule.summary for w in ("does not", "not say", "silent", "ambiguous", "expected",
                                                   "may", "either", "undefined", "unclear", "comment",
                                                   "not whether", "refuse", "ignore", "nothing")), rid

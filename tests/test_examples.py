"""Every hand-written example gets its verdict from the reference validator.

An example with ``meta["reader"]`` breaks a check of Xen's C readers: under
that reader profile (restore role) exactly its rule is refused, at the pinned
offset; without it the restore role accepts it.

For a valid example: no finding that either role refuses.  For a malformed
one: the labelled rule is reported exactly once, at the pinned offset, and no
other reject or writer rule is (``either`` findings that merely describe the
context, such as a big-endian image, may accompany it).  ``writer`` examples
are refused in the strict role and accepted in the restore role.
"""

from __future__ import annotations

import pytest

from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.examples import all_examples
from xenstream.reference.formats import get_codec, validate
from xenstream.reference.rules import Role, Severity, catalogue
from xenstream.reference.source import Source

EXAMPLES = all_examples()
IDS = [f"{e.format}/{e.rule or 'valid'}/{e.name}" for e in EXAMPLES]


def run(example, role=Role.STRICT, reader=None) -> Checker:
    return validate(Source.from_bytes(example.data), example.format, Checker(role, reader=reader),
                    **example.options)


def relevant(example, checker):
    return [(f.rule.id, f.offset) for f in checker.findings
            if f.rule.id == example.rule or f.rule.severity is not Severity.EITHER]


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_verdict(example):
    if example.reader is not None:
        under = run(example, Role.RESTORE, example.reader)
        refused = [(f.rule.id, f.offset) for f in under.findings if under.refuses(f)]
        assert {rule for rule, _ in refused} == {example.rule}, [f.describe() for f in under.findings]
        if example.offset is not None:
            assert refused[0][1] == example.offset
        assert example.rule in example.reader.rules
        assert run(example, Role.RESTORE).accepted
        return
    strict = run(example)
    restore = run(example, Role.RESTORE)
    found = relevant(example, strict)
    if example.rule is None:
        assert found == [], [f.describe() for f in strict.findings]
        assert strict.accepted and restore.accepted
        return
    assert [rule for rule, _ in found] == [example.rule], [f.describe() for f in strict.findings]
    if example.offset is not None:
        assert found[0][1] == example.offset
    severity = example.severity
    assert strict.accepted is (severity is Severity.EITHER)
    assert restore.accepted is (severity is not Severity.REJECT)


def test_examples_are_unique():
    ids = [(e.format, e.rule, e.name) for e in EXAMPLES]
    assert len(ids) == len(set(ids))


def test_every_rule_has_a_malformed_example():
    covered = {e.rule for e in EXAMPLES if e.rule}
    missing = sorted(set(catalogue()) - covered)
    assert not missing, f"rules without a malformed example: {missing}"


def test_every_reader_check_has_an_example_under_its_reader():
    from xenstream.reference import readers

    covered = {e.rule for e in EXAMPLES if e.reader is not None}
    missing = sorted({c.rule for c in readers.CHECKS} - covered)
    assert not missing, f"reader checks without an example judged under a reader profile: {missing}"


def test_every_format_has_valid_examples():
    formats = {e.format for e in EXAMPLES}
    for fmt in formats:
        assert any(e.rule is None and e.format == fmt for e in EXAMPLES), fmt


VALID = [e for e in EXAMPLES if e.rule is None]


@pytest.mark.parametrize("example", VALID, ids=[f"{e.format}/{e.name}" for e in VALID])
def test_round_trip(example):
    codec = get_codec(example.format)
    value = codec.decode(example.data, **example.options)
    assert codec.encode(value) == example.data
    assert codec.decode(codec.encode(value), **example.options) == value


REJECTS = [e for e in EXAMPLES if e.rule and e.severity is Severity.REJECT]


@pytest.mark.parametrize("example", REJECTS, ids=[f"{e.format}/{e.rule}/{e.name}" for e in REJECTS])
def test_decode_refuses_reject_examples(example):
    with pytest.raises(StreamError) as info:
        get_codec(example.format).decode(example.data, **example.options)
    assert info.value.rule.id == example.rule
    if example.offset is not None:
        assert info.value.offset == example.offset

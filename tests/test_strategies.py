"""The strategies keep their promises.

Every valid example is accepted by the reference validator (no reject or
writer finding, strict role) and round-trips through decode/encode; every
malformed example is refused with exactly the rule on its label (context-only
``either`` findings may accompany it, as in tests/test_examples.py); writer
labels are refused strictly and accepted by a restorer; either labels are
accepted by both and reported.  Every rule of the catalogue is reached by
some family.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from xenstream import strategies as S
from xenstream.cli import main as cli_main
from xenstream.reference.checker import Checker
from xenstream.reference.formats import get_codec, validate
from xenstream.reference.rules import Role, Severity, catalogue
from xenstream.reference.source import Source

FORMATS = S.available_formats()
TARGETS = [(fmt, fam) for fmt in FORMATS for fam in S.families(fmt)]


def run(fmt: str, data: bytes, role: Role = Role.STRICT) -> Checker:
    return validate(Source.from_bytes(data), fmt, Checker(role))


def assert_valid(ex: S.Labelled, round_trip: bool = True) -> None:
    strict = run(ex.format, ex.data)
    refused = [f.describe() for f in strict.findings if f.rule.severity is not Severity.EITHER]
    assert refused == [], (ex.description, refused)
    assert strict.accepted and run(ex.format, ex.data, Role.RESTORE).accepted
    if round_trip:
        codec = get_codec(ex.format)
        assert codec.encode(codec.decode(ex.data)) == ex.data, ex.description


def assert_label(ex: S.Labelled) -> None:
    assert ex.family in S.FAMILIES
    if ex.rule is None:  # an unknown optional record: valid on purpose
        assert ex.expected == S.ACCEPT
        assert_valid(ex, round_trip=False)
        return
    severity = Severity(ex.expected)
    assert catalogue()[ex.rule].severity is severity
    strict = run(ex.format, ex.data)
    found = [f.rule.id for f in strict.findings if f.rule.id == ex.rule or f.rule.severity is not Severity.EITHER]
    assert found == [ex.rule], (ex.description, [f.describe() for f in strict.findings])
    assert strict.accepted is (severity is Severity.EITHER)
    assert run(ex.format, ex.data, Role.RESTORE).accepted is (severity is not Severity.REJECT)


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_streams_are_accepted_and_round_trip(fmt):
    @given(S.valid(fmt))
    def prop(ex):
        assert (ex.format, ex.rule, ex.expected, ex.family) == (fmt, None, "accept", None)
        assert_valid(ex)
    prop()


@pytest.mark.parametrize("fmt,family", TARGETS, ids=[f"{f}-{fam}" for f, fam in TARGETS])
def test_malformed_streams_break_exactly_their_rule(fmt, family):
    @given(S.malformed(fmt, family=family))
    def prop(ex):
        assert (ex.format, ex.family) == (fmt, family)
        assert_label(ex)
    prop()


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_any_family(fmt):
    @settings(max_examples=10)
    @given(S.malformed(fmt))
    def prop(ex):
        assert_label(ex)
    prop()


MUTATIONS = S.mutations()


@pytest.mark.parametrize("m", MUTATIONS, ids=[f"{m.format}/{m.family}/{m.name}" for m in MUTATIONS])
def test_every_mutation_under_seeded_random(m):
    """Each mutation on its own, a few seeds each: the family strategies pick among
    many and may not reach every one in a short run."""
    for seed in range(3):
        ex = m.apply(S.RandomDraw(seed))
        assert (ex.format, ex.rule, ex.family) == (m.format, m.rule, m.family)
        assert_label(ex)


def test_every_rule_is_reached_by_a_family():
    unreachable = S.unreachable_rules()
    assert not set(unreachable) & S.covered_rules()
    missing = sorted(set(catalogue()) - S.covered_rules() - set(unreachable))
    assert not missing, f"rules no malformed strategy breaks: {missing}"


def test_family_rules_lists_families_and_rules():
    rules = S.family_rules()
    assert set(rules) == set(S.FAMILIES)
    for fmt in FORMATS:
        assert S.families(fmt), fmt
        for fam, ids in S.family_rules(fmt).items():
            assert ids <= set(catalogue()), fam


OPTIONS = [
    ("libxc", dict(guest="pv", version=2, byteorder="big", pages=(3, 5), checkpoints=True, optional=True)),
    ("libxc", dict(guest="hvm", version=3, byteorder="little", pages=1, records=1, checkpoints=0, optional=False)),
    ("libxl", dict(guest="hvm", checkpoints=2, optional=True, legacy=True)),
    ("xl", dict(body="legacy", width=32, guest="hvm")),
    ("xl", dict(body="libxl", guest="pv", byteorder="big")),
    ("legacy", dict(width=32, guest="pv")),
    ("legacy", dict(width=64, guest="hvm", physmap=3, qemu=True, xl=True)),
    ("xenstore", dict(version=1, byteorder="big", records=(2, 6), live_update=True, transactions=True)),
    ("xenstore", dict(version=2, byteorder="little", live_update=False, transactions=False)),
]


@pytest.mark.parametrize("fmt,opts", [o for o in OPTIONS if o[0] in FORMATS],
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(OPTIONS) if f in FORMATS])
def test_options_steer_valid_streams(fmt, opts):
    @settings(max_examples=10)
    @given(S.valid(fmt, **opts))
    def prop(ex):
        assert_valid(ex)
    prop()


def test_options_are_honoured():
    from xenstream.reference import libxc, libxl

    for seed in range(5):
        ex = S.generate_valid("libxc", seed, guest="pv", version=2, byteorder="big", checkpoints=1)
        s = libxc.decode(ex.data)
        assert (s.domain_header.type, s.image_header.version, s.endian.value) == (1, 2, "big")
        assert sum(isinstance(r, libxc.Checkpoint) for r in s.records) == 1
        ex = S.generate_valid("libxl", seed, guest="hvm", optional=False, checkpoints=0)
        assert not any(isinstance(i, libxc.Checkpoint) for i in libxl.decode(ex.data).items)


def test_sample_command_is_deterministic(tmp_path):
    for d in ("d1", "d2"):
        assert cli_main(["sample", "libxc", "--valid", "-n", "3", "--seed", "1", "--out", str(tmp_path / d)]) == 0
    files = sorted(p.name for p in (tmp_path / "d1").iterdir())
    assert len(files) == 6
    for name in files:
        assert (tmp_path / "d1" / name).read_bytes() == (tmp_path / "d2" / name).read_bytes()
    out = tmp_path / "m"
    assert cli_main(["sample", "libxl", "--malformed", "--family", "strings", "-n", "4", "--seed", "7",
                     "--out", str(out)]) == 0
    for sidecar in out.glob("*.json"):
        meta = json.loads(sidecar.read_text())
        assert meta["format"] == "libxl" and meta["family"] == "strings"
        ex = S.Labelled("libxl", sidecar.with_suffix(".bin").read_bytes(), meta["rule"], meta["verdict"],
                        meta["description"], meta["family"])
        assert_label(ex)


def test_profiles_are_registered():
    from hypothesis import settings as hs

    assert hs.get_profile("ci").max_examples < hs.get_profile("nightly").max_examples
    assert hs.get_profile("ci").deadline is None


def test_unknown_format_and_family_are_usage_errors():
    from xenstream.reference.errors import UsageError

    with pytest.raises(UsageError):
        S.valid("nope")
    with pytest.raises(UsageError):
        S.malformed("libxc", family="nope")

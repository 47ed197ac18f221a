"""Every xenstore rule: a malformed example that breaks exactly it, at a pinned offset, and
valid examples that pass it; the C xenstored departures; dump and the command line."""

from __future__ import annotations

import json

import pytest

from xenstream.cli import main
from xenstream.reference import xenstore as xs
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.examples.xenstore import departures, examples
from xenstream.reference.rules import Role, Severity, catalogue
from xenstream.reference.source import Source

EXAMPLES = examples()
RULES = sorted(r for r in catalogue() if r.startswith("xenstore."))
BAD = [e for e in EXAMPLES if e.rule]
VALID = [e for e in EXAMPLES if e.rule is None]


def run(data: bytes, role: Role = Role.STRICT) -> Checker:
    ck = Checker(role)
    try:
        xs.validate(Source.from_bytes(data), ck)
    except StreamError:
        pass
    return ck


def test_rule_ids_and_sections():
    assert len(RULES) >= 45
    for rid in RULES:
        rule = catalogue()[rid]
        assert rule.spec == "xenstore"
        part = rid.split(".")[1]
        assert part in {"stream", "header", "record", "end", "global_data", "connection_data",
                        "watch_data", "watch_data_extended", "transaction_data", "node_data",
                        "global_quota_data", "domain_data"}
        if part not in {"stream", "header", "record"}:
            assert rule.section == part.upper()
        if rule.severity is Severity.EITHER:
            assert any(w in rule.summary for w in ("not say", "does not", "neither", "yet", "may")), rid


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_has_a_failing_example(rule):
    assert any(e.rule == rule for e in BAD), f"no malformed example for {rule}"


@pytest.mark.parametrize("example", BAD, ids=[f"{e.rule}/{e.name}" for e in BAD])
def test_failing_example_breaks_exactly_its_rule_at_its_offset(example):
    ck = run(example.data)
    assert [(f.rule.id, f.offset) for f in ck.findings] == [(example.rule, example.offset)], \
        [f.describe() for f in ck.findings]
    severity = example.severity
    assert ck.accepted is (severity is Severity.EITHER)
    assert run(example.data, Role.RESTORE).accepted is (severity is not Severity.REJECT)


@pytest.mark.parametrize("example", VALID, ids=[e.name for e in VALID])
def test_valid_example_passes_every_rule(example):
    assert run(example.data).findings == []


@pytest.mark.parametrize("example", BAD, ids=[f"{e.rule}/{e.name}" for e in BAD])
def test_decoder_agrees_with_the_validator(example):
    """decode() refuses exactly the examples whose rule the restore role refuses, at that rule."""
    if example.severity is Severity.REJECT:
        with pytest.raises(StreamError) as err:
            xs.decode(example.data)
        assert (err.value.rule.id, err.value.offset) == (example.rule, example.offset)
    else:
        xs.decode(example.data)


@pytest.mark.parametrize("example", departures(), ids=lambda e: e.name)
def test_departures_report_their_rules(example):
    ck = run(example.data)
    assert sorted({f.rule.id for f in ck.findings}) == example.meta["departure"]
    assert example.rule in example.meta["departure"]


def test_c_xenstored_departure_examples_exist_for_findings_md():
    names = {e.name for e in EXAMPLES} | {e.name for e in departures()}
    assert {"c_xenstored_len_counts_padding", "c_xenstored_special_node", "c_xenstored_live_update",
            "c_xenstored_watch_ext_layout", "c_xenstored_watch_ext_desync",
            "watch_ext_spec_layout", "live_update_v2_le", "live_update_v2_be"} <= names


# -- dump and the command line ---------------------------------------------------------

def _example(name: str):
    return next(e for e in EXAMPLES if e.name == name and e.rule is None)


def test_dump_items_are_json_and_text_shows_the_tree():
    data = _example("live_update_v2_be").data
    items = list(xs.CODEC.dump(Source.from_bytes(data), Checker()))
    json.dumps(items)
    assert items[0]["kind"] == "header" and items[0]["fields"]["endian"] == "big"
    assert items[-1]["kind"] == "end"
    text = "\n".join(xs.CODEC.render_text(iter(items)))
    assert "#1 socket fd 12" in text
    assert 'watch "device" token "dev1" depth 2' in text
    assert "transaction 7" in text
    assert 'blob = "\\x00\\x01\\x02\\x00xen\\x00"  [n1]' in text
    assert "/local/domain/1/control/shutdown  deleted" in text


def test_cli_verify_and_dump(tmp_path, capsys):
    good = tmp_path / "good.xs"
    good.write_bytes(_example("live_update_v1_le").data)
    bad = tmp_path / "bad.xs"
    bad.write_bytes(next(e for e in BAD if e.rule == "xenstore.node_data.perm_letter").data)
    assert main(["verify", "-f", "xenstore", "-i", str(good)]) == 0
    assert main(["verify", "-f", "xenstore", "-i", str(bad)]) == 1
    assert "xenstore.node_data.perm_letter" in capsys.readouterr().err
    assert main(["dump", "-f", "xenstore", "-i", str(good)]) == 0
    assert "nodes:" in capsys.readouterr().out
    assert main(["dump", "-f", "xenstore", "--json", "-i", str(good)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["kind"] == "header"


def test_text_dump_of_a_truncated_stream_shows_what_was_read():
    data = _example("live_update_v2_le").data[:1000]
    items = xs.CODEC.dump(Source.from_bytes(data), Checker())
    lines = []
    with pytest.raises(StreamError) as err:
        for line in xs.CODEC.render_text(items):
            lines.append(line)
    assert err.value.rule.id == "xenstore.stream.truncated"
    assert lines[0].startswith("xenstore stream, version 2")
    assert "connections:" in lines and lines[-1].startswith("(the stream cannot be read further")

"""The xl savefile header: its typed value, legacy bodies (no STREAMv2 flag), and dump."""

from __future__ import annotations

import json

import pytest

from xenstream.cli import main
from xenstream.reference import build, legacy, libxc, libxl, xl
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.formats import validate
from xenstream.reference.layout import Endian
from xenstream.reference.libxc import DomainType
from xenstream.reference.source import Source


def test_header_with_config_is_what_xl_writes():
    header = xl.XlHeader.with_config(build.CONFIG_JSON)
    assert header.mandatory_flags == xl.FLAG_STREAMV2 | xl.FLAG_JSON
    assert header.config == build.CONFIG_JSON
    raw = header.encode()
    assert raw[:32] == xl.MAGIC and raw[32:36] == b"\x04\x03\x02\x01"
    assert int.from_bytes(raw[44:48], "little") == 4 + len(build.CONFIG_JSON)
    big = xl.XlHeader.with_config(b"x\0", endian=Endian.BIG, json_config=False).encode()
    assert big[32:36] == b"\x01\x02\x03\x04" and big[36:40] == (2).to_bytes(4, "big")
    assert xl.XlHeader().config is None
    assert xl.XlHeader.with_config(None).mandatory_flags == xl.FLAG_STREAMV2


@pytest.mark.parametrize("guest", ["pv", "hvm"])
def test_legacy_body_without_streamv2(guest):
    body = legacy.build_pv_stream() if guest == "pv" else legacy.build_hvm_stream()
    header = xl.XlHeader.with_config(build.CONFIG_JSON, streamv2=False)
    data = header.encode() + legacy.encode(body)
    checker = validate(Source.from_bytes(data), "xl", Checker())
    assert checker.accepted, [f.describe() for f in checker.findings]
    value = xl.decode(data)
    assert not value.header.streamv2
    assert xl.encode(value) == data


def test_raw_body_is_kept_when_encoding_bytes():
    header = xl.XlHeader.with_config(None, streamv2=False)
    assert xl.encode(xl.XlStream(header, b"\x01\x02")) == header.encode() + b"\x01\x02"


def test_v2_libxc_body_without_streamv2_is_refused():
    data = xl.XlHeader.with_config(None, streamv2=False).encode() + libxc.encode(build.libxc_stream())
    with pytest.raises(StreamError) as info:
        xl.decode(data)
    assert info.value.rule.id == xl.LEGACY_EXPECTED


def test_dump_shows_header_config_and_records(tmp_path, capsys):
    path = tmp_path / "save"
    path.write_bytes(xl.encode(build.xl_stream(DomainType.X86_PV)))
    assert main(["dump", "--json", "-f", "xl", "-i", str(path)]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert items[0]["kind"] == "savefile header" and items[0]["fields"]["json"] is True
    assert json.loads(items[0]["fields"]["config"])["c_info"]["name"] == "guest"
    assert any(i.get("type") == "X86_PV_P2M_FRAMES" for i in items)
    legacy_path = tmp_path / "legacy-save"
    legacy_path.write_bytes(xl.XlHeader.with_config(None, streamv2=False).encode()
                            + legacy.encode(legacy.build_hvm_stream()))
    assert main(["dump", "-f", "xl", "-i", str(legacy_path)]) == 0
    text = capsys.readouterr().out
    assert "streamv2=False" in text and "legacy" in text


# -- optional data larger than CONFIG_PARSE_MAX: checked as it passes, never held -----------

def _big_header(config: bytes, *, json_config: bool = True, tail: bytes = b"", cut: int | None = None) -> bytes:
    """An xl header whose optional data is ``config`` (with its length) and ``tail``."""
    raw = bytearray(xl.XlHeader.with_config(config, json_config=json_config).encode())
    if cut is not None:  # a config length that does not fit
        raw[xl.OPTIONAL_DATA_OFFSET:xl.OPTIONAL_DATA_OFFSET + 4] = cut.to_bytes(4, "little")
    raw += tail
    raw[44:48] = (len(raw) - xl.OPTIONAL_DATA_OFFSET).to_bytes(4, "little")
    return bytes(raw)


_BIG = xl.CONFIG_PARSE_MAX + 1000
_LARGE_CASES = {
    "valid": _big_header(b'{"a": "' + b"x" * _BIG + b'"}\0'),
    "not_nul_terminated": _big_header(b'{"a": "' + b"x" * _BIG + b'"}'),
    "length_too_large": _big_header(b"", json_config=False, tail=bytes(_BIG), cut=_BIG + 10),
    "json_flag_without_config": _big_header(b"", tail=bytes(_BIG)),
    "no_config_but_padding": _big_header(b"", json_config=False, tail=bytes(_BIG)),
    "config_then_more": _big_header(b'{"a": 1}\0', tail=b"\1" * _BIG),
}


@pytest.mark.parametrize("name", sorted(_LARGE_CASES))
@pytest.mark.parametrize("reader", [None, "xen-4.6"])
@pytest.mark.parametrize("cut", [None, -1, -(_BIG // 2), 40])
def test_large_optional_data_gives_the_findings_of_reading_it_whole(name, reader, cut):
    from xenstream.reference import readers
    data = _LARGE_CASES[name]
    if name == "json_flag_without_config":  # with_config(b"") sets no JSON flag: set it
        data = data[:40] + (xl.FLAG_STREAMV2 | xl.FLAG_JSON).to_bytes(4, "little") + data[44:]
    if cut is not None:
        data = data[:cut]
    profile = readers.get(reader) if reader else None

    def findings(whole: bool):
        ck = Checker(reader=profile)
        try:
            xl.read_header(Source.from_bytes(data), ck, whole=whole)
        except StreamError:
            pass
        return [(f.rule.id, f.offset, f.message) for f in ck.findings]

    assert findings(False) == findings(True)


def _validate_with_peak(path):
    import tracemalloc
    tracemalloc.start()
    try:
        src = Source.open(str(path))
        ck = validate(src, "xl", Checker(verbose=True))
        src.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return ck, peak


def _doc(pad: int) -> bytes:
    return b'{"a": "' + b"x" * pad + b'", "b": [' + b'{"c": [1.5e3, -0, null, "\\u00e9"]}, ' * 10_000 + b'NaN]}'


_BIG_DOC = _doc(16 << 20)


def test_large_optional_data_is_not_held(tmp_path):
    path = tmp_path / "big.xl"
    path.write_bytes(_big_header(_BIG_DOC + b"\0") + libxl.encode(build.libxl_stream(DomainType.X86_HVM)))
    ck, peak = _validate_with_peak(path)
    assert ck.accepted and peak < 4 << 20
    assert not [f for f in ck.findings if f.rule.id == xl.JSON_SYNTAX]
    assert not any("not checked" in n for n in ck.notes)


@pytest.mark.parametrize("fault", [b"x", b",", b"\xff", b"\x01", b"]"])
def test_large_config_with_a_syntax_fault_is_found_where_a_small_one_is(tmp_path, fault):
    # the fault lands deep inside the list, past CONFIG_PARSE_MAX
    valid = _doc(2 << 20)
    at = valid.rindex(b"NaN")
    doc = valid[:at] + fault + valid[at:]
    stream = libxl.encode(build.libxl_stream(DomainType.X86_HVM))
    path = tmp_path / "big.xl"
    path.write_bytes(_big_header(doc + b"\0") + stream)
    ck, peak = _validate_with_peak(path)
    assert peak < 4 << 20
    big = [(f.rule.id, f.offset) for f in ck.findings if f.rule.id == xl.JSON_SYNTAX]
    small = validate(Source.from_bytes(_big_header(b'{"a": ' + fault + b"1}\0") + stream), "xl", Checker())
    assert big == [(f.rule.id, f.offset) for f in small.findings if f.rule.id == xl.JSON_SYNTAX] \
        == [(xl.JSON_SYNTAX, xl.OPTIONAL_DATA_OFFSET + 4)]
    message = next(f.message for f in ck.findings if f.rule.id == xl.JSON_SYNTAX)
    assert f"at octet {at}" in message  # where in the configuration it failed


@pytest.mark.parametrize("config, ok", [
    (b"[" * 100_000 + b"]" * 100_000, True),
    (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, True),
    (b"[" * 100_000 + b"]" * 99_999, False),
    (b"[" * 100_000 + b"}" + b"]" * 99_999, False),
    (b"[" * 100_000 + b"]" * 100_001, False),
])
def test_json_nested_past_the_recursion_limit_is_checked_not_a_crash(config, ok):
    data = xl.XlHeader.with_config(config + b"\0").encode() + libxl.encode(build.libxl_stream(DomainType.X86_HVM))
    ck = validate(Source.from_bytes(data), "xl", Checker(verbose=True))
    syntax = [f.offset for f in ck.findings if f.rule.id == xl.JSON_SYNTAX]
    assert syntax == ([] if ok else [xl.OPTIONAL_DATA_OFFSET + 4])
    assert not any("recursion limit" in n or "not checked" in n for n in ck.notes)

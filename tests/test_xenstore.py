"""The xenstore migration stream codec: layouts, records, round trips, truncation, hostile lengths."""

from __future__ import annotations

import io
import random
import tracemalloc

import pytest

from xenstream.reference import xenstore as xs
from xenstream.reference import xenstore_records as xr
from xenstream.reference.checker import Checker
from xenstream.reference.errors import StreamError
from xenstream.reference.examples.xenstore import examples
from xenstream.reference.framing import RECORD_HEADER, RawRecord
from xenstream.reference.layout import Endian
from xenstream.reference.rules import Role
from xenstream.reference.source import Source
from xenstream.reference.xenstore_build import c_style, live_update_state, migration_state, owner
from xenstream.reference.xenstore_records import (
    ConnectionData, DomainData, GlobalData, GlobalQuotaData, Header, NodeData, Permission, Quota,
    SharedRing, Socket, TransactionData, WatchData, WatchDataExtended, XenstoreStream, encode,
)

LE, BE = Endian.LITTLE, Endian.BIG
COMBOS = [(v, e) for v in (1, 2) for e in (LE, BE)]
COMBO_IDS = [f"v{v}-{e.value}" for v, e in COMBOS]


def findings(data: bytes, role: Role = Role.STRICT) -> list[tuple[str, int]]:
    ck = Checker(role)
    try:
        xs.validate(Source.from_bytes(data), ck)
    except StreamError:
        pass
    return [(f.rule.id, f.offset) for f in ck.findings]


# -- layouts match the spec's diagrams ----------------------------------------------

@pytest.mark.parametrize("layout, size", [
    (xr.HEADER, 16), (xr.GLOBAL_DATA, 8), (xr.CONNECTION_DATA, 24), (xr.SHARED_RING_SPEC, 8),
    (xr.SOCKET_SPEC, 8), (xr.UNIQUE_ID, 8), (xr.WATCH_DATA, 8), (xr.WATCH_DATA_EXTENDED, 12),
    (xr.TRANSACTION_DATA, 8), (xr.NODE_DATA, 16), (xr.NODE_PERMISSION, 4),
    (xr.GLOBAL_QUOTA_DATA, 4), (xr.DOMAIN_DATA, 8), (xr.QUOTA_VAL, 4), (RECORD_HEADER, 8),
], ids=lambda x: getattr(x, "name", str(x)))
def test_layout_sizes(layout, size):
    assert layout.size == size


def test_record_type_values():
    assert [t.value for t in xr.RecordType] == list(range(9))
    assert xr.RecordType.WATCH_DATA_EXTENDED.name == "WATCH_DATA_EXTENDED"


# -- one record of each type ----------------------------------------------------------

RING = ConnectionData(1, SharedRing(1, evtchn=5))
RECORDS = {
    "GLOBAL_DATA": GlobalData(5, -1),
    "CONNECTION_DATA ring": ConnectionData(3, SharedRing(7, evtchn=9, tdomid=2), b"in", b"outx", 3, 0xAB),
    "CONNECTION_DATA socket": ConnectionData(4, Socket(-1), b"", b"resp", 4),
    "WATCH_DATA": WatchData(1, b"/local/domain/1", b"token"),
    "WATCH_DATA_EXTENDED": WatchDataExtended(1, b"device", b"t", depth=4),
    "TRANSACTION_DATA": TransactionData(1, 99),
    "NODE_DATA committed": NodeData(b"/local", b"a\0b", (Permission("n", 0), Permission("r", 1, 1))),
    "NODE_DATA pending": NodeData(b"/local/p", b"v", owner(1), 1, 99, 3),
    "NODE_DATA deleted": NodeData(b"/local/d", b"", (), 1, 99, 0),
    "GLOBAL_QUOTA_DATA": GlobalQuotaData((Quota(b"nodes", 1),), (Quota(b"memory", 0),)),
    "DOMAIN_DATA": DomainData(1, (Quota(b"watches", 8),), features=0),
    "reserved type": RawRecord(0x1234, b"abc", "xenstore"),
}


def _with_context(rec) -> tuple:
    """``rec`` after what its cross-record rules need."""
    return (RING, TransactionData(1, 99), NodeData(b"/local", b"", owner(0)), rec)


# every record in every version and byte order it is valid in (WATCH_DATA_EXTENDED: version 2 only)
ROUND_TRIPS = [pytest.param(name, version, endian, id=f"{name}-{combo_id}")
               for name, rec in RECORDS.items()
               for (version, endian), combo_id in zip(COMBOS, COMBO_IDS)
               if not (isinstance(rec, WatchDataExtended) and version == 1)]


@pytest.mark.parametrize("name, version, endian", ROUND_TRIPS)
def test_record_round_trip(name, version, endian):
    rec = RECORDS[name]
    value = XenstoreStream(Header(version, endian), _with_context(rec))
    data = encode(value)
    assert xs.decode(data) == value
    assert encode(xs.decode(data)) == data
    allowed = {"xenstore.record.type_reserved"} if name == "reserved type" else set()
    assert {r for r, _ in findings(data)} <= allowed


def test_node_data_octets_little_endian():
    rec = NodeData(b"/a", b"x\0", (Permission("b", 0x102, 1),), 0, 0, 0)
    rtype, body = xr.encode_body(rec, LE)
    assert rtype == 5
    assert body == (b"\0\0\0\0" b"\0\0\0\0" b"\x03\x00" b"\x02\x00" b"\0\0" b"\x01\x00"
                    b"b\x01\x02\x01" b"/a\0" b"x\0")


def test_connection_data_octets_big_endian():
    rec = ConnectionData(1, SharedRing(2, evtchn=3, tdomid=4), b"ab", b"cde", 1, 0x1122334455667788)
    _, body = xr.encode_body(rec, BE)
    assert body == (b"\0\0\0\x01" b"\0\0" b"\0\x01" b"\0\x02\0\x04\0\0\0\x03" b"\0\x02" b"\0\x01"
                    b"\0\0\0\x03" b"abcde" b"\0\0\0" b"\x11\x22\x33\x44\x55\x66\x77\x88")
    assert len(body) == 40


def test_watch_ext_and_socket_octets():
    _, body = xr.encode_body(WatchDataExtended(7, b"/w", b"t", depth=0xFFFF), LE)
    assert body == b"\x07\0\0\0" b"\x03\0" b"\x02\0" b"\xff\xff" b"\0\0" b"/w\0" b"t\0"
    _, body = xr.encode_body(ConnectionData(2, Socket(-1)), LE)
    assert body[8:16] == b"\xff\xff\xff\xff\0\0\0\0"


def test_header_is_big_endian_whatever_the_flags():
    for endian in (LE, BE):
        data = encode(XenstoreStream(Header(2, endian)))
        assert data[:8] == b"xenstore"
        assert data[8:12] == b"\0\0\0\x02"
        assert data[12:16] == (b"\0\0\0\x01" if endian is BE else b"\0\0\0\0")
    assert encode(XenstoreStream(Header(1, BE)))[16:] == bytes(8)  # END: type 0, len 0


# -- whole streams ------------------------------------------------------------------

@pytest.mark.parametrize("version, endian", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("build", [live_update_state, migration_state])
def test_stream_round_trip(build, version, endian):
    value = build(version=version, endian=endian)
    data = encode(value)
    assert findings(data) == []
    assert xs.decode(data) == value
    assert encode(xs.decode(data)) == data
    assert xs.decode(Source(io.BytesIO(data))) == value


@pytest.mark.parametrize("version, endian", COMBOS, ids=COMBO_IDS)
def test_c_style_framing_round_trips(version, endian):
    data = c_style(live_update_state(version=version, endian=endian))
    assert {r for r, _ in findings(data)} == {"xenstore.record.body_excess"}
    assert findings(data, Role.RESTORE) == findings(data)
    assert encode(xs.decode(data)) == data


def test_every_valid_example_round_trips():
    valid = [e for e in examples() if e.rule is None]
    assert valid
    for e in valid:
        assert findings(e.data) == [], e.name
        assert encode(xs.decode(e.data)) == e.data, e.name


def test_valid_examples_cover_every_record_type_version_and_byte_order():
    seen, combos = set(), set()
    for e in examples():
        if e.rule is None:
            value = xs.decode(e.data)
            combos.add((value.header.version, value.header.endian))
            seen.update(type(r).__name__ for r in value.records)
    assert seen >= {"GlobalData", "ConnectionData", "WatchData", "WatchDataExtended", "TransactionData",
                    "NodeData", "GlobalQuotaData", "DomainData"}
    assert combos == {(v, e) for v, e in COMBOS}


def test_decode_refuses_what_restore_refuses_only():
    bad = encode(XenstoreStream(Header(2), (ConnectionData(2, Socket(9, pad=1)),)))
    assert xs.decode(bad).records[0].spec.pad == 1  # writer rule: a restorer reads on
    with pytest.raises(StreamError) as err:
        xs.decode(bad, role=Role.STRICT)
    assert err.value.rule.id == "xenstore.connection_data.socket_pad"


# -- truncation and hostile lengths -----------------------------------------------------

@pytest.mark.parametrize("endian", [LE, BE], ids=["le", "be"])
def test_every_prefix_is_truncation(endian):
    data = encode(live_update_state(endian=endian, specials=False))
    for cut in range(len(data)):
        prefix = data[:cut]
        ck = Checker()
        with pytest.raises(StreamError) as err:
            xs.validate(Source.from_bytes(prefix), ck)
        assert err.value.rule.id == "xenstore.stream.truncated", cut
        assert err.value.offset == cut, cut
        with pytest.raises(StreamError) as err:
            xs.decode(prefix)
        assert err.value.rule.id == "xenstore.stream.truncated", cut


def _hostile(rtype: int, body: bytes = b"") -> bytes:
    return encode(XenstoreStream(Header(2)))[:16] + RECORD_HEADER.pack(LE, rtype, 0xFFFFFFFF) + body


@pytest.mark.parametrize("rtype, body", [
    (xr.RecordType.NODE_DATA, b""),
    (xr.RecordType.NODE_DATA, xr.NODE_DATA.pack(LE, 0, 0, 0xFFFF, 0xFFFF, 0, 0xFFFF)),
    (xr.RecordType.CONNECTION_DATA, xr.CONNECTION_DATA.pack(LE, 1, 0, 0, bytes(8), 0xFFFF, 0, 0xFFFFFFFF)),
    (xr.RecordType.GLOBAL_QUOTA_DATA, xr.GLOBAL_QUOTA_DATA.pack(LE, 0xFFFF, 0xFFFF)),
    (xr.RecordType.DOMAIN_DATA, xr.DOMAIN_DATA.pack(LE, 1, 0xFFFF, 0)),
    (xr.RecordType.WATCH_DATA, xr.WATCH_DATA.pack(LE, 1, 0xFFFF, 0xFFFF)),
    (0x77, b""),
    (xr.RecordType.END, b""),
], ids=["node", "node-fields", "connection", "global-quota", "domain", "watch", "reserved", "end"])
def test_hostile_length_is_truncation_without_allocating_it(rtype, body):
    """Validation stops with truncation where the input ends; a decoder may stop earlier at a
    finding it refuses (an END with a body, pending data longer than the body), never later."""
    data = _hostile(rtype, body)
    for decoding in (False, True):
        tracemalloc.start()
        try:
            with pytest.raises(StreamError) as err:
                if decoding:
                    xs.decode(data)
                else:
                    xs.validate(Source.from_bytes(data), Checker())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        if not decoding:
            assert err.value.rule.id == "xenstore.stream.truncated"
            assert err.value.offset == len(data)
        assert peak < 4 << 20


def test_hostile_length_from_a_pipe():
    data = _hostile(xr.RecordType.NODE_DATA)

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            chunk = self.buf.read(min(len(b), 7))
            b[:len(chunk)] = chunk
            return len(chunk)

    with pytest.raises(StreamError) as err:
        xs.validate(Source(Pipe()), Checker())
    assert err.value.rule.id == "xenstore.stream.truncated"


def test_mutations_only_ever_raise_stream_error():
    base = encode(live_update_state()) + b""
    rng = random.Random(1234)
    for _ in range(1500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        ck = Checker()
        try:
            xs.validate(Source.from_bytes(bytes(data)), ck)
        except StreamError:
            pass
        try:
            value = xs.decode(bytes(data))
        except StreamError:
            continue
        xs.encode(value)  # whatever decodes, encodes


def test_validation_does_not_hold_node_values():
    """20,000 nodes of 2 KiB values: validation's memory is the path-hash set, not the values."""
    e = LE
    parts = [xr.encode_header(Header(2, e)), xr.encode_one(NodeData(b"/v", b"", owner(0)), e)]
    value = bytes(range(256)) * 8
    for i in range(20_000):
        parts.append(xr.encode_one(NodeData(b"/v/%d" % i, value, owner(1)), e))
    parts.append(xr.END_RECORD[e])
    data = b"".join(parts)
    assert len(data) > 40_000_000
    tracemalloc.start()
    try:
        ck = Checker()
        xs.validate(Source(io.BytesIO(data)), ck)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ck.findings == []
    assert peak < 16 << 20, peak

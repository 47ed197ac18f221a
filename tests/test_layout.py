"""The declarative layer (reference/layout.py): one declaration, everything derived."""

from __future__ import annotations

from typing import ClassVar

import pytest

from xenstream.reference import libxc, xenstore_records as xs
from xenstream.reference.framing import RECORD_HEADER
from xenstream.reference.layout import Array, Bytes, CString, Endian, Layout, count, reserved, u8, u16, u32, u64

LE, BE = Endian.LITTLE, Endian.BIG


def test_a_split_reserved_field_is_one_value_most_significant_part_first():
    lay = Layout("x", u8("a"), u8("b"), reserved("reserved", "HI"))
    raw = lay.encode(LE, a=1, b=2, reserved=0x1234_0000_0005)
    assert raw == bytes([1, 2]) + (0x1234).to_bytes(2, "little") + (5).to_bytes(4, "little")
    assert lay.values(LE, raw) == {"a": 1, "b": 2, "reserved": 0x1234_0000_0005}
    assert lay.offset("reserved") == 2 and lay.size == 8


def test_counts_are_measured_and_variable_parts_follow_in_order():
    item = Layout("pair", u64("index"), u64("value"))
    lay = Layout("r", count("n"), reserved(), tail=(Array("pairs", item, "n"), CString("name", None), Bytes("rest")))
    raw = lay.encode(BE, pairs=((1, 2),), name=b"ab", rest=b"z")
    assert raw[:4] == (1).to_bytes(4, "big") and raw.endswith(b"ab\0z")
    assert lay.offset("pairs", 1) == 8 + 16


def test_a_declared_record_is_a_frozen_dataclass_with_its_encoder_and_offsets():
    class X86Foo(libxc.Record):
        TYPE: ClassVar[int] = 0x13
        LAYOUT = Layout("X86_FOO", u32("flags"), reserved(), tail=(Bytes("data"),))

    v = X86Foo(flags=1, data=b"abc")
    assert (v.flags, v.data, v.reserved) == (1, b"abc", 0)
    with pytest.raises(AttributeError):
        v.flags = 2
    body = v.encode_body(LE)
    assert X86Foo.decode_fixed(LE, body) == {"flags": 1, "reserved": 0}
    h = (0x13, len(body), 100)
    from xenstream.reference.framing import make_header
    assert X86Foo.at(make_header(h), "reserved") == 100 + RECORD_HEADER.size + 4
    assert make_header(h).length_offset == 104


def test_the_declared_types_keep_their_positional_order():
    assert libxc.ImageHeader(3, 1).endian is BE
    assert libxc.DomainHeader(1, 12, 4, 17, 0).xen_minor == 17
    assert libxc.PageData((1,), b"p", 7).reserved == 7
    assert libxc.X86TscInfo(1, 2, 3, 4, 5).reserved == 5
    w = xs.WatchDataExtended(1, b"/p", b"t", 3)
    assert (w.depth, w.pad, w.trailing) == (3, 0, b"")
    assert xs.encode_body(w, LE)[1][:12] == bytes.fromhex("01000000 0300 0200 0300 0000".replace(" ", ""))


def test_get_reads_a_field_only_when_the_data_holds_it():
    assert libxc.IMAGE_HEADER.get(BE, bytes(16), "version") == 0
    assert libxc.IMAGE_HEADER.get(BE, bytes(17), "options") is None
    assert libxc.IMAGE_HEADER.get(BE, bytes(15), "version") is None

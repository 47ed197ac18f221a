"""The record framing that libxc, libxl and xenstore streams share.

All three specs frame records the same way: a 32-bit ``type``, a 32-bit body
length, the body, then zero padding to the next multiple of 8 octets (libxc
"Records", libxl "Record Overview", xenstore "Records").  The header is in the
stream's byte order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Iterator, NamedTuple

from .checker import Checker
from .layout import Declared, Endian, Layout, u32
from .source import Source

#: The header of every record: ``type``, ``body_length`` (the xenstore spec calls it ``len``).
RECORD_HEADER = Layout("record header", u32("type"), u32("body_length"))
ALIGN = 8
#: Bit 31 of a record type: an optional record (libxc, libxl), which a reader may skip.
OPTIONAL_BIT = 0x80000000
ZERO_PAD = bytes(ALIGN)


def type_name(types, rtype: int) -> str:
    """The spec name of record type ``rtype`` of the enumeration ``types``, or what it is."""
    try:
        return types(rtype).name
    except ValueError:
        kind = "optional" if rtype & OPTIONAL_BIT else "mandatory"
        return f"unknown {kind} 0x{rtype:08x}"


def padding_length(body_length: int) -> int:
    """Octets of padding after a body of ``body_length`` octets."""
    return -body_length & (ALIGN - 1)


class RecordHeader(NamedTuple):
    """A record header as read; a named tuple because one is made per record
    (a frozen dataclass costs twice as much to construct)."""

    type: int
    body_length: int
    offset: int  # of the record header in the input

    @property
    def body_offset(self) -> int:
        return self.offset + RECORD_HEADER.size

    @property
    def padding_offset(self) -> int:
        return self.body_offset + self.body_length

    @property
    def length_offset(self) -> int:
        """Where ``body_length`` is: the offset of a finding about the body's length."""
        return self.offset + RECORD_HEADER.offset("body_length")


#: ``make_header((type, body_length, offset))``: a RecordHeader without the
#: Python-level ``__new__`` of a named tuple (readers make one per record).
make_header = partial(tuple.__new__, RecordHeader)

class Item(NamedTuple):
    """What a format's reader yields, in stream order: a header (``header`` names it, e.g.
    ``"image header"``) or a record (``header`` is its :class:`RecordHeader`), with its typed
    value when the reader collects (None otherwise, or when it cannot be decoded)."""

    offset: int
    header: "RecordHeader | str"
    value: object


#: ``make_item((offset, header, value))``: an Item without the Python-level ``__new__``.
make_item = partial(tuple.__new__, Item)


def dump_items(reader) -> Iterator[dict]:
    """``xenstream dump``'s dicts of the items ``reader`` yields, from its ``dump_item`` (called as
    each item arrives, while the reader's state is that item's); None from it skips the item."""
    for item in reader.items():
        out = reader.dump_item(item)
        if out is not None:
            yield out

#: The zero padding of each length 0-7, by ``body_length & 7``.
_ZERO_PADS = tuple(ZERO_PAD[:padding_length(n)] for n in range(ALIGN))


#: Spans past this many are not walked (bounds a walk's time on hostile input).
MAX_SPANS = 100_000


def frames(data: bytes, at: int, endian: Endian) -> Iterator[tuple[int, int, int]]:
    """``(start, end, type)`` of each whole record (padding included) from ``at``, trusting
    nothing: stops at the first record that does not fit in ``data``."""
    s, n, size = RECORD_HEADER.of(endian), len(data), RECORD_HEADER.size
    while at + size <= n:
        rtype, length = s.unpack_from(data, at)
        end = at + size + length + padding_length(length)
        if end > n:
            return
        yield at, end, rtype
        at = end


def sniffer(header: Layout, version: str, options: str):
    """A codec's ``sniff``: ``(version, byteorder)`` from a big-endian ``header`` whose
    ``options`` field has the byte-order bit 0; None for what ``data`` does not hold."""
    def sniff(data: bytes) -> tuple[int | None, str | None]:
        flags = header.get(Endian.BIG, data, options)
        return header.get(Endian.BIG, data, version), None if flags is None else Endian.from_bit(flags).value
    return sniff


def check_padding(src: Source, header: RecordHeader, checker: Checker, rule_id: str) -> None:
    """Read the padding after a body and report non-zero octets under ``rule_id``."""
    zeros = _ZERO_PADS[header.body_length & 7]
    if not zeros:
        return
    pad = src.read_exact(len(zeros), "record padding")
    if pad != zeros:
        offset = src.offset - len(pad)
        first = next(i for i, b in enumerate(pad) if b)
        checker.report(rule_id, offset + first,
                       f"padding octet {first} is 0x{pad[first]:02x}, not zero")


def encode_record(rtype: int, body: bytes, endian: Endian, *, padding: bytes | None = None) -> bytes:
    """A whole record: header, body, padding (zeros unless ``padding`` is given)."""
    pad = ZERO_PAD[:padding_length(len(body))] if padding is None else padding
    return RECORD_HEADER.pack(endian, rtype, len(body)) + body + pad


class BodyReader:
    """What the record readers of the libxc and libxl streams share.

    A subclass sets ``src``, ``checker``, ``collect`` and ``index``, names its
    ``LAYER`` and ``TRAILING_DATA`` rule, and says what a record is called
    (``record_name``), for messages.
    """

    LAYER: str
    TRAILING_DATA: str

    def record_name(self, rtype: int) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def skip_body(self, h: RecordHeader, consumed: int = 0) -> None:
        """Pass over the rest of a body (a seek on a regular file)."""
        left = h.body_length - consumed
        if left > 0:
            self.src.skip(left, f"{self.record_name(h.type)} body")

    def blob(self, h: RecordHeader, consumed: int = 0) -> bytes:
        """The rest of the body: kept when collecting, skipped otherwise."""
        if self.collect:
            return self.src.read_exact(h.body_length - consumed, f"{self.record_name(h.type)} body")
        self.skip_body(h, consumed)
        return b""

    def empty(self, h: RecordHeader, rule: str) -> None:
        """A record whose body_length is 0: report ``rule`` and skip the body otherwise."""
        if h.body_length:
            self.checker.report(rule, h.length_offset, f"body_length is {h.body_length}, expected 0")
            self.skip_body(h)

    def check_trailing(self) -> None:
        """For the outermost stream: nothing may follow END."""
        if not self.src.at_eof():
            self.checker.at(self.LAYER, self.index, "after END")
            self.checker.report(self.TRAILING_DATA, self.src.offset, "data follows the END record")


class Record(Declared):
    """Base of the typed records of a framed stream: ``TYPE`` is the record type, ``layer``
    the format whose byte order encodes it, ``LAYOUT`` (in a subclass) the body."""

    TYPE: ClassVar[int]
    layer: ClassVar[str]

    @property
    def type(self) -> int:
        return self.TYPE

    @classmethod
    def at(cls, h: RecordHeader, name: str, index: int | None = None) -> int:
        """The stream offset of field ``name`` (entry ``index`` of an array) in the body of ``h``."""
        return h.body_offset + cls.LAYOUT.offset(name, index)


@dataclass(frozen=True)
class RawRecord:
    """A record held as its type and body.

    What a reader makes of a type it does not know (optional when bit 31 is
    set), and what tests and strategies build when they want a body that no
    typed value expresses.  ``layer`` says whose byte order encodes it.
    """

    record_type: int
    body: bytes = b""
    layer: str = ""

    OPTIONAL_BIT = OPTIONAL_BIT

    @property
    def type(self) -> int:
        return self.record_type

    @property
    def optional(self) -> bool:
        return bool(self.record_type & self.OPTIONAL_BIT)

    def encode_body(self, endian: Endian) -> bytes:
        return self.body

"""libxenlight Domain Image Format, version 2 (libxl-migration-stream.pandoc, revision 2).

A libxl stream is a big-endian header and records framed like libxc's.  A
LIBXC_CONTEXT record hands the stream to libxc: the libxc stream (headers and
records) follows it directly.  In a checkpointed stream libxc hands the
stream back at its CHECKPOINT record; libxl records follow up to
CHECKPOINT_END, after which libxc records resume ("CHECKPOINT" in the libxc
spec, "CHECKPOINT_END" here).

The typed value of a libxl stream is a flat sequence of items in stream
order: libxl records and, after LIBXC_CONTEXT and CHECKPOINT_END, the libxc
records they hand over to, each encoded in its own layer's byte order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Iterator

from . import framing, libxc
from .checker import Checker
from .formats import Codec, by_magic
from .framing import (
    OPTIONAL_BIT, RECORD_HEADER, BodyReader, Item, RawRecord, RecordHeader, check_padding, encode_record,
    make_header, make_item,
)
from .layout import Bytes, Declared, Endian, Layout, reserved, u32, u64
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source

LAYER = "libxl"

IDENT = 0x4C6962786C466D74  # "LibxlFmt"
VERSION = 2
OPT_ENDIAN = 1 << 0
OPT_LEGACY = 1 << 1
OPTIONS_RESERVED_MASK = 0xFFFFFFFC

#: Characters of a xenstore key (EMULATOR_XENSTORE_DATA: "alphanumeric ASCII and -/_@").
KEY_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")
#: Human-readable ASCII: printable characters and space.
VALUE_CHARS = frozenset(range(0x20, 0x7F))


class RecordType(enum.IntEnum):
    END = 0
    LIBXC_CONTEXT = 1
    EMULATOR_XENSTORE_DATA = 2
    EMULATOR_CONTEXT = 3
    CHECKPOINT_END = 4
    CHECKPOINT_STATE = 5


class EmulatorId(enum.IntEnum):
    UNKNOWN = 0  # in the case of a legacy stream
    QEMU_TRADITIONAL = 1
    QEMU_UPSTREAM = 2


class ControlId(enum.IntEnum):
    CHECKPOINT_NEW = 0
    CHECKPOINT_SVM_SUSPENDED = 1
    CHECKPOINT_SVM_READY = 2
    CHECKPOINT_SVM_RESUMED = 3


# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER


_rule = definer("libxl")


STREAM_TRUNCATED = _rule("libxl.stream.truncated", R, "Record Overview",
                         "the stream does not end inside the header, a record header, body or padding")
END_MISSING = _rule("libxl.stream.end_missing", R, "END", "the stream is terminated by an END record")
TRAILING_DATA = _rule("libxl.stream.trailing_data", W, "END",
                      "END is the final record in the stream: nothing follows it")
IDENT_RULE = _rule("libxl.header.ident", R, "Header", "ident is 0x4c6962786c466d74 (\"LibxlFmt\")")
VERSION_RULE = _rule("libxl.header.version", R, "Header", "version is 2")
OPTIONS_RESERVED = _rule("libxl.header.options_reserved", W, "Header",
                         "options bits 2-31 are reserved (written as zero)")
ENDIANNESS = _rule("libxl.header.endianness", E, "Header",
                   "images generated on i386, x86_64 or arm hosts are little-endian; the spec defines "
                   "the big-endian bit but not whether a reader must accept it")
PADDING = _rule("libxl.record.padding", W, "Record Overview",
                "record padding is zeroes (written as zero; the framing is libxc's, whose readers ignore it)")
UNKNOWN_MANDATORY = _rule("libxl.record.unknown_mandatory", R, "Record Overview",
                          "types 0x00000006-0x7FFFFFFF are reserved for future mandatory records: a reader "
                          "that does not know one cannot restore the stream")
END_LENGTH = _rule("libxl.end.length", R, "END", "END has body_length 0")
END_IN_CHECKPOINT = _rule("libxl.end.in_checkpoint", E, "CHECKPOINT_END",
                          "END inside a checkpoint (after libxc's CHECKPOINT, before CHECKPOINT_END); the "
                          "spec does not say whether the unfinished checkpoint is restored")
LIBXC_LENGTH = _rule("libxl.libxc_context.length", R, "LIBXC_CONTEXT", "LIBXC_CONTEXT has body_length 0")
LIBXC_MISSING = _rule("libxl.libxc_context.missing", E, "LIBXC_CONTEXT",
                      "a stream without LIBXC_CONTEXT restores no domain; the spec does not require one")
LIBXC_REPEATED = _rule("libxl.libxc_context.repeated", E, "LIBXC_CONTEXT",
                       "a second LIBXC_CONTEXT after the libxc stream ended; the spec does not say whether "
                       "a second libxc stream may follow")
EMU_LENGTH = _rule("libxl.emulator.length", R, "Emulator Records",
                   "emulator records hold at least the 8-octet emulator_id/index sub header")
EMU_ID = _rule("libxl.emulator.emulator_id", R, "Emulator Records",
               "emulator_id is 0, 1 or 2; 0x00000003-0xFFFFFFFF are reserved for future emulators")
EMU_ID_UNKNOWN = _rule("libxl.emulator.unknown_not_legacy", E, "Emulator Records",
                       "emulator_id 0 (Unknown) is described for legacy streams; the spec does not say "
                       "whether a stream without the legacy bit may use it")
EMU_GUEST_TYPE = _rule("libxl.emulator.guest_type", E, "Emulator Records",
                       "emulators belong to HVM guests; the spec does not say whether an x86 PV stream may "
                       "carry emulator records (libxl's restorer refuses them)")
XSD_NUL = _rule("libxl.emulator_xenstore_data.nul_terminated", R, "EMULATOR_XENSTORE_DATA",
                "the key/value data ends with the NUL of the last value")
XSD_PAIRS = _rule("libxl.emulator_xenstore_data.pairs", R, "EMULATOR_XENSTORE_DATA",
                  "the data is a packed sequence of (key, value) pairs: an even number of NUL-terminated "
                  "strings")
XSD_EMPTY_KEY = _rule("libxl.emulator_xenstore_data.empty_key", R, "EMULATOR_XENSTORE_DATA",
                      "a key is not empty")
XSD_KEY_CHARS = _rule("libxl.emulator_xenstore_data.key_chars", R, "EMULATOR_XENSTORE_DATA",
                      "keys are strictly alphanumeric ASCII and -/_@")
XSD_KEY_RELATIVE = _rule("libxl.emulator_xenstore_data.key_relative", R, "EMULATOR_XENSTORE_DATA",
                         "keys are relative to the device model's xenstore tree (no leading /)")
XSD_VALUE_CHARS = _rule("libxl.emulator_xenstore_data.value_chars", E, "EMULATOR_XENSTORE_DATA",
                        "values are expected to be human-readable ASCII; 'expected' is not a requirement")
CPE_LENGTH = _rule("libxl.checkpoint_end.length", R, "CHECKPOINT_END", "CHECKPOINT_END has body_length 0")
CPE_OUTSIDE = _rule("libxl.checkpoint_end.outside_checkpoint", R, "CHECKPOINT_END",
                    "CHECKPOINT_END marks the end of a checkpoint: it follows a libxc CHECKPOINT")
CPS_LENGTH = _rule("libxl.checkpoint_state.length", R, "CHECKPOINT_STATE",
                   "CHECKPOINT_STATE has an 8-octet body (control_id, padding)")
CPS_CONTROL = _rule("libxl.checkpoint_state.control_id", R, "CHECKPOINT_STATE",
                    "control_id is one of 0x0-0x3")
CPS_PADDING = _rule("libxl.checkpoint_state.padding", W, "CHECKPOINT_STATE",
                    "the padding field is written as zero")
CHECKPOINT_EOF = _rule("libxl.stream.ends_after_checkpoint", E, "CHECKPOINT_END",
                       "a checkpointed stream stops after CHECKPOINT_END without END (Xen's checkpointed "
                       "writers never write END; the receiver restores the last checkpoint); the spec does not "
                       "say whether a stream may end there")
UNKNOWN_OPTIONAL = _rule("libxl.record.unknown_optional", E, "Record Overview",
                         "a record type with bit 31 set that the reader does not know; the spec reserves the "
                         "range for optional records without saying that a reader may skip one")
CPS_DIRECTION = _rule("libxl.checkpoint_state.direction", E, "CHECKPOINT_STATE",
                      "CHECKPOINT_STATE is COLO control information; the spec does not say what a reader "
                      "of a saved image does with one")

# --------------------------------------------------------------------------
# Where a record may come with respect to the libxc stream: (record, phases, rule) as data
# --------------------------------------------------------------------------


class Phase(enum.Enum):
    """Where a libxl stream is with respect to the libxc stream it hands over to."""

    BEFORE_LIBXC = "before LIBXC_CONTEXT"
    LIBXC_ENDED = "after the libxc stream's END"
    IN_CHECKPOINT = "inside a checkpoint: after libxc's CHECKPOINT, before CHECKPOINT_END"


@dataclass(frozen=True)
class PhaseRule:
    """A ``record`` read in one of ``phases`` breaks ``rule``."""

    record: int
    phases: frozenset
    rule: str
    message: str


ORDER: tuple[PhaseRule, ...] = (
    PhaseRule(RecordType.END, frozenset({Phase.IN_CHECKPOINT}), END_IN_CHECKPOINT, "END before CHECKPOINT_END"),
    PhaseRule(RecordType.END, frozenset({Phase.BEFORE_LIBXC}), LIBXC_MISSING,
              "END of a libxl stream without LIBXC_CONTEXT"),
    PhaseRule(RecordType.CHECKPOINT_END, frozenset({Phase.BEFORE_LIBXC, Phase.LIBXC_ENDED}), CPE_OUTSIDE,
              "CHECKPOINT_END without a libxc CHECKPOINT before it"),
    PhaseRule(RecordType.LIBXC_CONTEXT, frozenset({Phase.LIBXC_ENDED, Phase.IN_CHECKPOINT}), LIBXC_REPEATED,
              "second LIBXC_CONTEXT"),
)
_ORDER_BY_RECORD: dict[int, tuple[PhaseRule, ...]] = {
    int(t): tuple(row for row in ORDER if row.record == t) for t in {row.record for row in ORDER}}

# --------------------------------------------------------------------------
# Layouts and typed values, declared once (reference/layout.py)
# --------------------------------------------------------------------------


class LibxlHeader(Declared):
    """"Header": always big-endian."""

    LAYOUT = Layout("libxl header", u64("ident", const=IDENT), u32("version", default=VERSION),
                    u32("options", default=0))

    @property
    def endian(self) -> Endian:
        return Endian.from_bit(self.options)

    @property
    def legacy(self) -> bool:
        return bool(self.options & OPT_LEGACY)

    def encode(self) -> bytes:
        return self.encode_body(Endian.BIG)


HEADER = LibxlHeader.LAYOUT


class Record(framing.Record):
    layer: ClassVar[str] = LAYER


class End(Record):
    TYPE: ClassVar[int] = RecordType.END
    LAYOUT = Layout("END")


class LibxcContext(Record):
    """LIBXC_CONTEXT; the libxc headers follow it (None when the libxc stream is resumed)."""

    TYPE: ClassVar[int] = RecordType.LIBXC_CONTEXT
    LAYOUT = Layout("LIBXC_CONTEXT")
    EXTRA = (("image_header", object, None), ("domain_header", object, None))


class CheckpointEnd(Record):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT_END
    LAYOUT = Layout("CHECKPOINT_END")


class KeyValuePairs(Bytes):
    """EMULATOR_XENSTORE_DATA's data: (key, value) pairs, each string NUL-terminated, to the end."""

    def encode(self, endian: Endian, value) -> bytes:
        return encode_pairs(value)


def encode_pairs(pairs) -> bytes:
    return b"".join(k + b"\0" + v + b"\0" for k, v in pairs)


#: "Emulator Records": the sub header both emulator records start with.
EMULATOR_HEADER = Layout("emulator sub header", u32("emulator_id", default=EmulatorId.QEMU_UPSTREAM),
                         u32("index", default=0))


class EmulatorXenstoreData(Record):
    TYPE: ClassVar[int] = RecordType.EMULATOR_XENSTORE_DATA
    LAYOUT = Layout("EMULATOR_XENSTORE_DATA", *EMULATOR_HEADER.fields, tail=(KeyValuePairs("pairs", default=()),))


class EmulatorContext(Record):
    TYPE: ClassVar[int] = RecordType.EMULATOR_CONTEXT
    LAYOUT = Layout("EMULATOR_CONTEXT", *EMULATOR_HEADER.fields, tail=(Bytes("context"),))


class CheckpointState(Record):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT_STATE
    LAYOUT = Layout("CHECKPOINT_STATE", u32("control_id", default=ControlId.CHECKPOINT_NEW), reserved("padding"))


@dataclass(frozen=True)
class LibxlStream:
    header: LibxlHeader
    #: libxl records and the libxc records they hand over to, in stream order
    items: tuple = field(default_factory=tuple)

    @property
    def libxc_endian(self) -> Endian:
        for item in self.items:
            if isinstance(item, LibxcContext) and item.image_header is not None:
                return item.image_header.endian
        return Endian.LITTLE


record_name = partial(framing.type_name, RecordType)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def encode(stream: LibxlStream) -> bytes:
    endian = stream.header.endian
    xc_endian = stream.libxc_endian
    out = [stream.header.encode()]
    for item in stream.items:
        if item.layer == libxc.LAYER:
            out.append(encode_record(item.type, item.encode_body(xc_endian), xc_endian))
            continue
        out.append(encode_record(item.type, item.encode_body(endian), endian))
        if isinstance(item, LibxcContext) and item.image_header is not None:
            xc_endian = item.image_header.endian
            out.append(libxc.encode_headers(item.image_header, item.domain_header))
    return b"".join(out)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


class LibxlReader(BodyReader):
    """Reads (and validates) a libxl stream; :meth:`items` yields the header, each libxl
    record and, after LIBXC_CONTEXT (and CHECKPOINT_END), the libxc headers and records it
    hands over to (see :class:`~.libxc.LibxcReader`)."""

    LAYER = LAYER
    TRAILING_DATA = TRAILING_DATA
    record_name = staticmethod(record_name)

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False):
        self.src = src
        self.checker = checker
        self.collect = collect
        self.header: LibxlHeader | None = None
        self.endian = Endian.LITTLE
        self.index = 0
        self.ended = False
        self.libxc: libxc.LibxcReader | None = None
        self.libxc_paused = False   # libxc stopped at CHECKPOINT; libxl records until CHECKPOINT_END
        self._resume_after_state = False  # COLO: CHECKPOINT_STATE follows CHECKPOINT_END, then libxc resumes
        self._resumable = False
        self.counts: dict[int, int] = {}

    def _truncated(self, t: Truncated):
        self.checker.fail(STREAM_TRUNCATED, t.end, t.describe())

    def read_header(self) -> None:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "header")
        base = src.offset
        try:
            header = LibxlHeader(**LibxlHeader.decode_fixed(Endian.BIG, src.read_exact(HEADER.size,
                                                                                       "libxl header")))
        except Truncated as t:
            self._truncated(t)
        if header.ident != IDENT:
            ck.fail(IDENT_RULE, base, f"ident is 0x{header.ident:016x}, not 0x{IDENT:016x} (\"LibxlFmt\")")
        if header.version != VERSION:
            ck.fail(VERSION_RULE, HEADER.at(base, "version"), f"version is {header.version}, not {VERSION}")
        options = header.options
        if options & OPTIONS_RESERVED_MASK:
            ck.report(OPTIONS_RESERVED, HEADER.at(base, "options"),
                      f"reserved options bits set: 0x{options & OPTIONS_RESERVED_MASK:08x}")
        if options & OPT_ENDIAN:
            ck.report(ENDIANNESS, HEADER.at(base, "options"), "big-endian libxl stream")
        self.header = header
        self.endian = header.endian
        ck.note(f"libxl header: version {header.version}, {self.endian.value}-endian"
                + (", converted from a legacy stream" if options & OPT_LEGACY else ""))

    def items(self) -> Iterator[Item]:
        offset = self.src.offset
        self.read_header()
        yield make_item((offset, "header", self.header))
        while not self.ended:
            yield from self.record_items()

    def read_one(self) -> tuple[int, RecordHeader, object]:
        """Read and check the next libxl record."""
        src, ck = self.src, self.checker
        try:
            offset = src.offset
            ck.at(LAYER, self.index, "record header")
            if src.at_eof():
                ck.fail(END_MISSING, offset, "input ends without an END record")
            rtype, length = src.unpack(RECORD_HEADER.of(self.endian), "record header")
            h = make_header((rtype, length, offset))
            ck.at(LAYER, self.index, record_name(rtype))
            self.counts[rtype] = self.counts.get(rtype, 0) + 1
            parser = _PARSERS.get(rtype)
            if parser is None:
                if not rtype & OPTIONAL_BIT:
                    ck.report(UNKNOWN_MANDATORY, offset, f"unknown mandatory record type 0x{rtype:08x}")
                else:
                    if UNKNOWN_OPTIONAL in ck.reader_rules:
                        ck.report(UNKNOWN_OPTIONAL, offset, f"unknown optional record type 0x{rtype:08x}")
                    ck.note(f"  optional record 0x{rtype:08x} ignored ({length} octets)")
                value = RawRecord(rtype, self.blob(h), LAYER)
            else:
                value = parser(self, h)
            check_padding(src, h, ck, PADDING)
            self.index += 1
        except Truncated as t:
            self._truncated(t)
        return rtype, h, value

    def record_items(self) -> Iterator[Item]:
        """The next libxl record, and the libxc part it hands over to."""
        rtype, h, value = self.read_one()
        if rtype == RecordType.END:
            self.ended = True
        elif rtype == RecordType.LIBXC_CONTEXT:
            saved = self.checker.save()
            reader = self._start_libxc(h)
            yield make_item((h.offset, h, LibxcContext(reader.image_header, reader.domain_header)))
            at = h.padding_offset
            yield make_item((at, "image header", reader.image_header))
            yield make_item((at + libxc.IMAGE_HEADER.size, "domain header", reader.domain_header))
            yield from self._libxc_records(saved)
            return
        elif (rtype == RecordType.CHECKPOINT_END and self._resumable) or \
                (rtype == RecordType.CHECKPOINT_STATE and self._resume_after_state):
            self._resume_after_state = False
            yield make_item((h.offset, h, value))
            if self._checkpoint_boundary():
                yield from self._libxc_records(self.checker.save())
            return
        yield make_item((h.offset, h, value))

    def _checkpoint_boundary(self) -> bool:
        """After a checkpoint (CHECKPOINT_END, or COLO's CHECKPOINT_STATE after it): whether libxc resumes.

        The stream may stop here (a checkpointed sender never writes END), and
        COLO's primary sends CHECKPOINT_STATE (CHECKPOINT_NEW) before the next
        checkpoint's libxc records (libxl_colo_save.c, colo_start_new_checkpoint).
        """
        head = self.src.peek(RECORD_HEADER.size)
        if not head:
            ck = self.checker
            ck.at(LAYER, self.index, "after checkpoint")
            ck.report(CHECKPOINT_EOF, self.src.offset, "the stream ends after a checkpoint, without END")
            if self.libxc is not None:
                saved = ck.save()
                self.libxc._end_rules(make_header((libxc.RecordType.END, 0, self.src.offset)))
                ck.restore(saved)
            self.ended = True
            self._resumable = False
            return False
        if len(head) == RECORD_HEADER.size:
            rtype, length = RECORD_HEADER.unpack(self.endian, head)
            if rtype == RecordType.CHECKPOINT_STATE and length == CheckpointState.LAYOUT.size:
                self._resume_after_state = True
                return False
        return True

    @property
    def phase(self) -> Phase:
        if self.libxc is None:
            return Phase.BEFORE_LIBXC
        return Phase.IN_CHECKPOINT if self.libxc_paused else Phase.LIBXC_ENDED

    def order_rules(self, h: RecordHeader) -> None:
        """The rows of :data:`ORDER` for the record ``h`` in the current phase."""
        rows = _ORDER_BY_RECORD.get(h.type)
        if rows:
            phase = self.phase
            for row in rows:
                if phase in row.phases:
                    self.checker.report(row.rule, h.offset, row.message)

    # -- the embedded libxc stream ----------------------------------------------
    def _start_libxc(self, h: RecordHeader) -> libxc.LibxcReader:
        self.order_rules(h)
        reader = self.libxc = libxc.LibxcReader(self.src, self.checker, collect=self.collect,
                                                stop_at_checkpoint=True)
        reader.read_headers()
        return reader

    def _libxc_records(self, saved: tuple) -> Iterator[Item]:
        self._resumable = False
        last = None
        for item in self.libxc.records():
            last = item
            yield item
        self.libxc_paused = last is not None and last.header.type == libxc.RecordType.CHECKPOINT
        self._resumable = False
        self.checker.restore(saved)

    def _emulator_header(self, h: RecordHeader) -> dict | None:
        ck = self.checker
        size = EMULATOR_HEADER.size
        if h.body_length < size:
            ck.report(EMU_LENGTH, h.length_offset,
                      f"body_length {h.body_length} is shorter than the {size}-octet emulator sub header")
            self.skip_body(h)
            return None
        fields = EMULATOR_HEADER.values(self.endian, self.src.read_exact(size, "emulator sub header"))
        emu_id = fields["emulator_id"]
        if emu_id not in EmulatorId._value2member_map_:
            ck.report(EMU_ID, h.body_offset, f"emulator_id 0x{emu_id:08x} is reserved")
        elif emu_id == EmulatorId.UNKNOWN and not (self.header.options & OPT_LEGACY):
            ck.report(EMU_ID_UNKNOWN, h.body_offset, "emulator_id 0 (Unknown) without the legacy bit")
        if self.libxc is not None and self.libxc.domain_header is not None \
                and self.libxc.guest is libxc.DomainType.X86_PV:
            ck.report(EMU_GUEST_TYPE, h.offset, f"{record_name(h.type)} in a stream of an x86 PV guest")
        return fields


# Parsers -----------------------------------------------------------------------


def _parse_end(r: LibxlReader, h: RecordHeader):
    r.empty(h, END_LENGTH)
    r.order_rules(h)
    return End()


def _parse_libxc_context(r: LibxlReader, h: RecordHeader):
    r.empty(h, LIBXC_LENGTH)
    return LibxcContext()


def _parse_checkpoint_end(r: LibxlReader, h: RecordHeader):
    r.empty(h, CPE_LENGTH)
    r.order_rules(h)
    if r.libxc_paused:
        r._resumable = True
    return CheckpointEnd()


def _parse_checkpoint_state(r: LibxlReader, h: RecordHeader):
    ck = r.checker
    ck.report(CPS_DIRECTION, h.offset, "CHECKPOINT_STATE in a saved stream")
    size = CheckpointState.LAYOUT.size
    if h.body_length != size:
        ck.report(CPS_LENGTH, h.length_offset, f"body_length is {h.body_length}, expected {size}")
        r.skip_body(h)
        return None
    value = CheckpointState.from_fixed(r.endian, r.src.read_exact(size, "CHECKPOINT_STATE body"))
    if value.control_id not in ControlId._value2member_map_:
        ck.report(CPS_CONTROL, CheckpointState.at(h, "control_id"),
                  f"control_id 0x{value.control_id:08x} is not defined")
    if value.padding:
        ck.report(CPS_PADDING, CheckpointState.at(h, "padding"), f"padding is 0x{value.padding:08x}")
    return value


def _parse_emulator_context(r: LibxlReader, h: RecordHeader):
    fields = r._emulator_header(h)
    if fields is None:
        return None
    return EmulatorContext(fields["emulator_id"], fields["index"], r.blob(h, EMULATOR_HEADER.size))


class _PairScanner:
    """Streams through NUL-terminated key/value strings, checking each as it completes."""

    __slots__ = ("r", "start", "strings", "current", "current_start", "pairs", "key", "bad_value")

    def __init__(self, r: LibxlReader, start: int):
        self.r = r
        self.start = start
        self.strings = 0          # completed strings
        self.current = bytearray()  # the incomplete string (bounded: checked, then kept only if collecting)
        self.current_start = start
        self.pairs: list[tuple[bytes, bytes]] = []
        self.key = b""
        self.bad_value = False

    def feed(self, chunk: bytes, offset: int) -> None:
        pos = 0
        while True:
            nul = chunk.find(b"\0", pos)
            if nul < 0:
                self.current += chunk[pos:]
                return
            self.current += chunk[pos:nul]
            self._complete(bytes(self.current))
            self.current.clear()
            pos = nul + 1
            self.current_start = offset + pos

    def _complete(self, s: bytes) -> None:
        ck, at = self.r.checker, self.current_start
        if self.strings % 2 == 0:  # a key
            if not s:
                ck.report(XSD_EMPTY_KEY, at, f"key #{self.strings // 2} is empty")
            elif s[0] == 0x2F:
                ck.report(XSD_KEY_RELATIVE, at, f"key {s[:40]!r} is absolute")
            else:
                bad = next((i for i, c in enumerate(s) if c not in KEY_CHARS), None)
                if bad is not None:
                    ck.report(XSD_KEY_CHARS, at + bad, f"key {s[:40]!r} has character 0x{s[bad]:02x}")
            self.key = s
        else:
            if not self.bad_value:
                bad = next((i for i, c in enumerate(s) if c not in VALUE_CHARS), None)
                if bad is not None:
                    self.bad_value = True
                    ck.report(XSD_VALUE_CHARS, at + bad,
                              f"value of {self.key[:40]!r} has character 0x{s[bad]:02x}")
            if self.r.collect:
                self.pairs.append((self.key, s))
        self.strings += 1

    def finish(self, end: int) -> None:
        ck = self.r.checker
        if self.current:
            ck.report(XSD_NUL, end - 1, "the last string is not NUL-terminated")
        elif self.strings % 2:
            ck.report(XSD_PAIRS, end - 1, f"{self.strings} strings do not make key/value pairs")


def _parse_emulator_xenstore_data(r: LibxlReader, h: RecordHeader):
    fields = r._emulator_header(h)
    if fields is None:
        return None
    start = EmulatorXenstoreData.at(h, "pairs")
    scanner = _PairScanner(r, start)
    offset = start
    for chunk in r.src.chunks(h.body_length - EMULATOR_HEADER.size, "EMULATOR_XENSTORE_DATA key/value data"):
        scanner.feed(chunk, offset)
        offset += len(chunk)
    scanner.finish(offset)
    if r.collect and not scanner.current and scanner.strings % 2 == 0:
        return EmulatorXenstoreData(fields["emulator_id"], fields["index"], tuple(scanner.pairs))
    return None


_PARSERS = {
    int(RecordType.END): _parse_end,
    int(RecordType.LIBXC_CONTEXT): _parse_libxc_context,
    int(RecordType.EMULATOR_XENSTORE_DATA): _parse_emulator_xenstore_data,
    int(RecordType.EMULATOR_CONTEXT): _parse_emulator_context,
    int(RecordType.CHECKPOINT_END): _parse_checkpoint_end,
    int(RecordType.CHECKPOINT_STATE): _parse_checkpoint_state,
}


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    reader = LibxlReader(src, checker)
    for _ in reader.items():
        pass
    reader.check_trailing()
    summary(reader)


def summary(reader: LibxlReader) -> None:
    """``verify -v``: how many records of each type the stream held."""
    checker = reader.checker
    if checker.verbose:
        for rtype, n in sorted(reader.counts.items()):
            checker.note(f"libxl {record_name(rtype)}: {n} record(s)")
        if reader.libxc is not None:
            for rtype, n in sorted(reader.libxc.counts.items()):
                checker.note(f"libxc {libxc.record_name(rtype)}: {n} record(s)")


def stream_of(reader: LibxlReader, items) -> LibxlStream:
    """The typed value of the libxl stream whose ``items`` (collected) ``reader`` yields."""
    values = tuple(value for _, h, value in items if value is not None and not isinstance(h, str))
    return LibxlStream(reader.header, values)


def read_stream(src: Source, checker: Checker) -> LibxlStream:
    """The typed value of the libxl stream in ``src``, which ends it (decode, and xl's)."""
    reader = LibxlReader(src, checker, collect=True)
    stream = stream_of(reader, reader.items())
    reader.check_trailing()
    return stream


def decode(data, *, role: Role = Role.RESTORE) -> LibxlStream:
    return read_stream(as_source(data), Checker(role, fail_fast=True))


def describe_record(rec) -> dict:
    if isinstance(rec, EmulatorXenstoreData):
        return {"emulator_id": rec.emulator_id, "index": rec.index,
                "pairs": {k.decode("ascii", "replace"): v.decode("ascii", "replace") for k, v in rec.pairs}}
    if isinstance(rec, LibxcContext):
        return {}
    return libxc.describe_record(rec)


def dump_item(reader: LibxlReader, item: Item) -> dict | None:
    """The ``xenstream dump`` dict of an item ``reader`` just yielded: the header, a libxl
    record, or the libxc part after LIBXC_CONTEXT; None for a record that could not be decoded."""
    offset, h, value = item
    if h == "header":
        return {"layer": LAYER, "kind": "header", "offset": offset,
                "fields": {"version": value.version, "endian": value.endian.value,
                           "legacy": value.legacy, "options": value.options}}
    if value is None:
        return None
    if isinstance(h, str) or value.layer == libxc.LAYER:
        out = libxc.dump_item(item, reader.libxc.index - 1)
        return {**out, "offset": offset} if isinstance(h, str) else out
    return {"layer": LAYER, "kind": "record", "index": reader.index - 1, "offset": offset,
            "type": record_name(value.type), "type_value": value.type,
            "body_length": h.body_length, "fields": describe_record(value)}


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    reader = LibxlReader(src, checker, collect=True)
    for item in reader.items():
        out = dump_item(reader, item)
        if out is not None:
            yield out
    reader.check_trailing()


def spans(data: bytes, options=None, base: int = 0, out: list | None = None) -> tuple[list, int]:
    """The header and each whole record from ``base``, following the embedded libxc stream as
    the reader does: its headers (one span) after LIBXC_CONTEXT, its records in its byte order
    up to its END or CHECKPOINT, and again after CHECKPOINT_END; where the walk stopped."""
    out = [] if out is None else out
    if len(data) < base + HEADER.size:
        return out, base
    out.append((base, base + HEADER.size, "libxl-header"))
    endian = Endian.from_bit(HEADER.get(Endian.BIG, data, "options", base))
    at, layer, xc_endian, seen_context = base + HEADER.size, LAYER, None, False
    while len(out) < framing.MAX_SPANS:
        frame = next(framing.frames(data, at, xc_endian if layer == libxc.LAYER else endian), None)
        if frame is None:
            break
        start, at, rtype = frame
        out.append((start, at, layer))
        if layer == LAYER and rtype == RecordType.LIBXC_CONTEXT and not seen_context:
            seen_context = True
            if at + libxc.HEADERS_SIZE > len(data):
                break
            xc_endian = libxc.headers_endian(data, at)
            out.append((at, at + libxc.HEADERS_SIZE, "libxc-headers"))
            at += libxc.HEADERS_SIZE
            layer = libxc.LAYER
        elif layer == LAYER and rtype == RecordType.CHECKPOINT_END and seen_context:
            layer = libxc.LAYER
        elif layer == libxc.LAYER and rtype in (libxc.RecordType.END, libxc.RecordType.CHECKPOINT):
            layer = LAYER
    return out, at


CODEC = Codec(
    name="libxl",
    description="libxl migration stream v2 wrapping libxc (libxl-migration-stream.pandoc)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    sniff=framing.sniffer(HEADER, "version", "options"),
    spans=spans,
    trim=partial(libxc.trim_page_data, spans),
    keep_whole=True,
    recognise=by_magic((HEADER.encode(Endian.BIG)[:HEADER.offset("version")], "the libxl header's ident \"LibxlFmt\"")),
)

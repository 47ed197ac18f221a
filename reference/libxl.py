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
from typing import ClassVar, Iterator

from . import libxc
from .checker import Checker
from .formats import Codec
from .framing import RECORD_HEADER, BodyReader, RecordHeader, RawRecord, check_padding, encode_record, make_header
from .layout import Endian, Layout
from .rules import Role, Severity, definer
from .source import Source, Truncated

LAYER = "libxl"

#: "Header": ident, version, options; always big-endian.
HEADER = Layout("libxl header", "QII", "ident", "version", "options")
#: "Emulator Records": emulator_id, index.
EMULATOR_HEADER = Layout("emulator sub header", "II", "emulator_id", "index")
#: "CHECKPOINT_STATE": control_id, padding.
CHECKPOINT_STATE = Layout("CHECKPOINT_STATE", "II", "control_id", "padding")

IDENT = 0x4C6962786C466D74  # "LibxlFmt"
VERSION = 2
OPT_ENDIAN = 1 << 0
OPT_LEGACY = 1 << 1
OPTIONS_RESERVED_MASK = 0xFFFFFFFC
OPTIONAL_BIT = 0x80000000

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
# Typed values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LibxlHeader:
    version: int = VERSION
    options: int = 0
    ident: int = IDENT

    @property
    def endian(self) -> Endian:
        return Endian.from_bit(self.options)

    @property
    def legacy(self) -> bool:
        return bool(self.options & OPT_LEGACY)

    def encode(self) -> bytes:
        return HEADER.be.pack(self.ident, self.version, self.options)


class Record:
    TYPE: ClassVar[int]
    layer: ClassVar[str] = LAYER

    @property
    def type(self) -> int:
        return self.TYPE

    def encode_body(self, endian: Endian) -> bytes:
        return b""


@dataclass(frozen=True)
class End(Record):
    TYPE: ClassVar[int] = RecordType.END


@dataclass(frozen=True)
class LibxcContext(Record):
    """LIBXC_CONTEXT; the libxc headers follow it (None when the libxc stream is resumed)."""

    TYPE: ClassVar[int] = RecordType.LIBXC_CONTEXT
    image_header: libxc.ImageHeader | None = None
    domain_header: libxc.DomainHeader | None = None


@dataclass(frozen=True)
class CheckpointEnd(Record):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT_END


def encode_pairs(pairs) -> bytes:
    return b"".join(k + b"\0" + v + b"\0" for k, v in pairs)


@dataclass(frozen=True)
class EmulatorXenstoreData(Record):
    TYPE: ClassVar[int] = RecordType.EMULATOR_XENSTORE_DATA
    emulator_id: int = EmulatorId.QEMU_UPSTREAM
    index: int = 0
    pairs: tuple[tuple[bytes, bytes], ...] = ()

    def encode_body(self, endian: Endian) -> bytes:
        return EMULATOR_HEADER.pack(endian, self.emulator_id, self.index) + encode_pairs(self.pairs)


@dataclass(frozen=True)
class EmulatorContext(Record):
    TYPE: ClassVar[int] = RecordType.EMULATOR_CONTEXT
    emulator_id: int = EmulatorId.QEMU_UPSTREAM
    index: int = 0
    context: bytes = b""

    def encode_body(self, endian: Endian) -> bytes:
        return EMULATOR_HEADER.pack(endian, self.emulator_id, self.index) + self.context


@dataclass(frozen=True)
class CheckpointState(Record):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT_STATE
    control_id: int = ControlId.CHECKPOINT_NEW
    padding: int = 0

    def encode_body(self, endian: Endian) -> bytes:
        return CHECKPOINT_STATE.pack(endian, self.control_id, self.padding)


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


def record_name(rtype: int) -> str:
    try:
        return RecordType(rtype).name
    except ValueError:
        kind = "optional" if rtype & OPTIONAL_BIT else "mandatory"
        return f"unknown {kind} 0x{rtype:08x}"


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
    LAYER = LAYER
    TRAILING_DATA = TRAILING_DATA
    record_name = staticmethod(record_name)

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False):
        self.src = src
        self.checker = checker
        self.collect = collect
        self.header: LibxlHeader | None = None
        self.endian = Endian.LITTLE
        self.items: list = []
        self.index = 0
        self.ended = False
        self.libxc: libxc.LibxcReader | None = None
        self.libxc_paused = False   # libxc stopped at CHECKPOINT; libxl records until CHECKPOINT_END
        self._resume_after_state = False  # COLO: CHECKPOINT_STATE follows CHECKPOINT_END, then libxc resumes
        self.counts: dict[int, int] = {}

    def _truncated(self, t: Truncated):
        self.checker.fail(STREAM_TRUNCATED, t.end, t.describe())

    def read_header(self) -> None:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "header")
        base = src.offset
        try:
            ident, version, options = HEADER.be.unpack(src.read_exact(HEADER.size, "libxl header"))
        except Truncated as t:
            self._truncated(t)
        if ident != IDENT:
            ck.fail(IDENT_RULE, base, f"ident is 0x{ident:016x}, not 0x{IDENT:016x} (\"LibxlFmt\")")
        if version != VERSION:
            ck.fail(VERSION_RULE, base + 8, f"version is {version}, not {VERSION}")
        if options & OPTIONS_RESERVED_MASK:
            ck.report(OPTIONS_RESERVED, base + 12,
                      f"reserved options bits set: 0x{options & OPTIONS_RESERVED_MASK:08x}")
        if options & OPT_ENDIAN:
            ck.report(ENDIANNESS, base + 12, "big-endian libxl stream")
        self.header = LibxlHeader(version, options, ident)
        self.endian = Endian.from_bit(options)
        ck.note(f"libxl header: version {version}, {self.endian.value}-endian"
                + (", converted from a legacy stream" if options & OPT_LEGACY else ""))

    def read_one(self) -> tuple[int, RecordHeader, object]:
        """Read the next libxl record (and any libxc part it hands over to)."""
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
        if self.collect and value is not None:
            self.items.append(value)
        if rtype == RecordType.END:
            self.ended = True
        elif rtype == RecordType.LIBXC_CONTEXT:
            self._run_libxc(rtype)
        elif (rtype == RecordType.CHECKPOINT_END and self._resumable) or \
                (rtype == RecordType.CHECKPOINT_STATE and self._resume_after_state):
            self._resume_after_state = False
            if self._checkpoint_boundary():
                self._run_libxc(rtype)
        return rtype, h, value

    def _checkpoint_boundary(self) -> bool:
        """After a checkpoint (CHECKPOINT_END, or COLO's CHECKPOINT_STATE after it): whether libxc resumes.

        The stream may stop here (a checkpointed sender never writes END), and
        COLO's primary sends CHECKPOINT_STATE (CHECKPOINT_NEW) before the next
        checkpoint's libxc records (libxl_colo_save.c, colo_start_new_checkpoint).
        """
        head = self.src.peek(8)
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
        if len(head) == 8:
            rtype, length = RECORD_HEADER.of(self.endian).unpack(head)
            if rtype == RecordType.CHECKPOINT_STATE and length == CHECKPOINT_STATE.size:
                self._resume_after_state = True
                return False
        return True

    _resumable = False
    #: when set, the embedded libxc records go to ``libxc_each(index, header, value)``
    #: instead of ``items`` (see LibxcReader.read_records)
    libxc_each = None

    def read_records(self) -> None:
        while not self.ended:
            self.read_one()

    # -- the embedded libxc stream ----------------------------------------------
    def _run_libxc(self, rtype: int) -> None:
        saved = self.checker.save()
        reader = self.libxc
        if rtype == RecordType.LIBXC_CONTEXT:
            if reader is not None:
                self.checker.report(LIBXC_REPEATED, self.src.offset - 8, "second LIBXC_CONTEXT")
            reader = self.libxc = libxc.LibxcReader(self.src, self.checker, collect=self.collect,
                                                    stop_at_checkpoint=True)
            reader.read_headers()
            if self.collect:
                self.items[-1] = LibxcContext(reader.image_header, reader.domain_header)
        self._resumable = False
        first = len(reader.records)
        result = reader.read_records(each=self.libxc_each)
        if self.collect:
            self.items.extend(reader.records[first:])
            del reader.records[:]
        self.libxc_paused = result == libxc.RecordType.CHECKPOINT
        self._resumable = False
        self.checker.restore(saved)

    def _emulator_header(self, h: RecordHeader) -> tuple[int, int] | None:
        ck = self.checker
        if h.body_length < EMULATOR_HEADER.size:
            ck.report(EMU_LENGTH, h.offset + 4,
                      f"body_length {h.body_length} is shorter than the 8-octet emulator sub header")
            self.skip_body(h)
            return None
        emu_id, index = EMULATOR_HEADER.unpack(self.endian, self.src.read_exact(8, "emulator sub header"))
        if emu_id not in EmulatorId._value2member_map_:
            ck.report(EMU_ID, h.body_offset, f"emulator_id 0x{emu_id:08x} is reserved")
        elif emu_id == EmulatorId.UNKNOWN and not (self.header.options & OPT_LEGACY):
            ck.report(EMU_ID_UNKNOWN, h.body_offset, "emulator_id 0 (Unknown) without the legacy bit")
        if self.libxc is not None and self.libxc.domain_header is not None \
                and self.libxc.guest is libxc.DomainType.X86_PV:
            ck.report(EMU_GUEST_TYPE, h.offset, f"{record_name(h.type)} in a stream of an x86 PV guest")
        return emu_id, index


# Parsers -----------------------------------------------------------------------


def _parse_end(r: LibxlReader, h: RecordHeader):
    r.empty(h, END_LENGTH)
    if r.libxc_paused:
        r.checker.report(END_IN_CHECKPOINT, h.offset, "END before CHECKPOINT_END")
    if r.libxc is None:
        r.checker.report(LIBXC_MISSING, h.offset, "END of a libxl stream without LIBXC_CONTEXT")
    return End()


def _parse_libxc_context(r: LibxlReader, h: RecordHeader):
    r.empty(h, LIBXC_LENGTH)
    return LibxcContext()


def _parse_checkpoint_end(r: LibxlReader, h: RecordHeader):
    r.empty(h, CPE_LENGTH)
    if not r.libxc_paused:
        r.checker.report(CPE_OUTSIDE, h.offset, "CHECKPOINT_END without a libxc CHECKPOINT before it")
    else:
        r._resumable = True
    return CheckpointEnd()


def _parse_checkpoint_state(r: LibxlReader, h: RecordHeader):
    ck = r.checker
    ck.report(CPS_DIRECTION, h.offset, "CHECKPOINT_STATE in a saved stream")
    if h.body_length != CHECKPOINT_STATE.size:
        ck.report(CPS_LENGTH, h.offset + 4, f"body_length is {h.body_length}, expected 8")
        r.skip_body(h)
        return None
    control, padding = CHECKPOINT_STATE.unpack(r.endian, r.src.read_exact(8, "CHECKPOINT_STATE body"))
    if control not in ControlId._value2member_map_:
        ck.report(CPS_CONTROL, h.body_offset, f"control_id 0x{control:08x} is not defined")
    if padding:
        ck.report(CPS_PADDING, h.body_offset + 4, f"padding is 0x{padding:08x}")
    return CheckpointState(control, padding)


def _parse_emulator_context(r: LibxlReader, h: RecordHeader):
    fields = r._emulator_header(h)
    if fields is None:
        return None
    return EmulatorContext(fields[0], fields[1], r.blob(h, 8))


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
    start = h.body_offset + 8
    scanner = _PairScanner(r, start)
    offset = start
    for chunk in r.src.chunks(h.body_length - 8, "EMULATOR_XENSTORE_DATA key/value data"):
        scanner.feed(chunk, offset)
        offset += len(chunk)
    scanner.finish(offset)
    if r.collect and not scanner.current and scanner.strings % 2 == 0:
        return EmulatorXenstoreData(fields[0], fields[1], tuple(scanner.pairs))
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


def read_body(src: Source, checker: Checker, *, collect: bool) -> LibxlReader:
    """Header and records of a libxl stream (the caller checks what follows)."""
    reader = LibxlReader(src, checker, collect=collect)
    reader.read_header()
    reader.read_records()
    return reader


def validate(src: Source, checker: Checker) -> None:
    reader = read_body(src, checker, collect=False)
    reader.check_trailing()
    if checker.verbose:
        for rtype, n in sorted(reader.counts.items()):
            checker.note(f"libxl {record_name(rtype)}: {n} record(s)")
        if reader.libxc is not None:
            for rtype, n in sorted(reader.libxc.counts.items()):
                checker.note(f"libxc {libxc.record_name(rtype)}: {n} record(s)")


def decode(data, *, role: Role = Role.RESTORE) -> LibxlStream:
    checker = Checker(role, fail_fast=True)
    reader = read_body(libxc._as_source(data), checker, collect=True)
    reader.check_trailing()
    return LibxlStream(reader.header, tuple(reader.items))


def describe_record(rec) -> dict:
    if isinstance(rec, EmulatorXenstoreData):
        return {"emulator_id": rec.emulator_id, "index": rec.index,
                "pairs": {k.decode("ascii", "replace"): v.decode("ascii", "replace") for k, v in rec.pairs}}
    if isinstance(rec, LibxcContext):
        return {}
    return libxc.describe_record(rec)


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    """Items for ``xenstream dump``: libxl records, the libxc part after LIBXC_CONTEXT."""
    reader = LibxlReader(src, checker, collect=True)
    start = src.offset
    reader.read_header()
    yield {"layer": LAYER, "kind": "header", "offset": start,
           "fields": {"version": reader.header.version, "endian": reader.endian.value,
                      "legacy": reader.header.legacy, "options": reader.header.options}}
    handed: list[tuple] = []
    reader.libxc_each = lambda index, h, value: handed.append((index, h, value))
    while not reader.ended:
        index = reader.index
        before = len(reader.items)
        _, h, value = reader.read_one()
        new = reader.items[before:]
        del reader.items[before:]
        for item in new:
            if isinstance(item, LibxcContext):
                yield {"layer": LAYER, "kind": "record", "index": index, "offset": h.offset,
                       "type": "LIBXC_CONTEXT", "type_value": 1, "body_length": h.body_length, "fields": {}}
                if item.image_header is not None:
                    at = h.offset + 8 + h.body_length
                    for header_item, size in zip(libxc.dump_items(item.image_header, item.domain_header, ()),
                                                 (libxc.IMAGE_HEADER.size, libxc.DOMAIN_HEADER.size)):
                        yield {**header_item, "offset": at}
                        at += size
            else:
                yield {"layer": LAYER, "kind": "record", "index": index, "offset": h.offset,
                       "type": record_name(item.type), "type_value": item.type,
                       "body_length": h.body_length, "fields": describe_record(item)}
        for xc_index, xc_header, xc_value in handed:
            yield libxc.record_item(xc_index, xc_header.offset, xc_header.body_length, xc_value)
        handed.clear()
    reader.check_trailing()


def recognise(prefix: bytes) -> str | None:
    if prefix[:8] == IDENT.to_bytes(8, "big"):
        return "starts with the libxl header's ident \"LibxlFmt\""
    return None


CODEC = Codec(
    name="libxl",
    description="libxl migration stream v2 wrapping libxc (libxl-migration-stream.pandoc)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    recognise=recognise,
)

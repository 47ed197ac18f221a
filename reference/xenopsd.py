"""The xenopsd suspend image (XAPI: XenServer, XCP-ng; ``VM.suspend``, the migration stream).

No specification document describes it; the layout and the rules come from
xenopsd's sources (``xapi-project/xenopsd``; docs/containers.md has the
releases and what each rule is based on):

* ``lib/suspend_image.ml``: the signatures ``"XenSavedDomv2-\\n"``
  (structured, 0.9.38 and later) and ``"XenSavedDomain\\n"`` (legacy), the
  record header (two 64-bit little-endian integers, type and length), the
  nine types, ``Xenops_record`` (an s-expression), ``read_legacy_qemu_header``
  (``"QemuDeviceModelRecord\\n"`` and a 32-bit big-endian length),
  ``with_conversion_script`` (``convert-legacy-stream --width 32
  --skip-qemu``);
* ``xc/domain.ml``: ``suspend`` and ``suspend_emu_manager`` (the writer:
  Xenops, the memory image after a Libxc header of length 0, Demu, Varstored,
  Qemu_trad, End_of_image), ``restore_common`` and ``consume_qemu_record``
  (the reader).

Records are declared once (:data:`RECORD_TYPES`: name, whether the header's
length counts a body, or the body is a stream of its own); the rules follow,
then the typed values, the one reader and the codec.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator

from . import legacy, libxc, libxl, sexp
from .checker import Checker
from .formats import Codec, by_magic, spans_of_dump
from .framing import Item, dump_items, make_item
from .layout import Declared, Endian, Layout, u64
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source

LAYER = "xenopsd"

# --------------------------------------------------------------------------
# Layout (lib/suspend_image.ml)
# --------------------------------------------------------------------------

SIGNATURE = b"XenSavedDomv2-\n"
LEGACY_SIGNATURE = b"XenSavedDomain\n"
SIGNATURE_SIZE = len(SIGNATURE)
LE = Endian.LITTLE


class RecordHeader(Declared):
    """read_header / write_header: a record's type and length, 64-bit little-endian each;
    ``offset``, where it was read (not on the wire)."""

    LAYOUT = Layout("suspend image record header", u64("type"), u64("length"))
    EXTRA = (("offset", int, 0),)

    @property
    def body_offset(self) -> int:
        return self.offset + self.LAYOUT.size

    @property
    def length_offset(self) -> int:
        return self.LAYOUT.at(self.offset, "length")


RECORD_HEADER = RecordHeader.LAYOUT
#: after a legacy image of an HVM guest (read_legacy_qemu_header): signature, 32-bit big-endian length
LEGACY_QEMU_SIGNATURE = b"QemuDeviceModelRecord\n"
#: xenopsd 0.9.33-0.9.37 wrote the qemu record libxc's way: this signature, a little-endian length
DEVICE_MODEL_RECORD = b"DeviceModelRecord0002"
#: consume_qemu_record (0.9.39 and later): the largest qemu record the reader takes
QEMU_LENGTH_MAX = 1 << 20
#: QEMU's save file (qemu-traditional and upstream): QEMU_VM_FILE_MAGIC
QEVM = b"QEVM"
#: Xenops bodies above this are skipped, not parsed (xenopsd writes a few KiB; the
#: s-expression of 512 KiB of two-letter fields takes some 30 MiB to parse)
XENOPS_PARSE_MAX = 512 << 10


class RecordType(enum.IntEnum):
    XENOPS = 0x000F
    LIBXC = 0x00F0
    LIBXL = 0x00F1
    LIBXC_LEGACY = 0x00F2
    QEMU_TRAD = 0x0F00
    QEMU_XEN = 0x0F01
    DEMU = 0x0F10
    VARSTORED = 0x0F11
    END_OF_IMAGE = 0xFFFF


#: suspend_image.ml's names of the types (header_type), as this project names them.
NAMES = {RecordType.XENOPS: "Xenops", RecordType.LIBXC: "Libxc", RecordType.LIBXL: "Libxl",
         RecordType.LIBXC_LEGACY: "Libxc_legacy", RecordType.QEMU_TRAD: "Qemu_trad",
         RecordType.QEMU_XEN: "Qemu_xen", RecordType.DEMU: "Demu", RecordType.VARSTORED: "Varstored",
         RecordType.END_OF_IMAGE: "End_of_image"}
#: What follows each header: "body" (the length counts it), "stream" (a stream of its own, with
#: its own end; the length is 0), "none" (End_of_image), "refused" (never written; the reader refuses).
FOLLOWS = {RecordType.XENOPS: "body", RecordType.LIBXC: "stream", RecordType.LIBXL: "refused",
           RecordType.LIBXC_LEGACY: "stream", RecordType.QEMU_TRAD: "body", RecordType.QEMU_XEN: "refused",
           RecordType.DEMU: "body or stream", RecordType.VARSTORED: "body", RecordType.END_OF_IMAGE: "none"}
#: Xenops_record.t: field -> required
XENOPS_FIELDS = {"time": True, "word_size": True, "vm_str": False, "xs_subtree": False}
WORD_SIZES = (32, 64)
#: OCaml's int_of_string
_OCAML_INT = re.compile(rb"^[-+]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")


def record_name(rtype: int) -> str:
    try:
        return NAMES[RecordType(rtype)]
    except ValueError:
        return f"unknown 0x{rtype:x}"


# --------------------------------------------------------------------------
# Rules (section: the source the rule is based on)
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER
_rule = definer("xenopsd")
READ_HEADER = "suspend_image.ml, read_header(); domain.ml, restore_common"
RESTORE = "domain.ml, restore_common"
SUSPEND = "domain.ml, suspend"
XENOPS_RECORD = "suspend_image.ml, Xenops_record"
QEMU = "domain.ml, consume_qemu_record"
LEGACY_QEMU = "suspend_image.ml, read_legacy_qemu_header()"

TRUNCATED = _rule("xenopsd.stream.truncated", R, READ_HEADER,
                  "reader: the signature, every record header and every body the header's length counts are "
                  "there whole")
SIGNATURE_RULE = _rule("xenopsd.image.signature", R, "suspend_image.ml, read_save_signature()",
                       "reader: the image starts with \"XenSavedDomv2-\\n\" or the legacy \"XenSavedDomain\\n\"")
TRAILING = _rule("xenopsd.image.trailing_data", W, SUSPEND,
                 "writer: nothing follows End_of_image (or a legacy image and its qemu record); reader: stops "
                 "reading there")
TYPE_RULE = _rule("xenopsd.record.type", R, "suspend_image.ml, header_type_of_int64()",
                  "reader: a record's type is one of the nine (Xenops, Libxc, Libxl, Libxc_legacy, Qemu_trad, "
                  "Qemu_xen, Demu, Varstored, End_of_image)")
UNSUPPORTED = _rule("xenopsd.record.unsupported", R, RESTORE,
                    "reader: Libxl and Qemu_xen records fail the restore (Suspend_image_failure); no release "
                    "writes them")
END_MISSING = _rule("xenopsd.end_of_image.missing", R, READ_HEADER,
                    "reader: headers are read until End_of_image; the end of the input in its place is an "
                    "error")
END_LENGTH = _rule("xenopsd.end_of_image.length", W, SUSPEND,
                   "writer: End_of_image's length is 0; reader: ignored")
LIBXC_LENGTH = _rule("xenopsd.libxc.length", W, "domain.ml, suspend_emu_manager",
                     "writer: a Libxc or Libxc_legacy header's length is 0 (the stream after it has its own "
                     "end); reader: ignored")
LIBXC_MISSING = _rule("xenopsd.libxc.missing", R, RESTORE,
                      "reader: an image without a Libxc or Libxc_legacy record restores no domain and is refused "
                      "(\"Well formed, but useless stream\")")
LIBXC_REPEATED = _rule("xenopsd.libxc.repeated", E, RESTORE,
                       "a second memory image is handed to the restore helper again; no writer writes one and "
                       "the sources do not say what the helper does with it")
XENOPS_FIRST = _rule("xenopsd.xenops.first", W, SUSPEND,
                     "writer: the first record is Xenops (every structured release); reader: needs none")
XENOPS_SEXP = _rule("xenopsd.xenops.sexp", R, XENOPS_RECORD + ".of_string",
                    "reader: the Xenops body is one s-expression (Sexp.of_string)")
XENOPS_FIELDS_RULE = _rule("xenopsd.xenops.fields", R, XENOPS_RECORD + ".t_of_sexp",
                           "reader: the s-expression is the record: (name value) fields, time an atom and "
                           "word_size an integer, optional vm_str (an atom) and xs_subtree (a list of (key "
                           "value) atoms), nothing else, nothing twice")
WORD_SIZE = _rule("xenopsd.xenops.word_size", W, XENOPS_RECORD + ".make",
                  "writer: word_size is the writer's Sys.word_size, 32 or 64; reader: not looked at")
QEMU_LENGTH_MAX_RULE = _rule("xenopsd.qemu.length_max", E, QEMU,
                             "reader: xenopsd 0.9.39 and later refuse a qemu record longer than 1 MiB; writers "
                             "write the qemu file's size, whatever it is")
QEMU_MAGIC = _rule("xenopsd.qemu.magic", R, QEMU + "; QEMU's loader",
                   "reader: the qemu record is a QEMU save file, which starts with the QEVM magic (QEMU refuses "
                   "anything else)")
DEMU_STREAM = _rule("xenopsd.demu.stream", E, "domain.ml, suspend_emu_manager",
                    "a Demu record of length 0 (0.37 and later) is followed by the vGPU device model's stream, "
                    "whose end nothing in the image marks: the rest of the image is not checked")
LEGACY_QEMU_SIG = _rule("xenopsd.legacy_qemu.signature", R, LEGACY_QEMU,
                        "reader: after the legacy image of an HVM guest come \"QemuDeviceModelRecord\\n\" and a "
                        "32-bit big-endian length")
LEGACY_DMR = _rule("xenopsd.legacy_qemu.device_model_record", E, LEGACY_QEMU,
                   "xenopsd 0.9.33-0.9.37 wrote \"DeviceModelRecord0002\" and a little-endian length there, "
                   "which their own libxc read; 0.9.38 and later refuse it")
LEGACY_LIBXL = _rule("xenopsd.legacy.libxl_body", E, "xl/xenops_server_xenlight.ml, save",
                     "the xenlight backend wrote the legacy signature before a libxl v2 stream (Xen 4.6+) and reads it "
                     "back; the classic backend's reader converts the body as a legacy image and would refuse it")

# --------------------------------------------------------------------------
# Typed values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class XenopsRecord:
    """Xenops_record.t."""

    time: str = "20240101T00:00:00Z"
    word_size: int = 64
    vm_str: str | None = None
    xs_subtree: tuple[tuple[str, str], ...] | None = ()

    def to_sexp(self) -> bytes:
        fields = [[b"time", self.time.encode()], [b"word_size", str(self.word_size).encode()]]
        if self.vm_str is not None:
            fields.append([b"vm_str", self.vm_str.encode()])
        if self.xs_subtree is not None:
            fields.append([b"xs_subtree", [[k.encode(), v.encode()] for k, v in self.xs_subtree]])
        return sexp.dumps(fields)


@dataclass(frozen=True)
class Record:
    """A structured image's record: its type, the header's length and what follows it.

    ``body`` is the octets the length counts (Xenops, Qemu_trad, Varstored, a Demu
    with a length), the embedded stream (Libxc: a LibxcStream; Libxc_legacy: a
    LegacyStream) or, for a Demu of length 0, the rest of the image as octets.
    """

    type: int
    body: object = b""
    length: int | None = None   # None: what the writer writes (the body's size, or 0)

    @property
    def name(self) -> str:
        return record_name(self.type)

    def header_length(self) -> int:
        if self.length is not None:
            return self.length
        if self.type in (RecordType.LIBXC, RecordType.LIBXC_LEGACY, RecordType.END_OF_IMAGE):
            return 0
        if self.type == RecordType.DEMU and isinstance(self.body, DemuStream):
            return 0
        return len(encode_follow(self.body))


@dataclass(frozen=True)
class DemuStream:
    """What follows a Demu header of length 0: the vGPU stream, and whatever comes after it."""

    data: bytes = b""


@dataclass(frozen=True)
class LegacyQemu:
    """The qemu record after a legacy image: ``QemuDeviceModelRecord\\n`` and a big-endian
    length, or (0.9.33-0.9.37) ``DeviceModelRecord0002`` and a little-endian one."""

    data: bytes = b""
    signature: bytes = LEGACY_QEMU_SIGNATURE
    length: int | None = None

    def encode(self) -> bytes:
        n = len(self.data) if self.length is None else self.length
        order = "little" if self.signature == DEVICE_MODEL_RECORD else "big"
        return self.signature + n.to_bytes(4, order) + self.data


@dataclass(frozen=True)
class SuspendImage:
    """A structured image (``records``) or a legacy one (``legacy_body`` and ``legacy_qemu``)."""

    signature: bytes = SIGNATURE
    records: tuple = ()
    legacy_body: object = None
    legacy_qemu: LegacyQemu | None = None
    trailing: bytes = b""

    @property
    def structured(self) -> bool:
        return self.signature != LEGACY_SIGNATURE


def xenops(record: XenopsRecord | None = None) -> Record:
    return Record(RecordType.XENOPS, (record or XenopsRecord()).to_sexp())


def structured(*records: Record) -> SuspendImage:
    return SuspendImage(SIGNATURE, tuple(records))


def encode_follow(body) -> bytes:
    if isinstance(body, libxc.LibxcStream):
        return libxc.encode(body)
    if isinstance(body, legacy.LegacyStream):
        return legacy.encode(body)
    if isinstance(body, libxl.LibxlStream):
        return libxl.encode(body)
    if isinstance(body, DemuStream):
        return body.data
    if isinstance(body, XenopsRecord):
        return body.to_sexp()
    return bytes(body)


def encode(image: SuspendImage) -> bytes:
    out = [image.signature]
    if image.structured:
        for rec in image.records:
            out.append(RECORD_HEADER.pack(LE, rec.type, rec.header_length()))
            out.append(encode_follow(rec.body))
    else:
        out.append(encode_follow(image.legacy_body))
        if image.legacy_qemu is not None:
            out.append(image.legacy_qemu.encode())
    out.append(image.trailing)
    return b"".join(out)


# --------------------------------------------------------------------------
# The Xenops record
# --------------------------------------------------------------------------


def ocaml_int(text: bytes) -> int:
    """OCaml's int_of_string of an atom that :data:`_OCAML_INT` matches."""
    sign = -1 if text.startswith(b"-") else 1
    digits = text.lstrip(b"+-").replace(b"_", b"")
    base = {b"x": 16, b"o": 8, b"b": 2}.get(digits[1:2].lower(), 10) if digits[:1] == b"0" else 10
    return sign * int(digits[2:] if base != 10 else digits, base)


def _atom(value) -> bytes | None:
    return value if isinstance(value, bytes) else None


def check_xenops(text: bytes, base: int, checker: Checker) -> XenopsRecord | None:
    """Xenops_record.of_string: the record, or None with the finding reported."""
    try:
        value = sexp.parse(text)
    except sexp.SexpError as exc:
        checker.report(XENOPS_SEXP, base + min(exc.offset, max(len(text) - 1, 0)),
                       f"not an s-expression: {exc.message}")
        return None

    def bad(message: str) -> None:
        checker.report(XENOPS_FIELDS_RULE, base, message)

    if not isinstance(value, list):
        return bad("the record is an atom, not a list of fields")
    found: dict[str, object] = {}
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)):
            return bad(f"{sexp.dumps(item)[:60]!r} is not a (name value) field")
        name = item[0].decode("latin-1")
        if name not in XENOPS_FIELDS:
            return bad(f"unknown field {name!r}")
        if name in found:
            return bad(f"field {name!r} appears twice")
        found[name] = item[1]
    for name, required in XENOPS_FIELDS.items():
        if required and name not in found:
            return bad(f"no {name!r} field")
    time, word, vm_str = _atom(found["time"]), _atom(found["word_size"]), found.get("vm_str")
    if time is None:
        return bad("time is a list, not an atom")
    if word is None or not _OCAML_INT.match(word):
        return bad(f"word_size {sexp.dumps(found['word_size'])[:40]!r} is not an integer")
    if vm_str is not None and _atom(vm_str) is None:
        return bad("vm_str is a list, not an atom")
    subtree = found.get("xs_subtree")
    pairs = None
    if subtree is not None:
        if not isinstance(subtree, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, bytes) for x in p) for p in subtree):
            return bad("xs_subtree is not a list of (key value) atoms")
        pairs = tuple((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in subtree)
    size = ocaml_int(word)
    if size not in WORD_SIZES:
        checker.report(WORD_SIZE, base, f"word_size is {size}, not 32 or 64")
    return XenopsRecord(time.decode("utf-8", "replace"), size,
                        None if vm_str is None else vm_str.decode("utf-8", "replace"), pairs)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


class XenopsdReader:
    """Reads (and validates) a suspend image; :meth:`items` yields the signature, each record
    (``Item(offset, RecordHeader, Record)``) and, after a Libxc, Libxc_legacy record or a legacy
    signature, the items of the stream that follows it (a :class:`~.libxc.LibxcReader`'s, a
    :class:`~.legacy.LegacyReader`'s, a :class:`~.libxl.LibxlReader`'s) on the same
    :class:`Source`, so that their findings carry offsets in the whole file; a legacy image's
    qemu record is the item ``"legacy qemu record"``.

    ``collect``: the values are read (the embedded readers collect too); ``keep`` (default:
    ``collect``): the image is built as it is read (:meth:`image`)."""

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False, keep: bool | None = None):
        self.src, self.checker, self.collect = src, checker, collect
        self.keep = collect if keep is None else keep
        self.records: list[Record] = []
        self.index = 0
        self.legacy_body = None
        self.legacy_qemu: LegacyQemu | None = None
        self.signature = b""
        self.memory_images = 0
        self._yielded = False
        #: the reader of the embedded stream whose items are being yielded (None between them)
        self.inner = None
        #: the last Xenops record parsed (for dump)
        self.xenops: XenopsRecord | None = None

    def _truncated(self, t: Truncated):
        self.checker.fail(TRUNCATED, t.end, t.describe())

    def image(self) -> SuspendImage:
        return SuspendImage(self.signature, tuple(self.records), self.legacy_body, self.legacy_qemu)

    def items(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "signature")
        start = src.offset
        try:
            sig = src.read_exact(SIGNATURE_SIZE, "suspend image signature")
        except Truncated as t:
            self._truncated(t)
        if sig not in (SIGNATURE, LEGACY_SIGNATURE):
            ck.fail(SIGNATURE_RULE, start, f"signature {sig!r} is neither {SIGNATURE!r} nor {LEGACY_SIGNATURE!r}")
        self.signature = sig
        yield make_item((start, "signature", sig))
        if sig == SIGNATURE:
            ck.note("xenopsd suspend image: structured (XenSavedDomv2)")
            yield from self.records_items()
        else:
            ck.note("xenopsd suspend image: legacy (XenSavedDomain)")
            yield from self.legacy_items()

    def _embedded(self, reader) -> Iterator[Item]:
        """The items of an embedded stream; its findings carry its own layer and location."""
        saved = self.checker.save()
        self.inner = reader
        yield from reader.items()
        self.inner = None
        self.checker.restore(saved)

    def _embedded_legacy(self, reader: legacy.LegacyReader):
        """The items of an embedded legacy image; returns the image when building one."""
        items = []
        for item in self._embedded(reader):
            if self.keep:
                items.append(item)
            yield item
        return legacy.stream_of(items) if self.keep else None

    # -- the structured image ------------------------------------------------------
    def records_items(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        while True:
            offset = src.offset
            ck.at(LAYER, self.index, "record header")
            if src.at_eof():
                ck.fail(END_MISSING, offset, "the input ends where a record header belongs; no End_of_image")
            try:
                h = RecordHeader(**RecordHeader.decode_fixed(LE, src.read_exact(RECORD_HEADER.size,
                                                                                "record header")), offset=offset)
            except Truncated as t:
                self._truncated(t)
            if h.type not in NAMES:
                ck.fail(TYPE_RULE, offset, f"record type 0x{h.type:x} is none of the nine (Invalid_header_type)")
            rtype = RecordType(h.type)
            ck.at(LAYER, self.index, NAMES[rtype])
            if self.index == 0 and rtype != RecordType.XENOPS:
                ck.report(XENOPS_FIRST, offset, f"the first record is {NAMES[rtype]}, not Xenops")
            if FOLLOWS[rtype] == "refused":
                ck.fail(UNSUPPORTED, offset, f"{NAMES[rtype]} record: xenopsd refuses it (Suspend_image_failure)")
            self.index += 1
            self._yielded = False
            try:
                done = yield from getattr(self, f"_{NAMES[rtype].lower()}")(h)
            except Truncated as t:
                if not self._yielded:   # the header was read: its item, without a value
                    yield make_item((offset, h, None))
                self._truncated(t)
            if done:
                return

    def _body(self, length: int, what: str) -> bytes:
        if self.collect:
            return self.src.read_exact(length, what)
        self.src.skip(length, what)
        return b""

    def _record(self, h: RecordHeader, body=b"", *, keep: bool = True) -> Item:
        """The item of a record (kept when building the image, unless ``keep`` is false:
        the record of an embedded stream is kept once the stream is read)."""
        record = Record(h.type, body, h.length)
        if self.keep and keep:
            self.records.append(record)
        self._yielded = True
        return make_item((h.offset, h, record))

    def _xenops(self, h: RecordHeader):
        length = h.length
        self.xenops = None
        if length > XENOPS_PARSE_MAX:
            self.checker.note(f"Xenops record of {length} octets: too large to parse, skipped")
            yield self._record(h, self._body(length, "Xenops record"))
            return False
        text = self.src.read_exact(length, "Xenops record")
        self.xenops = check_xenops(text, h.body_offset, self.checker)
        yield self._record(h, text)
        return False

    def _memory_image(self, h: RecordHeader) -> None:
        self.memory_images += 1
        if h.length:
            self.checker.report(LIBXC_LENGTH, h.length_offset, f"{NAMES[h.type]} header's length is {h.length}, "
                                "not 0")
        if self.memory_images > 1:
            self.checker.report(LIBXC_REPEATED, h.offset, f"a second memory image ({NAMES[h.type]})")

    def _libxc(self, h: RecordHeader):
        self._memory_image(h)
        yield self._record(h, keep=False)
        reader = libxc.LibxcReader(self.src, self.checker, collect=self.collect)
        values = []
        for inner in self._embedded(reader):
            if self.keep and inner.value is not None and not isinstance(inner.header, str):
                values.append(inner.value)
            yield inner
        if self.keep:
            self.records.append(Record(h.type, libxc.LibxcStream(reader.image_header, reader.domain_header,
                                                                 tuple(values)), h.length))
        return False

    def _libxc_legacy(self, h: RecordHeader):
        self._memory_image(h)
        yield self._record(h, keep=False)
        reader = legacy.LegacyReader(self.src, self.checker, collect=self.collect, embedded=True)
        stream = yield from self._embedded_legacy(reader)
        if self.keep:
            self.records.append(Record(h.type, stream, h.length))
        return False

    def _qemu_body(self, length: int, at: int, what: str) -> bytes:
        """A qemu record of ``length`` octets at ``at``: the 1 MiB cap, the QEVM magic."""
        if length > QEMU_LENGTH_MAX:
            self.checker.report(QEMU_LENGTH_MAX_RULE, at, f"{what} of {length} octets is over 1 MiB")
        head = self.src.read_exact(min(length, len(QEVM)), what)
        if head != QEVM:
            self.checker.report(QEMU_MAGIC, at, f"{what} starts with {head!r}, not the QEVM magic")
        rest = self._body(length - len(head), what)
        return head + rest if self.collect else b""

    def _qemu_trad(self, h: RecordHeader):
        yield self._record(h, self._qemu_body(h.length, h.length_offset, "Qemu_trad record"))
        return False

    def _demu(self, h: RecordHeader):
        if h.length:
            yield self._record(h, self._body(h.length, "Demu record"))
            return False
        self.checker.report(DEMU_STREAM, h.offset, "Demu record of length 0: the vGPU stream follows, and what "
                            "follows it is not checked")
        pieces = []
        while piece := self.src.read_upto(1 << 20):
            if self.collect:
                pieces.append(piece)
        yield self._record(h, DemuStream(b"".join(pieces)))
        self._check_memory_image(self.src.offset)
        return True

    def _varstored(self, h: RecordHeader):
        yield self._record(h, self._body(h.length, "Varstored record"))
        return False

    def _end_of_image(self, h: RecordHeader):
        if h.length:
            self.checker.report(END_LENGTH, h.length_offset, f"End_of_image's length is {h.length}, not 0")
        yield self._record(h)
        self._check_memory_image(h.offset)
        self._check_trailing()
        return True

    def _check_memory_image(self, offset: int) -> None:
        if not self.memory_images:
            self.checker.at(LAYER, None, "image")
            self.checker.report(LIBXC_MISSING, offset, "no Libxc or Libxc_legacy record: the image restores no "
                                "domain")

    def _check_trailing(self) -> None:
        if not self.src.at_eof():
            self.checker.at(LAYER, None, "after the image")
            self.checker.report(TRAILING, self.src.offset, "data follows the end of the image")
            while self.src.read_upto(1 << 20):
                pass

    # -- the legacy image -------------------------------------------------------------
    def legacy_items(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "legacy image")
        if src.peek(8) == V2_LIBXL:
            ck.report(LEGACY_LIBXL, src.offset, "a libxl v2 stream after the legacy signature (the xenlight "
                      "backend's image)")
            reader = libxl.LibxlReader(src, ck, collect=self.collect)
            values = []
            for inner in self._embedded(reader):
                if self.keep:
                    values.append(inner)
                yield inner
            reader.check_trailing()
            if self.keep:
                self.legacy_body = libxl.stream_of(reader, values)
            return
        reader = legacy.LegacyReader(src, ck, collect=self.collect, embedded=True, qemu=False)
        self.legacy_body = yield from self._embedded_legacy(reader)
        if reader.guest is legacy.HVM:
            yield from self.read_legacy_qemu()
        self._check_trailing()

    def read_legacy_qemu(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "legacy qemu record")
        offset = src.offset
        head = src.peek(len(LEGACY_QEMU_SIGNATURE))
        try:
            if head == LEGACY_QEMU_SIGNATURE:
                sig = src.read_exact(len(head), "qemu signature")
                length = int.from_bytes(src.read_exact(4, "qemu record length"), "big")
            elif head.startswith(DEVICE_MODEL_RECORD):
                ck.report(LEGACY_DMR, offset, "DeviceModelRecord0002 and a little-endian length (xenopsd "
                          "0.9.33-0.9.37); 0.9.38 and later want QemuDeviceModelRecord\\n")
                sig = src.read_exact(len(DEVICE_MODEL_RECORD), "qemu signature")
                length = int.from_bytes(src.read_exact(4, "qemu record length"), "little")
            else:
                ck.fail(LEGACY_QEMU_SIG, offset, f"{head!r} where \"QemuDeviceModelRecord\\n\" belongs"
                        if head else "the input ends where the HVM guest's qemu record belongs")
        except Truncated as t:
            self._truncated(t)
        try:
            data = self._qemu_body(length, src.offset - 4, "legacy qemu record")
        except Truncated as t:   # the signature and length were read: the item, without its data
            yield make_item((offset, "legacy qemu record", LegacyQemu(b"", sig, length)))
            self._truncated(t)
        self.legacy_qemu = LegacyQemu(data, sig, length)
        yield make_item((offset, "legacy qemu record", self.legacy_qemu))

    # -- dump ----------------------------------------------------------------------------
    def dump_item(self, item: Item) -> dict | None:
        """The ``xenstream dump`` dict of the item just yielded."""
        inner = self.inner
        if isinstance(inner, libxc.LibxcReader):
            return libxc.dump_item(item, inner.index - 1)
        if isinstance(inner, legacy.LegacyReader):
            return inner.dump_item(item)
        if isinstance(inner, libxl.LibxlReader):
            return libxl.dump_item(inner, item)
        offset, h, value = item
        if h == "signature":
            return {"layer": LAYER, "kind": "signature", "offset": offset,
                    "fields": {"signature": value.decode("latin-1").replace("\n", "\\n"),
                               "structured": value == SIGNATURE}}
        if h == "legacy qemu record":
            return {"layer": LAYER, "kind": "legacy qemu record", "offset": offset,
                    "fields": {"signature": value.signature.decode("latin-1"), "length": value.length}}
        fields = {}
        if h.type == RecordType.XENOPS and self.xenops is not None:
            x = self.xenops
            fields = {"time": x.time, "word_size": x.word_size,
                      "vm_str": None if x.vm_str is None else f"{len(x.vm_str)} characters",
                      "xs_subtree": None if x.xs_subtree is None else len(x.xs_subtree)}
        return {"layer": LAYER, "kind": "record", "index": self.index - 1, "offset": offset,
                "type": NAMES[h.type], "type_value": h.type, "length": h.length, "fields": fields}


V2_LIBXL = libxl.IDENT.to_bytes(8, "big")

# --------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    reader = XenopsdReader(src, checker)
    for _ in reader.items():
        pass
    if checker.verbose:
        checker.note(f"xenopsd: {reader.index} record(s)")


def decode(data, *, role: Role = Role.RESTORE) -> SuspendImage:
    reader = XenopsdReader(as_source(data), Checker(role, fail_fast=True), collect=True)
    for _ in reader.items():
        pass
    return reader.image()


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    return dump_items(XenopsdReader(src, checker, collect=True, keep=False))


CODEC = Codec(
    name="xenopsd",
    description="xenopsd suspend image (XenServer, XCP-ng): typed records around a libxc stream, or the legacy "
                "image (docs/containers.md)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    sniff=lambda data: (None, LE.value),   # 64-bit little-endian record headers
    spans=partial(spans_of_dump, dump),   # the offsets of the items the reader finds, by layer
    trim=partial(libxc.trim_page_data, partial(spans_of_dump, dump)),
    recognise=by_magic((SIGNATURE, "xenopsd's suspend image signature \"XenSavedDomv2-\\n\""),
                       (LEGACY_SIGNATURE, "xenopsd's legacy suspend image signature \"XenSavedDomain\\n\"")),
)

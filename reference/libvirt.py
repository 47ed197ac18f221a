"""libvirt's libxl driver save image (``virsh save``, ``virsh managedsave`` on a Xen host).

No specification document describes it; the layout and the rules come from
libvirt's sources (docs/containers.md has the releases and what each rule
is based on):

* ``src/libxl/libxl_conf.h``: ``LIBXL_SAVE_MAGIC`` ``"libvirt-xml\\n \\0 \\r"``,
  ``LIBXL_SAVE_VERSION`` (2 when built with ``LIBXL_HAVE_SRM_V2``, Xen 4.6
  and later, since libvirt 1.3.5; 1 before) and ``struct
  _libxlSavefileHeader``: magic[16], version, xmlLen, unused[10], 64 octets
  in the host's byte order (x86: little-endian);
* ``src/libxl/libxl_driver.c`` ``libxlDoDomainSave()``, the writer: a zeroed
  header, ``xmlLen = strlen(xml) + 1``, the domain XML with its NUL, then what
  ``libxl_domain_suspend()`` writes: a libxl v2 stream (version 2) or a
  legacy image as libxl of Xen 4.5 and older writes it (version 1);
* ``libxlDomainSaveImageOpen()`` (``src/libxl/libxl_domain.c`` in current
  releases), the reader: refuses a short header, a wrong magic, a version
  above its own, ``xmlLen`` 0, a short XML and XML that does not parse as a
  domain; the version becomes libxl's ``stream_version``
  (``libxlDomainStartPerform()``), which reads 1 as a legacy stream to
  convert and anything else as v2.

The header and XML are declared here once (:data:`HEADER`); the rules follow
them, then the typed values, the one reader (validation, decoding and dump
all run it) and the codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Iterator
from xml.parsers import expat

from . import legacy, libxc, libxl
from .checker import Checker
from .formats import Codec, by_magic, spans_of_dump
from .framing import Item, dump_items, make_item
from .layout import Declared, Endian, Layout, octets, reserved, u32
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source

LAYER = "libvirt"
LE = Endian.LITTLE

# --------------------------------------------------------------------------
# Layout (libxl_conf.h, struct _libxlSavefileHeader; host byte order: little-endian)
# --------------------------------------------------------------------------

MAGIC = b"libvirt-xml\n \0 \r"
UNUSED_WORDS = 10
#: LIBXL_SAVE_VERSION: 1 before LIBXL_HAVE_SRM_V2 (a legacy image follows), 2 with it (a libxl v2 stream)
VERSION_LEGACY, VERSION_V2 = 1, 2
VERSIONS = (VERSION_LEGACY, VERSION_V2)
#: What a version-1 body cannot start with: the libxl v2 ident and the libxc v2 marker.
V2_STARTS = (libxl.IDENT.to_bytes(8, "big"), libxc.MARKER.to_bytes(8, "big"))
XML_ROOT = "domain"
#: The domain XML is parsed in pieces of this size (expat parses incrementally).
XML_PIECE = 64 << 10


class LibvirtHeader(Declared):
    """``struct _libxlSavefileHeader``: magic, version, xmlLen, ten unused 32-bit words (host order).

    ``xmlLen`` None (the default) encodes the length of the XML that follows, as libvirt writes it."""

    LAYOUT = Layout("libxlSavefileHeader", octets("magic", len(MAGIC), const=MAGIC),
                    u32("version", default=VERSION_V2), u32("xmlLen", default=None),
                    reserved("unused", f"{4 * UNUSED_WORDS}s"))
    unused = bytes(4 * UNUSED_WORDS)

    @classmethod
    def make(cls, version: int = VERSION_V2, xml_length: int | None = None,
             unused_words: tuple[int, ...] = (0,) * UNUSED_WORDS) -> "LibvirtHeader":
        """A header with the unused area given as its ten words."""
        return cls(version=version, xmlLen=xml_length,
                   unused=b"".join(w.to_bytes(4, "little") for w in unused_words))

    def unused_words(self) -> tuple[int, ...]:
        return tuple(int.from_bytes(self.unused[i:i + 4], "little") for i in range(0, len(self.unused), 4))

    def encode(self, xml_length: int) -> bytes:
        n = xml_length if self.xmlLen is None else self.xmlLen
        return self.LAYOUT.encode(LE, **{**self.wire_values(), "xmlLen": n})


HEADER = LibvirtHeader.LAYOUT

# --------------------------------------------------------------------------
# Rules (section: the source the rule is based on)
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER
_rule = definer("libvirt")
READER = "libxl_domain.c (libxl_driver.c before 2019), libxlDomainSaveImageOpen()"
WRITER = "libxl_driver.c, libxlDoDomainSave()"
START = "libxl_domain.c, libxlDomainStartPerform(); Xen libxl_create.c (stream_version)"

TRUNCATED = _rule("libvirt.stream.truncated", R, READER,
                  "reader: the 64-octet header and the xmlLen octets of domain XML are there whole (a short "
                  "read of either is refused)")
MAGIC_RULE = _rule("libvirt.header.magic", R, READER,
                   "reader: the file starts with the 16-octet magic \"libvirt-xml\\n \\0 \\r\"")
VERSION = _rule("libvirt.header.version", R, READER,
                "reader: version is at most 2 (every release refuses a version above its LIBXL_SAVE_VERSION, 2 "
                "since libvirt 1.3.5 built against Xen 4.6+); writers write 1 (legacy stream) or 2 (libxl v2)")
VERSION_ZERO = _rule("libvirt.header.version_zero", W, START,
                     "writer: version is 1 or 2, never 0; reader: version 0 is accepted and libxl reads the "
                     "stream as v2 (any stream_version but 1)")
UNUSED = _rule("libvirt.header.unused", W, WRITER,
               "writer: the ten unused words are zero (the header is zeroed before it is filled); reader: "
               "never read")
XML_LENGTH = _rule("libvirt.header.xml_length", R, READER, "reader: xmlLen is not 0")
XML_NUL = _rule("libvirt.xml.nul_terminated", R, READER,
                "writer: xmlLen is strlen(xml) + 1; reader: the octets are parsed as a C string in a buffer "
                "of exactly xmlLen octets, so the XML ends with a NUL inside them")
XML_TRAILING = _rule("libvirt.xml.trailing_octets", W, WRITER,
                     "writer: the XML's NUL is its last octet; reader: parses up to the first NUL and ignores "
                     "what follows it")
XML_SYNTAX = _rule("libvirt.xml.syntax", R, READER,
                   "reader: virDomainDefParseString() refuses XML that is not well-formed")
XML_ROOT_RULE = _rule("libvirt.xml.root", R, READER,
                      "reader: the XML is a domain definition: its root element is <domain>")
VERSION_MISMATCH = _rule("libvirt.body.version_mismatch", R, START,
                         "reader: version 1 makes libxl convert the rest as a legacy image, which a libxl v2 "
                         "stream or libxc v2 image is not (libvirt before 1.3.5 wrote such files on Xen 4.6+; "
                         "commit 5325123d says they did not restore)")

# --------------------------------------------------------------------------
# Typed values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainXml:
    """The ``xmlLen`` octets after the header: what the reader made of them, and the octets
    themselves when collecting."""

    octets: bytes = b""
    root: str | None = None      # the root element's name, when the XML parses that far
    nul_at: int | None = None    # of the first NUL, from the XML's start


@dataclass(frozen=True)
class LibvirtImage:
    header: LibvirtHeader = field(default_factory=LibvirtHeader)
    #: the xmlLen octets as on disk: the domain XML and its NUL
    xml: bytes = b"<domain type='xen'/>\0"
    #: a LibxlStream (versions 0, 2), a LegacyStream (version 1), or octets as they are
    body: object = b""

    @classmethod
    def make(cls, xml: str | bytes, body, *, version: int = VERSION_V2) -> "LibvirtImage":
        """What libxlDoDomainSave() writes: the XML with its NUL, ``body`` after it."""
        text = xml.encode() if isinstance(xml, str) else xml
        return cls(LibvirtHeader(version), text + b"\0", body)


def encode_body(body) -> bytes:
    if isinstance(body, libxl.LibxlStream):
        return libxl.encode(body)
    if isinstance(body, legacy.LegacyStream):
        return legacy.encode(body)
    return bytes(body)


def encode(image: LibvirtImage) -> bytes:
    return image.header.encode(len(image.xml)) + image.xml + encode_body(image.body)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


class _XmlCheck:
    """The domain XML, fed in pieces: its first NUL, whether expat parses what precedes
    it, the root element.  Memory: expat's, which follows the nesting, not the size."""

    def __init__(self, start: int):
        self.start = start
        self.nul: int | None = None        # offset of the first NUL
        self.trailing: int | None = None   # offset of the first non-NUL octet after it
        self.root: str | None = None
        self.error: tuple[int, str] | None = None
        self.fed = 0
        self.parser = expat.ParserCreate()
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartElementHandler = self._start

    def _start(self, name, attrs) -> None:
        if self.root is None:
            self.root = name

    def _parse(self, data: bytes, final: bool) -> None:
        if self.error is not None:
            return
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as exc:
            where = min(max(self.parser.ErrorByteIndex, 0), self.fed + len(data))
            self.error = (self.start + where, expat.ErrorString(exc.code))
        self.fed += len(data)

    def feed(self, piece: bytes, offset: int) -> None:
        if self.nul is None:
            at = piece.find(b"\0")
            if at < 0:
                self._parse(piece, False)
                return
            self._parse(piece[:at], True)
            self.nul = offset + at
            piece, offset = piece[at + 1:], offset + at + 1
        if self.trailing is None:
            stripped = piece.lstrip(b"\0")
            if stripped:
                self.trailing = offset + len(piece) - len(stripped)


class LibvirtReader:
    """Reads (and validates) a libvirt save image; :meth:`items` yields the header, the domain
    XML and the items of the stream that follows them (a :class:`~.libxl.LibxlReader`'s for
    versions 0 and 2, a :class:`~.legacy.LegacyReader`'s for version 1).
    The embedded stream is read from the same :class:`Source`, so its findings carry their
    offsets in the whole file."""

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False):
        self.src, self.checker, self.collect = src, checker, collect
        self.header: LibvirtHeader | None = None
        #: the reader of the embedded stream, once the header and XML are read
        self.body: libxl.LibxlReader | legacy.LegacyReader | None = None

    def _truncated(self, t: Truncated):
        self.checker.fail(TRUNCATED, t.end, t.describe())

    def items(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        try:
            offset = src.offset
            header = self.read_header()
            yield make_item((offset, "header", header))
            offset = src.offset
            yield make_item((offset, "domain XML", self.read_xml(header.xmlLen)))
        except Truncated as t:
            self._truncated(t)
        ck.at(LAYER, None, "stream")
        saved = ck.save()   # the embedded stream's findings carry its own layer and location
        if header.version == VERSION_LEGACY:
            head = src.peek(8)
            if head in V2_STARTS:
                ck.fail(VERSION_MISMATCH, src.offset, "version 1 (a legacy image) but the stream starts with "
                        + ("the libxl v2 ident" if head == V2_STARTS[0] else "the libxc v2 marker"))
            self.body = legacy.LegacyReader(src, ck, collect=self.collect, xl=False)
            yield from self.body.items()
        else:
            self.body = libxl.LibxlReader(src, ck, collect=self.collect)
            yield from self.body.items()
            self.body.check_trailing()
        ck.restore(saved)

    def read_header(self) -> LibvirtHeader:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "header")
        base = src.offset
        header = LibvirtHeader(**LibvirtHeader.decode_fixed(LE, src.read_exact(HEADER.size,
                                                                              "libvirt save image header")))
        magic, version, xml_len = header.magic, header.version, header.xmlLen
        if magic != MAGIC:
            bad = next(i for i in range(len(MAGIC)) if magic[i] != MAGIC[i])
            ck.fail(MAGIC_RULE, base + bad, f"magic differs at octet {bad}: {magic!r}")
        if version > VERSION_V2:
            ck.fail(VERSION, HEADER.at(base, "version"), f"version {version} is above 2; libvirt refuses it "
                    "(\"image version is not supported\")")
        if version == 0:
            ck.report(VERSION_ZERO, HEADER.at(base, "version"), "version 0, which no libvirt writes")
        unused = header.unused_words()
        if any(unused):
            i = next(i for i, w in enumerate(unused) if w)
            ck.report(UNUSED, HEADER.at(base, "unused") + 4 * i, f"unused word {i} is 0x{unused[i]:08x}")
        if xml_len == 0:
            ck.fail(XML_LENGTH, HEADER.at(base, "xmlLen"), "xmlLen is 0 (\"invalid XML length\")")
        self.header = header
        ck.note(f"libvirt save image: version {version} "
                f"({'legacy image' if version == VERSION_LEGACY else 'libxl v2 stream'} follows), "
                f"{xml_len} octets of domain XML")
        return header

    def read_xml(self, length: int) -> DomainXml:
        src, ck = self.src, self.checker
        ck.at(LAYER, None, "domain XML")
        start = offset = src.offset
        check = _XmlCheck(start)
        pieces = []
        for piece in src.chunks(length, "domain XML", XML_PIECE):
            check.feed(piece, offset)
            offset += len(piece)
            if self.collect:
                pieces.append(piece)
        if check.nul is None:
            # the reader parses past its buffer: what it makes of the XML is not defined
            ck.report(XML_NUL, start + length - 1, f"none of the {length} octets of XML is a NUL")
        else:
            if check.trailing is not None:
                ck.report(XML_TRAILING, check.trailing, f"octets follow the XML's NUL (at offset {check.nul}) "
                          "inside xmlLen")
            if check.error is not None:
                ck.report(XML_SYNTAX, check.error[0], f"the domain XML is not well-formed: {check.error[1]}")
            elif check.root != XML_ROOT:
                ck.report(XML_ROOT_RULE, start, f"the root element is <{check.root}>, not <{XML_ROOT}>")
        return DomainXml(b"".join(pieces), check.root, None if check.nul is None else check.nul - start)

    def dump_item(self, item: Item) -> dict | None:
        """The ``xenstream dump`` dict of the item just yielded (the embedded stream's items
        come once :attr:`body` is set)."""
        offset, h, value = item
        if self.body is None and h == "header":
            return {"layer": LAYER, "kind": "header", "offset": offset,
                    "fields": {"version": value.version, "xmlLen": value.xmlLen,
                               "unused": list(value.unused_words())}}
        if self.body is None:
            return {"layer": LAYER, "kind": "domain XML", "offset": offset,
                    "fields": {"octets": self.header.xmlLen, "root": value.root, "nul_at": value.nul_at}}
        if isinstance(self.body, legacy.LegacyReader):
            return self.body.dump_item(item)
        return libxl.dump_item(self.body, item)


# --------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    reader = LibvirtReader(src, checker)
    for _ in reader.items():
        pass
    if isinstance(reader.body, libxl.LibxlReader):
        libxl.summary(reader.body)


def decode(data, *, role: Role = Role.RESTORE) -> LibvirtImage:
    reader = LibvirtReader(as_source(data), Checker(role, fail_fast=True), collect=True)
    items = iter(reader.items())
    header, xml = next(items).value, next(items).value
    rest = list(items)
    if isinstance(reader.body, legacy.LegacyReader):
        body = legacy.stream_of(rest)
    else:
        body = libxl.stream_of(reader.body, rest)
    return LibvirtImage(header, xml.octets, body)


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    return dump_items(LibvirtReader(src, checker, collect=True))


CODEC = Codec(
    name="libvirt",
    description="libvirt libxl driver save image: header, domain XML, then a libxl v2 stream or a "
                "legacy image (docs/containers.md)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    sniff=lambda data: (HEADER.get(LE, data, "version"), LE.value),   # written in the x86 host's order
    spans=partial(spans_of_dump, dump),   # the offsets of the items the reader finds, by layer
    trim=partial(libxc.trim_page_data, partial(spans_of_dump, dump)),
    recognise=by_magic((MAGIC, "libvirt's libxl save image magic \"libvirt-xml\\n \\0 \\r\"")),
)

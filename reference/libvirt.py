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
from typing import Iterator
from xml.parsers import expat

from . import legacy, libxc, libxl
from .checker import Checker
from .formats import Codec
from .layout import Endian, Layout
from .rules import Role, Severity, definer
from .source import Source, Truncated

LAYER = "libvirt"

# --------------------------------------------------------------------------
# Layout (libxl_conf.h, struct _libxlSavefileHeader; host byte order: little-endian)
# --------------------------------------------------------------------------

MAGIC = b"libvirt-xml\n \0 \r"
HEADER = Layout("libxlSavefileHeader", "16sII10I", "magic", "version", "xmlLen", *(f"unused{i}" for i in range(10)))
VERSION_OFFSET, XML_LENGTH_OFFSET, UNUSED_OFFSET = 16, 20, 24
UNUSED_WORDS = 10
#: LIBXL_SAVE_VERSION: 1 before LIBXL_HAVE_SRM_V2 (a legacy image follows), 2 with it (a libxl v2 stream)
VERSION_LEGACY, VERSION_V2 = 1, 2
VERSIONS = (VERSION_LEGACY, VERSION_V2)
#: What a version-1 body cannot start with: the libxl v2 ident and the libxc v2 marker.
V2_STARTS = (libxl.IDENT.to_bytes(8, "big"), b"\xff" * 8)
XML_ROOT = "domain"
#: The domain XML is parsed in pieces of this size (expat parses incrementally).
XML_PIECE = 64 << 10

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
class LibvirtHeader:
    version: int = VERSION_V2
    #: None: the length of the XML that follows (what libvirt writes)
    xml_length: int | None = None
    unused: tuple[int, ...] = (0,) * UNUSED_WORDS
    magic: bytes = MAGIC

    def encode(self, xml_length: int) -> bytes:
        n = xml_length if self.xml_length is None else self.xml_length
        return HEADER.pack(Endian.LITTLE, self.magic, self.version, n, *self.unused)


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


class _Reader:
    """One reader for validation (``collect=False``), decoding and dump (``visit``)."""

    def __init__(self, src: Source, checker: Checker, *, collect: bool, visit=None):
        self.src, self.ck, self.collect, self.visit = src, checker, collect, visit
        self.header: LibvirtHeader | None = None
        self.xml = b""

    def emit(self, item: dict) -> None:
        if self.visit is not None:
            self.visit(item)

    def read_header(self) -> LibvirtHeader:
        src, ck = self.src, self.ck
        ck.at(LAYER, None, "header")
        base = src.offset
        raw = src.read_exact(HEADER.size, "libvirt save image header")
        magic, version, xml_len, *unused = HEADER.unpack(Endian.LITTLE, raw)
        if magic != MAGIC:
            bad = next(i for i in range(len(MAGIC)) if magic[i] != MAGIC[i])
            ck.fail(MAGIC_RULE, base + bad, f"magic differs at octet {bad}: {magic!r}")
        if version > VERSION_V2:
            ck.fail(VERSION, base + VERSION_OFFSET, f"version {version} is above 2; libvirt refuses it "
                    "(\"image version is not supported\")")
        if version == 0:
            ck.report(VERSION_ZERO, base + VERSION_OFFSET, "version 0, which no libvirt writes")
        if any(unused):
            i = next(i for i, w in enumerate(unused) if w)
            ck.report(UNUSED, base + UNUSED_OFFSET + 4 * i, f"unused word {i} is 0x{unused[i]:08x}")
        if xml_len == 0:
            ck.fail(XML_LENGTH, base + XML_LENGTH_OFFSET, "xmlLen is 0 (\"invalid XML length\")")
        self.header = LibvirtHeader(version, xml_len, tuple(unused), magic)
        ck.note(f"libvirt save image: version {version} "
                f"({'legacy image' if version == VERSION_LEGACY else 'libxl v2 stream'} follows), "
                f"{xml_len} octets of domain XML")
        self.emit({"layer": LAYER, "kind": "header", "offset": base,
                   "fields": {"version": version, "xmlLen": xml_len, "unused": list(unused)}})
        return self.header

    def read_xml(self, length: int) -> None:
        src, ck = self.src, self.ck
        ck.at(LAYER, None, "domain XML")
        start = offset = src.offset
        check = _XmlCheck(start)
        pieces = []
        for piece in src.chunks(length, "domain XML", XML_PIECE):
            check.feed(piece, offset)
            offset += len(piece)
            if self.collect:
                pieces.append(piece)
        self.xml = b"".join(pieces)
        if check.nul is None:
            # the reader parses past its buffer: what it makes of the XML is not defined
            ck.report(XML_NUL, start + length - 1, f"none of the {length} octets of XML is a NUL")
        elif check.trailing is not None:
            ck.report(XML_TRAILING, check.trailing, f"octets follow the XML's NUL (at offset {check.nul}) "
                      "inside xmlLen")
        if check.nul is None:
            pass
        elif check.error is not None:
            ck.report(XML_SYNTAX, check.error[0], f"the domain XML is not well-formed: {check.error[1]}")
        elif check.root != XML_ROOT:
            ck.report(XML_ROOT_RULE, start, f"the root element is <{check.root}>, not <{XML_ROOT}>")
        self.emit({"layer": LAYER, "kind": "domain XML", "offset": start,
                   "fields": {"octets": length, "root": check.root,
                              "nul_at": None if check.nul is None else check.nul - start}})

    def front(self) -> LibvirtHeader:
        """The header and the XML; leaves the source at the embedded stream."""
        src, ck = self.src, self.ck
        try:
            header = self.read_header()
            self.read_xml(header.xml_length)
        except Truncated as t:
            ck.fail(TRUNCATED, t.end, t.describe())
        ck.at(LAYER, None, "stream")
        if header.version == VERSION_LEGACY:
            head = src.peek(8)
            if head in V2_STARTS:
                ck.fail(VERSION_MISMATCH, src.offset, "version 1 (a legacy image) but the stream starts with "
                        + ("the libxl v2 ident" if head == V2_STARTS[0] else "the libxc v2 marker"))
        return header


def _embedded(checker: Checker):
    """The embedded stream's findings carry its own layer; the container's location comes back after."""
    class _Restore:
        def __enter__(self):
            self.saved = checker.save()

        def __exit__(self, *exc):
            checker.restore(self.saved)
    return _Restore()


# --------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    header = _Reader(src, checker, collect=False).front()
    with _embedded(checker):
        if header.version == VERSION_LEGACY:
            legacy.validate(src, checker, xl=False)
        else:
            libxl.validate(src, checker)


def decode(data, *, role: Role = Role.RESTORE) -> LibvirtImage:
    checker = Checker(role, fail_fast=True)
    src = libxc._as_source(data)
    reader = _Reader(src, checker, collect=True)
    header = reader.front()
    with _embedded(checker):
        if header.version == VERSION_LEGACY:
            body = legacy.decode(src, role=role, xl=False)
        else:
            body_reader = libxl.read_body(src, checker, collect=True)
            body_reader.check_trailing()
            body = libxl.LibxlStream(body_reader.header, tuple(body_reader.items))
    return LibvirtImage(header, reader.xml, body)


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    items: list[dict] = []
    try:
        header = _Reader(src, checker, collect=False, visit=items.append).front()
    finally:
        yield from items
    with _embedded(checker):
        if header.version == VERSION_LEGACY:
            yield from legacy.dump(src, checker, xl=False)
        else:
            yield from libxl.dump(src, checker)


def recognise(prefix: bytes) -> str | None:
    if prefix.startswith(MAGIC):
        return "starts with libvirt's libxl save image magic \"libvirt-xml\\n \\0 \\r\""
    return None


CODEC = Codec(
    name="libvirt",
    description="libvirt libxl driver save image: header, domain XML, then a libxl v2 stream or a "
                "legacy image (docs/containers.md)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    recognise=recognise,
)

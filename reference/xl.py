"""The xl savefile header (what `xl save` writes before the libxl stream).

Layout (``struct save_file_header`` in Xen's tools/xl/xl.h, written by
``save_domain_core_writeconfig`` in tools/xl/xl_saverestore.c; the format
came with xl's "New savefile format" patch of 2010, the mandatory flags
later): a 32-octet magic, then four 32-bit words
in the domain's byte order: ``byteorder`` (0x01020304, which tells that
order), ``mandatory_flags`` (unknown ones: refuse the restore), ``optional_flags``
and ``optional_data_len``; then the optional data: a 32-bit config length and
the domain configuration.  Mandatory flag bit 0 says the configuration is
JSON, bit 1 that the stream after the header is a libxl v2 stream; without
bit 1 it is a legacy (pre-v2) stream.
"""

from __future__ import annotations

import json
from functools import partial
from dataclasses import dataclass
from typing import Iterator

from . import jsonscan, libxc, libxl
from .checker import Checker
from .formats import Codec, by_magic, get_codec
from .layout import Bytes, Declared, Endian, Layout, count, octets, u32
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source

LAYER = "xl"

MAGIC = b"Xen saved domain, xl format\n \0 \r"
CONFIG_LENGTH = Layout("xl config length", u32("config_len"))
BYTEORDER_VALUE = 0x01020304
FLAG_JSON = 1 << 0
FLAG_STREAMV2 = 1 << 1
FLAGS_KNOWN = FLAG_JSON | FLAG_STREAMV2
SECTION = "SaveFileHeader"

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER


_rule = definer("xl")


TRUNCATED = _rule("xl.stream.truncated", R, SECTION,
                  "the file does not end inside the header or the optional data")
MAGIC_RULE = _rule("xl.header.magic", R, SECTION,
                   "the file starts with the 32-octet magic \"Xen saved domain, xl format\\n \\0 \\r\"")
BYTEORDER = _rule("xl.header.byteorder", R, SECTION,
                  "byteorder is 0x01020304 in the domain's byte order")
MANDATORY = _rule("xl.header.mandatory_flags", R, SECTION,
                  "a reader refuses unknown mandatory flags (known: bit 0 JSON config, bit 1 libxl v2 "
                  "stream)")
OPTIONAL = _rule("xl.header.optional_flags", E, SECTION,
                 "the header's comment says unknown optional flags reject the restore, xl itself ignores "
                 "them")
OPTDATA = _rule("xl.optional_data.config_length", R, "Optional data",
                "non-empty optional data starts with a 32-bit config length that fits in it")
JSON_NUL = _rule("xl.config.json_nul", R, "Optional data",
                 "a JSON configuration (mandatory flag bit 0) is a NUL-terminated string")
JSON_SYNTAX = _rule("xl.config.json_syntax", R, "Optional data",
                    "a JSON configuration (mandatory flag bit 0) parses as JSON")
JSON_NO_CONFIG = _rule("xl.config.json_without_config", E, "Optional data",
                       "xl sets the JSON flag only with a configuration; a reader has nothing to parse")
# Checks xl's reader makes and the header's definition does not (reader profiles only).
FOREIGN_BYTEORDER = _rule("xl.header.foreign_byteorder", E, SECTION,
                          "the header is in the restoring host's byte order (little-endian on x86); the header "
                          "says its own byte order, and xl refuses any other than its host's")
CONFIG_MISSING = _rule("xl.config.missing", E, "Optional data",
                       "the savefile carries the domain configuration; the header does not require one (a "
                       "restore may be given a config file instead)")
LEGACY_EXPECTED = _rule("xl.body.legacy_expected", R, SECTION,
                        "without mandatory flag bit 1 the body is a legacy (pre-v2) stream, so it cannot "
                        "start with the v2 libxc marker")


class XlHeader(Declared):
    """The savefile header: the magic, then words in the domain's byte order (``endian``, told by
    ``byteorder``), then the optional data."""

    LAYOUT = Layout("xl savefile header", octets("magic", len(MAGIC), const=MAGIC),
                    u32("byteorder", const=BYTEORDER_VALUE), u32("mandatory_flags", default=FLAG_STREAMV2),
                    u32("optional_flags", default=0), count("optional_data_len"),
                    tail=(Bytes("optional_data", "optional_data_len"),))
    FIRST = (("endian", Endian, Endian.LITTLE),)

    @classmethod
    def with_config(cls, config: bytes | None, *, json_config: bool = True,
                    endian: Endian = Endian.LITTLE, streamv2: bool = True) -> "XlHeader":
        """A header as xl writes it: config length and config (JSON, NUL-terminated) as optional data."""
        flags = FLAG_STREAMV2 if streamv2 else 0
        optdata = b""
        if config is not None:
            optdata = CONFIG_LENGTH.pack(endian, len(config)) + config
            if config and json_config:
                flags |= FLAG_JSON
        return cls(endian, flags, 0, optdata)

    @property
    def streamv2(self) -> bool:
        return bool(self.mandatory_flags & FLAG_STREAMV2)

    @property
    def config(self) -> bytes | None:
        if len(self.optional_data) < 4:
            return None
        (n,) = CONFIG_LENGTH.unpack(self.endian, self.optional_data)
        return self.optional_data[4:4 + n]

    def encode(self) -> bytes:
        return self.encode_body(self.endian)


HEADER = XlHeader.LAYOUT
#: Octets of the header before the optional data.
OPTIONAL_DATA_OFFSET = HEADER.offset("optional_data")


@dataclass(frozen=True)
class XlStream:
    header: XlHeader
    #: LibxlStream when the STREAMv2 flag is set, otherwise the legacy body (bytes or a legacy value)
    body: object


def encode(stream: XlStream) -> bytes:
    body = stream.body
    if isinstance(body, libxl.LibxlStream):
        data = libxl.encode(body)
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = get_codec("legacy").encode(body)
    return stream.header.encode() + data


def endian_of(octets: bytes) -> Endian | None:
    """The byte order ``byteorder``'s four octets say, or None when they are no 0x01020304."""
    for endian in Endian:
        if octets[:4] == BYTEORDER_VALUE.to_bytes(4, endian.value):
            return endian
    return None


def header_length(data: bytes) -> int | None:
    """The length of the xl header at the start of ``data`` (optional data included), or None
    when ``data`` does not hold its fixed part or says no byte order."""
    words = HEADER.offset("byteorder")
    endian = endian_of(data[words:words + 4])
    if endian is None or len(data) < OPTIONAL_DATA_OFFSET:
        return None
    return OPTIONAL_DATA_OFFSET + HEADER.values(endian, data)["optional_data_len"]


#: Largest optional data read whole and JSON configuration parsed (``json.loads`` of a
#: megabyte of small values takes some 40 MiB); larger ones are checked as they pass,
#: their JSON syntax by the streaming :mod:`.jsonscan`.  xl writes a few KiB.
CONFIG_PARSE_MAX = 1 << 20


def read_header(src: Source, checker: Checker, *, whole: bool = True) -> XlHeader:
    """The savefile header, checked.  With ``whole`` False (validation), optional data
    larger than :data:`CONFIG_PARSE_MAX` is checked as it passes and not kept: the
    header's ``optional_data`` is then empty."""
    checker.at(LAYER, None, "savefile header")
    start = src.offset
    try:
        magic = src.read_exact(len(MAGIC), "xl magic")
        if magic != MAGIC:
            bad = next(i for i in range(len(MAGIC)) if magic[i] != MAGIC[i])
            checker.fail(MAGIC_RULE, bad, f"magic differs at octet {bad}: {magic[:28]!r}")
        raw = magic + src.read_exact(OPTIONAL_DATA_OFFSET - len(MAGIC), "xl header words")
        base = HEADER.at(start, "byteorder")
        endian = endian_of(raw[HEADER.offset("byteorder"):])
        if endian is None:
            order = raw[HEADER.offset("byteorder"):][:4]
            checker.fail(BYTEORDER, base, f"byteorder octets are {order.hex()}, not 0x01020304 in "
                         "either byte order")
        fields = XlHeader.decode_fixed(endian, raw)
        mandatory, optional, optlen = fields["mandatory_flags"], fields["optional_flags"], fields["optional_data_len"]
        if endian is Endian.BIG and FOREIGN_BYTEORDER in checker.reader_rules:
            checker.report(FOREIGN_BYTEORDER, base, "big-endian header; an x86 host reads only its own byte order")
        if mandatory & ~FLAGS_KNOWN:
            checker.report(MANDATORY, HEADER.at(start, "mandatory_flags"),
                           f"unknown mandatory flags 0x{mandatory & ~FLAGS_KNOWN:08x}")
        if optional:
            checker.report(OPTIONAL, HEADER.at(start, "optional_flags"), f"unknown optional flags 0x{optional:08x}")
        optbase = src.offset
        if not whole and optlen > CONFIG_PARSE_MAX:
            header = XlHeader(endian, mandatory, optional, b"", magic, fields["byteorder"])
            _pass_large_optional_data(src, header, optlen, optbase, checker)
        else:
            optdata = src.read_exact(optlen, "xl optional data")
            header = XlHeader(endian, mandatory, optional, optdata, magic, fields["byteorder"])
    except Truncated as t:
        checker.fail(TRUNCATED, t.end, t.describe())
    if whole or optlen <= CONFIG_PARSE_MAX:
        _check_optional_data(header, optbase, checker)
    checker.note(f"xl header: {endian.value}-endian, mandatory flags 0x{mandatory:x}, "
                 f"optional data {optlen} octets")
    return header


def _pass_large_optional_data(src: Source, header: XlHeader, optlen: int, base: int,
                              checker: Checker) -> None:
    """:func:`_check_optional_data` for optional data larger than :data:`CONFIG_PARSE_MAX`,
    checked as it passes and not held: the same findings at the same offsets (the JSON
    configuration's syntax by :class:`.jsonscan.JsonScan`, its message naming the octet
    within the configuration); Truncated as for one read of all of it."""
    syntax = None  # the JSON syntax fault found, reported once all of it is read
    try:  # all of it first: a truncation is found before anything inside it, as in one read
        (n,) = CONFIG_LENGTH.unpack(header.endian, src.read_exact(CONFIG_LENGTH.size, "xl optional data"))
        last = None
        if n > optlen - 4:
            src.skip(optlen - 4, "xl optional data")
        else:
            if n:
                if header.mandatory_flags & FLAG_JSON:  # the config's octets, its final NUL excluded
                    scan = jsonscan.JsonScan()
                    for piece in src.chunks(n - 1, "xl optional data"):
                        if syntax is None:
                            try:
                                scan.feed(piece)
                            except jsonscan.JsonSyntaxError as exc:
                                syntax = exc
                    if syntax is None:
                        try:
                            scan.close()
                        except jsonscan.JsonSyntaxError as exc:
                            syntax = exc
                else:
                    src.skip(n - 1, "xl optional data")
                last = src.read_exact(1, "xl optional data")
            if optlen - 4 - n:
                src.skip(optlen - 4 - n, "xl optional data")
    except Truncated as t:
        raise Truncated(base, optlen, t.end - base, "xl optional data") from None
    if n > optlen - 4:
        checker.report(OPTDATA, base, f"config length {n} exceeds the {optlen - 4} octets left")
    if last is None and CONFIG_MISSING in checker.reader_rules:
        checker.report(CONFIG_MISSING, base, "the savefile carries no domain configuration")
    if header.mandatory_flags & FLAG_JSON:
        if last is None:
            checker.report(JSON_NO_CONFIG, base, "JSON flag set but the file holds no configuration")
        elif last != b"\0":
            checker.report(JSON_NUL, base + 4 + n - 1, "JSON configuration is not NUL-terminated")
        elif syntax is not None:
            checker.report(JSON_SYNTAX, base + 4, f"JSON configuration does not parse: {syntax}")


def _check_optional_data(header: XlHeader, base: int, checker: Checker) -> None:
    data = header.optional_data
    config = None
    if data:
        if len(data) < 4:
            checker.report(OPTDATA, base, f"{len(data)} octets of optional data cannot hold the config length")
        else:
            (n,) = CONFIG_LENGTH.unpack(header.endian, data)
            if n > len(data) - 4:
                checker.report(OPTDATA, base, f"config length {n} exceeds the {len(data) - 4} octets left")
            else:
                config = data[4:4 + n]
    if not config and CONFIG_MISSING in checker.reader_rules:
        checker.report(CONFIG_MISSING, base, "the savefile carries no domain configuration")
    if header.mandatory_flags & FLAG_JSON:
        if not config:
            checker.report(JSON_NO_CONFIG, base, "JSON flag set but the file holds no configuration")
        elif config[-1:] != b"\0":
            checker.report(JSON_NUL, base + 4 + len(config) - 1, "JSON configuration is not NUL-terminated")
        else:
            try:
                json.loads(config[:-1].decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                checker.report(JSON_SYNTAX, base + 4, f"JSON configuration does not parse: {exc}")
            except RecursionError:  # json's parser recurses per level of nesting; jsonscan does not
                try:
                    jsonscan.check(config[:-1])
                except jsonscan.JsonSyntaxError as exc:
                    checker.report(JSON_SYNTAX, base + 4, f"JSON configuration does not parse: {exc}")


def _check_legacy_body(src: Source, checker: Checker) -> None:
    checker.at(LAYER, None, "body")
    if src.peek(8) == libxc.MARKER.to_bytes(8, "big"):
        checker.fail(LEGACY_EXPECTED, src.offset, "the body starts with the v2 libxc marker")


def validate(src: Source, checker: Checker) -> None:
    header = read_header(src, checker, whole=False)
    if header.streamv2:
        libxl.validate(src, checker)
        return
    _check_legacy_body(src, checker)
    get_codec("legacy").validate(src, checker)


def decode(data, *, role: Role = Role.RESTORE) -> XlStream:
    checker = Checker(role, fail_fast=True)
    src = as_source(data)
    header = read_header(src, checker)
    if header.streamv2:
        return XlStream(header, libxl.read_stream(src, checker))
    _check_legacy_body(src, checker)
    return XlStream(header, get_codec("legacy").decode(src, role=role))


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    header = read_header(src, checker)
    config = header.config
    yield {"layer": LAYER, "kind": "savefile header", "offset": 0,
           "fields": {"endian": header.endian.value, "mandatory_flags": header.mandatory_flags,
                      "json": bool(header.mandatory_flags & FLAG_JSON), "streamv2": header.streamv2,
                      "optional_flags": header.optional_flags,
                      "optional_data_len": len(header.optional_data),
                      "config": None if config is None else config.rstrip(b"\0").decode("utf-8", "replace")}}
    if header.streamv2:
        yield from libxl.dump(src, checker)
        return
    _check_legacy_body(src, checker)
    yield from get_codec("legacy").dump(src, checker)


def sniff(data: bytes) -> tuple[int | None, str | None]:
    endian = endian_of(data[HEADER.offset("byteorder"):OPTIONAL_DATA_OFFSET])
    return None, None if endian is None else endian.value


def spans(data: bytes, options=None) -> tuple[list, int]:
    """The header (with its optional data) as one span, then the body's: a libxl stream's with
    the STREAMv2 flag, a legacy image's without."""
    out: list = []
    if len(data) < OPTIONAL_DATA_OFFSET:
        return out, 0
    endian = endian_of(data[HEADER.offset("byteorder"):]) or Endian.BIG
    fields = HEADER.values(endian, data)
    end = OPTIONAL_DATA_OFFSET + fields["optional_data_len"]
    if end > len(data):
        out.append((0, OPTIONAL_DATA_OFFSET, "xl-header"))
        return out, OPTIONAL_DATA_OFFSET
    out.append((0, end, "xl-header"))
    if fields["mandatory_flags"] & FLAG_STREAMV2:
        return libxl.spans(data, base=end, out=out)
    return get_codec("legacy").spans(data, options, base=end, out=out)


CODEC = Codec(
    name="xl",
    description="xl savefile: xl header then a libxl v2 stream (or a legacy stream)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    sniff=sniff,
    spans=spans,
    trim=partial(libxc.trim_page_data, spans),
    keep_whole=True,
    recognise=by_magic((MAGIC, "the xl savefile magic \"Xen saved domain, xl format\\n \\0 \\r\"")),
)

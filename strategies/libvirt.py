"""libvirt's libxl save images: the header and domain XML around a libxl v2 stream (version 2)
or a legacy image (version 1).

Besides the container's own mutations, every libxl and legacy mutation is
offered inside a valid header and XML: libvirt hands the rest of the file to
libxl, so the broken rule is the embedded stream's, at its offset in the file."""

from __future__ import annotations

from xenstream.reference import container_profiles as CP
from xenstream.reference import libvirt as LV

from . import legacy as SG
from . import libxl as SL
from ._draw import Draw, broken_magic, pick
from ._registry import MUTATIONS, Mutation, mutation, valid_builder

FORMAT = "libvirt"
NAME_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789-_"


def xml(d: Draw, guest: str | None = None) -> str:
    guest = guest or d.choice(["hvm", "pv"])
    name = d.bytes(1, 12, NAME_ALPHABET).decode()
    text = CP.domain_xml(guest, name)
    if d.int(0, 3) == 0:
        text = "<?xml version='1.0' encoding='UTF-8'?>\n" + text
    return text


def header(d: Draw, body: bytes, version: int) -> bytes:
    return LV.encode(LV.LibvirtImage.make(xml(d), body, version=version))


def build(d: Draw, *, version=None, **opts) -> tuple[bytes, str]:
    version = pick(d, version, lambda: d.choice([LV.VERSION_V2, LV.VERSION_V2, LV.VERSION_LEGACY]))
    if version == LV.VERSION_LEGACY:
        legacy_opts = {k: v for k, v in opts.items() if k in ("width", "guest", "pages", "physmap", "qemu")}
        body, desc = SG.valid(d, xl=False, **legacy_opts)
    else:
        body, desc = SL.valid(d, **opts)
    return header(d, body, version), f"libvirt save image version {version} + {desc}"


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    data, desc = build(d, **opts)
    return data, "valid " + desc


def _libxl_body(d: Draw) -> bytes:
    return SL.valid(d)[0]


def _raw(d: Draw, *, version=LV.VERSION_V2, xml_octets: bytes | None = None, unused=(0,) * 10,
         xml_len: int | None = None) -> bytes:
    octets = (xml(d).encode() + b"\0") if xml_octets is None else xml_octets
    return LV.LibvirtHeader.make(version, xml_len, tuple(unused)).encode(len(octets)) + octets + _libxl_body(d)


@mutation(FORMAT, "framing", LV.TRUNCATED)
def _truncated(d: Draw):
    data, _ = build(d, version=LV.VERSION_V2)
    end = LV.HEADER.size + LV.HEADER.get(LV.LE, data, "xmlLen")
    cut = d.int(0, end - 1)
    return data[:cut], f"the file cut at {cut}, inside the header or the XML ({end} octets)"


@mutation(FORMAT, "semantics", LV.MAGIC_RULE)
def _magic(d: Draw):
    data, _ = build(d)
    return broken_magic(d, data, LV.MAGIC)


@mutation(FORMAT, "semantics", LV.VERSION)
def _version(d: Draw):
    version = d.choice([3, 4, d.int(3, 0xFFFFFFFF), 0x02000000])
    return _raw(d, version=version), f"version {version}"


@mutation(FORMAT, "semantics", LV.VERSION_ZERO)
def _version_zero(d: Draw):
    return _raw(d, version=0), "version 0 before a libxl v2 stream"


@mutation(FORMAT, "reserved", LV.UNUSED)
def _unused(d: Draw):
    words = [0] * 10
    words[d.int(0, 9)] = d.int(1, 0xFFFFFFFF)
    return _raw(d, unused=tuple(words)), f"unused words {words}"


@mutation(FORMAT, "framing", LV.XML_LENGTH)
def _xml_length(d: Draw):
    return _raw(d, xml_octets=b""), "xmlLen 0"


@mutation(FORMAT, "strings", LV.XML_NUL)
def _xml_nul(d: Draw):
    return _raw(d, xml_octets=xml(d).encode()), "the XML without its NUL"


@mutation(FORMAT, "strings", LV.XML_TRAILING)
def _xml_trailing(d: Draw):
    extra = d.bytes(1, 8, b"abc\0 ") or b"x"
    if not extra.strip(b"\0"):
        extra += b"x"
    return _raw(d, xml_octets=xml(d).encode() + b"\0" + extra), f"{extra!r} after the XML's NUL"


@mutation(FORMAT, "strings", LV.XML_SYNTAX)
def _xml_syntax(d: Draw):
    text = xml(d).encode()
    cut = d.int(1, len(text) - 20)
    broken = d.choice([text[:cut], text.replace(b"</name>", b"</nam>"), text + b"<extra/>",
                       text.replace(b"<domain", b"<domain <", 1)])
    return _raw(d, xml_octets=broken + b"\0"), "XML that is not well-formed"


@mutation(FORMAT, "semantics", LV.XML_ROOT_RULE)
def _xml_root(d: Draw):
    root = d.choice([b"network", b"pool", b"domainsnapshot", b"Domain"])
    return _raw(d, xml_octets=b"<%s><name>x</name></%s>\0" % (root, root)), f"root element <{root.decode()}>"


@mutation(FORMAT, "semantics", LV.VERSION_MISMATCH)
def _version_mismatch(d: Draw):
    from . import libxc as SX

    body = _libxl_body(d) if d.bool() else SX.valid(d)[0]
    return header(d, body, LV.VERSION_LEGACY), "version 1 (a legacy image) before a v2 stream"


# -- every libxl and legacy mutation inside a valid header ---------------------------


def strip_xl(data: bytes) -> bytes:
    """A legacy image without the xl header a legacy mutation may have put in front."""
    from xenstream.reference import xl as XL

    if not data.startswith(XL.MAGIC):
        return data
    return data[XL.header_length(data) or 0:]


def _wrapped(m: Mutation, version: int):
    def fn(d: Draw):
        data, desc = m.fn(d)
        if version == LV.VERSION_LEGACY:
            data = strip_xl(data)
        return header(d, data, version), f"inside a libvirt save image: {desc}"
    return fn


for _m in [m for m in MUTATIONS if m.format in ("libxl", "legacy")]:
    MUTATIONS.append(Mutation(FORMAT, _m.family, _m.rule, f"{_m.format}.{_m.name}",
                              _wrapped(_m, LV.VERSION_V2 if _m.format == "libxl" else LV.VERSION_LEGACY)))

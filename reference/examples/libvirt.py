"""Hand-written libvirt save images: valid files, one or more malformed files for every
``libvirt.*`` rule, and malformed embedded streams (their findings at the offset in the
whole file)."""

from __future__ import annotations

from .. import build, container_profiles as CP, legacy, libvirt as LV, libxc, libxl
from ..libxc import DomainType
from . import Example

FORMAT = "libvirt"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV
XML = CP.domain_xml("hvm")
XML_AT = LV.HEADER.size


def _ex(name, image_or_bytes, rule, description, offset=None, **meta) -> Example:
    data = image_or_bytes if isinstance(image_or_bytes, bytes) else LV.encode(image_or_bytes)
    return Example(FORMAT, name, data, rule, description, meta, offset)


def _header(version=2, xml_len=None, unused=(0,) * 10, xml=XML.encode() + b"\0") -> bytes:
    return LV.LibvirtHeader.make(version, xml_len, tuple(unused)).encode(len(xml)) + xml


def examples() -> list[Example]:
    libxl_hvm = libxl.encode(build.libxl_stream(HVM))
    v2 = LV.LibvirtImage.make(XML, build.libxl_stream(HVM))
    good = LV.encode(v2)
    body_at = XML_AT + len(XML) + 1
    out = [
        _ex("v2_hvm", v2, None, "libvirt 1.3.5+ on Xen 4.6+: header version 2, domain XML, libxl v2 stream"),
        _ex("v2_pv", LV.LibvirtImage.make(CP.domain_xml("pv"), build.libxl_stream(PV)), None,
            "version 2 around the libxl stream of a PV guest"),
        _ex("v1_legacy_hvm", LV.LibvirtImage.make(XML, legacy.build_hvm_stream(
            width=64, p2m_size=2, physmap=legacy.sample_physmap(1)), version=1), None,
            "libvirt on Xen 4.5 or older: version 1, a legacy libxl image with its qemu record"),
        _ex("v1_legacy_pv", LV.LibvirtImage.make(CP.domain_xml("pv"), legacy.build_pv_stream(width=64, p2m_size=2),
                                                 version=1), None, "version 1 around a legacy PV image"),
        _ex("xml_with_prolog", LV.LibvirtImage.make("<?xml version='1.0'?>\n<!-- saved -->\n" + XML,
                                                    build.libxl_stream(PV)), None,
            "an XML declaration and a comment before <domain>"),
    ]
    out += [
        _ex("cut_in_header", good[:40], LV.TRUNCATED, "the file ends inside the 64-octet header", 40),
        _ex("cut_in_xml", good[:XML_AT + 30], LV.TRUNCATED, "the file ends inside the domain XML", XML_AT + 30),
        _ex("magic_wrong", good[:7] + b"X" + good[8:], LV.MAGIC_RULE, "the magic's eighth octet differs", 7),
        _ex("version_3", _header(version=3) + libxl_hvm, LV.VERSION, "version 3, which no libvirt knows",
            LV.HEADER.offset("version")),
        _ex("version_zero", _header(version=0) + libxl_hvm, LV.VERSION_ZERO,
            "version 0: accepted by libvirt, read as a v2 stream by libxl", LV.HEADER.offset("version")),
        _ex("unused_set", _header(unused=(0, 0, 0, 7) + (0,) * 6) + libxl_hvm, LV.UNUSED,
            "the fourth unused word is 7", LV.HEADER.offset("unused") + 12),
        _ex("xml_length_zero", _header(xml_len=0, xml=b"") + libxl_hvm, LV.XML_LENGTH, "xmlLen 0",
            LV.HEADER.offset("xmlLen")),
        _ex("xml_without_nul", _header(xml=XML.encode()) + libxl_hvm, LV.XML_NUL,
            "xmlLen counts the XML but no NUL", XML_AT + len(XML) - 1),
        _ex("xml_trailing_octets", _header(xml=XML.encode() + b"\0junk\0") + libxl_hvm, LV.XML_TRAILING,
            "octets after the XML's NUL, inside xmlLen", XML_AT + len(XML) + 1),
        _ex("xml_not_well_formed", _header(xml=b"<domain type='xen'><name>g</domain>\0") + libxl_hvm,
            LV.XML_SYNTAX, "the <name> element is not closed", XML_AT + 28),
        _ex("xml_not_a_domain", _header(xml=b"<network><name>default</name></network>\0") + libxl_hvm,
            LV.XML_ROOT_RULE, "a network definition, not a domain", XML_AT),
        _ex("v1_with_libxl_v2", LV.LibvirtImage.make(XML, build.libxl_stream(HVM), version=1),
            LV.VERSION_MISMATCH, "version 1 (legacy) before a libxl v2 stream: what libvirt before 1.3.5 "
            "wrote on Xen 4.6+", body_at),
        _ex("v1_with_libxc_v2", LV.LibvirtImage.make(XML, libxc.encode(build.libxc_stream(HVM)), version=1),
            LV.VERSION_MISMATCH, "version 1 (legacy) before a bare libxc v2 image", body_at),
    ]
    out += embedded()
    return out


def embedded() -> list[Example]:
    """Malformed libxl (version 2) and legacy (version 1) streams inside a valid container:
    the embedded stream's rule, at its offset plus the container's 64 + xmlLen octets."""
    from . import legacy as EL, libxl as EX

    out = []
    shift = XML_AT + len(XML) + 1
    for ex, version in _pick(EX.examples(), 8) + _pick([e for e in _detectable(EL.examples())
                                                          if len(e.data) < 32 << 10], 3):
        if ex.rule is None:
            continue
        image = LV.LibvirtImage.make(XML, ex.data, version=1 if ex.format == "legacy" else 2)
        out.append(_ex(f"{ex.format}-{ex.name}", image, ex.rule,
                       f"a valid libvirt header around a malformed {ex.format} stream: {ex.description}",
                       None if ex.offset is None else ex.offset + shift, embedded=ex.case_id))
    return out


def _pick(examples, n: int) -> list:
    """The ``n`` smallest malformed examples of distinct rules (deterministic)."""
    seen, out = set(), []
    for ex in sorted((e for e in examples if e.rule and not e.meta.get("reader")), key=lambda e: (len(e.data), e.name)):
        if ex.rule not in seen:
            seen.add(ex.rule)
            out.append((ex, None))
        if len(out) == n:
            break
    return out


def _detectable(examples) -> list:
    """Legacy examples whose options are what detection finds (a container gives none)."""
    out = []
    for ex in examples:
        det = legacy.detect(ex.data[:64], xl_header=False)
        if ex.meta.get("xl") or ex.meta.get("qemu") is False and ex.meta.get("guest") == "hvm":
            continue
        if (det.width, legacy.guest_name(det.guest)) == (ex.meta.get("width"), ex.meta.get("guest")) \
                and not det.ambiguous:
            out.append(ex)
    return out

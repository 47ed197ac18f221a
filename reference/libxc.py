"""libxc Domain Image Format, versions 2 and 3 (libxc-migration-stream.pandoc, revision 3).

Layouts, typed values, rules, and one parser per record type that both
validates (streaming, bounded memory) and decodes (typed values).  The libxl
stream embeds a libxc stream after its LIBXC_CONTEXT record and resumes it
after a CHECKPOINT, so the parser is an object that can stop at a CHECKPOINT
and be resumed (:class:`LibxcReader`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Iterator

from . import fastpath, framing
from .checker import Checker
from .formats import Codec, by_magic
from .framing import (
    OPTIONAL_BIT, RECORD_HEADER, BodyReader, Item, RawRecord, RecordHeader, check_padding, encode_record,
    make_header, make_item, padding_length,
)
from .layout import Array, Bytes, Declared, Endian, Layout, count, reserved, u8, u16, u32, u64
from .rules import Role, Severity, definer
from .source import Source, Truncated, as_source

LAYER = "libxc"

# --------------------------------------------------------------------------
# Constants and enumerations (section names as in the spec)
# --------------------------------------------------------------------------

MARKER = 0xFFFFFFFFFFFFFFFF
IDENT = 0x58454E46  # "XENF"
VERSIONS = (2, 3)
OPTIONS_RESERVED_MASK = 0xFFFE
X86_PAGE_SHIFT = 12

#: A PAGE_DATA pfn entry: page type in bits 63-60, reserved bits 59-52, pfn in bits 51-0.
PFN_MASK = (1 << 52) - 1
PFN_RESERVED_MASK = ((1 << 60) - 1) & ~PFN_MASK
PFN_TYPE_SHIFT = 60
#: The reserved bits of a pfn entry, lowest first.
PFN_RESERVED_BITS = range(52, PFN_TYPE_SHIFT)


class DomainType(enum.IntEnum):
    X86_PV = 1
    X86_HVM = 2


class RecordType(enum.IntEnum):
    END = 0x00
    PAGE_DATA = 0x01
    X86_PV_INFO = 0x02
    X86_PV_P2M_FRAMES = 0x03
    X86_PV_VCPU_BASIC = 0x04
    X86_PV_VCPU_EXTENDED = 0x05
    X86_PV_VCPU_XSAVE = 0x06
    SHARED_INFO = 0x07
    X86_TSC_INFO = 0x08
    HVM_CONTEXT = 0x09
    HVM_PARAMS = 0x0A
    TOOLSTACK = 0x0B
    X86_PV_VCPU_MSRS = 0x0C
    VERIFY = 0x0D
    CHECKPOINT = 0x0E
    CHECKPOINT_DIRTY_PFN_LIST = 0x0F
    STATIC_DATA_END = 0x10
    X86_CPUID_POLICY = 0x11
    X86_MSR_POLICY = 0x12


class PageType(enum.IntEnum):
    """XEN_DOMCTL_PFINFO_* page types (PAGE_DATA, bits 63-60)."""

    NOTAB = 0x0
    L1TAB = 0x1
    L2TAB = 0x2
    L3TAB = 0x3
    L4TAB = 0x4
    L1TAB_PIN = 0x9
    L2TAB_PIN = 0xA
    L3TAB_PIN = 0xB
    L4TAB_PIN = 0xC
    BROKEN = 0xD
    XALLOC = 0xE
    XTAB = 0xF


#: Page types (0..15) that carry page_data; 5-8 are reserved.
HAS_DATA = tuple(t <= 4 or 9 <= t <= 12 for t in range(16))
RESERVED_PAGE_TYPES = frozenset({5, 6, 7, 8})


def pfn_entry(pfn: int, page_type: int = PageType.NOTAB) -> int:
    """A PAGE_DATA pfn array entry: type in bits 63-60, pfn in bits 51-0."""
    return (int(page_type) << PFN_TYPE_SHIFT) | (pfn & PFN_MASK)


def page_type_of(entry: int) -> int:
    """The page type (bits 63-60) of a PAGE_DATA pfn entry."""
    return entry >> PFN_TYPE_SHIFT


def with_page_type(entry: int, page_type: int) -> int:
    """``entry`` with its page type replaced (reserved bits dropped)."""
    return pfn_entry(entry & PFN_MASK, page_type)


# --------------------------------------------------------------------------
# Layouts and typed values, declared once (reference/layout.py)
# --------------------------------------------------------------------------


class ImageHeader(Declared):
    """"Image Header": always big-endian; 48 reserved bits drawn as 16 + 32."""

    LAYOUT = Layout("image header", u64("marker", const=MARKER), u32("id", const=IDENT),
                    u32("version", default=3), u16("options", default=0), reserved("reserved", "HI"))

    @property
    def endian(self) -> Endian:
        return Endian.from_bit(self.options)

    @classmethod
    def make(cls, version: int = 3, endian: Endian = Endian.LITTLE) -> "ImageHeader":
        return cls(version=version, options=endian.bit)

    def encode(self) -> bytes:
        return self.encode_body(Endian.BIG)


class DomainHeader(Declared):
    """"Domain Header", in the stream's byte order."""

    LAYOUT = Layout("domain header", u32("type", default=DomainType.X86_HVM),
                    u16("page_shift", default=X86_PAGE_SHIFT), reserved("reserved", "H"),
                    u32("xen_major", default=4), u32("xen_minor", default=17))

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    def encode(self, endian: Endian) -> bytes:
        return self.encode_body(endian)


IMAGE_HEADER, DOMAIN_HEADER = ImageHeader.LAYOUT, DomainHeader.LAYOUT
#: Octets before the first record.
HEADERS_SIZE = IMAGE_HEADER.size + DOMAIN_HEADER.size


class Record(framing.Record):
    """Base of the typed libxc records."""

    layer: ClassVar[str] = LAYER


class _Empty(Record):
    LAYOUT = Layout("empty body")


class End(_Empty):
    TYPE: ClassVar[int] = RecordType.END


class Verify(_Empty):
    TYPE: ClassVar[int] = RecordType.VERIFY


class Checkpoint(_Empty):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT


class StaticDataEnd(_Empty):
    TYPE: ClassVar[int] = RecordType.STATIC_DATA_END


class PageData(Record):
    """``pfns`` are raw entries (:func:`pfn_entry`); ``pages`` page_size octets per pfn whose
    type carries data."""

    TYPE: ClassVar[int] = RecordType.PAGE_DATA
    LAYOUT = Layout("PAGE_DATA", count("count"), reserved(),
                    tail=(Array("pfns", "Q", "count"), Bytes("pages")))

    def present(self) -> int:
        return sum(HAS_DATA[page_type_of(p)] for p in self.pfns)


def page_data_length(count: int, present: int, page_size: int) -> int:
    """The body_length of a PAGE_DATA record of ``count`` pfns, ``present`` of them carrying data."""
    return PageData.LAYOUT.size + 8 * count + present * page_size


class X86PvInfo(Record):
    TYPE: ClassVar[int] = RecordType.X86_PV_INFO
    LAYOUT = Layout("X86_PV_INFO", u8("guest_width", default=8), u8("pt_levels", default=4),
                    reserved("reserved", "HI"))


class X86PvP2mFrames(Record):
    TYPE: ClassVar[int] = RecordType.X86_PV_P2M_FRAMES
    LAYOUT = Layout("X86_PV_P2M_FRAMES", u32("p2m_start_pfn"), u32("p2m_end_pfn"),
                    tail=(Array("p2m_pfns", "Q"),))


class X86PvVcpu(Record):
    """The four X86_PV_VCPU_* record types share one layout (and their rules)."""

    LAYOUT = Layout("X86_PV_VCPU header", u32("vcpu_id"), reserved(), tail=(Bytes("context"),))


class X86PvVcpuBasic(X86PvVcpu):
    TYPE: ClassVar[int] = RecordType.X86_PV_VCPU_BASIC


class X86PvVcpuExtended(X86PvVcpu):
    TYPE: ClassVar[int] = RecordType.X86_PV_VCPU_EXTENDED


class X86PvVcpuXsave(X86PvVcpu):
    TYPE: ClassVar[int] = RecordType.X86_PV_VCPU_XSAVE


class X86PvVcpuMsrs(X86PvVcpu):
    TYPE: ClassVar[int] = RecordType.X86_PV_VCPU_MSRS



class _Blob(Record):
    LAYOUT = Layout("blob", tail=(Bytes("data"),))


class SharedInfo(_Blob):
    TYPE: ClassVar[int] = RecordType.SHARED_INFO


class HvmContext(_Blob):
    TYPE: ClassVar[int] = RecordType.HVM_CONTEXT


class Toolstack(_Blob):
    TYPE: ClassVar[int] = RecordType.TOOLSTACK


class X86TscInfo(Record):
    TYPE: ClassVar[int] = RecordType.X86_TSC_INFO
    LAYOUT = Layout("X86_TSC_INFO", u32("mode", default=0), u32("khz", default=0), u64("nsec", default=0),
                    u32("incarnation", default=0), reserved())


#: An HVM_PARAMS entry: (index, value).
HVM_PARAMS_ENTRY = Layout("HVM_PARAMS entry", u64("index"), u64("value"))


class HvmParams(Record):
    TYPE: ClassVar[int] = RecordType.HVM_PARAMS
    LAYOUT = Layout("HVM_PARAMS", count("count"), reserved(), tail=(Array("params", HVM_PARAMS_ENTRY, "count"),))


class CheckpointDirtyPfnList(Record):
    TYPE: ClassVar[int] = RecordType.CHECKPOINT_DIRTY_PFN_LIST
    LAYOUT = Layout("CHECKPOINT_DIRTY_PFN_LIST", tail=(Array("pfns", "Q"),))


#: ``xen_cpuid_leaf_t`` (public/arch-x86/xen.h) and ``xen_msr_entry_t``: the entries of the policies.
CPUID_LEAF = Layout("xen_cpuid_leaf_t", u32("leaf"), u32("subleaf"), u32("a"), u32("b"), u32("c"), u32("d"))
MSR_ENTRY = Layout("xen_msr_entry_t", u32("idx"), u32("flags"), u64("val"))


class X86CpuidPolicy(Record):
    TYPE: ClassVar[int] = RecordType.X86_CPUID_POLICY
    LAYOUT = Layout("X86_CPUID_POLICY", tail=(Array("leaves", CPUID_LEAF),))


class X86MsrPolicy(Record):
    TYPE: ClassVar[int] = RecordType.X86_MSR_POLICY
    LAYOUT = Layout("X86_MSR_POLICY", tail=(Array("entries", MSR_ENTRY),))


@dataclass(frozen=True)
class LibxcStream:
    """A whole stand-alone libxc stream (or the libxc part of a libxl stream)."""

    image_header: ImageHeader
    domain_header: DomainHeader
    records: tuple[Record, ...] = field(default_factory=tuple)

    @property
    def endian(self) -> Endian:
        return self.image_header.endian


record_name = partial(framing.type_name, RecordType)

#: Records introduced in version 3 ("v3 compat with v2").
V3_ONLY = frozenset({RecordType.STATIC_DATA_END, RecordType.X86_CPUID_POLICY, RecordType.X86_MSR_POLICY})
PV_ONLY = frozenset({RecordType.X86_PV_INFO, RecordType.X86_PV_P2M_FRAMES, RecordType.X86_PV_VCPU_BASIC,
                     RecordType.X86_PV_VCPU_EXTENDED, RecordType.X86_PV_VCPU_XSAVE,
                     RecordType.X86_PV_VCPU_MSRS, RecordType.SHARED_INFO})
HVM_ONLY = frozenset({RecordType.HVM_CONTEXT, RecordType.HVM_PARAMS})
VCPU_RECORDS = frozenset({RecordType.X86_PV_VCPU_BASIC, RecordType.X86_PV_VCPU_EXTENDED,
                          RecordType.X86_PV_VCPU_XSAVE, RecordType.X86_PV_VCPU_MSRS})
#: Static configuration records, listed before STATIC_DATA_END in "Layout".
STATIC_RECORDS = frozenset({RecordType.X86_PV_INFO, RecordType.X86_CPUID_POLICY, RecordType.X86_MSR_POLICY})
#: Memory and register content, which v3 requires to follow STATIC_DATA_END.
CONTENT_RECORDS = frozenset({RecordType.PAGE_DATA, RecordType.X86_PV_P2M_FRAMES, RecordType.SHARED_INFO,
                             RecordType.X86_TSC_INFO, RecordType.HVM_CONTEXT, RecordType.HVM_PARAMS}
                            | VCPU_RECORDS)


# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER


_rule = definer("libxc")


STREAM_TRUNCATED = _rule("libxc.stream.truncated", R, "Records",
                         "the stream does not end inside a header, record header, body or padding")
END_MISSING = _rule("libxc.stream.end_missing", R, "END",
                    "the records section is terminated by an END record")
TRAILING_DATA = _rule("libxc.stream.trailing_data", W, "END",
                      "END is the final record: nothing follows it in a stand-alone libxc stream")
MARKER_RULE = _rule("libxc.image_header.marker", R, "Image Header",
                    "marker is 0xFFFFFFFFFFFFFFFF (a legacy image has zero bits in its first 8 octets)")
ID_RULE = _rule("libxc.image_header.id", R, "Image Header", "id is 0x58454E46 (\"XENF\")")
VERSION_RULE = _rule("libxc.image_header.version", R, "Image Header",
                     "version is 2 or 3 (tools restore version V and V-1; V is 3)")
OPTIONS_RESERVED = _rule("libxc.image_header.options_reserved", W, "Image Header",
                         "options bits 1-15 are reserved: zero on save, ignored on restore")
IMAGE_RESERVED = _rule("libxc.image_header.reserved", W, "Image Header",
                       "the 48-bit reserved field is zero on save, ignored on restore")
ENDIAN_X86 = _rule("libxc.image_header.endianness_x86", E, "Image Header",
                   "x86 hosts write little-endian images; the spec defines big-endian images but "
                   "does not say whether a reader must accept one for an x86 guest")
DOMAIN_TYPE = _rule("libxc.domain_header.type", R, "Domain Header",
                    "type is 0x0001 (x86 PV) or 0x0002 (x86 HVM); other values are reserved")
DOMAIN_RESERVED = _rule("libxc.domain_header.reserved", W, "Domain Header",
                        "the reserved field is zero on save, ignored on restore")
PAGE_SHIFT = _rule("libxc.domain_header.page_shift", E, "Domain Header",
                   "x86 guests have 4 KiB pages (page_shift 12); the spec does not forbid another value")
PADDING = _rule("libxc.record.padding", W, "Records",
                "record padding is zero on save, ignored on restore")
UNKNOWN_MANDATORY = _rule("libxc.record.unknown_mandatory", R, "Records",
                          "a record type without bit 31 that the reader does not know fails the restore")
RECORD_VERSION = _rule("libxc.record.version", R, "v3 compat with v2",
                       "STATIC_DATA_END, X86_CPUID_POLICY and X86_MSR_POLICY appear only in version 3 streams")
GUEST_TYPE = _rule("libxc.record.guest_type", R, "Layout",
                   "X86_PV_* and SHARED_INFO records appear only for x86 PV guests, HVM_CONTEXT and "
                   "HVM_PARAMS only for x86 HVM guests")
EMPTY_CONTENT = _rule("libxc.record.empty_content", W, "Errata",
                      "data records with no content are elided by the writer; a reader tolerates and "
                      "ignores them")
END_LENGTH = _rule("libxc.end.length", R, "END", "END has body_length 0")
PD_SHORT = _rule("libxc.page_data.length_short", R, "PAGE_DATA",
                 "the body holds the count/reserved header and count pfn entries")
PD_COUNT = _rule("libxc.page_data.count_nonzero", R, "PAGE_DATA", "count is strictly greater than 0")
PD_RESERVED = _rule("libxc.page_data.reserved", W, "PAGE_DATA",
                    "the reserved field after count is zero on save, ignored on restore")
PD_PFN_RESERVED = _rule("libxc.page_data.pfn_reserved", W, "PAGE_DATA",
                        "pfn bits 59-52 are reserved: zero on save, ignored on restore")
PD_PAGE_TYPE = _rule("libxc.page_data.page_type", R, "PAGE_DATA",
                     "page types 0x5-0x8 are reserved; restoring an unrecognised page type fails")
PD_PAGE_COUNT = _rule("libxc.page_data.page_count", R, "PAGE_DATA",
                      "the body holds page_size octets for each pfn whose type carries data "
                      "(all but BROKEN, XALLOC, XTAB), and nothing more")
PVI_LENGTH = _rule("libxc.x86_pv_info.length", R, "X86_PV_INFO", "X86_PV_INFO has an 8-octet body")
PVI_WIDTH = _rule("libxc.x86_pv_info.guest_width", R, "X86_PV_INFO", "guest_width is 4 or 8")
PVI_LEVELS = _rule("libxc.x86_pv_info.pt_levels", R, "X86_PV_INFO", "pt_levels is 3 or 4")
PVI_RESERVED = _rule("libxc.x86_pv_info.reserved", W, "X86_PV_INFO",
                     "the reserved field is zero on save, ignored on restore")
P2M_LENGTH = _rule("libxc.x86_pv_p2m_frames.length", R, "X86_PV_P2M_FRAMES",
                   "the body is the 8-octet start/end header followed by whole 64-bit p2m_pfn entries")
P2M_RANGE = _rule("libxc.x86_pv_p2m_frames.range", R, "X86_PV_P2M_FRAMES",
                  "p2m_end_pfn is not below p2m_start_pfn (the range S to E is inclusive)")
P2M_FRAME_COUNT = _rule("libxc.x86_pv_p2m_frames.frame_count", R, "X86_PV_P2M_FRAMES",
                        "there is one p2m_pfn for each p2m frame containing pfns S to E "
                        "(page_size / guest_width entries per frame)")
VCPU_LENGTH = _rule("libxc.x86_pv_vcpu.length", R, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                    "the body holds at least the vcpu_id/reserved header")
VCPU_RESERVED = _rule("libxc.x86_pv_vcpu.reserved", W, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                      "the reserved field is zero on save, ignored on restore")
SHINFO_LENGTH = _rule("libxc.shared_info.length", R, "SHARED_INFO",
                      "SHARED_INFO holds the shared info page: exactly one page")
TSC_LENGTH = _rule("libxc.x86_tsc_info.length", R, "X86_TSC_INFO", "X86_TSC_INFO has a 24-octet body")
TSC_RESERVED = _rule("libxc.x86_tsc_info.reserved", W, "X86_TSC_INFO",
                     "the reserved field is zero on save, ignored on restore")
HVMP_LENGTH = _rule("libxc.hvm_params.length", R, "HVM_PARAMS",
                    "the body is the count/reserved header followed by exactly count index/value pairs")
HVMP_RESERVED = _rule("libxc.hvm_params.reserved", W, "HVM_PARAMS",
                      "the reserved field is zero on save, ignored on restore")
TOOLSTACK_DEPRECATED = _rule("libxc.toolstack.deprecated", E, "TOOLSTACK (deprecated)",
                             "TOOLSTACK was transitional and should not be used; the spec does not say "
                             "whether a reader must still accept it")
VERIFY_LENGTH = _rule("libxc.verify.length", R, "VERIFY", "VERIFY has body_length 0")
CHECKPOINT_LENGTH = _rule("libxc.checkpoint.length", R, "CHECKPOINT", "CHECKPOINT has body_length 0")
DIRTY_LENGTH = _rule("libxc.checkpoint_dirty_pfn_list.length", R, "CHECKPOINT_DIRTY_PFN_LIST",
                     "the body is a whole number of 64-bit pfns")
DIRTY_DIRECTION = _rule("libxc.checkpoint_dirty_pfn_list.direction", E, "CHECKPOINT_DIRTY_PFN_LIST",
                        "the record belongs to the COLO back channel (secondary to primary); the spec "
                        "does not say what a reader of a saved image does with one")
SDE_LENGTH = _rule("libxc.static_data_end.length", R, "STATIC_DATA_END", "STATIC_DATA_END has body_length 0")
SDE_MISSING = _rule("libxc.static_data_end.missing", R, "v3 compat with v2",
                    "a version 3 stream has STATIC_DATA_END ahead of any memory or register content "
                    "and before END")
SDE_REPEATED = _rule("libxc.static_data_end.repeated", R, "STATIC_DATA_END",
                     "STATIC_DATA_END marks the end of the static state once")
STATIC_AFTER_END = _rule("libxc.static_data_end.static_after_end", E, "Layout",
                         "static data records (X86_PV_INFO, X86_CPUID_POLICY, X86_MSR_POLICY) are laid out "
                         "before STATIC_DATA_END; the spec does not forbid one after it")
CPUID_LENGTH = _rule("libxc.x86_cpuid_policy.length", R, "X86_CPUID_POLICY",
                     "the body is a whole number of 24-octet xen_cpuid_leaf_t entries")
MSR_LENGTH = _rule("libxc.x86_msr_policy.length", R, "X86_MSR_POLICY",
                   "the body is a whole number of 16-octet xen_msr_entry_t entries")
PV_INFO_FIRST = _rule("libxc.pv.info_before_p2m_frames", R, "x86 PV Guest",
                      "X86_PV_INFO precedes X86_PV_P2M_FRAMES")
PV_P2M_FIRST = _rule("libxc.pv.p2m_frames_before_page_data", R, "x86 PV Guest",
                     "X86_PV_P2M_FRAMES precedes the PAGE_DATA records")
PV_PAGES_FIRST = _rule("libxc.pv.page_data_before_vcpu", R, "x86 PV Guest",
                       "PAGE_DATA records precede the VCPU records")
PV_REQUIRED = _rule("libxc.pv.required_record", R, "x86 PV Guest",
                    "an x86 PV stream has X86_PV_INFO, X86_PV_P2M_FRAMES, PAGE_DATA and VCPU records "
                    "before END")
HVM_PARAMS_FIRST = _rule("libxc.hvm.params_before_context", W, "x86 HVM Guest",
                         "HVM_PARAMS precedes HVM_CONTEXT (binds the writer: Xen's own writers send HVM_CONTEXT "
                         "first, and Xen's restore holds the context back until the stream is complete)")
CHECKPOINT_EOF = _rule("libxc.stream.ends_after_checkpoint", E, "CHECKPOINT",
                       "a checkpointed stream stops after a CHECKPOINT without END (Xen's checkpointed writers "
                       "never write END; the receiver restores the last checkpoint); the spec does not say "
                       "whether a stream may end there")

# Checks Xen's C reader (libxenguest) makes and the spec does not: checked only under a
# reader profile (xenstream.reference.readers), where they are refused.
VERSION_3_OLD = _rule("libxc.image_header.version_3", E, "Image Header",
                      "a version 3 image; the spec lets tools restore V and V-1 and does not say since "
                      "which release; Xen before 4.14 restores version 2 only")
LENGTH_MAX = _rule("libxc.record.length_max", E, "Records",
                   "body_length is at most Xen's REC_LENGTH_MAX (8 MiB in 4.6-4.9, 128 MiB since 4.10); the "
                   "spec does not set a limit")
CHECKPOINT_PLAIN = _rule("libxc.checkpoint.plain_stream", E, "CHECKPOINT",
                         "a CHECKPOINT in a stream restored as a plain (not checkpointed) stream; the spec does "
                         "not say whether such a reader skips it or fails")
PVI_COMBINATION = _rule("libxc.x86_pv_info.combination", E, "X86_PV_INFO",
                        "guest_width 4 goes with pt_levels 3 and guest_width 8 with pt_levels 4; the spec does "
                        "not tie the two fields together")
PVI_REPEATED = _rule("libxc.x86_pv_info.repeated", E, "X86_PV_INFO",
                     "a stream has one X86_PV_INFO; the spec does not say how many")
PV_INFO_BEFORE_SHINFO = _rule("libxc.pv.info_before_shared_info", E, "x86 PV Guest",
                              "X86_PV_INFO precedes SHARED_INFO (the page's layout depends on the guest width); "
                              "the spec does not order SHARED_INFO (only X86_PV_INFO, P2M_FRAMES, PAGE_DATA, VCPU)")
PV_VCPU0 = _rule("libxc.pv.vcpu0_basic", E, "x86 PV Guest",
                 "an x86 PV stream has X86_PV_VCPU_BASIC for vcpu 0; the spec asks for the records of each "
                 "online vcpu and does not name one")
VCPU_BASIC_SIZE = _rule("libxc.x86_pv_vcpu_basic.context_size", E, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                        "the context is one vcpu_guest_context of the guest's width (5168 octets for a 64-bit "
                        "guest, 2800 for a 32-bit one); the spec does not define the blob")
VCPU_EXT_SIZE = _rule("libxc.x86_pv_vcpu_extended.context_size", E, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                      "the context is at most 128 octets (a xen_domctl_ext_vcpucontext); the spec does not "
                      "define the blob")
VCPU_XSAVE_SIZE = _rule("libxc.x86_pv_vcpu_xsave.context_size", E, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                        "the context holds at least the 16-octet xcr0/xcr0_accum header of "
                        "XEN_DOMCTL_getvcpuextstate; the spec does not define the blob")
VCPU_MSRS_SIZE = _rule("libxc.x86_pv_vcpu_msrs.context_size", E, "X86_PV_VCPU_BASIC, EXTENDED, XSAVE, MSRS",
                       "the context is a whole number of 16-octet xen_domctl_vcpu_msr_t; the spec does not "
                       "define the blob")
VCPU_EMPTY = _rule("libxc.x86_pv_vcpu.empty_context", E, "Errata",
                   "a VCPU record with no context; the Errata ask readers to tolerate it, Xen 4.6-4.8 refuse it")
CPUID_EMPTY = _rule("libxc.x86_cpuid_policy.empty", E, "X86_CPUID_POLICY",
                    "an X86_CPUID_POLICY with no leaves; the Errata ask readers to tolerate empty records, Xen "
                    "since 4.14 refuses this one")
MSR_EMPTY = _rule("libxc.x86_msr_policy.empty", E, "X86_MSR_POLICY",
                  "an X86_MSR_POLICY with no entries; the Errata ask readers to tolerate empty records, Xen "
                  "since 4.14 refuses this one")
HVM_CONTEXT_EMPTY = _rule("libxc.hvm_context.empty", E, "Errata",
                          "an HVM_CONTEXT with no content; the Errata ask readers to tolerate empty records, "
                          "Xen since 4.14 refuses this one")
HVM_CONTEXT_MISSING = _rule("libxc.hvm.context_missing", E, "x86 HVM Guest",
                            "an x86 HVM stream carries HVM_CONTEXT; the spec lists it in a typical stream "
                            "and does not require it")
def record_length_max(reader) -> int:
    """libxenguest's REC_LENGTH_MAX (xg_sr_stream_format.h): 8 MiB until 4.9, then 128 MiB."""
    return 8 * MIB if reader.release <= (4, 9) else 128 * MIB


#: sizeof(vcpu_guest_context) of a 32-bit and a 64-bit x86 PV guest (public/arch-x86/xen-x86_{32,64}.h)
VCPU_CONTEXT_SIZE = {4: 2800, 8: 5168}
MIB = 1 << 20

# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def encode_headers(image: ImageHeader, domain: DomainHeader) -> bytes:
    return image.encode() + domain.encode(image.endian)


def encode_records(records, endian: Endian) -> bytes:
    return b"".join(encode_record(r.type, r.encode_body(endian), endian) for r in records)


def encode(stream: LibxcStream) -> bytes:
    return encode_headers(stream.image_header, stream.domain_header) + encode_records(stream.records, stream.endian)


# --------------------------------------------------------------------------
# Ordering: (records, must follow, rule) as data, checked by LibxcReader._stream_rules
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """A record of ``records`` read while none of ``after`` has been read breaks ``rule``
    (``after_all=False``: while one of ``before`` has been read, the record comes too late).

    ``guest`` and ``min_version`` say which streams the entry is about; ``first_only``
    reports only the first record of ``records`` (the rest are late for the same reason).
    """

    records: frozenset
    rule: str
    message: str            # "{name}": the record's name
    after: frozenset = frozenset()
    not_after: frozenset = frozenset()
    guest: int | None = None
    min_version: int = 2
    first_only: bool = False


RT = RecordType
ORDER: tuple[Order, ...] = (
    Order(CONTENT_RECORDS, SDE_MISSING, "{name} before STATIC_DATA_END", after=frozenset({RT.STATIC_DATA_END}),
          min_version=3, first_only=True),
    Order(STATIC_RECORDS, STATIC_AFTER_END, "{name} after STATIC_DATA_END",
          not_after=frozenset({RT.STATIC_DATA_END}), min_version=3),
    Order(frozenset({RT.X86_PV_P2M_FRAMES}), PV_INFO_FIRST, "{name} before X86_PV_INFO",
          after=frozenset({RT.X86_PV_INFO}), guest=DomainType.X86_PV),
    Order(frozenset({RT.PAGE_DATA}), PV_P2M_FIRST, "{name} before X86_PV_P2M_FRAMES",
          after=frozenset({RT.X86_PV_P2M_FRAMES}), guest=DomainType.X86_PV, first_only=True),
    Order(VCPU_RECORDS, PV_PAGES_FIRST, "{name} before any PAGE_DATA", after=frozenset({RT.PAGE_DATA}),
          guest=DomainType.X86_PV, first_only=True),
    Order(frozenset({RT.HVM_CONTEXT}), HVM_PARAMS_FIRST, "{name} before HVM_PARAMS",
          after=frozenset({RT.HVM_PARAMS}), guest=DomainType.X86_HVM),
)
#: What an x86 PV stream holds before END ("x86 PV Guest"): (name in the message, record types).
PV_REQUIRED_RECORDS = (("X86_PV_INFO", frozenset({RT.X86_PV_INFO})),
                       ("X86_PV_P2M_FRAMES", frozenset({RT.X86_PV_P2M_FRAMES})),
                       ("PAGE_DATA", frozenset({RT.PAGE_DATA})), ("VCPU records", VCPU_RECORDS))


# --------------------------------------------------------------------------
# Reading: one parser per record type, validating and optionally collecting
# --------------------------------------------------------------------------

_ARRAY_CHUNK = 8192  # entries per piece when streaming an array
#: record header and PAGE_DATA's fixed part together, for the validation fast path
_PD_HEAD = RECORD_HEADER + PageData.LAYOUT
#: "nQ" structs by byte order and n (keyed by the order's value: an Enum's hash is slow Python code)
_Q_STRUCTS: dict[str, dict[int, struct.Struct]] = {e.value: {} for e in Endian}
_PFNS = PageData.LAYOUT.tail[0]


def _q_array(endian: Endian, n: int) -> struct.Struct:
    cache = _Q_STRUCTS[endian.value]
    s = cache.get(n)
    if s is None:
        s = cache[n] = _PFNS.entries(endian, n)
    return s


class _StreamState:
    """What the stream-level rules need to remember; small and bounded."""

    __slots__ = ("seen", "static_end", "pv_info", "vcpu0_basic")

    def __init__(self):
        self.seen: set[int] = set()
        self.static_end = False
        self.pv_info: X86PvInfo | None = None
        self.vcpu0_basic = False


class LibxcReader(BodyReader):
    """Reads (and validates) a libxc stream from a :class:`Source`.

    :meth:`items` yields an :class:`~.framing.Item` for each header and each
    record up to END; with ``stop_at_checkpoint`` :meth:`records` also stops
    after a CHECKPOINT and a second call resumes (libxl's checkpointed
    streams).  An item's value is the typed header or record when
    ``collect`` is set (None otherwise, or when the record cannot be
    decoded); when not collecting, the PAGE_DATA records the fast path passes
    over are not yielded (``counts`` counts every record).
    """

    LAYER = LAYER
    TRAILING_DATA = TRAILING_DATA
    record_name = staticmethod(record_name)

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False,
                 stop_at_checkpoint: bool = False):
        self.src = src
        self.checker = checker
        self.collect = collect
        self.stop_at_checkpoint = stop_at_checkpoint
        self.image_header: ImageHeader | None = None
        self.domain_header: DomainHeader | None = None
        self.index = 0
        self.ended = False
        self.counts: dict[int, int] = {}
        self.state = _StreamState()
        self.endian = Endian.LITTLE
        self.page_size = 1 << X86_PAGE_SHIFT
        self.version = 3
        self.guest = DomainType.X86_HVM
        self._hdr_struct = RECORD_HEADER.le
        self._pd_struct = PageData.LAYOUT.le
        self._q_structs = _Q_STRUCTS[Endian.LITTLE.value]
        self._pd_head_struct = _PD_HEAD.le
        #: record types whose stream-level rules passed and cannot change verdict until the
        #: stream state changes (see _stream_rules)
        self._quiet: set[int] = set()
        #: the type of the last record read (a stream may stop after a CHECKPOINT)
        self.last_type: int | None = None
        #: the reader profile's checks (empty without one) and its record length cap
        self._reader = checker.reader_rules
        self._cap = record_length_max(checker.reader) if LENGTH_MAX in self._reader else 1 << 32

    # -- truncation --------------------------------------------------------
    def _truncated(self, t: Truncated):
        self.checker.fail(STREAM_TRUNCATED, t.end, t.describe())

    # -- items -------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        """The headers, then the records (see the class docstring)."""
        yield from self.headers()
        yield from self.records()

    def headers(self) -> Iterator[Item]:
        offset = self.src.offset
        self.read_headers()
        yield make_item((offset, "image header", self.image_header))
        yield make_item((offset + IMAGE_HEADER.size, "domain header", self.domain_header))

    def read_headers(self) -> None:
        src, ck = self.src, self.checker
        try:
            ck.at(LAYER, None, "image header")
            base = image_base = src.offset
            image = ImageHeader(**ImageHeader.decode_fixed(Endian.BIG, src.read_exact(IMAGE_HEADER.size,
                                                                                      "image header")))
            if image.marker != MARKER:
                ck.fail(MARKER_RULE, base, f"marker is 0x{image.marker:016x}, not 0x{MARKER:016x}; zero bits "
                        "in the first 8 octets mean a legacy image (see 'Legacy Images')")
            if image.id != IDENT:
                ck.fail(ID_RULE, IMAGE_HEADER.at(base, "id"), f"id is 0x{image.id:08x}, not 0x{IDENT:08x} (\"XENF\")")
            version = image.version
            if version not in VERSIONS:
                ck.fail(VERSION_RULE, IMAGE_HEADER.at(base, "version"), f"version {version} is not 2 or 3")
            if version == 3 and VERSION_3_OLD in self._reader:
                ck.report(VERSION_3_OLD, IMAGE_HEADER.at(base, "version"),
                          "version 3 image; this reader restores version 2 only")
            if image.options & OPTIONS_RESERVED_MASK:
                ck.report(OPTIONS_RESERVED, IMAGE_HEADER.at(base, "options"),
                          f"reserved options bits set: 0x{image.options & OPTIONS_RESERVED_MASK:04x}")
            if image.reserved:
                ck.report(IMAGE_RESERVED, IMAGE_HEADER.at(base, "reserved"),
                          f"reserved field is 0x{image.reserved:012x}")
            self.image_header = image
            self.endian = image.endian
            self._hdr_struct = RECORD_HEADER.of(self.endian)
            self._pd_struct = PageData.LAYOUT.of(self.endian)
            self._q_structs = _Q_STRUCTS[self.endian.value]
            self._pd_head_struct = _PD_HEAD.of(self.endian)
            self.version = version

            ck.at(LAYER, None, "domain header")
            base = src.offset
            domain = DomainHeader(**DomainHeader.decode_fixed(self.endian, src.read_exact(DOMAIN_HEADER.size,
                                                                                          "domain header")))
            if domain.type not in (DomainType.X86_PV, DomainType.X86_HVM):
                ck.fail(DOMAIN_TYPE, base, f"domain type 0x{domain.type:08x} is reserved")
            if self.endian is Endian.BIG:
                ck.report(ENDIAN_X86, IMAGE_HEADER.at(image_base, "options"), "big-endian image of an x86 guest")
            if domain.reserved:
                ck.report(DOMAIN_RESERVED, DOMAIN_HEADER.at(base, "reserved"),
                          f"reserved field is 0x{domain.reserved:04x}")
            if domain.page_shift != X86_PAGE_SHIFT:
                ck.report(PAGE_SHIFT, DOMAIN_HEADER.at(base, "page_shift"),
                          f"page_shift is {domain.page_shift}, not 12, for an x86 guest")
            self.domain_header = domain
            self.page_size = 1 << min(domain.page_shift, 64)
            self.guest = DomainType(domain.type)
            ck.note(f"libxc image header: version {version}, {self.endian.value}-endian")
            ck.note(f"libxc domain header: {self.guest.name}, page_shift {domain.page_shift}, "
                    + ("converted from a legacy stream" if domain.xen_major == 0
                       else f"Xen {domain.xen_major}.{domain.xen_minor}"))
        except Truncated as t:
            self._truncated(t)

    # -- records ---------------------------------------------------------------
    def read_one(self) -> tuple[int, RecordHeader, Record | None]:
        """Read, check and (when collecting) decode the next record.

        The hot path of a validation run (once per record): the location is
        set once the header is read, and the stream-level rules are skipped
        for a record type they have already passed in the same state.
        """
        src, ck, index = self.src, self.checker, self.index
        offset = src.offset
        try:
            rtype, length = src.unpack(self._hdr_struct, "record header")
        except Truncated as t:
            ck.at(LAYER, index, "record header")
            if not t.got:
                if self.last_type == RecordType.CHECKPOINT:
                    return self._ends_at_checkpoint(offset)
                ck.fail(END_MISSING, offset, "input ends without an END record")
            self._truncated(t)
        h = make_header((rtype, length, offset))
        ck.at(LAYER, index, _NAMES.get(rtype) or record_name(rtype))
        if length > self._cap:
            self._length_cap(h)
        counts = self.counts
        counts[rtype] = counts.get(rtype, 0) + 1
        try:
            parser = _PARSERS.get(rtype)
            if parser is None:
                value = self._unknown(h)
            else:
                if rtype not in self._quiet:
                    self._stream_rules(h)
                value = parser(self, h)
            if length & 7:
                check_padding(src, h, ck, PADDING)
        except Truncated as t:
            self._truncated(t)
        self.index = index + 1
        self.last_type = rtype
        if rtype == RecordType.END:
            self._end_rules(h)
            self.ended = True
        return rtype, h, value

    def _ends_at_checkpoint(self, offset: int) -> tuple[int, RecordHeader, None]:
        """The input stops right after a CHECKPOINT: a checkpointed stream whose sender stopped."""
        self.checker.report(CHECKPOINT_EOF, offset, "the stream ends after a CHECKPOINT record, without END")
        h = make_header((RecordType.END, 0, offset))
        self._end_rules(h)
        self.ended = True
        return RecordType.END, h, None

    def _length_cap(self, h: RecordHeader) -> None:
        self.checker.report(LENGTH_MAX, h.length_offset, f"body_length {h.body_length} exceeds "
                            f"{self._cap // MIB} MiB (REC_LENGTH_MAX)")

    def records(self) -> Iterator[Item]:
        """Records until END (or after a CHECKPOINT when stopping there: call again to resume)."""
        read_one = self.read_one
        run = self._page_data_run if not self.collect and fastpath.ENABLED else None
        while True:
            if run is not None:
                run()
            rtype, h, value = read_one()
            yield make_item((h.offset, h, value))
            if rtype == RecordType.END:
                return
            if rtype == RecordType.CHECKPOINT and self.stop_at_checkpoint:
                return

    def _page_data_run(self) -> None:
        """Validation fast path: pass over buffered PAGE_DATA records that obey every rule.

        A record is taken here only when all of it (header, body, padding) has
        already arrived and the predicates the rules use hold for it: the
        stream-level rules passed for its type (PAGE_DATA is in ``_quiet``),
        :func:`_pd_fixed_ok` (count and reserved, at most one array piece of
        pfns), :func:`_pfns_plain` (no type or reserved bits: every pfn is
        NOTAB and carries a page), body_length exactly :func:`page_data_length`
        with every pfn carrying a page, so no padding, and within the reader
        profile's record length cap.  Anything else, and every record that is
        not PAGE_DATA, stops the run and goes through :meth:`read_one`, which
        checks it and reports what it breaks; so this path can only skip work,
        never a finding.  Page contents are passed over in the buffer, never copied.
        """
        if RecordType.PAGE_DATA not in self._quiet:
            return
        buf, pos = self.src.window()
        end = len(buf)
        head = self._pd_head_struct
        page_size, qs, cap = self.page_size, self._q_structs, self._cap
        # _pd_fixed_ok, page_data_length, padding_length and _pfns_plain, inlined: a call per
        # record costs a quarter of the run (tests/test_fastpath.py holds them equal)
        step, hdr, fixed, chunk, plain = _PD_HEAD.size, RECORD_HEADER.size, PageData.LAYOUT.size, _ARRAY_CHUNK, PFN_MASK
        per_pfn, page_data = 8 + page_size, RecordType.PAGE_DATA
        n = 0
        while pos + step <= end:
            rtype, length, count, reserved = head.unpack_from(buf, pos)
            if rtype != page_data or reserved or not 0 < count <= chunk or length != fixed + count * per_pfn \
                    or length & 7 or pos + hdr + length > end or length > cap:
                break
            q = qs.get(count) or _q_array(self.endian, count)
            if max(q.unpack_from(buf, pos + step)) > plain:
                break
            pos += hdr + length
            n += 1
        if n:
            self.src.consume_to(pos)
            self.index += n
            self.last_type = RecordType.PAGE_DATA
            self.counts[RecordType.PAGE_DATA] = self.counts.get(RecordType.PAGE_DATA, 0) + n

    # -- helpers for parsers -------------------------------------------------
    def fixed(self, h: RecordHeader, cls, rule: str):
        """A record whose body is its layout's fixed part: the typed value; ``rule`` reported and
        the body skipped (None) when the length is wrong."""
        size = cls.LAYOUT.size
        if h.body_length != size:
            self.checker.report(rule, h.length_offset, f"body_length is {h.body_length}, expected {size}")
            self.skip_body(h)
            return None
        return cls.from_fixed(self.endian, self.src.read_exact(size, f"{cls.LAYOUT.name} body"))

    def entries(self, layout: Layout, count: int, what: str):
        """Yield ``count`` fixed-size entries, read a bounded piece at a time."""
        s, left = layout.of(self.endian), count
        while left:
            n = min(left, _ARRAY_CHUNK)
            yield from s.iter_unpack(self.src.read_exact(n * layout.size, what))
            left -= n

    def q_array(self, count: int, what: str):
        """Yield ``count`` 64-bit entries in pieces (tuples), never holding more than a piece."""
        left = count
        while left:
            n = min(left, _ARRAY_CHUNK)
            yield _q_array(self.endian, n).unpack(self.src.read_exact(8 * n, what))
            left -= n

    # -- stream-level rules ------------------------------------------------------
    def _stream_rules(self, h: RecordHeader) -> None:
        """Version, guest type and ordering (:data:`ORDER`) rules for one record.

        Their verdict depends only on the record type and the stream state
        (the types seen so far); a type that passed them with nothing to
        report, its type already seen, goes into ``_quiet`` and is not checked
        again until the state changes (``_state_changed``).
        """
        rtype, ck, st = h.type, self.checker, self.state
        seen = st.seen
        seen_before, total = len(seen), ck.total
        if rtype in V3_ONLY and self.version < 3:
            ck.report(RECORD_VERSION, h.offset, f"{_NAMES[rtype]} in a version {self.version} stream")
        if self.guest is DomainType.X86_HVM and rtype in PV_ONLY:
            ck.report(GUEST_TYPE, h.offset, f"{_NAMES[rtype]} in an x86 HVM stream")
        elif self.guest is DomainType.X86_PV and rtype in HVM_ONLY:
            ck.report(GUEST_TYPE, h.offset, f"{_NAMES[rtype]} in an x86 PV stream")
        for order in ORDER:
            if rtype not in order.records or self.version < order.min_version \
                    or (order.guest is not None and order.guest != self.guest):
                continue
            if order.first_only and order.records & seen:
                continue
            if (order.after and not order.after & seen) or order.not_after & seen:
                ck.report(order.rule, h.offset, order.message.format(name=_NAMES[rtype]))
        seen.add(rtype)
        if len(seen) != seen_before:
            self._quiet.clear()
        elif ck.total == total:
            self._quiet.add(rtype)

    def _state_changed(self) -> None:
        """The stream state changed outside _stream_rules: forget what passed."""
        self._quiet.clear()

    def _end_rules(self, h: RecordHeader) -> None:
        st, ck = self.state, self.checker
        if self._reader:
            if self.guest is DomainType.X86_PV and not st.vcpu0_basic and PV_VCPU0 in self._reader:
                ck.report(PV_VCPU0, h.offset, "END of an x86 PV stream without X86_PV_VCPU_BASIC for vcpu 0")
            if self.guest is DomainType.X86_HVM and not self.counts.get(RecordType.HVM_CONTEXT) \
                    and HVM_CONTEXT_MISSING in self._reader:
                ck.report(HVM_CONTEXT_MISSING, h.offset, "END of an x86 HVM stream without HVM_CONTEXT")
        if self.version >= 3 and not st.static_end and not CONTENT_RECORDS & st.seen:
            # a content record before STATIC_DATA_END was reported (ORDER) already
            ck.report(SDE_MISSING, h.offset, "END of a version 3 stream without STATIC_DATA_END")
        if self.guest is DomainType.X86_PV:
            missing = [name for name, types in PV_REQUIRED_RECORDS if not types & st.seen]
            if missing:
                ck.report(PV_REQUIRED, h.offset, f"END of an x86 PV stream without {', '.join(missing)}")

    def _unknown(self, h: RecordHeader) -> Record | None:
        if not h.type & OPTIONAL_BIT:
            self.checker.report(UNKNOWN_MANDATORY, h.offset,
                                f"unknown mandatory record type 0x{h.type:08x}")
        else:
            self.checker.note(f"  optional record 0x{h.type:08x} ignored ({h.body_length} octets)")
        return RawRecord(h.type, self.blob(h), LAYER)


# Parsers -----------------------------------------------------------------------


def _parse_empty(cls, rule: str):
    def parse(r: LibxcReader, h: RecordHeader):
        r.empty(h, rule)
        return cls()
    return parse


def _parse_checkpoint(r: LibxcReader, h: RecordHeader):
    if CHECKPOINT_PLAIN in r._reader:
        r.checker.report(CHECKPOINT_PLAIN, h.offset, "CHECKPOINT in a plain restore")
    r.empty(h, CHECKPOINT_LENGTH)
    return Checkpoint()


def _parse_static_data_end(r: LibxcReader, h: RecordHeader):
    if r.state.static_end:
        r.checker.report(SDE_REPEATED, h.offset, "second STATIC_DATA_END")
    else:
        r.state.static_end = True
        r._state_changed()
    r.empty(h, SDE_LENGTH)
    return StaticDataEnd()


def _pd_fixed_ok(count: int, reserved: int) -> bool:
    """PAGE_DATA's count and reserved break no rule (PD_COUNT, PD_RESERVED), and the pfns are
    one array piece (the fast path's own limit)."""
    return 0 < count <= _ARRAY_CHUNK and not reserved


def _pfns_plain(pfns) -> bool:
    """No pfn entry has a type or reserved bit set: every one is NOTAB (carries a page) and
    breaks neither PD_PFN_RESERVED nor PD_PAGE_TYPE; else the entries need a closer look."""
    return not pfns or max(pfns) <= PFN_MASK


def _parse_page_data(r: LibxcReader, h: RecordHeader):
    ck, length, src = r.checker, h.body_length, r.src
    fixed = PageData.LAYOUT.size
    if length < fixed:
        ck.report(PD_SHORT, h.length_offset, f"body_length {length} is too short for the count header")
        r.skip_body(h)
        return None
    count, reserved = src.unpack(r._pd_struct, "PAGE_DATA header")
    if count == 0:
        ck.report(PD_COUNT, PageData.at(h, "count"), "count is 0")
    if reserved:
        ck.report(PD_RESERVED, PageData.at(h, "reserved"), f"reserved field is 0x{reserved:08x}")
    consumed = fixed + 8 * count
    if consumed > length:
        ck.report(PD_SHORT, h.length_offset,
                  f"body_length {length} cannot hold {count} pfn entries ({consumed} octets)")
        r.skip_body(h, fixed)
        return None
    present = 0
    collected: list[int] = []
    index = 0
    bad_reserved = bad_type = None
    if not count:
        pieces = ()
    elif count <= _ARRAY_CHUNK:  # one piece: no generator
        q = r._q_structs.get(count) or _q_array(r.endian, count)
        pieces = (src.unpack(q, "PAGE_DATA pfn array"),)
    else:
        pieces = r.q_array(count, "PAGE_DATA pfn array")
    for piece in pieces:
        if r.collect:
            collected.extend(piece)
        if not _pfns_plain(piece):  # some type or reserved bits set: look closer
            for i, p in enumerate(piece, index):
                t = page_type_of(p)
                if bad_reserved is None and p & PFN_RESERVED_MASK:
                    bad_reserved = (i, p)
                if t in RESERVED_PAGE_TYPES:
                    if bad_type is None:
                        bad_type = (i, p)
                elif HAS_DATA[t]:
                    present += 1
        else:
            present += len(piece)
        index += len(piece)
    if bad_reserved is not None:
        i, p = bad_reserved
        ck.report(PD_PFN_RESERVED, PageData.at(h, "pfns", i),
                  f"pfn[{i}] = 0x{p:016x} has reserved bits 0x{p & PFN_RESERVED_MASK:016x}")
    if bad_type is not None:
        i, p = bad_type
        ck.report(PD_PAGE_TYPE, PageData.at(h, "pfns", i),
                  f"pfn[{i}] = 0x{p:016x} has reserved page type 0x{page_type_of(p):x}")
    expected = page_data_length(count, present, r.page_size)
    if length != expected:
        ck.report(PD_PAGE_COUNT, h.body_offset + consumed,
                  f"{present} of {count} pfns carry data: expected body_length {expected}, got {length}")
        r.skip_body(h, consumed)
        return None
    if r.collect:
        return PageData(tuple(collected), r.blob(h, consumed), reserved)
    if length > consumed:  # page contents: skipped, never held
        src.skip(length - consumed, "PAGE_DATA body")
    return None


def _parse_x86_pv_info(r: LibxcReader, h: RecordHeader):
    value = r.fixed(h, X86PvInfo, PVI_LENGTH)
    if value is None:
        return None
    width, levels = value.guest_width, value.pt_levels
    ck = r.checker
    if width not in (4, 8):
        ck.report(PVI_WIDTH, X86PvInfo.at(h, "guest_width"), f"guest_width is {width}, not 4 or 8")
    if levels not in (3, 4):
        ck.report(PVI_LEVELS, X86PvInfo.at(h, "pt_levels"), f"pt_levels is {levels}, not 3 or 4")
    if value.reserved:
        ck.report(PVI_RESERVED, X86PvInfo.at(h, "reserved"), f"reserved field is 0x{value.reserved:012x}")
    if r._reader:
        if r.counts.get(RecordType.X86_PV_INFO, 0) > 1 and PVI_REPEATED in r._reader:
            ck.report(PVI_REPEATED, h.offset, "second X86_PV_INFO record")
        if width in (4, 8) and levels in (3, 4) and levels != (3 if width == 4 else 4) \
                and PVI_COMBINATION in r._reader:
            ck.report(PVI_COMBINATION, X86PvInfo.at(h, "guest_width"), f"guest_width {width} with pt_levels {levels}")
    if width in (4, 8):
        r.state.pv_info = value
    ck.note(f"  {width * 8}-bit PV guest, {levels} levels of page tables")
    return value


def _parse_x86_pv_p2m_frames(r: LibxcReader, h: RecordHeader):
    ck, length = r.checker, h.body_length
    fixed = X86PvP2mFrames.LAYOUT.size
    if length < fixed or length % 8:
        ck.report(P2M_LENGTH, h.length_offset, f"body_length {length} is not 8 plus a multiple of 8")
        r.skip_body(h)
        return None
    head = X86PvP2mFrames.decode_fixed(r.endian, r.src.read_exact(fixed, "X86_PV_P2M_FRAMES header"))
    start, end = head["p2m_start_pfn"], head["p2m_end_pfn"]
    n = (length - fixed) // 8
    if end < start:
        ck.report(P2M_RANGE, X86PvP2mFrames.at(h, "p2m_end_pfn"), f"p2m_end_pfn {end} is below p2m_start_pfn {start}")
    elif r.state.pv_info is not None:
        # a page smaller than a p2m entry (page_shift < 3, reported above) holds no entries
        per_frame = max(r.page_size // r.state.pv_info.guest_width, 1)
        frames = end // per_frame - start // per_frame + 1
        if frames != n:
            ck.report(P2M_FRAME_COUNT, X86PvP2mFrames.at(h, "p2m_pfns"),
                      f"pfns {start}-{end} span {frames} p2m frames of {per_frame} entries, "
                      f"but the record has {n} p2m_pfn entries")
    if r.collect:
        pfns: list[int] = []
        for piece in r.q_array(n, "X86_PV_P2M_FRAMES p2m_pfn array"):
            pfns.extend(piece)
        return X86PvP2mFrames(start, end, tuple(pfns))
    r.skip_body(h, fixed)
    return None


def _make_vcpu_parser(cls):
    fixed = X86PvVcpu.LAYOUT.size

    def parse(r: LibxcReader, h: RecordHeader):
        ck = r.checker
        if h.body_length < fixed:
            ck.report(VCPU_LENGTH, h.length_offset, f"body_length {h.body_length} is shorter than the "
                      f"{fixed}-octet header")
            r.skip_body(h)
            return None
        head = X86PvVcpu.decode_fixed(r.endian, r.src.read_exact(fixed, "X86_PV_VCPU header"))
        vcpu_id, reserved = head["vcpu_id"], head["reserved"]
        if reserved:
            ck.report(VCPU_RESERVED, X86PvVcpu.at(h, "reserved"), f"reserved field is 0x{reserved:08x}")
        size = h.body_length - fixed
        if size == 0:
            ck.report(EMPTY_CONTENT, h.length_offset, f"{cls.TYPE.name} for vcpu {vcpu_id} has no context")
            if VCPU_EMPTY in r._reader:
                ck.report(VCPU_EMPTY, h.length_offset, f"{cls.TYPE.name} for vcpu {vcpu_id} has no context")
        else:
            if cls is X86PvVcpuBasic and vcpu_id == 0:
                r.state.vcpu0_basic = True
            if r._reader:
                _vcpu_reader_checks(r, h, cls, size)
        return cls(vcpu_id, r.blob(h, fixed), reserved)
    return parse


def _vcpu_reader_checks(r: LibxcReader, h: RecordHeader, cls, size: int) -> None:
    """libxenguest's handle_x86_pv_vcpu_blob(): the context sizes it accepts."""
    ck, rules, at = r.checker, r._reader, h.length_offset
    if cls is X86PvVcpuBasic and VCPU_BASIC_SIZE in rules:
        width = r.state.pv_info.guest_width if r.state.pv_info is not None else 8
        want = VCPU_CONTEXT_SIZE[width]
        if size != want:
            ck.report(VCPU_BASIC_SIZE, at, f"context of {size} octets, a {width * 8}-bit guest's "
                      f"vcpu_guest_context is {want}")
    elif cls is X86PvVcpuExtended and size > 128 and VCPU_EXT_SIZE in rules:
        ck.report(VCPU_EXT_SIZE, at, f"context of {size} octets, more than 128")
    elif cls is X86PvVcpuXsave and size < 16 and VCPU_XSAVE_SIZE in rules:
        ck.report(VCPU_XSAVE_SIZE, at, f"context of {size} octets, less than the 16-octet header")
    elif cls is X86PvVcpuMsrs and size % 16 and VCPU_MSRS_SIZE in rules:
        ck.report(VCPU_MSRS_SIZE, at, f"context of {size} octets, not a whole number of 16-octet entries")


def _parse_shared_info(r: LibxcReader, h: RecordHeader):
    if not r.counts.get(RecordType.X86_PV_INFO) and PV_INFO_BEFORE_SHINFO in r._reader:
        r.checker.report(PV_INFO_BEFORE_SHINFO, h.offset, "SHARED_INFO before X86_PV_INFO")
    if h.body_length != r.page_size:
        r.checker.report(SHINFO_LENGTH, h.length_offset,
                         f"body_length is {h.body_length}, not one page ({r.page_size})")
        r.skip_body(h)
        return None
    return SharedInfo(r.blob(h))


def _parse_x86_tsc_info(r: LibxcReader, h: RecordHeader):
    value = r.fixed(h, X86TscInfo, TSC_LENGTH)
    if value is None:
        return None
    if value.reserved:
        r.checker.report(TSC_RESERVED, X86TscInfo.at(h, "reserved"), f"reserved field is 0x{value.reserved:08x}")
    r.checker.note(f"  TSC mode {value.mode}, {value.khz} kHz, {value.nsec} ns, incarnation {value.incarnation}")
    return value


def _parse_blob_record(cls, empty_rule: str | None, reader_rule: str | None = None):
    def parse(r: LibxcReader, h: RecordHeader):
        if h.body_length == 0 and empty_rule:
            r.checker.report(empty_rule, h.length_offset, f"{_NAMES[h.type]} with no content")
            if reader_rule in r._reader:
                r.checker.report(reader_rule, h.length_offset, f"{_NAMES[h.type]} with no content")
        return cls(r.blob(h))
    return parse


def _parse_hvm_params(r: LibxcReader, h: RecordHeader):
    ck, length = r.checker, h.body_length
    fixed = HvmParams.LAYOUT.size
    if length < fixed:
        ck.report(HVMP_LENGTH, h.length_offset, f"body_length {length} is shorter than the 8-octet header")
        r.skip_body(h)
        return None
    head = HvmParams.decode_fixed(r.endian, r.src.read_exact(fixed, "HVM_PARAMS header"))
    count, reserved = head["count"], head["reserved"]
    if reserved:
        ck.report(HVMP_RESERVED, HvmParams.at(h, "reserved"), f"reserved field is 0x{reserved:08x}")
    want = fixed + HVM_PARAMS_ENTRY.size * count
    if length != want:
        ck.report(HVMP_LENGTH, h.length_offset, f"count {count} needs body_length {want}, got {length}")
        r.skip_body(h, fixed)
        return None
    if count == 0:
        ck.report(EMPTY_CONTENT, HvmParams.at(h, "count"), "HVM_PARAMS with count 0")
    if r.collect:
        values: list[int] = []
        for piece in r.q_array(2 * count, "HVM_PARAMS entries"):
            values.extend(piece)
        return HvmParams(tuple(zip(values[0::2], values[1::2])), reserved)
    r.skip_body(h, fixed)
    return None


def _parse_toolstack(r: LibxcReader, h: RecordHeader):
    r.checker.report(TOOLSTACK_DEPRECATED, h.offset, "deprecated TOOLSTACK record")
    return Toolstack(r.blob(h))


def _parse_dirty_pfn_list(r: LibxcReader, h: RecordHeader):
    ck = r.checker
    if h.body_length % 8:
        ck.report(DIRTY_LENGTH, h.length_offset, f"body_length {h.body_length} is not a multiple of 8")
        r.skip_body(h)
        return None
    ck.report(DIRTY_DIRECTION, h.offset, "CHECKPOINT_DIRTY_PFN_LIST in a forward stream")
    if h.body_length == 0:
        ck.report(EMPTY_CONTENT, h.length_offset, "CHECKPOINT_DIRTY_PFN_LIST with no pfns")
    if r.collect:
        pfns: list[int] = []
        for piece in r.q_array(h.body_length // 8, "CHECKPOINT_DIRTY_PFN_LIST pfns"):
            pfns.extend(piece)
        return CheckpointDirtyPfnList(tuple(pfns))
    r.skip_body(h)
    return None


def _parse_array_record(cls, rule: str, empty_rule: str):
    part = cls.LAYOUT.tail[0]
    layout = part.item

    def parse(r: LibxcReader, h: RecordHeader):
        ck = r.checker
        if h.body_length % layout.size:
            ck.report(rule, h.length_offset,
                      f"body_length {h.body_length} is not a multiple of {layout.size} ({layout.name})")
            r.skip_body(h)
            return None
        if h.body_length == 0:
            ck.report(EMPTY_CONTENT, h.length_offset, f"{_NAMES[h.type]} with no entries")
            if empty_rule in r._reader:
                ck.report(empty_rule, h.length_offset, f"{_NAMES[h.type]} with no entries")
        if not r.collect:
            r.skip_body(h)
            return None
        entries = tuple(r.entries(layout, h.body_length // layout.size, f"{layout.name} array"))
        return cls(**{part.attr: entries})
    return parse


_NAMES: dict[int, str] = {t.value: t.name for t in RecordType}
_PARSERS = {
    RecordType.END: _parse_empty(End, END_LENGTH),
    RecordType.PAGE_DATA: _parse_page_data,
    RecordType.X86_PV_INFO: _parse_x86_pv_info,
    RecordType.X86_PV_P2M_FRAMES: _parse_x86_pv_p2m_frames,
    RecordType.X86_PV_VCPU_BASIC: _make_vcpu_parser(X86PvVcpuBasic),
    RecordType.X86_PV_VCPU_EXTENDED: _make_vcpu_parser(X86PvVcpuExtended),
    RecordType.X86_PV_VCPU_XSAVE: _make_vcpu_parser(X86PvVcpuXsave),
    RecordType.X86_PV_VCPU_MSRS: _make_vcpu_parser(X86PvVcpuMsrs),
    RecordType.SHARED_INFO: _parse_shared_info,
    RecordType.X86_TSC_INFO: _parse_x86_tsc_info,
    RecordType.HVM_CONTEXT: _parse_blob_record(HvmContext, EMPTY_CONTENT, HVM_CONTEXT_EMPTY),
    RecordType.HVM_PARAMS: _parse_hvm_params,
    RecordType.TOOLSTACK: _parse_toolstack,
    RecordType.VERIFY: _parse_empty(Verify, VERIFY_LENGTH),
    RecordType.CHECKPOINT: _parse_checkpoint,
    RecordType.CHECKPOINT_DIRTY_PFN_LIST: _parse_dirty_pfn_list,
    RecordType.STATIC_DATA_END: _parse_static_data_end,
    RecordType.X86_CPUID_POLICY: _parse_array_record(X86CpuidPolicy, CPUID_LENGTH, CPUID_EMPTY),
    RecordType.X86_MSR_POLICY: _parse_array_record(X86MsrPolicy, MSR_LENGTH, MSR_EMPTY),
}
# dict lookups by plain int are as fast as by IntEnum
_PARSERS = {int(k): v for k, v in _PARSERS.items()}


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker) -> None:
    """Validate a stand-alone libxc stream (streaming; bounded memory)."""
    reader = LibxcReader(src, checker)
    for _ in reader.items():
        pass
    reader.check_trailing()
    _summary(reader)


def decode(data, *, role: Role = Role.RESTORE) -> LibxcStream:
    """Typed value of a stand-alone libxc stream; StreamError on the first finding ``role`` refuses."""
    reader = LibxcReader(as_source(data), Checker(role, fail_fast=True), collect=True)
    reader.read_headers()
    records = tuple(item.value for item in reader.records() if item.value is not None)
    reader.check_trailing()
    return LibxcStream(reader.image_header, reader.domain_header, records)


def _summary(reader: LibxcReader) -> None:
    ck = reader.checker
    if ck.verbose:
        for rtype, n in sorted(reader.counts.items()):
            ck.note(f"libxc {record_name(rtype)}: {n} record(s)")


# --------------------------------------------------------------------------
# Dump
# --------------------------------------------------------------------------


def describe_record(rec: Record) -> dict:
    """JSON-able fields of a typed record; page contents and blobs summarised."""
    if isinstance(rec, PageData):
        types: dict[str, int] = {}
        for p in rec.pfns:
            t = page_type_of(p)
            key = PageType(t).name if t in PageType._value2member_map_ else f"0x{t:x}"
            types[key] = types.get(key, 0) + 1
        pfns = [p & PFN_MASK for p in rec.pfns]
        out = {"count": len(rec.pfns), "reserved": rec.reserved, "page_types": types,
               "pfn_range": [min(pfns), max(pfns)] if pfns else None, "page_octets": len(rec.pages)}
        return out
    out: dict = {}
    for name, value in vars(rec).items():
        if isinstance(value, bytes):
            out[name] = {"octets": len(value), "head": value[:16].hex()}
        elif isinstance(value, tuple) and len(value) > 16:
            out[name] = {"entries": len(value), "first": list(value[:4])}
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def dump_item(item: Item, index: int | None = None) -> dict | None:
    """The ``xenstream dump`` dict of one item (a header, or a record with its value); None for a
    record that could not be decoded."""
    offset, h, value = item
    if value is None:
        return None
    if h == "image header":
        return {"layer": LAYER, "kind": h, "offset": None,
                "fields": {"version": value.version, "endian": value.endian.value,
                           "options": value.options, "reserved": value.reserved}}
    if h == "domain header":
        return {"layer": LAYER, "kind": h, "offset": None,
                "fields": {"type": DomainType(value.type).name if value.type in (1, 2) else value.type,
                           "page_shift": value.page_shift, "xen_major": value.xen_major,
                           "xen_minor": value.xen_minor, "reserved": value.reserved}}
    return {"layer": value.layer, "kind": "record", "index": index, "offset": offset,
            "type": record_name(value.type), "type_value": value.type, "body_length": h.body_length,
            "fields": describe_record(value)}


def dump(src: Source, checker: Checker) -> Iterator[dict]:
    reader = LibxcReader(src, checker, collect=True)
    index = 0
    for item in reader.items():
        out = dump_item(item, index)
        if isinstance(item.header, RecordHeader):
            index += 1
        if out is not None:
            yield out
    reader.check_trailing()


def headers_endian(data: bytes, base: int = 0) -> Endian:
    """The byte order the image header at ``base`` gives the rest of the stream."""
    return Endian.from_bit(IMAGE_HEADER.get(Endian.BIG, data, "options", base))


def spans(data: bytes, options=None, base: int = 0, out: list | None = None) -> tuple[list, int]:
    """The headers (one span) and each whole record from ``base``; where the walk stopped."""
    out = [] if out is None else out
    if len(data) < base + HEADERS_SIZE:
        return out, base
    out.append((base, base + HEADERS_SIZE, "libxc-headers"))
    at = base + HEADERS_SIZE
    for start, end, _ in framing.frames(data, at, headers_endian(data, base)):
        if len(out) >= framing.MAX_SPANS:
            break
        out.append((start, end, LAYER))
        at = end
    return out, at


def _keep_first(count: int) -> list[int]:
    """How many of a batch's ``count`` pages the smaller variants keep."""
    return sorted({1, count // 2} - {0, count})


def trim_page_data(spans, data: bytes, options=None) -> Iterator[bytes]:
    """A codec's ``trim`` for a stream that carries libxc records: each PAGE_DATA record among
    the spans ``spans(data)`` finds, cut to its first pages (count and body length fixed).
    Only records whose body_length is what their pfns say are cut."""
    pd = PageData.LAYOUT
    pfn = pd.tail[0]
    page = 1 << X86_PAGE_SHIFT
    records, endian = [], Endian.LITTLE
    for a, b, layer in spans(bytes(data))[0]:
        if layer == "libxc-headers" and b - a == HEADERS_SIZE:
            endian = headers_endian(data, a)
        elif layer == LAYER and b - a >= RECORD_HEADER.size + pd.size:
            if RECORD_HEADER.get(endian, data, "type", a) == RecordType.PAGE_DATA:
                records.append((a, b, endian))
    for a, b, endian in records:
        body_at = a + RECORD_HEADER.size
        body_len = RECORD_HEADER.get(endian, data, "body_length", a)
        fixed = PageData.decode_fixed(endian, data, body_at)
        count = fixed["count"]
        pfns_at = pd.at(body_at, "pfns")
        if count < 2 or pd.offset("pfns", count) > b - body_at:
            continue
        entries = pfn.entries(endian, count).unpack_from(data, pfns_at)
        with_data = [HAS_DATA[page_type_of(x)] for x in entries]
        if page_data_length(count, sum(with_data), page) != body_len:
            continue
        pages_at = pd.at(body_at, "pfns", count)
        for k in _keep_first(count):
            n_pages = sum(with_data[:k])
            rec = PageData(entries[:k], data[pages_at:pages_at + page * n_pages], fixed["reserved"])
            yield data[:a] + encode_record(rec.type, rec.encode_body(endian), endian) + data[b:]


CODEC = Codec(
    name="libxc",
    description="libxc domain image format v2/v3 (libxc-migration-stream.pandoc)",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    sniff=framing.sniffer(IMAGE_HEADER, "version", "options"),
    spans=spans,
    trim=partial(trim_page_data, spans),
    keep_whole=True,
    recognise=by_magic((IMAGE_HEADER.encode(Endian.BIG, marker=MARKER, id=IDENT)[:IMAGE_HEADER.offset("version")],
                        "the libxc image header's marker and id \"XENF\"")),
)

"""Legacy (pre-v2) libxc images and the legacy libxl "toolstack" blob.

A legacy image is what ``xc_domain_save`` wrote before migration v2 (Xen 4.5
and earlier).  It has no header, no record framing and no byte-order flag:
it is a sequence of native x86 (little-endian) C objects whose sizes depend
on the *toolstack's* word size (``unsigned long`` is 4 or 8 octets) and, for
PV guests, on the guest's word size.  The layout, as documented in Xen's
``xen/migration/legacy.py`` and the save/restore code of that era, is:

* ``p2m_size``: one ``unsigned long``;
* PV only, the extended-info chunk: an ``unsigned long`` signature ``~0``, a
  ``uint32`` total size, then blocks of ``char[4]`` id, ``uint32`` size and
  data (``"vcpu"``: a vcpu context template whose size gives the guest width,
  ``"extv"``: extended vcpu contexts follow in the tail, ``"xcnt"``: a
  ``uint32`` size of each vcpu's xsave area in the tail);
* PV only, the p2m frame list: ``ceil(p2m_size / (4096 / guest_width))``
  ``unsigned long`` entries;
* chunks, each starting with an ``int`` type: a positive type is a page batch
  of that many ``unsigned long`` PFNs (type in bits 31-28) followed by 4096
  octets for every page that has data; a negative type is one of the
  ``XC_SAVE_ID_*`` metadata chunks; type 0 ends the body;
* the PV tail (a ``uint32`` count and that many ``unsigned long`` unmapped
  PFNs, one context per online vcpu, the shared info page) or the HVM tail
  (three ``uint64`` magic PFNs, a ``uint32`` length and the HVM context);
* HVM only, the qemu record: a 21-octet signature, for
  ``DeviceModelRecord0002`` a ``uint32`` length and that many octets.

A legacy libxl image adds, inside the ``XC_SAVE_ID_TOOLSTACK`` chunk, the
"toolstack" blob (version 1: the qemu physmap), whose per-entry layout
differs between 32- and 64-bit builds (see :class:`PhysmapEntry`).

Nothing in the stream says the toolstack width or the guest type; the libxc
spec ("Legacy Images") tells the width from octets 4-7 (:func:`detect`), and
the guest type follows from the same octets.  What cannot be told is given by
keyword arguments (see ``_DEFAULTS``).
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

from .checker import Checker
from .errors import UsageError
from .formats import Codec, spans_of_dump
from .framing import Item, dump_items, make_item
from . import xl
from .layout import Bytes, Declared, Endian, Layout, count, i32, octets, reserved, u32, u64
from .libxc import DomainType
from .rules import Role, Severity, definer
from .source import Source, Truncated

LAYER = "legacy"
LE = Endian.LITTLE
PAGE_SIZE = 4096

# --------------------------------------------------------------------------
# Layouts (all little-endian: legacy images exist for x86 only)
# --------------------------------------------------------------------------

ULONG = {32: Layout("unsigned long (32-bit toolstack)", u32("value")),
         64: Layout("unsigned long (64-bit toolstack)", u64("value"))}
CHUNK_TYPE = Layout("chunk type", i32("type"))
EXTENDED_INFO_SIZE = Layout("extended-info total size", u32("total_size"))
XCNT_BLOCK = Layout("extended-info xcnt block", u32("xsave_size"))
VCPU_INFO = Layout("XC_SAVE_ID_VCPU_INFO", i32("max_vcpu_id"))
TOOLSTACK_CHUNK = Layout("XC_SAVE_ID_TOOLSTACK", u32("length"))
UNMAPPED_PFN_COUNT = Layout("unmapped PFN count", u32("count"))
XSAVE_HEADER = Layout("vcpu xsave header", u64("xfeature_mask"), u64("size"))
HVM_MAGIC_PFNS = Layout("HVM magic PFNs", u64("ioreq_pfn", default=0), u64("bufioreq_pfn", default=0),
                        u64("store_pfn", default=0))
HVM_CONTEXT_SIZE = Layout("HVM context size", count("size"), tail=(Bytes("context", "size"),))
QEMU_SIGNATURE = Layout("qemu signature", octets("signature", 21))
QEMU_SIZE = Layout("qemu record size", u32("size"))
TOOLSTACK_HEADER = Layout("libxl toolstack header", u32("version"), u32("count"))
#: ``struct libxl__physmap_info`` up to ``name``: 28 octets in both builds; a
#: 64-bit build rounds the struct up to 32, see :class:`PhysmapEntry`.
LIBXL_PHYSMAP_INFO = Layout("libxl__physmap_info", u64("phys_offset"), u64("start_addr"), u64("size"),
                            u32("namelen"))
PHYSMAP_PADDING = {32: 0, 64: 4}

EXTENDED_INFO_SIGNATURE = {32: 0xFFFFFFFF, 64: 0xFFFFFFFFFFFFFFFF}
VCPU_CONTEXT_SIZES = {0xAF0: (4, 3), 0x1430: (8, 4)}  # block size -> (guest width, pt levels)
EXTENDED_VCPU_CONTEXT_SIZE = 128
SHARED_INFO_SIZE = PAGE_SIZE
MAX_BATCH = 1024
MAX_VCPU_ID = 4095
MAX_UNMAPPED_PFNS = 1 << 28
MAX_P2M_SIZE = 0x0FFFFFFF  # PFNs must fit below the type bits 31-28

PFN_TYPE_MASK = 0xF0000000
PFN_MASK = 0x0FFFFFFF
PFN_TYPE_SHIFT = 28
XTAB = 0xF
NO_DATA_TYPES = frozenset({0xD, 0xE, 0xF})  # BROKEN, XALLOC, XTAB
INVALID_TYPES = frozenset({5, 6, 7, 8})
#: ``xc_domain_save`` leaves unmappable pages in a batch as a bare XTAB entry.
BARE_XTAB = 0xF0000000

QEMU_SIGNATURES = (b"DeviceModelRecord0002", b"RemusDeviceModelState", b"QemuDeviceModelRecord")
#: signature -> whether a uint32 length follows (the old xend one runs to EOF)
QEMU_HAS_LENGTH = {b"DeviceModelRecord0002": True, b"RemusDeviceModelState": True,
                   b"QemuDeviceModelRecord": False}


class Chunk:
    """``XC_SAVE_ID_*`` chunk types (negative) and their names."""

    END = 0
    ENABLE_VERIFY_MODE = -1
    VCPU_INFO = -2
    HVM_IDENT_PT = -3
    HVM_VM86_TSS = -4
    TMEM = -5
    TMEM_EXTRA = -6
    TSC_INFO = -7
    HVM_CONSOLE_PFN = -8
    LAST_CHECKPOINT = -9
    HVM_ACPI_IOPORTS_LOCATION = -10
    HVM_VIRIDIAN = -11
    COMPRESSED_DATA = -12
    ENABLE_COMPRESSION = -13
    HVM_GENERATION_ID_ADDR = -14
    HVM_PAGING_RING_PFN = -15
    HVM_MONITOR_RING_PFN = -16
    HVM_SHARING_RING_PFN = -17
    TOOLSTACK = -18
    HVM_IOREQ_SERVER_PFN = -19
    HVM_NR_IOREQ_SERVER_PAGES = -20


CHUNK_NAMES = {value: f"XC_SAVE_ID_{name}" for name, value in vars(Chunk).items()
               if isinstance(value, int) and value < 0}
CHUNK_NAMES[0] = "end of body"

#: Chunks carrying one HVM parameter (``int id; uint32 pad; uint64 data``), with
#: the ``HVM_PARAM_*`` index (xen/include/public/hvm/params.h) it converts to.
HVM_PARAM_CHUNKS: dict[int, int] = {
    Chunk.HVM_IDENT_PT: 12,
    Chunk.HVM_VM86_TSS: 15,
    Chunk.HVM_CONSOLE_PFN: 17,
    Chunk.HVM_ACPI_IOPORTS_LOCATION: 19,
    Chunk.HVM_VIRIDIAN: 9,
    Chunk.HVM_GENERATION_ID_ADDR: 34,
    Chunk.HVM_PAGING_RING_PFN: 27,
    Chunk.HVM_MONITOR_RING_PFN: 28,
    Chunk.HVM_SHARING_RING_PFN: 29,
    Chunk.HVM_IOREQ_SERVER_PFN: 32,
    Chunk.HVM_NR_IOREQ_SERVER_PAGES: 33,
}
HVM_PARAM_STORE_PFN = 1
HVM_PARAM_IOREQ_PFN = 5
HVM_PARAM_BUFIOREQ_PFN = 6
#: chunks with no body
MARKER_CHUNKS = frozenset({Chunk.ENABLE_VERIFY_MODE, Chunk.LAST_CHECKPOINT})
#: chunks the v2 format has no place for (tmem, Remus compression)
UNSUPPORTED_CHUNKS = frozenset({Chunk.TMEM, Chunk.TMEM_EXTRA, Chunk.COMPRESSED_DATA,
                                Chunk.ENABLE_COMPRESSION})
LOWEST_CHUNK = Chunk.HVM_NR_IOREQ_SERVER_PAGES

# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------

R, W, E = Severity.REJECT, Severity.WRITER, Severity.EITHER
LIBXC_DOC = "legacy.py: Libxc"
LIBXL_DOC = "legacy.py: Libxl"


_rule = definer("legacy")


TRUNCATED = _rule("legacy.stream.truncated", R, f"{LIBXC_DOC} HEADER, BODY PHASE, TAIL PHASE",
                  "the input holds every item a count or size announces (no short chunk, "
                  "no count running past the end)")
TRAILING = _rule("legacy.stream.trailing_data", E, f"{LIBXC_DOC} TAIL PHASE",
                 "nothing follows the tail (and qemu record); the documents are silent, "
                 "restorers stop reading there")
P2M_SIZE = _rule("legacy.p2m_size.range", R, f"{LIBXC_DOC} HEADER",
                 "1 <= p2m_size <= 0x0fffffff (PFNs fit below the type bits 31-28)")
EXT_SIGNATURE = _rule("legacy.extended_info.signature", R, f"{LIBXC_DOC} HEADER, extended-info",
                      "a PV image carries the extended-info chunk: signature ~0UL "
                      "(Legacy Images assumes it, Xen >= 3.0)")
EXT_SIZE = _rule("legacy.extended_info.total_size", R, f"{LIBXC_DOC} HEADER, extended-info",
                 "the blocks fill the extended-info total size exactly")
EXT_BLOCK_ID = _rule("legacy.extended_info.block_id", E, f"{LIBXC_DOC} HEADER, extended-info",
                     "block ids are vcpu, extv or xcnt; legacy restore skips unknown blocks, "
                     "Xen's converter refuses them")
EXT_VCPU_SIZE = _rule("legacy.extended_info.vcpu_size", R, f"{LIBXC_DOC} HEADER, extended-info",
                      "the vcpu block is a 32-bit (0xaf0) or 64-bit (0x1430) vcpu_guest_context")
EXT_VCPU_MISSING = _rule("legacy.extended_info.vcpu_missing", R, f"{LIBXC_DOC} HEADER, extended-info",
                         "the extended-info chunk has a vcpu block (it gives the guest width)")
EXT_XCNT_SIZE = _rule("legacy.extended_info.xcnt_size", R, f"{LIBXC_DOC} HEADER, extended-info",
                      "the xcnt block holds a uint32 xsave size of at least 16 "
                      "(mask and size precede the area)")
CHUNK_TYPE_RULE = _rule("legacy.chunk.type", R, f"{LIBXC_DOC} BODY PHASE",
                        "a negative chunk type is one of XC_SAVE_ID_* (-1 to -20)")
CHUNK_UNSUPPORTED = _rule("legacy.chunk.unsupported", R, f"{LIBXC_DOC} BODY PHASE - Format B",
                          "no tmem or Remus compression chunks (-5, -6, -12, -13): "
                          "they have no v2 counterpart and cannot be converted")
CHUNK_HVM_ONLY = _rule("legacy.chunk.hvm_only", R, f"{LIBXC_DOC} BODY PHASE",
                       "HVM parameter chunks appear in HVM images only")
CHUNK_PAD = _rule("legacy.chunk.pad", W, f"{LIBXC_DOC} BODY PHASE",
                  "the 4-octet pad of an HVM parameter chunk is zero (the saver zeroes it, "
                  "restore skips it)")
BATCH_MAX = _rule("legacy.page_batch.max_batch", R, f"{LIBXC_DOC} BODY PHASE - Format A",
                  "a page batch has at most MAX_BATCH (1024) pages")
BATCH_DUPLICATE = _rule("legacy.page_batch.duplicate_pfn", R, f"{LIBXC_DOC} BODY PHASE - Format A",
                        "no PFN appears twice in one batch (bare XTAB entries aside)")
BATCH_TYPE = _rule("legacy.page_batch.page_type", R, f"{LIBXC_DOC} BODY PHASE - Format A",
                   "the type in bits 31-28 is a XEN_DOMCTL_PFINFO_* value (not 5-8)")
BATCH_HIGH = _rule("legacy.page_batch.high_bits", R, f"{LIBXC_DOC} BODY PHASE - Format A",
                   "bits 63-32 of a 64-bit toolstack's PFN entry are zero (PFN in 27-0, type in 31-28)")
BATCH_NONE = _rule("legacy.page_batch.none", R, f"{LIBXC_DOC} BODY PHASE - Format A",
                   "a PV image sends the guest's memory in page batches; one with none has no memory to "
                   "restore and cannot become a v2 PV stream, which must have PAGE_DATA records")
VCPU_MAX = _rule("legacy.vcpu_info.max_vcpu_id", R, f"{LIBXC_DOC} BODY PHASE (XC_SAVE_ID_VCPU_INFO)",
                 "0 <= max_vcpu_id <= MAX_VCPU_ID (4095)")
VCPU_MAP = _rule("legacy.vcpu_info.map_beyond_max", W, f"{LIBXC_DOC} BODY PHASE (XC_SAVE_ID_VCPU_INFO)",
                 "no vcpumap bit above max_vcpu_id is set (the saver never sets one, "
                 "restore ignores them)")
TOOLSTACK_SHORT = _rule("legacy.toolstack.short", R, f"{LIBXL_DOC} Version 1",
                        "a libxl toolstack blob holds its uint32 version and uint32 count")
TOOLSTACK_VERSION = _rule("legacy.toolstack.version", R, f"{LIBXL_DOC} Version 1",
                          "the libxl toolstack blob version is 1")
PHYSMAP_TRUNCATED = _rule("legacy.physmap.truncated", R, f"{LIBXL_DOC} libxl__physmap_info",
                          "count physmap entries (header, namelen octets of name and, for a "
                          "64-bit build, 4 octets of padding) fit in the blob")
PHYSMAP_NUL = _rule("legacy.physmap.name_nul", R, f"{LIBXL_DOC} libxl__physmap_info",
                    "a non-empty physmap name ends with its NUL terminator")
PHYSMAP_TRAILING = _rule("legacy.physmap.trailing_data", E, f"{LIBXL_DOC} Version 1",
                         "nothing follows the count entries in the blob; readers ignore it")
UNMAPPED_COUNT = _rule("legacy.pv_tail.unmapped_count", R, f"{LIBXC_DOC} PV TAIL",
                       "at most 2^28 unmapped PFNs (the bound legacy restore applies)")
XSAVE_SIZE = _rule("legacy.pv_tail.xsave_size", R, f"{LIBXC_DOC} PV TAIL",
                   "each vcpu's xsave size equals the xcnt size minus the 16-octet mask and size")
HVM_CONTEXT_EMPTY = _rule("legacy.hvm_tail.context_empty", R, f"{LIBXC_DOC} HVM TAIL",
                          "the HVM context is not empty (v2 HVM_CONTEXT must carry data)")
QEMU_SIG = _rule("legacy.qemu.signature", R, f"{LIBXC_DOC} HVM TAIL (Qemu context)",
                 "the qemu signature is DeviceModelRecord0002, RemusDeviceModelState or "
                 "QemuDeviceModelRecord")

# --------------------------------------------------------------------------
# Typed values
# --------------------------------------------------------------------------


class ExtInfoBlock(Declared):
    """One extended-info block: ``char id[4]``, ``uint32 size`` and that many octets of data."""

    LAYOUT = Layout("extended-info block header", octets("id", 4), count("size"), tail=(Bytes("data", "size"),))


EXTENDED_INFO_BLOCK = ExtInfoBlock.LAYOUT


@dataclass(frozen=True)
class ExtendedInfo:
    blocks: tuple[ExtInfoBlock, ...]
    total_size: int | None = None  # None: the blocks' size (override for malformed images)
    signature: int | None = None   # None: ~0UL of the toolstack width

    def block(self, ident: bytes) -> ExtInfoBlock | None:
        for b in self.blocks:
            if b.id == ident:
                return b
        return None

    @property
    def guest_width(self) -> int | None:
        b = self.block(b"vcpu")
        return VCPU_CONTEXT_SIZES.get(len(b.data), (None, None))[0] if b else None

    @property
    def pt_levels(self) -> int | None:
        b = self.block(b"vcpu")
        return VCPU_CONTEXT_SIZES.get(len(b.data), (None, None))[1] if b else None

    @property
    def vcpu_context_size(self) -> int:
        b = self.block(b"vcpu")
        return len(b.data) if b else 0

    @property
    def extended(self) -> bool:
        return self.block(b"extv") is not None

    @property
    def xsave_size(self) -> int:
        """The xcnt value: mask + size + area octets per vcpu, 0 without xcnt."""
        b = self.block(b"xcnt")
        if b is None or len(b.data) < XCNT_BLOCK.size:
            return 0
        return XCNT_BLOCK.unpack(LE, b.data)[0]


@dataclass(frozen=True)
class PageBatch:
    """A positive chunk: raw ``unsigned long`` entries and the data of present pages."""

    pfns: tuple[int, ...]
    pages: bytes = b""
    count: int | None = None  # None: len(pfns)

    def present(self) -> int:
        return sum(1 for p in self.pfns if page_has_data(p))


@dataclass(frozen=True)
class VcpuInfo:
    max_vcpu_id: int
    vcpumap: tuple[int, ...]  # uint64 words, max_vcpu_id // 64 + 1 of them

    @classmethod
    def make(cls, online: list[int] | tuple[int, ...], max_vcpu_id: int | None = None) -> "VcpuInfo":
        top = max(online) if max_vcpu_id is None else max_vcpu_id
        words = [0] * (top // 64 + 1)
        for v in online:
            words[v // 64] |= 1 << (v % 64)
        return cls(top, tuple(words))

    def online(self) -> list[int]:
        """Online vcpus as legacy restore sees them: bits 0..max_vcpu_id."""
        return [i for i in range(min(self.max_vcpu_id, len(self.vcpumap) * 64 - 1) + 1)
                if self.vcpumap[i // 64] >> (i % 64) & 1]


class HvmParamChunk(Declared):
    """A chunk carrying one HVM parameter: ``int type; uint32 pad; uint64 value`` (the type is
    the chunk type, one of :data:`HVM_PARAM_CHUNKS`)."""

    LAYOUT = Layout("XC_SAVE_ID_HVM_* chunk", reserved("pad"), u64("value"))
    FIRST = (("type", int, dataclasses.MISSING),)

    @property
    def param(self) -> int:
        return HVM_PARAM_CHUNKS[self.type]


class TscInfo(Declared):
    """``XC_SAVE_ID_TSC_INFO``: ``uint32 tsc_mode; uint64 nsec; uint32 khz, incarnation``."""

    LAYOUT = Layout("XC_SAVE_ID_TSC_INFO", u32("mode", default=0), u64("nsec", default=0),
                    u32("khz", default=0), u32("incarnation", default=0))


@dataclass(frozen=True)
class PhysmapEntry:
    """One ``struct libxl__physmap_info`` of the legacy toolstack blob.

    The struct is ``uint64 phys_offset, start_addr, size; uint32 namelen;
    char name[]``: 28 octets before ``name`` in both builds, but a 64-bit build
    rounds ``sizeof`` up to 32 and advanced by ``sizeof + namelen`` while
    writing ``name`` at offset 28, so in a 64-bit blob four octets of struct
    padding follow the name's NUL (``padding``, whatever memory held; legacy.py,
    "Libxl").
    ``name`` is None for ``namelen == 0`` (the saver's "no name in xenstore").
    """

    phys_offset: int
    start_addr: int
    size: int
    name: bytes | None
    padding: bytes = b"\0\0\0\0"   # 64-bit blobs only
    terminated: bool = True          # False: no NUL (malformed on purpose)

    @property
    def namelen(self) -> int:
        if self.name is None:
            return 0
        return len(self.name) + (1 if self.terminated else 0)

    def encode(self, width: int) -> bytes:
        name = b"" if self.name is None else self.name + (b"\0" if self.terminated else b"")
        pad = self.padding[:PHYSMAP_PADDING[width]].ljust(PHYSMAP_PADDING[width], b"\0")
        return LIBXL_PHYSMAP_INFO.pack(LE, self.phys_offset, self.start_addr, self.size,
                                       self.namelen) + name + pad

    def xenstore(self) -> list[tuple[bytes, bytes]]:
        """The device-model xenstore keys legacy libxl restore wrote for it."""
        root = b"physmap/%x" % self.phys_offset
        out = [(root + b"/start_addr", b"%x" % self.start_addr), (root + b"/size", b"%x" % self.size)]
        if self.name is not None:
            out.append((root + b"/name", self.name.split(b"\0", 1)[0]))
        return out


@dataclass(frozen=True)
class LibxlToolstack:
    """The legacy libxl "toolstack" blob (``XC_SAVE_ID_TOOLSTACK`` data)."""

    entries: tuple[PhysmapEntry, ...] = ()
    version: int = 1
    count: int | None = None  # None: len(entries)
    trailing: bytes = b""

    def encode(self, width: int) -> bytes:
        count = len(self.entries) if self.count is None else self.count
        return (TOOLSTACK_HEADER.pack(LE, self.version, count)
                + b"".join(e.encode(width) for e in self.entries) + self.trailing)

    def xenstore(self) -> list[tuple[bytes, bytes]]:
        return [kv for e in self.entries for kv in e.xenstore()]


@dataclass(frozen=True)
class ToolstackChunk:
    """``XC_SAVE_ID_TOOLSTACK``: opaque data, or the decoded libxl blob."""

    data: bytes | LibxlToolstack = b""

    def blob(self, width: int) -> bytes:
        return self.data.encode(width) if isinstance(self.data, LibxlToolstack) else self.data


@dataclass(frozen=True)
class MarkerChunk:
    type: int  # ENABLE_VERIFY_MODE, LAST_CHECKPOINT, or any other (malformed) type


@dataclass(frozen=True)
class XsaveState:
    xfeature_mask: int
    data: bytes
    size: int | None = None  # None: len(data)


@dataclass(frozen=True)
class PvVcpu:
    vcpu_id: int          # from the online map; not in the stream
    context: bytes
    extended: bytes | None = None
    xsave: XsaveState | None = None


@dataclass(frozen=True)
class PvTail:
    unmapped_pfns: tuple[int, ...] = ()
    vcpus: tuple[PvVcpu, ...] = ()
    shared_info: bytes = bytes(SHARED_INFO_SIZE)
    unmapped_count: int | None = None  # None: len(unmapped_pfns)


class HvmTail(Declared):
    """The HVM tail: the ioreq, bufioreq and store PFNs, a ``uint32`` size and the HVM context."""

    LAYOUT = HVM_MAGIC_PFNS + HVM_CONTEXT_SIZE


@dataclass(frozen=True)
class QemuRecord:
    signature: bytes = b"DeviceModelRecord0002"
    data: bytes = b""


@dataclass(frozen=True)
class ImageKind:
    """What an image is read as (the ``image`` item): the toolstack width and the guest type,
    given or detected, and what detection found (:func:`detect`)."""

    width: int
    guest: DomainType
    detected: str


@dataclass(frozen=True)
class ImageInfo:
    """What precedes the chunks (the ``image info`` item)."""

    width: int
    guest: DomainType
    p2m_size: int
    extended_info: ExtendedInfo | None
    p2m_frames: tuple[int, ...]


LegacyChunk = PageBatch | VcpuInfo | HvmParamChunk | TscInfo | ToolstackChunk | MarkerChunk


@dataclass(frozen=True)
class LegacyStream:
    width: int             # toolstack: 32 or 64
    guest: DomainType      # X86_PV or X86_HVM ("pv" and "hvm" are taken too)
    p2m_size: int
    chunks: tuple[LegacyChunk, ...]
    tail: PvTail | HvmTail
    extended_info: ExtendedInfo | None = None   # PV
    p2m_frames: tuple[int, ...] = ()            # PV
    qemu: QemuRecord | None = None              # HVM
    xl: Any = None  # xl.XlHeader when an xl savefile header precedes the image

    def __post_init__(self):
        object.__setattr__(self, "guest", guest_type(self.guest))

    @property
    def pv(self) -> bool:
        return self.guest is PV

    def vcpu_info(self) -> VcpuInfo | None:
        last = None
        for c in self.chunks:
            if isinstance(c, VcpuInfo):
                last = c
        return last

    def online_vcpus(self) -> list[int]:
        info = self.vcpu_info()
        return [0] if info is None else info.online()

    def toolstack(self) -> LibxlToolstack | None:
        for c in self.chunks:
            if isinstance(c, ToolstackChunk) and isinstance(c.data, LibxlToolstack):
                return c.data
        return None


def pfn_entry(pfn: int, page_type: int = 0) -> int:
    """A page batch entry: type in bits 31-28, pfn in bits 27-0."""
    return (page_type << PFN_TYPE_SHIFT) | (pfn & PFN_MASK)


def page_has_data(entry: int) -> bool:
    return ((entry & PFN_TYPE_MASK) >> PFN_TYPE_SHIFT) not in NO_DATA_TYPES


def p2m_frame_count(p2m_size: int, guest_width: int) -> int:
    """Entries of the PV p2m frame list: one per page of guest-width p2m entries."""
    per_frame = PAGE_SIZE // guest_width
    return (p2m_size + per_frame - 1) // per_frame


PV, HVM = DomainType.X86_PV, DomainType.X86_HVM
#: The guest types by the names the options, dumps and Xen's converter use.
GUEST_NAMES = {PV: "pv", HVM: "hvm"}
_GUEST_TYPES = {name: dtype for dtype, name in GUEST_NAMES.items()}


def guest_type(guest: "DomainType | str") -> DomainType:
    """The guest type of ``"pv"``, ``"hvm"`` or a :class:`DomainType`."""
    if isinstance(guest, str):
        return _GUEST_TYPES[guest]
    return DomainType(guest)


def guest_name(guest: DomainType | None) -> str | None:
    return None if guest is None else GUEST_NAMES[guest]


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    width: int | None
    guest: DomainType | None
    xl: bool
    reason: str
    ambiguous: bool = False


def detect(prefix: bytes, *, xl_header: bool = True) -> Detection:
    """Tell the toolstack width and guest type from an image's first octets.

    libxc spec, "Legacy Images": octets 4-7 are zero in a 64-bit image (the
    high half of ``p2m_size``); in a 32-bit image they are the extended-info
    signature 0xffffffff (PV) or the first chunk type, negative or a positive
    page count (HVM).  A 32-bit HVM image whose body is empty (first chunk 0)
    is indistinguishable and is reported as 64-bit, ``ambiguous``.  An xl
    savefile header in front is recognised by its magic and skipped, unless
    ``xl_header`` is false (the caller has dealt with any xl header already).
    """
    xl_in_front = xl_header and prefix.startswith(xl.MAGIC)
    if xl_in_front:
        if len(prefix) < xl.OPTIONAL_DATA_OFFSET:
            return Detection(None, None, True, "input ends inside the xl header")
        optlen = xl.HEADER.values(LE, prefix)["optional_data_len"]
        prefix = prefix[xl.OPTIONAL_DATA_OFFSET + optlen:]
    if len(prefix) < 8:
        return Detection(None, None, xl_in_front, "fewer than 8 octets: cannot tell the width")
    octets = prefix[4:8]
    if octets == b"\0\0\0\0":
        sig = prefix[8:16]
        if sig == b"\xff" * 8:
            return Detection(64, PV, xl_in_front, "octets 4-7 zero (64-bit); extended-info signature at 8")
        first = CHUNK_TYPE.unpack(LE, prefix, 8)[0] if len(prefix) >= 12 else None
        if first is not None and not LOWEST_CHUNK <= first <= MAX_BATCH:
            # Octets 4-7 are the END chunk of a 32-bit image with an empty body
            # and octets 8-11 a magic PFN: the one case the spec's test misses.
            return Detection(32, HVM, xl_in_front, f"octets 4-7 zero but octets 8-11 ({first}) are no chunk type: "
                                            "a 32-bit HVM image with an empty body", ambiguous=True)
        return Detection(64, HVM, xl_in_front,
                         f"octets 4-7 zero (64-bit); no extended-info signature, first chunk {first}",
                         ambiguous=first == 0)
    value = CHUNK_TYPE.unpack(LE, prefix, 4)[0]
    if value == -1 and prefix[12:16] in (b"vcpu", b"extv", b"xcnt"):
        return Detection(32, PV, xl_in_front, "octets 4-7 0xffffffff: 32-bit extended-info signature")
    if value == -1 and len(prefix) >= 16 and prefix[12:16] not in (b"vcpu", b"extv", b"xcnt"):
        return Detection(32, HVM, xl_in_front, "octets 4-7 -1 without extended-info block: 32-bit HVM, "
                                         "first chunk XC_SAVE_ID_ENABLE_VERIFY_MODE")
    if value == -1:
        return Detection(32, PV, xl_in_front, "octets 4-7 0xffffffff: 32-bit extended-info signature")
    if value < 0:
        return Detection(32, HVM, xl_in_front, f"octets 4-7 negative ({value}): 32-bit HVM chunk type")
    return Detection(32, HVM, xl_in_front, f"octets 4-7 positive ({value}): 32-bit HVM page count")


# --------------------------------------------------------------------------
# Parameters the stream does not carry
# --------------------------------------------------------------------------

#: Options (None: detect from the stream): ``width`` 32|64, ``guest`` "pv"|"hvm" (or a DomainType),
#: ``libxl`` whether the toolstack chunk is a libxl blob, ``qemu`` whether an
#: HVM image ends with the qemu record, ``xl`` whether an xl header precedes it.
_DEFAULTS: dict[str, Any] = {"width": None, "guest": None, "libxl": None, "qemu": None, "xl": None}


def _options(kw: dict[str, Any]) -> dict[str, Any]:
    out = dict(_DEFAULTS)
    for key, value in kw.items():
        if key not in out:
            raise UsageError(f"legacy: unknown option {key!r}")
        if value is not None:
            out[key] = value
    if out["width"] not in (None, 32, 64):
        raise UsageError("legacy: width is 32 or 64")
    if out["guest"] is not None:
        try:
            out["guest"] = guest_type(out["guest"])
        except (KeyError, ValueError):
            raise UsageError("legacy: guest is pv or hvm") from None
    return out


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


class LegacyReader:
    """Reads (and validates) a legacy image; :meth:`items` yields, in stream order, an
    ``Item(offset, kind, value)`` for each part of it, ``kind`` naming it as ``xenstream dump``
    does (see :data:`KINDS`).  The value is the typed part when ``collect`` is set (None
    otherwise, but for the small parts the reader needs itself: the xl header, ``image``,
    ``p2m_size``, the extended-info blocks, ``image info``).  Nothing is kept: memory stays
    bounded by the largest single part (a 1024-page batch, a context blob); :func:`stream_of`
    builds the :class:`LegacyStream` from the items.

    ``embedded``: inside a container (libvirt's save image, xenopsd's suspend image) whose
    own data follows the image: no xl header, a qemu record only where one starts
    (``qemu=None``), and what follows is the container's business.  ``width``, ``guest``
    and ``detection`` are what the image is read as, once its ``image`` item is out."""

    def __init__(self, src: Source, checker: Checker, *, collect: bool = False, embedded: bool = False,
                 **options: Any):
        self.src, self.checker, self.collect, self.embedded = src, checker, collect, embedded
        self.opt = _options({"xl": False, **options} if embedded else options)
        self.index = 0
        self.width: int | None = None
        self.guest: DomainType | None = None
        self.detection: Detection | None = None
        self.ext: ExtendedInfo | None = None
        #: the last XC_SAVE_ID_VCPU_INFO: which vcpus the PV tail holds
        self.vcpu_info: VcpuInfo | None = None
        #: the octets of the last XC_SAVE_ID_TOOLSTACK chunk (a dump shows them)
        self.toolstack_length = 0

    # helpers ---------------------------------------------------------------
    def at(self, name: str, index: int | None = None) -> None:
        self.checker.at(LAYER, index, name)

    def read(self, layout: Layout, what: str | None = None) -> tuple:
        return layout.unpack(LE, self.src.read_exact(layout.size, what or layout.name))

    def ulongs(self, n: int, what: str) -> tuple[int, ...] | None:
        """n toolstack-width words; kept only when collecting (memory follows the input)."""
        size = ULONG[self.width].size
        if not self.collect:
            self.src.skip(n * size, what)
            return None
        fmt = "<%d" + ("I" if self.width == 32 else "Q")
        out: list[int] = []
        for piece in self.src.chunks(n * size, what, size * 8192):
            out.extend(struct.unpack(fmt % (len(piece) // size), piece))
        return tuple(out)

    def dump_item(self, item: Item) -> dict | None:
        return dump_item(self, item)

    def blob(self, n: int, what: str) -> bytes | None:
        if not self.collect:
            self.src.skip(n, what)
            return None
        return self.src.read_exact(n, what)

    # the stream ------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        try:
            yield from self._run()
        except Truncated as exc:
            self.checker.fail(TRUNCATED, exc.end,
                              f"input ends after {exc.got} of {exc.wanted} octets of {exc.what}")

    def _run(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        self.at("image")
        want_xl = self.opt["xl"]
        if want_xl or (want_xl is None and src.peek(len(xl.MAGIC)) == xl.MAGIC):
            off = src.offset
            saved = ck.save()
            header = xl.read_header(src, ck)
            ck.restore(saved)
            yield make_item((off, "xl_header", header))
        prefix = src.peek(64)
        # the xl header, if any, is behind us: octets that look like another one are the image's
        det = self.detection = detect(prefix, xl_header=False)
        width = self.opt["width"] or det.width
        guest = self.opt["guest"] or det.guest
        ck.note(f"legacy image: detected {det.width or '?'}-bit toolstack, "
                f"{guest_name(det.guest) if det.guest else '?'} guest ({det.reason})"
                + ("; ambiguous" if det.ambiguous else ""))
        if self.opt["width"] and det.width and self.opt["width"] != det.width:
            ck.note(f"given width {self.opt['width']} overrides the detected {det.width}-bit")
        if width is None or guest is None:
            self.width = width or 64
            src.read_exact(len(prefix) + 1, "legacy image header")  # raises Truncated
        self.width, self.guest = width, guest
        ck.note(f"reading as {width}-bit toolstack, {guest_name(guest)} guest")
        yield make_item((src.offset, "image", ImageKind(width, guest, det.reason)))

        self.at("p2m_size")
        off = src.offset
        p2m_size = self.read(ULONG[width], "p2m_size")[0]
        if not 1 <= p2m_size <= MAX_P2M_SIZE:
            ck.report(P2M_SIZE, off, f"p2m_size 0x{p2m_size:x} outside 1..0x{MAX_P2M_SIZE:x}")
        yield make_item((off, "p2m_size", p2m_size))

        frames: tuple[int, ...] = ()
        if guest is PV:
            self.ext = yield from self.read_extended_info()
            self.at("p2m frame list")
            n = p2m_frame_count(p2m_size, self.ext.guest_width or 8)
            off = src.offset
            frames = self.ulongs(n, "p2m frame list")
            yield make_item((off, "p2m_frames", frames))
        yield make_item((src.offset, "image info", ImageInfo(width, guest, p2m_size, self.ext, frames or ())))

        yield from self.read_chunks()
        if guest is PV:
            yield from self.read_pv_tail()
        else:
            yield from self.read_hvm_tail()
            want = self.opt["qemu"]
            if want is None and self.embedded:
                want = src.peek(QEMU_SIGNATURE.size) in QEMU_HAS_LENGTH
            if want or (want is None and not src.at_eof()):
                yield from self.read_qemu()
        self.at("end")
        if not self.embedded and not src.at_eof():
            off = src.offset
            ck.report(TRAILING, off, "octets follow the end of the legacy image")
            while src.read_upto(1 << 16):
                pass

    def read_extended_info(self) -> Iterator[Item]:
        """The extended-info chunk's blocks, one item each; returns the :class:`ExtendedInfo`."""
        src, ck = self.src, self.checker
        self.at("extended-info")
        off = src.offset
        sig = self.read(ULONG[self.width], "extended-info signature")[0]
        if sig != EXTENDED_INFO_SIGNATURE[self.width]:
            ck.fail(EXT_SIGNATURE, off, f"PV image without extended-info chunk (found 0x{sig:x} "
                                        "where the ~0UL signature belongs)")
        total = self.read(EXTENDED_INFO_SIZE)[0]
        start = src.offset
        blocks = []
        while src.offset - start < total:
            boff = src.offset
            ident, size = self.read(EXTENDED_INFO_BLOCK)
            if src.offset - start + size > total:
                ck.fail(EXT_SIZE, boff, f"block {ident!r} of {size} octets runs past the "
                                        f"extended-info size {total}")
            size_at = EXTENDED_INFO_BLOCK.at(boff, "size")
            if ident == b"vcpu":
                if size not in VCPU_CONTEXT_SIZES:
                    ck.fail(EXT_VCPU_SIZE, size_at, f"vcpu block of 0x{size:x} octets: neither a 32-bit "
                                                    "(0xaf0) nor a 64-bit (0x1430) vcpu context")
                data = src.read_exact(size, "extended-info vcpu block")
            elif ident == b"xcnt":
                if size < XCNT_BLOCK.size:
                    ck.fail(EXT_XCNT_SIZE, size_at, f"xcnt block of {size} octets, not 4")
                data = src.read_exact(size, "extended-info xcnt block")
                value = XCNT_BLOCK.unpack(LE, data)[0]
                if value < XSAVE_HEADER.size:
                    ck.fail(EXT_XCNT_SIZE, boff + EXTENDED_INFO_BLOCK.size, f"xcnt size {value} is smaller "
                                                                            "than the 16-octet mask and size")
            else:
                if ident != b"extv":
                    ck.report(EXT_BLOCK_ID, boff, f"unknown extended-info block {ident!r} "
                                                  f"({size} octets, skipped)")
                data = src.read_exact(size, f"extended-info {ident!r} block")
            block = ExtInfoBlock(ident, data)
            blocks.append(block)
            yield make_item((boff, "ext_block", block))
        ext = ExtendedInfo(tuple(blocks))
        if ext.block(b"vcpu") is None:
            ck.fail(EXT_VCPU_MISSING, off, "no vcpu block: the guest width is unknown")
        ck.note(f"PV guest: {ext.guest_width * 8}-bit, {ext.pt_levels} levels"
                f"{', extended vcpu contexts' if ext.extended else ''}"
                f"{f', xsave {ext.xsave_size} octets' if ext.xsave_size else ''}")
        return ext

    def read_chunks(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        batches = pages = 0
        while True:
            self.at("chunk", self.index)
            off = src.offset
            ctype = self.read(CHUNK_TYPE)[0]
            if ctype == Chunk.END:
                break
            name = "page batch" if ctype > 0 else CHUNK_NAMES.get(ctype, f"chunk {ctype}")
            self.at(name, self.index)
            kind = "chunk"
            if ctype > 0:
                chunk, present = self.read_batch(ctype, off)
                batches += 1
                pages += present
                kind = "page_batch"
            elif ctype < LOWEST_CHUNK:
                ck.fail(CHUNK_TYPE_RULE, off, f"unknown chunk type {ctype}")
            elif ctype in UNSUPPORTED_CHUNKS:
                ck.fail(CHUNK_UNSUPPORTED, off, f"{name} cannot be converted to a v2 stream")
            elif ctype in MARKER_CHUNKS:
                chunk = MarkerChunk(ctype)
            elif ctype == Chunk.VCPU_INFO:
                chunk = self.vcpu_info = self.read_vcpu_info()
            elif ctype in HVM_PARAM_CHUNKS:
                if self.guest is PV:
                    ck.report(CHUNK_HVM_ONLY, off, f"{name} in a PV image")
                poff = src.offset
                chunk = HvmParamChunk.from_fixed(LE, src.read_exact(HvmParamChunk.LAYOUT.size, name), type=ctype)
                if chunk.pad:
                    ck.report(CHUNK_PAD, HvmParamChunk.LAYOUT.at(poff, "pad"), f"pad is 0x{chunk.pad:x}, not zero")
            elif ctype == Chunk.TSC_INFO:
                chunk = TscInfo.from_fixed(LE, src.read_exact(TscInfo.LAYOUT.size, TscInfo.LAYOUT.name))
            else:  # TOOLSTACK
                chunk = self.read_toolstack()
            self.index += 1
            yield make_item((off, kind, chunk if self.collect or kind == "chunk" else None))
        yield make_item((off, "end_of_body", None))
        if self.guest is PV and not batches:
            ck.report(BATCH_NONE, off, "the body of a PV image ends without a page batch")
        self.index += 1
        ck.note(f"body: {batches} page batches, {pages} pages with data, "
                f"{self.index - batches - 1} metadata chunks")

    def read_batch(self, count: int, off: int) -> tuple[PageBatch | None, int]:
        src, ck = self.src, self.checker
        if count > MAX_BATCH:
            ck.fail(BATCH_MAX, off, f"page batch of {count} pages exceeds MAX_BATCH ({MAX_BATCH})")
        size = ULONG[self.width].size
        poff = src.offset
        raw = src.read_exact(count * size, "page batch PFN array")
        entries = struct.unpack(f"<{count}{'I' if size == 4 else 'Q'}", raw)
        seen: set[int] = set()
        present = 0
        for i, entry in enumerate(entries):
            eoff = poff + i * size
            if entry >> 32:
                ck.report(BATCH_HIGH, eoff, f"entry {i} is 0x{entry:x}: bits 63-32 set")
            ptype = (entry & PFN_TYPE_MASK) >> PFN_TYPE_SHIFT
            if ptype in INVALID_TYPES:
                ck.report(BATCH_TYPE, eoff, f"entry {i}: page type 0x{ptype:x} is not a "
                                            "XEN_DOMCTL_PFINFO_* value")
            if entry != BARE_XTAB:
                pfn = entry & PFN_MASK
                if pfn in seen:
                    ck.report(BATCH_DUPLICATE, eoff, f"entry {i}: pfn 0x{pfn:x} appears twice")
                seen.add(pfn)
            if ptype not in NO_DATA_TYPES:
                present += 1
        pages = self.blob(present * PAGE_SIZE, "page batch data")
        if not self.collect:
            return None, present
        return PageBatch(entries, pages or b""), present

    def read_vcpu_info(self) -> VcpuInfo:
        ck, src = self.checker, self.src
        moff = src.offset
        max_id = self.read(VCPU_INFO)[0]
        if not 0 <= max_id <= MAX_VCPU_ID:
            ck.fail(VCPU_MAX, moff, f"max_vcpu_id {max_id} outside 0..{MAX_VCPU_ID}")
        words = max_id // 64 + 1
        woff = src.offset
        vmap = struct.unpack(f"<{words}Q", src.read_exact(words * 8, "vcpumap"))
        top_bits = vmap[-1] >> (max_id % 64 + 1)
        if top_bits:
            ck.report(VCPU_MAP, woff + 8 * (words - 1),
                      f"vcpumap bits above max_vcpu_id {max_id} are set (0x{vmap[-1]:x})")
        return VcpuInfo(max_id, vmap)

    def read_toolstack(self) -> ToolstackChunk:
        src = self.src
        length = self.toolstack_length = self.read(TOOLSTACK_CHUNK)[0]
        boff = src.offset
        want = self.opt["libxl"]
        if want is False:
            return ToolstackChunk(self.blob(length, "toolstack data") or b"")
        raw = src.read_exact(length, "toolstack data")
        looks_libxl = len(raw) >= 4 and TOOLSTACK_HEADER.le.unpack_from(raw.ljust(8, b"\0"))[0] == 1
        if want is None and not looks_libxl:
            self.checker.note(f"toolstack chunk of {length} octets is not a libxl version 1 blob; kept opaque")
            return ToolstackChunk(raw)
        saved = self.checker.save()
        self.at("libxl toolstack", self.index)
        ts = decode_toolstack(raw, self.width, checker=self.checker, offset=boff)
        self.checker.restore(saved)
        self.checker.note(f"libxl toolstack v{ts.version}: {len(ts.entries)} physmap entries")
        return ToolstackChunk(ts)

    def read_pv_tail(self) -> Iterator[Item]:
        src, ck, ext = self.src, self.checker, self.ext
        self.at("PV tail")
        off = src.offset
        count = self.read(UNMAPPED_PFN_COUNT)[0]
        if count > MAX_UNMAPPED_PFNS:
            ck.fail(UNMAPPED_COUNT, off, f"{count} unmapped PFNs exceed 2^28")
        yield make_item((off, "unmapped_pfns", self.ulongs(count, "unmapped PFNs")))
        info = self.vcpu_info
        online = [0] if info is None else info.online()
        if info is None:
            ck.note("no XC_SAVE_ID_VCPU_INFO chunk: vcpu 0 alone is online (legacy restore's default)")
        for vcpu_id in online:
            self.at(f"vcpu {vcpu_id} context")
            voff = src.offset
            ctx = self.blob(ext.vcpu_context_size, "vcpu context")
            extd = self.blob(EXTENDED_VCPU_CONTEXT_SIZE, "extended vcpu context") if ext.extended else None
            xsave = None
            if ext.xsave_size:
                xoff = src.offset
                mask, size = self.read(XSAVE_HEADER)
                if size != ext.xsave_size - XSAVE_HEADER.size:
                    ck.fail(XSAVE_SIZE, XSAVE_HEADER.at(xoff, "size"), f"xsave size {size}, but xcnt says "
                                                  f"{ext.xsave_size} - 16 = {ext.xsave_size - 16}")
                data = self.blob(size, "xsave area")
                xsave = XsaveState(mask, data or b"")
            yield make_item((voff, "vcpu", PvVcpu(vcpu_id, ctx, extd, xsave) if self.collect else None))
        self.at("shared info")
        soff = src.offset
        yield make_item((soff, "shared_info", self.blob(SHARED_INFO_SIZE, "shared info page")))
        ck.note(f"PV tail: {count} unmapped PFNs, vcpus {online}")

    def read_hvm_tail(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        self.at("HVM tail")
        off = src.offset
        ioreq, bufioreq, store = self.read(HVM_MAGIC_PFNS)
        size = self.read(HVM_CONTEXT_SIZE)[0]
        if size == 0:
            ck.report(HVM_CONTEXT_EMPTY, HvmTail.LAYOUT.at(off, "size"), "empty HVM context")
        ctx = self.blob(size, "HVM context")
        ck.note(f"HVM tail: magic PFNs 0x{ioreq:x} 0x{bufioreq:x} 0x{store:x}, context {size} octets")
        yield make_item((off, "hvm_tail", HvmTail(ioreq, bufioreq, store, ctx) if self.collect else None))

    def read_qemu(self) -> Iterator[Item]:
        src, ck = self.src, self.checker
        self.at("qemu record")
        off = src.offset
        sig = self.read(QEMU_SIGNATURE)[0]
        if sig not in QEMU_HAS_LENGTH:
            ck.fail(QEMU_SIG, off, f"unknown qemu signature {sig!r}")
        if QEMU_HAS_LENGTH[sig]:
            size = self.read(QEMU_SIZE)[0]
            data = self.blob(size, "qemu save data")
        else:  # runs to the end of the input
            parts = []
            size = 0
            while True:
                piece = src.read_upto(1 << 16)
                if not piece:
                    break
                size += len(piece)
                if self.collect:
                    parts.append(piece)
            data = b"".join(parts)
        ck.note(f"qemu record {sig.decode('latin-1')}: {size} octets")
        yield make_item((off, "qemu", QemuRecord(sig, data or b"") if self.collect else None))


def decode_toolstack(blob: bytes, width: int, *, checker: Checker | None = None,
                     offset: int = 0) -> LibxlToolstack:
    """The legacy libxl toolstack blob of a ``width``-bit toolstack.

    Without a checker, the first refused finding raises :class:`StreamError`.
    ``offset`` is the blob's offset in the stream, for findings.
    """
    ck = checker or Checker(Role.RESTORE, fail_fast=True)
    if checker is None:
        ck.at(LAYER, None, "libxl toolstack")
    if len(blob) < TOOLSTACK_HEADER.size:
        ck.fail(TOOLSTACK_SHORT, offset, f"toolstack blob of {len(blob)} octets, fewer than 8")
    version, count = TOOLSTACK_HEADER.unpack(LE, blob)
    if version != 1:
        ck.fail(TOOLSTACK_VERSION, offset, f"toolstack blob version {version}, not 1")
    pos = TOOLSTACK_HEADER.size
    pad = PHYSMAP_PADDING[width]
    entries = []
    for i in range(count):
        if len(blob) - pos < LIBXL_PHYSMAP_INFO.size:
            ck.fail(PHYSMAP_TRUNCATED, offset + pos, f"physmap entry {i} of {count}: "
                                                     f"{len(blob) - pos} octets left, header needs 28")
        phys, start, size, namelen = LIBXL_PHYSMAP_INFO.unpack(LE, blob, pos)
        npos = pos + LIBXL_PHYSMAP_INFO.size
        if len(blob) - npos < namelen + pad:
            ck.fail(PHYSMAP_TRUNCATED, offset + npos,
                    f"physmap entry {i}: name of {namelen} octets"
                    f"{f' and {pad} octets of padding' if pad else ''} run past the blob "
                    f"({len(blob) - npos} octets left)")
        raw = blob[npos:npos + namelen]
        name: bytes | None = None
        terminated = True
        if namelen:
            if raw[-1] != 0:
                ck.report(PHYSMAP_NUL, offset + npos + namelen - 1,
                          f"physmap entry {i}: name {raw[:32]!r} is not NUL terminated")
                name, terminated = raw, False
            else:
                name = raw[:-1]
        padding = blob[npos + namelen:npos + namelen + pad]
        entries.append(PhysmapEntry(phys, start, size, name, padding if pad else b"\0\0\0\0", terminated))
        pos = npos + namelen + pad
    trailing = blob[pos:]
    if trailing:
        ck.report(PHYSMAP_TRAILING, offset + pos, f"{len(trailing)} octets follow the {count} entries")
    return LibxlToolstack(tuple(entries), version, None, trailing)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _ulongs(values, width: int) -> bytes:
    return struct.pack(f"<{len(values)}{'I' if width == 32 else 'Q'}", *values)


def encode_chunk(chunk: LegacyChunk, width: int) -> bytes:
    if isinstance(chunk, PageBatch):
        count = len(chunk.pfns) if chunk.count is None else chunk.count
        return CHUNK_TYPE.pack(LE, count) + _ulongs(chunk.pfns, width) + chunk.pages
    if isinstance(chunk, VcpuInfo):
        return (CHUNK_TYPE.pack(LE, Chunk.VCPU_INFO) + VCPU_INFO.pack(LE, chunk.max_vcpu_id)
                + struct.pack(f"<{len(chunk.vcpumap)}Q", *chunk.vcpumap))
    if isinstance(chunk, HvmParamChunk):
        return CHUNK_TYPE.pack(LE, chunk.type) + chunk.encode_body(LE)
    if isinstance(chunk, TscInfo):
        return CHUNK_TYPE.pack(LE, Chunk.TSC_INFO) + chunk.encode_body(LE)
    if isinstance(chunk, ToolstackChunk):
        blob = chunk.blob(width)
        return CHUNK_TYPE.pack(LE, Chunk.TOOLSTACK) + TOOLSTACK_CHUNK.pack(LE, len(blob)) + blob
    if isinstance(chunk, MarkerChunk):
        return CHUNK_TYPE.pack(LE, chunk.type)
    raise TypeError(f"not a legacy chunk: {chunk!r}")


def encode_extended_info(ext: ExtendedInfo, width: int) -> bytes:
    body = b"".join(b.encode_body(LE) for b in ext.blocks)
    sig = EXTENDED_INFO_SIGNATURE[width] if ext.signature is None else ext.signature
    total = len(body) if ext.total_size is None else ext.total_size
    return ULONG[width].pack(LE, sig) + EXTENDED_INFO_SIZE.pack(LE, total) + body


def encode(stream: LegacyStream) -> bytes:
    """The image bytes of a :class:`LegacyStream`; ``encode(decode(b)) == b``."""
    return b"".join(iter_encode(stream))


def iter_encode(stream: LegacyStream) -> Iterator[bytes]:
    w = stream.width
    if stream.xl is not None:
        yield stream.xl.encode()
    yield ULONG[w].pack(LE, stream.p2m_size)
    if stream.pv:
        yield encode_extended_info(stream.extended_info or ExtendedInfo(()), w)
        yield _ulongs(stream.p2m_frames, w)
    for chunk in stream.chunks:
        yield encode_chunk(chunk, w)
    yield CHUNK_TYPE.pack(LE, Chunk.END)
    tail = stream.tail
    if isinstance(tail, PvTail):
        count = len(tail.unmapped_pfns) if tail.unmapped_count is None else tail.unmapped_count
        yield UNMAPPED_PFN_COUNT.pack(LE, count) + _ulongs(tail.unmapped_pfns, w)
        for v in tail.vcpus:
            yield v.context
            if v.extended is not None:
                yield v.extended
            if v.xsave is not None:
                size = len(v.xsave.data) if v.xsave.size is None else v.xsave.size
                yield XSAVE_HEADER.pack(LE, v.xsave.xfeature_mask, size) + v.xsave.data
        yield tail.shared_info
    else:
        yield tail.encode_body(LE)
    if stream.qemu is not None:
        yield encode_qemu(stream.qemu)


def encode_qemu(q: QemuRecord) -> bytes:
    """The qemu record: signature, then (except for the xend-era signature) a length."""
    if QEMU_HAS_LENGTH.get(q.signature, True):
        return q.signature + QEMU_SIZE.pack(LE, len(q.data)) + q.data
    return q.signature + q.data


# --------------------------------------------------------------------------
# Builders (for examples, tests and strategies)
# --------------------------------------------------------------------------


def vcpu_context_size(guest_width: int) -> int:
    return {4: 0xAF0, 8: 0x1430}[guest_width]


def pattern_page(pfn: int) -> bytes:
    """A recognisable page for ``pfn``."""
    return (b"%08x" % pfn) * (PAGE_SIZE // 8)


def build_batches(pfns_and_types: list[tuple[int, int]], *, batch: int = MAX_BATCH,
                  page=pattern_page) -> tuple[PageBatch, ...]:
    """Page batches for ``(pfn, type nibble)`` pairs, ``batch`` entries at a time."""
    out = []
    for i in range(0, len(pfns_and_types), batch):
        part = pfns_and_types[i:i + batch]
        entries = tuple(pfn_entry(pfn, t) for pfn, t in part)
        data = b"".join(page(pfn) for pfn, t in part if t not in NO_DATA_TYPES)
        out.append(PageBatch(entries, data))
    return tuple(out)


def build_pv_stream(*, width: int = 64, guest_width: int = 8, p2m_size: int = 16,
                    pages: list[tuple[int, int]] | None = None, vcpus: list[int] = (0,),
                    max_vcpu_id: int | None = None, xsave_area: int = 0, extended: bool = True,
                    tsc: TscInfo | None = TscInfo(1, 123456789, 2000000, 3),
                    unmapped: tuple[int, ...] = (), toolstack: bytes | LibxlToolstack | None = None,
                    extra_chunks: tuple = (), last_checkpoint: bool = True,
                    xl: Any = None) -> LegacyStream:
    """A well-formed legacy PV image as ``xc_domain_save`` would write it.

    ``pages``: ``(pfn, type nibble)`` pairs (default: every PFN, NOTAB);
    ``xsave_area``: octets of each vcpu's xsave area (0: no xcnt block).
    """
    if pages is None:
        pages = [(p, 0) for p in range(p2m_size)]
    csize = vcpu_context_size(guest_width)
    blocks = [ExtInfoBlock(b"vcpu", bytes(csize))]
    if extended:
        blocks.append(ExtInfoBlock(b"extv"))
    if xsave_area:
        blocks.append(ExtInfoBlock(b"xcnt", XCNT_BLOCK.pack(LE, xsave_area + XSAVE_HEADER.size)))
    ext = ExtendedInfo(tuple(blocks))
    frames = tuple(0x1000 + i for i in range(p2m_frame_count(p2m_size, guest_width)))
    chunks: list = []
    if tsc is not None:
        chunks.append(tsc)
    chunks.extend(build_batches(pages))
    chunks.append(VcpuInfo.make(list(vcpus), max_vcpu_id))
    if toolstack is not None:
        chunks.append(ToolstackChunk(toolstack))
    chunks.extend(extra_chunks)
    if last_checkpoint:
        chunks.append(MarkerChunk(Chunk.LAST_CHECKPOINT))
    tail_vcpus = tuple(
        PvVcpu(v, bytes([v & 0xFF]) * csize,
               bytes([0xE0 | (v & 0xF)]) * EXTENDED_VCPU_CONTEXT_SIZE if extended else None,
               XsaveState(0x7, bytes([0x5A]) * xsave_area) if xsave_area else None)
        for v in sorted(vcpus))
    tail = PvTail(tuple(unmapped), tail_vcpus, bytes([0x51]) * SHARED_INFO_SIZE)
    return LegacyStream(width, PV, p2m_size, tuple(chunks), tail, ext, frames, None, xl)


def build_hvm_stream(*, width: int = 64, p2m_size: int = 32,
                     pages: list[tuple[int, int]] | None = None, vcpus: list[int] = (0,),
                     params: dict[int, int] | None = None,
                     tsc: TscInfo | None = TscInfo(0, 0, 2400000, 0),
                     toolstack: bytes | LibxlToolstack | None = None,
                     physmap: list[PhysmapEntry] | None = None,
                     magic: tuple[int, int, int] = (0xFEFFF, 0xFEFFE, 0xFEFFD),
                     context: bytes = b"HVM context blob" * 4,
                     qemu: QemuRecord | None = QemuRecord(b"DeviceModelRecord0002", b"QEVM" + bytes(60)),
                     extra_chunks: tuple = (), last_checkpoint: bool = True,
                     xl: Any = None) -> LegacyStream:
    """A well-formed legacy HVM image as ``xc_domain_save`` (and libxl) would write it.

    ``params``: HVM parameter chunk type -> value; ``physmap``: entries of a
    libxl toolstack blob (shorthand for ``toolstack=LibxlToolstack(...)``).
    """
    if pages is None:
        pages = [(p, 0) for p in range(p2m_size)]
    if params is None:
        params = {Chunk.HVM_IDENT_PT: 0xFEFFC000, Chunk.HVM_CONSOLE_PFN: 0xFEFFB,
                  Chunk.HVM_ACPI_IOPORTS_LOCATION: 1, Chunk.HVM_VM86_TSS: 0xFEFFA000}
    if physmap is not None:
        toolstack = LibxlToolstack(tuple(physmap))
    chunks: list = []
    if tsc is not None:
        chunks.append(tsc)
    chunks.extend(build_batches(pages))
    chunks.append(VcpuInfo.make(list(vcpus)))
    chunks.extend(HvmParamChunk(t, v) for t, v in params.items())
    if toolstack is not None:
        chunks.append(ToolstackChunk(toolstack))
    chunks.extend(extra_chunks)
    if last_checkpoint:
        chunks.append(MarkerChunk(Chunk.LAST_CHECKPOINT))
    tail = HvmTail(*magic, context)
    return LegacyStream(width, HVM, p2m_size, tuple(chunks), tail, None, (), qemu, xl)


def sample_physmap(n: int = 2) -> list[PhysmapEntry]:
    names = [b"vga.vram", b"xen.ram", b"rom", b"pc.bios", b"e1000.rom"]
    return [PhysmapEntry(0xF0000000 + i * 0x1000000, 0xF0000000 + i * 0x1000000, 0x800000,
                         names[i % len(names)]) for i in range(n)]


# --------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------


def validate(src: Source, checker: Checker, **options: Any) -> None:
    for _ in LegacyReader(src, checker, **options).items():
        pass


def decode(data: bytes | bytearray | memoryview | Source, *, role: Role = Role.RESTORE,
           **options: Any) -> LegacyStream:
    """Decode a legacy image; ``options`` as in ``_DEFAULTS``.  Raises StreamError."""
    src = data if isinstance(data, Source) else Source.from_bytes(data)
    return stream_of(LegacyReader(src, Checker(role, fail_fast=True), collect=True, **options).items())


def stream_of(items) -> LegacyStream:
    """The :class:`LegacyStream` of the items a collecting :class:`LegacyReader` yields."""
    xl_header = info = tail = qemu = None
    chunks: list = []
    vcpus: list[PvVcpu] = []
    unmapped: tuple[int, ...] = ()
    for _, kind, value in items:
        if kind in ("chunk", "page_batch"):
            chunks.append(value)
        elif kind == "vcpu":
            vcpus.append(value)
        elif kind == "image info":
            info = value
        elif kind == "xl_header":
            xl_header = value
        elif kind == "unmapped_pfns":
            unmapped = value
        elif kind == "shared_info":
            tail = PvTail(unmapped, tuple(vcpus), value)
        elif kind == "hvm_tail":
            tail = value
        elif kind == "qemu":
            qemu = value
    return LegacyStream(info.width, info.guest, info.p2m_size, tuple(chunks), tail, info.extended_info,
                        info.p2m_frames, qemu, xl_header)


def dump_item(reader: LegacyReader, item: Item) -> dict | None:
    """The ``xenstream dump`` dict of the item a (collecting) ``reader`` just yielded; None for
    ``image info``, which repeats what the items before it said."""
    offset, kind, value = item
    if kind == "image info":
        return None
    if kind == "end_of_body":
        kind, fields = "chunk", {"type": Chunk.END, "name": CHUNK_NAMES[Chunk.END]}
    else:
        fields = _DUMP_FIELDS[kind](reader, value)
    return {"layer": LAYER, "kind": kind.replace("_", " "), "offset": offset, "fields": fields}


def _chunk_fields(reader: LegacyReader, chunk) -> dict:
    out = {"type": chunk.type if not isinstance(chunk, (VcpuInfo, ToolstackChunk, TscInfo))
           else Chunk.VCPU_INFO if isinstance(chunk, VcpuInfo)
           else Chunk.TSC_INFO if isinstance(chunk, TscInfo) else Chunk.TOOLSTACK}
    out["name"] = CHUNK_NAMES[out["type"]]
    if isinstance(chunk, HvmParamChunk):
        out["value"] = chunk.value
    elif isinstance(chunk, TscInfo):
        out.update(mode=chunk.mode, nsec=chunk.nsec, khz=chunk.khz, incarnation=chunk.incarnation)
    elif isinstance(chunk, VcpuInfo):
        out.update(max_vcpu_id=chunk.max_vcpu_id, online=chunk.online())
    elif isinstance(chunk, ToolstackChunk):
        out["length"] = reader.toolstack_length
        if isinstance(chunk.data, LibxlToolstack):
            out["physmap"] = [{"phys_offset": e.phys_offset, "start_addr": e.start_addr, "size": e.size,
                               "name": None if e.name is None else e.name.decode("latin-1")}
                              for e in chunk.data.entries]
    return out


_DUMP_FIELDS = {
    "xl_header": lambda r, h: {"mandatory_flags": h.mandatory_flags, "optional_flags": h.optional_flags,
                               "optional_data_len": len(h.optional_data)},
    "image": lambda r, k: {"width": k.width, "guest": guest_name(k.guest), "detected": k.detected},
    "p2m_size": lambda r, n: {"p2m_size": n},
    "ext_block": lambda r, b: {"id": b.id.decode("latin-1"), "size": len(b.data)},
    "p2m_frames": lambda r, frames: {"count": len(frames)},
    "chunk": _chunk_fields,
    "page_batch": lambda r, b: {"count": len(b.pfns), "present": b.present()},
    "unmapped_pfns": lambda r, pfns: {"count": len(pfns)},
    "vcpu": lambda r, v: {"vcpu_id": v.vcpu_id},
    "shared_info": lambda r, data: {},
    "hvm_tail": lambda r, t: {"ioreq_pfn": t.ioreq_pfn, "bufioreq_pfn": t.bufioreq_pfn, "store_pfn": t.store_pfn,
                              "context_size": len(t.context)},
    "qemu": lambda r, q: {"signature": q.signature.decode("latin-1"), "size": len(q.data)},
}


def dump(src: Source, checker: Checker, **options: Any) -> Iterator[dict]:
    """``xenstream dump``: each part as it is read (nothing is kept)."""
    return dump_items(LegacyReader(src, checker, collect=True, **options))


def sniff(data: bytes) -> tuple[int | None, str | None]:
    return None, "little"  # x86 toolstacks wrote legacy images in host (little-endian) order


def spans(data: bytes, options: dict | None = None, base: int = 0, out: list | None = None) -> tuple[list, int]:
    """The items from ``base`` at the offsets the dump reports (an image says nothing of its
    items' sizes but through the reader); where they stop."""
    return spans_of_dump(dump, data, options, base, out, LAYER)


def recognise(prefix: bytes) -> str | None:
    """No magic: the libxc spec's "Legacy Images" test on octets 4-7 (:func:`detect`), with a
    ``p2m_size`` in range and, after it, the extended-info signature (PV) or a chunk type (HVM)."""
    if len(prefix) < 16 or prefix[:8] == b"\xff" * 8 or prefix.startswith(xl.MAGIC):
        return None
    det = detect(prefix, xl_header=False)
    if det.width is None or det.guest is None:
        return None
    word = ULONG[det.width]
    if not 1 <= word.unpack(LE, prefix)[0] <= MAX_P2M_SIZE:
        return None
    if det.guest is PV:
        plausible = word.unpack(LE, prefix, word.size)[0] == EXTENDED_INFO_SIGNATURE[det.width]
    else:
        plausible = LOWEST_CHUNK <= CHUNK_TYPE.unpack(LE, prefix, word.size)[0] <= MAX_BATCH
    if not plausible:
        return None
    return f"no magic; a legacy image by the libxc spec's 'Legacy Images' test: {det.reason}"


def trim_page_batches(data: bytes, options: dict | None = None) -> Iterator[bytes]:
    """The codec's ``trim``: each page batch the reader finds, cut to its first pages."""
    data = bytes(data)
    width, batches = None, []
    try:
        for item in dump(Source.from_bytes(data), Checker(), **(options or {})):
            if item.get("kind") == "image":
                width = item["fields"].get("width")
            elif item.get("kind") == "page batch":
                batches.append(item["offset"])
    except Exception:  # noqa: BLE001 - a malformed stream stops the dump anywhere
        pass
    if width not in ULONG:
        return
    entry = ULONG[width]
    for a in batches:
        count = CHUNK_TYPE.get(Endian.LITTLE, data, "type", a)
        pfns_at = a + CHUNK_TYPE.size
        if count is None or count < 2 or pfns_at + entry.size * count > len(data):
            continue
        entries = [entry.get(Endian.LITTLE, data, "value", pfns_at + entry.size * i) for i in range(count)]
        with_data = [page_has_data(x) for x in entries]
        pages_at = pfns_at + entry.size * count
        end = pages_at + PAGE_SIZE * sum(with_data)
        if end > len(data):
            continue
        for k in sorted({1, count // 2} - {0, count}):
            n_pages = sum(with_data[:k])
            batch = PageBatch(tuple(entries[:k]), data[pages_at:pages_at + PAGE_SIZE * n_pages])
            yield data[:a] + encode_chunk(batch, width) + data[end:]


CODEC = Codec(
    name="legacy",
    description="legacy (pre-v2) libxc image, optionally with an xl header, libxl toolstack blob "
                "and qemu record",
    validate=validate,
    decode=decode,
    encode=encode,
    dump=dump,
    options=tuple(_DEFAULTS),
    sniff=sniff,
    spans=spans,
    trim=trim_page_batches,
    recognise=recognise,
    recognise_by_magic=False,
)

"""The contents of the opaque blobs in writer-profile streams: the one seam.

The writer profiles (:mod:`.profiles`) decide *which* records a Xen writer
sends, in which order and with which sizes and field values.  The contents
the spec leaves to the Xen public ABI (an HVM save record sequence, a
``vcpu_guest_context``, CPU policy entries, page tables, the start info page)
come from here and from nowhere else, so that building them from the ABI
module (``reference/xen_abi.py``, when it exists) is a change to this file
alone.

When ``reference/xen_abi.py`` is present (it builds the ABI structures from
Xen's public headers, as a real guest has them) every function here takes
its contents from it.  Without it, the fallbacks are stand-ins with the ABI's
sizes and the few fields Xen's restore code reads to find its way (a PV
vcpu's cr3 and start info frame, the start info page's xenstore and console
frames, page-table entries naming the stream's own pfns); sizes and offsets
are those of Xen's public headers (``public/arch-x86/xen-x86_{32,64}.h``,
``public/domctl.h``, ``public/xen.h``, ``public/arch-x86/hvm/save.h``),
checked against Debian's ``libxen-dev`` 4.17 headers.

What stays with the profiles is what the *writer* decides: which pages a
batch holds, which params the saver's list has, which records appear.
"""

from __future__ import annotations

import hashlib
import struct

from .formats import import_optional

#: Set when the ABI module exists; the profiles then take its contents.
ABI = import_optional("xenstream.reference.xen_abi")

PAGE = 4096

# public/arch-x86/xen-x86_{32,64}.h: sizeof(vcpu_guest_context) and the offsets libxenguest reads
VCPU_CONTEXT_SIZE = {4: 2800, 8: 5168}
_VCPU_FLAGS = 512                    # both widths: after the 512-octet fpu_ctxt
_VCPU_EDX = {4: 524, 8: 616}         # user_regs.edx / rdx: the start info frame on suspend
_VCPU_CTRLREG = {4: 2716, 8: 4984}   # ctrlreg[0..7]
VGCF_IN_KERNEL, VGCF_ONLINE = 1 << 2, 1 << 5
# public/xen.h: start_info's store_mfn and console.domU.mfn, each a guest-width word
_START_INFO = {4: (44, 52), 8: (56, 72)}
START_INFO_MAGIC = {4: b"xen-3.0-x86_32p", 8: b"xen-3.0-x86_64"}
# public/domctl.h: struct xen_domctl_ext_vcpucontext (mcg_ext_ctl joined the vmce part in 4.10)
EXT_VCPUCONTEXT_SIZE = {"4.6": 56, "4.10": 64}
# XEN_DOMCTL_getvcpuextstate: xcr0, xcr0_accum, then the XSAVE area (x87, SSE, AVX: 576 + 256)
XSAVE_HEADER = 16
XSAVE_AREA = 832
XCR0 = 0x7
# public/arch-x86/hvm/save.h
HVM_SAVE_MAGIC = 0x54381286
HVM_SAVE_VERSION = 1
_PTE_FLAGS = 0x67  # present, rw, user, accessed, dirty


def pattern(seed: int, size: int) -> bytes:
    """``size`` deterministic octets from ``seed`` (guest memory, registers nobody reads)."""
    block = hashlib.sha256(b"xenstream-profile" + seed.to_bytes(16, "little", signed=True)).digest()
    return (block * (size // len(block) + 1))[:size]


def _put(buf: bytearray, offset: int, width: int, value: int) -> None:
    buf[offset:offset + width] = value.to_bytes(width, "little")


def cr3_of(pfn: int, width: int) -> int:
    """xen_pfn_to_cr3 of the guest's width (public/arch-x86/xen-x86_{32,64}.h)."""
    if width == 4:
        return ((pfn << 12) | (pfn >> 20)) & 0xFFFFFFFF
    return pfn << 12


def _rel(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def vcpu_basic(width: int, vcpu_id: int, *, cr3_pfn: int, start_info_pfn: int | None) -> bytes:
    """X86_PV_VCPU_BASIC context: a vcpu_guest_context of ``width`` as the saver normalises it
    (cr3 and, for vcpu 0, edx as pfns; xg_sr_save_x86_pv.c, write_one_vcpu_basic())."""
    buf = bytearray(VCPU_CONTEXT_SIZE[width])
    _put(buf, _VCPU_FLAGS, width, VGCF_IN_KERNEL | VGCF_ONLINE)
    if start_info_pfn is not None:
        _put(buf, _VCPU_EDX[width], width, start_info_pfn)
    _put(buf, _VCPU_CTRLREG[width] + 3 * width, width, cr3_of(cr3_pfn, width))
    return bytes(buf)


def vcpu_extended(release: tuple[int, int], vcpu_id: int, width: int = 8) -> bytes:
    """X86_PV_VCPU_EXTENDED context: the whole xen_domctl_ext_vcpucontext, vcpu and size first
    (56 octets before 4.10, whose vmce part had no mcg_ext_ctl)."""
    size = EXT_VCPUCONTEXT_SIZE["4.10" if release >= (4, 10) else "4.6"]
    if ABI is not None:
        full = ABI.vcpu_extended(width, vcpu_id)
        return full[:4] + struct.pack("<I", size) + full[8:size]
    buf = bytearray(size)
    struct.pack_into("<II", buf, 0, vcpu_id, size)
    return bytes(buf)


def vcpu_xsave(vcpu_id: int) -> bytes:
    """X86_PV_VCPU_XSAVE context: xcr0, xcr0_accum and the XSAVE area."""
    if ABI is not None:
        return ABI.vcpu_xsave(xcr0=XCR0)
    area = bytearray(XSAVE_AREA)
    struct.pack_into("<Q", area, 512, XCR0)  # xsave header: xstate_bv
    return struct.pack("<QQ", XCR0, XCR0) + bytes(area)


def vcpu_msrs(entries) -> bytes:
    """X86_PV_VCPU_MSRS context: xen_domctl_vcpu_msr_t entries (index, reserved, value)."""
    return b"".join(struct.pack("<IIQ", index, 0, value) for index, value in entries)


def shared_info(width: int, seed: int, *, vcpus: int = 1, max_pfn: int = 0) -> bytes:
    """SHARED_INFO: the guest's shared info page as the saver copies it."""
    if ABI is not None:
        return ABI.shared_info(width, vcpus=vcpus, max_pfn=max_pfn)
    return pattern(0x5151 + seed, PAGE)


def start_info_page(width: int, *, nr_pages: int, store_pfn: int, console_pfn: int) -> bytes:
    """The start info page of a suspended PV guest: the guest kernel has turned the xenstore and
    console frames into pfns before suspending (libxenguest's process_start_info() reads them)."""
    buf = bytearray(PAGE)
    magic = START_INFO_MAGIC[width]
    buf[:len(magic)] = magic
    _put(buf, 32, width, nr_pages)
    store, console = _START_INFO[width]
    _put(buf, store, width, store_pfn)
    _put(buf, console, width, console_pfn)
    return bytes(buf)


def page_table(width: int, entries: list[int]) -> bytes:
    """A normalised page-table page: entry ``i`` maps pfn ``entries[i]`` (pfns, not mfns, in the stream)."""
    size = 8  # PAE and 4-level entries are 64 bits wide
    buf = bytearray(PAGE)
    for i, pfn in enumerate(entries):
        _put(buf, i * size, size, (pfn << 12) | _PTE_FLAGS)
    return bytes(buf)


def p2m_frame_page(width: int, mfns: list[int]) -> bytes:
    """A frame of the guest's p2m table (its entries are rewritten by the restore)."""
    buf = bytearray(PAGE)
    for i, mfn in enumerate(mfns[:PAGE // width]):
        _put(buf, i * width, width, mfn)
    return bytes(buf)


def ram_page(pfn: int, seed: int) -> bytes:
    return pattern((seed << 32) | pfn, PAGE)


def cpuid_policy(release: tuple[int, int], guest: str) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """X86_CPUID_POLICY leaves (xen_cpuid_leaf_t: leaf, subleaf, a, b, c, d; XEN_CPUID_NO_SUBLEAF
    where a leaf has none), as xc_cpu_policy_serialise() lays them out: basic leaves in order."""
    if ABI is not None:
        return ABI.cpuid_policy("hvm" if guest == "hvm" else "pv", release=_rel(release))
    none = 0xFFFFFFFF
    return ((0x0, none, 0xD, 0x756E6547, 0x6C65746E, 0x49656E69),
            (0x1, none, 0x000906EA, 0x00100800, 0xF7FA3203, 0x1F8BFBFF),
            (0x7, 0x0, 0x0, 0x009C4FBB, 0x0, 0xBC000400),
            (0xD, 0x0, XCR0, 0x340, 0x340, 0x0),
            (0xD, 0x1, 0x1, 0x0, 0x0, 0x0),
            (0x80000000, none, 0x80000008, 0x0, 0x0, 0x0),
            (0x80000001, none, 0x0, 0x0, 0x121, 0x2C100800))


def msr_policy(release: tuple[int, int], guest: str) -> tuple[tuple[int, int, int], ...]:
    """X86_MSR_POLICY entries (xen_msr_entry_t: idx, flags, val): MSR_INTEL_PLATFORM_INFO and
    MSR_ARCH_CAPABILITIES, the MSRs the policy carries."""
    if ABI is not None:
        return ABI.msr_policy(release=_rel(release))
    return ((0xCE, 0, 0x0), (0x10A, 0, 0x0))


def hvm_context(release: tuple[int, int], vcpus: int, *, gtsc_khz: int) -> bytes:
    """HVM_CONTEXT: what XEN_DOMCTL_gethvmcontext returns, a sequence of HVM save records.

    The stand-in holds the save header and the END record only (typed
    descriptors: typecode, instance, length; public/arch-x86/hvm/save.h)."""
    if ABI is not None:
        return ABI.hvm_context(vcpus, release=_rel(release), gtsc_khz=gtsc_khz)
    header = struct.pack("<IIQII", HVM_SAVE_MAGIC, HVM_SAVE_VERSION, 0, 0x000906EA, gtsc_khz)
    return (struct.pack("<HHI", 1, 0, len(header)) + header  # HEADER, instance 0
            + struct.pack("<HHI", 0, 0, 0))                    # END


def emulator_context(emulator: int, seed: int) -> bytes:
    """EMULATOR_CONTEXT: the device model's save file (QEMU's "QEVM" stream, version 3, ending
    with QEMU_VM_EOF); the spec leaves its format to the emulator."""
    body = pattern(0xE1 + seed, 40)
    return b"QEVM" + struct.pack(">I", 3) + body + b"\x00"


class PvLayout:
    """A consistent scaled-down x86 PV guest: which pfn holds what, each page's type and content.

    From ``xen_abi.pv_guest`` when present (start info, xenstore, console and
    GDT pages, the page-table tree with its pinned root, the p2m frames, every
    frame reference consistent), else the stand-in below.  ``ram`` lists the
    ordinary pages (what a running guest dirties)."""

    def __init__(self, width: int, ram_pages: int, vcpus: int, seed: int):
        self.width, self.vcpus = width, vcpus
        if ABI is not None:
            g = ABI.pv_guest(width, ABI.pv_min_pages(width) + ram_pages, vcpus)
            self.p2m_size = g.pages
            self.cr3_pfn, self.start_info_pfn, self.p2m_frames = g.cr3_pfn, g.start_info_pfn, g.p2m_pfns
            structural = set(g.p2m_pfns) | {g.start_info_pfn, g.store_pfn, g.console_pfn, g.gdt_pfn} \
                | {pfn for pfn, _ in g.pagetables}
            self.ram = tuple(p for p in range(g.pages) if p not in structural)
            self.pages = tuple((pfn, g.page_type(pfn), g.page(pfn) if pfn in structural
                                else ram_page(pfn, seed)) for pfn in range(g.pages))
            self._contexts = [g.vcpu_context(v) for v in range(vcpus)]
            return
        levels = 3 if width == 4 else 4
        start_info, store, console = 0, 1, 2
        tables = list(range(3, 3 + levels))
        p2m_frame = 3 + levels
        first_ram = p2m_frame + 1
        self.ram = tuple(range(first_ram, first_ram + ram_pages))
        self.p2m_size = first_ram + ram_pages
        self.cr3_pfn, self.start_info_pfn, self.p2m_frames = tables[0], start_info, (p2m_frame,)
        top = 0xC if levels == 4 else 0xB   # L4TAB|LPINTAB, L3TAB|LPINTAB
        kinds = [top] + [1 + lvl for lvl in range(levels - 2, -1, -1)]
        pages = [(start_info, 0, start_info_page(width, nr_pages=self.p2m_size, store_pfn=store,
                                                 console_pfn=console)),
                 (store, 0, bytes(PAGE)), (console, 0, bytes(PAGE))]
        for i, pfn in enumerate(tables):
            entries = list(range(self.p2m_size)) if i == len(tables) - 1 else [tables[i + 1]]
            pages.append((pfn, kinds[i], page_table(width, entries)))
        pages.append((p2m_frame, 0, p2m_frame_page(width, [0x10000 + x for x in range(self.p2m_size)])))
        pages += [(pfn, 0, ram_page(pfn, seed)) for pfn in self.ram]
        self.pages = tuple(pages)
        self._contexts = [vcpu_basic(width, v, cr3_pfn=self.cr3_pfn,
                                     start_info_pfn=start_info if v == 0 else None) for v in range(vcpus)]

    def vcpu_context(self, vcpu: int) -> bytes:
        return self._contexts[vcpu]

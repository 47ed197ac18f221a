"""The contents of the opaque blobs in writer-profile streams: the one seam.

The writer profiles (:mod:`.profiles`) decide *which* records a Xen writer
sends, in which order and with which sizes and field values.  The contents
the spec leaves to the Xen public ABI (an HVM save record sequence, a
``vcpu_guest_context``, CPU policy entries, page tables, the start info page)
come from here, which takes them from :mod:`.xen_abi` (built from Xen's
public headers, as a real guest has them), and from nowhere else.

What stays with the profiles is what the *writer* decides: which pages a
batch holds, which params the saver's list has, which records appear.
"""

from __future__ import annotations

import hashlib
import struct

from . import xen_abi as ABI

PAGE = 4096

# public/domctl.h: struct xen_domctl_ext_vcpucontext (mcg_ext_ctl joined the vmce part in 4.10)
EXT_VCPUCONTEXT_SIZE = {"4.6": 56, "4.10": 64}
XCR0 = 0x7


def pattern(seed: int, size: int) -> bytes:
    """``size`` deterministic octets from ``seed`` (guest memory, registers nobody reads)."""
    block = hashlib.sha256(b"xenstream-profile" + seed.to_bytes(16, "little", signed=True)).digest()
    return (block * (size // len(block) + 1))[:size]


def _rel(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def vcpu_extended(release: tuple[int, int], vcpu_id: int, width: int = 8) -> bytes:
    """X86_PV_VCPU_EXTENDED context: the whole xen_domctl_ext_vcpucontext, vcpu and size first
    (56 octets before 4.10, whose vmce part had no mcg_ext_ctl)."""
    size = EXT_VCPUCONTEXT_SIZE["4.10" if release >= (4, 10) else "4.6"]
    full = ABI.vcpu_extended(width, vcpu_id)
    at = ABI.XEN_DOMCTL_EXT_VCPUCONTEXT.offset("size")
    return full[:at] + struct.pack("<I", size) + full[at + 4:size]


def vcpu_xsave(vcpu_id: int) -> bytes:
    """X86_PV_VCPU_XSAVE context: xcr0, xcr0_accum and the XSAVE area."""
    return ABI.vcpu_xsave(xcr0=XCR0)


def vcpu_msrs(entries) -> bytes:
    """X86_PV_VCPU_MSRS context: xen_domctl_vcpu_msr_t entries (index, reserved, value)."""
    return b"".join(ABI.XEN_DOMCTL_VCPU_MSR.pack(index=index, value=value) for index, value in entries)


def shared_info(width: int, seed: int, *, vcpus: int = 1, max_pfn: int = 0) -> bytes:
    """SHARED_INFO: the guest's shared info page as the saver copies it."""
    return ABI.shared_info(width, vcpus=vcpus, max_pfn=max_pfn)


def ram_page(pfn: int, seed: int) -> bytes:
    return pattern((seed << 32) | pfn, PAGE)


def cpuid_policy(release: tuple[int, int], guest: str) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """X86_CPUID_POLICY leaves (xen_cpuid_leaf_t), as xc_cpu_policy_serialise() lays them out."""
    return ABI.cpuid_policy("hvm" if guest == "hvm" else "pv", release=_rel(release))


def msr_policy(release: tuple[int, int], guest: str) -> tuple[tuple[int, int, int], ...]:
    """X86_MSR_POLICY entries (xen_msr_entry_t: idx, flags, val)."""
    return ABI.msr_policy(release=_rel(release))


def hvm_context(release: tuple[int, int], vcpus: int, *, gtsc_khz: int) -> bytes:
    """HVM_CONTEXT: what XEN_DOMCTL_gethvmcontext returns, a sequence of HVM save records."""
    return ABI.hvm_context(vcpus, release=_rel(release), gtsc_khz=gtsc_khz)


def emulator_context(emulator: int, seed: int) -> bytes:
    """EMULATOR_CONTEXT: the device model's save file (QEMU's "QEVM" stream, version 3, ending
    with QEMU_VM_EOF); the spec leaves its format to the emulator."""
    body = pattern(0xE1 + seed, 40)
    return b"QEVM" + struct.pack(">I", 3) + body + b"\x00"


class PvLayout:
    """A consistent scaled-down x86 PV guest (``xen_abi.pv_guest``): start info, xenstore,
    console and GDT pages, the page-table tree with its pinned root, the p2m frames, every
    frame reference consistent; ``ram`` lists the ordinary pages (what a running guest dirties)."""

    def __init__(self, width: int, ram_pages: int, vcpus: int, seed: int):
        self.width, self.vcpus = width, vcpus
        g = ABI.pv_guest(width, ABI.pv_min_pages(width) + ram_pages, vcpus)
        self.p2m_size = g.pages
        self.cr3_pfn, self.start_info_pfn, self.p2m_frames = g.cr3_pfn, g.start_info_pfn, g.p2m_pfns
        structural = set(g.p2m_pfns) | {g.start_info_pfn, g.store_pfn, g.console_pfn, g.gdt_pfn} \
            | {pfn for pfn, _ in g.pagetables}
        self.ram = tuple(p for p in range(g.pages) if p not in structural)
        self.pages = tuple((pfn, g.page_type(pfn), g.page(pfn) if pfn in structural
                            else ram_page(pfn, seed)) for pfn in range(g.pages))
        self._contexts = [g.vcpu_context(v) for v in range(vcpus)]

    def vcpu_context(self, vcpu: int) -> bytes:
        return self._contexts[vcpu]

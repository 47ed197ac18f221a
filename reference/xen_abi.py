"""The Xen public ABI structures that libxc stream records carry.

The libxc stream specification leaves the content of several records to the
Xen ABI: HVM_CONTEXT is "the HVM context" (a sequence of HVM save records),
X86_PV_VCPU_BASIC is "a vcpu_guest_context", X86_CPUID_POLICY and
X86_MSR_POLICY are arrays of ``xen_cpuid_leaf_t`` / ``xen_msr_entry_t``,
HVM_PARAMS are ``HVM_PARAM_*`` values, and a PV guest's pages hold its start
info, page tables and p2m.  A real restorer hands those bodies to the
hypervisor, which refuses what it cannot load.  This module builds them the way
a real guest has them, so that a valid stream of this suite is one a real Xen
would restore.

Every layout here (a :class:`CStruct`, reference/layout.py's layer) is written from Xen's public headers (``xen/include/public``
in the Xen tree; Debian installs them as ``/usr/include/xen``) of the release
named in its docstring; sizes are checked in the tests against the installed
headers when ``cc`` and ``libxen-dev`` are present.  Standard library only.

Public API (stable; the writer profiles build on it)
----------------------------------------------------

Layouts (:class:`CStruct`: ``size``, ``offset(field)``, ``pack(**fields)``,
``unpack(data)``): :data:`HVM_SAVE_DESCRIPTOR`, :data:`HVM_SAVE_HEADER`,
:data:`HVM_HW_CPU`, :func:`hvm_hw_lapic`, :data:`HVM_HW_LAPIC_REGS`,
:data:`HVM_HW_MTRR`, :data:`CPU_USER_REGS`, :data:`VCPU_GUEST_CONTEXT`,
:data:`START_INFO`, :data:`SHARED_INFO`, :data:`VCPU_INFO`,
:data:`XEN_CPUID_LEAF`, :data:`XEN_MSR_ENTRY`, :data:`XEN_DOMCTL_VCPU_MSR`,
:data:`XEN_DOMCTL_EXT_VCPUCONTEXT`, :data:`GRANT_ENTRY_V1` (the dicts are keyed
by guest width in octets, 4 or 8).

Record bodies:

``hvm_context(vcpus, *, release="4.17", mode="long") -> bytes``
    an HVM_CONTEXT body: save header, CPU, LAPIC, LAPIC_REGS and MTRR records
    per vCPU, END;
``hvm_save_records(data) -> list[HvmSaveRecord]``
    the records of an HVM context (raises :class:`AbiError` on a bad one);
``hvm_params(*, release="4.17") -> tuple[(index, value), ...]``
    what a libxl-built HVM guest has set;
``cpuid_policy(guest="hvm", *, release="4.17") -> tuple[(leaf, subleaf, a, b, c, d), ...]``
``msr_policy(*, release="4.17") -> tuple[(idx, flags, val), ...]``
    CPU policy entries in Xen's serialised order and real sizes;
``vcpu_guest_context(width, **fields) -> bytes``
``vcpu_extended(width) -> bytes``, ``vcpu_xsave(*, xcr0) -> bytes``,
``vcpu_msrs(vcpu) -> bytes``
    X86_PV_VCPU_* contexts (without the record's vcpu_id/reserved header);
``start_info(width, **fields) -> bytes``, ``shared_info(width, *, vcpus, max_pfn) -> bytes``
    one page each;
``pv_guest(width, pages, vcpus) -> PvGuest``
    a consistent x86 PV guest: which pfn holds what, each page's type and
    content, its vCPU contexts, p2m frames and shared info.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from .layout import Endian, Layout, field, pad
from .libxc import CPUID_LEAF, MSR_ENTRY

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: Releases whose layouts this module knows; layouts that changed say so.
RELEASES = ("4.17", "4.20")
DEFAULT_RELEASE = "4.17"


class AbiError(ValueError):
    """A structure that does not follow the ABI (used when parsing)."""


def _release_key(release: str) -> tuple[int, int]:
    try:
        major, minor = release.split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        raise ValueError(f"release {release!r}: expected MAJOR.MINOR, e.g. 4.17") from None


# --------------------------------------------------------------------------
# Declaring a C structure once
# --------------------------------------------------------------------------


class CStruct(Layout):
    """A little-endian C structure of the Xen ABI: a :class:`~.layout.Layout` declared as
    (field, struct format) pairs, with explicit padding (format ``"Nx"`` under the name
    ``None``), whose size is checked against ``expect`` so that a mistake in a declaration
    fails at import.

    ``pack(**values)`` zero-fills every field not given (bytes fields with NUL octets);
    ``unpack(data)`` returns a dict of the named fields (:class:`AbiError` when ``data`` is
    too short); ``offset(name)`` is the field's octet offset.
    """

    def __init__(self, name: str, fields: list[tuple[str | None, str]], *, expect: int, source: str):
        super().__init__(name, *(pad(struct.calcsize(f)) if fname is None else field(fname, f)
                                 for fname, f in fields))
        if self.size != expect:
            raise AssertionError(f"{name}: declared {self.size} octets, the ABI says {expect}")
        self.source = source

    def pack(self, **values) -> bytes:
        return self.encode(Endian.LITTLE, **values)

    def unpack(self, data: bytes, offset: int = 0) -> dict:
        if len(data) - offset < self.size:
            raise AbiError(f"{self.name}: {len(data) - offset} octets, need {self.size}")
        return self.values(Endian.LITTLE, data, offset)


def _regs(prefix: str, names: str, fmt: str) -> list[tuple[str, str]]:
    return [(f"{prefix}{n}", fmt) for n in names.split()]


# --------------------------------------------------------------------------
# HVM save records: xen/include/public/arch-x86/hvm/save.h and hvm/save.h
# --------------------------------------------------------------------------

HVM_SAVE_SRC = "xen/include/public/arch-x86/hvm/save.h"

#: ``struct hvm_save_descriptor`` (public/hvm/save.h): typecode, instance, length.
HVM_SAVE_DESCRIPTOR = CStruct("hvm_save_descriptor", [
    ("typecode", "H"), ("instance", "H"), ("length", "I")],
    expect=8, source="xen/include/public/hvm/save.h, Xen 4.17")

#: ``struct hvm_save_header`` (HVM_SAVE_CODE(HEADER) = 1).
HVM_SAVE_HEADER = CStruct("hvm_save_header", [
    ("magic", "I"), ("version", "I"), ("changeset", "Q"), ("cpuid", "I"), ("gtsc_khz", "I")],
    expect=24, source=f"{HVM_SAVE_SRC}, Xen 4.17")

HVM_FILE_MAGIC = 0x54381286
HVM_FILE_VERSION = 1

_SEGS = "cs ds es fs gs ss tr ldtr"
#: ``struct hvm_hw_cpu`` (HVM_SAVE_CODE(CPU) = 2), one per vCPU; 1032 octets since Xen 4.? (the
#: ``flags``/``pad0`` pair closed the structure; older streams are zero-extended by Xen).
HVM_HW_CPU = CStruct("hvm_hw_cpu", [
    ("fpu_regs", "512s"),
    *_regs("", "rax rbx rcx rdx rbp rsi rdi rsp r8 r9 r10 r11 r12 r13 r14 r15", "Q"),
    ("rip", "Q"), ("rflags", "Q"),
    *_regs("", "cr0 cr2 cr3 cr4", "Q"),
    *_regs("", "dr0 dr1 dr2 dr3 dr6 dr7", "Q"),
    *[(f"{s}_sel", "I") for s in _SEGS.split()],
    *[(f"{s}_limit", "I") for s in (_SEGS + " idtr gdtr").split()],
    *[(f"{s}_base", "Q") for s in (_SEGS + " idtr gdtr").split()],
    *[(f"{s}_arbytes", "I") for s in _SEGS.split()],
    *_regs("", "sysenter_cs sysenter_esp sysenter_eip shadow_gs msr_flags msr_lstar msr_star "
               "msr_cstar msr_syscall_mask msr_efer msr_tsc_aux tsc", "Q"),
    ("pending_event", "I"), ("error_code", "I"), ("flags", "I"), ("pad0", "I")],
    expect=1032, source=f"{HVM_SAVE_SRC}, Xen 4.17 and 4.20")
XEN_X86_FPU_INITIALISED = 1

_LAPIC_4_17 = CStruct("hvm_hw_lapic", [
    ("apic_base_msr", "Q"), ("disabled", "I"), ("timer_divisor", "I"), ("tdt_msr", "Q")],
    expect=24, source=f"{HVM_SAVE_SRC}, Xen 4.17")
_LAPIC_4_20 = CStruct("hvm_hw_lapic", [
    ("apic_base_msr", "Q"), ("disabled", "I"), ("timer_divisor", "I"), ("tdt_msr", "Q"),
    ("pending_esr", "I"), (None, "4x")],
    expect=32, source=f"{HVM_SAVE_SRC}, Xen 4.20 (pending_esr added)")


def hvm_hw_lapic(release: str = DEFAULT_RELEASE) -> CStruct:
    """``struct hvm_hw_lapic`` (HVM_SAVE_CODE(LAPIC) = 5): 24 octets up to
    Xen 4.19, 32 from 4.20 (``pending_esr``)."""
    return _LAPIC_4_20 if _release_key(release) >= (4, 20) else _LAPIC_4_17


#: ``struct hvm_hw_lapic_regs`` (HVM_SAVE_CODE(LAPIC_REGS) = 6): the APIC register page.
HVM_HW_LAPIC_REGS = CStruct("hvm_hw_lapic_regs", [("data", "1024s")], expect=1024,
                            source=f"{HVM_SAVE_SRC}, Xen 4.17 and 4.20")

#: ``struct hvm_hw_mtrr`` (HVM_SAVE_CODE(MTRR) = 14): 8 variable ranges (MTRR_VCNT), 11 fixed.
HVM_HW_MTRR = CStruct("hvm_hw_mtrr", [
    ("msr_pat_cr", "Q"), ("msr_mtrr_var", "128s"), ("msr_mtrr_fixed", "88s"),
    ("msr_mtrr_cap", "Q"), ("msr_mtrr_def_type", "Q")],
    expect=240, source=f"{HVM_SAVE_SRC}, Xen 4.17 and 4.20")


class HvmSaveCode(enum.IntEnum):
    """``HVM_SAVE_CODE(...)`` typecodes (DECLARE_HVM_SAVE_TYPE in arch-x86/hvm/save.h)."""

    END = 0
    HEADER = 1
    CPU = 2
    PIC = 3
    IOAPIC = 4
    LAPIC = 5
    LAPIC_REGS = 6
    PCI_IRQ = 7
    ISA_IRQ = 8
    PCI_LINK = 9
    PIT = 10
    RTC = 11
    HPET = 12
    PMTIMER = 13
    MTRR = 14
    VIRIDIAN_DOMAIN = 15
    CPU_XSAVE = 16
    VIRIDIAN_VCPU = 17
    VMCE_VCPU = 18
    TSC_ADJUST = 19
    CPU_MSR = 20


#: HVM_SAVE_CODE_MAX (arch-x86/hvm/save.h), Xen 4.17 and 4.20.
HVM_SAVE_CODE_MAX = 20


@dataclass(frozen=True)
class HvmSaveRecord:
    typecode: int
    instance: int
    body: bytes

    @property
    def name(self) -> str:
        try:
            return HvmSaveCode(self.typecode).name
        except ValueError:
            return f"typecode {self.typecode}"

    def encode(self) -> bytes:
        return HVM_SAVE_DESCRIPTOR.pack(typecode=self.typecode, instance=self.instance,
                                        length=len(self.body)) + self.body


def encode_hvm_records(records) -> bytes:
    return b"".join(r.encode() for r in records)


def hvm_save_records(data: bytes) -> list[HvmSaveRecord]:
    """Split an HVM context into its records, up to and including END.

    Raises :class:`AbiError` when a descriptor or body runs past the end, or
    when no END record closes it."""
    out: list[HvmSaveRecord] = []
    at = 0
    while True:
        if len(data) - at < HVM_SAVE_DESCRIPTOR.size:
            raise AbiError(f"offset {at}: no END record closes the HVM context")
        d = HVM_SAVE_DESCRIPTOR.unpack(data, at)
        at += HVM_SAVE_DESCRIPTOR.size
        if d["length"] > len(data) - at:
            raise AbiError(f"offset {at - 8}: record typecode {d['typecode']} length "
                           f"{d['length']} runs past the end ({len(data) - at} octets left)")
        out.append(HvmSaveRecord(d["typecode"], d["instance"], data[at:at + d["length"]]))
        at += d["length"]
        if d["typecode"] == HvmSaveCode.END:
            return out


def hvm_cpu(vcpu: int, *, mode: str = "long", tsc: int = 0) -> bytes:
    """One vCPU's ``hvm_hw_cpu``: ``long`` (64-bit kernel, paging on) or
    ``real`` (at the reset vector, as a freshly built guest is).

    The values pass the checks of ``hvm_load_cpu_ctxt`` (xen/arch/x86/hvm/hvm.c,
    Xen 4.17): CR0 has ET and no PG without PE, ``flags`` only
    XEN_X86_FPU_INITIALISED, ``pad0`` zero, MSR_TSC_AUX 32 bits, EFER
    consistent with CR0.PG (LMA only with LME and PG)."""
    fpu = bytearray(512)
    struct.pack_into("<HH", fpu, 0, 0x037F, 0)          # FCW, FSW: FNINIT state
    struct.pack_into("<I", fpu, 24, 0x1F80)              # MXCSR default
    common = dict(fpu_regs=bytes(fpu), flags=XEN_X86_FPU_INITIALISED, tsc=tsc,
                  dr6=0xFFFF0FF0, dr7=0x400, msr_tsc_aux=vcpu)
    if mode == "real":
        seg = {f"{s}_limit": 0xFFFF for s in "ds es fs gs ss".split()}
        seg.update({f"{s}_arbytes": 0x93 for s in "ds es fs gs ss".split()})
        return HVM_HW_CPU.pack(
            rip=0xFFF0, rflags=0x2, cr0=0x10, cs_sel=0xF000, cs_base=0xFFFF0000, cs_limit=0xFFFF,
            cs_arbytes=0x9B, tr_arbytes=0x8B, tr_limit=0xFFFF, ldtr_arbytes=0x82,
            ldtr_limit=0xFFFF, idtr_limit=0xFFFF, gdtr_limit=0xFFFF, **seg, **common)
    if mode != "long":
        raise ValueError(f"mode {mode!r}: long or real")
    flat = {f"{s}_limit": 0xFFFFFFFF for s in "cs ds es fs gs ss".split()}
    flat.update(cs_sel=0x10, ds_sel=0x18, es_sel=0x18, ss_sel=0x18, tr_sel=0x40,
                cs_arbytes=0xA9B, ds_arbytes=0xC93, es_arbytes=0xC93, fs_arbytes=0xC93,
                gs_arbytes=0xC93, ss_arbytes=0xC93, tr_arbytes=0x8B, tr_limit=0x67,
                ldtr_arbytes=0x10000, gdtr_limit=0x7F, idtr_limit=0xFFF)
    return HVM_HW_CPU.pack(
        rip=0xFFFFFFFF81000000 + 0x1000 * vcpu, rsp=0xFFFFC90000004000 + 0x4000 * vcpu,
        rflags=0x246, cr0=0x80050033, cr3=0x1000, cr4=0x6F0,
        gdtr_base=0xFFFFFE0000001000 + 0x10000 * vcpu, idtr_base=0xFFFFFE0000000000,
        msr_efer=0xD01, msr_star=0x0023001000000000, msr_lstar=0xFFFFFFFF81800000,
        msr_syscall_mask=0x47700, shadow_gs=0xFFFF888000000000 + 0x10000 * vcpu,
        **flat, **common)


def hvm_context(vcpus: int = 1, *, release: str = DEFAULT_RELEASE, mode: str = "long",
                gtsc_khz: int = 2_000_000, cpuid_eax: int = 0x000906EA) -> bytes:
    """An HVM_CONTEXT body as ``hvm_save()`` (xen/arch/x86/hvm/save.c) writes it:
    the save header, then per vCPU the CPU, LAPIC, LAPIC_REGS and MTRR
    records (typecode order), then END.  Layouts of ``release``."""
    if vcpus < 1:
        raise ValueError("an HVM guest has at least one vCPU")
    lapic = hvm_hw_lapic(release)
    recs = [HvmSaveRecord(HvmSaveCode.HEADER, 0, HVM_SAVE_HEADER.pack(
        magic=HVM_FILE_MAGIC, version=HVM_FILE_VERSION, cpuid=cpuid_eax, gtsc_khz=gtsc_khz))]
    recs += [HvmSaveRecord(HvmSaveCode.CPU, v, hvm_cpu(v, mode=mode)) for v in range(vcpus)]
    recs += [HvmSaveRecord(HvmSaveCode.LAPIC, v, lapic.pack(
        apic_base_msr=0xFEE00000 | 0x800 | (0x100 if v == 0 else 0), timer_divisor=1))
        for v in range(vcpus)]
    recs += [HvmSaveRecord(HvmSaveCode.LAPIC_REGS, v, lapic_regs(v)) for v in range(vcpus)]
    recs += [HvmSaveRecord(HvmSaveCode.MTRR, v, HVM_HW_MTRR.pack(
        msr_pat_cr=0x0007040600070406, msr_mtrr_cap=0x508, msr_mtrr_def_type=0xC06))
        for v in range(vcpus)]
    recs.append(HvmSaveRecord(HvmSaveCode.END, 0, b""))
    return encode_hvm_records(recs)


def lapic_regs(vcpu: int) -> bytes:
    """The APIC register page after reset: APIC ID (0x20) and version (0x30),
    spurious vector register (0xF0), LVT entries masked, DFR all ones."""
    page = bytearray(1024)
    struct.pack_into("<I", page, 0x20, vcpu << 24)       # APIC ID
    struct.pack_into("<I", page, 0x30, 0x00050014)        # version: 6 LVTs
    struct.pack_into("<I", page, 0xE0, 0xFFFFFFFF)        # DFR
    struct.pack_into("<I", page, 0xF0, 0x1FF)             # SVR: enabled, vector 0xff
    for lvt in (0x320, 0x330, 0x340, 0x350, 0x360, 0x370):
        struct.pack_into("<I", page, lvt, 0x10000)        # masked
    return bytes(page)


# --------------------------------------------------------------------------
# HVM params: xen/include/public/hvm/params.h
# --------------------------------------------------------------------------


class HvmParam(enum.IntEnum):
    """``HVM_PARAM_*`` indices (public/hvm/params.h, Xen 4.17)."""

    CALLBACK_IRQ = 0
    STORE_PFN = 1
    STORE_EVTCHN = 2
    PAE_ENABLED = 4
    IOREQ_PFN = 5
    BUFIOREQ_PFN = 6
    VIRIDIAN = 9
    TIMER_MODE = 10
    HPET_ENABLED = 11
    IDENT_PT = 12
    DM_DOMAIN = 13
    ACPI_S_STATE = 14
    VM86_TSS = 15
    VPT_ALIGN = 16
    CONSOLE_PFN = 17
    CONSOLE_EVTCHN = 18
    ACPI_IOPORTS_LOCATION = 19
    NESTEDHVM = 24
    BUFIOREQ_EVTCHN = 26
    PAGING_RING_PFN = 27
    MONITOR_RING_PFN = 28
    SHARING_RING_PFN = 29
    TRIPLE_FAULT_REASON = 31
    IOREQ_SERVER_PFN = 32
    NR_IOREQ_SERVER_PAGES = 33
    VM_GENERATION_ID_ADDR = 34
    ALTP2M = 35
    X87_FIP_WIDTH = 36
    VM86_TSS_SIZED = 37
    MCA_CAP = 38


#: HVM_NR_PARAMS (public/hvm/params.h), Xen 4.17 and 4.20.
HVM_NR_PARAMS = 39

#: The special pages a libxl-built HVM guest has: ``special_pfn(x)`` is
#: ``0xff000 - 8 + x`` (X86_HVM_END_SPECIAL_REGION, X86_HVM_NR_SPECIAL_PAGES in
#: tools/libs/guest/xg_dom_x86.c, Xen 4.17).
SPECIAL_PFN_BASE = 0xFF000 - 8
SPECIAL_PAGES = {"paging": 0, "access": 1, "sharing": 2, "bufioreq": 3, "xenstore": 4,
                 "ioreq": 5, "ident_pt": 6, "console": 7}


def special_pfn(name: str) -> int:
    return SPECIAL_PFN_BASE + SPECIAL_PAGES[name]


def hvm_params(*, release: str = DEFAULT_RELEASE) -> tuple[tuple[int, int], ...]:
    """The non-zero params of the list the HVM saver sends
    (``write_hvm_params``, tools/libs/guest/xg_sr_save_x86_hvm.c) as a libxl-built
    guest has them (``xc_dom_x86.c``: special pages; libxl: timer mode, x87 FIP
    width), in the saver's order.  The STORE/CONSOLE pfns name pages the
    restorer clears; the stream must carry them (:func:`hvm_special_pfns`)."""
    _release_key(release)
    return ((HvmParam.STORE_PFN, special_pfn("xenstore")),
            (HvmParam.IOREQ_PFN, special_pfn("ioreq")),
            (HvmParam.BUFIOREQ_PFN, special_pfn("bufioreq")),
            (HvmParam.PAGING_RING_PFN, special_pfn("paging")),
            (HvmParam.MONITOR_RING_PFN, special_pfn("access")),
            (HvmParam.SHARING_RING_PFN, special_pfn("sharing")),
            (HvmParam.CONSOLE_PFN, special_pfn("console")),
            (HvmParam.IDENT_PT, special_pfn("ident_pt") << PAGE_SHIFT),
            (HvmParam.TIMER_MODE, 1),
            (HvmParam.X87_FIP_WIDTH, 8))


def hvm_special_pfns() -> tuple[int, ...]:
    """The special pfns (ascending) a libxl-built HVM guest has populated."""
    return tuple(sorted(SPECIAL_PFN_BASE + i for i in SPECIAL_PAGES.values()))


# --------------------------------------------------------------------------
# CPU policy: xen/include/public/arch-x86/xen.h (xen_cpuid_leaf_t,
# xen_msr_entry_t), serialised by xen/lib/x86/cpuid.c and msr.c
# --------------------------------------------------------------------------

#: (xen/include/public/arch-x86/xen.h, Xen 4.17): the entries of libxc's policy records, declared there.
XEN_CPUID_LEAF, XEN_MSR_ENTRY = CPUID_LEAF, MSR_ENTRY
XEN_CPUID_NO_SUBLEAF = 0xFFFFFFFF
MSR_INTEL_PLATFORM_INFO = 0xCE
MSR_ARCH_CAPABILITIES = 0x10A


def cpuid_policy(guest: str = "hvm", *, release: str = DEFAULT_RELEASE,
                 vendor: str = "intel") -> tuple[tuple[int, int, int, int, int, int], ...]:
    """A guest CPUID policy in the order ``x86_cpuid_copy_to_buffer``
    (xen/lib/x86/cpuid.c, Xen 4.17) writes it: basic leaves 0..max (leaf 4 by
    cache subleaf until type 0, 7 by subleaf, 0xb by topology subleaf until
    type 0, 0xd subleaves 0, 1 and one per extra xstate), the two hypervisor
    limit leaves, then extended leaves.  Every entry is one Xen's
    ``x86_cpuid_copy_from_buffer`` takes back (no out-of-range leaf or subleaf).
    A 64-bit guest's features: long mode, NX, SYSCALL (PV guests see no VMX)."""
    if vendor != "intel":
        raise ValueError("only an Intel-like policy is provided")
    _release_key(release)
    ns = XEN_CPUID_NO_SUBLEAF
    ecx1 = 0x7FFAFBBF if guest == "hvm" else 0x7FFAFB9F & ~(1 << 5)  # PV: no VMX
    leaves = [
        (0x0, ns, 0xD, 0x756E6547, 0x6C65746E, 0x49656E69),          # max 0xd, "GenuineIntel"
        (0x1, ns, 0x000906EA, 0x00010800, ecx1, 0x1F8BFBFF),
        (0x2, ns, 0x00FEFF01, 0x000000F0, 0, 0),
        (0x3, ns, 0, 0, 0, 0),
        (0x4, 0, 0x00000121, 0x01C0003F, 0x0000003F, 0),          # L1d
        (0x4, 1, 0x00000122, 0x01C0003F, 0x0000003F, 0),          # L1i
        (0x4, 2, 0x00000143, 0x00C0003F, 0x000003FF, 0),          # L2
        (0x4, 3, 0x00000163, 0x02C0003F, 0x00002FFF, 6),          # L3
        (0x4, 4, 0, 0, 0, 0),                                      # type 0: last
        (0x5, ns, 0, 0, 0, 0),
        (0x6, ns, 0x4, 0, 0, 0),
        (0x7, 0, 0, 0x029C67AF, 0, 0xBC000400),
        (0x8, ns, 0, 0, 0, 0),
        (0x9, ns, 0, 0, 0, 0),
        (0xA, ns, 0, 0, 0, 0),
        (0xB, 0, 0x1, 0x1, 0x100, 0),                               # SMT level
        (0xB, 1, 0, 0, 0, 0),                                       # type 0: last
        (0xC, ns, 0, 0, 0, 0),
        (0xD, 0, 0x7, 0x340, 0x340, 0),                            # x87, SSE, AVX
        (0xD, 1, 0x1, 0, 0, 0),
        (0xD, 2, 0x100, 0x240, 0, 0),                              # AVX state
        (0x40000000, ns, 0, 0, 0, 0),
        (0x40000100, ns, 0, 0, 0, 0),
        (0x80000000, ns, 0x80000008, 0, 0, 0),
        (0x80000001, ns, 0, 0, 0x121, 0x2C100800),                 # LAHF, LZCNT; SYSCALL, NX, 1G, RDTSCP, LM
        (0x80000002, ns, 0x65746E49, 0x2952286C, 0x726F4320, 0x4D542865),
        (0x80000003, ns, 0x37692029, 0x3037382D, 0x43204B30, 0x40205550),
        (0x80000004, ns, 0x352E3320, 0x7A484730, 0, 0),
        (0x80000005, ns, 0, 0, 0, 0),
        (0x80000006, ns, 0, 0, 0x01006040, 0),
        (0x80000007, ns, 0, 0, 0, 0x100),
        (0x80000008, ns, 0x3027, 0, 0, 0),                          # 39 physical, 48 virtual bits
    ]
    return tuple(leaves)


def msr_policy(*, release: str = DEFAULT_RELEASE) -> tuple[tuple[int, int, int], ...]:
    """The MSR policy ``x86_msr_copy_to_buffer`` (xen/lib/x86/msr.c, Xen 4.17)
    writes: MSR_INTEL_PLATFORM_INFO, then MSR_ARCH_CAPABILITIES; flags zero."""
    _release_key(release)
    return ((MSR_INTEL_PLATFORM_INFO, 0, 0), (MSR_ARCH_CAPABILITIES, 0, 0))


# --------------------------------------------------------------------------
# PV vCPU context: xen/include/public/arch-x86/xen-x86_64.h, xen-x86_32.h, xen.h
# --------------------------------------------------------------------------

_X64 = "xen/include/public/arch-x86/xen-x86_64.h, Xen 4.17"
_X32 = "xen/include/public/arch-x86/xen-x86_32.h, Xen 4.17"

#: ``struct cpu_user_regs`` by guest width.
CPU_USER_REGS = {
    8: CStruct("cpu_user_regs (x86_64)", [
        *_regs("", "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi", "Q"),
        ("error_code", "I"), ("entry_vector", "I"), ("rip", "Q"), ("cs", "H"), (None, "2x"),
        ("saved_upcall_mask", "B"), (None, "3x"), ("rflags", "Q"), ("rsp", "Q"),
        ("ss", "H"), (None, "6x"), ("es", "H"), (None, "6x"), ("ds", "H"), (None, "6x"),
        ("fs", "H"), (None, "6x"), ("gs", "H"), (None, "6x")], expect=200, source=_X64),
    4: CStruct("cpu_user_regs (x86_32)", [
        *_regs("", "ebx ecx edx esi edi ebp eax", "I"),
        ("error_code", "H"), ("entry_vector", "H"), ("eip", "I"), ("cs", "H"),
        ("saved_upcall_mask", "B"), (None, "1x"), ("eflags", "I"), ("esp", "I"),
        ("ss", "H"), (None, "2x"), ("es", "H"), (None, "2x"), ("ds", "H"), (None, "2x"),
        ("fs", "H"), (None, "2x"), ("gs", "H"), (None, "2x")], expect=68, source=_X32),
}

#: ``struct vcpu_guest_context`` by guest width (the tools' view: 64-bit guests
#: carry syscall_callback_eip; 32-bit guests CS:EIP callback pairs).
VCPU_GUEST_CONTEXT = {
    8: CStruct("vcpu_guest_context (x86_64)", [
        ("fpu_ctxt", "512s"), ("flags", "Q"), ("user_regs", "200s"), ("trap_ctxt", "4096s"),
        ("ldt_base", "Q"), ("ldt_ents", "Q"), ("gdt_frames", "128s"), ("gdt_ents", "Q"),
        ("kernel_ss", "Q"), ("kernel_sp", "Q"), ("ctrlreg", "64s"), ("debugreg", "64s"),
        ("event_callback_eip", "Q"), ("failsafe_callback_eip", "Q"),
        ("syscall_callback_eip", "Q"), ("vm_assist", "Q"),
        ("fs_base", "Q"), ("gs_base_kernel", "Q"), ("gs_base_user", "Q")],
        expect=5168, source=_X64),
    4: CStruct("vcpu_guest_context (x86_32)", [
        ("fpu_ctxt", "512s"), ("flags", "I"), ("user_regs", "68s"), ("trap_ctxt", "2048s"),
        ("ldt_base", "I"), ("ldt_ents", "I"), ("gdt_frames", "64s"), ("gdt_ents", "I"),
        ("kernel_ss", "I"), ("kernel_sp", "I"), ("ctrlreg", "32s"), ("debugreg", "32s"),
        ("event_callback_cs", "I"), ("event_callback_eip", "I"),
        ("failsafe_callback_cs", "I"), ("failsafe_callback_eip", "I"), ("vm_assist", "I")],
        expect=2800, source=_X32),
}

VGCF_I387_VALID = 1 << 0
VGCF_IN_KERNEL = 1 << 2
VGCF_ONLINE = 1 << 5
#: FIRST_RESERVED_GDT_ENTRY (arch-x86/xen.h): 14 pages of 512 descriptors.
FIRST_RESERVED_GDT_ENTRY = 14 * 4096 // 8
#: Flat segment selectors for PV kernels (xen-x86_64.h FLAT_KERNEL_*, xen-x86_32.h FLAT_KERNEL_*).
FLAT_SELECTORS = {8: {"cs": 0xE033, "ss": 0xE02B, "ds": 0, "kernel_ss": 0xE02B},
                  4: {"cs": 0xE019, "ss": 0xE021, "ds": 0xE021, "kernel_ss": 0xE021}}


def pfn_to_cr3(width: int, pfn: int) -> int:
    """``xen_pfn_to_cr3``: 64-bit guests shift; 32-bit guests fold the high bits."""
    if width == 8:
        return pfn << PAGE_SHIFT
    return ((pfn << 12) | (pfn >> 20)) & 0xFFFFFFFF


def cr3_to_pfn(width: int, cr3: int) -> int:
    if width == 8:
        return cr3 >> PAGE_SHIFT
    return ((cr3 >> 12) | (cr3 << 20)) & 0xFFFFFFFF


def _ulongs(width: int, values, count: int) -> bytes:
    values = list(values) + [0] * (count - len(values))
    return struct.pack(f"<{count}{'Q' if width == 8 else 'I'}", *values)


def vcpu_guest_context(width: int, *, cr3_pfn: int, start_info_pfn: int = 0,
                       gdt_frames=(), gdt_ents: int = 0, vcpu: int = 0,
                       kernel_sp: int | None = None, rip: int | None = None,
                       flags: int = VGCF_I387_VALID | VGCF_IN_KERNEL | VGCF_ONLINE) -> bytes:
    """A PV vCPU's ``vcpu_guest_context`` as the saver sends it: frame numbers
    (CR3, GDT frames, and in vCPU 0's RDX/EDX the start info page) are pfns
    (the saver's ``normalise`` step, xg_sr_save_x86_pv.c); kernel flat
    selectors; canonical addresses."""
    if width not in (4, 8):
        raise ValueError("guest width is 4 or 8 octets")
    sel = FLAT_SELECTORS[width]
    regs = CPU_USER_REGS[width]
    fpu = bytearray(512)
    struct.pack_into("<HH", fpu, 0, 0x037F, 0)
    struct.pack_into("<I", fpu, 24, 0x1F80)
    if width == 8:
        ur = regs.pack(rdx=start_info_pfn if vcpu == 0 else 0,
                       rip=rip if rip is not None else 0xFFFFFFFF81000000 + 0x100 * vcpu,
                       cs=sel["cs"], rflags=0x246, ss=sel["ss"],
                       rsp=kernel_sp if kernel_sp is not None else 0xFFFFC90000004000 + 0x4000 * vcpu)
        base = 0xFFFFFFFF81000000
        cbs = dict(event_callback_eip=base + 0x2000, failsafe_callback_eip=base + 0x2100,
                   syscall_callback_eip=base + 0x2200, gs_base_kernel=0xFFFF888000000000 + 0x10000 * vcpu)
    else:
        ur = regs.pack(edx=start_info_pfn if vcpu == 0 else 0,
                       eip=rip if rip is not None else 0xC1000000 + 0x100 * vcpu,
                       cs=sel["cs"], eflags=0x246, ss=sel["ss"], ds=sel["ds"], es=sel["ds"],
                       esp=kernel_sp if kernel_sp is not None else 0xC1800000 + 0x2000 * vcpu)
        cbs = dict(event_callback_cs=sel["cs"], event_callback_eip=0xC1002000,
                   failsafe_callback_cs=sel["cs"], failsafe_callback_eip=0xC1002100)
    ctrl = [0] * 8
    ctrl[0] = 0x80050033 if width == 8 else 0x8005003B
    ctrl[3] = pfn_to_cr3(width, cr3_pfn)
    ctrl[4] = 0x6F0 if width == 8 else 0x6D0
    dbg = [0] * 8
    dbg[6], dbg[7] = 0xFFFF0FF0, 0x400
    return VCPU_GUEST_CONTEXT[width].pack(
        fpu_ctxt=bytes(fpu), flags=flags, user_regs=ur,
        gdt_frames=_ulongs(width, gdt_frames, 16), gdt_ents=gdt_ents,
        kernel_ss=sel["kernel_ss"],
        kernel_sp=kernel_sp if kernel_sp is not None else
        (0xFFFFC90000004000 + 0x4000 * vcpu if width == 8 else 0xC1800000 + 0x2000 * vcpu),
        ctrlreg=_ulongs(width, ctrl, 8), debugreg=_ulongs(width, dbg, 8),
        vm_assist=0x2D if width == 8 else 0x25, **cbs)


#: ``struct xen_domctl_ext_vcpucontext`` (public/domctl.h, Xen 4.17): the
#: X86_PV_VCPU_EXTENDED body (the saver sends ``size`` octets of it).
XEN_DOMCTL_EXT_VCPUCONTEXT = CStruct("xen_domctl_ext_vcpucontext", [
    ("vcpu", "I"), ("size", "I"),
    ("syscall32_callback_eip", "Q"), ("sysenter_callback_eip", "Q"),
    ("syscall32_callback_cs", "H"), ("sysenter_callback_cs", "H"),
    ("syscall32_disables_events", "B"), ("sysenter_disables_events", "B"), (None, "2x"),
    ("mcg_cap", "Q"), (None, "24x")],
    expect=64, source="xen/include/public/domctl.h, Xen 4.17")
#: ``xen_domctl_vcpu_msr_t`` (public/domctl.h): index, reserved, value.
XEN_DOMCTL_VCPU_MSR = CStruct("xen_domctl_vcpu_msr", [("index", "I"), ("reserved", "I"), ("value", "Q")],
                              expect=16, source="xen/include/public/domctl.h, Xen 4.17")
#: The libxenguest restorer takes at most this many octets of extended context
#: (handle_x86_pv_vcpu_blob, xg_sr_restore_x86_pv.c, Xen 4.17).
EXT_VCPUCONTEXT_MAX = 128


def vcpu_extended(width: int, vcpu: int = 0) -> bytes:
    """X86_PV_VCPU_EXTENDED context: ``xen_domctl_ext_vcpucontext`` with its
    ``size`` field the structure's size, as XEN_DOMCTL_get_ext_vcpucontext
    returns it (xen/arch/x86/domctl.c)."""
    cs = FLAT_SELECTORS[width]["cs"] if width == 4 else 0xE023
    return XEN_DOMCTL_EXT_VCPUCONTEXT.pack(
        vcpu=vcpu, size=XEN_DOMCTL_EXT_VCPUCONTEXT.size,
        syscall32_callback_eip=0xFFFFFFFF81002300 if width == 8 else 0,
        sysenter_callback_eip=0xFFFFFFFF81002400 if width == 8 else 0,
        syscall32_callback_cs=cs if width == 8 else 0, sysenter_callback_cs=cs if width == 8 else 0,
        mcg_cap=0x1000809)


#: Layout of the XEN_DOMCTL_{get,set}vcpuextstate buffer a PV X86_PV_VCPU_XSAVE
#: record carries: xcr0, xcr0_accum, then the XSAVE area (PV_XSAVE_HDR_SIZE
#: in xen/arch/x86/domctl.c).
PV_XSAVE_HDR_SIZE = 16
XSAVE_LEGACY = 512
XSAVE_HEADER = 64
#: Offset and size of each XSAVE component by bit (CPUID leaf 0xd), for x87/SSE/AVX.
XSAVE_AVX = (576, 256)


def vcpu_xsave(*, xcr0: int = 0x7) -> bytes:
    """X86_PV_VCPU_XSAVE context: xcr0, xcr0_accum and an uncompacted XSAVE
    area sized for ``xcr0`` (x87|SSE = 0x3, with AVX = 0x7)."""
    if xcr0 & ~0x7 or not xcr0 & 1:
        raise ValueError("xcr0 must include x87 and only x87, SSE, AVX")
    size = XSAVE_LEGACY + XSAVE_HEADER + (XSAVE_AVX[1] if xcr0 & 4 else 0)
    area = bytearray(size)
    struct.pack_into("<HH", area, 0, 0x037F, 0)
    struct.pack_into("<I", area, 24, 0x1F80)
    struct.pack_into("<Q", area, XSAVE_LEGACY, xcr0 & 0x3)   # XSTATE_BV
    return struct.pack("<QQ", xcr0, xcr0) + bytes(area)


def vcpu_msrs(vcpu: int = 0) -> bytes:
    """X86_PV_VCPU_MSRS context: ``xen_domctl_vcpu_msr_t`` entries of the MSRs
    XEN_DOMCTL_get_vcpu_msrs reports for a PV vCPU (xen/arch/x86/domctl.c: the
    AMD data breakpoint masks and MSR_SPEC_CTRL): here MSR_SPEC_CTRL (0x48)."""
    return XEN_DOMCTL_VCPU_MSR.pack(index=0x48, value=0)


# --------------------------------------------------------------------------
# start info, shared info: xen/include/public/xen.h
# --------------------------------------------------------------------------

_XEN_H = "xen/include/public/xen.h, Xen 4.17"


def _start_info(width: int) -> CStruct:
    u = "Q" if width == 8 else "I"
    pad = [(None, "4x")] if width == 8 else []
    return CStruct(f"start_info (x86_{width * 8})", [
        ("magic", "32s"), ("nr_pages", u), ("shared_info", u), ("flags", "I"), *pad,
        ("store_mfn", u), ("store_evtchn", "I"), *pad,
        ("console_mfn", u), ("console_evtchn", "I"), *pad,
        ("pt_base", u), ("nr_pt_frames", u), ("mfn_list", u), ("mod_start", u), ("mod_len", u),
        ("cmd_line", "1024s"), ("first_p2m_pfn", u), ("nr_p2m_frames", u)],
        expect=1168 if width == 8 else 1112, source=_XEN_H)


#: ``struct start_info`` by guest width (``console_mfn``/``console_evtchn`` are
#: ``console.domU.mfn``/``console.domU.evtchn``).
START_INFO = {8: _start_info(8), 4: _start_info(4)}

#: ``struct vcpu_info`` (64 octets for both widths; xen.h and arch-x86/xen.h).
VCPU_INFO = {
    8: CStruct("vcpu_info (x86_64)", [
        ("evtchn_upcall_pending", "B"), ("evtchn_upcall_mask", "B"), (None, "6x"),
        ("evtchn_pending_sel", "Q"), ("cr2", "Q"), (None, "8x"), ("time", "32s")],
        expect=64, source=_XEN_H),
    4: CStruct("vcpu_info (x86_32)", [
        ("evtchn_upcall_pending", "B"), ("evtchn_upcall_mask", "B"), (None, "2x"),
        ("evtchn_pending_sel", "I"), ("cr2", "I"), (None, "20x"), ("time", "32s")],
        expect=64, source=_XEN_H),
}
XEN_LEGACY_MAX_VCPUS = 32

SHARED_INFO = {
    8: CStruct("shared_info (x86_64)", [
        ("vcpu_info", "2048s"), ("evtchn_pending", "512s"), ("evtchn_mask", "512s"),
        ("wc_version", "I"), ("wc_sec", "I"), ("wc_nsec", "I"), ("wc_sec_hi", "I"),
        ("max_pfn", "Q"), ("pfn_to_mfn_frame_list_list", "Q"), ("nmi_reason", "Q"),
        ("p2m_cr3", "Q"), ("p2m_vaddr", "Q"), ("p2m_generation", "Q")],
        expect=3136, source=_XEN_H),
    4: CStruct("shared_info (x86_32)", [
        ("vcpu_info", "2048s"), ("evtchn_pending", "128s"), ("evtchn_mask", "128s"),
        ("wc_version", "I"), ("wc_sec", "I"), ("wc_nsec", "I"),
        ("max_pfn", "I"), ("pfn_to_mfn_frame_list_list", "I"), ("nmi_reason", "I"),
        ("p2m_cr3", "I"), ("p2m_vaddr", "I"), ("p2m_generation", "I"), ("wc_sec_hi", "I")],
        expect=2344, source=_XEN_H),
}


def vcpu_time_info(vcpu: int) -> bytes:
    """``struct vcpu_time_info``: version, pad, tsc_timestamp, system_time,
    tsc_to_system_mul, tsc_shift, flags (32 octets)."""
    return struct.pack("<IIQQIbB2x", 2, 0, 0x1000000 + vcpu, 0x2000000, 0x80000000, -1, 1)


def start_info(width: int, *, nr_pages: int, store_pfn: int, console_pfn: int,
               pt_base: int = 0, nr_pt_frames: int = 0, store_evtchn: int = 1,
               console_evtchn: int = 2, shared_info_mfn: int = 0, mfn_list: int = 0) -> bytes:
    """The start info page of a PV guest as saved: store and console frames are
    pfns (the saver normalises them), magic ``xen-3.0-x86_64``/``x86_32p``."""
    magic = b"xen-3.0-x86_64" if width == 8 else b"xen-3.0-x86_32p"
    body = START_INFO[width].pack(
        magic=magic, nr_pages=nr_pages, shared_info=shared_info_mfn << PAGE_SHIFT,
        store_mfn=store_pfn, store_evtchn=store_evtchn, console_mfn=console_pfn,
        console_evtchn=console_evtchn, pt_base=pt_base, nr_pt_frames=nr_pt_frames,
        mfn_list=mfn_list, cmd_line=b"root=/dev/xvda1 ro console=hvc0")
    return body + bytes(PAGE_SIZE - len(body))


def shared_info(width: int, *, vcpus: int, max_pfn: int, frame_list_list: int = 0x1234) -> bytes:
    """A PV guest's shared info page (the SHARED_INFO record body): one
    vcpu_info per vCPU with its time info, a few pending event channels and
    their selector bits, masks, wallclock, and the p2m description in
    ``arch``."""
    vi = VCPU_INFO[width]
    infos = b"".join(vi.pack(evtchn_upcall_mask=0, evtchn_pending_sel=1 if v == 0 else 0,
                             time=vcpu_time_info(v)) for v in range(vcpus))
    infos += bytes(2048 - len(infos))
    words = 64 if width == 8 else 32
    pending = _ulongs(width, [0b1010], words)
    mask = _ulongs(width, [(1 << (width * 8)) - 1 - 0b111110], words)
    body = SHARED_INFO[width].pack(
        vcpu_info=infos, evtchn_pending=pending, evtchn_mask=mask, wc_version=2,
        wc_sec=1_700_000_000, wc_nsec=123456, max_pfn=max_pfn,
        pfn_to_mfn_frame_list_list=frame_list_list)
    return body + bytes(PAGE_SIZE - len(body))


#: ``grant_entry_v1_t`` (public/grant_table.h): flags, domid, frame.
GRANT_ENTRY_V1 = CStruct("grant_entry_v1", [("flags", "H"), ("domid", "H"), ("frame", "I")],
                         expect=8, source="xen/include/public/grant_table.h, Xen 4.17")
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1


# --------------------------------------------------------------------------
# A consistent x86 PV guest
# --------------------------------------------------------------------------

#: Page types (XEN_DOMCTL_PFINFO_*, public/domctl.h), as the stream's PAGE_DATA carries them.
NOTAB, L1TAB, L2TAB, L3TAB, L4TAB = 0x0, 0x1, 0x2, 0x3, 0x4
LPINTAB = 0x8
_PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY = 0x1, 0x2, 0x4, 0x20, 0x40
PTE_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
PTE_FRAME_MASK = 0x000FFFFFFFFFF000


def pte(pfn: int, flags: int = PTE_FLAGS) -> int:
    """A page-table entry naming ``pfn`` (the saver writes pfns into present entries)."""
    return (pfn << PAGE_SHIFT) | flags


def pte_pfn(entry: int) -> int:
    return (entry & PTE_FRAME_MASK) >> PAGE_SHIFT


@dataclass(frozen=True)
class PvGuest:
    """A small but complete x86 PV guest, every frame reference consistent:

    - pfns ``0 .. pages-1`` all populated (PAGE_DATA for each);
    - ``p2m_pfns``: the frames holding the guest's p2m, NOTAB (the restorer
      rewrites them with the new p2m);
    - ``start_info_pfn`` (named by vCPU 0's RDX/EDX), ``store_pfn``,
      ``console_pfn``, ``gdt_pfn``: NOTAB;
    - ``pagetables``: the page-table tree from the root named by CR3 down to
      one L1 table mapping the guest's low pages; the root pinned
      (``L4TAB|LPINTAB`` for a 64-bit guest, ``L3TAB|LPINTAB`` for 32-bit PAE);
    - ``vcpu_contexts``: one ``vcpu_guest_context`` per vCPU.
    """

    width: int
    levels: int
    pages: int
    vcpus: int
    p2m_pfns: tuple[int, ...]
    start_info_pfn: int
    store_pfn: int
    console_pfn: int
    gdt_pfn: int
    pagetables: tuple[tuple[int, int], ...]       # (pfn, page type) root first
    types: dict = dataclass_field(repr=False, compare=False, default_factory=dict)
    contents: dict = dataclass_field(repr=False, compare=False, default_factory=dict)
    p2m_size: int = 0                             # pfns the p2m covers (>= pages)

    @property
    def max_pfn(self) -> int:
        """The highest pfn of the p2m (pfns from ``pages`` up are not populated: ballooned out)."""
        return max(self.pages, self.p2m_size) - 1

    @property
    def cr3_pfn(self) -> int:
        return self.pagetables[0][0]

    def page_type(self, pfn: int) -> int:
        return self.types.get(pfn, NOTAB)

    def page(self, pfn: int) -> bytes:
        """The page as the stream carries it (page tables with pfns in them)."""
        data = self.contents.get(pfn)
        if data is not None:
            return data
        stamp = (0x5000_0000_0000_0000 | pfn).to_bytes(8, "little")
        return stamp * (PAGE_SIZE // 8)

    def vcpu_context(self, vcpu: int) -> bytes:
        return vcpu_guest_context(self.width, cr3_pfn=self.cr3_pfn,
                                  start_info_pfn=self.start_info_pfn, vcpu=vcpu,
                                  gdt_frames=(self.gdt_pfn,) if vcpu == 0 else (),
                                  gdt_ents=32 if vcpu == 0 else 0)

    def shared_info(self) -> bytes:
        return shared_info(self.width, vcpus=self.vcpus, max_pfn=self.max_pfn + 1)


def pv_guest(width: int = 8, pages: int = 16, vcpus: int = 1, *, p2m_size: int = 0) -> PvGuest:
    """A consistent PV guest of ``pages`` populated pfns (at least
    :func:`pv_min_pages`) for ``width`` (8: 64-bit, 4 levels; 4: 32-bit PAE,
    3 levels); ``p2m_size`` (default ``pages``) pfns in its p2m, those from
    ``pages`` up not populated."""
    if width not in (4, 8):
        raise ValueError("guest width is 4 or 8 octets")
    levels = 4 if width == 8 else 3
    per_frame = PAGE_SIZE // width
    frames = (max(pages, p2m_size) - 1) // per_frame + 1
    need = 1 + frames + 4 + levels + 1
    if pages < need:
        raise ValueError(f"a PV guest of width {width} with {pages} pages needs at least {need}")
    p2m = tuple(range(1, 1 + frames))
    nxt = 1 + frames
    start, store, console, gdt = nxt, nxt + 1, nxt + 2, nxt + 3
    tables = list(range(nxt + 4, nxt + 4 + levels))       # root first
    types = {pfn: NOTAB for pfn in range(pages)}
    kinds = [L4TAB, L3TAB, L2TAB, L1TAB][4 - levels:]
    pagetables = []
    for i, (pfn, kind) in enumerate(zip(tables, kinds)):
        types[pfn] = kind | (LPINTAB if i == 0 else 0)
        pagetables.append((pfn, types[pfn]))
    contents: dict[int, bytes] = {}
    for i, (pfn, kind) in enumerate(zip(tables, kinds)):
        entries = [0] * 512
        if kind == L1TAB:
            # map the guest's own pages; page tables read-only, as a PV
            # kernel must map them (xen/arch/x86/mm.c refuses writable mappings
            # of page-table frames); data pages no-execute on 64-bit guests
            for k in range(need - 1):             # the structural pages: pfn 0 .. last table
                flags = PTE_FLAGS if types[k] == NOTAB else PTE_FLAGS & ~_PAGE_RW
                entries[k] = pte(k, flags) | (1 << 63 if width == 8 and types[k] == NOTAB else 0)
        else:
            entries[0] = pte(tables[i + 1])
        contents[pfn] = struct.pack("<512Q", *entries)
    # p2m frames: the source host's machine frames, as the guest had them
    p2m = list(p2m)
    invalid = (1 << (width * 8)) - 1
    words = [0x80000 + pfn if pfn < pages else invalid for pfn in range(frames * per_frame)]
    for i, frame in enumerate(p2m):
        chunk = words[i * per_frame:(i + 1) * per_frame]
        chunk += [0] * (per_frame - len(chunk))
        contents[frame] = struct.pack(f"<{per_frame}{'Q' if width == 8 else 'I'}", *chunk)
    contents[start] = start_info(width, nr_pages=pages, store_pfn=store, console_pfn=console,
                                 pt_base=0, nr_pt_frames=levels)
    contents[store] = bytes(PAGE_SIZE)
    contents[console] = bytes(PAGE_SIZE)
    contents[gdt] = bytes(PAGE_SIZE)
    return PvGuest(width, levels, pages, vcpus, tuple(p2m), start, store, console, gdt,
                   tuple(pagetables), types, contents, max(pages, p2m_size))


def pv_min_pages(width: int, p2m_size: int = 0) -> int:
    """The fewest pages :func:`pv_guest` builds a guest of ``width`` with
    (one p2m frame, or as many as a p2m of ``p2m_size`` pfns needs)."""
    frames = (max(p2m_size, 1) - 1) // (PAGE_SIZE // width) + 1
    return 1 + frames + 4 + (4 if width == 8 else 3) + 1

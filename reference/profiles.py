"""Writer profiles: streams shaped exactly as Xen's own C writers shape them.

The rest of the reference builds streams from the specifications.  A writer
profile builds them the way a released Xen writer does: which records it
sends, in which order and checkpoint phase, their sizes and the values it
leaves in every field.  A profile is named ``xen-RELEASE-GUEST[-MODE]``
(``xen-4.17-hvm``, ``xen-4.6-pv-remus``) and builds every layer the Xen tool
chain writes: ``libxc`` (libxenguest's ``xc_domain_save`` alone), ``libxl``
(libxl's stream around it) and ``xl`` (the savefile header in front), plus
``convert-legacy-stream`` and ``c-xenstored`` for the other two writers.

GUEST is ``hvm``, ``pv`` (64-bit) or ``pv32`` (32-bit PAE); MODE is none for
``xl save`` (suspend, then one pass over memory), ``migrate`` for ``xl
migrate`` (live: every page, dirty rounds, the final round after suspend;
``debug`` adds VERIFY), ``remus`` and ``colo`` for the checkpointed streams
of ``xl remus`` (4.7 and later, for COLO).  Releases are 4.6 (the first with
these formats) to 4.22; master writes like 4.22.

Sources (release, file, function; paths moved in 4.15 from
``tools/libxc/xc_sr_*.c`` to ``tools/libs/guest/xg_sr_*.c`` and from
``tools/libxl/`` to ``tools/libs/light/``):

- ``xg_sr_save.c``: ``write_headers()`` (version 2 before 4.14, 3 after;
  little-endian; page_shift 12; xen_major/xen_minor of the running Xen),
  ``save()`` (static data, STATIC_DATA_END in version 3, start of stream, then
  per checkpoint: memory, ``end_of_checkpoint``, CHECKPOINT; END only for a
  plain stream, and for a checkpointed one only in 4.6, whose loop stopped
  when the checkpoint callback did), ``write_batch()`` (PAGE_DATA of up to
  MAX_BATCH_SIZE = 1024 pfns, ascending, each ``type << 32 | pfn`` with
  unpopulated pfns as XTAB; reserved fields zero), ``send_all_pages()``,
  ``send_dirty_pages()``, ``send_memory_live()``, ``suspend_and_send_dirty()``,
  ``verify_frames()``;
- ``xg_sr_save_x86_hvm.c``: ``x86_hvm_end_of_checkpoint()`` sends
  X86_TSC_INFO, HVM_CONTEXT, then HVM_PARAMS (every release: HVM_CONTEXT
  *before* HVM_PARAMS), ``write_hvm_params()`` (the params list of each
  release, only the non-zero ones, none at all: no record (4.9 and later));
  ``x86_hvm_static_data()`` (4.14+: the CPU policy records);
- ``xg_sr_save_x86_pv.c``: X86_PV_INFO (in the static data from 4.14, in
  ``x86_pv_start_of_stream()`` before), X86_PV_P2M_FRAMES (start 0, end
  max_pfn), ``x86_pv_end_of_checkpoint()``: X86_TSC_INFO, SHARED_INFO, then
  per online vcpu BASIC, EXTENDED, XSAVE (when the vcpu has xsave state),
  MSRS (4.9+: only with MSRs; 4.6-4.8: whenever the host supports any, so an
  AMD host with DBEXT sends an empty record: the Errata);
- ``xg_sr_common_x86.c``: ``write_x86_tsc_info()``,
  ``write_x86_cpu_policy_records()`` (X86_CPUID_POLICY then X86_MSR_POLICY);
- ``libxl_stream_write.c``: ``libxl__stream_write_start()`` (header version
  2, options 0), LIBXC_CONTEXT, the libxc stream, then
  ``write_emulator_xenstore_record()`` (HVM only, only with data),
  ``write_emulator_context_record()`` (HVM), END; in a checkpoint
  (``libxl__stream_write_start_checkpoint()``) the same emulator records and
  CHECKPOINT_END instead of END; emulator_id 1 (qemu-traditional) or 2
  (qemu-xen), index 0; ``libxl_dom_save.c``,
  ``libxl__save_emulator_xenstore_data()`` (``physmap/<addr>/start_addr``,
  ``size``, ``name`` per entry QEMU registered);
- ``libxl_colo_save.c``, ``colo_start_new_checkpoint()``: CHECKPOINT_STATE
  (CHECKPOINT_NEW) after each CHECKPOINT_END;
- ``tools/xl/xl_saverestore.c`` (``xl_cmdimpl.c`` before 4.9),
  ``save_domain_core_writeconfig()``: the header in the host's byte order,
  mandatory flags STREAMv2, JSON when there is a configuration, optional
  flags 0, optional data the 32-bit config length and the NUL-terminated
  JSON of ``libxl_domain_config_to_json()``.

The guest is scaled down: a handful of RAM pages, a two-pfn hole and, for
HVM, the eight special pages of ``xg_dom_x86.c`` (``special_pfn()``) and two
ioreq-server pfns at the top of a small physmap, so that every pfn a record
names exists in the stream.  What the writers copy from the hypervisor
without looking (HVM context, vCPU contexts, CPU policy, page contents)
comes from :mod:`.profile_content`, the one seam for the Xen ABI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from . import libxc, libxl, profile_content as content, xl
from .layout import Endian
from .libxc import DomainType, PageType, pfn_entry

Release = tuple[int, int]
RELEASES: tuple[Release, ...] = tuple((4, m) for m in range(6, 23))
GUESTS = ("hvm", "pv", "pv32")
MODES = ("save", "migrate", "remus", "colo")
LAYERS = ("libxc", "libxl", "xl")
MAX_BATCH_SIZE = 1024

# public/hvm/params.h
HVM_PARAM = dict(STORE_PFN=1, PAE_ENABLED=4, IOREQ_PFN=5, BUFIOREQ_PFN=6, VIRIDIAN=9, IDENT_PT=12,
                 VM86_TSS=15, CONSOLE_PFN=17, ACPI_IOPORTS_LOCATION=19, PAGING_RING_PFN=27,
                 MONITOR_RING_PFN=28, SHARING_RING_PFN=29, IOREQ_SERVER_PFN=32,
                 NR_IOREQ_SERVER_PAGES=33, VM_GENERATION_ID_ADDR=34, X87_FIP_WIDTH=36, VM86_TSS_SIZED=37,
                 MCA_CAP=38)
# xg_dom_x86.c: SPECIALPAGE_*
SPECIAL = dict(PAGING=0, ACCESS=1, SHARING=2, BUFIOREQ=3, XENSTORE=4, IOREQ=5, IDENT_PT=6, CONSOLE=7)
NR_SPECIAL_PAGES = 8
NR_IOREQ_SERVER_PAGES = 2   # 8 in xg_dom_x86.c; scaled down with the guest
HOLE_PAGES = 2
#: MSR_TSC_AUX, one of the MSRs XEN_DOMCTL_get_vcpu_msrs returns for a PV vcpu
MSR_TSC_AUX = 0xC0000103


def release_of(text: str) -> Release:
    major, minor = text.split(".")
    return int(major), int(minor)


def release_name(release: Release) -> str:
    return f"{release[0]}.{release[1]}"


def hvm_param_list(release: Release) -> tuple[str, ...]:
    """``write_hvm_params()``'s ``params[]`` of ``release``, in its order."""
    names = ["STORE_PFN", "IOREQ_PFN", "BUFIOREQ_PFN", "PAGING_RING_PFN", "MONITOR_RING_PFN",
             "SHARING_RING_PFN", "VM86_TSS_SIZED" if release >= (4, 9) else "VM86_TSS", "CONSOLE_PFN",
             "ACPI_IOPORTS_LOCATION", "VIRIDIAN", "IDENT_PT"]
    if release < (4, 14):
        names.append("PAE_ENABLED")
    names += ["VM_GENERATION_ID_ADDR", "IOREQ_SERVER_PFN", "NR_IOREQ_SERVER_PAGES"]
    if release >= (4, 7):
        names.append("X87_FIP_WIDTH")
    if release >= (4, 10):
        names.append("MCA_CAP")
    return tuple(names)


def default_config(guest: str, name: str = "guest") -> bytes:
    """``libxl_domain_config_to_json()`` of a small guest, NUL-terminated as xl stores it."""
    b_info: dict = {"max_vcpus": 1, "max_memkb": 1048576, "target_memkb": 1048576,
                    "type.hvm" if guest == "hvm" else "type.pv": {}}
    config = {"c_info": {"type": "hvm" if guest == "hvm" else "pv", "name": name,
                         "uuid": "3b9ad1f2-5f6c-4a37-9d3e-6a2f0c1e8b41", "run_hotplug_scripts": "True"},
              "b_info": b_info, "on_reboot": "restart", "on_soft_reset": "soft_reset"}
    return json.dumps(config, indent=4).encode() + b"\0"


@dataclass(frozen=True)
class Params:
    """What differs between two streams of the same writer (the guest, the host, the run)."""

    vcpus: int = 1
    ram_pages: int = 2           # guest RAM pages besides the special ones
    dirty_rounds: int = 1        # live: rounds of dirty pages before the domain is suspended
    checkpoints: int = 1         # remus/colo: checkpoints after the first
    emulator: int = libxl.EmulatorId.QEMU_UPSTREAM
    physmap: bool = True         # QEMU registered a physmap entry (the VGA RAM)
    debug: bool = False          # migrate --debug: VERIFY, then every page again
    amd_dbext: bool = False      # 4.6-4.8 PV on an AMD host with DBEXT: empty X86_PV_VCPU_MSRS
    msrs: tuple[tuple[int, int], ...] = ()   # a PV vcpu's MSRs (4.9+: the MSRS record when any)
    xsave: bool = True           # the PV vcpus have xsave state
    seed: int = 0                # page contents and the choice of dirty pages
    tsc_mode: int = 0
    tsc_khz: int = 2_995_200
    tsc_nsec: int = 1_234_567_890
    tsc_incarnation: int = 0
    config: bytes | None = b""   # b"": default_config(guest); None: no configuration
    xl_endian: Endian = Endian.LITTLE


@dataclass(frozen=True)
class Profile:
    """One writer profile: a release of Xen's tool chain saving one kind of guest in one mode."""

    name: str
    release: Release
    guest: str
    mode: str = "save"
    params: Params = field(default_factory=Params)

    @property
    def version(self) -> int:
        return 3 if self.release >= (4, 14) else 2

    @property
    def checkpointed(self) -> bool:
        return self.mode in ("remus", "colo")

    @property
    def width(self) -> int:
        return 4 if self.guest == "pv32" else 8

    @property
    def domain_type(self) -> DomainType:
        return DomainType.X86_HVM if self.guest == "hvm" else DomainType.X86_PV

    def with_params(self, **changes) -> "Profile":
        return replace(self, params=replace(self.params, **changes))

    def libxc(self) -> libxc.LibxcStream:
        return build_libxc(self)

    def libxl(self) -> libxl.LibxlStream:
        return build_libxl(self)

    def xl(self) -> xl.XlStream:
        return build_xl(self)

    def build(self, layer: str):
        if layer not in LAYERS:
            raise ValueError(f"writer profiles build {', '.join(LAYERS)}, not {layer!r}")
        return getattr(self, layer)()

    def encode(self, layer: str) -> bytes:
        value = self.build(layer)
        return {"libxc": libxc.encode, "libxl": libxl.encode, "xl": xl.encode}[layer](value)

    @property
    def sources(self) -> str:
        g = "libxc/xc_sr" if self.release < (4, 15) else "libs/guest/xg_sr"
        light = "libxl" if self.release < (4, 15) else "libs/light"
        xlfile = "xl/xl_saverestore.c" if self.release >= (4, 9) else "libxl/xl_cmdimpl.c"
        arch = "hvm" if self.guest == "hvm" else "pv"
        out = (f"Xen {release_name(self.release)}: tools/{g}_save.c save(), write_batch(); "
               f"tools/{g}_save_x86_{arch}.c x86_{arch}_end_of_checkpoint(); "
               f"tools/{light}/libxl_stream_write.c; tools/{xlfile} save_domain_core_writeconfig()")
        if self.mode == "colo":
            out += f"; tools/{light}/libxl_colo_save.c colo_start_new_checkpoint()"
        return out


_NAME = re.compile(r"^xen-(\d+)\.(\d+)-(hvm|pv32|pv)(?:-(migrate|remus|colo))?$")


def profile_name(release: Release, guest: str, mode: str = "save") -> str:
    return f"xen-{release_name(release)}-{guest}" + ("" if mode == "save" else f"-{mode}")


def get(name: str, **params) -> Profile:
    """The profile called ``name`` (``xen-4.17-hvm``, ``xen-master-pv-remus``), with ``params`` changed."""
    from .errors import UsageError

    name = name.replace("xen-master-", f"xen-{release_name(RELEASES[-1])}-")
    m = _NAME.match(name)
    if not m:
        raise UsageError(f"unknown writer profile {name!r}: expected xen-RELEASE-(hvm|pv|pv32)"
                         "[-migrate|-remus|-colo], e.g. xen-4.17-hvm")
    release = (int(m.group(1)), int(m.group(2)))
    if release not in RELEASES:
        raise UsageError(f"writer profile {name!r}: releases are {release_name(RELEASES[0])} to "
                         f"{release_name(RELEASES[-1])} (master writes like the latest)")
    mode = m.group(4) or "save"
    if mode == "colo" and release < (4, 7):
        raise UsageError(f"writer profile {name!r}: COLO arrived in Xen 4.7")
    profile = Profile(profile_name(release, m.group(3), mode), release, m.group(3), mode)
    return profile.with_params(**params) if params else profile


# --------------------------------------------------------------------------
# the guest's memory
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    pfn: int
    type: int
    data: bytes | None   # None: no data in the stream (XTAB)


@dataclass(frozen=True)
class Guest:
    """The scaled-down guest a profile saves."""

    pages: tuple[Page, ...]
    p2m_size: int
    ram: tuple[int, ...]            # pfns of ordinary RAM (what dirty rounds pick from)
    special_base: int = 0           # HVM: special_pfn(0)
    ioreq_server_base: int = 0      # HVM: ioreq_server_pfn(0)
    cr3_pfn: int = 0                # PV: the pinned top-level page table
    start_info_pfn: int = 0         # PV
    p2m_frames: tuple[int, ...] = ()  # PV
    layout: object = None             # PV: profile_content.PvLayout (its vcpu contexts)


def hvm_guest(p: Params) -> Guest:
    """RAM, a hole (unpopulated: XTAB), the ioreq-server pfns (out of the p2m while QEMU uses them:
    XTAB) and the eight special pages at the top (xg_dom_x86.c, special_pfn())."""
    pages: list[Page] = []
    ram = tuple(range(p.ram_pages))
    for pfn in ram:
        pages.append(Page(pfn, PageType.NOTAB, content.ram_page(pfn, p.seed)))
    at = p.ram_pages
    for pfn in range(at, at + HOLE_PAGES + NR_IOREQ_SERVER_PAGES):
        pages.append(Page(pfn, PageType.XTAB, None))
    ioreq = at + HOLE_PAGES
    special = ioreq + NR_IOREQ_SERVER_PAGES
    for pfn in range(special, special + NR_SPECIAL_PAGES):
        pages.append(Page(pfn, PageType.NOTAB, bytes(content.PAGE)))
    return Guest(tuple(pages), special + NR_SPECIAL_PAGES, ram, special, ioreq)


def pv_guest(p: Params, width: int, vcpus: int = 1) -> Guest:
    """The PV guest's pages as profile_content lays them out: start info, xenstore and console
    pages, page tables (pinned root), p2m frames, RAM; vcpu contexts naming them."""
    layout = content.PvLayout(width, p.ram_pages, vcpus, p.seed)
    pages = tuple(Page(pfn, t, data) for pfn, t, data in layout.pages)
    return Guest(pages, layout.p2m_size, layout.ram, cr3_pfn=layout.cr3_pfn,
                 start_info_pfn=layout.start_info_pfn, p2m_frames=layout.p2m_frames, layout=layout)


def guest_of(profile: Profile) -> Guest:
    if profile.guest == "hvm":
        return hvm_guest(profile.params)
    return pv_guest(profile.params, profile.width, profile.params.vcpus)


# --------------------------------------------------------------------------
# libxenguest: xc_domain_save
# --------------------------------------------------------------------------


def page_records(guest: Guest, pfns) -> list[libxc.PageData]:
    """write_batch() over ``pfns`` in ascending batches of at most MAX_BATCH_SIZE."""
    by_pfn = {page.pfn: page for page in guest.pages}
    pfns = sorted(pfns)
    out = []
    for start in range(0, len(pfns), MAX_BATCH_SIZE):
        batch = [by_pfn[p] for p in pfns[start:start + MAX_BATCH_SIZE]]
        out.append(libxc.PageData(tuple(pfn_entry(p.pfn, p.type) for p in batch),
                                  b"".join(p.data for p in batch if p.data is not None)))
    return out


def dirty_pages(guest: Guest, seed: int, round_: int) -> list[int]:
    """The pages a running guest dirtied in one round: some of its RAM (logdirty)."""
    return [pfn for i, pfn in enumerate(guest.ram) if (i + seed + round_) % 2 == 0]


def hvm_params(profile: Profile, guest: Guest) -> tuple[tuple[int, int], ...]:
    """The non-zero params of write_hvm_params()'s list, in its order, as xg_dom_x86.c
    (special and ioreq-server pfns, scaled with the guest), hvmloader (VM86_TSS_SIZED:
    TSS_SIZE 384 << 32 | address; ACPI_IOPORTS_LOCATION 1) and Xen (X87_FIP_WIDTH 8 on a CPU
    without FPU CS/DS) set them.  Params outside the saver's list (TIMER_MODE) never appear."""
    sp = guest.special_base
    values = dict(STORE_PFN=sp + SPECIAL["XENSTORE"], IOREQ_PFN=sp + SPECIAL["IOREQ"],
                  BUFIOREQ_PFN=sp + SPECIAL["BUFIOREQ"], PAGING_RING_PFN=sp + SPECIAL["PAGING"],
                  MONITOR_RING_PFN=sp + SPECIAL["ACCESS"], SHARING_RING_PFN=sp + SPECIAL["SHARING"],
                  VM86_TSS=0xFC00A000, VM86_TSS_SIZED=(0x180 << 32) | 0xFC00A000,
                  CONSOLE_PFN=sp + SPECIAL["CONSOLE"], ACPI_IOPORTS_LOCATION=1,
                  IDENT_PT=(sp + SPECIAL["IDENT_PT"]) << 12, PAE_ENABLED=1,
                  IOREQ_SERVER_PFN=guest.ioreq_server_base, NR_IOREQ_SERVER_PAGES=NR_IOREQ_SERVER_PAGES,
                  X87_FIP_WIDTH=8)
    return tuple((HVM_PARAM[name], values[name]) for name in hvm_param_list(profile.release)
                 if values.get(name, 0))


def tsc_info(p: Params, checkpoint: int) -> libxc.X86TscInfo:
    return libxc.X86TscInfo(p.tsc_mode, p.tsc_khz, p.tsc_nsec + checkpoint * 100_000_000, p.tsc_incarnation)


def end_of_checkpoint(profile: Profile, guest: Guest, checkpoint: int) -> list[libxc.Record]:
    """x86_{hvm,pv}_end_of_checkpoint()."""
    p = profile.params
    out: list[libxc.Record] = [tsc_info(p, checkpoint)]
    if profile.guest == "hvm":
        out.append(libxc.HvmContext(content.hvm_context(profile.release, p.vcpus, gtsc_khz=p.tsc_khz)))
        params = hvm_params(profile, guest)
        if params or profile.release < (4, 9):
            out.append(libxc.HvmParams(params))
        return out
    out.append(libxc.SharedInfo(content.shared_info(profile.width, p.seed, vcpus=p.vcpus,
                                                    max_pfn=guest.p2m_size)))
    for v in range(p.vcpus):
        out.append(libxc.X86PvVcpuBasic(v, guest.layout.vcpu_context(v)))
        out.append(libxc.X86PvVcpuExtended(v, content.vcpu_extended(profile.release, v, profile.width)))
        if p.xsave:
            out.append(libxc.X86PvVcpuXsave(v, content.vcpu_xsave(v)))
        if p.msrs:
            out.append(libxc.X86PvVcpuMsrs(v, content.vcpu_msrs(p.msrs)))
        elif p.amd_dbext and profile.release < (4, 9):
            out.append(libxc.X86PvVcpuMsrs(v, b""))
    return out


def memory(profile: Profile, guest: Guest, *, live: bool, checkpoint: int) -> list[libxc.Record]:
    """The memory of one checkpoint: send_domain_memory_{nonlive,live,checkpointed}()."""
    p = profile.params
    if checkpoint > 0:  # suspend_and_send_dirty(): what the guest dirtied since the last checkpoint
        return page_records(guest, dirty_pages(guest, p.seed, 100 + checkpoint))
    every = range(guest.p2m_size)
    out = page_records(guest, every)
    if live:
        for round_ in range(1, p.dirty_rounds + 1):
            out += page_records(guest, dirty_pages(guest, p.seed, round_))
        out += page_records(guest, dirty_pages(guest, p.seed, p.dirty_rounds + 1))  # after suspend
        if p.debug and not profile.checkpointed:
            out.append(libxc.Verify())
            out += page_records(guest, every)
    return out


def libxc_records(profile: Profile) -> tuple[list[libxc.Record], list[int]]:
    """The records xc_domain_save() writes, and the index after each CHECKPOINT."""
    guest = guest_of(profile)
    recs: list[libxc.Record] = []
    pv = profile.guest != "hvm"
    pv_info = libxc.X86PvInfo(profile.width, 3 if profile.width == 4 else 4)
    if profile.version >= 3:  # static_data(), STATIC_DATA_END
        if pv:
            recs.append(pv_info)
        recs.append(libxc.X86CpuidPolicy(content.cpuid_policy(profile.release, profile.guest)))
        recs.append(libxc.X86MsrPolicy(content.msr_policy(profile.release, profile.guest)))
        recs.append(libxc.StaticDataEnd())
    if pv:  # start_of_stream()
        if profile.version < 3:
            recs.append(pv_info)
        recs.append(libxc.X86PvP2mFrames(0, guest.p2m_size - 1, guest.p2m_frames))
    live = profile.mode != "save"
    checkpoints = 1 + profile.params.checkpoints if profile.checkpointed else 1
    after_checkpoint = []
    for cp in range(checkpoints):
        recs += memory(profile, guest, live=live, checkpoint=cp)
        recs += end_of_checkpoint(profile, guest, cp)
        if profile.checkpointed:
            recs.append(libxc.Checkpoint())
            after_checkpoint.append(len(recs))
    if not profile.checkpointed or profile.release < (4, 7):
        recs.append(libxc.End())
    return recs, after_checkpoint


def build_libxc(profile: Profile) -> libxc.LibxcStream:
    recs, _ = libxc_records(profile)
    return libxc.LibxcStream(libxc.ImageHeader.make(profile.version, Endian.LITTLE),
                             libxc.DomainHeader(int(profile.domain_type), 12, *profile.release), tuple(recs))


# --------------------------------------------------------------------------
# libxl and xl
# --------------------------------------------------------------------------


def physmap_pairs(p: Params) -> tuple[tuple[bytes, bytes], ...]:
    """libxl__save_emulator_xenstore_data(): start_addr, size, name of each physmap entry QEMU
    registered (the VGA RAM), relative to the device model's xenstore directory; hex without 0x."""
    if not p.physmap or p.emulator != libxl.EmulatorId.QEMU_UPSTREAM:
        return ()
    base = b"f0000000"
    return ((b"physmap/" + base + b"/start_addr", base), (b"physmap/" + base + b"/size", b"1000000"),
            (b"physmap/" + base + b"/name", b"vga.vram"))


def emulator_records(profile: Profile, checkpoint: int) -> list[libxl.Record]:
    if profile.guest != "hvm":
        return []
    p = profile.params
    out: list[libxl.Record] = []
    pairs = physmap_pairs(p)
    if pairs:
        out.append(libxl.EmulatorXenstoreData(p.emulator, 0, pairs))
    out.append(libxl.EmulatorContext(p.emulator, 0, content.emulator_context(p.emulator, p.seed + checkpoint)))
    return out


def build_libxl(profile: Profile) -> libxl.LibxlStream:
    xc = build_libxc(profile)
    items: list = [libxl.LibxcContext(xc.image_header, xc.domain_header)]
    cp = 0
    for rec in xc.records:
        items.append(rec)
        if isinstance(rec, libxc.Checkpoint):  # the postcopy callback
            items += emulator_records(profile, cp)
            items.append(libxl.CheckpointEnd())
            if profile.mode == "colo":
                items.append(libxl.CheckpointState(libxl.ControlId.CHECKPOINT_NEW))
            cp += 1
    if isinstance(xc.records[-1], libxc.End):  # libxl__xc_domain_save_done(): a plain stream
        items += emulator_records(profile, cp)
        items.append(libxl.End())
    return libxl.LibxlStream(libxl.LibxlHeader(options=0), tuple(items))


def build_xl(profile: Profile) -> xl.XlStream:
    p = profile.params
    config = default_config(profile.guest) if p.config == b"" else p.config
    header = xl.XlHeader.with_config(config or b"", endian=p.xl_endian)
    return xl.XlStream(header, build_libxl(profile))


# --------------------------------------------------------------------------
# the registry of named profiles (the corpus, the examples, the conformance suite)
# --------------------------------------------------------------------------


def all_names(releases=RELEASES) -> list[str]:
    out = []
    for release in releases:
        for guest in GUESTS:
            for mode in MODES:
                if mode == "colo" and release < (4, 7):
                    continue
                out.append(profile_name(release, guest, mode))
    return out


#: The profiles the corpus and the hand-written examples carry: each release where the
#: writers' shape changed, and both Debian releases (4.17, 4.20).
SHOWCASE: tuple[tuple[str, str, dict], ...] = (
    ("libxc", "xen-4.6-hvm", {}),
    ("libxc", "xen-4.6-pv", {}),
    ("libxc", "xen-4.8-pv", {"amd_dbext": True}),
    ("libxc", "xen-4.13-hvm", {}),
    ("libxc", "xen-4.13-pv32", {}),
    ("libxc", "xen-4.17-hvm", {}),
    ("libxc", "xen-4.17-pv", {"msrs": ((MSR_TSC_AUX, 1),)}),
    ("libxc", "xen-4.20-pv-remus", {"checkpoints": 0}),
    ("libxl", "xen-4.6-hvm-remus", {"checkpoints": 0}),
    ("libxl", "xen-4.13-pv", {}),
    ("libxl", "xen-4.17-hvm", {}),
    ("libxl", "xen-4.17-hvm-remus", {}),
    ("libxl", "xen-4.17-pv-remus", {"checkpoints": 0}),
    ("libxl", "xen-4.17-hvm-colo", {"checkpoints": 0}),
    ("libxl", "xen-4.20-hvm", {"emulator": libxl.EmulatorId.QEMU_TRADITIONAL}),
    ("xl", "xen-4.17-hvm", {}),
    ("xl", "xen-4.17-pv", {}),
    ("xl", "xen-4.20-hvm-migrate", {"debug": True}),
)


def showcase() -> list[tuple[str, Profile]]:
    """The showcase profiles, with one page of RAM (the corpus keeps them whole)."""
    return [(layer, get(name, **{"ram_pages": 1, **params})) for layer, name, params in SHOWCASE]


def origin(layer: str, profile: Profile) -> str:
    """The corpus ``origin`` of a profile stream: the writer and its release."""
    writer = {"libxc": "libxenguest xc_domain_save", "libxl": "libxl stream writer",
              "xl": "xl save/migrate"}[layer]
    return f"writer-profile: {writer}, Xen {release_name(profile.release)} ({profile.name})"


# --------------------------------------------------------------------------
# the other two writers
# --------------------------------------------------------------------------


def convert_legacy(fmt: str = "libxl", *, guest: str = "hvm", width: int = 64, pages: int = 2) -> bytes:
    """What Xen's ``convert-legacy-stream`` (tools/python/scripts/convert-legacy-stream, 4.6 and
    later: ``write_libxc_hdr()``, ``write_libxl_hdr()``, the ``read_*`` functions) writes for a
    legacy image: xen_major 0 and xen_minor the script's version, the libxl legacy option bit,
    emulator_id Unknown.  The reference converter writes the same octets (compared with Debian's
    4.17 script in tests/test_legacy_xen.py), so it stands in for the script here.  The legacy
    image is the legacy builder's, whose page contents and vCPU contexts are synthetic: the
    record shape is the converter's, but a real restore of the output fails on content (no
    HVM save header, no start info page), as it would for any such input."""
    import io

    from . import legacy, legacy_convert
    from .source import Source

    build_ = legacy.build_hvm_stream if guest == "hvm" else legacy.build_pv_stream
    page_list = [(pfn, 0) for pfn in range(pages)]
    image = legacy.encode(build_(width=width, pages=page_list))
    out = io.BytesIO()
    # the script's default for -f libxc: an HVM image's qemu record is copied after END
    legacy_convert.convert(Source.from_bytes(image), out, width=width, guest=guest, fmt=fmt,
                           qemu="append")
    return out.getvalue()


def c_xenstored(*, domains: tuple[int, ...] = (1, 2, 3)) -> bytes:
    """A live-update dump as C xenstored (4.15 and later) writes it (tools/xenstored/lu.c
    ``lu_dump_state()``; ``core.c`` ``dump_state_nodes()``, ``domain.c`` ``dump_state_connections()``,
    ``dump_state_domain()``, ``watch.c`` ``dump_state_watches()``; 4.18+ paths,
    ``tools/xenstore/xenstored_*.c`` before): ``len`` counts the padding, the special nodes are NODE_DATA, no open transaction is
    written, DOMAIN_DATA last.  Depth-limited watches are left out: C xenstored writes those in a
    layout its own reader misreads (docs/findings.md), no profile of a working writer."""
    from .xenstore_build import c_style, live_update_state

    return c_style(live_update_state(domains=domains, transactions=False, specials=True, watch_ext=False))


def label(fmt: str, data: bytes) -> tuple[str, str | None]:
    """The verdict the spec gives a profile stream: ``accept``, or the severity and id of the first
    rule it breaks among the most severe ones (a writer's departures are ``writer`` or ``either``;
    a ``reject`` here would be a false refusal of what Xen writes, which the tests forbid)."""
    from .checker import Checker
    from .formats import validate
    from .rules import Role, Severity
    from .source import Source

    checker = validate(Source.from_bytes(data), fmt, Checker(Role.STRICT))
    for severity in (Severity.REJECT, Severity.WRITER, Severity.EITHER):
        for finding in checker.findings:
            if finding.rule.severity is severity:
                return severity.value, finding.rule.id
    return "accept", None

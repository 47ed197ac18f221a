"""The restored domain against the stream: what the fake hypervisor holds
after a successful restore, compared with what the stream carries.

The shim's dump (``fakexen_dump_state``) is ``XSFAKE01`` then sections of
``tag (4 octets), length (u32), payload``:

``META``  guest is HVM, PV guest width, vCPUs (u32 each, one spare);
``PAGE``  pfn (u64), mfn (u64), the frame's 4096 octets: every populated frame;
``SHIN``  the PV shared info frame; ``GNTT`` the first grant entries;
then, in the order the library made them, what it set through hypercalls:
``ADDR`` address size; ``TSC `` xen_domctl_tsc_info; ``HCTX`` an HVM context;
``VCPU`` vcpu, kind (0 basic, 1 extended, 2 xsave, 3 msrs), the context;
``CPUP`` nr_leaves, nr_msrs, the leaves; ``MSRP`` the MSR entries;
``PARM`` index (u32), value (u64); ``PIN `` mfn (u64), level (u32).

:func:`compare` returns the differences as lines (empty: the state matches).
Where the ABI makes the restorer change what it restores, the comparison
allows exactly that change, each named where it is made:

- PV page tables hold machine frames where the stream has pfns (the
  restorer's ``localise_page``); compared after mapping them back;
- the PV start info page gets the new store/console frames, event
  channels, page count, shared info address and flags
  (``process_start_info``, tools/libs/guest/xg_sr_restore_x86_pv.c);
- the PV p2m frames get the new p2m (``update_guest_p2m``); checked against
  the pfn-to-mfn map of the restored domain;
- the PV shared info gets the stream's vcpu_info and arch parts, with the
  p2m frame list, pending events and selectors cleared and all events
  masked (``handle_shared_info``);
- a PV vCPU context's frames are machine frames and VGCF_online is set
  (``process_vcpu_basic``);
- the HVM store/console/ioreq ring pages may be cleared
  (``handle_hvm_params``); the store and console event channels are the
  toolstack's; HVM_PARAM_PAE_ENABLED is obsolete and dropped.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from xenstream.reference import libxc as X
from xenstream.reference import xen_abi as A

PAGE = A.PAGE_SIZE
MAGIC = b"XSFAKE01"
KINDS = {0: "BASIC", 1: "EXTENDED", 2: "XSAVE", 3: "MSRS"}
#: Toolstack-supplied event channels (restore.c passes 1 and 2).
STORE_EVTCHN, CONSOLE_EVTCHN = 1, 2
#: HVM params whose pages the restorer clears.
CLEARED_PARAMS = frozenset({A.HvmParam.STORE_PFN, A.HvmParam.CONSOLE_PFN,
                            A.HvmParam.IOREQ_PFN, A.HvmParam.BUFIOREQ_PFN})
MAX_LINES = 24


class StateError(Exception):
    """The dump cannot be read (a bug of the shim, or a truncated file)."""


@dataclass
class Restored:
    hvm: bool = True
    width: int = 8
    vcpus: int = 0
    pages: dict[int, bytes] = field(default_factory=dict)      # pfn -> content
    mfn_of: dict[int, int] = field(default_factory=dict)       # pfn -> mfn
    pfn_of: dict[int, int] = field(default_factory=dict)       # mfn -> pfn
    shared_info: bytes = b""
    grants: bytes = b""
    tsc: tuple | None = None
    hvm_context: bytes | None = None
    vcpu: dict[tuple[int, int], bytes] = field(default_factory=dict)
    cpuid: tuple | None = None
    msrs: tuple | None = None
    params: dict[int, int] = field(default_factory=dict)
    pins: dict[int, int] = field(default_factory=dict)         # mfn -> level
    address_size: int | None = None


def parse(data: bytes) -> Restored:
    if not data.startswith(MAGIC):
        raise StateError("not a fakexen state dump")
    st = Restored()
    at = len(MAGIC)
    while at < len(data):
        if len(data) - at < 8:
            raise StateError(f"truncated section header at {at}")
        tag, n = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8:at + 8 + n]
        if len(body) != n:
            raise StateError(f"section {tag!r} at {at} is truncated")
        at += 8 + n
        if tag == b"META":
            hvm, st.width, st.vcpus, _ = struct.unpack("<4I", body)
            st.hvm = bool(hvm)
        elif tag == b"PAGE":
            pfn, mfn = struct.unpack_from("<QQ", body)
            st.pages[pfn] = body[16:]
            st.mfn_of[pfn] = mfn
            st.pfn_of[mfn] = pfn
        elif tag == b"SHIN":
            st.shared_info = body
        elif tag == b"GNTT":
            st.grants = body
        elif tag == b"ADDR":
            st.address_size = struct.unpack("<I", body)[0]
            st.width = st.address_size // 8
        elif tag == b"TSC ":
            mode, khz, incarnation, _, nsec = struct.unpack("<4IQ", body)
            st.tsc = (mode, khz, nsec, incarnation)
        elif tag == b"HCTX":
            st.hvm_context = body
        elif tag == b"VCPU":
            vcpu, kind = struct.unpack_from("<II", body)
            st.vcpu[(vcpu, kind)] = body[8:]
        elif tag == b"CPUP":
            nl, _ = struct.unpack_from("<II", body)
            st.cpuid = tuple(struct.iter_unpack("<6I", body[8:8 + 24 * nl]))
        elif tag == b"MSRP":
            st.msrs = tuple(struct.iter_unpack("<IIQ", body))
        elif tag == b"PARM":
            index, value = struct.unpack("<IQ", body)
            st.params[index] = value
        elif tag == b"PIN ":
            mfn, level = struct.unpack("<QI", body)
            st.pins[mfn] = level
        else:
            raise StateError(f"unknown section {tag!r}")
    return st


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def applied_records(stream: X.LibxcStream) -> list:
    """The records a restorer applies: every record up to END (the records
    after the last CHECKPOINT included: "this next set of records may be
    terminated by another CHECKPOINT record or an END record")."""
    return [r for r in stream.records if not isinstance(r, (X.End,))]


class _Diff:
    def __init__(self):
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        if len(self.lines) < MAX_LINES:
            self.lines.append(text)
        elif len(self.lines) == MAX_LINES:
            self.lines.append("... (more differences left out)")


def compare(stream: X.LibxcStream, st: Restored) -> list[str]:
    """Differences between the stream's content and the restored state."""
    d = _Diff()
    recs = applied_records(stream)
    pv = stream.domain_header.type == X.DomainType.X86_PV
    info = next((r for r in recs if isinstance(r, X.X86PvInfo)), None)
    width = info.guest_width if info is not None else 8
    page_size = stream.domain_header.page_size
    # -- pages: the last content the stream gives each pfn, its type ------
    want: dict[int, bytes] = {}
    types: dict[int, int] = {}
    cleared: set[int] = set()
    params: dict[int, int] = {}
    # memory records after VERIFY are sent "for debugging purposes": a restorer
    # may compare them (libxenguest does) or apply them; either content will do
    verifying = False
    also: dict[int, bytes] = {}
    for r in recs:
        if isinstance(r, X.Verify):
            verifying = True
        elif isinstance(r, X.PageData):
            k = 0
            for e in r.pfns:
                t, pfn = e >> X.PFN_TYPE_SHIFT, e & X.PFN_MASK
                if X.HAS_DATA[t]:
                    content = r.pages[k * page_size:(k + 1) * page_size]
                    k += 1
                    if verifying:
                        also[pfn] = content
                        continue
                    want[pfn] = content
                    cleared.discard(pfn)
                if not verifying:
                    types[pfn] = t
        elif isinstance(r, X.HvmParams):
            for index, value in r.params:
                params[index] = value
                if index in CLEARED_PARAMS and not pv:
                    cleared.add(value)
    start_pfn = store_pfn = console_pfn = None
    basic = {}
    for r in recs:
        if isinstance(r, X.X86PvVcpuBasic) and r.context:
            basic[r.vcpu_id] = r.context
    if pv and 0 in basic and len(basic[0]) == A.VCPU_GUEST_CONTEXT[width].size:
        regs = A.CPU_USER_REGS[width].unpack(A.VCPU_GUEST_CONTEXT[width].unpack(basic[0])["user_regs"])
        start_pfn = regs["rdx" if width == 8 else "edx"]
        if start_pfn in want:
            si = A.START_INFO[width].unpack(want[start_pfn])
            store_pfn, console_pfn = si["store_mfn"], si["console_mfn"]
    p2m_pfns: set[int] = set()
    p2m_max = None
    for r in recs:
        if isinstance(r, X.X86PvP2mFrames):
            p2m_pfns.update(r.p2m_pfns)
            p2m_max = r.p2m_end_pfn if p2m_max is None else max(p2m_max, r.p2m_end_pfn)
    for pfn, data in sorted(want.items()):
        got = st.pages.get(pfn)
        if got is None:
            d.add(f"pfn {pfn:#x}: the stream carries it, the restored domain has no such page")
            continue
        if (pfn in cleared and got == bytes(PAGE)) or also.get(pfn) == got:
            continue
        if pv and pfn in p2m_pfns:
            continue                  # checked below against the new p2m
        if pv and 1 <= (types.get(pfn, 0) & 0x7) <= 4:
            got = _unlocalise(got, st)
        elif pv and pfn == start_pfn:
            got, data = _start_info_view(got, st, width), _start_info_view(data, None, width)
        if got != data:
            d.add(f"pfn {pfn:#x}: sha256 {_h(data)} in the stream, {_h(got)} restored"
                  f"{_first_diff(data, got)}")
    if pv:
        _check_p2m(d, st, width, p2m_pfns, p2m_max, recs)
        _check_shared_info(d, st, width, recs)
        _check_pins(d, st, types)
    _check_vcpus(d, st, width, recs, pv)
    _check_tail(d, st, recs, params, pv)
    return d.lines


def _first_diff(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f" (first difference at octet {i:#x}: {x:#04x} vs {y:#04x})"
    return f" (lengths {len(a)} and {len(b)})" if len(a) != len(b) else ""


def _unlocalise(page: bytes, st: Restored) -> bytes:
    """A page table with its present entries' machine frames mapped back to pfns."""
    out = []
    for (e,) in struct.iter_unpack("<Q", page):
        if e & 1:
            mfn = A.pte_pfn(e)
            pfn = st.pfn_of.get(mfn, 0xFFFFFFFFFF)
            e = (e & ~A.PTE_FRAME_MASK) | ((pfn << 12) & A.PTE_FRAME_MASK)
        out.append(e)
    return struct.pack(f"<{len(out)}Q", *out)


_SI_RESET = ("nr_pages", "shared_info", "flags", "store_evtchn", "console_evtchn")


def _start_info_view(page: bytes, st: Restored | None, width: int) -> bytes:
    """The start info page without what the restorer must rewrite, its store
    and console frames as pfns."""
    layout = A.START_INFO[width]
    f = layout.unpack(page)
    for name in _SI_RESET:
        f[name] = 0
    if st is not None:
        f["store_mfn"] = st.pfn_of.get(f["store_mfn"], -1) & ((1 << (width * 8)) - 1)
        f["console_mfn"] = st.pfn_of.get(f["console_mfn"], -1) & ((1 << (width * 8)) - 1)
    return layout.pack(**f) + page[layout.size:]


def _check_p2m(d: _Diff, st: Restored, width: int, frames: set, max_pfn, recs) -> None:
    order = []
    for r in recs:
        if isinstance(r, X.X86PvP2mFrames):
            order = list(r.p2m_pfns)
    if max_pfn is None or not order:
        return
    invalid = (1 << (width * 8)) - 1
    fmt = "<Q" if width == 8 else "<I"
    blob = b"".join(st.pages.get(p, b"") for p in order)
    for pfn in range(max_pfn + 1):
        at = pfn * width
        if at + width > len(blob):
            d.add(f"p2m: the restored p2m frames end before pfn {pfn:#x}")
            return
        got = struct.unpack_from(fmt, blob, at)[0]
        expect = st.mfn_of.get(pfn, invalid)
        if got != expect:
            d.add(f"p2m: entry for pfn {pfn:#x} is {got:#x}, the domain has it at mfn {expect:#x}")


def _check_shared_info(d: _Diff, st: Restored, width: int, recs) -> None:
    src = None
    for r in recs:
        if isinstance(r, X.SharedInfo):
            src = r.data
    if src is None or len(src) < A.SHARED_INFO[width].size or not st.shared_info:
        return
    layout, vi = A.SHARED_INFO[width], A.VCPU_INFO[width]
    s, g = layout.unpack(src), layout.unpack(st.shared_info)
    infos = bytearray(s["vcpu_info"])
    for v in range(A.XEN_LEGACY_MAX_VCPUS):
        off = v * vi.size + vi.offset("evtchn_pending_sel")
        infos[off:off + width] = bytes(width)
    if g["vcpu_info"] != bytes(infos):
        d.add("shared info: vcpu_info differs from the stream's (pending selectors cleared)"
              f"{_first_diff(bytes(infos), g['vcpu_info'])}")
    for name in ("max_pfn", "nmi_reason", "p2m_cr3", "p2m_vaddr", "p2m_generation"):
        if s[name] != g[name]:
            d.add(f"shared info: arch.{name} is {g[name]:#x}, the stream has {s[name]:#x}")
    if g["pfn_to_mfn_frame_list_list"] != 0:
        d.add("shared info: arch.pfn_to_mfn_frame_list_list is not cleared")
    if g["evtchn_pending"] != bytes(len(g["evtchn_pending"])):
        d.add("shared info: pending event channels are not cleared")
    if g["evtchn_mask"] != b"\xff" * len(g["evtchn_mask"]):
        d.add("shared info: event channels are not all masked")


def _check_pins(d: _Diff, st: Restored, types: dict) -> None:
    for pfn, t in sorted(types.items()):
        if t & 0x8 and 1 <= t & 0x7 <= 4:
            mfn = st.mfn_of.get(pfn)
            if mfn is None or st.pins.get(mfn) != t & 0x7:
                d.add(f"pfn {pfn:#x}: a pinned L{t & 7} table in the stream, not pinned as such")


def _unlocalise_vcpu(ctx: bytes, st: Restored, width: int, vcpu: int, cr1: bool) -> bytes:
    layout = A.VCPU_GUEST_CONTEXT[width]
    f = layout.unpack(ctx)
    w = "Q" if width == 8 else "I"
    f["flags"] &= ~A.VGCF_ONLINE
    frames = list(struct.unpack(f"<16{w}", f["gdt_frames"]))
    for i in range((f["gdt_ents"] + 511) // 512):
        frames[i] = st.pfn_of.get(frames[i], frames[i])
    f["gdt_frames"] = struct.pack(f"<16{w}", *frames)
    ctrl = list(struct.unpack(f"<8{w}", f["ctrlreg"]))
    ctrl[3] = A.pfn_to_cr3(width, st.pfn_of.get(A.cr3_to_pfn(width, ctrl[3]), 0xFFFFF))
    if width == 8 and cr1:   # the restorer writes mfn << PAGE_SHIFT, without bit 0
        ctrl[1] = st.pfn_of.get(ctrl[1] >> 12, 0xFFFFF)
    f["ctrlreg"] = struct.pack(f"<8{w}", *ctrl)
    if vcpu == 0:
        regs = A.CPU_USER_REGS[width]
        r = regs.unpack(f["user_regs"])
        key = "rdx" if width == 8 else "edx"
        r[key] = st.pfn_of.get(r[key], r[key])
        f["user_regs"] = regs.pack(**r)
    return layout.pack(**f)


def _normalise_vcpu(ctx: bytes, width: int) -> bytes:
    layout = A.VCPU_GUEST_CONTEXT[width]
    f = layout.unpack(ctx)
    f["flags"] &= ~A.VGCF_ONLINE
    if width == 8:
        ctrl = list(struct.unpack("<8Q", f["ctrlreg"]))
        if ctrl[1] & 1:
            ctrl[1] >>= 12
        f["ctrlreg"] = struct.pack("<8Q", *ctrl)
    return layout.pack(**f)


def _check_vcpus(d: _Diff, st: Restored, width: int, recs, pv: bool) -> None:
    if not pv:
        return
    last: dict[tuple[int, int], bytes] = {}
    kinds = {X.X86PvVcpuBasic: 0, X.X86PvVcpuExtended: 1, X.X86PvVcpuXsave: 2, X.X86PvVcpuMsrs: 3}
    for r in recs:
        k = kinds.get(type(r))
        if k is not None and r.context:
            last[(r.vcpu_id, k)] = r.context
    for (vcpu, kind), ctx in sorted(last.items()):
        got = st.vcpu.get((vcpu, kind))
        name = f"vcpu{vcpu} {KINDS[kind]}"
        if got is None:
            d.add(f"{name}: in the stream, never given to the hypervisor")
            continue
        if kind == 0:
            if len(got) != len(ctx):
                d.add(f"{name}: {len(ctx)} octets in the stream, {len(got)} set")
                continue
            cr1 = width == 8 and struct.unpack_from("<Q", ctx, A.VCPU_GUEST_CONTEXT[8].offset("ctrlreg") + 8)[0] & 1
            got = _unlocalise_vcpu(got, st, width, vcpu, bool(cr1))
            ctx = _normalise_vcpu(ctx, width)
        elif kind == 1:
            got = got[:len(ctx)]
        if got != ctx:
            d.add(f"{name}: context differs from the stream's{_first_diff(ctx, got)}")


def _check_tail(d: _Diff, st: Restored, recs, params: dict, pv: bool) -> None:
    tsc = ctx = cpuid = msrs = None
    for r in recs:
        if isinstance(r, X.X86TscInfo):
            tsc = (r.mode, r.khz, r.nsec, r.incarnation)
        elif isinstance(r, X.HvmContext):
            ctx = r.data
        elif isinstance(r, X.X86CpuidPolicy) and r.leaves:
            cpuid = tuple(tuple(leaf) for leaf in r.leaves)
        elif isinstance(r, X.X86MsrPolicy) and r.entries:
            msrs = tuple(tuple(e) for e in r.entries)
    if tsc is not None and st.tsc != tsc:
        d.add(f"TSC info: the stream has mode/khz/nsec/incarnation {tsc}, restored {st.tsc}")
    if ctx is not None and st.hvm_context != ctx:
        d.add("HVM context: " + ("never set" if st.hvm_context is None else
                                 f"sha256 {_h(ctx)} in the stream, {_h(st.hvm_context)} set"
                                 f"{_first_diff(ctx, st.hvm_context)}"))
    if cpuid is not None and st.cpuid != cpuid:
        d.add(f"CPUID policy: {len(cpuid)} leaves in the stream, "
              f"{'none' if st.cpuid is None else len(st.cpuid)} set" +
              ("" if st.cpuid is None or len(st.cpuid) != len(cpuid) else " (values differ)"))
    if msrs is not None and st.msrs != msrs:
        d.add(f"MSR policy: {msrs} in the stream, {st.msrs} set")
    if not pv:
        for index, value in sorted(params.items()):
            if index in (A.HvmParam.STORE_EVTCHN, A.HvmParam.CONSOLE_EVTCHN, A.HvmParam.PAE_ENABLED):
                continue
            if st.params.get(index) != value:
                got = st.params.get(index)
                d.add(f"HVM param {index}: {value:#x} in the stream, "
                      f"{'never set' if got is None else hex(got)} restored")
        for index, value in ((A.HvmParam.STORE_EVTCHN, STORE_EVTCHN),
                             (A.HvmParam.CONSOLE_EVTCHN, CONSOLE_EVTCHN)):
            if st.params.get(index) != value:
                d.add(f"HVM param {index}: the toolstack's event channel {value} was not set")

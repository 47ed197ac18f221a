"""The libxenguest testee: the fake hypervisor's decisions (without the
library, through ctypes), the state comparison, and a few real restores
with Debian's libxenguest 4.17.

The shim and the driver are built with ``cc`` against the release's headers;
without ``cc`` or the packages these tests are skipped with one line saying
which is missing.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from xenstream.conformance.delivery import MODES
from xenstream.conformance.execute import Limits
from xenstream.conformance.libxenguest import build as B
from xenstream.conformance.native import Unavailable
from xenstream.conformance.libxenguest import state as S
from xenstream.conformance.libxenguest.testee import (Libxenguest, describe_failure, first_frame,
                                                      guest_of, has_checkpoint, judge_restore)
from xenstream.conformance.execute import Observed
from xenstream.reference import build, libxc, xen_abi as A
from xenstream.reference.checker import Checker
from xenstream.reference.source import Source
from xenstream.reference.formats import validate
from xenstream.reference.libxc import DomainType

from xen_packages import need_cc, release_dir


@pytest.fixture(scope="module")
def built():
    need_cc()
    rel = release_dir("4.17")
    try:
        return B.build(rel)
    except Unavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture()
def fx(built):
    lib = ctypes.CDLL(str(built.shim))
    lib.fakexen_reset.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_ulong]
    lib.fakexen_hypercall.argtypes = [ctypes.c_uint] + [ctypes.c_uint64] * 5
    lib.fakexen_hypercall.restype = ctypes.c_long
    lib.fakexen_check_hvm_context.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint]
    lib.fakexen_check_hvm_context.restype = ctypes.c_long
    lib.fakexen_check_hvm_param.argtypes = [ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64]
    lib.fakexen_check_hvm_param.restype = ctypes.c_long
    lib.fakexen_check_cpu_policy.restype = ctypes.c_long
    lib.fakexen_last_refusal.restype = ctypes.c_char_p
    assert lib.fakexen_reset(1, 2, 64) == 0
    return lib


EINVAL, ENODATA, ERANGE, ENOMEM, EEXIST = 22, 61, 34, 12, 17


def refusal(fx) -> str:
    return fx.fakexen_last_refusal().decode()


# -- the dispatcher's decisions, without libxenguest --------------------------


def test_hvm_context_real_records_load(fx):
    for release in ("4.17",):
        data = A.hvm_context(2, release=release)
        assert fx.fakexen_check_hvm_context(data, len(data), 2) == 0


@pytest.mark.parametrize("mutate, errno_, check", [
    (lambda d: d[:8] + struct.pack("<I", 0x12345678) + d[12:], EINVAL, "hvm.header.magic"),
    (lambda d: d[:12] + struct.pack("<I", 2) + d[16:], EINVAL, "hvm.header.version"),
    (lambda d: d[:-8], ENODATA, "hvm.end_missing"),
    (lambda d: b"HVMCTX" + bytes(58), ENODATA, "hvm.header.missing"),
])
def test_hvm_context_refusals(fx, mutate, errno_, check):
    data = mutate(A.hvm_context(1))
    assert fx.fakexen_check_hvm_context(data, len(data), 1) == -errno_
    assert refusal(fx).startswith(check + ":") and "[source: xen/arch/x86/hvm/save.c" in refusal(fx)


def test_hvm_context_per_vcpu_records_need_the_vcpu(fx):
    data = A.hvm_context(3)
    assert fx.fakexen_check_hvm_context(data, len(data), 2) == -EINVAL
    assert refusal(fx).startswith("hvm.instance:")


def test_hvm_context_bad_cpu_and_sizes(fx):
    recs = A.hvm_save_records(A.hvm_context(1))
    cpu = bytearray(recs[1].body)
    struct.pack_into("<Q", cpu, A.HVM_HW_CPU.offset("cr0"), 0x80000000)   # PG without PE, no ET
    bad = A.encode_hvm_records([recs[0], replace(recs[1], body=bytes(cpu)), *recs[2:]])
    assert fx.fakexen_check_hvm_context(bad, len(bad), 1) == -EINVAL
    assert refusal(fx).startswith("hvm.cpu.cr0:")
    short_mtrr = [r if r.typecode != A.HvmSaveCode.MTRR else replace(r, body=r.body[:-8]) for r in recs]
    bad = A.encode_hvm_records(short_mtrr)
    assert fx.fakexen_check_hvm_context(bad, len(bad), 1) == -EINVAL
    assert refusal(fx).startswith("hvm.entry_size:")
    unknown = A.encode_hvm_records([recs[0], A.HvmSaveRecord(21, 0, b""), recs[-1]])
    assert fx.fakexen_check_hvm_context(unknown, len(unknown), 1) == -EINVAL
    assert refusal(fx).startswith("hvm.typecode:")


@pytest.mark.parametrize("index, value, old, result", [
    (A.HvmParam.STORE_PFN, 0xFEFFC, 0, 0),
    (A.HvmParam.TIMER_MODE, 1, 0, 0),
    (A.HvmParam.TIMER_MODE, 9, 0, -EINVAL),
    (39, 1, 0, -EINVAL),
    (A.HvmParam.PAE_ENABLED, 1, 0, -EINVAL),
    (A.HvmParam.X87_FIP_WIDTH, 2, 0, -EINVAL),
    (A.HvmParam.IOREQ_PFN, 5, 4, -EEXIST),
    (A.HvmParam.IOREQ_PFN, 4, 4, 0),
])
def test_hvm_param_decisions(fx, index, value, old, result):
    assert fx.fakexen_check_hvm_param(int(index), value, old) == result


def test_cpu_policy_decisions(fx):
    leaf_t = ctypes.c_uint32 * 6
    msr_t = (ctypes.c_uint32 * 4)
    errs = [ctypes.c_uint32() for _ in range(3)]

    def check(leaves, msrs):
        la = (leaf_t * max(1, len(leaves)))(*[leaf_t(*x) for x in leaves])
        ma = (msr_t * max(1, len(msrs)))(*[msr_t(i, f, v & 0xFFFFFFFF, v >> 32) for i, f, v in msrs])
        return fx.fakexen_check_cpu_policy(la, len(leaves), ma, len(msrs), *[ctypes.byref(e) for e in errs])

    assert check(A.cpuid_policy(), A.msr_policy()) == 0
    assert check([(0x5, 0, 1, 2, 3, 4)], []) == -ERANGE and errs[0].value == 5
    assert check([(0x20, A.XEN_CPUID_NO_SUBLEAF, 0, 0, 0, 0)], []) == -ERANGE
    assert check([], [(0x10B, 0, 0)]) == -ERANGE and errs[2].value == 0x10B
    assert check([], [(0xCE, 1, 0)]) == -EINVAL


def _domctl(cmd: int, body: bytes, version: int = 0x15, domain: int = 1) -> ctypes.Array:
    buf = (ctypes.c_uint8 * 256)()
    struct.pack_into("<IIH", buf, 0, cmd, version, domain)
    ctypes.memmove(ctypes.addressof(buf) + 16, body, len(body))
    return buf


def test_domctl_dispatch(fx):
    domctl = 36
    buf = _domctl(5, b"")                      # getdomaininfo
    assert fx.fakexen_hypercall(domctl, ctypes.addressof(buf), 0, 0, 0, 0) == 0
    domain, _, flags = struct.unpack_from("<HHI", buf, 16)
    assert domain == 1 and flags & (1 << 1) and flags & (1 << 3)   # HVM, paused
    buf = _domctl(5, b"", version=0x14)
    assert fx.fakexen_hypercall(domctl, ctypes.addressof(buf), 0, 0, 0, 0) == -13   # EACCES
    assert refusal(fx).startswith("domctl.interface_version:")
    buf = _domctl(60, struct.pack("<IIIIQ", 3, 1000, 1, 0, 0))   # settscinfo, mode 3
    assert fx.fakexen_hypercall(domctl, ctypes.addressof(buf), 0, 0, 0, 0) == -EINVAL
    assert refusal(fx).startswith("tsc.mode:")
    buf = _domctl(60, struct.pack("<IIIIQ", 2, 1000, 1, 0, 0))
    assert fx.fakexen_hypercall(domctl, ctypes.addressof(buf), 0, 0, 0, 0) == 0


def test_populate_enforces_max_pages(fx):
    assert fx.fakexen_reset(1, 1, 2) == 0
    pfns = (ctypes.c_uint64 * 3)(10, 11, 12)
    reservation = struct.pack("<QQII H", ctypes.addressof(pfns), 3, 0, 0, 1)
    buf = ctypes.create_string_buffer(reservation, 32)
    done = fx.fakexen_hypercall(12, 6, ctypes.addressof(buf), 0, 0, 0)   # memory_op populate_physmap
    assert done == 2 and refusal(fx).startswith("memory.max_pages:")


# -- the state comparison ----------------------------------------------------


def _dump(sections) -> bytes:
    out = bytearray(S.MAGIC)
    for tag, payload in sections:
        out += tag + struct.pack("<I", len(payload)) + payload
    return bytes(out)


def test_state_compare_finds_a_changed_page_and_a_missing_param():
    stream = build.libxc_stream(DomainType.X86_HVM, pages=2, batch=2)
    pages = []
    for r in stream.records:
        if isinstance(r, libxc.PageData):
            for i, e in enumerate(r.pfns):
                pages.append((e & libxc.PFN_MASK, r.pages[i * 4096:(i + 1) * 4096]))
    sections = [(b"META", struct.pack("<4I", 1, 8, 1, 0))]
    for n, (pfn, data) in enumerate(pages):
        if pfn == 1:
            data = b"\xee" + data[1:]
        sections.append((b"PAGE", struct.pack("<QQ", pfn, 0x2000 + n) + data))
    tsc = build.TSC_INFO
    sections.append((b"TSC ", struct.pack("<4IQ", tsc.mode, tsc.khz, tsc.incarnation, 0, tsc.nsec)))
    sections.append((b"HCTX", next(r.data for r in stream.records if isinstance(r, libxc.HvmContext))))
    leaves = next(r.leaves for r in stream.records if isinstance(r, libxc.X86CpuidPolicy))
    msrs = next(r.entries for r in stream.records if isinstance(r, libxc.X86MsrPolicy))
    sections.append((b"CPUP", struct.pack("<II", len(leaves), len(msrs)) +
                     b"".join(struct.pack("<6I", *x) for x in leaves)))
    sections.append((b"MSRP", b"".join(struct.pack("<IIQ", *x) for x in msrs)))
    for index, value in build.HVM_PARAMS[1:]:
        sections.append((b"PARM", struct.pack("<IQ", index, value)))
    for index, value in ((2, 1), (18, 2)):
        sections.append((b"PARM", struct.pack("<IQ", index, value)))
    diff = S.compare(stream, S.parse(_dump(sections)))
    assert any(line.startswith("pfn 0x1:") for line in diff)
    assert any(line.startswith(f"HVM param {int(build.HVM_PARAMS[0][0])}:") for line in diff)
    assert len(diff) == 2, diff


def test_state_parse_refuses_garbage():
    with pytest.raises(S.StateError):
        S.parse(b"nope")
    with pytest.raises(S.StateError):
        S.parse(S.MAGIC + b"PAGE" + struct.pack("<I", 100))


def test_verdict_details():
    assert describe_failure("reject", "fakexen: refused: hvm.cpu.cr0: bad [source: x]\nxc: error: y", 1) \
        == ("reject", "fake hypervisor: hvm.cpu.cr0")
    assert describe_failure("reject", "xc: error: Invalid Version: Got 4: Internal error\n", 1) \
        == ("reject", "Invalid Version: Got 4")
    err = "restore: xg_sr_restore_x86_pv.c:7: pfn_to_mfn: Assertion `pfn <= max' failed.\n"
    assert describe_failure("signal", err, -6) == ("abort", "assertion `pfn <= max' failed in pfn_to_mfn")
    bt = ("/x/fake_hypercalls.so(+0x1)[0x1]\n/lib/libc.so.6(+0x2)[0x2]\n"
          "/y/libxenguest.so.4.17(+0xaa40)[0x3]\n")
    assert first_frame(bt) == "libxenguest.so.4.17(+0xaa40)"
    hvm = libxc.encode(build.libxc_stream(DomainType.X86_HVM, checkpoints=1))
    assert guest_of(hvm) == "hvm" and has_checkpoint(hvm)
    assert guest_of(libxc.encode(build.libxc_stream(DomainType.X86_PV))) == "pv"
    wrong = Observed("wrong-state", "pfn 0x1 differs")
    assert judge_restore("accept", "restore", [wrong]).kind == "wrong-state"
    assert judge_restore("reject", "restore", [wrong]).kind == "wrong-verdict"


# -- the real library (few, quick) -------------------------------------------


def _run(built, tmp_path, data: bytes, mode: str = "file"):
    impl = Libxenguest(str(built.release.directory), Limits(20, 0, 1 << 22))
    path = tmp_path / "s.bin"
    path.write_bytes(data)
    try:
        return impl.verify("libxc", data, path, mode)
    finally:
        impl.close()


@pytest.mark.parametrize("mode", MODES)
def test_every_delivery_reaches_the_library(built, tmp_path, mode):
    """A path, stdin, a pipe and a socket written piece by piece (short reads), and
    an inherited descriptor positioned past octets that are not the stream: the
    library restores the same domain from each, and refuses the same way."""
    data = libxc.encode(build.libxc_stream(DomainType.X86_PV, vcpus=2, pages=64, batch=8))
    obs = _run(built, tmp_path, data, mode)
    assert (obs.mode, obs.verdict) == (mode, "accept"), obs.stderr[-2000:]
    assert ("--fd" in obs.argv) == (mode in ("fd", "socket"))
    bad = bytearray(data)
    bad[12:16] = (4).to_bytes(4, "big")
    obs = _run(built, tmp_path, bytes(bad), mode)
    assert (obs.verdict, obs.detail) == ("reject", "Invalid Version: Expected 2 <= ver <= 3, Got 4")


@pytest.mark.parametrize("guest, version, width", [
    (DomainType.X86_HVM, 3, 8), (DomainType.X86_HVM, 2, 8),
    (DomainType.X86_PV, 3, 8), (DomainType.X86_PV, 2, 8), (DomainType.X86_PV, 3, 4)])
def test_valid_streams_restore_with_matching_state(built, tmp_path, guest, version, width):
    data = libxc.encode(build.libxc_stream(guest, version=version, width=width, vcpus=2))
    obs = _run(built, tmp_path, data)
    assert obs.verdict == "accept", obs.stderr[-2000:]


def test_the_library_and_the_fake_hypervisor_refuse_apart(built, tmp_path):
    stream = build.libxc_stream(DomainType.X86_HVM)
    data = bytearray(libxc.encode(stream))
    data[12:16] = (4).to_bytes(4, "big")
    obs = _run(built, tmp_path, bytes(data))
    assert (obs.verdict, obs.detail) == ("reject", "Invalid Version: Expected 2 <= ver <= 3, Got 4")
    k = next(i for i, r in enumerate(stream.records) if isinstance(r, libxc.HvmContext))
    recs = list(stream.records)
    recs[k] = libxc.HvmContext(b"HVMCTX" + bytes(58))
    obs = _run(built, tmp_path, libxc.encode(replace(stream, records=tuple(recs))))
    assert (obs.verdict, obs.detail) == ("reject", "fake hypervisor: hvm.header.missing")


def test_wrong_state_is_seen(built, tmp_path):
    """A checkpointed stream whose last set of records (terminated by END)
    changes a page: libxenguest never applies that set."""
    stream = build.libxc_stream(DomainType.X86_HVM, checkpoints=1, pages=4, batch=4)
    recs = list(stream.records)
    last = max(i for i, r in enumerate(recs) if isinstance(r, libxc.PageData))
    recs[last] = build.page_data([0])
    recs[last] = libxc.PageData(recs[last].pfns, b"\x5a" * 4096)
    obs = _run(built, tmp_path, libxc.encode(replace(stream, records=tuple(recs))))
    assert obs.verdict == "wrong-state" and obs.detail.startswith("pfn 0x0:")


def test_known_crashes_of_libxenguest(built, tmp_path):
    """docs/findings.md: PAGE_DATA before X86_PV_P2M_FRAMES (SIGSEGV), and a
    page table naming a pfn beyond the p2m (assertion in pfn_to_mfn)."""
    pv = build.libxc_stream(DomainType.X86_PV)
    recs = list(pv.records)
    j = next(i for i, r in enumerate(recs) if isinstance(r, libxc.X86PvP2mFrames))
    p2m = recs.pop(j)
    first_page = next(i for i, r in enumerate(recs) if isinstance(r, libxc.PageData))
    recs.insert(first_page + 1, p2m)
    recs[first_page] = build.pv_page_data(build.pv_guest(), [0])
    obs = _run(built, tmp_path, libxc.encode(replace(pv, records=tuple(recs))))
    assert obs.verdict == "signal" and obs.detail.startswith("SIGSEGV in libxenguest.so.4.17")
    guest = build.pv_guest()
    table = struct.pack("<512Q", *([A.pte(guest.max_pfn + 100)] + [0] * 511))
    recs = list(pv.records)
    k = next(i for i, r in enumerate(recs) if isinstance(r, libxc.PageData))
    recs.insert(k + 1, libxc.PageData((libxc.pfn_entry(0, libxc.PageType.L1TAB),), table))
    obs = _run(built, tmp_path, libxc.encode(replace(pv, records=tuple(recs))))
    assert obs.verdict == "abort" and obs.detail.endswith("failed in pfn_to_mfn"), obs.stderr[-800:]


def test_lenient_departures_of_libxenguest(built, tmp_path):
    """docs/findings.md: an X86_PV_INFO longer than 8 octets is restored as if
    it were 8 (only a short body is refused), and an X86_CPUID_POLICY that
    comes after STATIC_DATA_END is accepted and never given to Xen."""
    pv = build.libxc_stream(DomainType.X86_PV)
    recs = list(pv.records)
    k = next(i for i, r in enumerate(recs) if isinstance(r, libxc.X86PvInfo))
    recs[k] = libxc.RawRecord(libxc.RecordType.X86_PV_INFO, recs[k].encode_body(pv.endian) + bytes(8),
                              libxc.LAYER)
    long_info = libxc.encode(replace(pv, records=tuple(recs)))
    checker = validate(Source.from_bytes(long_info), "libxc", Checker())
    assert checker.rule_ids() == ["libxc.x86_pv_info.length"]
    assert _run(built, tmp_path, long_info).verdict == "accept"
    recs = [r for r in pv.records if not isinstance(r, (libxc.X86CpuidPolicy, libxc.X86MsrPolicy))]
    k = next(i for i, r in enumerate(recs) if isinstance(r, libxc.StaticDataEnd))
    recs.insert(k + 1, libxc.X86CpuidPolicy(((0, 0, 1, 2, 3, 4),)))
    obs = _run(built, tmp_path, libxc.encode(replace(pv, records=tuple(recs))))
    assert obs.verdict == "wrong-state" and obs.detail.startswith("CPUID policy:"), obs.detail


def test_missing_release_is_one_clear_line(tmp_path):
    impl = Libxenguest(str(tmp_path / "nowhere"))
    try:
        assert impl.built is None and "no Xen release here" in impl.problem
        assert impl.verify("libxc", b"", None, "file").verdict == "not-executable"
    finally:
        impl.close()

"""reference/xen_abi.py: layouts against Xen's installed public headers, and
the structures it builds against the checks Xen makes of them."""

from __future__ import annotations

import struct
import subprocess

import pytest

from xenstream.reference import xen_abi as A

from xen_packages import need_cc, read_env, release_dir

# (our layout, C type, {our field: C member} where the names differ; None: not in C)
_RENAMES_START = {"console_mfn": "console.domU.mfn", "console_evtchn": "console.domU.evtchn"}
_SHINFO_ARCH = {n: f"arch.{n}" for n in ("max_pfn", "pfn_to_mfn_frame_list_list", "nmi_reason",
                                          "p2m_cr3", "p2m_vaddr", "p2m_generation")}


def _probes(release: str):
    out = [
        (A.HVM_SAVE_DESCRIPTOR, "struct hvm_save_descriptor", {}),
        (A.HVM_SAVE_HEADER, "struct hvm_save_header", {}),
        (A.HVM_HW_CPU, "struct hvm_hw_cpu", {}),
        (A.hvm_hw_lapic(release), "struct hvm_hw_lapic", {}),
        (A.HVM_HW_LAPIC_REGS, "struct hvm_hw_lapic_regs", {}),
        (A.HVM_HW_MTRR, "struct hvm_hw_mtrr", {}),
        (A.CPU_USER_REGS[8], "struct cpu_user_regs_x86_64", {}),
        (A.CPU_USER_REGS[4], "struct cpu_user_regs_x86_32", {}),
        (A.VCPU_GUEST_CONTEXT[8], "vcpu_guest_context_x86_64_t", {}),
        (A.VCPU_GUEST_CONTEXT[4], "vcpu_guest_context_x86_32_t", {}),
        (A.START_INFO[8], "start_info_x86_64_t", _RENAMES_START),
        (A.START_INFO[4], "start_info_x86_32_t", _RENAMES_START),
        (A.VCPU_INFO[8], "struct vcpu_info_x86_64", {"cr2": "arch.cr2"}),
        (A.VCPU_INFO[4], "struct vcpu_info_x86_32", {"cr2": "arch.cr2"}),
        (A.SHARED_INFO[8], "shared_info_x86_64_t", _SHINFO_ARCH),
        (A.SHARED_INFO[4], "shared_info_x86_32_t", {**_SHINFO_ARCH, "wc_sec_hi": "arch.wc_sec_hi"}),
        (A.XEN_CPUID_LEAF, "xen_cpuid_leaf_t", {}),
        (A.XEN_MSR_ENTRY, "xen_msr_entry_t", {}),
        (A.XEN_DOMCTL_VCPU_MSR, "xen_domctl_vcpu_msr_t", {}),
        (A.XEN_DOMCTL_EXT_VCPUCONTEXT, "struct xen_domctl_ext_vcpucontext", {}),
        (A.GRANT_ENTRY_V1, "grant_entry_v1_t", {}),
    ]
    return out


def _probe_source(release: str) -> str:
    lines = ["#define __XEN_TOOLS__ 1", "#include <stdio.h>", "#include <stddef.h>",
             "#include <xenctrl.h>", "#include <xen/foreign/x86_32.h>",
             "#include <xen/foreign/x86_64.h>", "#include <xen/hvm/save.h>",
             "#include <xen/grant_table.h>", "int main(void) {"]
    for layout, ctype, renames in _probes(release):
        lines.append(f'printf("{layout.name}|@sizeof|%zu\\n", sizeof({ctype}));')
        for name in layout.names:
            member = renames.get(name, name)
            lines.append(f'printf("{layout.name}|{name}|%zu\\n", offsetof({ctype}, {member}));')
    consts = {"HVM_FILE_MAGIC": A.HVM_FILE_MAGIC, "HVM_FILE_VERSION": A.HVM_FILE_VERSION,
              "HVM_SAVE_CODE_MAX": A.HVM_SAVE_CODE_MAX, "HVM_NR_PARAMS": A.HVM_NR_PARAMS,
              "FIRST_RESERVED_GDT_ENTRY": A.FIRST_RESERVED_GDT_ENTRY,
              "XEN_LEGACY_MAX_VCPUS": A.XEN_LEGACY_MAX_VCPUS, "VGCF_online": A.VGCF_ONLINE,
              "XEN_X86_FPU_INITIALISED": A.XEN_X86_FPU_INITIALISED}
    for code in A.HvmSaveCode:  # the variable-size types have a CODE macro instead
        expr = f"{code.name}_CODE" if code.name in ("CPU_XSAVE", "CPU_MSR") else \
            f"HVM_SAVE_CODE({code.name})"
        lines.append(f'printf("const|HVM_SAVE_CODE_{code.name}|%d\\n", (int){expr});')
    for p in A.HvmParam:
        consts[f"HVM_PARAM_{p.name}"] = int(p)
    for name in consts:
        lines.append(f'printf("const|{name}|%lld\\n", (long long)({name}));')
    lines += ["return 0; }"]
    return "\n".join(lines), consts


@pytest.mark.parametrize("release", ["4.17", "4.20"])
def test_layouts_match_the_installed_headers(release, tmp_path):
    cc = need_cc()
    rel = release_dir(release, fetch=release == "4.17")
    inc = read_env(rel)["XEN_INCLUDE"]
    src, consts = _probe_source(release)
    (tmp_path / "probe.c").write_text(src)
    subprocess.run([cc, "-I", inc, "-o", str(tmp_path / "probe"), str(tmp_path / "probe.c")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout
    seen = {}
    for line in out.splitlines():
        kind, name, value = line.split("|")
        seen[(kind, name)] = int(value)
    for layout, _, _ in _probes(release):
        assert seen[(layout.name, "@sizeof")] == layout.size, layout.name
        for name in layout.names:
            assert seen[(layout.name, name)] == layout.offset(name), f"{layout.name}.{name}"
    for code in A.HvmSaveCode:
        assert seen[("const", f"HVM_SAVE_CODE_{code.name}")] == code
    for name, value in consts.items():
        assert seen[("const", name)] == value, name


def test_hvm_context_is_a_save_record_sequence():
    for release in A.RELEASES:
        data = A.hvm_context(3, release=release)
        recs = A.hvm_save_records(data)
        assert recs[0].typecode == A.HvmSaveCode.HEADER and recs[-1].typecode == A.HvmSaveCode.END
        hdr = A.HVM_SAVE_HEADER.unpack(recs[0].body)
        assert hdr["magic"] == A.HVM_FILE_MAGIC and hdr["version"] == A.HVM_FILE_VERSION
        cpus = [r for r in recs if r.typecode == A.HvmSaveCode.CPU]
        assert [r.instance for r in cpus] == [0, 1, 2]
        assert all(len(r.body) == A.HVM_HW_CPU.size for r in cpus)
        lapic = [r for r in recs if r.typecode == A.HvmSaveCode.LAPIC]
        assert all(len(r.body) == A.hvm_hw_lapic(release).size for r in lapic)
        assert [r.typecode for r in recs] == sorted(r.typecode for r in recs[:-1]) + [0]
        assert sum(8 + len(r.body) for r in recs) == len(data)


@pytest.mark.parametrize("mode", ["long", "real"])
def test_hvm_cpu_passes_xens_control_register_checks(mode):
    """hvm_load_cpu_ctxt (xen/arch/x86/hvm/hvm.c): CR0.ET set, no PG without PE,
    flags only FPU_INITIALISED, pad0 zero, TSC_AUX 32 bits, LMA only with LME and PG."""
    cpu = A.HVM_HW_CPU.unpack(A.hvm_cpu(1, mode=mode))
    assert cpu["cr0"] & 0x10
    assert (cpu["cr0"] & 0x80000001) != 0x80000000
    assert cpu["flags"] & ~A.XEN_X86_FPU_INITIALISED == 0 and cpu["pad0"] == 0
    assert cpu["msr_tsc_aux"] >> 32 == 0
    if cpu["msr_efer"] & 0x400:   # LMA
        assert cpu["msr_efer"] & 0x100 and cpu["cr0"] & 0x80000000


def test_hvm_save_records_refuses_broken_contexts():
    data = A.hvm_context(1)
    with pytest.raises(A.AbiError, match="no END"):
        A.hvm_save_records(data[:-8])
    with pytest.raises(A.AbiError, match="runs past the end"):
        A.hvm_save_records(data[:40])


def test_cpuid_policy_is_what_xen_takes_back():
    """Every leaf is one x86_cpuid_copy_from_buffer (xen/lib/x86/cpuid.c) accepts."""
    ns = A.XEN_CPUID_NO_SUBLEAF
    limits = {0x4: 6, 0x7: 3, 0xB: 2, 0xD: 63}
    for guest in ("hvm", "pv"):
        leaves = A.cpuid_policy(guest)
        assert leaves[0][2] == max(l[0] for l in leaves if l[0] < 0x40000000)
        for leaf, sub, *_ in leaves:
            if leaf in limits:
                assert sub < limits[leaf]
            elif leaf <= 0xD or leaf in (0x40000000, 0x40000100) or 0x80000000 <= leaf <= 0x80000021:
                assert sub == ns
            else:
                raise AssertionError(hex(leaf))
        ext = [l for l in leaves if l[0] == 0x80000001][0]
        assert ext[5] & (1 << 29) and ext[5] & (1 << 20)  # LM, NX
    assert [m[0] for m in A.msr_policy()] == [A.MSR_INTEL_PLATFORM_INFO, A.MSR_ARCH_CAPABILITIES]


@pytest.mark.parametrize("width", [8, 4])
def test_pv_guest_is_consistent(width):
    g = A.pv_guest(width, 40, 2)
    ctx = A.VCPU_GUEST_CONTEXT[width].unpack(g.vcpu_context(0))
    regs = A.CPU_USER_REGS[width].unpack(ctx["user_regs"])
    assert regs["rdx" if width == 8 else "edx"] == g.start_info_pfn
    cr3 = struct.unpack_from("<Q" if width == 8 else "<I", ctx["ctrlreg"], 3 * width)[0]
    root = A.cr3_to_pfn(width, cr3)
    assert root == g.cr3_pfn and g.page_type(root) & 0x7 == g.levels and g.page_type(root) & A.LPINTAB
    assert ctx["gdt_ents"] <= A.FIRST_RESERVED_GDT_ENTRY
    si = A.START_INFO[width].unpack(g.page(g.start_info_pfn))
    for pfn in (si["store_mfn"], si["console_mfn"], *g.p2m_pfns, g.start_info_pfn):
        assert pfn <= g.max_pfn and g.page_type(pfn) == A.NOTAB
    # every present entry of every table names a page of the guest, one level down
    for pfn, kind in g.pagetables:
        entries = struct.unpack("<512Q", g.page(pfn))
        for e in entries:
            if e & 1:
                target = A.pte_pfn(e)
                assert target <= g.max_pfn
                if kind & 0x7 > A.L1TAB:
                    assert g.page_type(target) & 0x7 == (kind & 0x7) - 1
                elif g.page_type(target) != A.NOTAB:
                    assert not e & 2, "a page table mapped writable"
    assert len(g.vcpu_context(1)) == A.VCPU_GUEST_CONTEXT[width].size
    assert len(g.shared_info()) == A.PAGE_SIZE
    with pytest.raises(ValueError):
        A.pv_guest(width, A.pv_min_pages(width) - 1)


def test_cstruct_refuses_unknown_fields_and_short_data():
    with pytest.raises(KeyError):
        A.HVM_SAVE_HEADER.pack(nosuch=1)
    with pytest.raises(A.AbiError):
        A.HVM_SAVE_HEADER.unpack(b"\0" * 10)
    with pytest.raises(AssertionError):
        A.CStruct("bad", [("a", "I")], expect=8, source="test")

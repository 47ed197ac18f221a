"""Writer profiles (what Xen's writers write) and reader profiles (what Xen's readers refuse).

- No false refusals: every named writer profile, in every layer, is accepted
  by the restore role, and by the reader profile of every release that
  restores it; a sample of each profile strategy too.
- The shape is the writer's: record order, which records appear, checkpoint
  phases, field values (checked against the C code's behaviour as
  docs/profiles.md describes it).
- ``--reader`` refuses what the C reader refuses, and only that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from xenstream import strategies as S
from xenstream.reference import libxc, libxl, profiles as P, readers, xl
from xenstream.reference.checker import Checker
from xenstream.reference.formats import validate
from xenstream.reference.libxc import RecordType
from xenstream.reference.rules import Role, Severity, catalogue
from xenstream.reference.source import Source

NAMES = P.all_names()
#: what a release's own reader refuses of what it writes: Xen 4.6-4.8 on an AMD host with DBEXT
#: write empty X86_PV_VCPU_MSRS records (the Errata) that their restore refuses
KNOWN_SELF_REFUSALS = {"libxc.x86_pv_vcpu.empty_context"}


def run(fmt, data, role=Role.RESTORE, reader=None):
    return validate(Source.from_bytes(data), fmt, Checker(role, reader=reader))


def refused(checker):
    return sorted({f.rule.id for f in checker.findings if checker.refuses(f)})


def reader_for(profile, release):
    name = readers.profile_name(release, {"save": "plain", "migrate": "plain"}.get(profile.mode, profile.mode))
    return readers.get(name)


@pytest.mark.parametrize("layer", P.LAYERS)
def test_every_named_profile_is_accepted_in_the_restore_role(layer):
    for name in NAMES:
        data = P.get(name).encode(layer)
        checker = run(layer, data)
        assert checker.accepted, (name, refused(checker))
        expected, rule = P.label(layer, data)
        assert expected in ("accept", "writer", "either"), (name, rule)


@pytest.mark.parametrize("layer", P.LAYERS)
def test_every_named_profile_is_restored_by_every_reader_of_its_release_and_later(layer):
    for name in NAMES:
        profile = P.get(name)
        data = profile.encode(layer)
        for plain in readers.restorable_by(profile.release, profile.version):
            checker = run(layer, data, reader=reader_for(profile, plain.release))
            assert checker.accepted, (name, plain.name, refused(checker))


def test_xen_4_6_to_4_8_refuse_their_own_empty_msrs_records():
    """The Errata's case: the writer's empty records, which its own reader refuses until 4.9."""
    for release in ((4, 6), (4, 7), (4, 8)):
        profile = P.get(P.profile_name(release, "pv"), amd_dbext=True)
        data = profile.encode("libxc")
        assert run("libxc", data).accepted
        assert refused(run("libxc", data, reader=readers.PROFILES[readers.profile_name(release)])) \
            == sorted(KNOWN_SELF_REFUSALS)
        assert run("libxc", data, reader=readers.get("xen-4.9")).accepted


@pytest.mark.parametrize("layer", P.LAYERS)
def test_showcase_and_other_writers(layer):
    for fmt, profile in P.showcase():
        if fmt == layer:
            assert run(layer, profile.encode(layer)).accepted, profile.name
    assert run("xenstore", P.c_xenstored()).accepted
    for fmt in ("libxc", "libxl"):
        for guest in ("hvm", "pv"):
            assert run(fmt, P.convert_legacy(fmt, guest=guest)).accepted


SAMPLES = [(layer, "any") for layer in P.LAYERS] + [
    ("libxc", "xen-4.17-hvm"), ("libxc", "xen-4.17-pv32-migrate"), ("libxc", "xen-4.6-pv-remus"),
    ("libxl", "xen-4.20-hvm-colo"), ("libxl", "xen-4.13-pv-remus"), ("xl", "xen-4.22-hvm-migrate"),
    ("xenstore", "c-xenstored"), ("libxl", "convert-legacy-stream"), ("libxc", "convert-legacy-stream")]


@pytest.mark.parametrize("fmt,profile", SAMPLES, ids=[f"{f}-{p}" for f, p in SAMPLES])
def test_profile_strategy_samples_are_accepted_in_the_restore_role(fmt, profile):
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(S.valid(fmt, profile=profile))
    def check(example):
        checker = run(fmt, example.data)
        assert checker.accepted, (example.description, refused(checker))
        strict = run(fmt, example.data, Role.STRICT)
        if example.expected == "accept":
            assert strict.accepted
        else:
            assert example.rule in strict.rule_ids()
            assert strict.accepted is (example.expected == "either")
    check()


def test_profile_option_errors_are_usage_errors():
    from xenstream.reference.errors import UsageError

    with pytest.raises(UsageError):
        S.generate_valid("libxc", 1, profile="xen-4.5-hvm")
    with pytest.raises(UsageError):
        S.generate_valid("libxc", 1, profile="xen-4.6-hvm-colo")
    with pytest.raises(UsageError):
        S.generate_valid("libxc", 1, profile="xen-4.17-hvm", guest="pv")
    with pytest.raises(UsageError):
        S.generate_valid("xenstore", 1, profile="xen-4.17-hvm")


# -- the writers' shape --------------------------------------------------------------------


def types(stream: libxc.LibxcStream) -> list[str]:
    return [RecordType(r.type).name for r in stream.records]


def squeeze(names: list[str]) -> list[str]:
    out = []
    for n in names:
        if not out or out[-1] != n or n != "PAGE_DATA":
            out.append(n)
    return out


def test_hvm_record_order_v3_and_v2():
    assert squeeze(types(P.get("xen-4.17-hvm").libxc())) == [
        "X86_CPUID_POLICY", "X86_MSR_POLICY", "STATIC_DATA_END", "PAGE_DATA", "X86_TSC_INFO", "HVM_CONTEXT",
        "HVM_PARAMS", "END"]
    assert squeeze(types(P.get("xen-4.13-hvm").libxc())) == [
        "PAGE_DATA", "X86_TSC_INFO", "HVM_CONTEXT", "HVM_PARAMS", "END"]


def test_pv_record_order_v3_and_v2():
    assert squeeze(types(P.get("xen-4.17-pv").libxc())) == [
        "X86_PV_INFO", "X86_CPUID_POLICY", "X86_MSR_POLICY", "STATIC_DATA_END", "X86_PV_P2M_FRAMES",
        "PAGE_DATA", "X86_TSC_INFO", "SHARED_INFO", "X86_PV_VCPU_BASIC", "X86_PV_VCPU_EXTENDED",
        "X86_PV_VCPU_XSAVE", "END"]
    assert squeeze(types(P.get("xen-4.13-pv").libxc()))[:3] == ["X86_PV_INFO", "X86_PV_P2M_FRAMES", "PAGE_DATA"]


def test_header_field_values():
    s = P.get("xen-4.17-pv32").libxc()
    assert (s.image_header.version, s.image_header.options, s.image_header.reserved) == (3, 0, 0)
    assert (s.domain_header.page_shift, s.domain_header.xen_major, s.domain_header.xen_minor) == (12, 4, 17)
    info = next(r for r in s.records if isinstance(r, libxc.X86PvInfo))
    assert (info.guest_width, info.pt_levels, info.reserved) == (4, 3, 0)
    basic = next(r for r in s.records if isinstance(r, libxc.X86PvVcpuBasic))
    assert len(basic.context) == 2800 and basic.reserved == 0
    assert P.get("xen-4.13-hvm").libxc().image_header.version == 2


def test_page_data_batches_pfns_ascending_with_unpopulated_as_xtab():
    s = P.get("xen-4.17-hvm").libxc()
    pages = [r for r in s.records if isinstance(r, libxc.PageData)]
    pfns = [p & libxc.PFN_MASK for p in pages[0].pfns]
    assert pfns == sorted(pfns) == list(range(len(pfns)))
    kinds = {p >> libxc.PFN_TYPE_SHIFT for p in pages[0].pfns}
    assert kinds == {libxc.PageType.NOTAB, libxc.PageType.XTAB}
    assert all(p.reserved == 0 for p in pages)


def test_hvm_params_follow_the_release_list():
    def indexes(name):
        s = P.get(name).libxc()
        return [i for i, _ in next(r for r in s.records if isinstance(r, libxc.HvmParams)).params]
    assert P.HVM_PARAM["PAE_ENABLED"] in indexes("xen-4.13-hvm")
    assert P.HVM_PARAM["PAE_ENABLED"] not in indexes("xen-4.14-hvm")
    assert P.HVM_PARAM["VM86_TSS"] in indexes("xen-4.8-hvm")
    assert P.HVM_PARAM["VM86_TSS_SIZED"] in indexes("xen-4.9-hvm")


def test_checkpointed_streams_end_as_the_writers_end_them():
    remus = P.get("xen-4.17-pv-remus", checkpoints=2)
    assert types(remus.libxc())[-1] == "CHECKPOINT"
    assert types(remus.libxc()).count("CHECKPOINT") == 3
    assert isinstance(remus.libxl().items[-1], libxl.CheckpointEnd)
    old = P.get("xen-4.6-hvm-remus")
    assert types(old.libxc())[-2:] == ["CHECKPOINT", "END"]
    items = old.libxl().items
    assert isinstance(items[-1], libxl.End) and isinstance(items[-2], libxl.EmulatorContext)
    colo = P.get("xen-4.17-hvm-colo").libxl().items
    i = next(k for k, r in enumerate(colo) if isinstance(r, libxl.CheckpointEnd))
    assert isinstance(colo[i + 1], libxl.CheckpointState) and colo[i + 1].control_id == 0


def test_libxl_emulator_records_and_xl_header():
    items = P.get("xen-4.17-hvm").libxl().items
    xsd = next(r for r in items if isinstance(r, libxl.EmulatorXenstoreData))
    ctx = next(r for r in items if isinstance(r, libxl.EmulatorContext))
    assert (xsd.emulator_id, xsd.index, ctx.emulator_id, ctx.index) == (2, 0, 2, 0)
    assert [k for k, _ in xsd.pairs] == [b"physmap/f0000000/start_addr", b"physmap/f0000000/size",
                                         b"physmap/f0000000/name"]
    trad = P.get("xen-4.17-hvm", emulator=libxl.EmulatorId.QEMU_TRADITIONAL).libxl().items
    assert not any(isinstance(r, libxl.EmulatorXenstoreData) for r in trad)
    assert not any(isinstance(r, (libxl.EmulatorContext, libxl.EmulatorXenstoreData))
                   for r in P.get("xen-4.17-pv").libxl().items)
    header = P.get("xen-4.17-hvm").xl().header
    assert (header.mandatory_flags, header.optional_flags) == (xl.FLAG_STREAMV2 | xl.FLAG_JSON, 0)
    assert header.config.endswith(b"\0")
    bare = P.get("xen-4.17-hvm", config=None).xl().header
    assert (bare.mandatory_flags, bare.optional_data) == (xl.FLAG_STREAMV2, bytes(4))


# -- reader profiles ------------------------------------------------------------------------


def test_reader_checks_are_either_rules_with_sources():
    cat = catalogue()
    for check in readers.CHECKS:
        assert cat[check.rule].severity is Severity.EITHER, check.rule
        assert check.source and check.behaviour and check.component in ("libxenguest", "libxl", "xl")
    assert readers.get("xen-master").release == readers.LATEST
    assert "libxc.checkpoint.plain_stream" not in readers.get("xen-4.17-remus").rules
    assert "libxl.checkpoint_state.direction" not in readers.get("xen-4.17-colo").rules
    assert "libxc.image_header.version_3" in readers.get("xen-4.13").rules
    assert "libxc.image_header.version_3" not in readers.get("xen-4.14").rules


def test_reader_rules_are_silent_without_a_reader():
    only = readers.reader_only_rules()
    for layer, profile in P.showcase():
        checker = run(layer, profile.encode(layer), Role.STRICT)
        assert not only & set(checker.rule_ids()), profile.name


def test_verify_reader_option(tmp_path):
    v3 = tmp_path / "v3.xc"
    v3.write_bytes(P.get("xen-4.17-pv").encode("libxc"))
    cmd = [sys.executable, "-m", "xenstream", "verify", "-f", "libxc", "-i", str(v3)]
    assert subprocess.run(cmd + ["--reader", "xen-4.17"], capture_output=True).returncode == 0
    old = subprocess.run(cmd + ["--reader", "xen-4.13"], capture_output=True, text=True)
    assert old.returncode == 1 and "libxc.image_header.version_3" in old.stderr and "reader xen-4.13" in old.stderr
    bad = subprocess.run(cmd + ["--reader", "xen-9.9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown reader profile" in bad.stderr and "Traceback" not in bad.stderr
    # a writer departure is refused by a strict verifier, not by a reader (which restores)
    hvm = tmp_path / "hvm.xc"
    hvm.write_bytes(P.get("xen-4.17-hvm").encode("libxc"))
    cmd = [sys.executable, "-m", "xenstream", "verify", "-f", "libxc", "-i", str(hvm)]
    assert subprocess.run(cmd, capture_output=True).returncode == 1
    assert subprocess.run(cmd + ["--reader", "xen-4.17"], capture_output=True).returncode == 0
    assert subprocess.run(cmd + ["--role", "restore"], capture_output=True).returncode == 0


# -- Xen's real restore code ----------------------------------------------------------------

#: Writer releases whose libxc streams Debian 12's libxenguest (4.17) restores: the same or older.
REAL_LIBXENGUEST = "4.17"
REAL_PROFILES = [P.profile_name(r, g, m) for r in ((4, 6), (4, 8), (4, 13), (4, 14), (4, 17))
                 for g in P.GUESTS for m in ("save", "migrate", "remus")]


@pytest.fixture(scope="module")
def libxenguest():
    """Xen's own restore code under the libxenguest testee's fake hypervisor
    (conformance/libxenguest/): its shim and restore driver, built against
    Debian's libxenguest 4.17 from the package cache."""
    from xen_packages import need_cc, release_dir
    from xenstream.conformance.libxenguest.build import build
    from xenstream.conformance.native import Unavailable

    need_cc()
    try:
        return build(release_dir(REAL_LIBXENGUEST))
    except Unavailable as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("name", REAL_PROFILES)
def test_libxc_profiles_restore_under_the_real_libxenguest(libxenguest, name, tmp_path):
    """Every libxc profile stream a 4.17 host can be given (HVM, PV, PV32; v2 and v3; plain,
    live and Remus) restores under Xen's own libxenguest: "Restore successful"."""
    import os

    profile = P.get(name)
    stream = tmp_path / "stream"
    stream.write_bytes(profile.encode("libxc"))
    env = dict(os.environ, LD_PRELOAD=str(libxenguest.shim),
               XENSTREAM_FAKEXEN_GUEST="hvm" if profile.guest == "hvm" else "pv")
    args = [str(libxenguest.driver)] + (["--remus"] if profile.checkpointed else []) + [str(stream)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Restore successful" in done.stderr, done.stderr[-2000:]


def _xen_libxc_examples():
    from xenstream.reference.examples.xen import examples

    return [e for e in examples() if e.format == "libxc"]


@pytest.mark.parametrize("example", _xen_libxc_examples(), ids=lambda e: e.name)
def test_reader_profile_xen_4_17_agrees_with_the_real_libxenguest(libxenguest, example, tmp_path):
    """What ``--reader xen-4.17`` refuses of the reader-check examples is what Debian's libxenguest
    4.17 refuses, and what it accepts the library restores."""
    import os

    remus = example.rule == "libxc.stream.ends_after_checkpoint"
    reader = readers.get("xen-4.17-remus" if remus else "xen-4.17")
    ours = run("libxc", example.data, reader=reader).accepted
    stream = tmp_path / "stream"
    stream.write_bytes(example.data)
    env = dict(os.environ, LD_PRELOAD=str(libxenguest.shim), XENSTREAM_FAKEXEN_GUEST=example.meta["guest"])
    args = [str(libxenguest.driver)] + (["--remus"] if remus else []) + [str(stream)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) is ours, done.stderr[-1500:]


def test_docs_profiles_has_the_current_reader_matrix():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "profiles.md").read_text()
    assert readers.render_matrix() in doc, "docs/profiles.md: paste readers.render_matrix() again"

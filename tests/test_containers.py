"""libvirt's save image and xenopsd's suspend image: embedded streams judged as on their own,
at their offsets in the whole file; recognising every format by its start; the writer
profiles; the s-expression reader; hostile lengths."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from xenstream.reference import container_profiles as CP
from xenstream.reference import legacy, libvirt as LV, sexp, xenopsd as X
from xenstream.reference.checker import Checker
from xenstream.reference.detect import detect
from xenstream.reference.errors import StreamError, UsageError
from xenstream.reference.examples import all_examples
from xenstream.reference.examples.libvirt import XML, _detectable
from xenstream.reference.formats import get_codec, validate
from xenstream.reference.rules import Role
from xenstream.reference.source import Source

EXAMPLES = all_examples()
#: libxc rules about where a stream ends: inside xenopsd the next header follows the END
POSITIONAL = ("end", "truncated", "trailing", "checkpoint")


def findings(fmt: str, data: bytes, role=Role.STRICT, **options) -> list[tuple[str, int]]:
    ck = validate(Source.from_bytes(data), fmt, Checker(role), **options)
    return [(f.rule.id, f.offset) for f in ck.findings]


def _shifted(found, by: int):
    return [(rule, offset + by) for rule, offset in found]


LIBVIRT_CASES = ([e for e in EXAMPLES if e.format == "libxl" and not e.meta.get("reader")]
                 + [e for e in _detectable([e for e in EXAMPLES if e.format == "legacy"])])


@pytest.mark.parametrize("ex", LIBVIRT_CASES, ids=[e.case_id for e in LIBVIRT_CASES])
def test_libvirt_embedded_findings_at_file_offsets(ex):
    """Every libxl and legacy example, inside a valid libvirt header: the same findings, each
    at its offset plus the header and the XML, in both roles."""
    version = LV.VERSION_LEGACY if ex.format == "legacy" else LV.VERSION_V2
    image = LV.encode(LV.LibvirtImage.make(XML, ex.data, version=version))
    shift = LV.HEADER.size + len(XML) + 1
    for role in Role:
        assert findings("libvirt", image, role) == _shifted(findings(ex.format, ex.data, role), shift), role


XENOPSD_LIBXC = [e for e in EXAMPLES if e.format == "libxc" and not e.meta.get("reader")
                 and not (e.rule and any(p in e.rule for p in POSITIONAL))]


@pytest.mark.parametrize("ex", XENOPSD_LIBXC, ids=[e.case_id for e in XENOPSD_LIBXC])
def test_xenopsd_embedded_libxc_findings_at_image_offsets(ex):
    """Every libxc example (but those about where the stream ends) after a Libxc header."""
    prefix = X.SIGNATURE + X.RECORD_HEADER.pack(X.LE, X.RecordType.XENOPS, len(X.XenopsRecord().to_sexp())) \
        + X.XenopsRecord().to_sexp() + X.RECORD_HEADER.pack(X.LE, X.RecordType.LIBXC, 0)
    image = prefix + ex.data + X.RECORD_HEADER.pack(X.LE, X.RecordType.END_OF_IMAGE, 0)
    for role in Role:
        got = findings("xenopsd", image, role)
        want = _shifted(findings(ex.format, ex.data, role), len(prefix))
        if any(rule == X.LIBXC_MISSING for rule, _ in got):  # a libxc stream refused before its END
            assert got[:len(want)] == want
            continue
        assert got == want, role


XENOPSD_LEGACY = [e for e in _detectable([e for e in EXAMPLES if e.format == "legacy"])
                  if e.meta.get("guest") == "pv" and not (e.rule and any(p in e.rule for p in POSITIONAL))]


@pytest.mark.parametrize("ex", XENOPSD_LEGACY, ids=[e.case_id for e in XENOPSD_LEGACY])
def test_xenopsd_embedded_legacy_findings_at_image_offsets(ex):
    """Legacy PV images after the legacy signature: nothing follows them."""
    image = X.LEGACY_SIGNATURE + ex.data
    assert findings("xenopsd", image) == _shifted(findings("legacy", ex.data), X.SIGNATURE_SIZE)


# -- recognising a file ---------------------------------------------------------------------


def test_every_valid_example_is_recognised_as_its_format():
    for ex in EXAMPLES:
        if ex.rule is not None:
            continue
        found = detect(ex.data)
        if ex.format == "legacy":
            if ex.meta.get("xl"):
                assert found.format == "xl"
                continue
            det = legacy.detect(ex.data[:64], xl_header=False)
            if det.ambiguous or (det.width, legacy.guest_name(det.guest)) != (ex.meta.get("width"), ex.meta.get("guest")):
                continue  # the image needs its options: no magic tells them
        assert found is not None and found.format == ex.format, (ex.case_id, found)


def test_random_octets_and_text_are_not_recognised():
    rnd = random.Random(7)
    assert detect(b"") is None and detect(b"hello world, not a save file\n" * 3) is None
    misses = sum(detect(bytes(rnd.getrandbits(8) for _ in range(64))) is None for _ in range(200))
    assert misses >= 195   # the legacy test (no magic) admits very few random prefixes


def _cli(*args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "xenstream", *args], input=stdin, capture_output=True,
                          timeout=120)


def test_verify_without_format_says_what_it_found(tmp_path):
    files = {}
    for fmt in ("libvirt", "xenopsd", "libxc", "xl", "xenstore"):
        ex = next(e for e in EXAMPLES if e.format == fmt and e.rule is None)
        files[fmt] = tmp_path / f"{fmt}.img"
        files[fmt].write_bytes(ex.data)
    for fmt, path in files.items():
        r = _cli("verify", "-v", "-i", str(path))
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines()[0].startswith(f"format {fmt}: "), r.stdout
    r = _cli("verify", "-i", "0", stdin=files["xenopsd"].read_bytes())   # a pipe: peeked, not re-read
    assert r.returncode == 0, r.stderr
    r = _cli("dump", "-i", str(files["libvirt"]))
    assert r.returncode == 0 and r.stdout.startswith(b"libvirt @0x0 header"), r.stdout[:200]


def test_an_unrecognised_file_is_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a save file at all\n")
    for args, stdin in ((("verify", "-i", str(junk)), b""), (("dump", "-i", str(junk)), b""),
                        (("verify",), b"")):
        r = _cli(*args, stdin=stdin)
        assert r.returncode == 2
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "not a save file of any known format" in lines[0] and "-f" in lines[0]
    # with -f the file is judged: refused by the rule its first octets break
    r = _cli("verify", "-f", "xenopsd", "-i", str(junk))
    assert r.returncode == 1 and b"xenopsd.image.signature" in r.stderr


# -- writer profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CP.all_names())
def test_container_profiles_are_restorable(name):
    """What a released libvirt or xenopsd writes: never refused by the restore role; a departure
    is a writer or either rule of the embedded stream or the container (docs/containers.md)."""
    profile = CP.get(name)
    data = profile.encode()
    assert validate(Source.from_bytes(data), profile.format, Checker(Role.RESTORE)).accepted
    expected, rule = CP.label(profile, data)
    assert expected in ("accept", "writer", "either")
    if expected == "either":
        assert rule in (X.LEGACY_DMR, X.DEMU_STREAM), rule
    assert detect(data).format == profile.format
    codec = get_codec(profile.format)
    assert codec.encode(codec.decode(data)) == data
    assert profile.sources


def test_profile_names_are_checked():
    for bad in ("libvirt-xen-4.1-hvm", "xenopsd-0.10-hvm", "xenopsd-0.9.32-hvm-vgpu", "xenopsd-0.150-pv-uefi",
                "libvirt-4.17-hvm"):
        with pytest.raises(UsageError):
            CP.get(bad)
    assert set(CP.SHOWCASE) <= set(CP.all_names())


def test_libvirt_versions_follow_the_xen_release():
    assert CP.get("libvirt-xen-4.5-hvm").build().header.version == 1
    assert CP.get("libvirt-xen-4.6-hvm").build().header.version == 2
    old = CP.get("libvirt-xen-4.4-pv").build()
    assert isinstance(old.body, legacy.LegacyStream) and old.body.width == 64


# -- the s-expression reader -----------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    (b"atom", b"atom"),
    (b"((time 2024)(word_size 64))", [[b"time", b"2024"], [b"word_size", b"64"]]),
    (b'("a b" "\\"q\\"" "\\065\\x42" "line\\\n   next")', [b"a b", b'"q"', b"AB", b"linenext"]),
    (b"(a ; comment\n b #| block #| nested |# |# c #;(skipped) d)", [b"a", b"b", b"c", b"d"]),
    (b"  ()  ", []),
])
def test_sexp_parses_sexplib_syntax(text, value):
    assert sexp.parse(text) == value


@pytest.mark.parametrize("text", [b"", b"(a", b"a)", b"(a) (b)", b'"open', b"(#; )", b"#| x", b"(a |# b)",
                                  b'"\\999"', b"(" * 20000],
                         ids=lambda text: repr(text) if len(text) < 40 else f"{len(text)} octets")
def test_sexp_refuses_what_sexplib_refuses(text):
    with pytest.raises(sexp.SexpError):
        sexp.parse(text)


def test_sexp_round_trips():
    rnd = random.Random(3)

    def value(depth=0):
        if depth > 3 or rnd.random() < 0.5:
            return bytes(rnd.choice(b'ab ()";\\\n\x01\xffxyz#|') for _ in range(rnd.randint(0, 6)))
        return [value(depth + 1) for _ in range(rnd.randint(0, 4))]
    for _ in range(500):
        v = value()
        assert sexp.parse(sexp.dumps(v)) == v


def test_xenops_record_as_xenopsd_writes_it():
    record = X.XenopsRecord("20231018T10:00:00Z", 64, '{"name": "vm 1"}', (("name", "vm 1"),))
    assert record.to_sexp() == (b'((time 20231018T10:00:00Z)(word_size 64)(vm_str"{\\"name\\": \\"vm 1\\"}")'
                                b'(xs_subtree((name"vm 1"))))')
    assert X.check_xenops(record.to_sexp(), 0, Checker()) == record
    assert X.ocaml_int(b"0x40") == 64 and X.ocaml_int(b"064") == 64 and X.ocaml_int(b"1_0") == 10


# -- hostile lengths: bounded memory, one finding ----------------------------------------------------


def test_hostile_lengths_cost_what_the_input_holds():
    huge_xml = LV.LibvirtHeader(xmlLen=0xFFFFFFFF).encode(0) + b"<domain"
    assert findings("libvirt", huge_xml, Role.RESTORE) == [(LV.TRUNCATED, len(huge_xml))]
    huge_xenops = X.SIGNATURE + X.RECORD_HEADER.pack(X.LE, X.RecordType.XENOPS, 1 << 62) + b"((time"
    assert findings("xenopsd", huge_xenops, Role.RESTORE) == [(X.TRUNCATED, len(huge_xenops))]
    huge_qemu = X.SIGNATURE + X.RECORD_HEADER.pack(X.LE, X.RecordType.QEMU_TRAD, (1 << 64) - 1) + X.QEVM
    assert [r for r, _ in findings("xenopsd", huge_qemu, Role.RESTORE)] == [X.XENOPS_FIRST,
                                                                           X.QEMU_LENGTH_MAX_RULE, X.TRUNCATED]


def test_every_prefix_of_a_small_image_is_refused():
    for ex in (e for e in EXAMPLES if e.format in ("libvirt", "xenopsd") and e.rule is None):
        data = ex.data
        cuts = sorted({*range(0, min(len(data), 200)), *range(0, len(data), max(len(data) // 50, 1))})
        for cut in cuts:
            assert not validate(Source.from_bytes(data[:cut]), ex.format, Checker(Role.RESTORE)).accepted, \
                (ex.case_id, cut)
        with pytest.raises(StreamError):
            get_codec(ex.format).decode(data[:len(data) // 2])


def test_a_xenops_record_over_the_parse_limit_is_skipped_in_bounded_memory():
    import tracemalloc
    from xenstream.reference import build
    from xenstream.reference.libxc import DomainType

    def image(n):
        pairs = tuple(("k%d" % i, "v") for i in range(n))
        return X.encode(X.structured(X.xenops(X.XenopsRecord(xs_subtree=pairs)),
                                     X.Record(X.RecordType.LIBXC, build.libxc_stream(DomainType.X86_HVM)),
                                     X.Record(X.RecordType.END_OF_IMAGE)))

    small, big = image(1000), image(200_000)  # 11 KiB parsed; 2.2 MiB over XENOPS_PARSE_MAX
    assert len(big) > X.XENOPS_PARSE_MAX
    for data, parsed in ((small, True), (big, False)):
        tracemalloc.start()
        try:
            ck = validate(Source.from_bytes(data), "xenopsd", Checker(verbose=True))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ck.accepted
        assert any("too large to parse" in n for n in ck.notes) != parsed
        assert peak < len(data) + (8 << 20)  # the input held by from_bytes, and little more

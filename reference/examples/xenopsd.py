"""Hand-written xenopsd suspend images: valid images of every record type, one or more
malformed images for every ``xenopsd.*`` rule, and malformed embedded streams (their
findings at the offset in the whole image)."""

from __future__ import annotations

from .. import build, legacy, libxc, libxl, xenopsd as X
from ..libxc import DomainType
from . import Example

FORMAT = "xenopsd"
HVM, PV = DomainType.X86_HVM, DomainType.X86_PV
T = X.RecordType
#: embedded examples above this size are left to the unit tests (the corpus stays small)
SMALL = 32 << 10
QEMU = b"QEVM\0\0\0\3" + bytes(range(24))
HEADER = X.RECORD_HEADER.size
SIG = X.SIGNATURE_SIZE


def _ex(name, image_or_bytes, rule, description, offset=None, **meta) -> Example:
    data = image_or_bytes if isinstance(image_or_bytes, bytes) else X.encode(image_or_bytes)
    return Example(FORMAT, name, data, rule, description, meta, offset)


def header(rtype: int, length: int) -> bytes:
    return X.RECORD_HEADER.pack(X.LE, rtype, length)


def rec(rtype: int, body: bytes = b"", length: int | None = None) -> bytes:
    return header(rtype, len(body) if length is None else length) + body


def xenops_bytes(record: X.XenopsRecord | None = None) -> bytes:
    return rec(T.XENOPS, (record or X.XenopsRecord()).to_sexp())


def sexp_record(text: bytes) -> bytes:
    return rec(T.XENOPS, text)


def hvm_image(**changes) -> X.SuspendImage:
    return X.structured(X.xenops(), X.Record(T.LIBXC, build.libxc_stream(HVM, pages=1)),
                        X.Record(T.QEMU_TRAD, QEMU), X.Record(T.END_OF_IMAGE))


def examples() -> list[Example]:
    xc_hvm = libxc.encode(build.libxc_stream(HVM, pages=1))
    xc_pv = libxc.encode(build.libxc_stream(PV))
    sig = X.SIGNATURE
    end = rec(T.END_OF_IMAGE)
    xenops = xenops_bytes()
    libxc_rec = rec(T.LIBXC, length=0) + xc_pv
    after_xenops = SIG + len(xenops)
    out = [
        _ex("hvm", hvm_image(), None, "Xenops, Libxc and the libxc stream, Qemu_trad, End_of_image"),
        _ex("pv", X.structured(X.xenops(), X.Record(T.LIBXC, build.libxc_stream(PV)), X.Record(T.END_OF_IMAGE)),
            None, "a PV guest: no qemu record"),
        _ex("uefi_vgpu_file", X.structured(
            X.xenops(X.XenopsRecord(vm_str='{"name": "guest"}', xs_subtree=(("name", "guest"), ("domid", "3")))),
            X.Record(T.LIBXC, build.libxc_stream(HVM, pages=1)), X.Record(T.VARSTORED, b"VARS" + bytes(28)),
            X.Record(T.QEMU_TRAD, QEMU), X.Record(T.DEMU, b"DEMU" + bytes(12)), X.Record(T.END_OF_IMAGE)),
            None, "every record with a length: Xenops with vm_str and a xenstore subtree, Varstored, Qemu_trad, "
                  "Demu with its length (0.11-0.36)"),
        _ex("libxc_legacy", X.structured(X.xenops(X.XenopsRecord(word_size=32)),
                                         X.Record(T.LIBXC_LEGACY, legacy.build_hvm_stream(width=32, p2m_size=2)),
                                         X.Record(T.END_OF_IMAGE)), None,
            "xenopsd 0.9.38 with a xenguest without migration v2: Libxc_legacy, a 32-bit legacy image "
            "with its DeviceModelRecord0002 qemu record"),
        _ex("legacy_hvm", X.SuspendImage(X.LEGACY_SIGNATURE, legacy_body=legacy.build_hvm_stream(
            width=32, p2m_size=2, qemu=None), legacy_qemu=X.LegacyQemu(QEMU)), None,
            "xenopsd 0.9.32 and older: XenSavedDomain, a 32-bit legacy image, QemuDeviceModelRecord\\n"),
        _ex("legacy_pv", X.SuspendImage(X.LEGACY_SIGNATURE, legacy_body=legacy.build_pv_stream(width=32, p2m_size=2)), None,
            "the legacy image of a PV guest: nothing after it"),
        _ex("sexp_comments", sig + sexp_record(b"; written by hand\n((time #|now|# 20240101T00:00:00Z)\n"
                                               b" (word_size 0x40) #;(ignored field) (vm_str \"a \\\"b\\\"\"))")
            + libxc_rec + end, None, "a Xenops s-expression with comments, a hexadecimal word size, escapes"),
    ]
    out += [
        _ex("cut_in_signature", sig[:9], X.TRUNCATED, "the input ends inside the signature", 9),
        _ex("cut_in_header", sig + xenops[:11], X.TRUNCATED, "the input ends inside a record header", SIG + 11),
        _ex("cut_in_xenops", sig + xenops[:30], X.TRUNCATED, "the input ends inside the Xenops body", SIG + 30),
        _ex("cut_in_qemu", sig + xenops + libxc_rec + rec(T.QEMU_TRAD, QEMU)[:HEADER + 10], X.TRUNCATED,
            "the input ends inside the Qemu_trad body", after_xenops + len(libxc_rec) + HEADER + 10),
        _ex("signature_wrong", b"XenSavedDomv3-\n" + xenops + libxc_rec + end, X.SIGNATURE_RULE,
            "signature XenSavedDomv3", 0),
        _ex("trailing_data", sig + xenops + libxc_rec + end + b"junk", X.TRAILING,
            "four octets after End_of_image", after_xenops + len(libxc_rec) + HEADER),
        _ex("type_unknown", sig + xenops + rec(0x00F3, b"") + libxc_rec + end, X.TYPE_RULE,
            "record type 0xf3", after_xenops),
        _ex("libxl_record", sig + xenops + rec(T.LIBXL, length=0) + libxl.encode(build.libxl_stream(PV)) + end,
            X.UNSUPPORTED, "a Libxl record, which xenopsd never writes and refuses", after_xenops),
        _ex("qemu_xen_record", sig + xenops + libxc_rec + rec(T.QEMU_XEN, QEMU) + end, X.UNSUPPORTED,
            "a Qemu_xen record", after_xenops + len(libxc_rec)),
        _ex("no_end_of_image", sig + xenops + libxc_rec, X.END_MISSING, "the image ends after the libxc stream",
            after_xenops + len(libxc_rec)),
        _ex("end_of_image_length", sig + xenops + libxc_rec + rec(T.END_OF_IMAGE, length=5), X.END_LENGTH,
            "End_of_image with length 5", after_xenops + len(libxc_rec) + 8),
        _ex("libxc_length", sig + xenops + rec(T.LIBXC, length=len(xc_pv)) + xc_pv + end, X.LIBXC_LENGTH,
            "Libxc with the stream's length in its header", after_xenops + 8),
        _ex("no_memory_image", sig + xenops + rec(T.QEMU_TRAD, QEMU) + end, X.LIBXC_MISSING,
            "Xenops and a qemu record, no Libxc", after_xenops + HEADER + len(QEMU)),
        _ex("libxc_twice", sig + xenops + libxc_rec + libxc_rec + end, X.LIBXC_REPEATED,
            "two Libxc records", after_xenops + len(libxc_rec)),
        _ex("xenops_not_first", sig + libxc_rec + xenops + end, X.XENOPS_FIRST, "Libxc before Xenops", SIG),
        _ex("xenops_not_sexp", sig + sexp_record(b"((time 2024)(word_size 64)") + libxc_rec + end, X.XENOPS_SEXP,
            "an unclosed list", SIG + HEADER),
        _ex("xenops_two_sexps", sig + sexp_record(b"((time t)(word_size 64)) (extra)") + libxc_rec + end,
            X.XENOPS_SEXP, "two s-expressions", SIG + HEADER + 25),
        _ex("xenops_no_word_size", sig + sexp_record(b"((time t))") + libxc_rec + end, X.XENOPS_FIELDS_RULE,
            "no word_size field", SIG + HEADER),
        _ex("xenops_unknown_field", sig + sexp_record(b"((time t)(word_size 64)(colour blue))") + libxc_rec + end,
            X.XENOPS_FIELDS_RULE, "a field the record does not have", SIG + HEADER),
        _ex("xenops_word_size_text", sig + sexp_record(b"((time t)(word_size sixty-four))") + libxc_rec + end,
            X.XENOPS_FIELDS_RULE, "word_size is not an integer", SIG + HEADER),
        _ex("xenops_bad_subtree", sig + sexp_record(b"((time t)(word_size 64)(xs_subtree (a b)))") + libxc_rec
            + end, X.XENOPS_FIELDS_RULE, "xs_subtree is not a list of pairs", SIG + HEADER),
        _ex("xenops_word_size_16", sig + sexp_record(b"((time t)(word_size 16))") + libxc_rec + end, X.WORD_SIZE,
            "word_size 16", SIG + HEADER),
        _ex("qemu_over_1mib", sig + xenops + libxc_rec + rec(T.QEMU_TRAD, QEMU + bytes((1 << 20) + 1 - len(QEMU)))
            + end, X.QEMU_LENGTH_MAX_RULE, "a Qemu_trad record of 1 MiB and one octet",
            after_xenops + len(libxc_rec) + 8, corpus=False),
        _ex("qemu_not_qevm", sig + xenops + libxc_rec + rec(T.QEMU_TRAD, b"QEMU" + bytes(20)) + end, X.QEMU_MAGIC,
            "a Qemu_trad record that is not a QEMU save file", after_xenops + len(libxc_rec) + 8),
        _ex("demu_stream", sig + xenops + libxc_rec + rec(T.DEMU, length=0) + b"vGPU" + rec(T.QEMU_TRAD, QEMU)
            + end, X.DEMU_STREAM, "a Demu record of length 0 and the vGPU stream (0.37+): the rest is not "
                                  "checked", after_xenops + len(libxc_rec)),
    ]
    legacy_hvm = legacy.encode(legacy.build_hvm_stream(width=32, p2m_size=2, qemu=None))
    at = X.SIGNATURE_SIZE + len(legacy_hvm)
    lsig = X.LEGACY_SIGNATURE
    out += [
        _ex("legacy_qemu_signature", lsig + legacy_hvm + b"QemuDeviceModelRecord" + len(QEMU).to_bytes(4, "big")
            + QEMU, X.LEGACY_QEMU_SIG, "the qemu signature without its newline", at),
        _ex("legacy_qemu_missing", lsig + legacy_hvm, X.LEGACY_QEMU_SIG,
            "the legacy image of an HVM guest without the qemu record", at),
        _ex("legacy_device_model_record", X.SuspendImage(X.LEGACY_SIGNATURE, legacy_body=legacy.build_hvm_stream(
            width=32, p2m_size=2, qemu=None), legacy_qemu=X.LegacyQemu(QEMU, X.DEVICE_MODEL_RECORD)), X.LEGACY_DMR,
            "DeviceModelRecord0002 and a little-endian length (xenopsd 0.9.33-0.9.37)", at),
        _ex("legacy_qemu_length", lsig + legacy_hvm + X.LEGACY_QEMU_SIGNATURE + (2 << 20).to_bytes(4, "big")
            + QEMU, X.TRUNCATED, "a legacy qemu record longer than the input",
            at + len(X.LEGACY_QEMU_SIGNATURE) + 4 + len(QEMU)),
        _ex("legacy_libxl_body", lsig + libxl.encode(build.libxl_stream(PV)), X.LEGACY_LIBXL,
            "the xenlight backend's image: XenSavedDomain and a libxl v2 stream", SIG),
    ]
    out += embedded()
    return out


def embedded() -> list[Example]:
    """Malformed libxc streams after a Libxc header, legacy images after Libxc_legacy and
    after the legacy signature: the embedded rule, at its offset in the whole image."""
    from . import legacy as EL, libxc as EX, libvirt as EV

    out = []
    xenops = xenops_bytes()
    end = rec(T.END_OF_IMAGE)
    skip = ("end", "truncated", "trailing", "checkpoint")
    libxc_picks = [e for e, _ in EV._pick([e for e in EX.examples()
                                           if e.rule and not any(s in e.rule for s in skip)], 8)]
    for ex in libxc_picks:
        prefix = X.SIGNATURE + xenops + rec(T.LIBXC, length=0)
        out.append(_ex(f"libxc-{ex.name}", prefix + ex.data + end, ex.rule,
                       f"a malformed libxc stream after a Libxc header: {ex.description}",
                       None if ex.offset is None else ex.offset + len(prefix), embedded=ex.case_id))
    legacy_picks = [e for e, _ in EV._pick([e for e in EV._detectable(EL.examples())
                                            if e.rule and not any(s in e.rule for s in skip)
                                            and len(e.data) < SMALL], 2)]
    for ex in legacy_picks:
        prefix = X.SIGNATURE + xenops + rec(T.LIBXC_LEGACY, length=0)
        out.append(_ex(f"legacy-{ex.name}", prefix + ex.data + end, ex.rule,
                       f"a malformed legacy image after a Libxc_legacy header: {ex.description}",
                       None if ex.offset is None else ex.offset + len(prefix), embedded=ex.case_id))
    return out

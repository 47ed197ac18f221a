"""xenopsd suspend images: the structured image (Xenops, the memory image, the device models'
records, End_of_image) and the legacy one.

Besides the container's own mutations, every libxc mutation whose broken rule does
not depend on where the stream ends is offered after a Libxc header: xenopsd hands
the libxc stream to the restore helper, so the broken rule is the stream's, at its
offset in the image."""

from __future__ import annotations

from xenstream.reference import legacy as G
from xenstream.reference import xenopsd as X

from . import legacy as SG
from . import libxc as SX
from ._draw import Draw, pattern, pick
from ._registry import MUTATIONS, Mutation, mutation, valid_builder

FORMAT = "xenopsd"
T = X.RecordType
ATOM = b"abcdefghijklmnopqrstuvwxyz0123456789-_/.:"
TEXT = bytes(range(0x20, 0x7F)) + b"\n\t"


def rec(rtype: int, body: bytes = b"", length: int | None = None) -> bytes:
    return X.RECORD_HEADER.pack(X.LE, rtype, len(body) if length is None else length) + body


def xenops_record(d: Draw) -> X.XenopsRecord:
    vm_str = d.bytes(0, 40, TEXT).decode() if d.bool() else None
    subtree = (tuple((d.bytes(1, 8, ATOM).decode(), d.bytes(0, 8, TEXT).decode()) for _ in range(d.int(0, 3)))
               if d.int(0, 3) else None)
    return X.XenopsRecord(f"2024{d.int(1, 12):02d}01T00:00:00Z", d.choice([64, 32]), vm_str, subtree)


def qemu(d: Draw) -> bytes:
    return X.QEVM + pattern(d.int(0, 99), d.int(0, 60))


def legacy_image(d: Draw, *, guest=None, qemu_record=None) -> G.LegacyStream:
    """A legacy image as xenopsd's xenguest wrote it: no xl header; an HVM image's qemu
    record, when there is one, with a length (DeviceModelRecord0002)."""
    s = SG.build(d, guest=guest, xl=False, qemu=False)
    if s.guest is G.HVM and qemu_record:
        from dataclasses import replace

        s = replace(s, qemu=G.QemuRecord(b"DeviceModelRecord0002", qemu(d)))
    return s


def build(d: Draw, *, legacy=None, guest=None, **opts) -> tuple[X.SuspendImage, str]:
    if pick(d, legacy, lambda: d.int(0, 4) == 0):
        body = legacy_image(d, guest=guest)
        q = X.LegacyQemu(qemu(d)) if body.guest is G.HVM else None
        return X.SuspendImage(X.LEGACY_SIGNATURE, legacy_body=body, legacy_qemu=q), \
            f"legacy xenopsd image, {SG.describe(body)}"
    records = [X.xenops(xenops_record(d))]
    memory = d.choice(["libxc", "libxc", "libxc", "libxc_legacy"])
    if memory == "libxc":
        stream = SX.build(d, guest=guest, **{k: v for k, v in opts.items() if k in ("version", "pages")},
                          byteorder="little", optional=False, checkpoints=0)
        records.append(X.Record(T.LIBXC, stream))
        hvm = stream.domain_header.type == SX.HVM
        desc = SX.describe(stream)
    else:
        image = legacy_image(d, guest=guest, qemu_record=True)
        records.append(X.Record(T.LIBXC_LEGACY, image))
        hvm = image.guest is G.HVM
        desc = SG.describe(image)
    extras = []
    if hvm and d.bool():
        extras.append(X.Record(T.VARSTORED, pattern(3, d.int(0, 40))))
    if hvm:
        extras.append(X.Record(T.QEMU_TRAD, qemu(d)))
    if hvm and d.int(0, 3) == 0:
        extras.append(X.Record(T.DEMU, pattern(4, d.int(1, 40))))
    records += extras + [X.Record(T.END_OF_IMAGE)]
    return X.structured(*records), f"xenopsd image: {', '.join(r.name for r in records)}; {desc}"


@valid_builder(FORMAT)
def valid(d: Draw, **opts):
    image, desc = build(d, **opts)
    return X.encode(image), "valid " + desc


def parts(d: Draw, *, hvm: bool | None = None) -> tuple[bytes, bytes, bytes, bytes]:
    """(signature, Xenops, Libxc and its stream, the rest up to End_of_image) of a valid image."""
    guest = None if hvm is None else ("hvm" if hvm else "pv")
    stream = SX.build(d, byteorder="little", optional=False, checkpoints=0, guest=guest)
    xenops = rec(T.XENOPS, xenops_record(d).to_sexp())
    libxc = rec(T.LIBXC, length=0) + SX.X.encode(stream)
    rest = rec(T.QEMU_TRAD, qemu(d)) if stream.domain_header.type == SX.HVM else b""
    return X.SIGNATURE, xenops, libxc, rest


END = rec(T.END_OF_IMAGE)


@mutation(FORMAT, "framing", X.TRUNCATED)
def _truncated(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    where = d.choice(["signature", "header", "xenops"])
    if where == "signature":
        return sig[:d.int(0, len(sig) - 1)], "cut inside the signature"
    if where == "header":
        return sig + xenops[:d.int(1, 15)], "cut inside the Xenops header"
    return sig + xenops[:d.int(16, len(xenops) - 1)], "cut inside the Xenops body"


@mutation(FORMAT, "semantics", X.SIGNATURE_RULE)
def _signature(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    i = d.int(0, len(sig) - 1)
    bad = sig[:i] + bytes([(sig[i] + d.int(1, 255)) & 0xFF]) + sig[i + 1:]
    if bad == X.LEGACY_SIGNATURE:
        bad = b"XenSavedDomv3-\n"
    return bad + xenops + libxc + rest + END, f"signature {bad!r}"


@mutation(FORMAT, "framing", X.TRAILING)
def _trailing(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    return sig + xenops + libxc + rest + END + (d.bytes(1, 16) or b"x"), "data after End_of_image"


@mutation(FORMAT, "semantics", X.TYPE_RULE)
def _type(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    rtype = d.choice([0, 1, 0xF3, 0x0F12, 0xFFFE, d.int(0x10000, 1 << 63)])
    return sig + xenops + rec(rtype, d.bytes(0, 8)) + libxc + rest + END, f"record type 0x{rtype:x}"


@mutation(FORMAT, "semantics", X.UNSUPPORTED)
def _unsupported(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    rtype = d.choice([T.LIBXL, T.QEMU_XEN])
    return sig + xenops + libxc + rec(rtype, qemu(d)) + rest + END, f"a {X.record_name(rtype)} record"


@mutation(FORMAT, "framing", X.END_MISSING)
def _end_missing(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    return sig + xenops + libxc + rest, "no End_of_image"


@mutation(FORMAT, "reserved", X.END_LENGTH)
def _end_length(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    return sig + xenops + libxc + rest + rec(T.END_OF_IMAGE, length=d.int(1, 1 << 40)), "End_of_image's length"


@mutation(FORMAT, "reserved", X.LIBXC_LENGTH)
def _libxc_length(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    head = X.RECORD_HEADER.size  # libxc is the Libxc record: its header, then the libxc stream
    n = d.choice([len(libxc) - head, d.int(1, 1 << 40)])
    return sig + xenops + rec(T.LIBXC, length=n) + libxc[head:] + rest + END, f"Libxc's length is {n}"


@mutation(FORMAT, "semantics", X.LIBXC_MISSING)
def _libxc_missing(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    return sig + xenops + rec(T.QEMU_TRAD, qemu(d)) + END, "no memory image"


@mutation(FORMAT, "semantics", X.LIBXC_REPEATED)
def _libxc_repeated(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    return sig + xenops + libxc + libxc + rest + END, "the memory image twice"


@mutation(FORMAT, "semantics", X.XENOPS_FIRST)
def _xenops_first(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    if d.bool():
        return sig + libxc + xenops + rest + END, "Xenops after Libxc"
    return sig + libxc + rest + END, "no Xenops record"


@mutation(FORMAT, "strings", X.XENOPS_SEXP)
def _xenops_sexp(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    text = xenops_record(d).to_sexp()
    bad = d.choice([text[:-1], text + b")", text + b" x", b"", b"\"unterminated", b"(a #| b", text.replace(
        b"(", b"", 1) + b"("])
    return sig + rec(T.XENOPS, bad) + libxc + rest + END, f"Xenops body {bad[:30]!r}"


@mutation(FORMAT, "semantics", X.XENOPS_FIELDS_RULE)
def _xenops_fields(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    bad = d.choice([b"atom", b"((time t))", b"((word_size 64))", b"((time t)(word_size 64)(x y))",
                    b"((time t)(time t)(word_size 64))", b"((time (a))(word_size 64))",
                    b"((time t)(word_size 6.4))", b"((time t)(word_size 64)(vm_str (x)))",
                    b"((time t)(word_size 64)(xs_subtree x))", b"((time t)(word_size 64) extra)"])
    return sig + rec(T.XENOPS, bad) + libxc + rest + END, f"Xenops record {bad!r}"


@mutation(FORMAT, "width", X.WORD_SIZE)
def _word_size(d: Draw):
    sig, xenops, libxc, rest = parts(d)
    size = d.choice([0, 8, 16, 128, d.int(65, 1 << 30)])
    body = b"((time t)(word_size %d))" % size
    return sig + rec(T.XENOPS, body) + libxc + rest + END, f"word_size {size}"


@mutation(FORMAT, "framing", X.QEMU_LENGTH_MAX_RULE)
def _qemu_length_max(d: Draw):
    sig, xenops, libxc, _ = parts(d, hvm=True)
    body = X.QEVM + bytes(X.QEMU_LENGTH_MAX + d.int(1, 64) - 4)
    return sig + xenops + libxc + rec(T.QEMU_TRAD, body) + END, f"a qemu record of {len(body)} octets"


@mutation(FORMAT, "semantics", X.QEMU_MAGIC)
def _qemu_magic(d: Draw):
    sig, xenops, libxc, _ = parts(d, hvm=True)
    body = d.choice([b"", b"QE", b"QEMU", b"\0\0\0\0"]) + d.bytes(0, 16)
    if body[:4] == X.QEVM:
        body = b"MVEQ" + body[4:]
    return sig + xenops + libxc + rec(T.QEMU_TRAD, body) + END, f"a qemu record starting {body[:4]!r}"


@mutation(FORMAT, "framing", X.DEMU_STREAM)
def _demu_stream(d: Draw):
    sig, xenops, libxc, rest = parts(d, hvm=True)
    return sig + xenops + libxc + rec(T.DEMU, length=0) + d.bytes(0, 32) + rest + END, "Demu of length 0"


@mutation(FORMAT, "strings", X.LEGACY_QEMU_SIG)
def _legacy_qemu(d: Draw):
    body = G.encode(legacy_image(d, guest="hvm"))
    bad = d.choice([b"", b"QemuDeviceModelRecord", b"qemudevicemodelrecord\n", b"RemusDeviceModelState"])
    return X.LEGACY_SIGNATURE + body + bad + (len(bad).to_bytes(4, "big") if bad else b""), \
        f"legacy HVM image, then {bad!r}"


@mutation(FORMAT, "width", X.LEGACY_DMR)
def _legacy_dmr(d: Draw):
    body = G.encode(legacy_image(d, guest="hvm"))
    return X.LEGACY_SIGNATURE + body + X.LegacyQemu(qemu(d), X.DEVICE_MODEL_RECORD).encode(), \
        "DeviceModelRecord0002 after the legacy image"


@mutation(FORMAT, "semantics", X.LEGACY_LIBXL)
def _legacy_libxl(d: Draw):
    from . import libxl as SL

    return X.LEGACY_SIGNATURE + SL.valid(d)[0], "XenSavedDomain before a libxl v2 stream"


# -- libxc mutations after a Libxc header -----------------------------------------------

#: libxc rules about where the stream ends: after a Libxc header the end is where the next
#: xenopsd header starts, so these mutations are not the libxc rule there
_POSITIONAL = ("end", "truncated", "trailing", "checkpoint")


def _wrapped(m: Mutation):
    def fn(d: Draw):
        data, desc = m.fn(d)
        sig, xenops, _, _ = parts(d)
        return sig + xenops + rec(T.LIBXC, length=0) + data + END, f"after a Libxc header: {desc}"
    return fn


for _m in [m for m in MUTATIONS if m.format == "libxc" and m.rule and not any(p in m.rule for p in _POSITIONAL)]:
    MUTATIONS.append(Mutation(FORMAT, _m.family, _m.rule, f"libxc.{_m.name}", _wrapped(_m)))

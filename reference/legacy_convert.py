"""``xenstream convert-legacy``: the reference legacy-to-v2 converter.

Takes the options of Xen's ``convert-legacy-stream`` and writes, as the libxc
spec ("Legacy Images") and the libxl spec ask:

* libxc: image header (version 3, little-endian), domain header with
  ``xen_major`` 0 and ``xen_minor`` the converter's version (libxc spec,
  "Domain Header"); for PV, X86_PV_INFO from the extended-info vcpu block;
  STATIC_DATA_END; for PV, X86_PV_P2M_FRAMES from the p2m frame list; a
  PAGE_DATA record per page batch (types moved from bits 31-28 to 63-60, bare
  XTAB entries dropped, no record for a batch left empty); X86_TSC_INFO; the
  HVM parameter chunks as one HVM_PARAMS at the end of the body; the PV tail
  as X86_PV_VCPU_{BASIC,EXTENDED,XSAVE} per online vcpu and SHARED_INFO, or
  the HVM tail as HVM_PARAMS (ioreq, bufioreq, store PFNs) and HVM_CONTEXT;
  END.
* libxl (``-f libxl``): a libxl header with the legacy bit, LIBXC_CONTEXT
  around the libxc stream, the physmap entries of the toolstack blob as one
  EMULATOR_XENSTORE_DATA record, the qemu record as EMULATOR_CONTEXT
  (emulator id 0, "Unknown (In the case of a legacy stream)"), END.

A libxc stream has no record for qemu's state, so with ``-f libxc`` an HVM
image's qemu record is a choice the caller makes: ``--skip-qemu`` leaves it
out (xenopsd's conversion, ``suspend_image_conversion.ml``, passes it);
``--append-qemu`` copies it unchanged after END, as Xen's
``convert-legacy-stream`` does by default, for a caller that hands it to qemu
itself (the output is then not a libxc stream alone, and ``xenstream verify
-f libxc`` refuses the record after END).  Without either, such an image is
refused (exit 2, naming the options) rather than converted into something
``xenstream verify`` refuses; ``-f libxl`` turns the record into
EMULATOR_CONTEXT.

Records are written as the legacy items arrive: memory stays bounded by the
largest single item (a 1024-page batch, a context blob).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from typing import BinaryIO

from . import legacy, libxc, libxl, xl
from .checker import Checker
from .errors import StreamError, UsageError
from .framing import encode_record
from .layout import Endian
from .outfile import AtomicOutput, refuse_same_file
from .rules import Role
from .source import Source

VERSION = 1  # written as the domain header's xen_minor
LE = Endian.LITTLE
#: What a legacy image is converted to (``-f``), as Xen's convert-legacy-stream offers.
OUTPUT_FORMATS = ("libxc", "libxl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--in", dest="fin", required=True, metavar="FD|FILE",
                        help="legacy input to convert")
    parser.add_argument("-o", "--out", dest="fout", required=True, metavar="FD|FILE",
                        help="v2 output")
    parser.add_argument("-w", "--width", dest="width", choices=["32", "64"],
                        help="legacy toolstack bitness (default: detected from octets 4-7)")
    parser.add_argument("-g", "--guest-type", dest="guest", choices=["pv", "hvm"],
                        help="type of guest in the stream (default: detected)")
    parser.add_argument("-f", "--format", dest="format", choices=list(OUTPUT_FORMATS), default="libxc",
                        help="format of the output stream (default libxc)")
    parser.add_argument("-x", "--xl", action="store_true",
                        help="an xl savefile header precedes the legacy stream")
    qemu = parser.add_mutually_exclusive_group()
    qemu.add_argument("--skip-qemu", action="store_true",
                      help="with -f libxc: leave out the qemu record of an HVM image")
    qemu.add_argument("--append-qemu", action="store_true",
                      help="with -f libxc: copy the qemu record after END, as convert-legacy-stream "
                           "does (the output is then not a libxc stream alone); without this or "
                           "--skip-qemu an HVM image with a qemu record is refused")
    parser.add_argument("-v", "--verbose", action="store_true", help="summarise the stream on stdout")


REFUSE, SKIP, APPEND = "refuse", "skip", "append"


def qemu_mode(qemu: str | bool) -> str:
    """What ``-f libxc`` does with an HVM image's qemu record: ``refuse`` (the
    default), ``skip`` (``--skip-qemu``; False) or ``append`` (``--append-qemu``; True)."""
    if qemu is True:
        return APPEND
    if qemu is False:
        return SKIP
    if qemu not in (REFUSE, SKIP, APPEND):
        raise ValueError(f"qemu: {qemu!r}")
    return qemu


class Converter:
    """Writes the v2 records of the legacy items it is given (``legacy.LegacyReader.items``) as
    they arrive."""

    def __init__(self, out: BinaryIO, *, fmt: str = "libxc", qemu: str | bool = REFUSE, log=None):
        self.out = out
        self.libxl = fmt == "libxl"
        self.qemu = qemu_mode(qemu)
        self.log = log or (lambda text: None)
        self.info: legacy.ImageInfo | None = None
        self.hvm_params: list[tuple[int, int]] = []
        self.xenstore: list[tuple[bytes, bytes]] = []
        self.ext: legacy.ExtendedInfo | None = None
        self.body_done = False
        self.records = 0

    # output ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.out.write(data)

    def xc(self, record) -> None:
        self.write(encode_record(record.type, record.encode_body(LE), LE))
        self.records += 1

    def xl_record(self, record) -> None:
        self.write(encode_record(record.type, record.encode_body(LE), LE))

    # items ----------------------------------------------------------------
    def item(self, item) -> None:
        """Write what the legacy reader's ``Item(offset, kind, value)`` becomes."""
        _, kind, value = item
        if kind == "xl_header":
            flags = value.mandatory_flags | (xl.FLAG_STREAMV2 if self.libxl else 0)
            self.write(xl.XlHeader(value.endian, flags, value.optional_flags, value.optional_data,
                                   value.magic, value.byteorder).encode())
            self.log("xl header copied" + (", STREAMv2 flag set" if self.libxl else ""))
        elif kind == "image info":
            self.start(value)
        elif kind == "page_batch":
            self.page_batch(value)
        elif kind == "chunk":
            self.chunk(value)
        elif kind == "vcpu":
            self.end_body()
            self.pv_vcpu(value)
        elif kind == "shared_info":
            self.end_body()
            self.xc(libxc.SharedInfo(value))
            self.xc(libxc.End())
        elif kind == "hvm_tail":
            self.end_body()
            self.xc(libxc.HvmParams(((legacy.HVM_PARAM_IOREQ_PFN, value.ioreq_pfn),
                                     (legacy.HVM_PARAM_BUFIOREQ_PFN, value.bufioreq_pfn),
                                     (legacy.HVM_PARAM_STORE_PFN, value.store_pfn))))
            self.xc(libxc.HvmContext(value.context))
            self.xc(libxc.End())
        elif kind == "qemu":
            self.qemu_record(value)
        # image, p2m_size, ext_block, p2m_frames (in image info), unmapped_pfns (no v2 record),
        # end_of_body: nothing to write

    def chunk(self, chunk) -> None:
        if isinstance(chunk, legacy.TscInfo):
            self.xc(libxc.X86TscInfo(chunk.mode, chunk.khz, chunk.nsec, chunk.incarnation))
        elif isinstance(chunk, legacy.HvmParamChunk):
            self.hvm_params.append((chunk.param, chunk.value))
        elif isinstance(chunk, legacy.ToolstackChunk):
            if isinstance(chunk.data, legacy.LibxlToolstack) and self.libxl:
                self.xenstore.extend(chunk.data.xenstore())
            else:
                self.log("toolstack chunk discarded")
        # VcpuInfo: the reader applies the online map; markers have no v2 counterpart

    def start(self, info: legacy.ImageInfo) -> None:
        self.info = info
        self.ext = info.extended_info
        pv = info.guest is legacy.PV
        if self.libxl:
            self.write(libxl.LibxlHeader(options=libxl.OPT_LEGACY).encode())
            self.xl_record(libxl.LibxcContext())
        dtype = libxc.DomainType.X86_PV if pv else libxc.DomainType.X86_HVM
        self.write(libxc.encode_headers(libxc.ImageHeader.make(3, LE),
                                        libxc.DomainHeader(dtype, 12, 0, VERSION)))
        if pv:
            self.xc(libxc.X86PvInfo(self.ext.guest_width, self.ext.pt_levels))
        self.xc(libxc.StaticDataEnd())
        if pv:
            self.xc(libxc.X86PvP2mFrames(0, info.p2m_size - 1, info.p2m_frames))
        self.log(f"{info.width}-bit toolstack, {legacy.guest_name(info.guest)} guest, "
                 f"p2m_size 0x{info.p2m_size:x}")

    def page_batch(self, batch: legacy.PageBatch) -> None:
        pfns = tuple(((e & legacy.PFN_TYPE_MASK) << 32) | (e & legacy.PFN_MASK)
                     for e in batch.pfns if e != legacy.BARE_XTAB)
        if not pfns:
            self.log("page batch of bare XTAB entries only: no PAGE_DATA record")
            return
        self.xc(libxc.PageData(pfns, batch.pages))

    def end_body(self) -> None:
        if self.body_done:
            return
        self.body_done = True
        if self.hvm_params:
            self.xc(libxc.HvmParams(tuple(self.hvm_params)))

    def pv_vcpu(self, vcpu: legacy.PvVcpu) -> None:
        self.xc(libxc.X86PvVcpuBasic(vcpu.vcpu_id, vcpu.context))
        if vcpu.extended is not None:
            self.xc(libxc.X86PvVcpuExtended(vcpu.vcpu_id, vcpu.extended))
        if vcpu.xsave is not None:
            self.xc(libxc.X86PvVcpuXsave(vcpu.vcpu_id, vcpu.xsave.data))

    def finish_libxc(self) -> None:
        """Called after the tail: libxl records that follow the libxc stream."""
        if self.libxl and self.xenstore:
            self.xl_record(libxl.EmulatorXenstoreData(libxl.EmulatorId.UNKNOWN, 0, tuple(self.xenstore)))
            self.xenstore = []

    def qemu_record(self, record: legacy.QemuRecord) -> None:
        self.finish_libxc()
        if self.libxl:
            self.xl_record(libxl.EmulatorContext(libxl.EmulatorId.UNKNOWN, 0, record.data))
        elif self.qemu == APPEND:
            self.write(legacy.encode_qemu(record))
        elif self.qemu == REFUSE:
            sig = record.signature.decode("ascii", "replace")
            raise UsageError(
                f"the HVM image ends with a qemu record ({sig}, {len(record.data)} octets) and a "
                "libxc stream has no record for it: convert with -f libxl (it becomes "
                "EMULATOR_CONTEXT), --skip-qemu (leave it out) or --append-qemu (copy it after "
                "END, as convert-legacy-stream does; the output is then not a libxc stream alone)")
        self.log(f"qemu record ({len(record.data)} octets) "
                 + ("as EMULATOR_CONTEXT" if self.libxl else "copied" if self.qemu == APPEND
                    else "skipped"))

    def finish(self) -> None:
        self.finish_libxc()
        if self.libxl:
            self.xl_record(libxl.End())


def convert(src: Source, out: BinaryIO, *, width: int | None = None, guest: str | None = None,
            fmt: str = "libxc", xl_header: bool = False, qemu: str | bool = REFUSE,
            checker: Checker | None = None, log=None) -> Checker:
    """Convert the legacy image in ``src`` to a v2 stream written to ``out``.

    Raises :class:`StreamError` for the first refused finding (output written so
    far stays written, as with a failed save).  ``qemu`` (see :func:`qemu_mode`)
    matters for ``-f libxc`` only: with ``-f libxl`` the qemu record is always
    converted (it is part of the libxl layer).  With ``refuse``, an HVM image
    that has a qemu record raises :class:`UsageError` naming the options.
    """
    ck = checker or Checker(Role.RESTORE, fail_fast=True)
    conv = Converter(out, fmt=fmt, qemu=qemu, log=log)
    # Whether a qemu record follows an HVM tail: always in a libxl image; a bare
    # libxc image may end with the tail (the caller saved qemu elsewhere).
    want_qemu = True if fmt == "libxl" else None
    # The toolstack blob is libxl's physmap only for a libxl image; a libxc
    # conversion discards it unread, as Xen's converter does.
    reader = legacy.LegacyReader(src, ck, collect=True, width=width, guest=guest, libxl=fmt == "libxl",
                                 qemu=want_qemu, xl=xl_header or None)
    for item in reader.items():
        conv.item(item)
    conv.finish()
    return ck


def _is_stdout(spec: str) -> bool:
    """Whether the output ``spec`` (a path or a descriptor number) is our stdout."""
    if spec == "1":
        return True
    try:
        mine = os.fstat(sys.stdout.fileno())
        other = os.fstat(int(spec)) if spec.isdigit() else os.stat(spec)
    except (OSError, ValueError, AttributeError):
        return False
    return os.path.samestat(mine, other)


def run(args: argparse.Namespace) -> int:
    """Convert; the output is written atomically (a temporary file renamed over
    it once the conversion succeeded): a failed conversion leaves an existing
    output as it was.  An output that is the input is refused before anything
    is opened for writing; a descriptor number, a device or a FIFO is written
    in place.  With the stream on stdout, ``-v`` writes to stderr."""
    refuse_same_file(args.fout, [args.fin])
    try:
        src = Source.open(args.fin)
    except OSError as exc:
        raise UsageError(f"cannot open {args.fin}: {exc.strerror}") from None
    to_stdout = _is_stdout(args.fout)
    notes_to = sys.stderr if to_stdout else sys.stdout
    log = (lambda text: print(text, file=notes_to, flush=True)) if args.verbose else None
    checker = Checker(Role.RESTORE, fail_fast=True, verbose=args.verbose)
    try:
        if args.fout.isdigit():
            try:
                out = open(int(args.fout), "wb", closefd=False)
            except OSError as exc:
                raise UsageError(f"cannot write to descriptor {args.fout}: {exc.strerror}") from None
            target = contextlib.nullcontext(out)
        else:
            target = AtomicOutput(args.fout)
        with target as out:
            try:
                convert(src, out, width=int(args.width) if args.width else None, guest=args.guest,
                        fmt=args.format, xl_header=args.xl,
                        qemu=SKIP if args.skip_qemu else APPEND if args.append_qemu else REFUSE,
                        checker=checker, log=log)
            except OSError as exc:
                if exc.filename is None and getattr(exc, "errno", None) in _WRITE_ERRNOS:
                    raise OSError(exc.errno, exc.strerror, args.fout) from None
                raise UsageError(f"cannot read {args.fin}: {exc.strerror or exc}") from None
            if args.fout.isdigit():
                out.flush()
    except StreamError as exc:
        print(f"xenstream convert-legacy: {exc.finding.describe()}", file=sys.stderr)
        return 1
    finally:
        src.close()
        if args.verbose:
            for note in checker.notes:
                print(note, file=notes_to)
    return 0


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE)

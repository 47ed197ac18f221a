"""Writer profiles of the containers: what libvirt's libxl driver and xenopsd write, by release.

In the spirit of :mod:`.profiles` (Xen's own writers): a profile is a name,
and builds the file that writer writes, with only what differs between two
saves left to parameters.  The sources, by release, are in
docs/containers.md and in each profile's :attr:`ContainerProfile.sources`.

``libvirt-xen-X.Y-GUEST`` (GUEST ``hvm`` or ``pv``): ``libxlDoDomainSave()``
of a libvirt built against Xen X.Y: for 4.2 to 4.5 (``LIBXL_SAVE_VERSION``
1) the legacy image libxl of that Xen writes (64-bit toolstack, libxl's
physmap blob in the toolstack chunk, for HVM libxl's ``DeviceModelRecord0002``
record); for 4.6 and later (libvirt 1.3.5 and later: version 2) the libxl v2
stream of the Xen writer profile ``xen-X.Y-GUEST``.  The XML is a small
domain definition as ``virDomainDefFormat()`` writes one.

``xenopsd-RELEASE-GUEST[-VARIANT]`` (``xc/domain.ml`` ``suspend`` of that
xenopsd): ``0.9.32`` (the classic legacy image: a 32-bit legacy libxc image
and, for HVM, ``QemuDeviceModelRecord\\n`` with a big-endian length),
``0.9.33`` (the same with ``DeviceModelRecord0002`` and a little-endian
length), ``0.9.38`` (structured; Xenops with the domain's xenstore subtree,
``Libxc_legacy`` from a xenguest without migration v2, End_of_image),
``0.17`` (Xenops with the subtree, Libxc with Xen 4.6's libxc stream,
Qemu_trad, End_of_image; ``-vgpu``: Demu with the state file's length),
``0.37`` (xs_subtree empty, Libxc of Xen 4.7 written through emu-manager,
Qemu_trad, End_of_image; ``-vgpu``: Demu of length 0 and the vGPU stream
first), ``0.150`` (Libxc of Xen 4.13 (v3), ``-uefi``: Varstored before
Qemu_trad).  The Xen release of the embedded stream is a parameter
(``xen=``): XenServer 7.0 shipped Xen 4.6, 8.2 ships 4.13, XCP-ng 8.3 4.17.

The qemu records, vGPU states and UEFI variable blobs are synthetic (a QEVM
header and a pattern): only their framing is the writers'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from . import legacy, libvirt, profiles as P, xenopsd as X
from .errors import UsageError

GUESTS = ("hvm", "pv")
LIBVIRT_RELEASES = tuple((4, m) for m in range(2, 23))
#: xenopsd eras (the releases where the writer's shape changed) -> the Xen release of the
#: libxc stream they write (None: a legacy image)
XENOPSD_RELEASES = {"0.9.32": None, "0.9.33": None, "0.9.38": None, "0.17": (4, 6), "0.37": (4, 7),
                    "0.150": (4, 13)}
XENOPSD_VARIANTS = {"0.17": ("vgpu",), "0.37": ("vgpu",), "0.150": ("uefi", "vgpu")}
QEMU_RECORD = b"QEVM\0\0\0\3" + bytes(range(56))


def domain_xml(guest: str, name: str = "guest") -> str:
    """A domain definition as libvirt's ``virDomainDefFormat()`` writes a running Xen guest's."""
    if guest == "hvm":
        os_ = ("    <type arch='x86_64' machine='xenfv'>hvm</type>\n"
               "    <loader type='rom'>/usr/lib/xen/boot/hvmloader</loader>\n    <boot dev='hd'/>\n")
        emulator = "    <emulator type='qemu'>/usr/lib/xen/bin/qemu-system-i386</emulator>\n"
    else:
        os_ = "    <type arch='x86_64' machine='xenpv'>linux</type>\n"
        emulator = ""
    return (f"<domain type='xen' id='3'>\n  <name>{name}</name>\n"
            "  <uuid>3b9ad1f2-5f6c-4a37-9d3e-6a2f0c1e8b41</uuid>\n"
            "  <memory unit='KiB'>1048576</memory>\n  <currentMemory unit='KiB'>1048576</currentMemory>\n"
            "  <vcpu placement='static'>1</vcpu>\n"
            f"  <os>\n{os_}  </os>\n"
            "  <clock offset='utc' adjustment='reset'/>\n  <on_poweroff>destroy</on_poweroff>\n"
            "  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n{emulator}"
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
            "      <source file='/var/lib/libvirt/images/guest.img'/>\n"
            "      <target dev='xvda' bus='xen'/>\n    </disk>\n"
            "    <interface type='bridge'>\n      <mac address='00:16:3e:1a:b2:c3'/>\n"
            "      <source bridge='br0'/>\n      <script path='vif-bridge'/>\n    </interface>\n"
            "    <console type='pty'>\n      <target type='xen' port='0'/>\n    </console>\n"
            "  </devices>\n</domain>\n")


@dataclass(frozen=True)
class ContainerProfile:
    name: str
    writer: str                 # libvirt, xenopsd
    release: str                # libvirt: the Xen release built against; xenopsd: its release
    guest: str
    variant: str = ""           # xenopsd: vgpu, uefi
    xen: tuple[int, int] | None = None   # xenopsd: the Xen release of the libxc stream
    ram_pages: int = 1
    name_in_xml: str = "guest"

    @property
    def format(self) -> str:
        return self.writer

    def build(self):
        return _build_libvirt(self) if self.writer == "libvirt" else _build_xenopsd(self)

    def encode(self) -> bytes:
        value = self.build()
        return libvirt.encode(value) if self.writer == "libvirt" else X.encode(value)

    @property
    def sources(self) -> str:
        if self.writer == "libvirt":
            stream = ("libxl of Xen 4.2-4.5 (tools/libxl/libxl_dom.c libxl__domain_suspend_common, "
                      "libxl__domain_save_device_model)" if self.legacy else
                      P.get(P.profile_name(P.release_of(self.release), self.guest)).sources)
            return (f"libvirt src/libxl/libxl_driver.c libxlDoDomainSave(), libxl_conf.h LIBXL_SAVE_VERSION "
                    f"{1 if self.legacy else 2}; {stream}")
        out = f"xenopsd {self.release}: xc/domain.ml suspend"
        if self.release in ("0.37", "0.150"):
            out += ", suspend_emu_manager"
        if self.variant == "uefi":
            out += ", write_varstored_record"
        out += "; lib/suspend_image.ml"
        if self.xen is not None:
            out += f"; the libxc stream: {P.get(P.profile_name(self.xen, self.guest)).sources.split(';')[0]}"
        return out

    @property
    def legacy(self) -> bool:
        return self.writer == "libvirt" and P.release_of(self.release) < (4, 6)


_LIBVIRT = re.compile(r"^libvirt-xen-(\d+\.\d+)-(hvm|pv)$")
_XENOPSD = re.compile(r"^xenopsd-([\d.]+)-(hvm|pv)(?:-(vgpu|uefi))?$")


def get(name: str, **params) -> ContainerProfile:
    m = _LIBVIRT.match(name)
    if m:
        release = P.release_of(m.group(1))
        if release not in LIBVIRT_RELEASES:
            raise UsageError(f"writer profile {name!r}: libvirt's libxl driver with Xen 4.2 to "
                             f"{P.release_name(LIBVIRT_RELEASES[-1])}")
        return replace(ContainerProfile(name, "libvirt", m.group(1), m.group(2)), **params)
    m = _XENOPSD.match(name)
    if m:
        release, guest, variant = m.group(1), m.group(2), m.group(3) or ""
        if release not in XENOPSD_RELEASES:
            raise UsageError(f"writer profile {name!r}: xenopsd releases are {', '.join(XENOPSD_RELEASES)}")
        if variant and variant not in XENOPSD_VARIANTS.get(release, ()):
            raise UsageError(f"writer profile {name!r}: xenopsd {release} has no {variant} variant")
        if variant and guest != "hvm":
            raise UsageError(f"writer profile {name!r}: the {variant} variant is of HVM guests")
        return replace(ContainerProfile(name, "xenopsd", release, guest, variant, XENOPSD_RELEASES[release]),
                       **params)
    raise UsageError(f"unknown container writer profile {name!r}: libvirt-xen-X.Y-(hvm|pv) or "
                     "xenopsd-RELEASE-(hvm|pv)[-vgpu|-uefi]")


def all_names() -> list[str]:
    out = [f"libvirt-xen-{P.release_name(r)}-{g}" for r in LIBVIRT_RELEASES for g in GUESTS]
    for release, variants in ((r, XENOPSD_VARIANTS.get(r, ())) for r in XENOPSD_RELEASES):
        out += [f"xenopsd-{release}-{g}" for g in GUESTS]
        out += [f"xenopsd-{release}-hvm-{v}" for v in variants]
    return out


#: The profiles the corpus and the examples carry.
SHOWCASE = ("libvirt-xen-4.4-hvm", "libvirt-xen-4.17-hvm", "libvirt-xen-4.4-pv", "xenopsd-0.9.32-hvm",
            "xenopsd-0.9.33-hvm", "xenopsd-0.9.38-pv", "xenopsd-0.17-hvm-vgpu", "xenopsd-0.37-hvm",
            "xenopsd-0.150-hvm-uefi", "xenopsd-0.9.32-pv")


def origin(profile: ContainerProfile) -> str:
    if profile.writer == "libvirt":
        return f"writer-profile: libvirt libxlDoDomainSave, Xen {profile.release} ({profile.name})"
    return f"writer-profile: xenopsd suspend, xenopsd {profile.release} ({profile.name})"


# --------------------------------------------------------------------------


def _legacy_image(guest: str, width: int, pages: int, *, libxl: bool, qemu: bool) -> legacy.LegacyStream:
    if guest == "hvm":
        return legacy.build_hvm_stream(
            width=width, p2m_size=max(pages, 1) + 1, physmap=legacy.sample_physmap(1) if libxl else None,
            qemu=legacy.QemuRecord(b"DeviceModelRecord0002", QEMU_RECORD) if qemu else None)
    return legacy.build_pv_stream(width=width, p2m_size=max(pages, 1) + 1)


def _build_libvirt(p: ContainerProfile) -> libvirt.LibvirtImage:
    xml = domain_xml(p.guest, p.name_in_xml)
    if p.legacy:
        body = _legacy_image(p.guest, 64, p.ram_pages, libxl=True, qemu=True)
        return libvirt.LibvirtImage.make(xml, body, version=libvirt.VERSION_LEGACY)
    xen = P.get(P.profile_name(P.release_of(p.release), p.guest), ram_pages=p.ram_pages, config=None)
    return libvirt.LibvirtImage.make(xml, xen.libxl(), version=libvirt.VERSION_V2)


def _xenops(p: ContainerProfile) -> X.Record:
    subtree = () if p.release in ("0.37", "0.150") else (
        ("vm", "/vm/3b9ad1f2-5f6c-4a37-9d3e-6a2f0c1e8b41"), ("name", "guest"), ("domid", "3"),
        ("memory/target", "1048576"), ("control/shutdown", ""))
    vm_str = '{"id": "3b9ad1f2-5f6c-4a37-9d3e-6a2f0c1e8b41", "name": "guest", "memory_static_max": 1073741824}'
    return X.xenops(X.XenopsRecord("20240102T03:04:05Z", 64 if p.release not in ("0.9.38",) else 32,
                                   vm_str, subtree))


def _build_xenopsd(p: ContainerProfile) -> X.SuspendImage:
    hvm = p.guest == "hvm"
    if p.release in ("0.9.32", "0.9.33"):
        body = _legacy_image(p.guest, 32, p.ram_pages, libxl=False, qemu=False)
        qemu = None
        if hvm:
            sig = X.LEGACY_QEMU_SIGNATURE if p.release == "0.9.32" else X.DEVICE_MODEL_RECORD
            qemu = X.LegacyQemu(QEMU_RECORD, sig)
        return X.SuspendImage(X.LEGACY_SIGNATURE, legacy_body=body, legacy_qemu=qemu)
    records = [_xenops(p)]
    if p.xen is None:   # a xenguest without migration v2: the legacy image carries its qemu record
        records.append(X.Record(X.RecordType.LIBXC_LEGACY,
                                _legacy_image(p.guest, 32, p.ram_pages, libxl=False, qemu=hvm)))
        records.append(X.Record(X.RecordType.END_OF_IMAGE))
        return X.structured(*records)
    stream = P.get(P.profile_name(p.xen, p.guest), ram_pages=p.ram_pages).libxc()
    if p.variant == "vgpu" and p.release == "0.37":
        # emu-manager: the memory image, then (same fd) the vGPU stream, which has no length
        records.append(X.Record(X.RecordType.LIBXC, stream))
        after = b"".join(X.RECORD_HEADER.pack(X.LE, rtype, len(body)) + body
                         for rtype, body in ((X.RecordType.QEMU_TRAD, QEMU_RECORD), (X.RecordType.END_OF_IMAGE, b"")))
        records.append(X.Record(X.RecordType.DEMU, X.DemuStream(b"vGPU migration stream" + bytes(43) + after)))
        return X.structured(*records)
    records.append(X.Record(X.RecordType.LIBXC, stream))
    if p.variant == "uefi":
        records.append(X.Record(X.RecordType.VARSTORED, b"VARS" + bytes(60)))
    if hvm:
        records.append(X.Record(X.RecordType.QEMU_TRAD, QEMU_RECORD))
    if p.variant == "vgpu":   # 0.11-0.36: the vGPU state file, with its length, after Qemu_trad
        records.append(X.Record(X.RecordType.DEMU, b"DEMU" + bytes(60)))
    records.append(X.Record(X.RecordType.END_OF_IMAGE))
    return X.structured(*records)


def label(profile: ContainerProfile, data: bytes | None = None) -> tuple[str, str | None]:
    """What the rules say of a profile's file (accept, or the most severe rule it breaks)."""
    return P.label(profile.format, profile.encode() if data is None else data)

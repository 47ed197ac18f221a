"""Writer-profile streams: ``valid(FORMAT, profile=NAME)``.

A profile (``xenstream.reference.profiles``) fixes the writer: its release,
the guest type and the save mode decide which records appear, in which order
and with which field values.  What the strategy draws is what differs between
two streams of that writer: the guest (vcpus, RAM pages, page contents, MSRs,
xsave state, emulator, physmap), the run (dirty rounds, checkpoints,
``--debug``) and the host's TSC.  ``profile="any"`` draws the profile too.

Formats: ``libxc``, ``libxl``, ``xl`` (the layers of one save), ``xenstore``
(``profile="c-xenstored"``) and ``libxl`` or ``libxc`` converted from a
legacy image (``profile="convert-legacy-stream"``).
"""

from __future__ import annotations

from xenstream.reference import libxc, libxl, profiles as P

from ._draw import Draw

OTHER = ("c-xenstored", "convert-legacy-stream")


def draw_profile(d: Draw) -> P.Profile:
    release = d.choice(P.RELEASES)
    guest = d.choice(P.GUESTS)
    modes = [m for m in P.MODES if not (m == "colo" and release < (4, 7))]
    return P.get(P.profile_name(release, guest, d.choice(modes)))


def draw_params(d: Draw, profile: P.Profile) -> P.Profile:
    pv = profile.guest != "hvm"
    changes = dict(
        vcpus=d.int(1, 2),
        ram_pages=d.int(1, 3),
        seed=d.int(0, 1 << 16),
        tsc_mode=d.choice([0, 0, 1, 2, 3]),
        tsc_khz=d.int(1_000_000, 4_000_000),
        tsc_nsec=d.int(0, 1 << 44),
        tsc_incarnation=d.int(0, 3),
        config=d.choice([b"", None]),
    )
    if profile.mode != "save":
        changes["dirty_rounds"] = d.int(0, 2)
    if profile.mode == "migrate":
        changes["debug"] = d.bool()
    if profile.checkpointed:
        changes["checkpoints"] = d.int(0, 2)
    if pv:
        changes["xsave"] = d.bool()
        changes["msrs"] = d.choice([(), ((P.MSR_TSC_AUX, d.int(0, 7)),)])
        changes["amd_dbext"] = d.bool()
    else:
        changes["emulator"] = d.choice([libxl.EmulatorId.QEMU_UPSTREAM, libxl.EmulatorId.QEMU_TRADITIONAL])
        changes["physmap"] = d.bool()
    return profile.with_params(**changes)


def build(d: Draw, fmt: str, profile: str) -> tuple[bytes, str, str, str | None]:
    """(octets, description, expected verdict, rule): the verdict the spec gives what Xen writes."""
    data, description = _build(d, fmt, profile)
    expected, rule = P.label(fmt, data)
    return data, description, expected, rule


def _build(d: Draw, fmt: str, profile: str) -> tuple[bytes, str]:
    if profile == "c-xenstored":
        if fmt != "xenstore":
            raise ValueError("profile c-xenstored writes the xenstore format")
        data = P.c_xenstored(domains=tuple(range(1, 1 + d.int(0, 3))))
        return data, "C xenstored live-update dump (writer profile c-xenstored)"
    if profile == "convert-legacy-stream":
        if fmt not in ("libxc", "libxl"):
            raise ValueError("profile convert-legacy-stream writes libxc or libxl")
        guest = d.choice(["hvm", "pv"])
        width = d.choice([32, 64])
        data = P.convert_legacy(fmt, guest=guest, width=width, pages=d.int(1, 4))
        return data, f"{fmt} stream converted from a {width}-bit {guest} legacy image (convert-legacy-stream)"
    if fmt not in P.LAYERS:
        raise ValueError(f"Xen writer profiles write {', '.join(P.LAYERS)}, not {fmt}")
    prof = draw_profile(d) if profile == "any" else P.get(profile)
    prof = draw_params(d, prof)
    data = prof.encode(fmt)
    return data, f"{fmt} stream as Xen's writers shape it (writer profile {prof.name})"


__all__ = ["build", "draw_params", "draw_profile", "OTHER", "libxc"]

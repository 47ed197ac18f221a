"""Reader profiles: what Xen's own C restore code refuses beyond the specification.

A user asks two questions of a stream: "does the spec allow it?" (the rule
catalogue, ``--role``) and "would Xen X.Y restore it?".  The second is a
*reader profile*: the checks that Xen's C readers of release X.Y make and the
specifications do not, each a rule of severity ``either`` (the spec does not
require it) declared in its format's module like every other rule.  A reader
profile only adds refusals: the spec's ``reject`` rules still hold.

The C readers read here (cite file, function and release; paths moved in 4.15
from ``tools/libxc/xc_sr_*.c`` to ``tools/libs/guest/xg_sr_*.c`` and from
``tools/libxl/`` to ``tools/libs/light/``):

``libxenguest``
    ``xc_domain_restore``: ``xg_sr_restore.c``, ``xg_sr_common.c``,
    ``xg_sr_common_x86.c``, ``xg_sr_restore_x86_hvm.c``, ``xg_sr_restore_x86_pv.c``;
``libxl``
    ``libxl_stream_read.c`` and ``libxl__restore_emulator_xenstore_data``
    (``libxl_dom_save.c``);
``xl``
    the savefile header reader in ``create_domain`` (``tools/xl/xl_vmcontrol.c``;
    ``tools/libxl/xl_cmdimpl.c`` before 4.9).

Profiles are named ``xen-MAJOR.MINOR`` for a plain restore (``xl restore``,
the receiving end of ``xl migrate``: libxenguest's ``XC_STREAM_PLAIN``) and
``xen-MAJOR.MINOR-remus`` and ``-colo`` for the receiving end of a
checkpointed stream (``xl remus``, with ``--colo``), which accept CHECKPOINT
records (and, for COLO, CHECKPOINT_STATE).  Releases 4.6 (the first to
read these formats) to 4.22 (and master as of 2026, which reads like 4.22)
are known.

Checks that depend on the domain the stream is restored into (the number of
vCPUs it was created with, its memory limit) or on the blobs' contents as
the hypervisor interprets them (a vCPU's cr3 naming a pinned L4 page, the
HVM save records, the CPU policy) are not here: they are the business of a
testee that runs the real library (``--impl-kind libxenguest``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

#: Releases whose readers were read, oldest first.
RELEASES: tuple[tuple[int, int], ...] = tuple((4, m) for m in range(6, 23))
LATEST = RELEASES[-1]
MODES = ("plain", "remus", "colo")

# where the files were before and after the 4.15 move
_GUEST = "tools/libs/guest/xg_sr_{0}.c (tools/libxc/xc_sr_{0}.c before 4.15)"
_LIGHT = "tools/libs/light/{0} (tools/libxl/{0} before 4.15)"


def release_name(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


@dataclass(frozen=True)
class ReaderCheck:
    """One check a C reader makes that the spec does not ask for."""

    rule: str
    component: str   # libxenguest, libxl, xl
    source: str      # file and function, as a user can look them up
    behaviour: str   # what the C code does, and its message
    since: tuple[int, int] = RELEASES[0]
    until: tuple[int, int] | None = None   # last release enforcing it; None: still enforced
    modes: tuple[str, ...] = MODES
    #: the rule is the spec's own ``either`` rule, checked (and reported) without a reader profile
    #: too; the others are checked only under one
    always: bool = False

    def enforced_by(self, release: tuple[int, int], mode: str = "plain") -> bool:
        return (self.since <= release and (self.until is None or release <= self.until)
                and mode in self.modes)

    @property
    def releases(self) -> str:
        last = "" if self.until is None else release_name(self.until)
        if self.until == self.since:
            return release_name(self.since)
        return f"{release_name(self.since)}-{last}" if last else f"{release_name(self.since)} and later"


CHECKS: tuple[ReaderCheck, ...] = (
    # -- libxenguest ------------------------------------------------------------------
    ReaderCheck("libxc.image_header.endianness_x86", "libxenguest",
                _GUEST.format("restore") + ", read_headers()",
                "refuses a big-endian image: \"Unable to handle big endian streams\"", always=True),
    ReaderCheck("libxc.image_header.version_3", "libxenguest",
                _GUEST.format("restore") + ", read_headers()",
                "accepts version 2 only (IHDR_VERSION): \"Invalid Version: Expected 2, Got 3\"",
                until=(4, 13)),
    ReaderCheck("libxc.domain_header.page_shift", "libxenguest",
                _GUEST.format("restore_x86_hvm") + ", x86_hvm_setup(); " + _GUEST.format("restore_x86_pv")
                + ", x86_pv_setup()",
                "refuses a page size other than 4096: \"Invalid page size\"", always=True),
    ReaderCheck("libxc.record.length_max", "libxenguest",
                _GUEST.format("common") + ", read_record(); xg_sr_stream_format.h, REC_LENGTH_MAX",
                "refuses a record longer than REC_LENGTH_MAX, 8 MiB in 4.6-4.9 and 128 MiB since 4.10: "
                "\"length ... exceeds max\""),
    ReaderCheck("libxc.checkpoint.plain_stream", "libxenguest",
                _GUEST.format("restore") + ", handle_checkpoint()",
                "a plain restore refuses CHECKPOINT: \"Found checkpoint in non-checkpointed stream\"",
                modes=("plain",)),
    ReaderCheck("libxc.x86_pv_info.combination", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_info()",
                "accepts only width 4 with 3 levels and width 8 with 4 levels (an explicit check since 4.14, "
                "before that the domain's own width and levels must match): \"Invalid X86_PV_INFO combination\""),
    ReaderCheck("libxc.x86_pv_info.repeated", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_info()",
                "refuses a second X86_PV_INFO: \"Already received X86_PV_INFO record\""),
    ReaderCheck("libxc.pv.info_before_shared_info", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_shared_info()",
                "refuses SHARED_INFO before X86_PV_INFO: \"Not yet received X86_PV_INFO record\""),
    ReaderCheck("libxc.pv.vcpu0_basic", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", update_vcpu_context()",
                "refuses a PV stream without vcpu 0's X86_PV_VCPU_BASIC: \"Sender didn't send vcpu0's basic state\""),
    ReaderCheck("libxc.x86_pv_vcpu_basic.context_size", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_vcpu_blob()",
                "the context is exactly one vcpu_guest_context of the guest's width (5168 octets for a 64-bit "
                "guest, 2800 for a 32-bit one): \"record wrong size\""),
    ReaderCheck("libxc.x86_pv_vcpu_extended.context_size", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_vcpu_blob()",
                "the context is at most 128 octets: \"record too long\""),
    ReaderCheck("libxc.x86_pv_vcpu_xsave.context_size", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_vcpu_blob()",
                "the context is at least 16 octets (xcr0 and xcr0_accum): \"record too short\"",
                since=(4, 14)),
    ReaderCheck("libxc.x86_pv_vcpu_msrs.context_size", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_vcpu_blob()",
                "the context is a whole number of 16-octet xen_domctl_vcpu_msr_t: \"expected to be a multiple\""),
    ReaderCheck("libxc.x86_pv_vcpu.empty_context", "libxenguest",
                _GUEST.format("restore_x86_pv") + ", handle_x86_pv_vcpu_blob()",
                "refuses a VCPU record with no context (\"record truncated\"); from 4.9 it is skipped as the "
                "Errata ask", until=(4, 8)),
    ReaderCheck("libxc.x86_cpuid_policy.empty", "libxenguest",
                _GUEST.format("common_x86") + ", handle_x86_cpuid_policy()",
                "refuses an X86_CPUID_POLICY with no leaves: \"size 0 should be multiple of 24\"",
                since=(4, 14)),
    ReaderCheck("libxc.x86_msr_policy.empty", "libxenguest",
                _GUEST.format("common_x86") + ", handle_x86_msr_policy()",
                "refuses an X86_MSR_POLICY with no entries: \"size 0 should be multiple of 16\"",
                since=(4, 14)),
    ReaderCheck("libxc.hvm_context.empty", "libxenguest",
                _GUEST.format("restore_x86_hvm") + ", handle_hvm_context(); xg_sr_common.h, update_blob()",
                "refuses an HVM_CONTEXT with no content: \"Unable to allocate 0 bytes for hvm context\" "
                "(update_blob() refuses a zero size)", since=(4, 14)),
    ReaderCheck("libxc.hvm.context_missing", "libxenguest",
                _GUEST.format("restore_x86_hvm") + ", x86_hvm_stream_complete()",
                "hands XEN_DOMCTL_sethvmcontext the last HVM_CONTEXT; without one Xen has no save header to "
                "load and the restore fails: \"Unable to restore HVM context\""),
    # -- libxl -------------------------------------------------------------------------
    ReaderCheck("libxl.header.endianness", "libxl",
                _LIGHT.format("libxl_stream_read.c") + ", stream_header_done()",
                "refuses a big-endian stream: \"Unable to handle big endian streams\"", always=True),
    ReaderCheck("libxl.record.unknown_optional", "libxl",
                _LIGHT.format("libxl_stream_read.c") + ", process_record()",
                "refuses every record type it does not know, optional ones too: \"Unrecognised record 0x...\""),
    ReaderCheck("libxl.emulator.guest_type", "libxl",
                _LIGHT.format("libxl_stream_read.c") + ", process_record()",
                "refuses emulator records for a guest that is not HVM: \"Received a xenstore emulator record "
                "when none was expected\"", always=True),
    ReaderCheck("libxl.checkpoint_state.direction", "libxl",
                _LIGHT.format("libxl_stream_read.c") + ", process_record()",
                "refuses CHECKPOINT_STATE unless COLO asked for one: \"Unexpected CHECKPOINT_STATE record in "
                "stream\" (an unknown record type before 4.7)", modes=("plain", "remus"), always=True),
    # -- xl ------------------------------------------------------------------------------
    ReaderCheck("xl.header.foreign_byteorder", "xl",
                "tools/xl/xl_vmcontrol.c (tools/libxl/xl_cmdimpl.c before 4.9), create_domain()",
                "reads the header in the host's byte order and refuses any other: \"File has wrong byte order\""),
    ReaderCheck("xl.config.missing", "xl",
                "tools/xl/xl_vmcontrol.c (tools/libxl/xl_cmdimpl.c before 4.9), create_domain()",
                "without a configuration in the savefile, `xl restore FILE` (no config file argument) fails: "
                "\"Config file not specified and none in save file\""),
)

_BY_RULE: dict[str, list[ReaderCheck]] = {}
for _c in CHECKS:
    _BY_RULE.setdefault(_c.rule, []).append(_c)


@dataclass(frozen=True)
class ReaderProfile:
    """The checks of one release's C readers in one restore mode."""

    name: str
    release: tuple[int, int]
    mode: str
    rules: frozenset[str]

    @property
    def description(self) -> str:
        what = {"plain": "a plain restore (xl restore, xl migrate)", "remus": "a checkpointed restore (xl remus)",
                "colo": "a COLO restore (xl remus --colo)"}[self.mode]
        return f"Xen {release_name(self.release)}'s C readers, {what}"

    def checks(self) -> list[ReaderCheck]:
        return [c for c in CHECKS if c.enforced_by(self.release, self.mode)]


def profile_name(release: tuple[int, int], mode: str = "plain") -> str:
    return f"xen-{release_name(release)}" + ("" if mode == "plain" else f"-{mode}")


def _make(release: tuple[int, int], mode: str) -> ReaderProfile:
    rules = frozenset(c.rule for c in CHECKS if c.enforced_by(release, mode))
    return ReaderProfile(profile_name(release, mode), release, mode, rules)


PROFILES: dict[str, ReaderProfile] = {
    profile_name(r, m): _make(r, m) for r in RELEASES for m in MODES if not (m == "colo" and r < (4, 7))
}


def names() -> list[str]:
    return list(PROFILES)


def get(name: str) -> ReaderProfile:
    """The profile called ``name`` (``xen-4.17``, ``xen-4.17-remus``); ``xen-master`` is the latest."""
    if name == "master" or name.startswith("xen-master"):
        name = f"xen-{release_name(LATEST)}" + name[len("xen-master"):]
    profile = PROFILES.get(name)
    if profile is None:
        raise UsageError(f"unknown reader profile {name!r}; known: xen-{release_name(RELEASES[0])} to "
                         f"xen-{release_name(LATEST)} and xen-master, optionally with -remus or -colo (4.7+)")
    return profile


def checks_of(rule_id: str) -> list[ReaderCheck]:
    return list(_BY_RULE.get(rule_id, ()))


def reader_only_rules() -> set[str]:
    """Rules checked only under a reader profile."""
    return {c.rule for c in CHECKS if not c.always}


def restorable_by(writer_release: tuple[int, int], version: int) -> list[ReaderProfile]:
    """Plain reader profiles of releases that restore what ``writer_release`` wrote.

    Xen restores streams from the same or an older release; a version 3 stream
    needs 4.14 or later."""
    out = []
    for release in RELEASES:
        if release < writer_release or (version >= 3 and release < (4, 14)):
            continue
        out.append(PROFILES[profile_name(release)])
    return out


def render_markdown() -> list[str]:
    """The reader-profile section of docs/rules.md."""
    out = ["", "## Reader profiles", "",
           "`xenstream verify --reader xen-X.Y` also refuses what Xen X.Y's C readers refuse beyond the spec "
           "(`xen-X.Y-remus`, `xen-X.Y-colo`: the receiving end of a checkpointed stream).  These rules are "
           "`either` (the spec does not require them); those marked *reader only* are checked only under a "
           "reader profile, the others always.  `docs/profiles.md` has the writers and a table by release.", "",
           "| rule | reader | refused by releases | source | what the C reader does |",
           "|---|---|---|---|---|"]
    for c in CHECKS:
        modes = "" if c.modes == MODES else f" ({', '.join(c.modes)} restore only)"
        only = "" if c.always else " *reader only*"
        out.append(f"| `{c.rule}`{only} | {c.component} | {c.releases}{modes} | {c.source} | "
                   f"{c.behaviour.replace('|', chr(92) + '|')} |")
    return out


def render_matrix() -> str:
    """The reader checks × releases table of docs/profiles.md (plain restore; R: refused)."""
    head = "| check | " + " | ".join(release_name(r) for r in RELEASES) + " | source |"
    out = [head, "|---|" + "---|" * len(RELEASES) + "---|"]
    for c in CHECKS:
        cells = [("R" if c.rule != "libxc.record.length_max" else "8M" if r <= (4, 9) else "128M")
                 if c.enforced_by(r, c.modes[0]) else "" for r in RELEASES]
        mode = "" if c.modes == MODES else f" ({'/'.join(c.modes)})"
        out.append(f"| `{c.rule}`{mode} | " + " | ".join(cells) + f" | {c.component}: {c.source} |")
    return "\n".join(out) + "\n"

"""The kinds of implementation the suite tests (``--impl-kind``), as data.

A :class:`Kind` says everything the plugin needs to know about one kind of
testee: how its implementation is made from the options (:class:`Testee`),
the role it is judged in unless ``--impl-role`` says otherwise, the runner
that drives it, the formats and cases it applies to and why the others do
not.  Why a kind cannot run on this machine at all (no ``cc``, no packages)
is its implementation's own answer (``Implementation.unavailable()``).

Adding a kind is one entry of :data:`KINDS`: a factory that turns a
:class:`Testee` into an :class:`~.execute.Implementation`, and a
:class:`~.runner.Runner` subclass when judging a case takes more than a
verdict (see docs/architecture.md, "Adding a kind of testee").
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xenstream.reference.errors import UsageError

from .cases import Case
from .converter import ConverterProgram, ConverterRunner, options_from_meta
from .execute import Builtin, Implementation, Limits, Program, reference_command
from .libxenguest.testee import Libxenguest, LibxenguestRunner, not_supported
from .runner import Runner
from .xenstored.runner import NOT_APPLICABLE, XenstoredProgram, XenstoredRunner, applicable

ROLES = ("strict", "restore")
#: ``--impl`` values that name the reference rather than a program.
BUILTINS = ("builtin", "builtin-subprocess")


@dataclass
class Testee:
    """What the options say about the implementation under test; a kind's
    factory turns it into an :class:`~.execute.Implementation`.

    ``option`` reads any option of the run (``config.getoption``), for what
    a kind or a protocol adds; ``programs`` collects the words the preflight
    checks can be run (:meth:`program`, :meth:`command` add to it)."""

    impl: str                                  # --impl ("builtin" when not given)
    template: str | None                       # --impl-cmd
    role: str
    limits: Limits
    option: Callable[[str], Any] = lambda name: None
    programs: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.impl in BUILTINS

    def program(self) -> str:
        """``--impl`` as a program to run: a relative path made absolute (the
        program runs in a private folder), a bare name looked up on PATH."""
        self.programs.append(self.impl)
        return str(Path(self.impl).absolute()) if os.sep in self.impl else self.impl

    def command(self) -> list[str]:
        """``--impl-cmd`` split into words (a usage error when it cannot be)."""
        try:
            words = shlex.split(self.template or "")
        except ValueError as exc:
            raise UsageError(f"--impl-cmd: {exc}") from None
        if not words:
            raise UsageError("--impl-cmd: empty command")
        self.programs.append(words[0])
        return words


@dataclass(frozen=True)
class Kind:
    """One kind of implementation under test (one ``--impl-kind``)."""

    name: str
    #: one line for ``--help``: what it is and what ``--impl`` names
    summary: str
    #: the implementation the options describe
    make: Callable[[Testee], Implementation]
    runner: type[Runner] = Runner
    default_role: str = "strict"
    roles: tuple[str, ...] = ROLES
    #: the formats it reads (None: every one; ``--formats`` narrows further)
    formats: tuple[str, ...] | None = None
    #: why a format outside :attr:`formats` is skipped (None: not reported)
    why_not_format: Callable[[str], str] | None = None
    #: the cases of its formats it takes (None: all)
    applies: Callable[[Case], bool] | None = None
    #: why the cases :attr:`applies` leaves out are skipped (None: not reported)
    why_not_case: str | None = None
    #: whether the Hypothesis properties run against it
    strategies: bool = True
    #: the preflight gives it valid streams of each format and skips the
    #: formats it refuses whatever the stream; this names the command-line
    #: convention it is expected to follow (None: no such preflight)
    convention: str | None = None

    def role(self, given: str | None) -> str:
        if given is None:
            return self.default_role
        if given not in self.roles:
            raise UsageError(f"--impl-role={given}: an --impl-kind {self.name} is judged as "
                             f"{' or '.join(self.roles)}")
        return given

    def reads(self, fmt: str) -> bool:
        return self.formats is None or fmt in self.formats

    def takes(self, case: Case) -> bool:
        return self.applies is None or self.applies(case)


# -- the factories --------------------------------------------------------------


def verifier(t: Testee) -> Implementation:
    if t.template is not None:
        t.command()
        return Program(template=t.template, limits=t.limits)
    if t.impl == "builtin":
        return Builtin(t.role)
    if t.impl == "builtin-subprocess":
        return Program(template=reference_command(t.role), limits=t.limits,
                       name=f"xenstream verify ({t.role}, subprocess)")
    return Program(path=t.program(), limits=t.limits)


def converter(t: Testee) -> Implementation:
    if t.template is not None:
        t.command()
        return ConverterProgram(template=t.template, limits=t.limits)
    if t.builtin:
        template = shlex.join([sys.executable, "-m", "xenstream", "convert-legacy"]) + \
            " -i {in} -o {out} {options}"
        return ConverterProgram(template=template, limits=t.limits)
    return ConverterProgram(path=t.program(), limits=t.limits)


def libxenguest(t: Testee) -> Implementation:
    if t.template is not None:
        raise UsageError("--impl-kind libxenguest runs its own driver: give --impl=RELEASE_DIR "
                         "(from scripts/fetch-xen-tools), not --impl-cmd")
    return Libxenguest(None if t.builtin else t.impl, t.limits)


def xenstored(t: Testee) -> Implementation:
    if t.template is not None:
        return XenstoredProgram(t.command(), t.limits)
    if t.builtin:
        raise UsageError("--impl-kind xenstored needs --impl=PATH (the daemon, or a script that "
                         "execs it, e.g. .cache/xen-tools/4.17/xenstored)")
    return XenstoredProgram([t.program()], t.limits)


#: Every kind, by the name ``--impl-kind`` takes; the first is the default.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("verifier", "a stream verifier (verify-stream-v2's convention, PROG -f FORMAT -i FILE|FD; "
         "exit 0 accepted, 1 rejected)",
         verifier, convention="verify-stream-v2's convention, PROG -f FORMAT -i FILE"),
    Kind("converter", "a legacy converter (convert-legacy-stream's options)",
         converter, ConverterRunner, formats=("legacy",),
         applies=lambda c: options_from_meta(c.meta) is not None,
         strategies=False, convention="convert-legacy-stream's options"),
    Kind("libxenguest", "Xen's xc_domain_restore under a fake hypervisor (--impl is a release "
         "directory from scripts/fetch-xen-tools, default .cache/xen-tools/4.17)",
         libxenguest, LibxenguestRunner, default_role="restore", formats=("libxc",),
         why_not_format=not_supported),
    Kind("xenstored", "a daemon restoring live-update streams (--impl=the daemon or a script "
         "that execs it; judged as a restorer, its restored store checked)",
         xenstored, XenstoredRunner, default_role="restore", roles=("restore",),
         formats=("xenstore",), applies=lambda c: applicable(c.format, c.data),
         why_not_case=NOT_APPLICABLE),
)}
DEFAULT = next(iter(KINDS))


def get(name: str) -> Kind:
    return KINDS[name]

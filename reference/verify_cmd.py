"""``xenstream verify``: a drop-in for Xen's ``verify-stream-v2`` that names the rule.

Options follow verify-stream-v2 (``-i/--in`` a file or a file descriptor
number, default stdin; ``-f/--format``; ``-v``; ``-q``; ``--syslog``), plus
``--role strict|restore``, ``--reader xen-X.Y`` (also refuse what that
release's C readers refuse; implies ``--role restore`` unless a role is given)
and ``--json``.  Exit 0: accepted; 1: the stream
breaks a rule the role refuses; 2: usage or internal error.
"""

from __future__ import annotations

import argparse
import sys

from .checker import Checker
from .errors import UsageError
from .formats import names, get_codec, validate
from .rules import Role, Severity
from .source import Source
from .spill import SpillError


def add_arguments(p) -> None:
    p.add_argument("-i", "--in", dest="input", default="0", metavar="FILE|FD",
                   help="stream to verify: a path, or a file descriptor number (default 0, stdin)")
    p.add_argument("-f", "--format", default=None, choices=list(names()),
                   help="format of the stream; without it, the format (or container) whose magic the input "
                        "starts with (-v says which); an input no format recognises is not judged "
                        "(one line, exit 2)")
    p.add_argument("--role", choices=[r.value for r in Role], default=None,
                   help="strict: refuse writer-rule violations too (default); restore: refuse only what "
                        "a restorer must refuse (the default with --reader)")
    p.add_argument("--reader", metavar="PROFILE",
                   help="also refuse what Xen's C readers of that release refuse beyond the spec: xen-4.6 .. "
                        "xen-4.22, xen-master, with -remus for a checkpointed restore (see xenstream rules)")
    p.add_argument("--json", action="store_true", help="one JSON object per finding on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="summarise the stream's contents")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; the exit code tells")
    p.add_argument("--syslog", action="store_true", help="log to syslog instead of stdout/stderr")
    add_format_options(p)


def add_format_options(p) -> None:
    """What a legacy image does not say about itself (detected when not given)."""
    g = p.add_argument_group("legacy images (-f legacy)")
    g.add_argument("-w", "--width", type=int, choices=[32, 64], help="toolstack width")
    g.add_argument("-g", "--guest", choices=["pv", "hvm"], help="guest type")
    for name, what in (("libxl", "the toolstack chunk is a libxl blob"),
                       ("qemu", "an HVM image ends with the qemu record"),
                       ("xl", "an xl savefile header precedes the image")):
        g.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=what)


def format_options(args, codec) -> dict:
    """The format options given on the command line; UsageError if the format takes none of them."""
    given = {k: getattr(args, k) for k in ("width", "guest", "libxl", "qemu", "xl")
             if getattr(args, k, None) is not None}
    unknown = sorted(set(given) - set(codec.options))
    if unknown:
        raise UsageError(f"format {codec.name!r} takes no option {', '.join('--' + u for u in unknown)}")
    return given


def open_input(spec: str) -> Source:
    try:
        return Source.open(spec)
    except OSError as exc:
        raise UsageError(f"cannot open {spec!r}: {exc.strerror or exc}") from None


class _Out:
    """Where lines go: stdout/stderr or syslog; nothing when quiet."""

    def __init__(self, args):
        self.quiet = args.quiet
        self.syslog = None
        if args.syslog:
            import syslog

            syslog.openlog("xenstream-verify", syslog.LOG_PID)
            self.syslog = syslog

    def info(self, line: str) -> None:
        self._say(line, "LOG_INFO", sys.stdout)

    def error(self, line: str) -> None:
        self._say(line, "LOG_ERR", sys.stderr)

    def _say(self, line: str, priority: str, stream) -> None:
        if self.quiet:
            return
        if self.syslog:
            self.syslog.syslog(getattr(self.syslog, priority), line)
        else:
            print(line, file=stream)


def recognised_format(args, src: Source) -> tuple[str, str | None]:
    """``-f``, or the format the input's first octets say (and why); UsageError when none does."""
    if args.format is not None:
        return args.format, None
    from .detect import detect, unrecognised_message
    from .formats import RECOGNISE_OCTETS

    name = args.input if not args.input.isdigit() else f"fd {args.input}"
    try:
        prefix = src.peek(RECOGNISE_OCTETS)
    except OSError as exc:
        src.close()
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    found = detect(prefix)
    if found is None:
        src.close()
        raise UsageError(unrecognised_message(name, prefix))
    return found.format, found.reason


def run(args) -> int:
    src = open_input(args.input)
    args.format, why = recognised_format(args, src)
    try:
        codec = get_codec(args.format)  # UsageError for a format not built
        options = format_options(args, codec)
    except UsageError:
        src.close()
        raise
    reader = None
    if args.reader:
        from . import readers

        reader = readers.get(args.reader)
    role = Role(args.role) if args.role else (Role.RESTORE if reader is not None else Role.STRICT)
    out = _Out(args)
    checker = Checker(role, verbose=args.verbose and not args.quiet, reader=reader)
    if why is not None and checker.verbose:
        checker.note(f"format {args.format}: {why}")
    try:
        validate(src, args.format, checker, **options)
    except SpillError:  # not the input's: the temporary file a large xenstore stream needs
        raise
    except OSError as exc:
        raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    finally:
        src.close()
    for line in checker.notes:
        out.info(line)
    name = args.input if not args.input.isdigit() else f"fd {args.input}"
    if args.json:
        import json  # only here: startup time of the plain verifier (docs/performance.md)
    for finding in checker.findings:
        refused = checker.refuses(finding)
        if args.json:
            if not args.quiet:
                print(json.dumps({"kind": "finding", "refused": refused, **finding.to_json()}))
            continue
        label = "error" if refused else ("note" if finding.rule.severity is Severity.EITHER else "warning")
        out.error(f"{name}: {label}: {finding.describe()}")
    hidden = checker.total - len(checker.findings)
    verdict = "accept" if checker.accepted else "reject"
    if args.json:
        if not args.quiet:
            print(json.dumps({"kind": "summary", "verdict": verdict, "role": role.value, "format": args.format,
                              **({"reader": reader.name} if reader else {}),
                              "findings": checker.total, "refused": checker.refused}))
    else:
        if hidden:
            out.error(f"{name}: ... and {hidden} more finding(s)")
        how = f"{role.value} role" + (f", reader {reader.name}" if reader else "")
        if not checker.accepted:
            out.error(f"{name}: stream rejected ({how}): {checker.refused} finding(s) refused")
        elif args.verbose:
            out.info(f"{name}: stream accepted ({how})")
    return 0 if checker.accepted else 1

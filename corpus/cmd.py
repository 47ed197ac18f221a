"""``xenstream corpus``: build, check, list or add to the regression corpus.

``build``  regenerate the generated files and manifest.json (deterministic);
``check``  verify every file's sha256 and that the reference gives it its verdict;
``add``    add a file by hand (a fuzz finding): label it with the reference's
           verdict, copy it under corpus/<format>/ and list it, origin ``fuzz``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xenstream.reference.errors import UsageError

from . import manifest as mf


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="regenerate corpus files and manifest.json")
    b.add_argument("--dir", type=Path, default=None, help="corpus folder (default: the package's)")
    b.add_argument("--no-strategies", action="store_true", help="hand-written examples (and fuzz entries) only")
    b.add_argument("-q", "--quiet", action="store_true")
    c = sub.add_parser("check", help="verify hashes and verdicts of every corpus file")
    c.add_argument("--dir", type=Path, default=None)
    c.add_argument("--no-verdicts", action="store_true", help="check hashes and schema only")
    a = sub.add_parser("add", help="add a stream by hand (fuzz finding), labelled by the reference")
    a.add_argument("file", type=Path)
    a.add_argument("-f", "--format", required=True, choices=mf.FORMATS)
    a.add_argument("-d", "--description", required=True, help="one line: what it is, how it was found")
    a.add_argument("--name", default=None, help="file name part (default fuzz-<sha256 prefix>)")
    a.add_argument("--origin", default="fuzz", choices=mf.ORIGINS)
    a.add_argument("--dir", type=Path, default=None)
    s = sub.add_parser("stats", help="files, bytes and rules covered")
    s.add_argument("--dir", type=Path, default=None)


def _dir(args) -> Path:
    from .build import default_dir

    return args.dir if args.dir is not None else default_dir()


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "build":
        from .build import build

        result = build(_dir(args), strategies=not args.no_strategies)
        if not args.quiet:
            for note in result.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"corpus: {len(result.entries)} files, {result.total_bytes} octets "
                  f"({result.written} written, {result.unchanged} unchanged, {len(result.removed)} removed)")
        return 0
    if action == "check":
        from .check import check

        result = check(_dir(args), verdicts=not args.no_verdicts)
        for line in result.failures:
            print(f"FAIL {line}", file=sys.stderr)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"corpus: {result.entries} files, {len(result.failures)} failure(s)")
        return 0 if result.ok else 1
    if action == "add":
        from .add import add

        entry = add(_dir(args), args.file, args.format, args.description, name=args.name, origin=args.origin)
        print(f"added {entry.path}: {entry.expected}{'' if entry.rule is None else ' ' + entry.rule}")
        return 0
    if action == "stats":
        from .check import uncovered_rules

        entries = mf.load(_dir(args))
        size = sum((_dir(args) / e.path).stat().st_size for e in entries)
        print(f"{len(entries)} files, {size} octets; rules without a file: {uncovered_rules(entries) or 'none'}")
        return 0
    raise UsageError("say build, check, add or stats")

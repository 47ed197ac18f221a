"""``xenstream corpus``: build, check, list or add to the regression corpus.

``build``  regenerate the generated files and manifest.json (deterministic);
``check``  verify every file's sha256 and that the reference gives it its verdict;
``add``    add a file by hand (a fuzz finding): minimise it, label it with the
           reference's verdict, copy it under corpus/<format>/ and list it,
           origin ``fuzz``;
``stats``  files, octets and the rules no file covers.

Without ``--dir`` they work on the corpus/ of the checkout they run in;
outside a checkout ``build`` and ``add`` refuse (:mod:`.location`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from xenstream.reference.errors import UsageError

from . import manifest as mf


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="regenerate corpus files and manifest.json")
    where = ("corpus folder (default: corpus/ of the checkout you are in; outside a checkout, "
             "required)")
    seen = "corpus folder (default: corpus/ of the checkout you are in, else the installed package's)"
    b.add_argument("--dir", type=Path, default=None, help=where)
    b.add_argument("--no-strategies", action="store_true", help="hand-written examples (and fuzz entries) only")
    b.add_argument("-q", "--quiet", action="store_true")
    c = sub.add_parser("check", help="verify hashes and verdicts of every corpus file")
    c.add_argument("--dir", type=Path, default=None, help=seen)
    c.add_argument("--no-verdicts", action="store_true", help="check hashes and schema only")
    a = sub.add_parser("add", help="add a stream by hand (fuzz finding), labelled by the reference")
    a.add_argument("file", type=Path)
    a.add_argument("-f", "--format", required=True, choices=mf.FORMATS)
    a.add_argument("-d", "--description", required=True, help="one line: what it is, how it was found")
    a.add_argument("--name", default=None, help="file name part (default fuzz-<sha256 prefix>)")
    a.add_argument("--origin", default="fuzz", choices=mf.ORIGINS)
    a.add_argument("--no-reduce", action="store_true",
                   help="add the file as it is (default: minimised with corpus build's reducer first)")
    a.add_argument("--dir", type=Path, default=None, help=where)
    s = sub.add_parser("stats", help="files, bytes and rules covered")
    s.add_argument("--dir", type=Path, default=None, help=seen)


def _dir(args, *, write: bool = False, existing: bool = True, manifest: bool = False) -> Path:
    """The corpus folder of the command (``--dir``, else :func:`.location.default_dir`;
    ``write``: the command changes it): it must exist (and hold a manifest)
    unless the command creates it."""
    from .location import default_dir

    folder = args.dir if args.dir is not None else default_dir(write=write)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir {folder}: not a folder")
    if existing and not folder.is_dir():
        raise UsageError(f"--dir {folder}: no such folder")
    if manifest and not (folder / mf.MANIFEST).is_file():
        raise UsageError(f"--dir {folder}: no {mf.MANIFEST} there")
    return folder


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "build":
        from .build import build

        result = build(_dir(args, write=True, existing=False), strategies=not args.no_strategies)
        if not args.quiet:
            for note in result.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"corpus {result.folder}: {len(result.entries)} files, {result.total_bytes} octets "
                  f"({result.written} written, {result.unchanged} unchanged, {len(result.removed)} removed)")
        return 0
    if action == "check":
        from .check import check

        result = check(_dir(args, manifest=True), verdicts=not args.no_verdicts)
        for line in result.failures:
            print(f"FAIL {line}", file=sys.stderr)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"corpus: {result.entries} files, {len(result.failures)} failure(s)")
        return 0 if result.ok else 1
    if action == "add":
        from .add import add

        folder = _dir(args, write=True)
        entry = add(folder, args.file, args.format, args.description, name=args.name,
                    origin=args.origin, reduce=not args.no_reduce)
        size = (folder / entry.path).stat().st_size
        print(f"added {folder / entry.path} ({size} octets): {entry.expected}"
              f"{'' if entry.rule is None else ' ' + entry.rule}")
        return 0
    if action == "stats":
        from .check import uncovered_rules

        folder = _dir(args, manifest=True)
        entries = mf.load(folder)
        size, missing = 0, []
        for e in entries:
            try:
                size += (folder / e.path).stat().st_size
            except OSError:
                missing.append(e.path)
        print(f"{len(entries)} files, {size} octets; rules without a file: "
              f"{uncovered_rules(entries) or 'none'}")
        if missing:
            raise UsageError(f"{len(missing)} listed file(s) missing, e.g. {missing[0]}; "
                             "run xenstream corpus check")
        return 0
    raise UsageError("say build, check, add or stats")

"""Replay a case the way the runner delivered it.

``python3 -m xenstream.conformance.deliver MODE [-f FORMAT] STREAM -- COMMAND...``
runs COMMAND with the stream STREAM given in MODE (``file``, ``stdin``,
``pipe``, ``fd``, ``socket``; see :mod:`.delivery`), its output going to
this terminal, and exits with its exit status (128 + N for signal N).
``cat STREAM | COMMAND`` is not the same as the ``pipe`` mode: ``cat``
usually fills the pipe before the reader's first read, so that a reader that
takes a short read for the end of the stream passes; this writes the very
pieces the runner wrote (``-f`` gives the format whose structure boundaries
place the cuts), waiting for the reader to drain each one.  In the ``fd``
and ``socket`` modes the stream is on descriptor 5 (say ``-i 5``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .delivery import MODES, Feed
from .execute import HARNESS, NOEXEC, Limits, run_process, stream_marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m xenstream.conformance.deliver",
        description="run COMMAND with STREAM delivered as the conformance runner does")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("stream", type=Path)
    parser.add_argument("-f", "--format", default=None,
                        help="the stream's format: pieces cut at its structure boundaries")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument("--memory", type=int, default=0, metavar="MIB",
                        help="address-space limit (RLIMIT_AS), as --impl-memory (default none)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    try:
        data = args.stream.read_bytes()
    except OSError as exc:
        print(f"deliver: cannot read {args.stream}: {exc.strerror}", file=sys.stderr)
        return 2
    marks = stream_marks(args.format, data) if args.format else ()
    feed = Feed.for_mode(args.mode, data, args.stream.resolve(), marks)
    limits = Limits(timeout=args.timeout, memory_mb=args.memory, output_limit=1 << 62, file_limit=0)
    seen = run_process(command, limits, mode=args.mode, feed=feed, capture=False)
    if seen.verdict in (NOEXEC, HARNESS):
        print(f"deliver: {seen.detail}", file=sys.stderr)
        return 2
    if seen.exit_code is None:
        print(f"deliver: {seen.label}", file=sys.stderr)
        return 2
    return seen.exit_code if seen.exit_code >= 0 else 128 - seen.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""``python -m xenstream.conformance.xenstored restore --impl PATH FILE``: replay one case.

Restores FILE (a live-update stream) in PATH (a xenstored, or a command that
execs one, given as one shell word list) under the fake hypervisor, as the
conformance suite does, and prints the verdict, the daemon's stderr and the
differences between the store it restored and the stream.  Exit status: 0
accepted with the stream's state, 1 refused, 3 accepted with a different
state, 4 anything else (crash, signal, timeout); 2 usage.

``python -m xenstream.conformance.xenstored dump ...``: see :mod:`.dumps`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..execute import ACCEPT, REJECT, Limits


def restore_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m xenstream.conformance.xenstored restore")
    ap.add_argument("--impl", required=True, help="the daemon (a command line; shell words)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("file", type=Path)
    args = ap.parse_args(argv)
    from ..native import Unavailable
    from . import state
    from .runner import XenstoredProgram, applicable

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"restore: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not applicable("xenstore", data):
        print("restore: the stream has no GLOBAL_DATA: not a live-update stream", file=sys.stderr)
        return 2
    try:
        prog = XenstoredProgram(shlex.split(args.impl), Limits(timeout=args.timeout, memory_mb=0))
        prog.shim()
    except Unavailable as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 2
    out = prog.restore(data)
    print(f"verdict: {out.observed.label}")
    if out.observed.stderr:
        print("stderr:\n  " + "\n  ".join(out.observed.stderr.splitlines()[-40:]))
    for line in state.render(out.diffs, limit=1000):
        print("state: " + line)
    if out.observed.verdict == ACCEPT:
        return 3 if out.diffs else 0
    return 1 if out.observed.verdict == REJECT else 4


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["restore"]:
        return restore_main(argv[1:])
    if argv[:1] == ["dump"]:
        from .dumps import main as dump_main

        return dump_main(argv[1:])
    print(__doc__.strip().split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`
        sys.stderr.close()
        sys.exit(0)

#!/usr/bin/env python3
"""A batch testee wrapping the reference verifier (docs/batch-protocol.md).

    xenstream_testee.py [--role strict|restore] --batch
        one JSON request a line on stdin, one JSON answer a line on stdout
    xenstream_testee.py [--role strict|restore] -f FORMAT [OPTIONS] -i FILE|FD
        one stream, verify-stream-v2's convention (exit 0 accept, 1 reject, 2 error):
        what the conformance suite runs for its per-process sample

Run it from the conformance suite with

    python -m pytest conformance --impl-protocol=batch --impl=examples/batch/xenstream_testee.py

Everything the protocol asks of a testee is in ``serve()``: read a line,
answer it on one line, flush, and leave stdout to the answers (diagnostics
go to stderr).  The verifying is ``verify()``, which a real implementation
replaces with its own reader.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import xenstream  # noqa: F401 - installed, or on PYTHONPATH
except ImportError:   # run from a checkout: its root holds the xenstream package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def verify(fmt: str, path: str, options: dict, role: str) -> tuple[str, str]:
    """(verdict, message) for the stream in ``path``."""
    from xenstream.reference.checker import Checker
    from xenstream.reference.formats import FORMAT_MODULES, get_codec, validate
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    if fmt not in FORMAT_MODULES:
        return "unsupported", f"no reader for format {fmt!r}"
    unknown = sorted(set(options) - set(get_codec(fmt).options))
    if unknown:
        return "unsupported", f"format {fmt} takes no option {', '.join(unknown)}"
    checker = Checker(Role(role))
    with open(path, "rb", buffering=0) as raw:
        validate(Source(raw), fmt, checker, **options)
    first = checker.first_refused()
    return ("accept", "") if first is None else ("reject", first.describe())


def serve(role: str) -> int:
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            verdict, message = verify(request["format"], request["path"],
                                      request.get("options") or {}, role)
        except MemoryError:
            verdict, message = "error", "MemoryError"
        except Exception as exc:  # a bug of ours: say so, and go on with the next request
            verdict, message = "error", f"internal error: {type(exc).__name__}: {exc}"
        answer = {"id": request["id"], "verdict": verdict}
        if message:
            answer["message"] = message
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    role = "strict"
    if "--role" in argv:
        i = argv.index("--role")
        role = argv[i + 1]
        del argv[i:i + 2]
    if argv == ["--batch"]:
        return serve(role)
    # one stream per process: the reference's own command line does the rest
    from xenstream.cli import main as xenstream_main

    return xenstream_main(["verify", "--role", role, "-q", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

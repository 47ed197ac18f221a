"""``python -m xenstream.fuzz.minimize TARGET FILE``: shrink a fuzz finding, write FILE.min.

The reducer (:mod:`xenstream.corpus.reduce`: whole records first, then
octets) keeps a candidate while TARGET's one-input function still fails the
same way: the same exception type raised from the same place (crash), or
still over the time limit (``timeout-`` files, ``--seconds``).  For the
structure-aware ``mutate_*`` targets the input is a recipe, not a stream:
the stream it builds is written alongside as FILE.stream (then minimised as
a ``decode_*`` finding), since that is what belongs in the corpus.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from pathlib import Path


class _Slow(Exception):
    pass


def failure(one, data: bytes, seconds: float | None = None):
    """(exception type name, file, line) of how ``one(data)`` fails, or None."""
    if seconds is not None:
        def alarm(signum, frame):
            raise _Slow()
        old = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        one(data)
    except _Slow:
        return ("timeout", "", 0)
    except Exception as exc:  # noqa: BLE001
        tb = traceback.extract_tb(exc.__traceback__)
        last = tb[-1] if tb else None
        return (type(exc).__name__, last.filename if last else "", last.lineno if last else 0)
    finally:
        if seconds is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return None


def minimise(target: str, data: bytes, *, seconds: float = 120.0, slow: float | None = None) -> bytes:
    from xenstream.corpus.reduce import reduce
    from xenstream.fuzz.harness import load_target, seed_formats

    one = load_target(target)
    fmt = seed_formats(target)[0]
    want = failure(one, data, slow)
    if want is None:
        raise SystemExit(f"{target}: the input does not fail (any more)")

    def keep(candidate: bytes) -> bool:
        return failure(one, candidate, slow) == want

    items = not target.startswith("mutate_")
    return reduce(data, keep, fmt=fmt, items=items, octets=True, seconds=seconds, max_tests=20000)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xenstream.fuzz.minimize")
    p.add_argument("target")
    p.add_argument("file", type=Path)
    p.add_argument("--seconds", type=float, default=120.0, help="reducer time budget")
    args = p.parse_args(argv)
    data = args.file.read_bytes()
    slow = 5.0 if args.file.name.split("-", 1)[-1].startswith("timeout") or "-timeout-" in args.file.name \
        else None
    start = time.monotonic()
    small = minimise(args.target, data, seconds=args.seconds, slow=slow)
    out = Path(str(args.file) + ".min")
    out.write_bytes(small)
    if args.target.startswith("mutate_"):
        from xenstream.fuzz.harness import Chooser, mutate, seed_formats, seeds

        fmt = seed_formats(args.target)[0]
        ch = Chooser(small)
        pool = seeds(fmt)
        Path(str(args.file) + ".stream").write_bytes(mutate(fmt, pool[ch.int(len(pool))], ch))
    print(f"{args.file.name}: {len(data)} -> {len(small)} octets in {time.monotonic() - start:.1f}s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

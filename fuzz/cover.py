"""``python -m xenstream.fuzz.cover TARGET DIR...``: coverage.py line coverage of reference/
reached by running TARGET's one-input function on every file in DIRs.

Coverage starts before the reference is imported, so module-level lines count.
Exceptions are caught (a finding is the fuzzer's business, not this report's).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xenstream.fuzz.cover")
    p.add_argument("target")
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--data-file", default=".coverage.fuzz")
    args = p.parse_args(argv)
    import coverage

    spec = importlib.util.find_spec("xenstream.reference")
    source = list(spec.submodule_search_locations)[0]
    cov = coverage.Coverage(data_file=args.data_file, branch=True, source=[source])
    cov.start()
    try:
        from xenstream.fuzz.harness import load_target

        one = load_target(args.target)
        files = 0
        for d in args.dirs:
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                if not f.is_file():
                    continue
                files += 1
                try:
                    one(f.read_bytes())
                except Exception:  # noqa: BLE001
                    pass
    finally:
        cov.stop()
        cov.save()
    with open(os.devnull, "w") as devnull:
        percent = cov.report(file=devnull)
    print(f"{args.target}: {files} inputs; line coverage of reference/: {percent:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

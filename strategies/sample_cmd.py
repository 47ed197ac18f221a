"""``xenstream sample``: write example streams from the strategies.

Each example is a file ``NNNN-<rule or valid>.bin`` with a JSON sidecar
``NNNN-<rule or valid>.json`` (format, verdict, rule, description, family).
The builders run under ``random.Random(seed)``, so the same seed gives the
same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from xenstream.reference.errors import UsageError

from . import FAMILIES, FORMATS, generate_malformed, generate_valid, variants


def add_arguments(parser) -> None:
    parser.add_argument("format", choices=FORMATS)
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--valid", action="store_true", help="valid streams")
    kind.add_argument("--malformed", action="store_true", help="streams that break one rule each")
    parser.add_argument("--family", choices=FAMILIES, help="the malformed family (default: any)")
    parser.add_argument("--profile", help="with --valid: streams as one of Xen's writers shapes them "
                                          "(xen-4.17-hvm, xen-4.6-pv-remus, any, c-xenstored, "
                                          "convert-legacy-stream; docs/profiles.md)")
    parser.add_argument("--variant", help="with --valid: valid streams narrowed to what one reader "
                                          "restores (xenstore: c-restorable, what C xenstored 4.17 "
                                          "and 4.20 restore)")
    parser.add_argument("-n", type=int, default=10, help="number of examples (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="directory to write into (created)")


def run(args) -> int:
    if args.family and not args.malformed:
        raise UsageError("--family goes with --malformed")
    if args.profile and not args.valid:
        raise UsageError("--profile goes with --valid")
    if args.variant and not args.valid:
        raise UsageError("--variant goes with --valid")
    if args.variant and args.profile:
        raise UsageError("--variant and --profile do not go together")
    if args.variant and args.variant not in variants(args.format):
        raise UsageError(f"format {args.format!r} has no valid variant {args.variant!r}; known: "
                         f"{', '.join(variants(args.format)) or 'none'}")
    if args.n < 0:
        raise UsageError("-n must not be negative")
    from xenstream.reference.outfile import write_atomic

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(args.seed)
    for i in range(args.n):
        if args.valid:
            opts = {"profile": args.profile} if args.profile else {}
            if args.variant:
                opts["variant"] = args.variant
            ex = generate_valid(args.format, rnd, **opts)
        else:
            ex = generate_malformed(args.format, rnd, args.family)
        stem = f"{i:04d}-{ex.rule or 'valid'}"
        write_atomic(out / f"{stem}.bin", ex.data, fsync=False)
        meta = {"format": ex.format, "verdict": ex.expected, "rule": ex.rule,
                "description": ex.description, "family": ex.family, "seed": args.seed, "index": i}
        write_atomic(out / f"{stem}.json", json.dumps(meta, indent=2) + "\n", fsync=False)
    print(f"wrote {args.n} {args.format} example(s) to {out}")
    return 0

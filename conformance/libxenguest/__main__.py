"""``python -m xenstream.conformance.libxenguest [--release DIR] [--delivery MODE] [-v] [--guest hvm|pv] FILE``

Restores FILE with libxenguest's xc_domain_restore under the fake hypervisor,
given to the driver as the conformance runner gave it (``--delivery``: file,
stdin, pipe, fd or socket; see :mod:`..delivery`),
shows the library's own messages (``-v``: at debug level, with the fake
hypervisor's trace of every hypercall), then the verdict and, after a
successful restore, the differences between the restored domain and the
stream.  Exit status: 0 accepted with a matching domain, 1 refused, 3 wrong
state, 4 the library died (signal, assertion) or hung, 2 usage or build error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..delivery import FILE, MODES
from ..execute import Limits, run_process
from .testee import ACCEPT, WRONG_STATE, Libxenguest, describe_failure, feed, guest_of, stream_words


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xenstream.conformance.libxenguest",
                                description=__doc__.split("\n\n")[1])
    p.add_argument("--release", default=None,
                   help="release directory from scripts/fetch-xen-tools (default: 4.17 in "
                        "$XEN_TOOLS_DIR or .cache/xen-tools)")
    p.add_argument("--guest", choices=("hvm", "pv"), default=None,
                   help="guest type of the fake domain (default: from the stream's domain header)")
    p.add_argument("--delivery", choices=MODES, default=FILE,
                   help="how the driver gets the stream (default: its path)")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("file")
    args = p.parse_args(argv)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    impl = Libxenguest(args.release, Limits(args.timeout, 0, 1 << 24))
    if impl.built is None:
        print(f"error: {impl.problem}", file=sys.stderr)
        return 2
    try:
        state = impl.state_dir / "state"
        env = impl.env(args.guest or guest_of(data))
        if args.verbose:
            env["XENSTREAM_FAKEXEN_TRACE"] = "1"
        path = Path(args.file).absolute()
        argv_ = impl.argv(stream_words(args.delivery, path), data, state, args.verbose)
        obs = run_process(argv_, impl.limits, mode=args.delivery, env=env,
                          feed=feed(args.delivery, data, path))
        sys.stderr.write(obs.stderr + ("\n" if obs.stderr else ""))
        if obs.verdict == ACCEPT:
            diff = impl.state_diff(data, state)
            if diff:
                print(f"{WRONG_STATE}: the restored domain differs from the stream:")
                for line in diff:
                    print(f"  {line}")
                return 3
            print("accept: restored, and the domain matches the stream")
            return 0
        verdict, detail = describe_failure(obs.verdict, obs.stderr, obs.exit_code)
        print(f"{verdict}: {detail or obs.detail}")
        return 1 if verdict == "reject" else 4
    finally:
        impl.close()


if __name__ == "__main__":
    sys.exit(main())

"""Real live-update dumps: xenstored as a writer, and round trips between versions.

A :class:`Plan` is a store drawn from a seed: guest domains (introduced, one
as the target of a device model), their usual nodes with owner and reader
permissions, extra nodes with binary values and up to three permissions,
watches of the toolstack's connection, a quota, and an open transaction.
:func:`round_trip` starts the writer daemon afresh under the fake
hypervisor, builds the plan over the wire, reads the store back, triggers a
live update (``XS_CONTROL live-update -f WRAPPER`` then ``-s -F -t 0``: a
forced update, since a transaction is open) into the reader daemon (the
writer itself, or another version) through a wrapper that keeps the real
``state_dump``, reads the store again over the same connection (the new
daemon inherits it) and lists what changed.

``python -m xenstream.conformance.xenstored dump --writer PATH [--reader PATH]
--out DIR [--seeds 1,2,3]`` writes ``DIR/<name>.bin`` (the dump) and
``DIR/<name>.json`` (the plan, the store before and after, the differences,
the reference's verdict); ``--corpus DIR --origin xenstored-4.17`` also adds
each dump to a corpus with that origin and the store it was made from.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..execute import ACCEPT, Limits
from ..native import Unavailable
from . import state, wire
from .daemon import Daemon, build_shim

#: a quota value no default has, to see whether it survives the update
QUOTA_NODES = 4321
PROBE = b"xenstream-round-trip-probe"


@dataclass
class Plan:
    """A store to build, as JSON-able values (bytes as latin-1 text)."""

    seed: int
    nodes: list[tuple[str, str, list[str]]] = field(default_factory=list)  # path, value, perms
    domains: list[tuple[int, int, int]] = field(default_factory=list)     # domid, gfn, evtchn
    target: tuple[int, int] | None = None                                 # (device model, guest)
    watches: list[tuple[str, str]] = field(default_factory=list)          # path, token
    quota: dict[str, int] = field(default_factory=dict)
    transaction: list[tuple[str, str]] = field(default_factory=list)      # writes left open

    def to_json(self) -> dict:
        return asdict(self)


def _b(text: str) -> bytes:
    return text.encode("latin-1")


def draw_plan(seed: int) -> Plan:
    rnd = random.Random(seed)
    plan = Plan(seed)
    guests = sorted(rnd.sample(range(1, 60), rnd.randint(1, 3)))
    for domid in guests:
        plan.domains.append((domid, rnd.randint(0x1000, 0xFFFFF), rnd.randint(1, 1000)))
        base = f"/local/domain/{domid}"
        mine, shared = [f"n{domid}"], [f"n{domid}", "r0"]
        plan.nodes += [(base, "", [f"n0", f"r{domid}"]), (f"{base}/name", f"guest{domid}", mine),
                       (f"{base}/domid", str(domid), mine),
                       (f"{base}/device/vif/0/state", "4", shared),
                       (f"{base}/device/vif/0/mac", f"00:16:3e:00:00:{domid:02x}", shared),
                       (f"{base}/control/shutdown", "", mine)]
    letters = "rwbn"
    for i in range(rnd.randint(3, 12)):
        where = rnd.choice(["/tool", "/local/domain/0", f"/local/domain/{guests[0]}/data"])
        value = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 24))).decode("latin-1")
        owner = rnd.choice([0, *guests])
        perms = [f"n{owner}"] + [f"{rnd.choice(letters)}{rnd.choice([0, *guests])}"
                                 for _ in range(rnd.randint(0, 2))]
        plan.nodes.append((f"{where}/n{i}", value, perms))
    if len(guests) >= 1:
        plan.domains.append((100, 0x2000, 99))
        plan.target = (100, guests[0])
    plan.watches = [("/local/domain", "domains"), (f"/local/domain/{guests[-1]}/control", "ctl"),
                    ("@releaseDomain", "release")]
    plan.quota = {"nodes": QUOTA_NODES}
    plan.transaction = [(f"/local/domain/{guests[0]}/name", "renamed-in-transaction"),
                        (f"/local/domain/{guests[0]}/data/uncommitted", "pending")]
    return plan


def build(client: wire.Client, plan: Plan) -> None:
    for domid, gfn, evtchn in plan.domains:
        client.introduce(domid, gfn, evtchn)
    if plan.target:
        client.set_target(*plan.target)
    for path, value, perms in plan.nodes:
        client.write(path, _b(value))
        client.set_perms(path, perms)
    for path, token in plan.watches:
        client.watch(path, token)
    for name, value in plan.quota.items():
        client.control("quota", "set", name, str(value))
    if plan.transaction:
        tx = client.transaction_start()
        for path, value in plan.transaction:
            client.write(path, _b(value), tx)
    client.events.clear()


def quota_values(client: wire.Client, names) -> dict[str, str]:
    """The global quota ``names`` as ``XS_CONTROL quota`` lists them (``name : value text``)."""
    try:
        text = client.control("quota").rstrip(b"\0").decode("latin-1")
    except wire.XsError as exc:
        return {n: f"(quota: {exc.errno})" for n in names}
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key.strip() in names:
            out[key.strip()] = rest.split()[0] if rest.split() else ""
    return out


@dataclass
class Snapshot:
    nodes: dict[bytes, state.Node]
    introduced: dict[int, bool]
    quota: dict[str, str]


def snapshot(client: wire.Client, plan: Plan) -> Snapshot:
    nodes = state.read_store(client)
    introduced = {d: client.is_domain_introduced(d) for d, _, _ in plan.domains}
    return Snapshot(nodes, introduced, quota_values(client, list(plan.quota)))


def differences(before: Snapshot, after: Snapshot, client: wire.Client, plan: Plan) -> list[state.Difference]:
    exp = state.Expected(nodes=dict(before.nodes), has_root=True)
    diffs = state.compare(exp, after.nodes)
    for domid, was in before.introduced.items():
        if after.introduced.get(domid) != was:
            diffs.append(state.Difference(f"domain {domid}", "introduced", str(was),
                                          str(after.introduced.get(domid))))
    for name, value in before.quota.items():
        if after.quota.get(name) != value:
            diffs.append(state.Difference(f"quota {name}", "quota", value,
                                          str(after.quota.get(name))))
    # the toolstack's watches: a write under each absolute path must still fire
    for path, token in plan.watches:
        if not path.startswith("/"):
            continue
        probe = _b(path.rstrip("/")) + b"/" + PROBE
        client.events.clear()
        client.write(probe, b"")
        got = [e for e in client.events if e[1] == _b(token)]
        if not got:
            ev = client.wait_event(0.3)
            got = [ev] if ev and ev[1] == _b(token) else []
        if not got:
            diffs.append(state.Difference(f"watch {path} token {token}", "watch",
                                          f"an event for {probe.decode()}", "no event"))
        client.rm(probe)
    return diffs


@dataclass
class RoundTrip:
    dump: bytes
    before: Snapshot
    after: Snapshot | None
    diffs: list[state.Difference]
    problem: str = ""   # why the reader did not come up


def round_trip(writer: list[str], reader: list[str], plan: Plan, *, shim: Path | None = None,
               limits: Limits = Limits(timeout=10, memory_mb=0)) -> RoundTrip:
    shim = shim or build_shim()
    with Daemon(writer, shim, limits) as d, tempfile.TemporaryDirectory() as tmp:
        obs = d.start_fresh()
        if obs.verdict != ACCEPT:
            raise RuntimeError(f"the writer did not start: {obs.label}: {obs.stderr[-300:]}")
        build(d.client, plan)
        before = snapshot(d.client, plan)
        capture = Path(tmp) / "state_dump"
        try:
            dump = d.live_update(reader, capture)
        except wire.WireError as exc:
            dump = capture.read_bytes() if capture.exists() else b""
            alive = d.alive()
            err = d.stderr()[-400:]
            return RoundTrip(dump, before, None, [], f"the live update failed ({exc}); "
                             f"daemon {'running' if alive else 'ended'}; stderr: {err}")
        after = snapshot(d.client, plan)
        return RoundTrip(dump, before, after, differences(before, after, d.client, plan))


def reference_verdict(dump: bytes) -> dict:
    from xenstream.corpus.verdict import classify

    v = classify("xenstore", dump, {})
    return {"expected": v.expected, "rule": v.rule, "offset": v.offset}


def release_of(command: list[str]) -> str:
    """The Debian version of the xen-utils package beside a fetched daemon wrapper, or ''."""
    for word in command:
        debs = Path(word).parent / "debs"
        if debs.is_dir():
            for deb in debs.glob("xen-utils-4.*_*.deb"):
                return deb.name.split("_")[1]
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xenstream.conformance.xenstored dump",
                                 description="real live-update dumps and round trips")
    ap.add_argument("--writer", required=True, help="the daemon that writes the dump (shell words)")
    ap.add_argument("--reader", help="the daemon that restores it (default: the writer)")
    ap.add_argument("--seeds", default="1", help="comma-separated plan seeds (default 1)")
    ap.add_argument("--out", type=Path, required=True, help="folder for NAME.bin and NAME.json")
    ap.add_argument("--name", default="dump", help="file name prefix (default dump)")
    ap.add_argument("--corpus", type=Path, help="also add each dump to this corpus folder")
    ap.add_argument("--origin", help="the corpus origin (xenstored-4.17, xenstored-4.20)")
    args = ap.parse_args(argv)
    writer = shlex.split(args.writer)
    reader = shlex.split(args.reader) if args.reader else writer
    try:
        shim = build_shim()
    except Unavailable as exc:
        print(f"dump: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        plan = draw_plan(seed)
        rt = round_trip(writer, reader, plan, shim=shim)
        name = f"{args.name}-{seed}"
        verdict = reference_verdict(rt.dump) if rt.dump else None
        report = {"writer": args.writer, "writer_release": release_of(writer), "reader": args.reader
                  or args.writer, "plan": plan.to_json(), "reference": verdict,
                  "problem": rt.problem, "differences": [d.to_json() for d in rt.diffs]}
        (args.out / f"{name}.bin").write_bytes(rt.dump)
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"{name}: {len(rt.dump)} octets; reference: {verdict}; "
              f"{'PROBLEM: ' + rt.problem if rt.problem else f'{len(rt.diffs)} differences'}")
        for line in state.render(rt.diffs):
            print("  " + line)
        if rt.problem or rt.diffs:
            status = 1
        if args.corpus and rt.dump:
            from xenstream.corpus.add import add

            origin = args.origin or "xenstored"
            rel = release_of(writer)
            add(args.corpus, args.out / f"{name}.bin", "xenstore",
                f"live-update dump written by {origin.replace('-', ' ')}"
                + (f" (Debian {rel})" if rel else "") + f" from the store of plan seed {seed}",
                name=f"{origin}-seed{seed}", origin=origin,
                meta={"store": plan.to_json(), "writer_release": rel})
    return status


__all__ = ["Plan", "RoundTrip", "draw_plan", "build", "round_trip", "main"]

"""Judging a xenstored on one case (``--impl-kind xenstored``).

A case is the stream given to ``PATH -N -U`` as its ``state_dump``
(:mod:`.daemon`).  Its verdict, as for every testee:

``accept``   the daemon entered its main loop and answers on its socket;
``reject``   it exited with status 1, refusing the stream (``barf()``);
``signal``, ``crash``, ``timeout``, ``not-executable``   as for other programs
             (``crash`` includes exit status 0: a daemon must serve).

After an accepted restore the store it holds is compared with the one the
stream describes (:mod:`.state`): every committed node with its value and
permissions, the introduced domains, and each socket connection's watches
(we hold the other end of the connection: a write under the watched path
must bring the watch event).  A difference fails the case as
``wrong-state``, with the differences in the failure message and in
``results.json`` (``state_diff``).

Which cases apply: C xenstored reads a stream only when it restarts for a
live update (``-U``), and takes its listening socket from GLOBAL_DATA,
which the spec calls "only relevant for live update".  A stream without
GLOBAL_DATA is a migration stream, which such a daemon has no way to read:
those cases are not applicable (:func:`applicable`), skipped and counted
once per run.  A Hypothesis draw without GLOBAL_DATA passes as not
applicable.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..cases import citation
from ..execute import ACCEPT, FILE, Implementation, Limits, Observed
from ..judge import FAIL, PASS, WRONG_STATE, Judgement, failure_message, judge
from ..runner import CaseRun, Runner
from xenstream.reference.errors import StreamError

from ..native import Unavailable
from . import state, wire
from .daemon import Daemon, build_shim, stream_fds

#: How long a socket connection's watch has to fire after the probe write.
WATCH_WAIT = 0.3
PROBE = b"xenstream-watch-probe"


def applicable(fmt: str, data: bytes) -> bool:
    """A live-update stream: xenstore, with a GLOBAL_DATA record."""
    return fmt == "xenstore" and stream_fds(data).has_global


NOT_APPLICABLE = ("a stream without GLOBAL_DATA is a migration stream; a xenstored reads a "
                  "stream only when it restarts for a live update (-U), and takes its listening "
                  "socket from GLOBAL_DATA")


@dataclass
class Outcome:
    observed: Observed
    diffs: list[state.Difference]
    note: str = ""


class XenstoredProgram(Implementation):
    """A xenstored: a path (the daemon, or a script that execs one), or an argv prefix."""

    needs_file = False
    modes = (FILE,)

    def __init__(self, command: list[str], limits: Limits = Limits(), shim: Path | None = None):
        self.command = list(command)
        self.limits = limits
        self.name = os.path.basename(self.command[0]) if self.command else "?"
        if len(self.command) > 1:
            self.name = f"{os.path.basename(self.command[-1])} ({os.path.basename(self.command[0])})"
        self._shim = shim
        self._shim_problem: str | None = None

    def describe(self) -> str:
        return shlex.join(self.command)

    def shim(self) -> Path:
        if self._shim is None:
            self._shim = build_shim()
        return self._shim

    def unavailable(self) -> str | None:
        """One line saying why no case can run here, or None."""
        if self._shim_problem is None and self._shim is None:
            try:
                self.shim()
            except Unavailable as exc:
                self._shim_problem = str(exc)
        return self._shim_problem

    def restore(self, data: bytes) -> Outcome:
        """Restore ``data`` and check the restored store."""
        with Daemon(self.command, self.shim(), self.limits) as d:
            obs = d.restore(data)
            if obs.verdict != ACCEPT or d.client is None:
                return Outcome(obs, [], obs.detail)
            try:
                decoded = _decode(data)
            except StreamError:  # the reference refuses it: the verdict says it all
                return Outcome(obs, [])
            try:
                diffs = check_state(d, decoded)
            except (wire.WireError, state.WalkError, OSError) as exc:
                if not d.alive():
                    return Outcome(d._exited(), [])
                return Outcome(Observed("crash", f"broke the wire protocol while its store was "
                                        f"read: {exc}", None, d.stderr(), obs.duration, FILE,
                                        obs.argv), [])
            if not d.alive():  # it died while answering
                return Outcome(d._exited(), [])
            return Outcome(obs, diffs)

    def verify(self, fmt: str, data: bytes, path, mode: str, options: dict | None = None) -> Observed:
        return self.restore(data).observed

    def replay(self, fmt: str, path: Path, mode: str, options: dict | None = None) -> str:
        return shlex.join([sys.executable, "-m", "xenstream.conformance.xenstored", "restore",
                           "--impl", self.describe(), str(path)])


def _decode(data: bytes):
    from xenstream.reference.xenstore import decode
    from xenstream.reference.rules import Role

    return decode(data, role=Role.RESTORE)


def check_state(d: Daemon, stream) -> list[state.Difference]:
    exp = state.expected(stream)
    restored = state.read_store(d.client)
    diffs = state.compare(exp, restored)
    diffs += state.check_domains(d.client, exp)
    diffs += state.check_special(d.client, exp)
    diffs += check_watches(d, exp)
    return diffs


def check_watches(d: Daemon, exp: state.Expected) -> list[state.Difference]:
    """Each watch of a socket connection we hold the other end of must fire on a
    write under its path (absolute paths only).  Runs last: it writes."""
    probes = []
    for fd, watches in sorted(exp.watches.items()):
        peer = d.peers.get(fd)
        if peer is None:
            continue
        for wpath, token in watches:
            if wpath[:1] != b"/" or b"\0" in wpath:
                continue
            probe = wpath.rstrip(b"/") + b"/" + PROBE
            try:
                d.client.write(probe, b"")
            except wire.XsError:
                continue  # a path the daemon does not take: nothing to observe
            probes.append((fd, wpath, token, probe))
    if not probes:
        return []
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + WATCH_WAIT
    for fd in {p[0] for p in probes}:
        peer = d.peers[fd]
        peer.setblocking(False)
        buf = b""
        while time.monotonic() < deadline:
            try:
                chunk = peer.recv(65536)
            except BlockingIOError:
                time.sleep(0.01)
                if all(p[3] + b"\0" + p[2] + b"\0" in buf for p in probes if p[0] == fd):
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        seen[fd] = buf
    out = []
    for fd, wpath, token, probe in probes:
        if probe + b"\0" + token + b"\0" not in seen.get(fd, b""):
            out.append(state.Difference(
                f"watch {state.show(wpath)} token {state.show(token)}", "watch",
                f"an event for {state.show(probe)} on the connection at fd {fd}",
                f"no event within {WATCH_WAIT:g} s"))
    return out


class XenstoredRunner(Runner):
    """Runs xenstore cases on a :class:`XenstoredProgram` and checks the restored store."""

    def run_stream(self, case_id: str, fmt: str, data: bytes, *, expected: str,
                   rule: str | None, description: str = "", modes: Sequence[str] | None = None,
                   save: bool = True, options: dict | None = None) -> CaseRun:
        if not applicable(fmt, data):
            j = Judgement(PASS, "", None, "not applicable (no GLOBAL_DATA)")
            return CaseRun(case_id, j, [], 0.0)
        outcome = self.impl.restore(data)
        obs = outcome.observed
        verdict = judge(expected, self.role, [obs])
        if verdict.status != FAIL and obs.verdict == ACCEPT and outcome.diffs:
            verdict = Judgement(FAIL, WRONG_STATE, verdict.required, verdict.observed,
                                f"restored a store that differs from the stream "
                                f"({len(outcome.diffs)} difference"
                                f"{'s' if len(outcome.diffs) != 1 else ''})")
        run = CaseRun(case_id, verdict, [obs], obs.duration)
        run.diff = [d.to_json() for d in outcome.diffs]
        run.known = self.known.match(case_id)
        if run.known is not None:
            run.known_reason = self.known.entries[run.known]
        if verdict.status == FAIL and save:
            self.explain(run, fmt, data, expected=expected, rule=rule, description=description,
                         diffs=outcome.diffs)
        return run

    def explain(self, run: CaseRun, fmt: str, data: bytes, *, expected: str, rule: str | None,
                description: str = "", options: dict | None = None, diffs=None) -> None:
        run.saved = self.save(run.case_id, data)
        if diffs is None:
            diffs = [state.Difference(**d) for d in run.diff or []]
        extra = ""
        if diffs:
            extra = ("  state (path: what: expected, restored); the stream's own view: "
                     f"python3 -m xenstream dump -f xenstore -i {shlex.quote(str(run.saved))}\n"
                     + "\n".join("    " + line for line in state.render(diffs)))
        run.message = failure_message(
            case_id=run.case_id, citation=citation(rule), description=description,
            expected=expected, role=self.role, judgement=run.judgement,
            observations=run.observations, saved=str(run.saved),
            replay=self.impl.replay(fmt, run.saved, FILE), extra=extra)


__all__ = ["XenstoredProgram", "XenstoredRunner", "WRONG_STATE", "applicable", "NOT_APPLICABLE",
           "check_state"]

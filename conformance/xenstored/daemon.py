"""One xenstored for one case: a private run dir, the fake hypervisor, containment.

:class:`Daemon` starts the daemon under test (``PATH -N -U`` to restore a
live-update stream, ``PATH -N`` to start afresh) with

* ``XENSTORED_RUNDIR`` (and ``XENSTORED_PATH``) in a private run dir made for
  the case, holding ``state_dump`` (the stream) for a restore, or the files
  that stand for ``/proc/xen/xsd_port`` and ``/proc/xen/xsd_kva`` for a fresh
  start;
* ``LD_PRELOAD`` the Xen libraries it calls, faked (``fake_xenlibs.c``,
  compiled by :func:`build_shim`);
* the fds the stream names, as a live-update restart inherits them from its
  predecessor: a listening unix socket at GLOBAL_DATA's ``rw-socket-fd``
  (bound to an abstract name, so that no socket file exists), and one end of a
  socket pair at each socket CONNECTION_DATA's ``socket-fd`` (we keep the
  other end: the restored connection's client, to observe its watches);
  an eventfd at ``evtchn-fd`` (the event channel device the predecessor had
  open; the fake hypervisor takes it, or a fresh one when the number cannot
  be placed or holds something else: fds 0-2, a socket the stream names);
* a pipe on which the fake hypervisor says "ready" when the daemon enters its
  main loop.

Containment is every testee's (:mod:`..containment`): the daemon is started
by :func:`~..containment.spawn` and ended with its process group and
whatever it left behind when the case ends; it gets SIGKILL from the kernel
if the process that started it dies first (``PR_SET_PDEATHSIG``); the run
dir is removed when the case ends, and a restore's run dir as soon as the
daemon is ready (it has unlinked ``state_dump`` by then, and its socket has
no file).  Nothing survives a case, a run, or a SIGTERM to pytest (the
plugin turns SIGTERM into an interruption, so that the ``finally`` clauses
run).
"""

from __future__ import annotations

import os
import secrets
import select
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import containment, native
from ..execute import ACCEPT, CRASH, NOEXEC, TIMEOUT, Limits, Observed, classify, trim
from . import wire

#: fds a stream may name that we can place (0-2 are the daemon's stdio).
FD_FIRST, FD_LIMIT = 3, 1024
#: The environment variable that marks every process of a run (tests look for it).
RUN_TAG_VAR = "XENSTREAM_RUN_TAG"
READY_VAR = "XENSTREAM_FAKEXEN_READY_FD"
STATE_DUMP = "state_dump"


SHIM_SOURCE = Path(__file__).with_name("fake_xenlibs.c")
SHIM = "fake_xenlibs.so"
CFLAGS = ["-shared", "-fPIC", "-O2", "-Wall"]


def build_shim(dest: Path | None = None) -> Path:
    """The fake Xen libraries, compiled into the cache (:func:`..native.build`,
    or ``dest``) when they are not there yet; :class:`..native.Unavailable`
    says in one line why they cannot be."""
    cc = native.compiler("the xenstored testee's fake Xen libraries, fake_xenlibs.c,")
    folder = native.build("xenstored-shim", (SHIM_SOURCE,),
                          lambda out: [[cc, *CFLAGS, "-o", str(out / SHIM), str(SHIM_SOURCE)]],
                          (SHIM,), dest=dest)
    return folder / SHIM


def run_base() -> Path:
    """Where run dirs are made: ``$XENSTREAM_RUN_BASE`` or the system's temporary folder."""
    return Path(os.environ.get("XENSTREAM_RUN_BASE") or tempfile.gettempdir())


@dataclass
class StreamFds:
    """The fds a (possibly malformed) stream names, read leniently by framing alone."""

    has_global: bool = False
    rw_socket_fd: int | None = None
    evtchn_fd: int | None = None
    socket_conns: list[int] = field(default_factory=list)


def stream_fds(data: bytes) -> StreamFds:
    """Walk the records by their headers (``len`` plus padding, as the spec
    frames them) up to END or the end of the data; never fails."""
    out = StreamFds()
    if len(data) < 16:
        return out
    flags = struct.unpack_from(">I", data, 12)[0]
    e = ">" if flags & 1 else "<"
    off = 16
    while off + 8 <= len(data):
        rtype, length = struct.unpack_from(e + "II", data, off)
        body = off + 8
        if rtype == 0:
            break
        if rtype == 1 and body + 8 <= len(data) and not out.has_global:
            out.has_global = True
            out.rw_socket_fd, out.evtchn_fd = struct.unpack_from(e + "ii", data, body)
        elif rtype == 2 and body + 16 <= len(data):
            ctype = struct.unpack_from(e + "H", data, body + 4)[0]
            if ctype == 1:
                out.socket_conns.append(struct.unpack_from(e + "i", data, body + 8)[0])
        off = body + length + (-length & 7)
    return out


def usable_fd(fd: int | None) -> bool:
    return fd is not None and FD_FIRST <= fd < FD_LIMIT


class Daemon:
    """A xenstored started for one case; use as a context manager."""

    def __init__(self, command: list[str], shim: Path, limits: Limits, *,
                 base: Path | None = None, env: dict | None = None):
        self.command = list(command)
        self.shim = Path(shim)
        self.limits = limits
        self.base = Path(base) if base is not None else run_base()
        self.extra_env = dict(env or {})
        self.rundir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._process: containment.CaseProcess | None = None
        self.client: wire.Client | None = None
        self.address: str | bytes | None = None
        self.peers: dict[int, socket.socket] = {}
        self.argv: list[str] = []
        self._output = None
        self._start = 0.0

    # -- lifetime --------------------------------------------------------------
    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for s in self.peers.values():
            s.close()
        self.peers.clear()
        if self._process is not None:
            self._process.end()
        if self._output is not None:
            self._output.close()
            self._output = None
        self.remove_rundir()

    def remove_rundir(self) -> None:
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        if self._output is None:
            return ""
        self._output.flush()
        self._output.seek(0)
        return trim(self._output.read(1 << 16))

    def _env(self, ready_fd: int) -> dict:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["XENSTORED_RUNDIR"] = str(self.rundir)
        env["XENSTORED_PATH"] = str(self.rundir / "socket")
        env["LD_PRELOAD"] = str(self.shim.absolute())
        env[READY_VAR] = str(ready_fd)
        env.setdefault(RUN_TAG_VAR, f"{os.getpid()}")
        return env

    def _make_rundir(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        self.rundir = Path(tempfile.mkdtemp(prefix="xenstored-", dir=self.base))
        return self.rundir

    @staticmethod
    def _fake_dom0(rundir: Path) -> None:
        """What stands for /proc/xen/xsd_port and xsd_kva: dom0's event channel
        (port 1) and its ring page (xenstored maps it again when it restores
        dom0's connection)."""
        (rundir / "xsd_port").write_text("1\n")
        (rundir / "xsd_kva").write_bytes(bytes(4096))

    def _spawn(self, args: list[str], place: dict[int, int]) -> tuple[int, Observed | None]:
        """Start the daemon; returns the read end of the ready pipe, or an Observed
        when it could not be started."""
        r, w = os.pipe()
        ready_no = next(n for n in range(FD_LIMIT - 1, FD_FIRST, -1) if n not in place)
        place = {**place, ready_no: w}
        self.argv = [*self.command, *args]
        self._output = tempfile.TemporaryFile()
        self._start = time.monotonic()
        try:
            self._process = containment.spawn(
                self.argv, memory_mb=self.limits.memory_mb, file_limit=self.limits.file_limit,
                place=place, stdout=self._output, stderr=self._output, env=self._env(ready_no))
            self.proc = self._process.proc
        except OSError as exc:
            os.close(r)
            return -1, Observed(NOEXEC, f"{exc.strerror or exc}: {self.argv[0]}", None, "",
                                time.monotonic() - self._start, argv=tuple(self.argv))
        finally:
            os.close(w)
        return r, None

    def _observed(self, verdict: str, detail: str = "") -> Observed:
        rc = self.proc.returncode if self.proc is not None else None
        return Observed(verdict, detail, rc, self.stderr(), time.monotonic() - self._start,
                        argv=tuple(self.argv))

    def _exited(self) -> Observed:
        """The verdict of a daemon that ended on its own."""
        self.proc.wait()
        err = self.stderr().encode()
        verdict, detail = classify(self.proc.returncode, err)
        if verdict == ACCEPT:  # exit 0: it stopped instead of serving
            verdict, detail = CRASH, "exit 0: the daemon ended instead of serving"
        return self._observed(verdict, detail)

    def _wait_ready(self, r: int) -> Observed | None:
        """None once the daemon said ready; else why it did not."""
        deadline = self._start + self.limits.timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._observed(TIMEOUT, f"not ready after {self.limits.timeout:g} s")
                ready, _, _ = select.select([r], [], [], min(left, 0.05))
                if ready:
                    if os.read(r, 1) == b"R":
                        return None
                    # the fd closed without a word: the daemon ended (or closed it)
                    try:
                        self.proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        return self._observed(TIMEOUT, "closed its ready fd but runs on without "
                                              "entering its main loop")
                    return self._exited()
                if self.proc.poll() is not None:
                    return self._exited()
        finally:
            os.close(r)

    def _answers(self) -> Observed:
        """ACCEPT when the daemon answers a request on its socket."""
        deadline = self._start + self.limits.timeout
        try:
            self.client = wire.Client.connect(self.address, max(0.1, deadline - time.monotonic()))
            self.client.directory("/")
        except wire.XsError:
            pass  # an error reply is an answer
        except (wire.WireError, OSError) as exc:
            if self.proc.poll() is not None:
                return self._exited()
            if isinstance(exc, wire.ProtocolError) and exc.closed:
                return self._observed(CRASH, "serves nothing: it closes a new connection "
                                      "without answering its first request")
            return self._observed(TIMEOUT, f"does not answer on its socket ({exc})")
        if self.client is not None:
            self.client.timeout = max(1.0, self.limits.timeout)
        return self._observed(ACCEPT)

    # -- a live-update restore ----------------------------------------------------------
    def restore(self, data: bytes) -> Observed:
        """Start ``PATH -N -U`` on ``data`` as its ``state_dump``."""
        rundir = self._make_rundir()
        self._fake_dom0(rundir)
        (rundir / STATE_DUMP).write_bytes(data)
        fds = stream_fds(data)
        place: dict[int, int] = {}
        ours: list[socket.socket] = []
        extra_fds: list[int] = []
        if fds.has_global and usable_fd(fds.rw_socket_fd):
            name = b"\0xenstream-xenstored-%d-%s" % (os.getpid(), secrets.token_hex(8).encode())
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(name)
            listener.listen(16)
            place[fds.rw_socket_fd] = listener.fileno()
            ours.append(listener)
            self.address = name
        for fd in fds.socket_conns:
            if usable_fd(fd) and fd not in place:
                child, peer = socket.socketpair()
                place[fd] = child.fileno()
                ours.append(child)
                self.peers[fd] = peer
        # the event channel device the predecessor had open (never signalled
        # here); after the sockets, so that an evtchn-fd that names a socket
        # connection's fd too leaves the socket there (the fake hypervisor
        # then opens a fresh event channel)
        if fds.has_global and usable_fd(fds.evtchn_fd) and fds.evtchn_fd not in place:
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            place[fds.evtchn_fd] = efd
            extra_fds.append(efd)
        try:
            r, failed = self._spawn(["-N", "-U"], place)
        finally:
            for s in ours:
                s.close()
            for fd in extra_fds:
                os.close(fd)
        if failed:
            return failed
        problem = self._wait_ready(r)
        if problem is not None:
            return problem
        self.remove_rundir()  # state_dump is gone, xsd_kva mapped: nothing to keep
        if self.address is None:
            why = ("the stream has no GLOBAL_DATA" if not fds.has_global else
                   f"GLOBAL_DATA's rw-socket-fd {fds.rw_socket_fd} cannot be given a socket")
            return self._observed(ACCEPT, f"serving; its store cannot be read: {why}")
        return self._answers()

    # -- a fresh daemon, and its live update -------------------------------------------
    def start_fresh(self) -> Observed:
        """Start ``PATH -N`` with dom0's event channel and ring page faked."""
        rundir = self._make_rundir()
        self._fake_dom0(rundir)
        r, failed = self._spawn(["-N"], {})
        if failed:
            return failed
        problem = self._wait_ready(r)
        if problem is not None:
            return problem
        self.address = str(rundir / "socket")
        return self._answers()

    def live_update(self, new_command: list[str], capture: Path, *, force: bool = True) -> bytes:
        """Make the running daemon dump its state and exec ``new_command`` (through a
        wrapper that copies ``state_dump`` to ``capture`` first); returns the dump.
        The connection survives the update (the new daemon inherits it)."""
        assert self.client is not None and self.rundir is not None
        capture = Path(capture).absolute()
        wrapper = self.rundir / "live-update-wrapper"
        tmp = f"{capture}.{os.getpid()}.tmp"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# written by xenstream: keep the dump, then start the new daemon on it\n"
            f'cp "$XENSTORED_RUNDIR/{STATE_DUMP}" {shlex.quote(tmp)} && '
            f"mv {shlex.quote(tmp)} {shlex.quote(str(capture))} || exit 1\n"
            f"exec {shlex.join(new_command)} \"$@\"\n")
        wrapper.chmod(0o755)
        reply = self.client.control("live-update", "-f", str(wrapper))
        if not reply.startswith(b"OK"):
            raise wire.WireError(f"live-update -f: {reply!r}")
        args = ["live-update", "-s", "-t", "0"] + (["-F"] if force else [])
        reply = self.client.control(*args)
        if not reply.startswith(b"OK"):
            raise wire.WireError(f"live-update -s: {reply.rstrip(bytes(1))!r}")
        return capture.read_bytes()


__all__ = ["Daemon", "StreamFds", "build_shim", "stream_fds", "run_base", "RUN_TAG_VAR"]

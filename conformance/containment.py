"""Every process an implementation starts ends with its case.

A testee runs in its own session (``start_new_session``), so that killing its
process group ends what it started in that group.  That is not enough: a
child may start a session of its own (``setsid``), or stay in the group with
its output closed after the testee exits.  So, on Linux, the runner's process
is made a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): whatever a
testee leaves behind, in any group or session, is re-parented to the runner
instead of to init, and :func:`end_orphans` finds it among the runner's own
children after the case, freezes (``SIGSTOP``) and kills (``SIGKILL``) it and
everything below it, and reaps it.  Without subreaper support (not Linux),
the testee's descendants are looked up in ``/proc`` before the testee is
killed, and what escapes that is not contained.

The testee itself gets ``PR_SET_PDEATHSIG(SIGKILL)`` so that it dies with the
runner even when the runner is killed with no chance to clean up (``kill
-9``); a SIGTERM or SIGINT to pytest is turned into ``KeyboardInterrupt``
(:func:`catch_termination`, installed by the plugin for every kind of
testee), which ends the running case through the same path.

Every kind starts its processes through :func:`spawn`: a program run to its
end on one stream (:func:`~.execute.run_process`) and a daemon that lives
for a whole case (:mod:`.xenstored.daemon`) alike.  :meth:`CaseProcess.end`
ends it, its group and whatever it left behind, with further signals held.
The processes running at any moment are registered, so that an exit path
that skips the normal ``finally`` (``atexit`` after a signal) can still end
them: :func:`end_all_live`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = None
_subreaper: bool | None = None
_lock = threading.Lock()
_live: dict[int, int] = {}   # pid -> pgid of processes running right now


def _prctl():
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl  # noqa: B018 - raises AttributeError where there is none
        except (OSError, AttributeError):
            _libc = False
    return _libc.prctl if _libc else None


def enable_subreaper() -> bool:
    """Make this process a child subreaper (once); True when it is one."""
    global _subreaper
    if _subreaper is None:
        prctl = _prctl()
        _subreaper = bool(prctl) and sys.platform.startswith("linux") and \
            prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


def pdeathsig_setup():
    """A function for the child (between fork and exec) that makes it die with
    the thread that started it; None where that cannot be done, or when the
    caller is not the main thread (the signal follows the creating thread)."""
    prctl = _prctl()
    if not prctl or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before prctl took effect
            os._exit(127)
    return setup


def die_with_parent(sig: int, interval: float = 0.5) -> None:
    """Send ``sig`` to this process when its parent is gone (an xdist worker
    whose controller died).  A watching thread, not PR_SET_PDEATHSIG: that one
    follows the parent *thread*, and xdist starts its workers from one that
    does not live as long as the controller."""
    parent = os.getppid()
    me = os.getpid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.kill(me, sig)
                return

    threading.Thread(target=watch, name="xenstream-parent-watch", daemon=True).start()


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rfind(b")") + 2:].split()
    return int(rest[1]), rest[0].decode()


def children(pid: int | None = None) -> set[int]:
    """The children of this process (all its threads), from /proc."""
    pid = os.getpid() if pid is None else pid
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    found = False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.update(int(x) for x in f.read().split())
            found = True
        except OSError:
            continue
    if not found:   # kernels without /proc/PID/task/TID/children
        out = {p for p, (ppid, _) in _table().items() if ppid == pid}
    return out


def _table() -> dict[int, tuple[int, str]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(roots: set[int]) -> set[int]:
    """Every process below ``roots`` (not the roots), from one /proc scan."""
    if not roots:
        return set()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in _table().items():
        kids.setdefault(ppid, []).append(pid)
    out: set[int] = set()
    todo = list(roots)
    while todo:
        for child in kids.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(pids: set[int]) -> None:
    """Freeze ``pids`` and all below them (so that none can fork any more),
    then kill them all."""
    frozen: set[int] = set()
    todo = set(pids)
    for _ in range(50):
        todo -= frozen
        if not todo:
            break
        _signal_all(todo, signal.SIGSTOP)
        frozen |= todo
        todo = descendants(frozen)
    _signal_all(frozen, signal.SIGKILL)


def end_orphans(baseline: set[int], *, limit: float = 5.0) -> int:
    """Kill and reap every child of this process not in ``baseline`` (what a
    testee left behind and the subreaper inherited), with all below them.
    Returns how many were found."""
    found = 0
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        new = children() - baseline
        if not new:
            break
        found += len(new)
        kill_tree(new)
        for pid in new:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                pass
    return found


def wait_childless(pids, limit: float) -> None:
    """Wait until none of ``pids`` has a process below it that is not a zombie
    (their running cases ended), or they are gone; at most ``limit`` s."""
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        table = _table()
        alive = {p for p in pids if p in table and table[p][1] != "Z"}
        below = {p for p in descendants(alive) if p in table and table[p][1] != "Z"}
        if not below:
            return
        time.sleep(0.05)


@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM wait while the block runs (the main thread's
    clean-up after a run must not be cut short by a second signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def register_live(pid: int) -> None:
    with _lock:
        _live[pid] = pid


def forget_live(pid: int) -> None:
    with _lock:
        _live.pop(pid, None)


def end_all_live() -> None:
    """Kill every registered process, its group and its descendants (an exit
    path that cannot run the case's own clean-up)."""
    with _lock:
        pids = set(_live)
        _live.clear()
    if not pids:
        return
    below = descendants(pids)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    kill_tree(pids | below)


def live() -> set[int]:
    with _lock:
        return set(_live)


# -- starting and ending a testee's process ------------------------------------


def child_setup(memory_mb: int = 0, file_limit: int = 0, place: dict[int, int] | None = None,
                pdeathsig: Callable[[], None] | None = None) -> Callable[[], None]:
    """What runs in the child between fork and exec: death with the runner
    (``pdeathsig``), no core files, ``RLIMIT_AS`` of ``memory_mb`` MiB and
    ``RLIMIT_FSIZE`` of ``file_limit`` octets (0: none), and the descriptors
    of ``place`` (child number -> ours) at their numbers, every other
    descriptor above 2 closed on exec."""
    limit = memory_mb << 20
    place = dict(place or {})

    def setup() -> None:
        if pdeathsig is not None:
            pdeathsig()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if file_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        if place:
            # first out of the way (a target may be another's source), then in place
            moved = {target: fcntl.fcntl(src, fcntl.F_DUPFD, 256) for target, src in place.items()}
            for target, tmp in moved.items():
                os.dup2(tmp, target)
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd > 2 and fd not in place:
                    try:
                        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
                    except OSError:
                        pass
    return setup


class CaseProcess:
    """A testee's process, contained from :func:`spawn` to :meth:`end`."""

    def __init__(self, proc: subprocess.Popen, baseline: set[int], subreaper: bool):
        self.proc = proc
        self.pid = proc.pid
        self._baseline = baseline
        self._subreaper = subreaper
        self._ended = False

    def end(self) -> None:
        """Kill it with its process group, reap it, close its pipes, then end
        and reap whatever it left behind (re-parented to this subreaper, or
        found below it first where there is none); further SIGINT and SIGTERM
        wait until this is done."""
        if self._ended:
            return
        proc = self.proc
        with signals_held():
            if not self._subreaper:   # best effort: what is still below it, before it goes
                kill_tree(descendants({proc.pid}))
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            proc.wait()
            forget_live(proc.pid)
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            if self._subreaper:
                # not another case's process that is still running
                end_orphans(self._baseline | live())
            self._ended = True


def spawn(argv: list[str], *, memory_mb: int = 0, file_limit: int = 0,
          place: dict[int, int] | None = None, stdin=subprocess.DEVNULL, stdout=None,
          stderr=None, cwd=None, env: dict | None = None) -> CaseProcess:
    """Start a testee's process contained: in its own session, dying with
    this thread (``PR_SET_PDEATHSIG``), with the limits and descriptors of
    :func:`child_setup`, registered until :meth:`CaseProcess.end`.  Raises
    what :class:`subprocess.Popen` raises when it cannot be started."""
    subreaper = enable_subreaper()
    baseline = children()
    proc = subprocess.Popen(
        argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
        preexec_fn=child_setup(memory_mb, file_limit, place, pdeathsig_setup()),
        start_new_session=True, close_fds=not place)
    register_live(proc.pid)
    return CaseProcess(proc, baseline, subreaper)


def remove_tree(path) -> None:
    """Remove a folder that a testee may have made unreadable or unwritable;
    never follows a symbolic link out of it."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path) or os.path.islink(path):
        return
    try:
        os.chmod(path, stat.S_IRWXU)
    except OSError:
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            if not os.path.islink(full):
                try:
                    os.chmod(full, stat.S_IRWXU)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


# -- the run itself: SIGTERM and SIGINT ---------------------------------------

_terminating: list[int] = []
_forward: list[Callable[[], bool]] = []
_watching: list[bool] = []


def _terminate(signum, frame):  # noqa: ARG001 - a signal handler's signature
    """SIGTERM or SIGINT: end the run through KeyboardInterrupt (the clean-up
    of a running case holds further signals until it is done).  A process
    whose children are pytest-xdist workers (``forward()`` says so) first has
    them end their running cases the same way and waits for them (up to
    10 s; not on a second signal), so that nothing they started outlives
    the run."""
    first = not _terminating
    _terminating.append(signum)
    if first and _forward and _forward[0]():
        workers = children()
        _signal_all(workers, signal.SIGTERM)
        wait_childless(workers, 10.0)
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: ending the running case")


def catch_termination(*, worker: bool, forward: Callable[[], bool] = lambda: False) -> dict:
    """Install :func:`_terminate` for SIGTERM (and SIGINT, in place of
    Python's own handler) in the main thread; returns the handlers to give
    back to :func:`restore_signals`.  An xdist worker also gets SIGTERM when
    its controller dies, whatever killed it (:func:`die_with_parent`); an
    exit that skips the running case's clean-up still ends what it started
    (:func:`end_all_live`, at exit)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _terminating.clear()
    _forward[:] = [forward]
    atexit.register(end_all_live)
    if worker and not _watching:
        die_with_parent(signal.SIGTERM)
        _watching.append(True)
    previous = {}
    for signum, default in ((signal.SIGTERM, signal.SIG_DFL),
                            (signal.SIGINT, signal.default_int_handler)):
        current = signal.getsignal(signum)
        if current in (default, signal.SIG_DFL, None):
            signal.signal(signum, _terminate)
            previous[signum] = current
    return previous


def restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    _forward.clear()

"""Nothing a xenstored run starts outlives it, even when pytest is told to stop.

Each daemon is in its own session, ended with its process group when its
case ends, and dies with the process that started it (``PR_SET_PDEATHSIG``,
:func:`~..execute.start_case_process`).  What is left is to make the
``finally`` clauses run when pytest itself is stopped:

* SIGTERM becomes a KeyboardInterrupt in the process that runs the cases,
  so pytest stops as it does on Ctrl-C: the current case's daemon is ended
  and its run dir removed, and the session ends normally;
* the controller passes SIGTERM on to its children (the pytest-xdist
  workers) before it stops, so that ``kill PID`` of the controller alone
  interrupts every worker's case at once rather than after its timeout;
* a worker also asks for SIGTERM when its controller dies
  (``PR_SET_PDEATHSIG``), in case the controller could not pass it on.
"""

from __future__ import annotations

import os
import signal
import threading


def _children() -> list[int]:
    """The pids whose parent is this process (read from /proc)."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat", "rb").read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append(int(name))
    return out


def _interrupt(signum, frame):  # noqa: ARG001 - a signal handler's signature
    signal.signal(signum, signal.SIG_IGN)  # once is enough
    for pid in _children():
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def contain(is_worker: bool) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _interrupt)
    if is_worker:
        try:
            import ctypes

            parent = os.getppid()
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the controller is already gone
                os.kill(os.getpid(), signal.SIGTERM)
        except (OSError, AttributeError):
            pass


__all__ = ["contain"]

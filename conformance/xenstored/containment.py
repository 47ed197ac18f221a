"""Nothing a xenstored run starts outlives it, even when pytest is told to stop.

Each daemon is in its own session, ended with its process group when its
case ends, and dies with the process that started it (``PR_SET_PDEATHSIG``,
:func:`~..execute.start_case_process`).  What is left is to make the
``finally`` clauses run when pytest itself is stopped:

* SIGTERM becomes a KeyboardInterrupt in the process that runs the cases,
  so pytest stops as it does on Ctrl-C: the current case's daemon is ended
  and its run dir removed, and the session ends normally;
* a pytest-xdist worker asks for SIGTERM when its controller dies, so that
  killing the controller alone (the usual ``kill PID``) interrupts the
  workers the same way.
"""

from __future__ import annotations

import os
import signal
import threading


def _interrupt(signum, frame):  # noqa: ARG001 - a signal handler's signature
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

"""Child processes that stop with their parent: ``hub ui``'s Streamlit server and fine-tune worker.

Children stay in the parent's process group, so Ctrl-C in a terminal (or ``kill -- -PGID``)
reaches them all. Inside :class:`Children`, SIGINT, SIGTERM and SIGHUP stop the parent in
order: every child still running gets SIGTERM (after SIGINT, which the children may have
had too, a second to end on their own first), the parent waits for them, and kills with
SIGKILL those still there after a grace period (at once on a second signal). On Linux
each child also asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``, set
by a small ``python -c`` wrapper that then execs the command), so a parent killed with
SIGKILL takes its children down too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

__all__ = ["Children", "STOP_SIGNALS", "GRACE_SECONDS", "INTERRUPT_SECONDS", "dying_with_parent"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10.0  # how long children have after SIGTERM, before SIGKILL
INTERRUPT_SECONDS = 1.0  # how long children have to end on a Ctrl-C of their own, before SIGTERM

# `python -c DIE_WITH_PARENT PARENT_PID PROGRAM ARGS...`: ask for SIGTERM when the parent dies, then
# become PROGRAM (the setting survives exec). A parent that died before the request ends it at once.
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(128 + signal.SIGTERM)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def dying_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` made to get SIGTERM when this process dies (Linux; elsewhere unchanged).

    The kernel ties the request to the thread that starts the child: start it from a thread
    that lives as long as the process (the main thread).
    """
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]


class Children:
    """Child processes that stop with this one; a context manager, for the main thread
    (elsewhere the signals are left alone: the children still stop when the block ends).

    Inside the ``with`` block a stop signal (:data:`STOP_SIGNALS`) no longer stops this
    process: :attr:`stop_signal` records the first, and :meth:`wait` returns. On leaving
    the block the children are stopped (see :meth:`stop`) and the previous signal handlers
    come back.

    Args:
        grace: seconds children have to stop before they are killed.
    """

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self.processes: list[subprocess.Popen] = []
        self.stop_signal: int | None = None
        self._hurry = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Children:
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        try:
            self.stop(self.stop_signal or signal.SIGTERM)
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self._hurry = True

    def start(self, command: Sequence[str], **popen: Any) -> subprocess.Popen:
        """Start ``command`` (``subprocess.Popen`` keywords in ``popen``) as a child that stops with this process.

        Returns:
            Its ``Popen``.

        Raises:
            OSError: it could not be started.
        """
        process = subprocess.Popen(dying_with_parent(command), **popen)
        self.processes.append(process)
        return process

    def wait(self, main: subprocess.Popen, *, on_exit: Callable[[subprocess.Popen], None] | None = None,
             interval: float = 0.2) -> int | None:
        """Wait until ``main`` ends or a stop signal comes.

        Args:
            main: the child whose end ends the wait.
            on_exit: called once with each other child that ends meanwhile.
            interval: seconds between looks.

        Returns:
            ``main``'s exit status, or None when a stop signal came first.
        """
        told: set[int] = set()
        while self.stop_signal is None:
            status = main.poll()
            if status is not None:
                return status
            for process in self.processes:
                if process is not main and process.pid not in told and process.poll() is not None:
                    told.add(process.pid)
                    if on_exit is not None:
                        on_exit(process)
            time.sleep(interval)
        return None

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop every child still running: SIGTERM, up to the grace period to end, then SIGKILL.

        Args:
            signum: the stop signal this process got. After SIGINT the children first have
                :data:`INTERRUPT_SECONDS` to end on their own: a terminal's Ctrl-C reaches the
                whole process group, and a second interrupt would cut short what the first began
                (a worker recording its job's end).
        """
        if signum == signal.SIGINT:
            self._settle(INTERRUPT_SECONDS)
        for process in self.processes:
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self._settle(self.grace)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def _settle(self, seconds: float) -> None:
        """Wait up to ``seconds`` (less after a second stop signal) for every child to end."""
        deadline = time.monotonic() + seconds
        while not self._hurry and time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.05)

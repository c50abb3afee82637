"""Ctrl-C for the commands that run compiled code (``acbo train``, ``evaluate``, ``baselines``, ``plugin``,
``bench``)."""

from __future__ import annotations

import os
import signal
import sys
import threading

INTERRUPT_GRACE_S = 2.0  # how long Ctrl-C waits for Python to take it before the process ends from native code
UNWIND_GRACE_S = 10.0  # how long the command may take to end once Python has taken it

_unsaid = threading.Lock()  # taken, never released, by the first to report the interrupt: one line per process


def _line(command: str) -> str:
    return f"acbo {command}: interrupted\n"


def stop_on_interrupt(command: str) -> None:
    """Make Ctrl-C stop the command even while XLA runs compiled code (a plug-in that loops forever).

    Python runs its SIGINT handler only when the main thread is back in the interpreter, which a compiled
    program (or a compilation) may never be. The C-level handler still writes the signal to a wakeup pipe: a
    watcher thread reads it and, when the handler has not run within ``INTERRUPT_GRACE_S``, says so in one line
    and ends the process with the shell's status for SIGINT (130). When the handler did run but the process is
    still there ``UNWIND_GRACE_S`` later, the watcher ends it the same way (the line said once: ``report``): the
    ``KeyboardInterrupt`` was lost on the way (raised where Python only reports an exception, a finalizer or a
    callback, and the command went on into compiled code), or the interpreter's exit waits on something that never
    ends (an exit handler waiting for a program that loops forever). A loaded ``make test`` once hung there. Files
    are written only after a job's computation (temporary file, then rename), so there is nothing half-written to
    clean up then.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    handled = threading.Semaphore(0)

    def handler(signum, frame):
        handled.release()
        raise KeyboardInterrupt

    def end():
        if _unsaid.acquire(blocking=False):
            os.write(2, _line(command).encode())  # not through sys.stderr, whose lock the main thread may hold
        os._exit(130)

    def watch():
        while True:
            if signal.SIGINT in os.read(read_fd, 64):
                if not handled.acquire(timeout=INTERRUPT_GRACE_S):
                    end()
                # taken by Python: a command that unwinds ends well before this timer (a daemon: it keeps no
                # process alive)
                timer = threading.Timer(UNWIND_GRACE_S, end)
                timer.daemon = True
                timer.start()

    signal.signal(signal.SIGINT, handler)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=watch, name="acbo-interrupt", daemon=True).start()


def report(command: str) -> int:
    """Say in one line that ``command`` was interrupted (once per process: the watcher may say it too) and give
    the shell's status for SIGINT."""
    if _unsaid.acquire(blocking=False):
        sys.stderr.write(_line(command))
        sys.stderr.flush()
    return 130

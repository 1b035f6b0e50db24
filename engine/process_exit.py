"""How the engine's process ends: with its own exit code, whatever a signal or a library did before."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys

from engine.protocol import EXIT_INTERRUPTED


def hold_signals() -> None:
    """Ignore SIGINT, SIGTERM (and Windows' SIGBREAK) from now on, so a second one cannot cut an exit short."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def quiet_exit(code: int) -> None:
    """End the process with ``code``: no traceback, and no kill by a late signal.

    Parameters
    ----------
    code : int
        The exit status (see ``engine.protocol``).

    Notes
    -----
    After an interrupt, ``sys.exit`` is not enough. CPython marks a KeyboardInterrupt as unhandled
    when it leaves any code run through ``PyRun_*``, and libraries run such code (numba does while
    it compiles librosa's kernels). The mark stays even when the engine catches the interrupt
    later, and a ``python -m`` run then ends with CPython killing its own process by SIGINT: the
    add-on would see -2 instead of 130. So an interrupted engine runs the atexit handlers, flushes
    its streams and leaves with ``os._exit``. Other codes keep ``sys.exit``, which also waits for
    threads still writing.
    """
    hold_signals()
    if code != EXIT_INTERRUPTED:
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - the same handlers a normal exit runs
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: the reader has gone
            stream.flush()
    os._exit(code)

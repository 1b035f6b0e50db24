"""How the engine's process ends: with its own exit code, whatever a signal or a library did before."""

from __future__ import annotations

import signal
import sys


def hold_signals() -> None:
    """Ignore SIGINT, SIGTERM (and Windows' SIGBREAK) from now on, so a second one cannot cut an exit short."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def forget_library_interrupts() -> None:
    """Clear CPython's mark of a KeyboardInterrupt that left code a library ran through ``PyRun_*``.

    CPython sets that mark when a KeyboardInterrupt leaves any code run through ``PyRun_*``, and
    libraries run such code (Cython modules do while they are imported: numpy.random's, Ray's). The
    mark stays when the engine catches the interrupt later, or when the library swallows it, and at
    the end of a ``python -m`` run CPython then kills its own process by SIGINT, whatever code
    ``sys.exit`` was given: the add-on would see -2 instead of 130, 0 or 3. Every ``PyRun_*`` call
    starts by clearing the mark, so running an empty statement through one clears it.
    """
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"pass")
    except (ImportError, AttributeError, OSError):  # not CPython: no such mark
        pass


def quiet_exit(code: int) -> None:
    """End the process with ``code``: no traceback, and no kill by a late signal.

    Parameters
    ----------
    code : int
        The exit status (see ``engine.protocol``).
    """
    hold_signals()
    forget_library_interrupts()
    sys.exit(code)

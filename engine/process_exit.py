"""How the engine's process ends: with its own exit code, whatever a signal or a library did before."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: Seconds after which a stop signal that arrived during an import is delivered again.
REDELIVER_S = 0.05

#: Stop signals put off because they arrived during an import, and not yet taken by any handler.
_deferred: set[int] = set()


def on_stop_signals(handler) -> None:
    """Let ``handler`` take SIGINT, SIGTERM and SIGBREAK (what the add-on sends on Windows): the signals that stop.

    A signal put off during an import is the new handler's to take when it comes again.
    """
    if handler is not interrupt_outside_imports:
        _deferred.clear()
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def interrupt_outside_imports(signum: int, frame) -> None:
    """A stop-signal handler: raise KeyboardInterrupt, as SIGINT does, except while a module is being imported.

    A KeyboardInterrupt raised inside an import can reach C++ code that cannot pass it on: torch's pybind11
    module set-up then calls ``std::terminate`` and the process dies by SIGABRT (measured: a SIGTERM while
    ``analyze`` imported torch to look for a GPU). During an import the signal is delivered again a moment
    later instead, until the import is over.
    """
    if _importing(frame):
        _deferred.add(signum)
        timer = threading.Timer(REDELIVER_S, signal.raise_signal, (signum,))
        timer.daemon = True
        timer.start()
        return
    _deferred.clear()
    raise KeyboardInterrupt


def stop_deferred() -> bool:
    """Whether a stop signal was put off by :func:`interrupt_outside_imports` and has not been taken since.

    A command that ends before the signal comes again (a short one, ending within :data:`REDELIVER_S` of its
    last import) must still stop as asked, not succeed.
    """
    return bool(_deferred)


def hold_signals() -> None:
    """Ignore the stop signals from now on, so a second one cannot cut an exit short."""
    on_stop_signals(signal.SIG_IGN)


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


#: Set when a library left the process unable to run its exit handlers: what to run before ``os._exit`` instead.
_hard_exit: list | None = None


def exit_without_handlers(*before) -> None:
    """End the process at :func:`quiet_exit` with ``os._exit``, after running ``before`` (and flushing stdio).

    For a library that left this process unable to run the interpreter's exit handlers: after its node died, Ray's
    core worker crashes in them (SIGABRT or SIGSEGV instead of m2v's exit code).
    """
    global _hard_exit
    _hard_exit = [*(_hard_exit or []), *before]


def quiet_exit(code: int) -> None:
    """End the process with ``code``: no traceback, and no kill by a late signal.

    Parameters
    ----------
    code : int
        The exit status (see ``engine.protocol``).
    """
    hold_signals()
    forget_library_interrupts()
    if _hard_exit is not None:
        for fn in [*_hard_exit, sys.stdout.flush, sys.stderr.flush]:
            with contextlib.suppress(Exception):  # the exit code matters more than a clean-up step
                fn()
        os._exit(code)
    sys.exit(code)

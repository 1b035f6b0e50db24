"""How the engine stops and ends: the one owner of stop signals and exit codes.

Every command runs under :func:`guarded` (SIGINT and SIGTERM interrupt it, exit 130, nothing left behind) and
ends through :func:`quiet_exit` (``python -m engine``); an error becomes its exit code in :func:`failure` (2 for
bad input, 1 for a bug); a render installs a :class:`StopFlag` instead (finish the image, save, exit 3:
:func:`render_code`), and so does the Ray driver, again after Ray installed its own handlers. The codes
themselves are the contract's (:mod:`engine.protocol`), read by the add-on.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from engine.errors import ExternalError, InputError
from engine.protocol import EXIT_CANCELLED, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK

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


def interrupts() -> None:
    """SIGTERM (and Windows' SIGBREAK) stop a command as SIGINT does: a clean exit that leaves nothing behind."""
    on_stop_signals(interrupt_outside_imports)


class StopFlag:
    """Set by SIGINT/SIGTERM: the render finishes the current image, saves, and exits (:func:`render_code`)."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            self.stop = True

        on_stop_signals(handler)

    def ignore(self) -> None:
        """After the final event a late cancel has nothing left to stop: the exit code stays the render's."""
        hold_signals()


def render_code(cancelled: bool) -> int:
    """A render's exit code: 3 when it was stopped before the end (every finished frame kept), else 0."""
    return EXIT_CANCELLED if cancelled else EXIT_OK


def failure(error: BaseException, folder: str | None = None) -> tuple[int, str | None]:
    """The exit code an error ends a command with, and its message for the user (``None``: a bug, exit 1).

    Bad input (an :class:`~engine.errors.InputError`, a path the user gave that cannot be read or written, a
    command line the parser refused, a full disk: "no space left on the device for ``folder``", the folder the
    command writes, since ``ENOSPC`` names no file) is exit 2 with one line naming the file or flag; a failure
    outside m2v (:class:`~engine.errors.ExternalError`: a Ray cluster) is exit 1 with its one line.
    """
    if isinstance(error, SystemExit):  # argparse: --help and --version end well, a usage error is bad input
        return (EXIT_OK if error.code in (0, None) else EXIT_INPUT), None
    if isinstance(error, InputError):
        return EXIT_INPUT, str(error)
    # Here, not at the top: this module loads next to nothing (no pathlib), so that importing it cannot by
    # itself clear the interrupt mark quiet_exit is there to clear (see forget_library_interrupts).
    from engine.files import is_no_space, no_space_message

    if is_no_space(error):  # a full disk where m2v wrote no named file (an event log, the video's encoder)
        return EXIT_INPUT, no_space_message(folder or "the output folder")
    if isinstance(error, ExternalError):
        return EXIT_INTERNAL, str(error)
    if isinstance(error, OSError) and error.filename is not None:
        return EXIT_INPUT, f"{error.filename}: {error.strerror or error}"
    return EXIT_INTERNAL, None


def guarded(command: Callable[[], int], cleanup: Callable[[], None]) -> int:
    """Run ``command`` as a stoppable command: a stop signal interrupts it (outside imports), ``cleanup`` undoes what
    it created, and the exit code is 130; a signal put off during an import still stops a command that ended first.
    """
    interrupts()
    try:
        code = command()
        if stop_deferred():  # asked to stop during an import, and ended before the signal came again
            raise KeyboardInterrupt
        return code
    except KeyboardInterrupt:
        hold_signals()  # a second signal must not cut the cleanup short
        cleanup()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry(module: str, name: str) -> None:
    """``python -m engine``: import ``module`` and run its ``name()`` under the stop rules, then end the process with
    its code (a stop signal while importing is exit 130 too)."""
    interrupts()
    try:
        code = getattr(importlib.import_module(module), name)()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    quiet_exit(code)

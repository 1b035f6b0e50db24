import signal
import sys


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def _quiet_exit(code: int) -> None:
    """Exit with ``code``; a signal arriving now can no longer turn the exit into a traceback or a kill."""
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    sys.exit(code)


# SIGTERM while the engine is still importing stops it as SIGINT does (engine.cli.commands.main installs the same).
signal.signal(signal.SIGTERM, _interrupt)
try:
    from engine.cli.commands import main

    code = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = 130
_quiet_exit(code)

import signal
import sys

from engine.process_exit import quiet_exit
from engine.protocol import EXIT_INTERRUPTED


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


# SIGTERM while the engine is still importing stops it as SIGINT does (engine.cli.commands.main installs the same).
signal.signal(signal.SIGTERM, _interrupt)
try:
    from engine.cli.commands import main

    code = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = EXIT_INTERRUPTED
quiet_exit(code)

import signal
import sys


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


# SIGTERM while the engine is still importing stops it as SIGINT does (engine.cli.main installs the same).
signal.signal(signal.SIGTERM, _interrupt)
try:
    from engine.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())

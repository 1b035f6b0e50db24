import sys

from engine.protocol import EXIT_INTERRUPTED
from engine.stopping import interrupt_outside_imports, on_stop_signals, quiet_exit

# SIGTERM while the engine is still importing stops it as SIGINT does (engine.cli.commands.main installs the same).
on_stop_signals(interrupt_outside_imports)
try:
    from engine.cli.commands import main

    code = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = EXIT_INTERRUPTED
quiet_exit(code)

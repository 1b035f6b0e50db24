"""``python -m engine``: the command line, under the stop rules of :mod:`engine.stopping`."""

from engine.stopping import entry

entry("engine.cli.commands", "main")

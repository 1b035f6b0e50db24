"""``engine signals``: the music as curves (``engine.plan.signals``), what the add-on's Bake Music to F-Curve reads.
(Its flags, ``--start``, ``--end`` and ``-o``, are rows of the settings table, :mod:`engine.cli.parser`.)"""

from __future__ import annotations

import argparse
import sys

from engine.cli.run_folder import write_noted
from engine.files import check_not_inputs, check_output_file, dumps_strict
from engine.protocol import EXIT_OK


def cmd_signals(args: argparse.Namespace) -> int:
    from engine.plan.signals import signals_document

    check_not_inputs({"-o": args.output}, {"song": args.song})
    if args.output:
        check_output_file(args.output, "-o")
    text = dumps_strict(signals_document(args.song, args.start, args.end), indent=None) + "\n"
    if args.output:
        write_noted(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return EXIT_OK

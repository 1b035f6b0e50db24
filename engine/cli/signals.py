"""``engine signals``: the music as curves (``engine.plan.signals``), what the add-on's Bake Music to F-Curve reads."""

from __future__ import annotations

import argparse
import sys

from engine.cli.run_folder import write_noted
from engine.files import check_not_inputs, check_output_file, dumps_strict
from engine.protocol import EXIT_OK


def add_parser(sub, number) -> None:
    """The ``signals`` command (``number``: the parser's checked-number type)."""
    s = sub.add_parser(
        "signals",
        help="the music as curves: intensity, onsets, beat pulse, band loudness (0-1 over time)",
        description=(
            "Compute 0-1 curves of the song over time (m2v's intensity, onset strength, a beat pulse, the "
            "loudness of the low, mid and high bands) as a JSON document (kind m2v-signals), one value per "
            "analysis frame: what Bake Music to F-Curve turns into keyframes."
        ),
    )
    s.add_argument("song", help="audio file")
    s.add_argument("--start", type=number(0, name="--start"), help="from this song time (seconds)")
    s.add_argument("--end", type=number(0, name="--end"), help="up to this song time (seconds)")
    s.add_argument("-o", "--output", metavar="SIGNALS.json", help="write the document here (default: print it)")


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

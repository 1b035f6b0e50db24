"""The command line's parser: every command, its flags, and the checks on their values.

The job commands' flags (analyze, plan, run, render), export's and the models
folder are the settings table's rows (:mod:`engine.settings_table`), in its
order, grouped as it says; ``models`` and ``info`` have their own few
(``--mirror``, ``--only``, ``--json``). Numbers are checked here,
where they enter (finite, in range, whole where they must be), so a bad flag
is a clear exit 2 before any work starts; the settings objects check the rest
(:mod:`engine.settings`).
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from engine import __version__
from engine.errors import InputError
from engine.files import check_number
from engine.protocol import EVENTS_FLAG
from engine.settings_table import GROUPS, Setting, for_command


class UsageError(SystemExit):
    """A flag argparse refused: the command line prints the usage and one ``error:`` line (and, for ``render``
    or with ``--events``, an ``error`` event), exit 2. A ``SystemExit(2)``, as argparse's own, for other callers."""

    def __init__(self, message: str, usage: str, prog: str) -> None:
        super().__init__(2)
        self.message, self.usage, self.prog = message, usage, prog

    def __str__(self) -> str:
        return self.message

    @property
    def command(self) -> str | None:
        """The command whose flags were refused (``render``), from the parser's ``prog``."""
        words = self.prog.split()
        return words[3] if len(words) > 3 else None


class Parser(argparse.ArgumentParser):
    """argparse's parser; with ``raise_usage_errors`` its errors go through the engine's one error path
    (:class:`UsageError`) instead of argparse's ``prog: error:`` line."""

    raise_usage_errors = False

    def error(self, message: str):
        if not self.raise_usage_errors:
            super().error(message)
        raise UsageError(message, self.format_usage(), self.prog)


def _number(lo=None, hi=None, integer=False, lo_open=False, name=None):
    """An argparse type: a finite number in range (argparse alone takes 'nan' and 'inf')."""

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if integer else ''}number: {text!r}") from None
        try:
            return check_number(value, name or "value", lo, hi, integer=integer, lo_open=lo_open)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _rate(lo: float, hi: float, name: str = "--fps"):
    """An argparse type: a frame rate as a number or an exact fraction (``30000/1001``), kept as written."""

    def parse(text: str) -> str:
        try:
            value = Fraction(text.strip())
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"not a frame rate: {text!r} (24, 29.97 or 30000/1001)") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be {lo:g} to {hi:g}, got {text}")
        return text.strip()

    return parse


def _setting_kwargs(s: Setting, command: str) -> dict:
    """``add_argument`` keywords for a row of the settings table, in ``command``."""
    kw: dict = {"dest": s.name, "help": s.help or None}
    if s.action:
        return {**kw, "action": s.action}
    if command in s.required and s.exclusive is None:  # one of alternatives: their group is required instead
        kw["required"] = True
    # A flag left out takes its preset's value (``engine.plan.presets``): None tells the two apart.
    kw["default"] = None if s.preset else s.default
    if s.choices:
        kw["choices"] = s.choices
    elif s.type in ("int", "float"):
        kw["type"] = _number(s.lo, s.hi, integer=s.integer, lo_open=s.lo_open, name=s.flag)
    elif s.type == "rate":
        kw["type"] = _rate(s.lo, s.hi, s.flag)
    if s.nargs is not None:
        kw["nargs"] = s.nargs
    if s.nargs == "?":
        kw["const"] = s.const
    if s.metavar is not None:
        kw["metavar"] = s.metavar
    return kw


def _add_settings(p: argparse.ArgumentParser, command: str) -> None:
    """Every setting ``command`` takes, from the settings table (in its order, grouped as it says; alternatives,
    rows of one ``exclusive`` name, in a mutually exclusive group)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    alternatives: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for s in for_command(command):
        target = p if s.group is None else groups.get(s.group) or groups.setdefault(
            s.group, p.add_argument_group(*GROUPS[s.group])
        )
        if s.exclusive is not None:
            target = alternatives.get(s.exclusive) or alternatives.setdefault(
                s.exclusive, target.add_mutually_exclusive_group(required=command in s.required)
            )
        target.add_argument(s.flag, *s.aliases, **_setting_kwargs(s, command))


def build_parser(raise_usage_errors: bool = False) -> argparse.ArgumentParser:
    """The engine's parser; ``raise_usage_errors``: a refused flag raises :class:`UsageError` (the command line's
    one error path) instead of argparse printing its own message."""
    cls = type("EngineParser", (Parser,), {"raise_usage_errors": True}) if raise_usage_errors else Parser
    parser = cls(
        prog="python -m engine",
        description="m2v engine: turn a song and its timed lyrics into a music video.",
    )
    parser.add_argument("--version", action="version", version=f"m2v engine {__version__}")
    parser.add_argument(EVENTS_FLAG, action="store_true", help="JSON events on stdout (for the Blender add-on)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_job_parsers(sub)
    _add_tool_parsers(sub)
    return parser


def _add_job_parsers(sub) -> None:
    """analyze, plan, run and render."""
    a = sub.add_parser(
        "analyze",
        help="find scene changes, rates and guidance in a song",
        description=(
            "Segment a song at drastic musical changes (or at every beat), give each segment a "
            "generation rate from its loudness and a guidance (its lyric or its own audio)."
        ),
    )
    a.add_argument("song", help="audio file (wav, flac, ogg, mp3, ...)")
    _add_settings(a, "analyze")

    p = sub.add_parser(
        "plan",
        help="build a plan from given segment boundaries",
        description=(
            "Re-derive intensity, rates and guidance for exactly the given boundaries "
            "(song seconds), for example markers an editor moved."
        ),
    )
    p.add_argument("song", help="audio file")
    _add_settings(p, "plan")

    r = sub.add_parser(
        "run",
        help="the main job: song (the demo by default) to plan, frames and MP4",
        description=(
            "Analyse a song (without one, synthesise the demo song), draw the plan, render it and export "
            "video.mp4. Missing model files are downloaded on first use; offline, use --layout or put the "
            "official files in the models folder."
        ),
    )
    r.add_argument("song", nargs="?", help="audio file (default: synthesise the demo song)")
    _add_settings(r, "run")

    m = sub.add_parser(
        "render",
        help="turn a plan into frames (VQGAN + CLIP), resumable and cached",
        description=(
            "Optimise one VQGAN latent through the song: each image is guided by its segment's lyric "
            "(CLIP text) or audio (Wav2CLIP). Progress goes to stdout as JSON lines. Ctrl-C finishes the current "
            "image and exits with code 3; running again resumes."
        ),
    )
    m.add_argument("plan", help="plan.json from analyze or plan")
    _add_settings(m, "render")


def _add_tool_parsers(sub) -> None:
    """export, models, signals and info."""
    e = sub.add_parser(
        "export",
        help="write an MP4 of a finished render with the song, or its timeline for another editor",
        description=(
            "-o VIDEO.mp4: the video with the song. --timeline EDIT: the cut, the lyrics and the clips as a "
            "timeline (format by extension: .otio, .xml for Final Cut Pro 7 / Premiere / Resolve, .fcpxml, .edl, "
            ".kdenlive); a render still running or incomplete exports what exists."
        ),
    )
    e.add_argument("render_dir", help="the render's output folder")
    _add_settings(e, "export")

    mo = sub.add_parser("models", help="download or check the official model files")
    msub = mo.add_subparsers(dest="models_command", metavar="ACTION")
    mf = msub.add_parser("fetch", help="download missing files (resumes, verifies SHA-256)")
    _add_settings(mf, "models fetch")
    mf.add_argument("--mirror", help="base URL of a mirror holding the files under their names")
    mf.add_argument("--only", nargs="*", help="only these file names")
    mc = msub.add_parser("check", help="list the official files and whether they verify")
    _add_settings(mc, "models check")
    mc.add_argument("--json", action="store_true", help="machine-readable output")

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
    _add_settings(s, "signals")

    i = sub.add_parser("info", help="versions, the device torch finds, and the model files")
    _add_settings(i, "info")
    i.add_argument("--json", action="store_true", help="one JSON document (the add-on's Check)")

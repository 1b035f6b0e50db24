"""The command line's parser: every command, its flags, and the checks on their values.

Numbers are checked here, where they enter (finite, in range, whole where
they must be), so a bad flag is a clear exit 2 before any work starts.
"""

from __future__ import annotations

import argparse

from engine import __version__
from engine.cli.signals import add_parser as add_signals_parser
from engine.errors import InputError
from engine.files import check_number
from engine.settings_table import GROUPS, Setting, for_command


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


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lyrics", metavar="FILE", help="timed lyrics: .lrc, .srt, .vtt or .csv")
    p.add_argument("--no-estimate", action="store_true", help="skip the render-time estimate (no calibration)")
    p.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan here (default: print it)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the analysis to this image")


def _setting_kwargs(s: Setting) -> dict:
    """``add_argument`` keywords for a row of the settings table."""
    kw: dict = {"dest": s.name, "help": s.help or None}
    if s.action:
        return {**kw, "action": s.action}
    # A flag left out takes its preset's value (``engine.plan.presets``): None tells the two apart.
    kw["default"] = None if s.preset else s.default
    if s.choices:
        kw["choices"] = s.choices
    elif s.type in ("int", "float"):
        kw["type"] = _number(s.lo, s.hi, integer=s.integer, lo_open=s.lo_open, name=s.flag)
    if s.nargs is not None:
        kw["nargs"] = s.nargs
    if s.nargs == "?":
        kw["const"] = s.const
    if s.metavar is not None:
        kw["metavar"] = s.metavar
    return kw


def _add_settings(p: argparse.ArgumentParser, command: str) -> None:
    """Every setting ``command`` takes, from the settings table (in its order, grouped as it says)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in for_command(command):
        target = p if s.group is None else groups.get(s.group) or groups.setdefault(
            s.group, p.add_argument_group(*GROUPS[s.group])
        )
        target.add_argument(s.flag, *s.aliases, **_setting_kwargs(s))


# ---------------------------------------------------------------- chains and Ray (issue 22)
# One place for these flags, so they can become rows of a settings table.


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="models folder with the official files (default: $M2V_MODELS or per-user data)")
    p.add_argument("--vqgan-config", help="your own taming VQGAN config (.yaml)")
    p.add_argument("--vqgan-ckpt", help="your own taming VQGAN checkpoint (.ckpt)")
    p.add_argument(
        "--clip-model", default=None, help="open_clip model name or config .json (default ViT-B-32-quickgelu)"
    )
    p.add_argument("--clip-weights", help="weights for --clip-model (.safetensors preferred)")
    p.add_argument("--audio-encoder", help="your own Wav2CLIP.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="m2v engine: turn a song and its timed lyrics into a music video.",
    )
    parser.add_argument("--version", action="version", version=f"m2v engine {__version__}")
    parser.add_argument("--events", action="store_true", help="JSON events on stdout (for the Blender add-on)")
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
    a.add_argument("--start", type=_number(0, name="--start"), help="analyse from this song time (seconds)")
    a.add_argument("--end", type=_number(0, name="--end"), help="analyse up to this song time (seconds)")
    _add_plan_args(a)

    p = sub.add_parser(
        "plan",
        help="build a plan from given segment boundaries",
        description=(
            "Re-derive intensity, rates and guidance for exactly the given boundaries "
            "(song seconds), for example markers an editor moved."
        ),
    )
    p.add_argument("song", help="audio file")
    p.add_argument("--boundaries", required=True, metavar="T0,T1,...", help="segment boundaries in seconds, increasing")
    p.add_argument(
        "--segment-settings",
        metavar="FILE.json",
        help="per-segment prompt, prompt_weight and take, matched by start time (kind m2v-segment-settings)",
    )
    _add_settings(p, "plan")
    _add_plan_args(p)

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
    r.add_argument("--lyrics", metavar="FILE", help="timed lyrics for your song")
    r.add_argument("--out", default="m2v-out", help="output folder (%(default)s)")
    r.add_argument("--no-estimate", action="store_true", help="skip the render-time estimate (no calibration)")
    r.add_argument("--no-fetch", action="store_true", help="never download model files")
    _add_settings(r, "run")
    _add_model_args(r)

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
    m.add_argument("--out", required=True, help="output folder (frames, manifest.json, state)")
    _add_settings(m, "render")
    _add_model_args(m)


def _add_tool_parsers(sub) -> None:
    """export, models and info."""
    e = sub.add_parser("export", help="write an MP4 of a finished render with the song")
    e.add_argument("render_dir", help="the render's output folder")
    e.add_argument("-o", "--output", required=True, metavar="VIDEO.mp4")
    e.add_argument("--fps", type=_number(1, 240, name="--fps"), default=24.0, help="%(default)s, at most 240")

    mo = sub.add_parser("models", help="download or check the official model files")
    msub = mo.add_subparsers(dest="models_command", metavar="ACTION")
    mf = msub.add_parser("fetch", help="download missing files (resumes, verifies SHA-256)")
    mf.add_argument("--models", help="models folder (default: $M2V_MODELS or the per-user data folder)")
    mf.add_argument("--mirror", help="base URL of a mirror holding the files under their names")
    mf.add_argument("--only", nargs="*", help="only these file names")
    mc = msub.add_parser("check", help="list the official files and whether they verify")
    mc.add_argument("--models")
    mc.add_argument("--json", action="store_true", help="machine-readable output")

    add_signals_parser(sub, _number)

    i = sub.add_parser("info", help="versions, the device torch finds, and the model files")
    i.add_argument("--models", help="models folder (default: $M2V_MODELS or the per-user data folder)")
    i.add_argument("--json", action="store_true", help="one JSON document (the add-on's Check)")

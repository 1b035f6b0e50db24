"""The command line's parser: every command, its flags, and the checks on their values.

Numbers are checked here, where they enter (finite, in range, whole where
they must be), so a bad flag is a clear exit 2 before any work starts.
"""

from __future__ import annotations

import argparse

from engine import __version__
from engine.errors import InputError
from engine.models import DEVICES
from engine.protocol import (
    ANALYSIS_DEFAULTS,
    CUT_METHODS,
    INIT_SPACES,
    INTENSITIES,
    MOTION_DRIVES,
    PRECISIONS,
    PRESET_CHOICES,
)


def _number(lo=None, hi=None, integer=False, lo_open=False, name=None):
    """An argparse type: a finite number in range (argparse alone takes 'nan' and 'inf')."""
    from engine.files import check_number

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
    _add_rate_args(p)
    p.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan here (default: print it)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the analysis to this image")


def _add_rate_args(p: argparse.ArgumentParser) -> None:
    d = ANALYSIS_DEFAULTS
    p.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default="auto",
        help="paper: the paper's method as its text reads; draft: a fast preview; musicvideo: paper with motion "
        "that follows the music; auto: paper on a GPU, draft on a CPU (%(default)s)",
    )
    _add_intensity_arg(p)
    p.add_argument(
        "--min-rate",
        type=_number(0, 1000, lo_open=True, name="--min-rate"),
        help="optimisation steps per second of music in the quietest segment (paper 10, draft 2)",
    )
    p.add_argument(
        "--max-rate",
        type=_number(0, 1000, lo_open=True, name="--max-rate"),
        help="steps per second in the loudest segment (paper 120, draft 8)",
    )
    p.add_argument(
        "--fps",
        type=_number(1, 240, name="--fps"),
        default=d["fps"],
        help="output frame rate: at most this many distinct images a second (%(default)s)",
    )
    p.add_argument("--device", choices=DEVICES, default="auto", help="for --preset auto and the cost estimate")
    p.add_argument("--no-estimate", action="store_true", help="skip the render-time estimate (no calibration)")


# ---- setting: --intensity (analyze, plan, run) -- one row of the settings table to come
def _add_intensity_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--intensity",
        choices=INTENSITIES,
        default="paper",
        help="a segment's intensity, which sets its steps per second: paper, its mean level in dB against the "
        "song's range (the paper's text); authors, its peak of the song's normalised mel power with whole steps, "
        "as the authors' code computes it (%(default)s)",
    )


# ---- end of setting: --intensity


def _add_scene_args(p: argparse.ArgumentParser) -> None:
    d = ANALYSIS_DEFAULTS
    p.add_argument(
        "--granularity", choices=("scenes", "beats"), default=None, help="cut at scene changes or every beat (preset's)"
    )
    p.add_argument(
        "--min-length",
        type=_number(0, 3600, lo_open=True, name="--min-length"),
        default=d["min_length"],
        help="shortest scene in seconds (%(default)s)",
    )
    p.add_argument(
        "--target-length",
        type=_number(0, 3600, lo_open=True, name="--target-length"),
        default=d["target_length"],
        help="target mean scene length in seconds (%(default)s)",
    )


def _add_render_args(p: argparse.ArgumentParser, with_preset: bool = True) -> None:
    """Flags shared by ``render`` and ``run``: the look, the optimisation, the device and the models."""
    if with_preset:
        p.add_argument(
            "--preset",
            choices=PRESET_CHOICES,
            default="auto",
            help="paper, draft, musicvideo (paper + motion), or auto: the plan's preset (else paper on a GPU, "
            "draft on a CPU)",
        )
    p.add_argument("--layout", action="store_true", help="preview: a titled card per image, no models needed")
    p.add_argument("--size", nargs=2, type=_number(16, 8192, integer=True, name="--size"), metavar=("W", "H"))
    p.add_argument("--cutouts", type=_number(1, 1024, integer=True, name="--cutouts"), help="paper and draft: 32")
    p.add_argument("--cut-method", choices=CUT_METHODS, help="latest (the authors', paper) or crops (draft)")
    p.add_argument("--lr", type=_number(0, 10, lo_open=True, name="--lr"), help="Adam step size (0.1)")
    p.add_argument("--seed", type=_number(0, (1 << 63) - 1, integer=True, name="--seed"), default=0)
    # --- setting: precision (issue 19; one row of a future settings table) ---
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="mixed",
        help="mixed (default: CLIP in fp16 and TF32 on CUDA, bf16 on a CPU with bf16 units) or fp32",
    )
    if with_preset:
        p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--style", help="a text style prompt for the whole song, e.g. 'oil painting'")
    p.add_argument("--style-weight", type=_number(0, 100, name="--style-weight"), default=0.5)
    p.add_argument(
        "--no-prompt-average",
        dest="prompt_average",
        action="store_false",
        help="turn off eq. 2 (averaging each part's target with the previous one)",
    )
    p.add_argument(
        "--l1-weight",
        type=_number(0, 1e6, name="--l1-weight"),
        default=0.0,
        help="eq. 1: cancel latent changes smaller than lr x this between images (0: off)",
    )
    _add_footage_args(p)
    _add_motion_args(p)
    _add_chain_args(p)
    p.add_argument(
        "--snapshot-every",
        type=_number(0, 86400, name="--snapshot-every"),
        default=None,
        metavar="S",
        help="seconds of rendering between resume points (default 15)",
    )
    p.add_argument(
        "--cache-cap-mb",
        type=_number(0, 1e9, name="--cache-cap-mb"),
        default=None,
        metavar="MB",
        help="keep frames of earlier takes and edits up to this size (default: the render's own size, at least 1 GiB)",
    )
    _add_model_args(p)


def _add_footage_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("footage styling", "each image starts from, and is pulled towards, a footage frame")
    g.add_argument("--footage", metavar="MOVIE", help="a movie, a still image, or a folder of images (a sequence)")
    g.add_argument(
        "--footage-offset",
        type=_number(-1e7, 1e7, name="--footage-offset"),
        default=0.0,
        metavar="S",
        help="the movie time (seconds) shown at song time 0 (%(default)s)",
    )
    g.add_argument(
        "--footage-speed",
        type=_number(0, 1000, lo_open=True, name="--footage-speed"),
        default=1.0,
        metavar="X",
        help="movie seconds per song second (%(default)s)",
    )
    g.add_argument(
        "--footage-span",
        nargs=2,
        type=_number(-1e7, 1e7, name="--footage-span"),
        metavar=("A", "B"),
        help="song seconds where the footage is visible (default: wherever the movie plays)",
    )
    g.add_argument(
        "--footage-fps",
        type=_number(0, 1000, lo_open=True, name="--footage-fps"),
        metavar="F",
        help="frames per second of an image-sequence folder",
    )
    g.add_argument(
        "--init-weight",
        type=_number(0, 1e6, name="--init-weight"),
        default=0.0,
        metavar="W",
        help="L2 pull of each step towards the footage frame, as VQGAN-CLIP's --init_weight (%(default)s: off)",
    )
    g.add_argument(
        "--init-space",
        choices=INIT_SPACES,
        default="latent",
        help="measure that pull on the frame's encoding (latent, VQGAN-CLIP's) or its pixels (%(default)s)",
    )
    g.add_argument(
        "--footage-blend",
        type=_number(0, 1, name="--footage-blend"),
        default=0.5,
        metavar="B",
        help="share of the previous generated image kept when an image starts; 0: restart from the footage "
        "frame, as VQGAN-CLIP's video styling (%(default)s)",
    )


def _add_motion_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "motion", "move the previous image before each image's steps (off, except in the musicvideo preset)"
    )
    g.add_argument(
        "--zoom",
        type=_number(-0.9, 10, name="--zoom"),
        metavar="F",
        help="zoom per beat at full onset strength (music) or per second (steady): 0.03 magnifies 3%%",
    )
    g.add_argument(
        "--rotate",
        type=_number(-3600, 3600, name="--rotate"),
        metavar="DEG",
        help="degrees per second at full intensity, counter-clockwise",
    )
    g.add_argument(
        "--shift",
        nargs=2,
        type=_number(-1e5, 1e5, name="--shift"),
        metavar=("DX", "DY"),
        help="pixels per second at full intensity (x right, y up)",
    )
    g.add_argument(
        "--motion-drive",
        choices=MOTION_DRIVES,
        help="music: zoom pulses on beats by onset strength, drift by segment intensity; steady: constant",
    )


# ---------------------------------------------------------------- chains and Ray (issue 22)
# One place for these flags, so they can become rows of a settings table.


def _add_chain_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "chains and Ray", "split the song into independent latent chains and render them at once on a Ray cluster"
    )
    g.add_argument(
        "--chains",
        type=_number(1, 100_000, integer=True, name="--chains"),
        metavar="N",
        help="N chains, split at the N-1 cuts of strongest musical change (default: one, or the plan's marks)",
    )
    g.add_argument("--chain-at", metavar="T1,T2,...", help="start chains at the cuts at these song seconds")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="render each chain as a Ray task: no address starts a local Ray instance; 'auto', 'host:port' or "
        "'ray://host:port' joins a running cluster",
    )
    g.add_argument(
        "--ray-workers",
        type=_number(1, 100_000, integer=True, name="--ray-workers"),
        metavar="W",
        help="Ray workers (default: one per GPU, else one per --ray-cpus CPUs)",
    )
    g.add_argument(
        "--ray-cpus",
        type=_number(1, 1024, integer=True, name="--ray-cpus"),
        default=1,
        metavar="C",
        help="CPUs and torch threads per Ray worker without a GPU (%(default)s)",
    )


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
    _add_scene_args(a)
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
    _add_scene_args(r)
    _add_rate_args(r)
    r.add_argument("--no-fetch", action="store_true", help="never download model files")
    _add_render_args(r, with_preset=False)

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
    _add_render_args(m)


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

    i = sub.add_parser("info", help="versions, the device torch finds, and the model files")
    i.add_argument("--models", help="models folder (default: $M2V_MODELS or the per-user data folder)")
    i.add_argument("--json", action="store_true", help="one JSON document (the add-on's Check)")

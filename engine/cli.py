"""Command line: ``python -m engine [--events] <command>``.

Exit codes (see :mod:`engine.protocol`): 0 ok, 2 bad input (the message
names the file or flag and the problem, no traceback), 3 cancelled render,
1 internal error. ``--events`` makes every command speak JSON events on
stdout (the add-on's mode); ``render`` always does.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from engine import __version__
from engine.errors import InputError
from engine.models import DEVICES
from engine.protocol import (
    ANALYSIS_DEFAULTS,
    CUT_METHODS,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    INIT_SPACES,
    MOTION_DRIVES,
    PRESET_CHOICES,
    PRESETS,
    make_event,
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
        help="paper: the authors' workload; draft: a fast preview; musicvideo: paper with motion that follows the "
        "music; auto: paper on a GPU, draft on a CPU (%(default)s)",
    )
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


# ---------------------------------------------------------------- helpers


def settings_from_args(args: argparse.Namespace, preset: str):
    """Render settings: the flags the user gave, the preset's values for the rest."""
    from engine.presets import motion_value, preset_value
    from engine.render import RenderSettings

    size = preset_value(preset, "size", args.size)
    s = RenderSettings(
        width=size[0],
        height=size[1],
        cutouts=preset_value(preset, "cutouts", args.cutouts),
        cut_method=preset_value(preset, "cut_method", args.cut_method),
        lr=preset_value(preset, "lr", args.lr),
        seed=args.seed,
        style=args.style,
        style_weight=args.style_weight,
        prompt_average=args.prompt_average,
        l1_weight=args.l1_weight,
        layout=args.layout,
        footage=args.footage,
        footage_offset=args.footage_offset,
        footage_speed=args.footage_speed,
        footage_span=tuple(args.footage_span) if args.footage_span else None,
        footage_fps=args.footage_fps,
        init_weight=args.init_weight,
        init_space=args.init_space,
        footage_blend=args.footage_blend,
        zoom=motion_value(preset, "zoom", args.zoom),
        rotate=motion_value(preset, "rotate", args.rotate),
        shift=tuple(motion_value(preset, "shift", args.shift)),
        motion_drive=motion_value(preset, "motion_drive", args.motion_drive),
    )
    s.validate()
    return s


def model_paths_from_args(args: argparse.Namespace):
    from engine.models import resolve_model_paths

    return resolve_model_paths(
        args.models, args.vqgan_config, args.vqgan_ckpt, args.clip_model, args.clip_weights, args.audio_encoder
    )


def _render_kwargs(args: argparse.Namespace) -> dict:
    from engine.snapshots import DEFAULT_INTERVAL

    every = args.snapshot_every if args.snapshot_every is not None else DEFAULT_INTERVAL
    cap = None if args.cache_cap_mb is None else int(args.cache_cap_mb * 1e6)
    return {"device": args.device, "snapshot_every": every, "cache_cap_bytes": cap}


def _load(paths, device_name: str, settings=None):
    from engine.models import load_models, pick_device

    return load_models(paths, pick_device(device_name), encoder=bool(settings and settings.needs_encoder))


# ---------------------------------------------------------------- commands


def cmd_render(args: argparse.Namespace) -> int:
    from engine.files import check_output_dir
    from engine.plan import load_plan
    from engine.presets import describe, resolve_preset
    from engine.progress import Progress
    from engine.render import StopFlag, render

    check_output_dir(args.out, "--out")
    plan = load_plan(args.plan)  # checked before any model is loaded
    preset = args.preset
    if preset == "auto" and plan.get("analysis", {}).get("preset") in PRESETS:
        preset = plan["analysis"]["preset"]  # render as the plan was made to be rendered
    preset, _ = resolve_preset(preset, args.device)
    settings = settings_from_args(args, preset)
    print(f"render settings: {describe(preset)} preset, {settings.width}x{settings.height}", file=sys.stderr)
    models = None if args.layout else _load(model_paths_from_args(args), args.device, settings)
    stop = StopFlag()
    stop.install()
    code = render(args.plan, args.out, settings, models, Progress(), stop, **_render_kwargs(args))
    stop.ignore()
    return code


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_mp4
    from engine.files import check_output_file

    check_output_file(args.output, "-o")
    m = export_mp4(args.render_dir, args.output, fps=args.fps)
    print(
        f"wrote {args.output}: {m['frames']} frames at {m['fps']:.3f} fps, video {m['video_seconds']:.2f} s, "
        f"audio {m['audio_seconds']:.2f} s"
    )
    return EXIT_OK


def _models_dir(args: argparse.Namespace) -> Path:
    from engine import weights

    folder = Path(args.models).expanduser() if args.models else weights.default_models_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError("--models names a file, not a folder", folder)
    return folder


def cmd_models(args: argparse.Namespace) -> int:
    from engine import weights
    from engine.models import verify_structure

    if args.models_command is None:
        raise InputError("models needs an action: fetch or check (python -m engine models --help)")
    models_dir = _models_dir(args)
    if args.models_command == "check":
        rows = weights.check(models_dir)
        if args.json:
            print(json.dumps({"models": str(models_dir), "files": rows}, indent=1))
        else:
            print(f"models folder: {models_dir}")
            for r in rows:
                print(f"  {r['status']:9s} {r['name']}")
        return EXIT_OK if all(r["status"] in ("ok", "unpinned") for r in rows) else EXIT_INPUT
    got = weights.fetch(models_dir, names=args.only, mirror=args.mirror, progress=_fetch_bar, verify=verify_structure)
    print(file=sys.stderr)
    print(f"fetched {len(got)} file(s) into {models_dir}" + (": " + ", ".join(got) if got else " (all present)"))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from engine.info import engine_info

    info = engine_info(_models_dir(args))
    if args.events:
        _event("info", **{k: v for k, v in info.items() if k not in ("kind", "version")})
    elif args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"m2v engine {info['engine']}, python {info['python']}, torch {info['torch']}")
        print(f"device: {info['device']} ({info['device_name']})")
        print(f"models folder: {info['models_dir']}")
        for r in info["models"]:
            print(f"  {r['status']:9s} {r['name']}")
    return EXIT_OK


def _emit(plan: dict, args: argparse.Namespace) -> None:
    from engine.files import dumps_strict, write_json_atomic

    if args.output:
        write_json_atomic(plan, args.output)
    else:
        sys.stdout.write(dumps_strict(plan) + "\n")
    if args.plot:
        from engine.plot import plot_plan

        plot_plan(plan, args.plot)
    t = plan["totals"]
    if args.events:
        _event("planned", output=args.output, segments=len(plan["segments"]), steps=t["steps"], images=t["images"])


def _check_plan_outputs(args: argparse.Namespace) -> None:
    from engine.files import check_output_file

    if args.output:
        check_output_file(args.output, "-o")
    if args.plot:
        check_output_file(args.plot, "--plot")


def _warn(plan: dict, args: argparse.Namespace) -> None:
    for w in plan.get("warnings", []):
        if args.events:
            _event("warning", message=w)
        print(f"warning: {w}", file=sys.stderr)


def _preset_for_plan(args: argparse.Namespace) -> tuple[str, str]:
    """The resolved preset and device; says so when ``auto`` chose the draft."""
    from engine.presets import describe, resolve_preset

    preset, dev = resolve_preset(args.preset, args.device)
    if args.preset == "auto":
        why = "a GPU was found" if preset == "paper" else "no GPU was found"
        print(f"preset: {describe(preset)}, because {why} (--preset paper|draft to choose)", file=sys.stderr)
    return preset, dev


def _estimate(plan: dict, args: argparse.Namespace, asked: str) -> None:
    """Print (and record in the plan) what rendering it will cost on this device."""
    if args.no_estimate:
        return
    from engine.estimate import cached_calibration, device_label
    from engine.models import pick_device
    from engine.protocol import estimate_seconds, format_duration

    dev = pick_device(args.device)
    cal = cached_calibration(dev)
    preset = plan["analysis"]["preset"]
    w, h = PRESETS[preset]["size"]
    t = plan["totals"]
    sec = estimate_seconds(cal, t["steps"], t["images"], w, h, PRESETS[preset]["cutouts"])
    plan["analysis"]["calibration"] = cal
    plan["estimate"] = {"seconds": round(sec, 1), "device": device_label(dev), "preset": preset}
    line = f"{t['steps']} steps, {t['images']} images: about {format_duration(sec)} on {device_label(dev)}"
    other = plan["analysis"].get("paper_totals")
    if asked == "auto" and preset == "draft" and other:
        p = PRESETS["paper"]
        paper = estimate_seconds(cal, other["steps"], other["images"], *p["size"], p["cutouts"])
        line += f" (the paper preset: {other['steps']} steps, about {format_duration(paper)} here)"
    print(line, file=sys.stderr)
    if args.events:
        _event("estimate", steps=t["steps"], images=t["images"], seconds=round(sec, 1), device=device_label(dev))


def cmd_analyze(args: argparse.Namespace) -> int:
    from engine.plan import analyze

    _check_plan_outputs(args)
    preset, _ = _preset_for_plan(args)
    plan = analyze(
        args.song,
        preset=preset,
        granularity=args.granularity,
        lyrics_path=args.lyrics,
        min_rate=args.min_rate,
        max_rate=args.max_rate,
        fps=args.fps,
        min_length=args.min_length,
        target_length=args.target_length,
        start=args.start,
        end=args.end,
    )
    _warn(plan, args)
    _estimate(plan, args, args.preset)
    _emit(plan, args)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from engine.plan import parse_boundaries, plan_from_boundaries

    _check_plan_outputs(args)
    entries = None
    if args.segment_settings:
        from engine.segment_settings import load_segment_settings

        entries = load_segment_settings(args.segment_settings)
    preset, _ = _preset_for_plan(args)
    plan = plan_from_boundaries(
        args.song,
        parse_boundaries(args.boundaries),
        preset=preset,
        lyrics_path=args.lyrics,
        min_rate=args.min_rate,
        max_rate=args.max_rate,
        fps=args.fps,
    )
    if entries:
        from engine.segment_settings import apply_segment_settings

        plan["warnings"] += apply_segment_settings(plan, entries)
    _warn(plan, args)
    _estimate(plan, args, args.preset)
    _emit(plan, args)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from engine.files import check_output_dir, write_json_atomic
    from engine.plan import analyze
    from engine.plot import plot_plan

    out = check_output_dir(args.out, "--out")
    preset, _ = _preset_for_plan(args)
    settings = settings_from_args(args, preset)
    out.mkdir(parents=True, exist_ok=True)
    song, lyrics = args.song, args.lyrics
    if song is None:
        song, lyrics = _write_demo(out)
    plan = analyze(
        song,
        preset=preset,
        granularity=args.granularity,
        lyrics_path=lyrics,
        min_rate=args.min_rate,
        max_rate=args.max_rate,
        fps=args.fps,
        min_length=args.min_length,
        target_length=args.target_length,
    )
    args.events = False
    _warn(plan, args)
    if not args.layout:
        _estimate(plan, args, args.preset)
    write_json_atomic(plan, out / "plan.json")
    png = plot_plan(plan, out / "plan.png")
    segs = plan["segments"]
    n_lyric = sum(any(p["kind"] == "lyric" for p in s["parts"]) for s in segs)
    print(
        f"{Path(str(song)).name}: {plan['analysis'].get('tempo_bpm', 0):.1f} bpm, {len(segs)} segments "
        f"({n_lyric} with lyrics), {plan['totals']['steps']} steps, {plan['totals']['images']} images"
    )
    print(f"plan: {out / 'plan.json'}\nplot: {png}")
    return _run_render(args, out, settings)


def _write_demo(out: Path) -> tuple[Path, Path]:
    import soundfile as sf

    from engine.synth import demo_lrc, demo_song

    demo = demo_song()
    song = out / "demo_song.wav"
    sf.write(song, demo.y, demo.sr)
    lyrics = out / "demo_lyrics.lrc"
    lyrics.write_text(demo_lrc(), encoding="utf-8")
    print(f"synthesised the demo song: {song} ({demo.duration:.1f} s) and {lyrics}")
    return song, lyrics


def _run_models(args: argparse.Namespace):
    """The model files for ``run``, fetching the official ones on first use."""
    from engine import weights
    from engine.models import verify_structure

    try:
        return model_paths_from_args(args)
    except InputError as missing:
        if args.no_fetch:
            raise
        models_dir = _models_dir(args)
        print(f"downloading the official model files into {models_dir} (first use) ...", file=sys.stderr)
        try:
            weights.fetch(models_dir, progress=_fetch_bar, verify=verify_structure)
        except InputError as e:
            raise InputError(
                f"{missing}\nThe download failed too: {e}\nPreview the cut without models: python -m engine run --layout"
            ) from None
        print(file=sys.stderr)
        return model_paths_from_args(args)


def _run_render(args: argparse.Namespace, out: Path, settings) -> int:
    """Render the plan in ``out`` and export the video."""
    from engine.export import export_mp4
    from engine.progress import Progress
    from engine.protocol import EXIT_CANCELLED
    from engine.render import StopFlag, render

    models = None if args.layout else _load(_run_models(args), args.device, settings)
    stop = StopFlag()
    stop.install()
    frames = out / ("layout" if args.layout else "frames")
    # People read a bar (or a line per segment); the JSON events go to a file for tools.
    with open(out / "render-events.jsonl", "a", encoding="utf-8") as events:
        progress = Progress(out=events, bar=sys.stderr.isatty(), segment_lines=not sys.stderr.isatty())
        code = render(out / "plan.json", frames, settings, models, progress, stop, **_render_kwargs(args))
    if code == EXIT_CANCELLED:
        print(f"stopped: run the same command again to resume ({frames})", file=sys.stderr)
        return code
    video = out / ("layout.mp4" if args.layout else "video.mp4")
    m = export_mp4(frames, video, fps=args.fps)
    print(f"video: {video} ({m['video_seconds']:.1f} s at {m['fps']:.0f} fps, song muxed)")
    return EXIT_OK


def _fetch_bar(name: str, done: int, total: int | None) -> None:
    pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:8.1f} MB"
    print(f"\r{name}: {pct}", end="", file=sys.stderr, flush=True)


def _event(name: str, **fields) -> None:
    sys.stdout.write(json.dumps(make_event(name, **fields), ensure_ascii=False) + "\n")
    sys.stdout.flush()


COMMANDS = {
    "analyze": cmd_analyze,
    "plan": cmd_plan,
    "run": cmd_run,
    "render": cmd_render,
    "export": cmd_export,
    "models": cmd_models,
    "info": cmd_info,
}


def _fail(args: argparse.Namespace | None, message: str, code: int) -> int:
    """The one error path: a line on stderr for people, an ``error`` event for the add-on."""
    print(f"error: {message}", file=sys.stderr)
    if args is not None and (getattr(args, "events", False) or getattr(args, "command", None) == "render"):
        _event("error", message=message, code=code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own usage errors are bad input too
        return EXIT_INPUT if e.code not in (0, None) else EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - last line of defence: report, don't crash silently
        if isinstance(e, InputError):
            return _fail(args, str(e), EXIT_INPUT)
        if isinstance(e, OSError) and e.filename is not None:
            # A path the user gave that cannot be read or written: their input, named.
            return _fail(args, f"{e.filename}: {e.strerror or e}", EXIT_INPUT)
        traceback.print_exc()
        return _fail(args, "internal error in the m2v engine (details above); please report it", EXIT_INTERNAL)

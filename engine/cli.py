"""Command line: ``python -m engine <command>``.

Exit codes: 0 ok, 2 bad input (the message names the file and the problem),
1 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from engine import __version__
from engine.errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


def _add_rate_args(p: argparse.ArgumentParser) -> None:
    from engine.plan import DEFAULT_MAX_FPS, DEFAULT_MIN_FPS

    p.add_argument("--lyrics", metavar="FILE", help="timed lyrics: .lrc, .srt, .vtt or .csv")
    p.add_argument(
        "--min-fps",
        type=float,
        default=DEFAULT_MIN_FPS,
        help="images per second for the quietest segment (%(default)s)",
    )
    p.add_argument(
        "--max-fps", type=float, default=DEFAULT_MAX_FPS, help="images per second for the loudest segment (%(default)s)"
    )
    p.add_argument("-o", "--output", metavar="PLAN.json", help="write the plan here (default: print it)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the analysis to this image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="m2v engine: turn a song and its timed lyrics into a music-video plan.",
    )
    parser.add_argument("--version", action="version", version=f"m2v engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser(
        "analyze",
        help="find scene changes, rates and guidance in a song",
        description=(
            "Segment a song at drastic musical changes (or at every beat), give each segment a "
            "generation rate from its loudness and a guidance (its lyric or its own audio)."
        ),
    )
    a.add_argument("song", help="audio file (wav, flac, ogg, mp3, ...)")
    a.add_argument(
        "--granularity",
        choices=("scenes", "beats"),
        default="scenes",
        help="segment at scene changes (default) or at every beat",
    )
    a.add_argument("--min-length", type=float, default=3.0, help="shortest scene in seconds (%(default)s)")
    a.add_argument("--target-length", type=float, default=8.0, help="target mean scene length in seconds (%(default)s)")
    a.add_argument("--start", type=float, help="analyse from this song time (seconds)")
    a.add_argument("--end", type=float, help="analyse up to this song time (seconds)")
    _add_rate_args(a)

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
    _add_rate_args(p)

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
    r.add_argument("--granularity", choices=("scenes", "beats"), default="scenes")
    r.add_argument("--layout", action="store_true", help="render layout cards instead of images (no models needed)")
    r.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("W", "H"))
    r.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--style", help="a text style prompt for the whole song")
    r.add_argument("--fps", type=float, default=24.0, help="frame rate of the exported video (%(default)s)")
    r.add_argument("--no-fetch", action="store_true", help="never download model files")
    _add_model_args(r)
    m = sub.add_parser(
        "render",
        help="turn a plan into frames (VQGAN + CLIP), resumable and cached",
        description=(
            "Optimise one VQGAN latent through the song: each image is one step guided by its segment's lyric "
            "(CLIP text) or audio (Wav2CLIP). Progress goes to stdout as JSON lines. Ctrl-C finishes the current "
            "image and exits with code 3; running again resumes."
        ),
    )
    m.add_argument("plan", help="plan.json from analyze or plan")
    m.add_argument("--out", required=True, help="output folder (frames, manifest.json, state)")
    m.add_argument("--layout", action="store_true", help="preview: a titled card per image, no models needed")
    m.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("W", "H"))
    m.add_argument("--cutouts", type=int, default=32)
    m.add_argument("--steps-per-image", type=int, default=1)
    m.add_argument("--lr", type=float, default=0.1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    m.add_argument("--style", help="a text style prompt for the whole song, e.g. 'oil painting'")
    m.add_argument("--style-weight", type=float, default=0.5)
    m.add_argument(
        "--no-prompt-average",
        dest="prompt_average",
        action="store_false",
        help="turn off eq. 2 (averaging each segment's target with the previous one)",
    )
    m.add_argument(
        "--l1-weight", type=float, default=0.0, help="eq. 1: L1 pull of each latent to the previous (0: off)"
    )
    _add_model_args(m)

    e = sub.add_parser("export", help="write an MP4 of a finished render with the song")
    e.add_argument("render_dir", help="the render's output folder")
    e.add_argument("-o", "--output", required=True, metavar="VIDEO.mp4")
    e.add_argument("--fps", type=float, default=24.0)

    mo = sub.add_parser("models", help="download or check the official model files")
    msub = mo.add_subparsers(dest="models_command", metavar="ACTION")
    mf = msub.add_parser("fetch", help="download missing files (resumes, verifies SHA-256)")
    mf.add_argument("--models", help="models folder (default: $M2V_MODELS or the per-user data folder)")
    mf.add_argument("--mirror", help="base URL of a mirror holding the files under their names")
    mf.add_argument("--only", nargs="*", help="only these file names")
    mc = msub.add_parser("check", help="list the official files and whether they verify")
    mc.add_argument("--models")
    mc.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="models folder with the official files (default: $M2V_MODELS or per-user data)")
    p.add_argument("--vqgan-config", help="your own taming VQGAN config (.yaml)")
    p.add_argument("--vqgan-ckpt", help="your own taming VQGAN checkpoint (.ckpt)")
    p.add_argument(
        "--clip-model", default=None, help="open_clip model name or config .json (default ViT-B-32-quickgelu)"
    )
    p.add_argument("--clip-weights", help="weights for --clip-model (.safetensors preferred)")
    p.add_argument("--audio-encoder", help="your own Wav2CLIP.pt")


def _model_loader(args: argparse.Namespace):
    """Resolve every model file first (fast, clear errors), then return a loader for render()."""
    from engine.errors import InputError
    from engine.render import ModelPaths
    from engine.weights import default_models_dir, require

    models_dir = Path(args.models).expanduser() if args.models else default_models_dir()

    def given(value, what):
        if value is None:
            return None
        p = Path(value).expanduser()
        if not p.is_file():
            raise InputError(f"{what} not found", p)
        return p

    if (args.vqgan_config is None) != (args.vqgan_ckpt is None):
        raise InputError("--vqgan-config and --vqgan-ckpt go together")
    if args.clip_model and not args.clip_weights:
        raise InputError("--clip-model needs --clip-weights (the file to load)")
    paths = ModelPaths(
        vqgan_config=given(args.vqgan_config, "VQGAN config")
        or require(models_dir, "vqgan_imagenet_f16_16384/model.yaml"),
        vqgan_ckpt=given(args.vqgan_ckpt, "VQGAN checkpoint")
        or require(models_dir, "vqgan_imagenet_f16_16384/last.ckpt"),
        clip_model=args.clip_model or "ViT-B-32-quickgelu",
        clip_weights=given(args.clip_weights, "CLIP weights")
        or require(models_dir, "open_clip_vit_b32_openai.safetensors"),
        audio_encoder=given(args.audio_encoder, "audio encoder") or require(models_dir, "Wav2CLIP.pt"),
    )

    def load():
        from engine.clip_guide import load_clip
        from engine.vqgan import load_vqgan, use_fused_activation
        from engine.wav2clip import load_wav2clip

        use_fused_activation(True)
        return (
            load_vqgan(paths.vqgan_config, paths.vqgan_ckpt),
            load_clip(paths.clip_model, paths.clip_weights),
            load_wav2clip(paths.audio_encoder),
            paths,
        )

    return load


def cmd_render(args: argparse.Namespace) -> int:
    from engine.errors import InputError
    from engine.progress import Progress
    from engine.render import RenderSettings, StopFlag, render

    settings = RenderSettings(
        width=args.size[0],
        height=args.size[1],
        cutouts=args.cutouts,
        steps_per_image=args.steps_per_image,
        lr=args.lr,
        seed=args.seed,
        style=args.style,
        style_weight=args.style_weight,
        prompt_average=args.prompt_average,
        l1_weight=args.l1_weight,
        layout=args.layout,
    )
    settings.validate()
    loader = None if args.layout else _model_loader(args)
    stop = StopFlag()
    stop.install()
    progress = Progress()
    try:
        return render(args.plan, args.out, settings, loader, progress, stop, device=args.device)
    except InputError as e:
        progress.emit("error", message=str(e))
        raise


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_mp4

    m = export_mp4(args.render_dir, args.output, fps=args.fps)
    print(
        f"wrote {args.output}: {m['frames']} frames at {m['fps']:.3f} fps, video {m['video_seconds']:.2f} s, "
        f"audio {m['audio_seconds']:.2f} s"
    )
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from engine import weights

    models_dir = Path(args.models).expanduser() if args.models else weights.default_models_dir()
    if args.models_command == "check":
        rows = weights.check(models_dir)
        if args.json:
            print(json.dumps({"models": str(models_dir), "files": rows}, indent=1))
        else:
            print(f"models folder: {models_dir}")
            for r in rows:
                print(f"  {r['status']:9s} {r['name']}")
        return EXIT_OK if all(r["status"] in ("ok", "unpinned") for r in rows) else EXIT_INPUT
    if args.models_command == "fetch":
        got = weights.fetch(models_dir, names=args.only, mirror=args.mirror, progress=_fetch_bar)
        print(file=sys.stderr)
        print(f"fetched {len(got)} file(s) into {models_dir}" + (": " + ", ".join(got) if got else " (all present)"))
        return EXIT_OK
    print("usage: python -m engine models {fetch,check}", file=sys.stderr)
    return EXIT_INPUT


def _emit(plan: dict, output: str | None) -> None:
    from engine.plan import write_json_atomic

    if output:
        write_json_atomic(plan, output)
    else:
        json.dump(plan, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")


def _warn(plan: dict) -> None:
    for w in plan.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def cmd_analyze(args: argparse.Namespace) -> int:
    from engine.plan import analyze

    plan = analyze(
        args.song,
        granularity=args.granularity,
        lyrics_path=args.lyrics,
        min_fps=args.min_fps,
        max_fps=args.max_fps,
        min_length=args.min_length,
        target_length=args.target_length,
        start=args.start,
        end=args.end,
    )
    _warn(plan)
    _emit(plan, args.output)
    if args.plot:
        from engine.plot import plot_plan

        plot_plan(plan, args.plot)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from engine.plan import parse_boundaries, plan_from_boundaries

    plan = plan_from_boundaries(
        args.song,
        parse_boundaries(args.boundaries),
        lyrics_path=args.lyrics,
        min_fps=args.min_fps,
        max_fps=args.max_fps,
    )
    _warn(plan)
    _emit(plan, args.output)
    if args.plot:
        from engine.plot import plot_plan

        plot_plan(plan, args.plot)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from engine.plan import analyze, write_json_atomic
    from engine.plot import plot_plan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    song, lyrics = args.song, args.lyrics
    if song is None:
        import soundfile as sf

        from engine.synth import demo_lrc, demo_song

        demo = demo_song()
        song = out / "demo_song.wav"
        sf.write(song, demo.y, demo.sr)
        lyrics = out / "demo_lyrics.lrc"
        lyrics.write_text(demo_lrc(), encoding="utf-8")
        print(f"synthesised the demo song: {song} ({demo.duration:.1f} s) and {lyrics}")
    plan = analyze(song, granularity=args.granularity, lyrics_path=lyrics)
    _warn(plan)
    write_json_atomic(plan, out / "plan.json")
    png = plot_plan(plan, out / "plan.png")
    segs = plan["segments"]
    n_lyric = sum(s["guidance"]["kind"] == "lyric" for s in segs)
    print(
        f"{Path(str(song)).name}: {plan['analysis'].get('tempo_bpm', 0):.1f} bpm, {len(segs)} segments "
        f"({n_lyric} lyric-guided), {sum(s['images'] for s in segs)} images to generate"
    )
    print(f"plan: {out / 'plan.json'}\nplot: {png}")
    return _run_render(args, out)


def _run_render(args: argparse.Namespace, out: Path) -> int:
    """Render the plan in ``out`` and export the video, fetching official models if needed."""
    from engine import weights
    from engine.errors import InputError
    from engine.export import export_mp4
    from engine.progress import Progress
    from engine.render import RenderSettings, StopFlag, render

    settings = RenderSettings(
        width=args.size[0], height=args.size[1], seed=args.seed, style=args.style, layout=args.layout
    )
    loader = None
    if not args.layout:
        try:
            loader = _model_loader(args)
        except InputError as missing:
            models_dir = Path(args.models).expanduser() if args.models else weights.default_models_dir()
            if args.no_fetch:
                raise
            print(f"downloading the official model files into {models_dir} (first use) ...", file=sys.stderr)
            try:
                weights.fetch(models_dir, progress=_fetch_bar)
            except InputError as e:
                raise InputError(
                    f"{missing}\nThe download failed too: {e}\n"
                    f"Preview the cut without models: python -m engine run --layout"
                ) from None
            print(file=sys.stderr)
            loader = _model_loader(args)
    stop = StopFlag()
    stop.install()
    frames = out / ("layout" if args.layout else "frames")
    # People read a bar (or a line per segment); the JSON events go to a file for tools.
    with open(out / "render-events.jsonl", "a", encoding="utf-8") as events:
        progress = Progress(out=events, bar=sys.stderr.isatty(), segment_lines=not sys.stderr.isatty())
        code = render(out / "plan.json", frames, settings, loader, progress, stop, device=args.device)
    if code != EXIT_OK:
        print(f"stopped: run the same command again to resume ({frames})", file=sys.stderr)
        return code
    video = out / ("layout.mp4" if args.layout else "video.mp4")
    m = export_mp4(frames, video, fps=args.fps)
    print(f"video: {video} ({m['video_seconds']:.1f} s at {m['fps']:.0f} fps, song muxed)")
    return EXIT_OK


def _fetch_bar(name: str, done: int, total: int | None) -> None:
    pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:8.1f} MB"
    print(f"\r{name}: {pct}", end="", file=sys.stderr, flush=True)


COMMANDS = {
    "analyze": cmd_analyze,
    "plan": cmd_plan,
    "run": cmd_run,
    "render": cmd_render,
    "export": cmd_export,
    "models": cmd_models,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    try:
        return COMMANDS[args.command](args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - last line of defence: report, don't crash silently
        traceback.print_exc()
        print("error: internal error in the m2v engine (details above); please report it", file=sys.stderr)
        return EXIT_INTERNAL

"""Command line: ``python -m engine [--events] <command>``.

Exit codes (see :mod:`engine.protocol`): 0 ok, 2 bad input (the message
names the file or flag and the problem, no traceback), 3 cancelled render,
1 internal error. ``--events`` makes every command speak JSON events on
stdout (the add-on's mode); ``render`` always does.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import traceback
from fractions import Fraction
from pathlib import Path

from engine.analysis.plot import plot_bytes, plot_format
from engine.analysis.synth import demo_lrc, demo_song
from engine.cli.info import engine_info
from engine.cli.parser import UsageError, build_parser
from engine.cli.run_folder import check_run_inputs, claim_run_files, run_names, write_noted
from engine.cli.signals import cmd_signals
from engine.errors import InputError
from engine.files import (
    FolderLock,
    check_input_file,
    check_not_inputs,
    check_output_dir,
    check_output_file,
    created_file,
    dumps_strict,
    entry_kind,
    keep_created,
    make_dirs,
    open_append,
    undo_created,
)
from engine.models import weights
from engine.models.device import device_kind
from engine.models.factory import load_models, pick_device, resolve_model_paths, verify_structure
from engine.plan.build import analyze, parse_boundaries, plan_from_boundaries
from engine.plan.curves import load_curves
from engine.plan.presets import describe, resolve_preset
from engine.plan.prompts import apply_prompts, load_prompts
from engine.plan.schema import load_plan, validate_plan
from engine.plan.segment_settings import apply_segment_settings, load_segment_settings
from engine.progress import Progress
from engine.protocol import (
    EXIT_CANCELLED,
    EXIT_INPUT,
    EXIT_OK,
    LOCK_FILE,
    PRESETS,
    estimate_seconds,
    format_duration,
    make_event,
)
from engine.render.jobs.loop import render
from engine.render.jobs.ray_render import import_ray
from engine.render.jobs.ray_setup import check_address_flag, probe_address
from engine.render.sources.footage import FootageBackdrop
from engine.render.step.estimate import cached_calibration, device_label
from engine.settings import AnalysisSettings, JobSettings, RenderSettings
from engine.stopping import StopFlag, failure, guarded, hold_signals, interrupts
from engine.store.export import export_mp4, finished_segments
from engine.store.manifest import check_render_folder

# ---------------------------------------------------------------- helpers


def model_paths_from_args(args: argparse.Namespace):

    return resolve_model_paths(
        args.models, args.vqgan_config, args.vqgan_ckpt, args.clip_model, args.clip_weights, args.audio_encoder
    )


def job_from_args(args: argparse.Namespace) -> JobSettings:
    """How the render runs (``--chains``, ``--chain-at``, ``--ray*``, ...), checked before anything is written."""
    # --ray '' is no address (a bare --ray is a local instance): said as such, before the table's checks
    ray = check_address_flag(args.ray)
    job = JobSettings.from_args(argparse.Namespace(**{**vars(args), "ray": ray}))
    if job.ray is not None:
        import_ray()  # exit 2 with how to add it, before any model is loaded
        probe_address(job.ray_address)  # a few seconds at most: nothing answering there is exit 2 before any work
    return job


def with_curves(settings: RenderSettings, args: argparse.Namespace, plan: dict | None) -> RenderSettings:
    """The settings with the keyframed ones of ``--curves`` (checked against the plan's song; without a plan yet,
    everything but the keys' times)."""
    if not args.curves:
        return settings
    duration = float(plan["song"]["duration"]) if plan is not None else None
    return settings.with_curves(load_curves(args.curves, duration=duration))


def prompt_parts(args: argparse.Namespace):
    """The timed prompts of ``--prompts`` (read and checked before any work), or None."""
    return load_prompts(args.prompts) if args.prompts else None


def _load(paths, device_name: str, settings=None):

    return load_models(paths, pick_device(device_name), encoder=bool(settings and settings.needs_encoder))


# ---------------------------------------------------------------- commands


def cmd_render(args: argparse.Namespace) -> int:

    check_output_dir(args.out, "--out")
    check_render_folder(args.out)
    plan = load_plan(args.plan)  # checked before any model is loaded
    preset = args.preset
    if preset == "auto" and plan.get("analysis", {}).get("preset") in PRESETS:
        preset = plan["analysis"]["preset"]  # render as the plan was made to be rendered
    preset = resolve_preset(preset, lambda: device_kind(args.device))
    settings = with_curves(RenderSettings.from_args(args, preset), args, plan)
    job = job_from_args(args)
    print(f"render settings: {describe(preset)} preset, {settings.width}x{settings.height}", file=sys.stderr)
    # With --ray the workers render; the driver's models only give keys and guidance: on the CPU.
    here = "cpu" if job.ray is not None else job.device
    models = None if settings.layout else _load(model_paths_from_args(args), here, settings)
    stop = StopFlag()
    stop.install()
    code = render(args.plan, args.out, settings, models, Progress(), stop, job)
    stop.ignore()
    return code


def export_video(frames: Path, video: Path, fps: float, alpha: str | None = None) -> dict:
    """``export_mp4`` with frames that have alpha laid over the footage frames they followed (the render's own
    footage, read from its manifest; black where there is none)."""
    header, _ = finished_segments(frames)
    backdrop = FootageBackdrop(header.get("settings") or {})
    try:
        return export_mp4(frames, video, fps=fps, alpha=alpha, backdrop=backdrop)
    finally:
        backdrop.close()


def cmd_export(args: argparse.Namespace) -> int:

    if args.timeline is not None:
        if args.export_alpha is not None:
            raise InputError("--alpha goes with -o (a movie with alpha), not with --timeline")
        return _export_timeline(args)
    if args.plan_file is not None or args.song_frame or args.start_frame:
        raise InputError("--plan, --song-frame and --start-frame go with --timeline, not with -o")
    check_output_file(args.output, "-o")
    m = export_video(Path(args.render_dir), Path(args.output), float(Fraction(args.rate)), args.export_alpha)
    for w in m["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"wrote {args.output}: {m['frames']} frames at {m['fps']:.3f} fps, video {m['video_seconds']:.2f} s, "
        f"audio {m['audio_seconds']:.2f} s"
    )
    return EXIT_OK


def _export_timeline(args: argparse.Namespace) -> int:
    """``export --timeline``: the render as a timeline for another editor (:mod:`engine.store.timeline_export`)."""
    from engine.store.timeline_export import export_timeline, timeline_format

    timeline_format(args.timeline)  # an unknown extension before anything is read
    check_output_file(args.timeline, "--timeline")
    m = export_timeline(args.render_dir, args.timeline, args.rate, args.song_frame, args.start_frame, args.plan_file)
    for w in m["warnings"]:
        if args.events:
            _event("warning", message=w)
        print(f"warning: {w}", file=sys.stderr)
    if args.events:
        _event("exported", output=m["output"], format=m["format"], clips=m["clips"], gaps=m["gaps"])
    movies = f", {m['movies']} segment movies" if m["movies"] else ""
    # With --events stdout carries JSON only: the line for people goes to stderr then.
    print(
        f"wrote {m['output']}: {m['format']}, {m['clips']} clips, {m['gaps']} gaps{movies}",
        file=sys.stderr if args.events else sys.stdout,
    )
    return EXIT_OK


def _models_dir(args: argparse.Namespace) -> Path:

    folder = Path(args.models).expanduser() if args.models else weights.default_models_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError("--models names a file, not a folder", folder)
    return folder


def cmd_models(args: argparse.Namespace) -> int:

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
    known = [wf.name for wf in weights.REGISTRY.values()]
    unknown = [n for n in args.only or [] if n not in known]
    if unknown:
        raise InputError(f"--only: no official model file is called {', '.join(unknown)} (known: {', '.join(known)})")
    got = weights.fetch(models_dir, names=args.only, mirror=args.mirror, progress=_fetch_bar, verify=verify_structure)
    print(file=sys.stderr)
    print(f"fetched {len(got)} file(s) into {models_dir}" + (": " + ", ".join(got) if got else " (all present)"))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:

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
    """Write the plan (and its plot), after checking it as ``render`` will: a plan m2v writes, m2v renders."""

    try:
        validate_plan(plan, args.output or "<plan>")
    except InputError as e:
        raise InputError(f"this plan could not be rendered, so it is not written: {e}") from None
    picture = None
    if args.plot:  # drawn before anything is written: a plot that fails leaves no plan behind either

        picture = plot_bytes(plan, plot_format(args.plot))
    if args.output:
        write_noted(args.output, (dumps_strict(plan) + "\n").encode("utf-8"))
    if args.plot:
        write_noted(args.plot, picture)
    if not args.output:
        sys.stdout.write(dumps_strict(plan) + "\n")
    t = plan["totals"]
    if args.events:
        _event("planned", output=args.output, segments=len(plan["segments"]), steps=t["steps"], images=t["images"])


def _check_plan_outputs(args: argparse.Namespace) -> None:
    """Outputs checked before any work: writable, a plot format matplotlib writes, none of them an input."""

    inputs = {
        "song": args.song,
        "lyrics file": args.lyrics,
        "segment-settings file": getattr(args, "segment_settings", None),
        "prompts file": args.prompts,
        "edit": getattr(args, "boundaries_from", None),
    }
    check_not_inputs({"-o": args.output, "--plot": args.plot}, inputs)
    if args.output:
        check_output_file(args.output, "-o")
    if args.plot:

        check_output_file(args.plot, "--plot")
        plot_format(args.plot)


def _warn(plan: dict, args: argparse.Namespace) -> None:
    for w in plan.get("warnings", []):
        if args.events:
            _event("warning", message=w)
        print(f"warning: {w}", file=sys.stderr)


def _preset_for_plan(args: argparse.Namespace) -> str:
    """The resolved preset; says so when ``auto`` chose it."""

    preset = resolve_preset(args.preset, lambda: device_kind(args.device))
    if args.preset == "auto":
        why = "a GPU was found" if preset == "paper" else "no GPU was found"
        print(f"preset: {describe(preset)}, because {why} (--preset paper|draft to choose)", file=sys.stderr)
    return preset


def _estimate(plan: dict, args: argparse.Namespace, asked: str) -> None:
    """Print (and record in the plan) what rendering it will cost on this device."""
    if args.no_estimate:
        return

    dev = pick_device(args.device)
    cal = cached_calibration(dev, warn=lambda message: _warn({"warnings": [message]}, args))
    preset = plan["analysis"]["preset"]
    w, h = PRESETS[preset]["size"]
    t = plan["totals"]
    sec = estimate_seconds(cal, t["steps"], t["images"], w, h, PRESETS[preset]["cutouts"])
    plan["analysis"]["calibration"] = cal
    plan["estimate"] = {"seconds": round(sec, 1), "device": device_label(dev), "preset": preset}
    line = f"{t['steps']} steps, {t['images']} images: about {format_duration(sec)} on {device_label(dev)}"
    if plan["analysis"]["levels"].get("intensity") == "authors":
        line += " (the authors' intensity)"
    other = plan["analysis"].get("paper_totals")
    if asked == "auto" and preset == "draft" and other:
        p = PRESETS["paper"]
        paper = estimate_seconds(cal, other["steps"], other["images"], *p["size"], p["cutouts"])
        line += f" (the paper preset: {other['steps']} steps, about {format_duration(paper)} here)"
    print(line, file=sys.stderr)
    if args.events:
        _event("estimate", steps=t["steps"], images=t["images"], seconds=round(sec, 1), device=device_label(dev))


def analysis_from_args(args: argparse.Namespace, preset: str) -> AnalysisSettings:
    """The analysis flags (rates, intensity, frame rate, and for ``analyze`` and ``run`` the scenes), with the
    resolved ``preset``."""
    return AnalysisSettings.from_args(args).replace(preset=preset)


def cmd_analyze(args: argparse.Namespace) -> int:

    _check_plan_outputs(args)
    parts = prompt_parts(args)
    preset = _preset_for_plan(args)
    settings = analysis_from_args(args, preset)
    plan = analyze(args.song, settings, lyrics_path=args.lyrics, start=args.start, end=args.end)
    if parts:
        plan["warnings"] += apply_prompts(plan, parts)
    _warn(plan, args)
    _estimate(plan, args, args.preset)
    _emit(plan, args)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:

    _check_plan_outputs(args)
    entries = None
    if args.segment_settings:

        entries = load_segment_settings(args.segment_settings)
    parts = prompt_parts(args)
    preset = _preset_for_plan(args)
    settings = analysis_from_args(args, preset)
    edit = args.boundaries_from is not None
    bounds = _edit_boundaries(args, settings) if edit else parse_boundaries(args.boundaries)
    try:
        plan = plan_from_boundaries(args.song, bounds, settings, lyrics_path=args.lyrics)
    except InputError as e:
        if args.boundaries_from is None:
            raise
        raise InputError(f"--boundaries-from {args.boundaries_from}: the edit's cuts do not fit the song: {e}") from None
    if entries:

        plan["warnings"] += apply_segment_settings(plan, entries)
    if parts:
        plan["warnings"] += apply_prompts(plan, parts)
    _warn(plan, args)
    _estimate(plan, args, args.preset)
    _emit(plan, args)
    return EXIT_OK


def _edit_boundaries(args: argparse.Namespace, settings: AnalysisSettings) -> list[float]:
    """``--boundaries-from``: the edit's cuts as boundaries (:mod:`engine.plan.edit_cuts`, an EDL read at the plan's
    ``--fps``); its warnings printed."""
    from engine.plan.edit_cuts import read_edit_cuts

    check_input_file(args.song, "song")
    bounds, warnings = read_edit_cuts(args.boundaries_from, args.song, settings.fps)
    for w in warnings:
        if args.events:
            _event("warning", message=w)
        print(f"warning: {w}", file=sys.stderr)
    print(f"{args.boundaries_from}: {len(bounds) - 1} segments, {bounds[0]:.4f} s to {bounds[-1]:.4f} s", file=sys.stderr)
    return bounds


def cmd_run(args: argparse.Namespace) -> int:

    out = check_output_dir(args.out, "--out")
    if args.song is None and args.lyrics:
        raise InputError("--lyrics needs your song too (the demo song has its own lyrics): run SONG --lyrics FILE")
    if args.song is not None:
        check_input_file(args.song, "song")
    if args.lyrics:
        check_input_file(args.lyrics, "lyrics file")
    parts = prompt_parts(args)
    preset = _preset_for_plan(args)
    settings = with_curves(RenderSettings.from_args(args, preset), args, None)  # the keys' times: after the plan
    analysis = analysis_from_args(args, preset)
    names = run_names(args)
    check_run_inputs(args, out, names)
    # Missing model files are found (or fetched) before anything is written: a refused run leaves nothing.
    paths = None if settings.layout else _run_models(args, analysis)
    job = job_from_args(args)  # Ray's presence and --chain-at are checked before anything is written
    make_dirs(out)
    # The folder's lock before anything is written there: a second run into it is refused untouched.
    with FolderLock(out, LOCK_FILE):
        claim_run_files(out, names)
        return _run_in(args, out, analysis, settings, paths, job, parts)


def _run_in(args: argparse.Namespace, out: Path, analysis: AnalysisSettings, settings, paths, job, parts) -> int:
    """``run`` inside its locked folder: the demo (if no song), the plan and its plot, the render, the video."""

    song, lyrics = args.song, args.lyrics
    if song is None:
        song, lyrics = _write_demo(out)
    plan = analyze(song, analysis, lyrics_path=lyrics)
    if parts:
        plan["warnings"] += apply_prompts(plan, parts)
    settings = with_curves(settings.replace(curves=None), args, plan)  # now with the song's length
    args.events = False
    _warn(plan, args)
    if not args.layout:
        _estimate(plan, args, args.preset)
    picture = plot_bytes(plan, "png")
    write_noted(out / "plan.json", (dumps_strict(plan) + "\n").encode("utf-8"))
    png = out / "plan.png"
    write_noted(png, picture)
    print(_summary(song, plan))
    print(f"plan: {out / 'plan.json'}\nplot: {png}")
    return _run_render(args, out, settings, paths, job)


def _summary(song, plan: dict) -> str:
    """``run``'s line about the song's plan: tempo, segments, steps and images."""
    segs = plan["segments"]
    n_lyric = sum(any(p["kind"] == "lyric" for p in s["parts"]) for s in segs)
    return (
        f"{Path(str(song)).name}: {plan['analysis'].get('tempo_bpm', 0):.1f} bpm, {len(segs)} segments "
        f"({n_lyric} with lyrics), {plan['totals']['steps']} steps, {plan['totals']['images']} images"
    )


def _preview(args: argparse.Namespace, analysis: AnalysisSettings) -> None:
    """Before saying the models are missing: what the song's plan and render would be (the terminal only).

    Nothing is written where the user looks: the demo song, when it is the song, is analysed from a
    temporary folder that is removed again.
    """
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="m2v-preview-") as tmp:
        song, lyrics = args.song, args.lyrics
        if song is None:
            demo = demo_song()
            song, lyrics = Path(tmp) / "demo_song.wav", Path(tmp) / "demo_lyrics.lrc"
            sf.write(song, demo.y, demo.sr)
            lyrics.write_text(demo_lrc(), encoding="utf-8")
        plan = analyze(song, analysis, lyrics_path=lyrics)
        _warn(plan, argparse.Namespace(**{**vars(args), "events": False}))
        print(_summary(song, plan))
        _estimate(plan, argparse.Namespace(**{**vars(args), "events": False}), args.preset)


def _write_demo(out: Path) -> tuple[Path, Path]:
    import io

    import soundfile as sf


    demo = demo_song()
    song = out / "demo_song.wav"
    buf = io.BytesIO()
    sf.write(buf, demo.y, demo.sr, format="WAV")
    write_noted(song, buf.getvalue())
    lyrics = out / "demo_lyrics.lrc"
    write_noted(lyrics, demo_lrc().encode("utf-8"))
    print(f"synthesised the demo song: {song} ({demo.duration:.1f} s) and {lyrics}")
    return song, lyrics


def _run_models(args: argparse.Namespace, analysis: AnalysisSettings):
    """The model files for ``run``, fetching the official ones on first use.

    When they cannot be had, the song's plan summary and cost are shown first (:func:`_preview`), then why.
    """

    try:
        return model_paths_from_args(args)
    except InputError as missing:
        if args.no_fetch:
            _preview(args, analysis)
            raise
        models_dir = _models_dir(args)
        print(f"downloading the official model files into {models_dir} (first use) ...", file=sys.stderr)
        try:
            weights.fetch(models_dir, progress=_fetch_bar, verify=verify_structure)
        except InputError as e:
            print(file=sys.stderr)
            _preview(args, analysis)
            raise InputError(
                f"{missing}\nThe download failed too: {e}\nPreview the cut without models: python -m engine run --layout"
            ) from None
        print(file=sys.stderr)
        return model_paths_from_args(args)


def _run_render(args: argparse.Namespace, out: Path, settings, paths, job: JobSettings) -> int:
    """Render the plan in ``out`` and export the video."""

    here = "cpu" if job.ray is not None else job.device
    models = None if settings.layout else _load(paths, here, settings)
    stop = StopFlag()
    stop.install()
    frames = out / ("layout" if args.layout else "frames")
    # People read a bar (or a line per segment); the JSON events go to a file for tools.
    events_path = out / "render-events.jsonl"
    if entry_kind(events_path) is None:
        created_file(events_path)
    try:
        with io.TextIOWrapper(open_append(events_path, "event log"), encoding="utf-8") as events:
            progress = Progress(out=events, bar=sys.stderr.isatty(), segment_lines=not sys.stderr.isatty())
            code = render(out / "plan.json", frames, settings, models, progress, stop, job)
    except BaseException:
        if frames.is_dir():
            keep_created()  # finished frames: the plan they belong to stays with them
        raise
    keep_created()
    interrupts()  # the render's own handlers are done with: a signal during the export interrupts it
    if code == EXIT_CANCELLED:
        print(f"stopped: run the same command again to resume ({frames})", file=sys.stderr)
        return code
    video = out / ("layout.mp4" if args.layout else "video.mp4")
    m = export_video(frames, video, args.fps)
    for w in m["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
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
    "signals": cmd_signals,
}


def _fail(args: argparse.Namespace | None, message: str, code: int) -> int:
    """The one error path: a line on stderr for people, an ``error`` event for the add-on."""
    print(f"error: {message}", file=sys.stderr)
    if args is not None and (getattr(args, "events", False) or getattr(args, "command", None) == "render"):
        _event("error", message=message, code=code)
    return code


def _output_folder(args: argparse.Namespace) -> str:
    """Where the command writes, for an error that names none (``ENOSPC`` carries no file name)."""
    out = getattr(args, "out", None)
    if out is None and getattr(args, "command", None) in ("analyze", "plan", "export"):
        target = getattr(args, "output", None) or getattr(args, "plot", None) or getattr(args, "timeline", None)
        if target is None:
            return "the standard output"
        out = Path(target).expanduser().absolute().parent
    return str(out if out is not None else Path.cwd())


def main(argv: list[str] | None = None) -> int:
    """Run one command (exit codes and stop signals: :mod:`engine.stopping`)."""
    return guarded(lambda: _main(argv), cleanup=undo_created)


def _main(argv: list[str] | None) -> int:

    parser = build_parser(raise_usage_errors=True)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:  # a flag argparse refused: bad input, through the one error path
        sys.stderr.write(e.usage)
        words = list(sys.argv[1:] if argv is None else argv)
        events = "--events" in words[: words.index(e.command)] if e.command in words else "--events" in words
        return _fail(argparse.Namespace(command=e.command, events=events), str(e), EXIT_INPUT)
    except SystemExit as e:  # --help, --version
        return failure(e)[0]
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence: report, don't crash silently
        hold_signals()  # a second signal must not cut the cleanup short
        undo_created()  # a refused command leaves nothing it created
        code, message = failure(e, _output_folder(args))
        if message is None:
            traceback.print_exc()
            message = "internal error in the m2v engine (details above); please report it"
        return _fail(args, message, code)

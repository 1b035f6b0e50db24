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
        help="the main job: analyse (and draw) a song, the demo song by default",
        description="Analyse a song into a plan and a picture. Without a song, synthesises the demo song.",
    )
    r.add_argument("song", nargs="?", help="audio file (default: synthesise the demo song)")
    r.add_argument("--lyrics", metavar="FILE", help="timed lyrics for your song")
    r.add_argument("--out", default="m2v-out", help="output folder (%(default)s)")
    r.add_argument("--granularity", choices=("scenes", "beats"), default="scenes")
    return parser


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
    return EXIT_OK


COMMANDS = {"analyze": cmd_analyze, "plan": cmd_plan, "run": cmd_run}


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

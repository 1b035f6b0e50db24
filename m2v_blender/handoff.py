"""Hand-off to other editors (issue 29): the engine commands behind Export m2v Timeline and Import Cuts from Edit.

Plain Python, no bpy. OpenTimelineIO and its adapters live in the engine's
environment, not Blender's, so the engine writes and reads the files; the
add-on says where the timeline is: the scene's rate as an exact fraction
(30 / 1.001 is 30000/1001), the frame at which the song strip plays song time
0, and the scene's first frame. The engine then puts each clip on the frames
of the add-on's own strip for that segment (both round a song time to the
nearest frame and show the image whose slot holds the frame's time).
"""

from __future__ import annotations

from pathlib import Path

from . import flags
from .contract import protocol
from .errors import M2VError
from .timeline import StripTiming

#: (extension, label, description) for the export's format choice; the engine picks the format by extension.
FORMATS = [
    (".otio", "OpenTimelineIO (.otio)", "DaVinci Resolve, Kdenlive 25.04+, any OTIO tool: the PNGs as image sequences"),
    (".xml", "Final Cut Pro 7 XML (.xml)", "Premiere Pro, DaVinci Resolve, Final Cut Pro 7: a movie per segment"),
    (".fcpxml", "FCPXML (.fcpxml)", "Final Cut Pro: a movie per segment"),
    (".edl", "CMX 3600 EDL (.edl)", "Any editor, Avid: the cut and its movies, no audio track"),
    (".kdenlive", "Kdenlive (.kdenlive)", "Kdenlive and MLT's melt: a movie per segment"),
]
SUFFIXES = tuple(f[0] for f in FORMATS)


def rate_text(fps: float, fps_base: float) -> str:
    """The scene's frame rate as the engine's exact ``N/D`` (Blender keeps 29.97 as 30 / 1.001)."""
    num, den = protocol.timeline_rate(fps / fps_base)
    return f"{num}/{den}"


def song_frame(timing: StripTiming) -> float:
    """The timeline frame at which the song's time 0 plays (it may lie before the strip's start)."""
    return timing.frame_start + timing.sound_offset * timing.fps


def with_suffix(path: str | Path, suffix: str) -> Path:
    """The file to write: ``path`` as given when it names a format, else with the chosen format's extension."""
    path = Path(path)
    return path if path.suffix.lower() in SUFFIXES else path.with_name(path.name + suffix)


def latest_render(out: Path) -> Path:
    """The render folder the strips come from: of ``frames`` and ``layout``, the one rendered last."""
    found = [(out / name / protocol.MANIFEST_FILE) for name in ("frames", "layout")]
    found = [m for m in found if m.is_file()]
    if not found:
        raise M2VError(f"nothing rendered in {out} yet: press Render or Preview Layout first")
    return max(found, key=lambda m: m.stat().st_mtime_ns).parent


def export_args(render_dir: Path, path: Path, rate: str, timing: StripTiming, start_frame: int) -> list[str]:
    """``export RENDER --timeline PATH``: at the scene's rate, the song where its strip plays it (the flags from the
    settings table's rows)."""
    return [
        "export",
        str(render_dir),
        *flags.flag("timeline", path),
        *flags.flag("rate", rate),
        *flags.flag("song_frame", song_frame(timing)),
        *flags.flag("start_frame", start_frame),
    ]


def import_args(song: Path, edit: Path, fps: float, plan_out: Path) -> list[str]:
    """``plan SONG --boundaries-from EDIT``: the edit's cuts on the song (an EDL read at the scene's rate); the flags
    from the settings table's rows."""
    if edit.suffix.lower() not in SUFFIXES:
        raise M2VError(f"{edit.name}: choose an edit saved as {', '.join(SUFFIXES)}")
    if not edit.is_file():
        raise M2VError(f"the edit file is missing: {edit}")
    return [
        "plan",
        str(song),
        *flags.flag("boundaries_from", edit),
        *flags.flag("preset", "draft"),
        *flags.flag("fps", fps),
        *flags.flag("no_estimate", True),
        *flags.flag("output", plan_out),
    ]

"""The editor's footage strip, told to the engine: its file and where it sits against the song.

Blender shows movie frame ``(f - frame_start) x rate + animation_offset_start`` at timeline frame ``f``
(``SEQ_give_frame_index``): ``rate`` is 1 for a strip that plays its movie frame for frame, or the movie's
frame rate over the scene's for one added with *Adjust Playback Rate* (Blender's default in the UI; the
flag is not exposed to Python, so it is read off the strip's length). Trims (``frame_offset_start/end``)
hide frames without moving the content. The engine wants three numbers (``engine/render/sources/footage.py``): the movie
time at song time 0 (``--footage-offset``), movie seconds per song second (``--footage-speed``), and the
song times where the strip is visible (``--footage-span``). The arithmetic is plain Python
(:func:`footage_timing`), tested without Blender.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import flags, vse
from .contract import protocol
from .errors import M2VError
from .timeline import StripTiming

#: Still images an image strip may hold (as the engine reads them).
STILL_SUFFIXES = protocol.STILL_SUFFIXES


@dataclass(frozen=True)
class Placement:
    """Where a footage strip's content sits on the timeline."""

    frame_start: float  # timeline frame of content frame 0 (before animation_offset_start)
    frame_final_start: float  # first visible frame
    frame_final_end: float  # frame after the last visible one
    content_offset: float = 0.0  # animation_offset_start: content frames skipped at the start
    media_fps: float = 24.0  # the movie's own rate (an image sequence: the scene's)
    rate: float = 1.0  # content frames per timeline frame


def footage_timing(song: StripTiming, p: Placement) -> tuple[float, float, tuple[float, float]]:
    """``(offset, speed, span)`` for the engine, from the song strip's timing and the footage's placement.

    Song time ``t`` plays at frame ``f = F + (t + sound_offset) x fps`` (``StripTiming``); there Blender
    shows content frame ``m = (f - frame_start) x rate + content_offset``, which starts at movie time
    ``m / media_fps``. Both maps are linear, so movie time = ``offset + speed x t``.
    """
    r = song.fps
    speed = r * p.rate / p.media_fps
    offset = ((song.frame_start + song.sound_offset * r - p.frame_start) * p.rate + p.content_offset) / p.media_fps
    span = (song.time_at(p.frame_final_start), song.time_at(p.frame_final_end))
    return offset, speed, span


def playback_rate(content_frames: int, frame_duration: int, media_fps: float, scene_fps: float) -> float:
    """Content frames per timeline frame: 1 (frame for frame) or ``media_fps / scene_fps`` (Adjust Playback Rate).

    Blender stores the strip's length as ``content_frames / rate`` (truncated), which tells the two apart.
    """
    auto = media_fps / scene_fps
    if abs(frame_duration - content_frames) <= 1:
        return 1.0
    if abs(frame_duration - content_frames / auto) <= 1:
        return auto
    raise M2VError(
        "m2v cannot tell the footage strip's speed (is it inside a speed effect or retimed?): "
        "use a strip that plays at its own speed"
    )


def image_sequence(directory: Path, names: list[str]) -> Path:
    """The folder of an image strip with several images; they must be all its pictures, in name order."""
    import re

    def key(name: str) -> list:
        return [int(x) if x.isdigit() else x.lower() for x in re.split(r"(\d+)", name)]

    pictures = sorted((p.name for p in directory.iterdir() if p.suffix.lower() in STILL_SUFFIXES), key=key)
    if pictures != list(names):
        raise M2VError(
            f"the footage strip's images must be all the pictures in {directory}, in name order "
            "(m2v reads the folder as an image sequence)"
        )
    return directory


def footage_args(scene, strip, song: StripTiming) -> list[str]:
    """Engine flags for a movie or image strip used as footage."""
    import bpy

    scene_fps = song.fps  # the song's timing is in the scene's frame rate
    if len(getattr(strip, "retiming_keys", ())) > 0:
        raise M2VError(f"the footage strip {strip.name!r} is retimed: m2v follows footage at its own speed")
    common = dict(
        frame_start=float(strip.frame_start),
        frame_final_start=float(strip.frame_final_start),
        frame_final_end=float(strip.frame_final_end),
        content_offset=float(getattr(strip, "animation_offset_start", 0) or 0),
    )
    if strip.type == "MOVIE":
        path = Path(bpy.path.abspath(strip.filepath))
        if not path.is_file():
            raise M2VError(f"the footage strip's movie is missing: {path}")
        media_fps = float(strip.fps) or scene_fps
        clip = bpy.data.movieclips.load(str(path))
        try:
            frames = int(clip.frame_duration)
        finally:
            bpy.data.movieclips.remove(clip)
        content = frames - int(strip.animation_offset_start) - int(strip.animation_offset_end)
        rate = playback_rate(content, int(strip.frame_duration), media_fps, scene_fps)
        placement = Placement(**common, media_fps=media_fps, rate=rate)
        extra: list[str] = []
    elif strip.type == "IMAGE":
        directory = Path(bpy.path.abspath(strip.directory))
        names = [e.filename for e in strip.elements]
        if len(names) == 1:
            path = directory / names[0]
            if not path.is_file():
                raise M2VError(f"the footage strip's image is missing: {path}")
            extra = []
        else:
            path = image_sequence(directory, names)
            extra = flags.flag("footage_fps", scene_fps)
        placement = Placement(**common, media_fps=scene_fps, rate=1.0)
    else:
        raise M2VError(
            f"the footage strip {strip.name!r} is a {strip.type.lower()} strip: choose a movie or image strip"
        )
    offset, speed, span = footage_timing(song, placement)
    timing = [*flags.flag("footage_offset", offset), *flags.flag("footage_speed", speed)]
    return [*flags.flag("footage", path), *timing, *flags.flag("footage_span", span), *extra]


def footage_strip(scene, name: str):
    """The footage strip by name (a movie or image strip)."""
    for s in vse.all_strips(scene):
        if s.name == name:
            return s
    raise M2VError(f"the footage strip {name!r} is gone: choose the footage strip again")


def render_args(scene, song: StripTiming) -> tuple[list[str], int]:
    """Engine flags for the scene's footage strip (none without one), and the lowest channel for generated strips.

    The pull, the carry-over and the motion are settings-table rows: ``flags.setting_args`` passes them."""
    st = scene.m2v
    if not st.footage_strip:
        return [], 0
    strip = footage_strip(scene, st.footage_strip)
    return footage_args(scene, strip, song), strip.channel + 1

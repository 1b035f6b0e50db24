"""Blender's side of the timeline: the output folder, the song strip's timing and file, generated strips."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import timeline, vse
from .errors import M2VError


def output_dir(scene) -> Path:
    st = scene.m2v
    out = Path(bpy.path.abspath(st.output_dir or "//m2v/"))
    if not out.is_absolute():
        raise M2VError("save the .blend file first, or choose an absolute Output folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def strip_timing(scene, strip) -> timeline.StripTiming:
    """Where the strip's song sits: its start, less any content slip (animation_offset_start), plus Sound Offset."""
    fps = scene_fps(scene)
    return timeline.StripTiming(
        # Measured in a mixdown: slipping the content by N frames plays file time 0 N frames earlier.
        frame_start=float(strip.frame_start) - float(getattr(strip, "animation_offset_start", 0.0) or 0.0),
        frame_final_start=float(strip.frame_final_start),
        frame_final_end=float(strip.frame_final_end),
        fps=fps,
        sound_offset=float(getattr(strip, "sound_offset", 0.0) or 0.0),
    )


def song_path(strip) -> Path:
    path = Path(bpy.path.abspath(strip.sound.filepath))
    if not path.exists():
        raise M2VError(f"the song file of strip {strip.name!r} is missing: {path}")
    return path


def place_segment(
    scene, timing: timeline.StripTiming, ev: dict, min_channel: int = 0, blend_type: str | None = None
) -> None:
    """An image strip for a finished segment (a ``segment_end`` event), from its marker's frame to the next one's.

    ``min_channel``: the lowest channel allowed (above the footage and matte strips the frames follow);
    ``blend_type``: the strip's blend (default: the panel's Blend; Alpha Over for frames with a matte's alpha)."""
    start, end = timing.frame_at(ev["start"]), timing.frame_at(ev["end"])
    if end <= start:
        return
    key = ev["key"]
    mine = vse.m2v_strips(scene)
    if any(s.get(vse.STRIP_TAG) == key and s.frame_final_start == start and s.frame_final_end == end for s in mine):
        return  # reused segment, strip already in place
    vse.remove_strips(scene, [s for s in mine if s.frame_final_start < end and s.frame_final_end > start])
    files = timeline.strip_files(ev, timing, start, end)
    st = scene.m2v
    strip = vse.top_strips(scene).new_image(
        name=f"m2v S{ev['segment'] + 1:02d}",
        filepath=str(Path(ev["dir"]) / files[0]),
        channel=vse.free_channel(scene, max(st.channel, min_channel), start, end),
        frame_start=start,
        fit_method="FIT",
    )
    for name in files[1:]:
        strip.elements.append(name)
    strip.frame_final_duration = end - start
    strip[vse.STRIP_TAG] = key
    strip.blend_type = blend_type or st.blend_type
    strip.blend_alpha = st.opacity


def drop_stale_strips(scene, live_keys: set[str]) -> None:
    vse.remove_strips(scene, [s for s in vse.m2v_strips(scene) if s.get(vse.STRIP_TAG) not in live_keys])

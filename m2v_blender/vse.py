"""Video Sequence Editor access that works on Blender 4.2 LTS (``sequences``) and 5.x (``strips``)."""

from __future__ import annotations

import bpy

from .errors import M2VError

#: Custom property on every strip m2v creates; its value is the segment's cache key.
STRIP_TAG = "m2v_segment_key"


def top_strips(scene: bpy.types.Scene):
    """The top-level strip collection (has ``new_image``/``new_sound``/``remove``)."""
    sed = scene.sequence_editor_create()
    return sed.strips if hasattr(sed, "strips") else sed.sequences


def all_strips(scene: bpy.types.Scene) -> list:
    sed = scene.sequence_editor
    if sed is None:
        return []
    return list(sed.strips_all if hasattr(sed, "strips_all") else sed.sequences_all)


def sound_strips(scene: bpy.types.Scene) -> list:
    return [s for s in all_strips(scene) if s.type == "SOUND"]


def m2v_strips(scene: bpy.types.Scene) -> list:
    return [s for s in all_strips(scene) if s.get(STRIP_TAG) is not None]


def song_strip(scene: bpy.types.Scene, name: str = ""):
    """The chosen sound strip: by name, else the active sound strip, else the only one."""
    sounds = sound_strips(scene)
    if name:
        for s in sounds:
            if s.name == name:
                return s
        raise M2VError(f"the sound strip {name!r} is gone: choose the song strip again")
    sed = scene.sequence_editor
    active = getattr(sed, "active_strip", None) if sed else None
    if active is not None and active.type == "SOUND":
        return active
    if len(sounds) == 1:
        return sounds[0]
    if not sounds:
        raise M2VError("there is no sound strip: add your song to the timeline (Add > Sound)")
    raise M2VError("there are several sound strips: click the song strip to make it active")


def free_channel(scene: bpy.types.Scene, preferred: int, start: int, end: int) -> int:
    """Lowest channel >= ``preferred`` with no strip overlapping frames ``[start, end)``."""
    busy: dict[int, list] = {}
    for s in all_strips(scene):
        busy.setdefault(s.channel, []).append((s.frame_final_start, s.frame_final_end))
    ch = max(1, preferred)
    while ch < 128:
        if all(e <= start or b >= end for b, e in busy.get(ch, [])):
            return ch
        ch += 1
    raise M2VError(f"no free channel from {preferred} up for the generated strips: choose a lower Channel")


def remove_strips(scene: bpy.types.Scene, strips: list) -> None:
    """Remove m2v's own strips with the prefetch thread paused (it can read a strip being removed)."""
    sed = scene.sequence_editor
    if sed is None or not strips:
        return
    prefetch = getattr(sed, "use_prefetch", None)
    if prefetch is not None:
        sed.use_prefetch = False
    try:
        coll = top_strips(scene)
        for s in strips:
            if s.get(STRIP_TAG) is not None:
                coll.remove(s)
    finally:
        if prefetch is not None:
            sed.use_prefetch = prefetch

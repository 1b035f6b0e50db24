"""Helpers for scripts that run inside real Blender (the bpy module) in a subprocess.

Each add-on test writes a short script that imports this module, installs the
built extension zip the way Blender does (``extensions.package_install_files``
into an isolated user folder), drives the operators and prints JSON results.
"""

from __future__ import annotations

import json
import sys

import bpy


def install(zip_path: str) -> str:
    """Install and enable the extension zip; return the add-on module name."""
    import addon_utils

    bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True, overwrite=True
    )
    name = "bl_ext.user_default.m2v"
    loaded_default, loaded_state = addon_utils.check(name)
    if not loaded_state:
        raise SystemExit(f"the extension did not enable: {name}")
    return name


def strips_of(scene):
    sed = scene.sequence_editor
    return sed.strips if hasattr(sed, "strips") else sed.sequences


def all_strips(scene):
    sed = scene.sequence_editor
    return list(sed.strips_all if hasattr(sed, "strips_all") else sed.sequences_all)


def song_scene(song: str, out: str, fps=(30000, 1001), frame_start=101, trim_start=48, trim_end=30):
    """A scene at 29.97 fps with the song as a sound strip that starts late and is trimmed at both ends."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps[0], fps[1] / 1000 if fps[1] == 1001 else fps[1]
    if fps == (30000, 1001):
        scene.render.fps, scene.render.fps_base = 30, 1.001
    scene.sequence_editor_create()
    strip = strips_of(scene).new_sound("song", song, 1, frame_start)
    strip.frame_offset_start = trim_start
    strip.frame_offset_end = trim_end
    scene.sequence_editor.active_strip = strip
    scene.m2v.output_dir = out
    return scene, strip


def markers(scene):
    return sorted(((m.name, m.frame) for m in scene.timeline_markers), key=lambda x: (x[1], x[0]))


def m2v_strips(scene):
    out = []
    for s in all_strips(scene):
        if s.get("m2v_segment_key") is not None:
            out.append(
                {
                    "name": s.name,
                    "start": s.frame_final_start,
                    "end": s.frame_final_end,
                    "channel": s.channel,
                    "key": s["m2v_segment_key"],
                    "elements": len(s.elements),
                    "dir": s.directory,
                    "files": [e.filename for e in s.elements],
                }
            )
    return sorted(out, key=lambda d: d["start"])


def emit(**kw) -> None:
    sys.stdout.write("RESULT " + json.dumps(kw) + "\n")
    sys.stdout.flush()


def render_vse_frames(scene, folder: str, frames, prefix: str = "f", size=(64, 48)) -> None:
    """Render the sequencer at each timeline frame to ``folder/<prefix><frame:05d>.png`` (no view transform)."""
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    for f in frames:
        scene.frame_set(f)
        scene.render.filepath = f"{folder}/{prefix}{f:05d}.png"
        bpy.ops.render.render(write_still=True)

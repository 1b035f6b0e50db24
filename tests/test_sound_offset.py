"""A sound strip's Sound Offset, checked against Blender itself: mix a click down and find it.

A WAV with one click at a known file time goes into a fresh 29.97 fps scene as a trimmed sound strip
with a nonzero ``sound_offset``; Blender mixes the scene down, and the frame where the click is heard
in the mixdown must be where ``StripTiming.frame_at`` (built from the strip's own properties, as the
add-on builds it) says it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from m2v_blender.timeline import StripTiming
from tests.conftest import REPO

if __import__("importlib").util.find_spec("bpy") is None:
    pytest.skip("bpy (Blender as a module) is not installed", allow_module_level=True)

SR = 48000
CLICK = 1.5  # file time of the click, seconds


def blender(script: str, tmp_path, timeout: float = 300) -> list[dict]:
    """Run a script in a fresh Blender (bpy) process with its own user folder; return its RESULT lines."""
    user = tmp_path / "blender-user"
    user.mkdir(exist_ok=True)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


# (sound_offset seconds, frame_offset_start, frame_offset_end, click heard, animation_offset_start): both
# signs, trimmed at both ends. The strip starts at frame 101; the click plays at about frame 158 with +0.4 s
# and 137 with -0.3 s, so the 4th case's start trim (to frame 151) cuts it: silent, and outside the add-on's
# visible span too. The last case also slips the content 10 frames earlier inside the strip.
CASES = [
    (0.4, 20, 30, True, 0),
    (-0.3, 20, 30, True, 0),
    (0.4, 0, 0, True, 0),
    (-0.3, 50, 10, False, 0),
    (0.4, 20, 0, True, 10),
]


def test_sound_offset_matches_blender_mixdown(tmp_path):
    click = np.zeros(4 * SR, dtype=np.float32)
    i = int(CLICK * SR)
    click[i], click[i + 1] = 0.9, -0.9
    wav = tmp_path / "click.wav"
    sf.write(wav, click, SR, subtype="PCM_16")

    res = blender(
        f"""
        import json, sys
        import bpy

        sys.path.insert(0, {str(REPO)!r})
        from m2v_blender.adapters import strip_timing  # the add-on's own reading of a strip

        for n, (offset, trim_start, trim_end, _, slip) in enumerate({CASES!r}):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            scene = bpy.context.scene
            scene.render.fps, scene.render.fps_base = 30, 1.001
            scene.sequence_editor_create()
            sed = scene.sequence_editor
            strips = sed.strips if hasattr(sed, "strips") else sed.sequences
            strip = strips.new_sound("click", {str(wav)!r}, 1, 101)
            strip.sound_offset = offset
            strip.frame_offset_start = trim_start
            strip.frame_offset_end = trim_end
            strip.animation_offset_start = slip
            scene.frame_start, scene.frame_end = 1, 300
            out = {str(tmp_path)!r} + f"/mix{{n}}.wav"
            bpy.ops.sound.mixdown(filepath=out, container="WAV", codec="PCM", format="S16", mixrate={SR})
            t = strip_timing(scene, strip)
            sys.stdout.write("RESULT " + json.dumps(dict(
                mix=out,
                scene_start=scene.frame_start,
                fps=t.fps,
                frame_start=t.frame_start,
                frame_final_start=t.frame_final_start,
                frame_final_end=t.frame_final_end,
                sound_offset=t.sound_offset,
            )) + "\\n")
        """,
        tmp_path,
    )
    assert len(res) == len(CASES)
    for (offset, trim_start, _, audible, _), r in zip(CASES, res):
        assert r["sound_offset"] == pytest.approx(offset) and r["frame_final_start"] == 101 + trim_start
        timing = StripTiming(
            frame_start=float(r["frame_start"]),
            frame_final_start=float(r["frame_final_start"]),
            frame_final_end=float(r["frame_final_end"]),
            fps=r["fps"],
            sound_offset=float(r["sound_offset"]),
        )
        mix, sr = sf.read(r["mix"], always_2d=True)
        level = np.abs(mix).sum(axis=1)
        t0, t1 = timing.visible_span()
        assert (level.max() > 0.1) == audible, (offset, trim_start, level.max())
        if not audible:
            # Trimmed away in Blender: the add-on must not count the click as part of the strip either.
            assert not t0 <= CLICK < t1, (offset, trim_start, t0, t1)
            continue
        heard = r["scene_start"] + int(np.argmax(level)) / sr * r["fps"]  # scene frame of the click
        assert abs(timing.frame_at(CLICK) - heard) <= 1.0, (offset, trim_start, timing.frame_at(CLICK), heard)
        assert abs(timing.time_at(heard) - CLICK) <= 1.0 / r["fps"]
        assert t0 <= CLICK < t1

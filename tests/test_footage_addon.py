"""Footage strips in real Blender: the flags the add-on derives from a movie strip make the engine pick the
very frames Blender shows, and a render's strips sit above the footage, aligned frame for frame, each image
following its own footage frame."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from engine.render.sources.footage import Footage
from engine.settings import RenderSettings
from tests.footage_media import footage_frame, nearest_frame, write_movie
from tests.test_addon import BLENDERS, blender, blender_python, built, needs_sound, song  # noqa: F401

NTSC = Fraction(30000, 1001)
FPS = float(NTSC)


def test_footage_timing_from_a_strip_placement():
    from m2v_blender.errors import M2VError
    from m2v_blender.footage_strip import Placement, footage_timing, playback_rate
    from m2v_blender.timeline import StripTiming

    timing = StripTiming(frame_start=101, frame_final_start=149, frame_final_end=400, fps=FPS)
    # A 29.97 fps movie from frame 140, trimmed to start at 165, its first 7 frames slipped out of view.
    p = Placement(frame_start=140, frame_final_start=165, frame_final_end=380, content_offset=7, media_fps=FPS)
    offset, speed, span = footage_timing(timing, p)
    assert speed == pytest.approx(1.0)
    for f in (165, 200, 379):  # song time at frame f shows content frame f - 140 + 7
        assert offset + speed * timing.time_at(f) == pytest.approx((f - 140 + 7) / FPS)
    assert span == pytest.approx((timing.time_at(165), timing.time_at(380)))
    # A 24 fps movie played frame for frame, and the same with Adjust Playback Rate (real time).
    for rate, content_at in ((1.0, lambda f: f - 140), (24 / FPS, lambda f: (f - 140) * 24 / FPS)):
        p = Placement(frame_start=140, frame_final_start=140, frame_final_end=300, media_fps=24.0, rate=rate)
        offset, speed, _ = footage_timing(timing, p)
        assert offset + speed * timing.time_at(200) == pytest.approx(content_at(200) / 24)
    # A song with a Sound Offset is heard later; the footage does not move.
    late = StripTiming(frame_start=101, frame_final_start=101, frame_final_end=400, fps=FPS, sound_offset=0.5)
    p = Placement(frame_start=140, frame_final_start=140, frame_final_end=300, media_fps=FPS)
    offset, speed, _ = footage_timing(late, p)
    assert offset + speed * late.time_at(200) == pytest.approx((200 - 140) / FPS)
    # The strip's length tells frame-for-frame playback from Adjust Playback Rate.
    assert playback_rate(300, 300, 24.0, FPS) == 1.0
    assert playback_rate(300, int(300 / (24 / FPS)), 24.0, FPS) == pytest.approx(24 / FPS)
    with pytest.raises(M2VError, match="speed"):
        playback_rate(300, 170, 24.0, FPS)


def _flag(args: list[str], name: str, n: int = 1):
    i = args.index(name)
    values = tuple(float(v) for v in args[i + 1 : i + 1 + n])
    return values[0] if n == 1 else values


def test_blender_shows_the_frames_the_engine_picks(built, tmp_path, blender_python):  # noqa: F811
    """On each VSE API: at every timeline frame, the engine's frame for that frame is the one Blender shows."""
    movies = {"ntsc": (tmp_path / "ntsc.mp4", NTSC), "film": (tmp_path / "film.mp4", Fraction(24))}
    written = {k: write_movie(p, 160, rate) for k, (p, rate) in movies.items()}
    zip_path = next(built.glob("m2v-*.zip"))
    shots = tmp_path / "shots"
    frames = list(range(160, 200))
    res = blender(
        f"""
        import bpy, sys
        install({str(zip_path)!r})
        footage = sys.modules["bl_ext.user_default.m2v.footage_strip"]
        panels = sys.modules["bl_ext.user_default.m2v.panels"]
        timeline = sys.modules["bl_ext.user_default.m2v.timeline"]
        sc = bpy.context.scene
        sc.render.fps, sc.render.fps_base = 30, 1.001
        sc.sequence_editor_create()
        strips = strips_of(sc)
        song = timeline.StripTiming(frame_start=101, frame_final_start=149, frame_final_end=400, fps=30 / 1.001)
        out = {{}}
        for name, path in {[(k, str(p)) for k, (p, _) in movies.items()]!r}:
            m = strips.new_movie(name, path, 2, 140)
            m.frame_offset_start = 25           # trimmed: visible from frame 165
            m.animation_offset_start = 7        # its first 7 frames slipped out
            out[name] = footage.footage_args(sc, m, song)
            m.mute = True
        emit(args=out)
        class Layout:  # records what the panel's box draws
            def __init__(self): self.props = []
            def __getattr__(self, name): return lambda *a, **k: self
            def prop(self, data, name, **k): self.props.append(name); return self
            def prop_search(self, data, name, *a, **k): self.props.append(name); return self
        drawn = []
        for strip_name, custom in (("", False), ("ntsc", True)):
            sc.m2v.footage_strip, sc.m2v.use_motion = strip_name, custom
            box = Layout()
            panels.draw_footage_box(box, sc)
            drawn.append(box.props)
        emit(drawn=drawn, known=[p.identifier for p in sc.m2v.bl_rna.properties])
        sc.m2v.footage_strip = ""
        for name in out:
            for s in all_strips(sc):
                s.mute = s.name != name
            render_vse_frames(sc, {str(shots)!r}, {frames!r}, prefix=name + "_")
    """,
        tmp_path,
        blender_python,
    )
    drawn = res[1]
    assert drawn["drawn"][0] == ["footage_strip", "use_motion"] and len(drawn["drawn"][1]) == 9
    assert all(name in drawn["known"] for props in drawn["drawn"] for name in props)
    res = res[0]
    song_time = lambda f: (f - 101) / FPS  # noqa: E731
    for name, args in res["args"].items():
        timing = RenderSettings(
            footage_offset=_flag(args, "--footage-offset"),
            footage_speed=_flag(args, "--footage-speed"),
            footage_span=_flag(args, "--footage-span", 2),
        )
        foot = Footage(args[args.index("--footage") + 1])
        for f in frames:
            shown = np.asarray(Image.open(shots / f"{name}_{f:05d}.png").convert("RGB"))
            j = foot.pick(timing, song_time(f), song_time(f + 1))
            if f < 165:
                assert j is None  # trimmed away: no footage for images there
                continue
            assert j == nearest_frame(shown, written[name]), (name, f, j)
            if name == "ntsc":
                assert j == f - 140 + 7  # frame for frame, as Blender counts


def test_footage_render_aligned_above_a_trimmed_offset_movie(built, song, tmp_path, roundtrip_models, blender_python):  # noqa: F811
    needs_sound(blender_python)
    from tests.small_models import model_args

    wav, _, _ = song
    movie = tmp_path / "footage.mp4"
    written = write_movie(movie, 420)
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    shots = tmp_path / "shots"
    res = blender(
        f"""
        import bpy, json
        install({str(zip_path)!r})
        sc, strip = song_scene({str(wav)!r}, {str(out) + "/"!r})   # 29.97 fps, song from 101, trimmed
        m = strips_of(sc).new_movie("footage", {str(movie)!r}, 3, 140)
        m.frame_offset_start = 25           # visible from frame 165 ...
        m.frame_offset_end = 40
        m.animation_offset_start = 7        # ... showing movie frame 32 there
        st = sc.m2v
        st.preset = "custom"
        st.width = st.height = 32
        st.min_rate, st.max_rate = 6.0, 8.0
        st.cutout_method = "crops"
        st.cutouts = 8
        st.footage_strip = "footage"
        st.footage_blend, st.init_weight = 0.3, 100.0
        for f in (220, 300):
            sc.timeline_markers.new("m2v S0%d" % (f // 100), frame=f)
        extra = {model_args(roundtrip_models)!r}
        assert bpy.ops.m2v.render(preview=False, model_args=json.dumps(extra)) == {{"FINISHED"}}
        mine = m2v_strips(sc)
        emit(strips=mine, status=st.status, footage=[m.channel, m.frame_final_start, m.frame_final_end])
        for s in all_strips(sc):
            s.mute = s.name != "footage"
        firsts = sorted({{s["start"] + s["files"].index(name) for s in mine for name in set(s["files"])}})
        render_vse_frames(sc, {str(shots)!r}, firsts)
    """,
        tmp_path,
        blender_python,
    )
    by = {k: r[k] for r in res for k in r}
    assert by["status"] == "render finished", by["status"]
    channel, vis_start, vis_end = by["footage"]
    manifest = json.loads((out / "frames" / "manifest.json").read_text())
    records = {
        (out / "frames" / f["file"]).resolve(): f
        for s in manifest["segments"]
        for f in manifest["cache"][s["key"]]["frames"]
    }
    checked = 0
    for s in by["strips"]:
        assert s["channel"] > channel  # the generated strips sit above the footage
        for name in dict.fromkeys(s["files"]):
            f1 = s["start"] + s["files"].index(name)  # the first timeline frame showing this image
            rec = records[(out / "frames" / s["dir"].rstrip("/").split("/frames/")[-1] / name).resolve()]
            j = rec.get("footage")
            assert (j is not None) == (vis_start <= f1 < vis_end), (f1, j)
            if j is None:
                continue
            shown = np.asarray(Image.open(shots / f"f{f1:05d}.png").convert("RGB"))
            assert nearest_frame(shown, written) == j, (f1, j)  # aligned: Blender shows that very frame there
            img = np.asarray(Image.open(out / "frames" / rec["file"])).astype(np.float32)
            own = float(((img - footage_frame(j, 32, 32)) ** 2).mean())
            other = float(((img - footage_frame(j + 20, 32, 32)) ** 2).mean())
            assert own < other, (f1, j, own, other)  # each image follows its own footage frame
            checked += 1
    assert checked > 20

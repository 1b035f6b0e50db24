"""The Matte strip in real Blender: its timing (trimmed, slipped, another frame rate, an image sequence) told to
the engine as the footage strip's is, so the engine follows the very matte frames Blender shows; generated strips
laid above the footage and the matte with Alpha Over, the footage showing through; a moved matte re-renders only
the segments whose matte changed."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from engine.render.sources.matte import Matte, MatteTiming
from engine.settings import RenderSettings
from engine.store.alpha import composite
from tests.footage_media import footage_frame, nearest_frame, write_movie
from tests.test_addon import blender, blender_python, built, needs_sound, song  # noqa: F401

NTSC = Fraction(30000, 1001)
FPS = float(NTSC)


def _flag(args: list[str], name: str, n: int = 1):
    i = args.index(name)
    values = tuple(float(v) for v in args[i + 1 : i + 1 + n])
    return values[0] if n == 1 else values


def _timing(args: list[str]) -> MatteTiming:
    """The matte's timing as the engine makes it from the flags the add-on passes."""
    s = RenderSettings(
        matte=args[args.index("--matte") + 1],
        matte_offset=_flag(args, "--matte-offset"),
        matte_speed=_flag(args, "--matte-speed"),
        matte_span=_flag(args, "--matte-span", 2),
        matte_fps=_flag(args, "--matte-fps") if "--matte-fps" in args else None,
    )
    return MatteTiming.of(s)


def test_the_matte_strips_timing_reaches_the_engine(built, tmp_path, blender_python):  # noqa: F811
    """A 24 fps matte movie on a 29.97 fps timeline, trimmed and slipped, and an image-sequence matte: the engine's
    matte frame for each timeline frame is the one Blender shows; a mask strip is refused in plain words."""
    film = tmp_path / "film.mp4"
    written = write_movie(film, 160, Fraction(24))
    seq = tmp_path / "seq"
    seq.mkdir()
    for j in range(40):
        Image.fromarray(footage_frame(j)).save(seq / f"m{j + 1:03d}.png")
    zip_path = next(built.glob("m2v-*.zip"))
    shots = tmp_path / "shots"
    frames = list(range(158, 200, 3))
    (args, *_) = blender(
        f"""
        import bpy, sys
        install({str(zip_path)!r})
        m2v = "bl_ext.user_default.m2v"
        fs, panels, flags = (sys.modules[f"{{m2v}}.{{n}}"] for n in ("footage_strip", "panels", "flags"))
        timeline, errors = sys.modules[m2v + ".timeline"], sys.modules[m2v + ".errors"]
        sc = bpy.context.scene
        sc.render.fps, sc.render.fps_base = 30, 1.001
        sc.sequence_editor_create()
        strips = strips_of(sc)
        song = timeline.StripTiming(frame_start=101, frame_final_start=149, frame_final_end=400, fps=30 / 1.001)
        m = strips.new_movie("matte", {str(film)!r}, 3, 140)
        m.frame_offset_start = 25           # trimmed: visible from frame 165
        m.animation_offset_start = 7        # its first 7 frames slipped out
        foot = strips.new_movie("footage", {str(film)!r}, 2, 101)
        s = strips.new_image("seq", {str(seq / "m001.png")!r}, 4, 150)
        for j in range(2, 41):
            s.elements.append("m%03d.png" % j)
        out = dict(matte=fs.footage_args(sc, m, song, "matte"), as_footage=fs.footage_args(sc, m, song),
                   seq=fs.footage_args(sc, s, song, "matte"))
        sc.m2v.footage_strip, sc.m2v.matte_strip = "footage", "matte"
        out["both"], out["floor"] = fs.render_args(sc, song)
        mask = strips.new_mask("mask", bpy.data.masks.new("mask"), 5, 101)
        try:
            fs.footage_args(sc, mask, song, "matte")
        except errors.M2VError as e:
            out["mask"] = str(e)
        class Layout:  # records what the panel's box draws
            def __init__(self): self.props = []
            def __getattr__(self, name): return lambda *a, **k: self
            def prop(self, data, name, **k): self.props.append(name); return self
            def prop_search(self, data, name, *a, **k): self.props.append(name); return self
        drawn = []
        for name in ("", "matte"):
            sc.m2v.matte_strip = name
            box = Layout()
            panels.draw_matte_box(box, sc)
            drawn.append(box.props)
        out["drawn"] = drawn
        out["flags"] = flags.setting_args(sc.m2v, "render", flags.conditions(sc.m2v, matte=True) | {{"model"}})
        out["no_matte"] = flags.setting_args(sc.m2v, "render", flags.conditions(sc.m2v) | {{"model"}})
        emit(**out)
        for name in ("matte", "seq"):
            for x in all_strips(sc):
                x.mute = x.name != name
            render_vse_frames(sc, {str(shots)!r}, {frames!r}, prefix=name + "_")
    """,
        tmp_path,
        blender_python,
    )
    # The matte strip is told exactly as the same strip used as footage, under the matte's flags.
    assert args["matte"] == [a.replace("--footage", "--matte") for a in args["as_footage"]]
    assert args["both"][: len(args["as_footage"])][0] == "--footage" and "--matte" in args["both"]
    assert args["floor"] == 4  # above the footage (2) and the matte (3)
    assert "mask strip" in args["mask"] and "render the mask to a movie or an image sequence" in args["mask"]
    assert args["drawn"] == [["matte_strip"], ["matte_strip", "matte_channel", "matte_invert", "matte_feather", "alpha"]]
    i = args["flags"].index("--alpha")
    assert args["flags"][i + 1] == "matte" and "--matte-channel" in args["flags"]  # frames with alpha by default
    assert not any(a.startswith("--matte") or a == "--alpha" for a in args["no_matte"])
    assert _flag(args["seq"], "--matte-fps") == pytest.approx(FPS)
    song_time = lambda f: (f - 101) / FPS  # noqa: E731
    seq_frames = [footage_frame(j) for j in range(40)]
    for name, movie in (("matte", written), ("seq", seq_frames)):
        a = args[name]
        timing, matte = _timing(a), Matte(a[a.index("--matte") + 1], _flag(a, "--matte-fps") if name == "seq" else None)
        picked = 0
        for f in frames:
            j = matte.pick(timing, song_time(f), song_time(f + 1))
            if not ((f >= 165) if name == "matte" else (150 <= f < 190)):
                assert j is None, (name, f, j)  # trimmed away, not begun or ended: no matte there
                continue
            shown = np.asarray(Image.open(shots / f"{name}_{f:05d}.png").convert("RGB"))
            assert j == nearest_frame(shown, movie), (name, f, j)
            picked += 1
        assert picked >= 10
        matte.close()


def test_strips_over_the_footage_and_a_moved_matte(built, song, tmp_path, small_models, blender_python):  # noqa: F811
    """A render with a footage strip and a Matte strip: the strips sit above both with Alpha Over and the footage
    shows through their alpha; the engine followed the matte frames Blender shows; moved within the second
    segment, the matte re-renders that segment only (the third starts a chain, the first has no matte)."""
    needs_sound(blender_python)
    from tests.small_models import model_args

    wav, _, _ = song
    foot, matte = tmp_path / "footage.mp4", tmp_path / "matte.mp4"
    write_movie(foot, 420, width=32, height=32)
    written = write_movie(matte, 420)
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    shots = tmp_path / "shots"
    res = blender(
        f"""
        import bpy, json, sys
        install({str(zip_path)!r})
        markers = sys.modules["bl_ext.user_default.m2v.markers"]
        sc, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)  # song from frame 101
        f = strips_of(sc).new_movie("footage", {str(foot)!r}, 2, 101)
        m = strips_of(sc).new_movie("matte", {str(matte)!r}, 3, 101)
        m.frame_offset_start, m.frame_offset_end = 130, 420 - 200   # visible over frames 231-301: segment 2's
        m.mute = True                                               # read from its file; not to be seen
        sc.render.resolution_x = sc.render.resolution_y = 32   # the strips fit the frame 1:1 (FIT)
        st = sc.m2v
        st.preset = "custom"
        st.width = st.height = 32
        st.min_rate, st.max_rate = 1.0, 1.0
        st.cutout_method = "crops"
        st.cutouts = 8
        st.footage_strip, st.matte_strip = "footage", "matte"
        for k, fr in enumerate((221, 341)):
            sc.timeline_markers.new("m2v S0%d" % (k + 1), frame=fr)
        markers.sync_segments(sc)
        st.segments[2].new_chain = True
        extra = {model_args(small_models)!r}
        keys = []
        for move in (0, 15):
            m.frame_start += move
            assert bpy.ops.m2v.render(preview=False, model_args=json.dumps(extra)) == {{"FINISHED"}}, st.status
            mine = m2v_strips(sc)
            blends = [s.blend_type for s in all_strips(sc) if s.get("m2v_segment_key") is not None]
            emit(move=move, strips=mine, blends=blends, status=st.status, matte=[m.channel, m.frame_final_start,
                 m.frame_final_end], footage=f.channel)
        firsts = sorted({{s["start"] + s["files"].index(n) for s in mine for n in set(s["files"])}})
        for which, size in (("matte", (64, 48)), ("footage", (32, 32)), ("all", (32, 32))):
            for x in all_strips(sc):
                x.mute = (x.name != which) if which != "all" else x.name == "matte"
            render_vse_frames(sc, {str(shots)!r}, firsts, prefix=which + "_", size=size)
    """,
        tmp_path,
        blender_python,
    )
    first, moved = res
    assert first["status"] == moved["status"] == "render finished"
    channel = max(moved["matte"][0], moved["footage"])
    assert all(s["channel"] > channel for s in moved["strips"]) and set(moved["blends"]) == {"ALPHA_OVER"}
    # Moved inside the second segment: only its key changed (the third starts a chain; the first has no matte).
    k0, k1 = [s["key"] for s in first["strips"]], [s["key"] for s in moved["strips"]]
    assert len(k0) == len(k1) == 3 and k0[0] == k1[0] and k0[1] != k1[1] and k0[2] == k1[2]
    frames = out / "frames"
    manifest = json.loads((frames / "manifest.json").read_text())
    records = {(frames / f["file"]).resolve(): f for s in manifest["segments"] for f in manifest["cache"][s["key"]]["frames"]}
    vis = moved["matte"][1:]
    checked = 0
    for s in moved["strips"]:
        for name in dict.fromkeys(s["files"]):
            f1 = s["start"] + s["files"].index(name)  # the first timeline frame showing this image
            rec = records[(frames / s["dir"].rstrip("/").split("/frames/")[-1] / name).resolve()]
            rgba = np.asarray(Image.open(frames / rec["file"]))
            assert rgba.shape == (32, 32, 4)  # frames with alpha, the matte's
            j = rec.get("matte")
            assert (j is not None) == (vis[0] <= f1 < vis[1]), (f1, j, vis)
            if j is not None:  # the engine followed the matte frame Blender shows there
                shown = np.asarray(Image.open(shots / f"matte_{f1:05d}.png").convert("RGB"))
                assert nearest_frame(shown, written) == j, (f1, j)
                checked += 1
            # Alpha Over: Blender shows the frame laid over the footage it shows there.
            under = np.asarray(Image.open(shots / f"footage_{f1:05d}.png").convert("RGB"))
            over = np.asarray(Image.open(shots / f"all_{f1:05d}.png").convert("RGB")).astype(int)
            assert np.abs(over - composite(rgba, under)).max() <= 2, f1
    assert checked >= 2

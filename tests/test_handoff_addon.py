"""The add-on's hand-off in real Blender (issue 29): File > Export > m2v Timeline lines up with its own strips
frame for frame, and File > Import > m2v Cuts from Edit makes an edit's cuts the scene's cut markers."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_addon import BLENDERS, blender, built, needs_sound, song  # noqa: F401 - shared fixtures

otio = pytest.importorskip("opentimelineio")


@pytest.fixture(params=sorted(BLENDERS), ids=lambda v: f"blender-{v}")
def blender_python(request):
    return BLENDERS[request.param]


def _spans(track, origin: int = 0) -> list[tuple[int, int]]:
    """(first frame, end frame) of every clip on a track, in the timeline's own frame numbers."""
    out = []
    for i, item in enumerate(track):
        if isinstance(item, otio.schema.Clip):
            r = track.range_of_child_at_index(i)
            out.append((origin + int(r.start_time.value), origin + int(r.end_time_exclusive().value)))
    return out


def test_export_lines_up_with_the_strips_and_import_sets_the_cuts(built, song, tmp_path):  # noqa: F811
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy
        import opentimelineio as otio
        install({str(zip_path)!r})
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r})  # 29.97 fps, the song at 101, trimmed
        if hasattr(strip, "sound_offset"):
            strip.sound_offset = 0.4  # song time 0 between two frames
        scene.frame_start = 7
        scene.m2v.snap_cuts = False
        for f in (190, 263, 331, 420):
            scene.timeline_markers.new("cut", frame=f)  # the editor's own cuts
        scene.timeline_markers.new("intro", frame=120)
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        emit(step="render", strips=m2v_strips(scene), fps=[scene.render.fps, scene.render.fps_base])
        assert bpy.ops.m2v.export_timeline(filepath={str(out / "edit.otio")!r}) == {{"FINISHED"}}
        emit(step="otio", status=scene.m2v.status)
        assert bpy.ops.m2v.export_timeline(filepath={str(out / "edit")!r}, file_format=".xml") == {{"FINISHED"}}
        emit(step="xml", status=scene.m2v.status)
        # Edited elsewhere: the second cut 7 frames later, the last one removed.
        tl = otio.adapters.read_from_file({str(out / "edit.otio")!r})
        video = tl.tracks[0]
        rt = otio.opentime.RationalTime
        clips = [c for c in video if isinstance(c, otio.schema.Clip)]  # after the gap before the song's strip
        a, b = clips[1], clips[2]
        seven = rt(7, a.source_range.duration.rate)
        a.source_range = otio.opentime.TimeRange(a.source_range.start_time, a.source_range.duration + seven)
        b.source_range = otio.opentime.TimeRange(b.source_range.start_time + seven, b.source_range.duration - seven)
        last = video[-1]
        video[-2].source_range = otio.opentime.TimeRange(
            video[-2].source_range.start_time, video[-2].source_range.duration + last.source_range.duration
        )
        del video[-1]
        otio.adapters.write_to_file(tl, {str(out / "edit2.otio")!r})
        assert bpy.ops.m2v.import_edit_cuts(filepath={str(out / "edit2.otio")!r}) == {{"FINISHED"}}
        emit(step="imported", markers=markers(scene), status=scene.m2v.status)
        try:
            bpy.ops.m2v.import_edit_cuts(filepath={str(out / "missing.otio")!r})
        except RuntimeError as e:
            emit(step="missing", error=str(e))
    """,
        tmp_path,
    )
    by = {r["step"]: r for r in res}
    strips = [(s["start"], s["end"]) for s in by["render"]["strips"]]
    assert len(strips) == 5 and strips[1][0] == 190 and by["render"]["fps"][0] == 30
    # OTIO: the timeline starts at the scene's first frame; every clip on its strip's frames exactly.
    tl = otio.adapters.read_from_file(str(out / "edit.otio"))
    origin = int(tl.global_start_time.value)
    assert origin == 7 and tl.global_start_time.rate == pytest.approx(30000 / 1001, abs=1e-12)
    assert _spans(tl.tracks[0], origin) == strips
    assert list(tl.metadata["m2v"]["rate"]) == [30000, 1001]
    assert by["otio"]["status"] == "exported edit.otio (OpenTimelineIO): 5 clips"
    # The song clip where the strip plays it: song time 0 at frame 101 + 0.4 s (Blender keeps the offset and
    # the rate's base as 32-bit floats: within 1e-5 of a frame).
    song_frame = Fraction(101) + Fraction(0.4) * Fraction(30000, 1001)
    (song_clip,) = tl.tracks[1].find_clips()
    start = origin + song_clip.range_in_parent().start_time.value
    assert start - song_clip.source_range.start_time.value == pytest.approx(float(song_frame), abs=1e-5)
    # FCP 7 XML: the same frames, and each movie frame is the image Blender's strip shows at that frame.
    xml = otio.adapters.read_from_file(str(out / "edit.xml"))
    assert _spans(next(t for t in xml.tracks if t.kind == "Video"), int(xml.global_start_time.value)) == strips
    assert by["xml"]["status"] == "exported edit.xml (Final Cut Pro 7 XML): 5 clips"
    import av

    video = next(t for t in xml.tracks if t.kind == "Video")
    for strip, clip in zip(by["render"]["strips"], [c for c in video if isinstance(c, otio.schema.Clip)]):
        movie = Path(clip.media_reference.target_url.replace("file://", ""))
        with av.open(str(movie)) as c:
            frames = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
        assert len(frames) == strip["end"] - strip["start"] == len(strip["files"])
        cache = {}
        for pixels, name in zip(frames, strip["files"]):
            if name not in cache:
                cache[name] = np.asarray(Image.open(Path(strip["dir"]) / name).convert("RGB")).astype(float)
            assert np.abs(pixels - cache[name]).mean() < 1.0
    # Import: the edit's cuts became the scene's cut markers (m2v's names), other markers kept.
    cuts = sorted(f for n, f in by["imported"]["markers"] if n.startswith("m2v S"))
    assert cuts == [190, 263 + 7, 331]
    assert ["intro", 120] in by["imported"]["markers"]
    assert not any(n == "cut" for n, _ in by["imported"]["markers"])
    assert "edit2.otio: 4 segments (4 cut markers replaced)" in by["imported"]["status"]
    assert "the edit file is missing" in by["missing"]["error"]
    plan = json.loads((out / "edit_cuts.json").read_text())
    assert len(plan["segments"]) == 4


def test_export_and_import_are_in_the_file_menus_and_refuse_plainly(built, tmp_path, blender_python):  # noqa: F811
    zip_path = next(built.glob("m2v-*.zip"))
    (tmp_path / "cuts.txt").write_text("0,1")
    res = blender(
        f"""
        import bpy
        install({str(zip_path)!r})
        def entries(menu):
            return [getattr(f, "__name__", "") for f in menu._dyn_ui_initialize()]
        emit(step="menus", export=entries(bpy.types.TOPBAR_MT_file_export),
             imports=entries(bpy.types.TOPBAR_MT_file_import))
        scene = bpy.context.scene
        scene.sequence_editor_create()
        scene.m2v.output_dir = {str(tmp_path / "o") + "/"!r}
        for op, kw in (("export_timeline", {{"filepath": {str(tmp_path / "e.otio")!r}}}),
                       ("import_edit_cuts", {{"filepath": {str(tmp_path / "cuts.txt")!r}}})):
            try:
                getattr(bpy.ops.m2v, op)(**kw)
            except RuntimeError as e:
                emit(step=op, error=str(e))
    """,
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert "menu_export" in by["menus"]["export"] and "menu_import" in by["menus"]["imports"]
    assert "there is no sound strip" in by["export_timeline"]["error"]
    assert "there is no sound strip" in by["import_edit_cuts"]["error"]


def test_export_before_any_render_says_so(built, song, tmp_path, blender_python):  # noqa: F811
    needs_sound(blender_python)
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    (tmp_path / "cuts.txt").write_text("0,1")
    res = blender(
        f"""
        import bpy
        install({str(zip_path)!r})
        scene, strip = song_scene({str(wav)!r}, {str(tmp_path / "o") + "/"!r})
        try:
            bpy.ops.m2v.export_timeline(filepath={str(tmp_path / "e.xml")!r})
        except RuntimeError as e:
            emit(step="export", error=str(e))
        try:
            bpy.ops.m2v.import_edit_cuts(filepath={str(tmp_path / "cuts.txt")!r})
        except RuntimeError as e:
            emit(step="import", error=str(e))
    """,
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert "nothing rendered in" in by["export"]["error"] and "Preview Layout" in by["export"]["error"]
    assert "choose an edit saved as .otio" in by["import"]["error"]
    assert not (tmp_path / "e.xml").exists()

"""The add-on in real Blender (the bpy module): built zip installed as Blender does, operators driven,
markers and strips read back. Each scenario runs in its own Blender process with its own user folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from engine.analysis.synth import Section, synth_song
from m2v_blender.timeline import StripTiming
from tests.conftest import REPO, write_song

if __import__("importlib").util.find_spec("bpy") is None:
    pytest.skip("bpy (Blender as a module) is not installed", allow_module_level=True)

#: Blender 5.x (this environment) and, where set up, Blender 4.2 LTS in .venv/blender-4.2.
BLENDERS = {"5.0": sys.executable}
_LTS = REPO / ".venv" / "blender-4.2" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
if _LTS.exists():
    BLENDERS["4.2"] = str(_LTS)


@pytest.fixture(params=sorted(BLENDERS), ids=lambda v: f"blender-{v}")
def blender_python(request):
    return BLENDERS[request.param]


def needs_sound(python: str) -> None:
    if python == BLENDERS.get("4.2"):
        pytest.skip("the bpy 4.2 wheel on PyPI is built without Audaspace: it cannot create sound strips")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(REPO / "install" / "build_extension.py"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("addon_song")
    s = synth_song(
        [
            Section(4, 120, "rock", "soft", 0.4),
            Section(4, 120, "metal", "bright", 0.9),
            Section(4, 120, "four", "organ", 0.6),
        ],
        seed=2,
    )
    wav = write_song(d / "song.wav", s.y, s.sr)
    lrc = d / "song.lrc"
    lrc.write_text("[00:05.00]a lighthouse in a storm\n[00:13.00]neon city lights in the rain\n", encoding="utf-8")
    return wav, lrc, s.duration


def blender(script: str, tmp_path, python: str = sys.executable, timeout: float = 600) -> list[dict]:
    """Run a script in a fresh Blender (bpy) process; return its RESULT lines."""
    user = tmp_path / "blender-user"
    user.mkdir(exist_ok=True)
    env = dict(
        os.environ, BLENDER_USER_RESOURCES=str(user), M2V_ENGINE_PYTHON=sys.executable, PYTHONPATH=str(REPO / "tests")
    )
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nfrom blender_session import *\n"
        + textwrap.dedent(script)
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def test_extension_zip_and_repository_index(built):
    index = json.loads((built / "index.json").read_text())
    entry = index["data"][0]
    assert entry["id"] == "m2v" and entry["archive_url"].endswith(".zip") and entry["blender_version_min"] == "4.2.0"
    import zipfile

    names = zipfile.ZipFile(next(built.glob("m2v-*.zip"))).namelist()
    assert {"blender_manifest.toml", "__init__.py", "operators.py", "engine/__main__.py", "install/setup.py"} <= set(
        names
    )


def test_analyze_edit_markers_render_layout_and_rerender(built, song, tmp_path, blender_python):
    needs_sound(blender_python)
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy
        install({str(zip_path)!r})
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r})
        if hasattr(strip, "sound_offset"):  # Blender 4.3+: the song plays 0.4 s late (checked against a mixdown
            strip.sound_offset = 0.4        # in test_sound_offset.py); lyric markers must follow it
        scene.m2v.lyrics_file = {str(lrc)!r}
        scene.m2v.target_length = 4.0
        scene.m2v.min_length = 2.0
        scene.m2v.snap_cuts = False  # markers exactly where the editor drops them
        scene.timeline_markers.new("intro", frame=120)          # the editor's own marker
        try:  # the editor's own strip, where m2v wants to put its strips
            strips_of(scene).new_effect(name="grade", type="COLOR", channel=2, frame_start=300, length=40)
        except TypeError:  # Blender 4.2 takes frame_end
            strips_of(scene).new_effect(name="grade", type="COLOR", channel=2, frame_start=300, frame_end=340)
        emit(step="strip", frame_start=strip.frame_start, final_start=strip.frame_final_start,
             final_end=strip.frame_final_end, fps=scene.render.fps / scene.render.fps_base,
             offset=getattr(strip, "sound_offset", 0.0))
        assert bpy.ops.m2v.analyze() == {{"FINISHED"}}
        emit(step="analyzed", markers=markers(scene))
        # Edit: move the second segment marker, delete the last one, add one of our own making.
        segs = sorted([m for m in scene.timeline_markers if m.name.startswith("m2v S")], key=lambda m: m.frame)
        segs[0].frame += 15
        scene.timeline_markers.remove(segs[-1])
        scene.timeline_markers.new("m2v S99", frame=segs[0].frame + 60)
        emit(step="edited", markers=markers(scene))
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        emit(step="render1", strips=m2v_strips(scene), markers=markers(scene))
        late = sorted([m for m in scene.timeline_markers if m.name.startswith("m2v S")], key=lambda m: m.frame)[-1]
        late.frame += 10
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        others = [s.name for s in all_strips(scene) if s.get("m2v_segment_key") is None]
        emit(step="render2", strips=m2v_strips(scene), markers=markers(scene), others=others, status=scene.m2v.status)
    """,
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    st = by["strip"]
    timing = StripTiming(st["frame_start"], st["final_start"], st["final_end"], st["fps"], st["offset"])
    assert abs(st["fps"] - 29.97) < 0.01 and st["final_start"] > st["frame_start"]
    assert st["offset"] == pytest.approx(0.4)
    plan = json.loads((out / "analysis.json").read_text())
    t0, t1 = timing.visible_span()
    assert plan["song"]["span"][0] == pytest.approx(t0, abs=1e-3)
    # Segment markers sit on the plan's boundaries, lyric markers on the lyric times (song time -> frame).
    seg_frames = [f for n, f in by["analyzed"]["markers"] if n.startswith("m2v S")]
    assert seg_frames == [timing.frame_at(s["start"]) for s in plan["segments"][1:]]
    lyr = {n: f for n, f in by["analyzed"]["markers"] if n.startswith("m2v \u266a")}
    assert lyr == {
        "m2v \u266a01 a lighthouse in a storm": timing.frame_at(5.0),
        "m2v \u266a02 neon city lights in the rain": timing.frame_at(13.0),
    }
    assert ["intro", 120] in by["analyzed"]["markers"]
    # Render follows the edited markers: one strip per marker interval, exactly on the marker frames.
    edges = (
        [st["final_start"]]
        + sorted(f for n, f in by["render1"]["markers"] if n.startswith("m2v S"))
        + [st["final_end"]]
    )
    strips = by["render1"]["strips"]
    assert [(s["start"], s["end"]) for s in strips] == list(zip(edges[:-1], edges[1:]))
    for s in strips:
        assert s["elements"] == s["end"] - s["start"]  # one element per timeline frame, images held
        assert s["channel"] >= 2
    used = json.loads((out / "plan.json").read_text())  # the plan of the last render
    assert [s["images"] for s in used["segments"]] == [len(set(s["files"])) for s in by["render2"]["strips"]]
    # The second render after moving the last marker replaces only the strips from that segment on.
    s2 = by["render2"]["strips"]
    assert [s["key"] for s in s2[:-2]] == [s["key"] for s in strips[:-2]]
    assert s2[-2]["key"] != strips[-2]["key"] and s2[-2]["end"] == strips[-2]["end"] + 10
    assert ["intro", 120] in by["render2"]["markers"]
    assert by["render2"]["others"] and "song" in by["render2"]["others"]


def test_render_with_models_cancel_resume_and_pump(built, song, tmp_path, small_models, blender_python):
    needs_sound(blender_python)
    from tests.small_models import model_args

    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy, json, sys, time
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
        scene.m2v.preset = "custom"
        scene.m2v.width = scene.m2v.height = 32
        scene.m2v.min_rate, scene.m2v.max_rate = 1.0, 2.0
        scene.m2v.cutout_method = "crops"
        scene.m2v.precision = "fp32"
        for f in (strip.frame_final_start + 120, strip.frame_final_start + 240):
            scene.timeline_markers.new("m2v S0%d" % (f // 120), frame=f)
        extra = {model_args(small_models)!r}
        m2v.jobs.start_render(scene, preview=False, extra_model_args=extra)
        seen = []
        # The pump step, driven directly: events arrive, strips appear segment by segment.
        while not any(e.get("event") == "segment_end" for e in seen):
            assert m2v.registry.pump(scene), scene.m2v.status
            seen += m2v.registry.JOBS[scene.name].events[len(seen):]
            time.sleep(0.02)
        emit(step="first_segment", strips=m2v_strips(scene), progress=scene.m2v.progress, status=scene.m2v.status)
        m2v.registry.cancel(scene)
        job = m2v.registry.pump_to_end(scene)
        emit(step="cancelled", code=job.returncode, strips=m2v_strips(scene), status=scene.m2v.status)
        assert bpy.ops.m2v.render(preview=False, model_args=json.dumps(extra)) == {{"FINISHED"}}
        emit(step="resumed", strips=m2v_strips(scene), status=scene.m2v.status)
        # Blender renders the VSE (with the song) to a video file.
        scene.frame_start, scene.frame_end = strip.frame_final_start, strip.frame_final_end - 1
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 64, 100
        if hasattr(scene.render.image_settings, "media_type"):  # Blender 5: video is its own media type
            scene.render.image_settings.media_type = "VIDEO"
        scene.render.image_settings.file_format = "FFMPEG"
        scene.render.ffmpeg.format = "MPEG4"
        scene.render.ffmpeg.codec = "H264"
        scene.render.ffmpeg.audio_codec = "AAC"
        scene.render.filepath = {str(tmp_path / "vse.mp4")!r}
        bpy.ops.render.render(animation=True)
        emit(step="video", frames=scene.frame_end - scene.frame_start + 1, fps=scene.render.fps / scene.render.fps_base)
    """,
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert len(by["first_segment"]["strips"]) == 1 and by["first_segment"]["progress"] > 0
    assert by["cancelled"]["code"] == 3 and "cancelled" in by["cancelled"]["status"]
    kept = by["cancelled"]["strips"]
    assert 1 <= len(kept) < 3
    final = by["resumed"]["strips"]
    assert len(final) == 3 and by["resumed"]["status"] == "render finished"
    assert [s["key"] for s in final[: len(kept)]] == [s["key"] for s in kept]  # finished segments were reused
    assert json.loads((out / "frames" / "manifest.json").read_text())["settings"]["precision"] == "fp32"  # the panel's
    from engine.store.export import probe

    video = next(tmp_path.glob("vse*.mp4"))
    m = probe(video)
    assert m["frames"] == by["video"]["frames"]
    assert abs(m["video_seconds"] - dur) < 0.1 and abs(m["audio_seconds"] - dur) < 0.15


def test_errors_are_reports_in_plain_words(built, tmp_path, blender_python):
    (tmp_path / "notes.txt").write_text("not lyrics")
    (tmp_path / "words.lrc").write_text("[00:01.00]hello\n")
    zip_path = next(built.glob("m2v-*.zip"))
    res = blender(
        f"""
        import bpy
        install({str(zip_path)!r})
        scene = bpy.context.scene
        scene.sequence_editor_create()
        scene.m2v.output_dir = {str(tmp_path / "o") + "/"!r}
        try:
            bpy.ops.m2v.analyze()
        except RuntimeError as e:
            emit(step="no_strip", error=str(e))
        try:
            bpy.ops.m2v.import_lyrics(filepath={str(tmp_path / "notes.txt")!r})
        except RuntimeError as e:
            emit(step="bad_lyrics", error=str(e))
        bpy.ops.m2v.import_lyrics(filepath={str(tmp_path / "words.lrc")!r})
        emit(step="lyrics", value=scene.m2v.lyrics_file)
        try:
            bpy.ops.m2v.render(preview=True)
        except RuntimeError as e:
            emit(step="render_no_strip", error=str(e))
    """,
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert "there is no sound strip" in by["no_strip"]["error"]
    assert "use an .lrc, .srt, .vtt or .csv lyrics file" in by["bad_lyrics"]["error"]
    assert by["lyrics"]["value"] == str(tmp_path / "words.lrc")
    assert "add your song to the timeline" in by["render_no_strip"]["error"]


def test_markers_and_strips_on_each_vse_api(built, song, tmp_path, blender_python):
    """The add-on's timeline code on both VSE APIs (4.2 ``sequences``, 5.x ``strips``), fed the engine's own events."""
    from tests.conftest import run_engine

    wav, lrc, dur = song
    plan = tmp_path / "plan.json"
    assert (
        run_engine("plan", str(wav), "--boundaries", "0,4,9,14", "--lyrics", str(lrc), "-o", str(plan)).returncode == 0
    )
    proc = run_engine("render", str(plan), "--out", str(tmp_path / "lay"), "--layout", "--size", "32", "32")
    assert proc.returncode == 0, proc.stderr
    ends = [json.loads(line) for line in proc.stdout.splitlines() if '"segment_end"' in line]
    zip_path = next(built.glob("m2v-*.zip"))
    res = blender(
        f"""
        import bpy, json, sys
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        timeline = sys.modules["bl_ext.user_default.m2v.timeline"]
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 30, 1.001
        scene.sequence_editor_create()
        scene.timeline_markers.new("my cue", frame=7)
        timing = timeline.StripTiming(frame_start=11, frame_final_start=11, frame_final_end=11 + 14 * 29.97, fps=30 / 1.001)
        plan = json.load(open({str(plan)!r}))
        m2v.markers.apply_markers(scene, plan, timing)
        ends = {ends!r}
        for ev in ends:
            m2v.adapters.place_segment(scene, timing, ev)
        first = m2v_strips(scene)
        m2v.adapters.place_segment(scene, timing, ends[0])
        m2v.adapters.drop_stale_strips(scene, {{ends[1]["key"]}})
        emit(version=bpy.app.version_string, markers=markers(scene), first=first, after=m2v_strips(scene))
    """,
        tmp_path,
        blender_python,
    )[0]
    timing = StripTiming(11, 11, 11 + 14 * 29.97, 30 / 1.001)
    assert ["my cue", 7] in res["markers"]
    assert [f for n, f in res["markers"] if n.startswith("m2v S")] == [timing.frame_at(4), timing.frame_at(9)]
    assert [(s["start"], s["end"]) for s in res["first"]] == [
        (11, timing.frame_at(4)),
        (timing.frame_at(4), timing.frame_at(9)),
        (timing.frame_at(9), timing.frame_at(14)),
    ]
    # Each timeline frame shows the image the exported video shows at that time (one rule, the engine's).
    from engine.protocol import image_at

    for s, ev in zip(res["first"], ends):
        want = [
            ev["files"][image_at(timing.time_at(f), ev["start"], ev["end"], len(ev["files"]))]
            for f in range(s["start"], s["end"])
        ]
        assert s["files"] == want and s["dir"].rstrip("/") == ev["dir"]
    assert len(res["after"]) == 1 and res["after"][0]["key"] == res["first"][1]["key"]


def test_undo_check_offline_refusal_and_file_close(built, song, tmp_path, small_models, blender_python):
    needs_sound(blender_python)
    from tests.small_models import model_args

    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    res = blender(
        f"""
        import bpy, os, sys, time
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        scene, strip = song_scene({str(wav)!r}, {str(tmp_path / "o") + "/"!r})
        scene.timeline_markers.new("intro", frame=120)
        bpy.ops.ed.undo_push(message="before m2v")
        bpy.ops.m2v.analyze("EXEC_DEFAULT", True)
        analysed = markers(bpy.context.scene)
        bpy.ops.ed.undo()
        emit(step="undo", analysed=analysed, undone=markers(bpy.context.scene))
        scene = bpy.context.scene
        # Online access is off in the bpy module: downloads must refuse, in plain words.
        for op in (bpy.ops.m2v.install_engine, bpy.ops.m2v.fetch_models):
            try:
                op()
            except RuntimeError as e:
                emit(step="offline", error=str(e))
        # The timer callback a window would run, called by hand (timers never fire here).
        m2v.jobs.start_render(scene, preview=True)
        tick = m2v.registry._timer_for(scene.name)
        ticks = 0
        while tick() is not None:
            ticks += 1
            time.sleep(0.05)
        emit(step="timer", ticks=ticks, strips=len(m2v_strips(scene)), status=scene.m2v.status)
        bpy.ops.m2v.check_engine()
        prefs = bpy.context.preferences.addons["bl_ext.user_default.m2v"].preferences
        emit(step="check", text=prefs.check_result)
        # Closing the file stops a running engine: no orphaned process.
        strip = [s for s in all_strips(scene) if s.type == "SOUND"][0]
        scene.m2v.width = scene.m2v.height = 32
        job = m2v.jobs.start_render(scene, preview=False, extra_model_args={model_args(small_models)!r})
        pid = job.proc.pid
        bpy.ops.wm.read_homefile()
        time.sleep(0.5)
        try:
            os.kill(pid, 0)
            alive = job.proc.poll() is None
        except ProcessLookupError:
            alive = False
        emit(step="closed", alive=alive, jobs=len(m2v.registry.JOBS))
    """,
        tmp_path,
        blender_python,
    )
    by = {}
    for r in res:
        by.setdefault(r["step"], []).append(r)
    undo = by["undo"][0]
    assert any(n.startswith("m2v S") for n, _ in undo["analysed"])
    assert undo["undone"] == [["intro", 120]]
    errors = [r["error"] for r in by["offline"]]
    assert len(errors) == 2 and all("online access is off" in e for e in errors)
    check = by["check"][0]["text"]
    assert "engine 0.1.0, torch 2.14.1" in check and "device: CPU only" in check and "missing: Wav2CLIP.pt" in check
    assert by["closed"][0] == {"step": "closed", "alive": False, "jobs": 0}
    timer = by["timer"][0]
    assert timer["ticks"] > 0 and timer["strips"] >= 1 and timer["status"] == "render finished"


def test_intensity_setting_reaches_analyze_plan_and_the_cost(built, song, tmp_path):
    """The panel's Intensity is the engine's ``--intensity`` for Analyze and for Render's plan."""
    wav, _, _ = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy, sys
        install({str(zip_path)!r})
        cost = sys.modules["bl_ext.user_default.m2v.cost"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r})
        scene.m2v.intensity = "authors"
        assert bpy.ops.m2v.analyze() == {{"FINISHED"}}
        authors_cost = cost.estimate_text(scene)
        scene.m2v.intensity = "paper"
        stale = cost.estimate_text(scene)
        scene.m2v.intensity = "authors"
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        emit(authors_cost=authors_cost, stale=stale)
    """,
        tmp_path,
    )
    analysis = json.loads((out / "analysis.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert analysis["analysis"]["levels"]["intensity"] == "authors"
    assert plan["analysis"]["levels"]["intensity"] == "authors"
    assert res[0]["authors_cost"].startswith(f"{analysis['totals']['steps']} steps")
    assert res[0]["stale"] == "Analyze again to cost the paper intensity"

"""The editor directs the video from the timeline, in real Blender: cuts, lyric text, a prompt and a take per segment."""

from __future__ import annotations

import json

import pytest

from tests.test_addon import blender, built, song  # noqa: F401 - fixtures shared with the add-on tests

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("bpy") is None, reason="bpy is not installed")


def test_cuts_and_lyrics_are_edited_on_the_timeline(built, song, tmp_path):  # noqa: F811
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy, json, sys
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
        scene.m2v.lyrics_file = {str(lrc)!r}
        scene.m2v.preset = "draft"
        assert bpy.ops.m2v.analyze() == {{"FINISHED"}}
        timing = m2v.adapters.strip_timing(scene, strip)
        beats = m2v.markers.analysis_summary(scene)["beats"]
        before = markers(scene)
        # Add Cut at the playhead, between two beats: it lands on the nearest beat.
        scene.frame_current = timing.frame_at(beats[6] + 0.2)
        assert bpy.ops.m2v.add_cut() == {{"FINISHED"}}
        added = [n for n, f in markers(scene) if (n, f) not in before]
        # Blender's own M makes F_.., which is no cut until the editor names it "cut...".
        plain = scene.timeline_markers.new("F_200", frame=timing.frame_at(9.0))
        cuts_plain = [m.name for m in m2v.markers.cut_markers(scene)]
        plain.name = "cut: the drop"
        cuts_named = [m.name for m in m2v.markers.cut_markers(scene)]
        # Fix a lyric's words on the timeline; delete another; add a new one at the playhead.
        lyr = sorted((m for m in scene.timeline_markers if "\\u266a" in m.name), key=lambda m: m.frame)
        lyr[0].name = "m2v \\u266a01 a burning violin"
        scene.timeline_markers.remove(lyr[1])
        scene.frame_current = timing.frame_at(10.5)
        assert bpy.ops.m2v.add_lyric(text="hello moon") == {{"FINISHED"}}
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        plan = json.load(open({str(out / "plan.json")!r}))
        emit(added=added, added_frame=[f for n, f in markers(scene) if n in added], cut_beat=timing.frame_at(beats[6]),
             cut_times=[timing.time_at(timing.frame_at(beats[6])), timing.time_at(timing.frame_at(9.0))],
             cuts_plain=cuts_plain, cuts_named=cuts_named, fps=timing.fps, strips=len(m2v_strips(scene)),
             bounds=[s["start"] for s in plan["segments"]],
             lyrics=[[p["start"], p["text"]] for s in plan["segments"] for p in s["parts"] if p["kind"] == "lyric"],
             rows=len(scene.m2v.segments))
        # Remove Cut: the selected cut goes, the others stay.
        for m in scene.timeline_markers:
            m.select = m.name == "cut: the drop"
        assert bpy.ops.m2v.remove_cut() == {{"FINISHED"}}
        emit(after_remove=[m.name for m in m2v.markers.cut_markers(scene)], rows_after=len(scene.m2v.segments))
    """,
        tmp_path,
    )
    first, second = res
    assert len(first["added"]) == 1 and first["added"][0].startswith("m2v S")
    assert first["added_frame"] == [first["cut_beat"]]  # snapped to the beat
    assert "F_200" not in first["cuts_plain"] and "cut: the drop" in first["cuts_named"]
    # Both new cuts are segment boundaries of the rendered plan.
    for t in first["cut_times"]:
        assert any(abs(b - t) < 1e-3 for b in first["bounds"]), (t, first["bounds"])
    texts = [t for _, t in first["lyrics"]]
    assert "a burning violin" in texts and "hello moon" in texts
    assert "a lighthouse in a storm" not in texts and "neon city lights in the rain" not in texts
    assert first["rows"] == len(first["bounds"]) and first["strips"] == len(first["bounds"])
    assert "cut: the drop" not in second["after_remove"] and second["rows_after"] == first["rows"] - 1


@pytest.mark.parametrize("mode", ["layout", "models"])
def test_prompt_and_take_rerender_from_their_segment_on(built, song, tmp_path, small_models, mode):  # noqa: F811
    from tests.small_models import model_args

    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    layout = mode == "layout"
    res = blender(
        f"""
        import bpy, json, sys
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
        st = scene.m2v
        st.preset = "custom"
        st.width = st.height = 32
        st.min_rate, st.max_rate = 1.0, 2.0
        st.cutout_method = "crops"
        st.snap_cuts = False
        for f in (90, 180, 270):
            scene.timeline_markers.new("m2v S0%d" % (f // 90 + 1), frame=strip.frame_final_start + f)
        extra = {model_args(small_models)!r}

        def render():
            m2v.jobs.start_render(scene, preview={layout!r}, extra_model_args=extra)
            job = m2v.registry.pump_to_end(scene)
            assert job.returncode == 0, (job.error, st.status)
            ends = [e for e in job.events if e["event"] == "segment_end"]
            return [e["key"] for e in ends], [e["reused"] for e in ends]

        keys0, _ = render()
        m2v.markers.sync_segments(scene)
        # Undo restores a prompt.
        st.segments[2].prompt = "a violet forest"
        bpy.ops.ed.undo_push(message="prompt 1")
        bpy.context.scene.m2v.segments[2].prompt = "a red desert"
        bpy.ops.ed.undo_push(message="prompt 2")
        bpy.ops.ed.undo()
        scene = bpy.context.scene
        st = scene.m2v
        undone = st.segments[2].prompt
        # Moving a cut keeps each segment's settings with its segment.
        m = [m for m in scene.timeline_markers if m.name == "m2v S03"][0]
        m.frame += 12
        m2v.markers.sync_segments(scene)
        kept = [it.prompt for it in st.segments]
        m.frame -= 12
        m2v.markers.sync_segments(scene)
        keys1, reused1 = render()
        assert bpy.ops.m2v.reroll(index=1) == {{"FINISHED"}}
        keys2, reused2 = render()
        st.segments[1].take = 0
        keys3, reused3 = render()
        plan = json.load(open({str(out / "plan.json")!r}))
        emit(undone=undone, kept=kept, keys=[keys0, keys1, keys2, keys3], reused=[reused1, reused2, reused3],
             takes=[s["take"] for s in plan["segments"]], prompts=[s["prompt"] for s in plan["segments"]])
    """,
        tmp_path,
    )[0]
    assert res["undone"] == "a violet forest"
    assert res["kept"] == ["", "", "a violet forest", ""]
    k0, k1, k2, k3 = res["keys"]
    r1, r2, r3 = res["reused"]
    # A prompt on segment 2: segments 0 and 1 are reused, 2 and 3 re-rendered.
    assert k1[:2] == k0[:2] and k1[2] != k0[2] and k1[3] != k0[3]
    assert r1 == [True, True, False, False]
    # Another take of segment 1: from segment 1 on, never before it.
    assert k2[0] == k1[0] and all(a != b for a, b in zip(k2[1:], k1[1:]))
    assert r2 == [True, False, False, False]
    # Switching back to take 0: the earlier frames are still on disk, nothing is rendered.
    assert k3 == k1 and r3 == [True, True, True, True]
    assert res["takes"] == [0, 0, 0, 0] and res["prompts"] == [None, None, "a violet forest", None]


def test_add_cut_shortcut_shadows_nothing_of_blenders():
    """Shift+M in the Sequencer is free in Blender's default keymap (M is Add Marker)."""
    import importlib.util
    from pathlib import Path

    import bpy  # noqa: F401 - the bundled keymap data is read from the bpy package

    from m2v_blender import ADD_CUT_KEY

    spec = importlib.util.find_spec("bpy")
    path = next(
        Path(spec.submodule_search_locations[0]).glob("*/scripts/presets/keyconfig/keymap_data/blender_default.py")
    )
    mod_spec = importlib.util.spec_from_file_location("blender_default", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    keymaps = mod.generate_keymaps(mod.Params())
    taken = []
    for name, _space, content in keymaps:
        if name not in ("Sequencer", "SequencerCommon", "Markers", "Window", "Screen", "Frames", "Time Scrub"):
            continue
        for item in content["items"]:
            ev = item[1]
            if ev.get("type") == "M" and ev.get("shift", False) and not ev.get("ctrl") and not ev.get("alt"):
                taken.append((name, item[0]))
    assert taken == []
    assert json.dumps(ADD_CUT_KEY) == json.dumps({"type": "M", "value": "PRESS", "shift": True})


def test_presets_and_the_cost_shown_in_the_panel(built, song, tmp_path):  # noqa: F811
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy, json, sys
        install({str(zip_path)!r})
        m2v = sys.modules["bl_ext.user_default.m2v"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
        st = scene.m2v
        st.lyrics_file = {str(lrc)!r}
        st.snap_cuts = False
        assert st.preset == "auto"
        assert bpy.ops.m2v.analyze() == {{"FINISHED"}}
        plan = json.load(open({str(out / "analysis.json")!r}))
        after_analyze = m2v.cost.estimate_text(scene)
        timing = m2v.adapters.strip_timing(scene, strip)
        for m in list(scene.timeline_markers):
            if m.name.startswith("m2v S"):
                m.frame += 37  # the editor moves the cuts
        scene.timeline_markers.new("cut", frame=timing.frame_at(2.0))
        after_cut = m2v.cost.estimate_text(scene)
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        draft_totals = json.load(open({str(out / "plan.json")!r}))["totals"]
        st.preset = "custom"
        st.width = st.height = 512
        bigger = m2v.cost.estimate_text(scene)
        st.preset = "paper"
        paper = m2v.cost.estimate_text(scene)
        assert bpy.ops.m2v.render(preview=True) == {{"FINISHED"}}
        used = json.load(open({str(out / "plan.json")!r}))
        emit(resolved=st.resolved_preset, totals=plan["totals"], estimate=plan.get("estimate"), texts=[after_analyze, after_cut, bigger, paper],
             draft_totals=draft_totals,
             used=used["analysis"]["preset"], granularity=used["analysis"].get("granularity"),
             rates=[used["analysis"]["min_rate"], used["analysis"]["max_rate"]], fps=used["analysis"]["fps"],
             images=used["totals"]["images"], paper_steps=used["totals"]["steps"], strips=len(m2v_strips(scene)),
             segments=len(used["segments"]))
    """,
        tmp_path,
    )[0]
    import re

    assert res["resolved"] == "draft"  # Auto on a CPU
    first = res["texts"][0]
    steps = int(re.match(r"(\d+) steps", first).group(1))
    assert steps == res["totals"]["steps"]  # the panel's arithmetic is the engine's
    assert "\u2248" in first and res["estimate"]["device"] in first
    secs = [t.split("\u2248")[1] for t in res["texts"]]

    def counts(text):
        m = re.match(r"(\d+) steps, (\d+) images", text)
        return {"steps": int(m.group(1)), "images": int(m.group(2))}

    # After the editor moved and added cuts, the panel shows what the engine then plans for those markers.
    assert counts(res["texts"][1]) == res["draft_totals"]
    assert secs[2] != secs[1]  # 512x512 costs more than 256x256
    assert counts(res["texts"][3])["steps"] > 5 * steps  # 10-120 steps/s against 2-8
    # Render with the Paper preset: the plan carries the paper's rates and the scene's frame rate caps images.
    assert res["used"] == "paper" and res["rates"] == [10.0, 120.0] and abs(res["fps"] - 29.97) < 0.01
    assert res["images"] <= round(dur * 29.97) + res["segments"] and res["strips"] == res["segments"]
    assert counts(res["texts"][3]) == {"steps": res["paper_steps"], "images": res["images"]}

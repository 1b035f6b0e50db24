"""The add-on's side of latent chains: a New Chain toggle per segment, kept with its cut; Render on Ray."""

from __future__ import annotations

import pytest

from tests.test_addon import blender, built, song  # noqa: F401 - fixtures shared with the add-on tests

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("bpy") is None, reason="bpy is not installed")


def test_new_chain_follows_its_cut_into_the_plan_and_render_on_ray(built, song, tmp_path):  # noqa: F811
    wav, lrc, dur = song
    zip_path = next(built.glob("m2v-*.zip"))
    out = tmp_path / "out"
    res = blender(
        f"""
        import bpy, json, os, sys
        install({str(zip_path)!r})
        markers = sys.modules["bl_ext.user_default.m2v.markers"]
        commands = sys.modules["bl_ext.user_default.m2v.jobs"]
        registry = sys.modules["bl_ext.user_default.m2v.registry"]
        preferences = sys.modules["bl_ext.user_default.m2v.preferences"]
        scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
        st = scene.m2v
        st.preset = "draft"
        st.snap_cuts = False
        for f in (90, 180, 270):
            scene.timeline_markers.new("m2v S0%d" % (f // 90 + 1), frame=strip.frame_final_start + f)
        markers.sync_segments(scene)
        st.segments[2].new_chain = True
        # Moving cuts keeps the toggle with its segment's cut.
        m = [m for m in scene.timeline_markers if m.name == "m2v S02"][0]
        m.frame += 30
        markers.sync_segments(scene)
        kept = [it.new_chain for it in st.segments]
        commands.start_render(scene, preview=True)
        job = registry.pump_to_end(scene)
        assert job.returncode == 0, (job.error, st.status)
        plan = json.load(open({str(out / "plan.json")!r}))
        doc = json.load(open({str(out / "segment_settings.json")!r}))
        p = preferences.prefs()
        args = [preferences.ray_args()]
        p.render_on = "RAY"
        args.append(preferences.ray_args())
        p.ray_address = "ray://farm:10001"
        args.append(preferences.ray_args())
        os.environ["M2V_RAY"] = ""
        args.append(preferences.ray_args())
        chains = {{}}
        commands.note_chain(chains, {{"event": "chain_start", "chain": 0, "segments": [0, 1]}})
        commands.note_chain(chains, {{"event": "chain_start", "chain": 2, "segments": [2, 3]}})
        commands.note_chain(chains, {{"event": "chain_end", "chain": 0, "attempts": 1}})
        emit(kept=kept, new_chain=[s.get("new_chain", False) for s in plan["segments"]], entries=doc["segments"],
             cut=[s["start"] for s in plan["segments"]], args=args, status=commands.chains_in_flight(chains, 3))
    """,
        tmp_path,
    )[0]
    assert res["kept"] == [False, False, True, False]
    assert res["new_chain"] == [False, False, True, False]
    assert [e["start"] for e in res["entries"] if e.get("new_chain")] == [res["cut"][2]]
    assert res["args"] == [[], ["--ray"], ["--ray", "ray://farm:10001"], []]
    assert res["status"] == "; chains in flight: 3 (at segment 4)"

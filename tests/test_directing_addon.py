"""Directing from the timeline in real Blender (5.0 and 4.2): text strips as prompts, Lyrics -> Text Strips, Cuts
from Strips, keyframed settings evaluated per image against Blender's own evaluation, Bake Music to F-Curve, and what
the new panels draw (through a recording layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.plan.curves import CurveSpec, parse_curves
from engine.plan.curves import image_values as engine_image_values
from engine.plan.prompts import PromptPart, parse_prompts_doc
from m2v_blender.timeline import StripTiming
from tests.test_addon import blender, blender_python, built, needs_sound, song  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("bpy") is None, reason="bpy is not installed")

FPS = 30 / 1.001
#: A song strip's timing made by hand (the 4.2 wheel cannot make sound strips): file time 0 at frame 11.
TIMING = StripTiming(frame_start=11, frame_final_start=11, frame_final_end=431, fps=FPS)

SETUP = """
import bpy, json, sys
install({zip!r})
m2v = sys.modules["bl_ext.user_default.m2v"]
d = sys.modules["bl_ext.user_default.m2v.directing"]
direction = sys.modules["bl_ext.user_default.m2v.direction"]
tl = sys.modules["bl_ext.user_default.m2v.timeline"]
M2VError = sys.modules["bl_ext.user_default.m2v.errors"].M2VError
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 30, 1.001
scene.sequence_editor_create()
timing = tl.StripTiming(frame_start=11, frame_final_start=11, frame_final_end=431, fps=30 / 1.001)

def effect(name, kind, channel, a, b):
    coll = strips_of(scene)
    try:
        return coll.new_effect(name=name, type=kind, channel=channel, frame_start=a, length=b - a)
    except TypeError:  # Blender 4.2 takes frame_end
        return coll.new_effect(name=name, type=kind, channel=channel, frame_start=a, frame_end=b)

def strip_state():
    return sorted(
        [s.name, s.channel, s.frame_final_start, s.frame_final_end, getattr(s, "text", None), s.get("m2v_lyric")]
        for s in all_strips(scene)
    )
"""


def _zip(dist):
    return str(next(dist.glob("m2v-*.zip")))


def test_lyric_markers_become_text_strips_that_are_prompts(built, tmp_path, blender_python):  # noqa: F811
    long = "a very long lyric line that runs well past the sixty three bytes a marker name can hold"
    res = blender(
        SETUP.format(zip=_zip(built))
        + f"""
scene.timeline_markers.new("intro", frame=20)
for f, text in [(40, "a lighthouse in a storm"), (40, "and the sea"), (150, {long!r}), (300, "neon city lights"), (500, "beyond the song")]:
    scene.frame_current = f
    assert bpy.ops.m2v.add_lyric(text=text) == {{"FINISHED"}}
scene.timeline_markers.new("m2v S02", frame=200)
mine = effect("mine", "TEXT", 3, 160, 170)
mine.text = "the editor's own caption"
before = (markers(scene), strip_state())
try:
    d.lyrics_to_strips(scene, timing)
except M2VError as e:
    emit(step="refused", error=str(e), unchanged=(markers(scene), strip_state()) == before)
mine.channel = 6
made = d.lyrics_to_strips(scene, timing)
emit(step="made", strips=strip_state(), markers=markers(scene), on=scene.m2v.use_prompt_strips,
     parts=d.scene_prompt_parts(scene, timing), doc=direction.prompts_document(d.scene_prompt_parts(scene, timing)))
try:
    d.lyrics_to_strips(scene, timing)
except M2VError as e:
    emit(step="again", error=str(e))
# The editor corrects words, weights one strip down, mutes another: the parts follow.
ours = sorted((s for s in all_strips(scene) if s.get("m2v_lyric")), key=lambda s: s.frame_final_start)
ours[0].text = "a lighthouse\\nin  a storm"
ours[1].m2v_prompt_weight = 0.4
ours[2].mute = True
emit(step="edited", parts=d.scene_prompt_parts(scene, timing))
bpy.ops.wm.save_as_mainfile(filepath={str(tmp_path / "directed.blend")!r})
bpy.ops.wm.open_mainfile(filepath={str(tmp_path / "directed.blend")!r})
scene = bpy.context.scene
emit(step="reopened", parts=d.scene_prompt_parts(scene, timing))
scene.m2v.use_prompt_strips = False
emit(step="off", parts=d.scene_prompt_parts(scene, timing))
""",
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert (
        by["refused"]["unchanged"]
        and "the strip 'mine' on channel 3 is where a lyric strip would go" in (by["refused"]["error"])
    )
    made = by["made"]
    t = TIMING.time_at
    # One strip per lyric time (the two lines at frame 40 joined as the engine joins them), from its marker to the
    # next lyric or the next cut (frame 200), the last to the song's end; the lyric markers are gone, the rest stay.
    assert [s for s in made["strips"] if s[5]] == [
        ["m2v \u266a01", 3, 40, 150, "a lighthouse in a storm / and the sea", "a lighthouse in a storm / and the sea"],
        ["m2v \u266a02", 3, 150, 200, long, long],
        ["m2v \u266a03", 3, 300, 431, "neon city lights", "neon city lights"],
    ]
    assert ["mine", 6, 160, 170, "the editor's own caption", None] in made["strips"]
    # (a lyric marker where the song is not heard, past frame 431, has no strip and stays)
    assert made["markers"] == [["intro", 20], ["m2v S02", 200], ["m2v \u266a05 beyond the song", 500]] and made["on"]
    # Every lyric line round-trips: its words and its time, as prompt parts, as the engine reads them.
    want = [
        PromptPart(round(t(40), 4), round(t(150), 4), "a lighthouse in a storm / and the sea"),
        PromptPart(round(t(150), 4), round(t(200), 4), long),
        PromptPart(round(t(300), 4), round(t(431), 4), "neon city lights"),
    ]
    assert parse_prompts_doc(made["doc"]) == want
    assert "no lyric marker lies where the song is heard" in by["again"]["error"]
    edited = [(p["text"], p["weight"]) for p in by["edited"]["parts"]]
    assert edited == [("a lighthouse in a storm", 1.0), (long, pytest.approx(0.4))]
    assert by["reopened"]["parts"] == by["edited"]["parts"]  # the texts, the weight: kept in the .blend
    assert by["off"]["parts"] == []


def test_cuts_from_strips_mark_every_strip_cut(built, tmp_path, blender_python):  # noqa: F811
    res = blender(
        SETUP.format(zip=_zip(built))
        + """
for name, ch, a, b in [("shot1", 1, 10, 40), ("shot2", 1, 40, 90), ("shot3", 1, 100, 130), ("title", 2, 55, 75)]:
    effect(name, "COLOR", ch, a, b)
scene.timeline_markers.new("m2v S01", frame=90)  # a cut already there
scene.timeline_markers.new("F_05", frame=100)     # the editor's own marker: no cut
scene.m2v.cut_channel = 1
assert bpy.ops.m2v.cuts_from_strips() == {"FINISHED"}
first = markers(scene)
assert bpy.ops.m2v.cuts_from_strips() == {"FINISHED"}
again = markers(scene)
scene.m2v.cut_channel = 9
try:
    bpy.ops.m2v.cuts_from_strips()
except RuntimeError as e:
    emit(step="empty", error=str(e))
emit(step="cuts", first=first, again=again, rows=len(scene.m2v.segments),
     cuts=[m.frame for m in m2v.markers.cut_markers(scene)])
""",
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    cuts = by["cuts"]
    assert cuts["first"] == [
        ["m2v S02", 10],
        ["m2v S03", 40],
        ["m2v S01", 90],
        ["F_05", 100],
        ["m2v S04", 100],
        ["m2v S05", 130],
    ]
    assert cuts["again"] == cuts["first"]  # every strip cut already is a cut
    assert cuts["cuts"] == [10, 40, 90, 100, 130] and cuts["rows"] == 6
    assert "there are no strips on channel 9" in by["empty"]["error"]


def test_keyframed_settings_per_image_are_blenders_own_values(built, tmp_path, blender_python):  # noqa: F811
    segments = [(0.0, 4.0, 37), (4.0, 9.5, 50), (9.5, 13.9, 20)]
    res = blender(
        SETUP.format(zip=_zip(built))
        + f"""
st = scene.m2v
segments = {segments!r}
# Music baked onto a setting with no animation yet: the action (and 5.x's slot) is made the usual way.
fc = d.write_keys(scene, "rotate", 0, [(15, 0.0), (100, 30.0), (300, -10.0)])
rotate = [(f, fc.evaluate(f)) for f in (15, 57, 100, 300)]
scene.frame_set(100)
rotate_set = st.rotate
d.write_keys(scene, "rotate", 0, [(20, 5.0), (80, 6.0)])  # baking again replaces the keys
rotate_again = [tuple(k.co) for k in d.find_fcurve(scene, "m2v.rotate", 0).keyframe_points]
for frame, value in [(20, 0.0), (120, 0.08), (200, 0.02), (260, 0.05)]:
    st.zoom = value
    scene.keyframe_insert("m2v.zoom", frame=frame)
kps = d.find_fcurve(scene, "m2v.zoom", 0).keyframe_points
kps[0].interpolation, kps[0].easing = "BEZIER", "EASE_IN_OUT"
kps[1].interpolation, kps[1].easing = "ELASTIC", "EASE_OUT"
kps[2].interpolation = "CONSTANT"
st.shift = (3.0, 0.0)
scene.keyframe_insert("m2v.shift", index=1, frame=50)
st.shift = (3.0, 10.0)
scene.keyframe_insert("m2v.shift", index=1, frame=250)
d.find_fcurve(scene, "m2v.shift", 1).keyframe_points[0].interpolation = "SINE"
zoom = d.image_values(scene, "zoom", segments, timing)
shift = d.image_values(scene, "shift", segments, timing)
blend = d.image_values(scene, "footage_blend", segments, timing)
frames = direction.image_frames(segments, timing)
seen = []
for f in frames:
    scene.frame_set(f)
    seen.append([st.zoom, list(st.shift), st.rotate])
# The add-on's own image strips for these segments: which image each timeline frame shows.
for k, (a, b, n) in enumerate(segments):
    ev = dict(segment=k, key="k%d" % k, start=a, end=b, dir={str(tmp_path)!r}, files=["i%03d.png" % i for i in range(n)])
    m2v.adapters.place_segment(scene, timing, ev)
emit(zoom=zoom, shift=shift, blend=blend, frames=frames, seen=seen, strips=m2v_strips(scene),
     curves=d.animated_curves(scene, segments, timing), rotate=rotate, rotate_set=rotate_set,
     rotate_again=rotate_again, has_layers=hasattr(scene.animation_data.action, "layers"),
     version=bpy.app.version_string)
""",
        tmp_path,
        blender_python,
    )[0]
    # Written keys: Blender evaluates them back (the curve and the property at the frame).
    assert [v for _, v in res["rotate"]][::2] == [0.0, 30.0] and res["rotate"][3][1] == -10.0
    assert res["rotate_set"] == 30.0 and res["rotate_again"] == [[20.0, 5.0], [80.0, 6.0]]
    assert res["has_layers"] == res["version"].startswith("5")  # 5.x: a slotted action, 4.2: action.fcurves
    # Each image's first frame is the one the add-on's own strips first show it at (an image no frame shows: the
    # frame where the next one first shows).
    first = []
    for (_, _, n), strip in zip(segments, res["strips"]):
        shown = {}
        for j, name in enumerate(strip["files"]):
            shown.setdefault(int(name[1:4]), strip["start"] + j)
        nxt = strip["end"]
        seg = []
        for i in reversed(range(n)):
            nxt = shown.get(i, nxt)
            seg.append(nxt)
        first += seg[::-1]
    assert len(res["strips"]) == 3 and res["frames"] == first and len(first) == sum(n for _, _, n in segments)
    # Each image's value is exactly what Blender's evaluation gives at that frame (bezier, easing, elastic...).
    assert res["zoom"] == [z for z, _, _ in res["seen"]]
    assert res["shift"] == [s for _, s, _ in res["seen"]] and {s[0] for s in res["shift"]} == {3.0}
    assert res["blend"] is None and "rotate" in res["curves"] and "footage_blend" not in res["curves"]
    # ...not a straight line between the keys: the elastic ease really shows.
    frames = np.array(res["frames"])
    lin = np.interp(frames, [20, 120, 200, 260], [0.0, 0.08, 0.02, 0.05])
    assert np.max(np.abs(np.array(res["zoom"]) - lin)) > 0.01
    # The --curves exchange: the engine reads back, for every image of the plan, exactly Blender's values.
    doc = {"kind": "m2v-curves", "version": 1, "curves": res["curves"]}
    specs = {"zoom": CurveSpec(), "shift": CurveSpec(2), "rotate": CurveSpec()}
    curves = parse_curves(json.loads(json.dumps(doc)), specs, duration=14.0)
    plan = {"segments": [{"start": a, "end": b, "images": n} for a, b, n in segments]}
    got = engine_image_values(curves, plan)
    assert [v for seg in got["zoom"] for v in seg] == res["zoom"]
    assert [list(v) for seg in got["shift"] for v in seg] == res["shift"]
    assert [v for seg in got["rotate"] for v in seg] == [r for _, _, r in res["seen"]]


RECORDER = """
import types

class Rec:
    def __init__(self, log):
        object.__setattr__(self, "_log", log)
    def __setattr__(self, name, value):
        self._log.append(["set", name, value])
    def _child(self, kind):
        self._log.append([kind])
        return Rec(self._log)
    def row(self, **kw): return self._child("row")
    def column(self, **kw): return self._child("column")
    def box(self): return self._child("box")
    def split(self, **kw): return self._child("split")
    def separator(self, **kw): pass
    def label(self, text="", **kw): self._log.append(["label", text])
    def prop(self, data, name, **kw):
        self._log.append(["prop", data.bl_rna.identifier, name, kw.get("text")])
    def operator(self, idname, **kw):
        self._log.append(["operator", idname])
        return types.SimpleNamespace()

def drawn(panel, header=False):
    log = []
    cls = getattr(bpy.types, panel)
    if hasattr(cls, "poll") and not cls.poll(bpy.context):
        return None
    if header:
        cls.draw_header(types.SimpleNamespace(layout=Rec(log)), bpy.context)
    cls.draw(types.SimpleNamespace(layout=Rec(log)), bpy.context)
    return log

PANELS = ["SEQUENCER_PT_m2v_prompts", "SEQUENCER_PT_m2v_strip_cuts", "SEQUENCER_PT_m2v_bake",
          "SEQUENCER_PT_m2v_text_strip"]
def all_drawn(state):
    emit(state=state, **{p: drawn(p, header=p.endswith("prompts")) for p in PANELS},
         closed={p: "DEFAULT_CLOSED" in getattr(getattr(bpy.types, p), "bl_options", set()) for p in PANELS},
         parents={p: getattr(getattr(bpy.types, p), "bl_parent_id", "") for p in PANELS})
"""


def test_panels_draw_each_control_in_each_state(built, tmp_path, blender_python):  # noqa: F811
    res = blender(
        SETUP.format(zip=_zip(built))
        + RECORDER
        + """
all_drawn("fresh")
st = scene.m2v
st.use_prompt_strips = True
a = effect("words", "TEXT", 3, 10, 40)
b = effect("more", "TEXT", 3, 50, 60)
effect("shot", "COLOR", 1, 0, 100)
scene.sequence_editor.active_strip = a
st.analysis_json = json.dumps({"kind": "m2v-analysis-summary", "version": 1, "beats": [], "levels": None})
all_drawn("prompts")
a.channel = 4
all_drawn("off_channel")
a.channel = 3
a.mute = True
all_drawn("muted")
st.use_prompt_strips = False
all_drawn("off")
scene.sequence_editor.active_strip = None
all_drawn("no_text")
""",
        tmp_path,
        blender_python,
    )
    by = {r["state"]: r for r in res}
    w = "m2v_prompt_weight"
    scene_rna = "M2VSceneSettings"
    strip_rna = next(
        p[1] for p in by["prompts"]["SEQUENCER_PT_m2v_text_strip"] if p[0] == "prop"
    )  # TextStrip (5.x) or TextSequence (4.2)
    assert strip_rna in ("TextStrip", "TextSequence")
    fresh = by["fresh"]
    # Collapsible sub-panels of the Music Video panel, as Blender's own; the strip's panel in the Strip tab.
    assert fresh["parents"] == {
        "SEQUENCER_PT_m2v_prompts": "SEQUENCER_PT_m2v",
        "SEQUENCER_PT_m2v_strip_cuts": "SEQUENCER_PT_m2v",
        "SEQUENCER_PT_m2v_bake": "SEQUENCER_PT_m2v",
        "SEQUENCER_PT_m2v_text_strip": "",
    }
    assert all(fresh["closed"][p] for p in fresh["closed"] if p != "SEQUENCER_PT_m2v_text_strip")
    assert fresh["SEQUENCER_PT_m2v_prompts"] == [
        ["prop", scene_rna, "use_prompt_strips", ""],
        ["set", "use_property_split", True],
        ["column"],
        ["set", "active", False],
        ["prop", scene_rna, "prompt_channel", None],
        ["label", "Off: text strips guide nothing"],
        ["operator", "m2v.lyrics_to_strips"],
    ]
    assert fresh["SEQUENCER_PT_m2v_strip_cuts"] == [
        ["set", "use_property_split", True],
        ["prop", scene_rna, "cut_channel", None],
        ["prop", scene_rna, "cut_snap", None],
        ["label", "No strips on this channel"],
        ["operator", "m2v.cuts_from_strips"],
    ]
    assert fresh["SEQUENCER_PT_m2v_bake"] == [
        ["set", "use_property_split", True],
        ["prop", scene_rna, "bake_target", None],
        ["prop", scene_rna, "bake_signal", None],
        ["column"],
        ["prop", scene_rna, "bake_min", None],
        ["prop", scene_rna, "bake_max", None],
        ["row"],
        ["set", "enabled", False],
        ["operator", "m2v.bake_music"],
        ["label", "Analyze first: one key per image"],
    ]
    assert fresh["SEQUENCER_PT_m2v_text_strip"] is None  # no active text strip: no panel
    on = by["prompts"]
    assert ["set", "active", True] in on["SEQUENCER_PT_m2v_prompts"]
    assert ["label", "2 text strip(s) guide their images"] in on["SEQUENCER_PT_m2v_prompts"]
    assert ["prop", strip_rna, w, "Weight of words"] in on["SEQUENCER_PT_m2v_prompts"]
    assert ["label", "1 strip(s) on channel 1"] in on["SEQUENCER_PT_m2v_strip_cuts"]
    assert ["set", "enabled", True] in on["SEQUENCER_PT_m2v_bake"]
    assert not any(x[0] == "label" for x in on["SEQUENCER_PT_m2v_bake"])
    assert on["SEQUENCER_PT_m2v_text_strip"] == [
        ["set", "use_property_split", True],
        ["prop", strip_rna, w, None],
        ["label", "Guides the images in its span"],
    ]
    off_ch = by["off_channel"]
    assert ["label", "1 text strip(s) guide their images"] in off_ch["SEQUENCER_PT_m2v_prompts"]
    assert not any(x[:3] == ["prop", strip_rna, w] for x in off_ch["SEQUENCER_PT_m2v_prompts"])
    assert off_ch["SEQUENCER_PT_m2v_text_strip"][-1] == ["label", "Not a prompt: the Prompt Channel is 3"]
    assert by["muted"]["SEQUENCER_PT_m2v_text_strip"][-1] == ["label", "Muted: guides nothing"]
    assert ["label", "1 text strip(s) guide their images"] in by["muted"]["SEQUENCER_PT_m2v_prompts"]
    assert by["off"]["SEQUENCER_PT_m2v_text_strip"][-1] == ["label", "Prompts from Text Strips is off"]
    assert by["no_text"]["SEQUENCER_PT_m2v_text_strip"] is None


def test_with_the_song_bake_snap_and_undo(built, song, tmp_path, blender_python):  # noqa: F811
    """With a real song strip (5.x: the 4.2 wheel has no sound): Bake Music to F-Curve after an Analyze, Cuts from
    Strips snapped to beats when asked, and Lyrics -> Text Strips undone in one step."""
    needs_sound(blender_python)
    wav, lrc, dur = song
    out = tmp_path / "out"
    res = blender(
        f"""
import bpy, json, sys
install({_zip(built)!r})
m2v = sys.modules["bl_ext.user_default.m2v"]
d = sys.modules["bl_ext.user_default.m2v.directing"]
scene, strip = song_scene({str(wav)!r}, {str(out) + "/"!r}, trim_start=0, trim_end=0)
scene.m2v.lyrics_file = {str(lrc)!r}
scene.m2v.preset = "draft"
try:
    bpy.ops.m2v.bake_music()
except RuntimeError as e:
    emit(step="before_analyze", error=str(e))
assert bpy.ops.m2v.analyze() == {{"FINISHED"}}
timing = m2v.adapters.strip_timing(scene, strip)
segments = d.current_segments(scene, timing)
st = scene.m2v
st.bake_target, st.bake_signal, st.bake_min, st.bake_max = "zoom", "intensity", 0.0, 0.1
assert bpy.ops.m2v.bake_music() == {{"FINISHED"}}
fc = d.find_fcurve(scene, "m2v.zoom", 0)
keys = [tuple(k.co) for k in fc.keyframe_points]
modes = sorted({{k.interpolation for k in fc.keyframe_points}})
st.bake_target, st.bake_signal, st.bake_min, st.bake_max = "shift_y", "beat", -5.0, 5.0
assert bpy.ops.m2v.bake_music() == {{"FINISHED"}}
ykeys = [tuple(k.co) for k in d.find_fcurve(scene, "m2v.shift", 1).keyframe_points]
emit(step="baked", keys=keys, ykeys=ykeys, modes=modes, segments=segments, status=st.status,
     frame_start=strip.frame_start, fps=timing.fps, zoom_x=d.find_fcurve(scene, "m2v.shift", 0) is None,
     beats=m2v.markers.analysis_summary(scene)["beats"])
# Cuts from Strips, snapped: footage cuts 0.2 s off two beats land on them.
beats = m2v.markers.analysis_summary(scene)["beats"]
for k, name in enumerate(("a", "b")):
    s = strips_of(scene).new_effect(name=name, type="COLOR", channel=5, frame_start=timing.frame_at(beats[4 + 4 * k] + 0.2),
                                    length=20)
before = [m.frame for m in m2v.markers.cut_markers(scene)]
scene.m2v.cut_channel, scene.m2v.cut_snap = 5, True
assert bpy.ops.m2v.cuts_from_strips() == {{"FINISHED"}}
after = [m.frame for m in m2v.markers.cut_markers(scene)]
emit(step="snapped", new=sorted(set(after) - set(before)), beat_frames=[timing.frame_at(b) for b in beats],
     strip_cuts=[f for s in all_strips(scene) if s.channel == 5 for f in (s.frame_final_start, s.frame_final_end)])
# Lyrics -> Text Strips is one undo step.
bpy.ops.ed.undo_push(message="before")
before = (markers(scene), len(all_strips(scene)))
assert bpy.ops.m2v.lyrics_to_strips("EXEC_DEFAULT", True) == {{"FINISHED"}}
scene = bpy.context.scene
made = (markers(scene), sorted((s.text, s.frame_final_start) for s in all_strips(scene) if s.get("m2v_lyric")))
bpy.ops.ed.undo()
scene = bpy.context.scene
emit(step="undo", before=before, made=made, undone=(markers(scene), len(all_strips(scene))))
""",
        tmp_path,
        blender_python,
    )
    by = {r["step"]: r for r in res}
    assert "press Analyze first" in by["before_analyze"]["error"]
    b = by["baked"]
    timing = StripTiming(b["frame_start"], b["frame_start"], b["frame_start"] + 10_000, b["fps"])
    sig = json.loads((out / "signals.json").read_text())
    from engine.plan.signals import slot_value
    from engine.protocol import image_slots
    from m2v_blender.direction import image_first_frames

    # One key per image, at its first frame, the signal's mean over its slot scaled to 0-0.1 (the engine's mean).
    want = []
    for s, e, n in b["segments"]:
        for f, (x, y) in zip(image_first_frames(timing, s, e, n), image_slots(s, e, n, digits=None)):
            want.append((f, 0.1 * slot_value(sig, "intensity", x, y)))
    assert len(b["keys"]) == len(want) == sum(n for _, _, n in b["segments"]) and b["modes"] == ["LINEAR"]
    assert [k[0] for k in b["keys"]] == [float(f) for f, _ in want]
    assert np.allclose([k[1] for k in b["keys"]], [v for _, v in want], atol=1e-6)
    assert b["status"].startswith("baked beat onto Shift Y:") and b["zoom_x"]
    # The keys follow the song: the loud middle section (metal, gain 0.9) above the quiet first (gain 0.4).
    t = np.array([timing.time_at(k[0]) for k in b["keys"]])
    v = np.array([k[1] for k in b["keys"]])
    assert v[(t > 9) & (t < 15)].mean() > v[(t > 1) & (t < 7)].mean() + 0.02
    # The beat pulse keys are high on the images whose slot holds a beat, low on the others.
    yf = np.array([k[0] for k in b["ykeys"]])
    yv = np.array([k[1] for k in b["ykeys"]])
    ends = np.append(yf[1:], yf[-1] + 1)
    beat_frames = np.array([timing.frame_at(x) for x in b["beats"]])
    holds = np.array([np.any((beat_frames >= a) & (beat_frames < z)) for a, z in zip(yf, ends)])
    assert holds.sum() > 10 and yv[holds].mean() > yv[~holds].mean() + 1.0
    sn = by["snapped"]
    assert sn["new"] and set(sn["new"]) <= set(sn["beat_frames"]) and not set(sn["strip_cuts"]) & set(sn["new"])
    u = by["undo"]
    assert not any("\u266a" in n for n, _ in u["made"][0]) and len(u["made"][1]) == 2
    assert [text for text, _ in u["made"][1]] == ["a lighthouse in a storm", "neon city lights in the rain"]
    assert u["undone"] == u["before"] and any("\u266a" in n for n, _ in u["before"][0])

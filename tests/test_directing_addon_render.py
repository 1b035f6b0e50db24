"""Directing from the timeline, rendered from the add-on in real Blender with the small models (issue 27's "Done
when" items that need a render): the Prompt Channel's text strips guide the images of their spans across cuts, an
edited strip re-renders from the first image it touches; a keyframed (bezier) zoom reaches every image at Blender's
own value, a changed last keyframe re-renders from the first image whose value changed; and the CLI given the
add-on's prompts.json and curves.json plans and renders the same bytes.

Blender 5.x only: the bpy 4.2 wheel on PyPI is built without Audaspace, so it cannot make the song's sound strip a
Render needs (``needs_sound``); 4.2's side of the same code (text strips, F-curves of 4.2's ``action.fcurves``, each
image's value) is checked without a render in test_directing_addon.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from engine.plan.prompts import PromptPart, prompt_for_span
from engine.protocol import image_slots
from m2v_blender.direction import image_first_frames, segments_of_plan
from m2v_blender.timeline import StripTiming
from tests.conftest import run_engine
from tests.test_addon import blender, blender_python, built, needs_sound, song  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("bpy") is None, reason="bpy is not installed")

#: The song strip from frame 101, trimmed to its first 225 frames (7.5 s at 29.97 fps), cut at 176 and 251 (2.5 s and
#: 5 s): three segments of 3 images (1.2 steps a second, one step an image, each image 25 frames), 32x32, 4 crops.
LENGTH = 225
CUTS = (176, 251)
RATE = 1.2

#: Set up the song, the Custom look and the cuts; ``render(step)`` presses Render (the operator, as an editor does)
#: and emits the job's commands, its image events, the manifest's records with each file's digest, and the strips.
SCENE = """
import bpy, hashlib, json, os, sys
install(P["zip"])
m2v = sys.modules["bl_ext.user_default.m2v"]
d = sys.modules["bl_ext.user_default.m2v.directing"]
registry = m2v.registry
scene, song = song_scene(P["wav"], P["out"], trim_start=0, trim_end=0)
song.frame_offset_end = song.frame_duration - P["length"]
st = scene.m2v
st.preset = "custom"
st.width = st.height = 32
st.min_rate = st.max_rate = P["rate"]
st.cutout_method, st.cutouts = "crops", 4
st.snap_cuts = False
for k, f in enumerate(P["cuts"]):
    scene.timeline_markers.new("m2v S%02d" % (k + 1), frame=f)
st.prompt_channel = 3
kept = []
_track = registry.track

def track(*a, **kw):  # keep the Render's job: its events and the commands it ran
    job = _track(*a, **kw)
    kept.append(job)
    return job

registry.track = track

def text_strip(name, a, b, text, weight=1.0):
    coll = strips_of(scene)
    try:
        s = coll.new_effect(name=name, type="TEXT", channel=3, frame_start=a, length=b - a)
    except TypeError:  # Blender 4.2 takes frame_end
        s = coll.new_effect(name=name, type="TEXT", channel=3, frame_start=a, frame_end=b)
    s.text = text
    s.m2v_prompt_weight = weight
    return s

def frames_now():
    folder = os.path.join(P["out"], "frames")
    man = json.load(open(os.path.join(folder, "manifest.json")))
    out = []
    for s in man["segments"]:
        for f in man["cache"][s["key"]]["frames"]:
            p = os.path.join(folder, f["file"])
            out.append(dict(f, sha=hashlib.sha256(open(p, "rb").read()).hexdigest(), ino=os.stat(p).st_ino))
    return out

def render(step, **more):
    kept.clear()
    assert bpy.ops.m2v.render(preview=False, model_args=json.dumps(P["extra"])) == {"FINISHED"}, st.status
    job = kept[-1]
    t = m2v.adapters.strip_timing(scene, song)
    events = [{k: e.get(k) for k in ("event", "segment", "index", "reused", "resumed_at")}
              for e in job.events if e["event"] in ("image", "segment_start", "segment_end")]
    emit(step=step, status=st.status, code=job.returncode, commands=job.commands, events=events,
         frames=frames_now(), strips=m2v_strips(scene), plan=open(os.path.join(P["out"], "plan.json")).read(),
         timing=[t.frame_start, t.frame_final_start, t.frame_final_end, t.fps, t.sound_offset], **more)
"""


def _run(built, song, tmp_path, small_models, python, body: str) -> dict[str, dict]:  # noqa: F811
    from tests.small_models import model_args

    wav, _, _ = song
    params = {
        "zip": str(next(built.glob("m2v-*.zip"))),
        "wav": str(wav),
        "out": str(tmp_path / "out") + "/",
        "length": LENGTH,
        "rate": RATE,
        "cuts": list(CUTS),
        # The small random models at the default step size (0.1) keep an image's one step on the same codes: every
        # frame the same bytes, whatever guides it. A script's extra render flags (the operator's model_args, added
        # to the render command) lift it so that guidance shows in the pixels.
        "extra": [*model_args(small_models), "--lr", "1"],
    }
    res = blender(f"P = {params!r}\n" + SCENE + body, tmp_path, python)
    by = {r["step"]: r for r in res}
    for r in by.values():
        assert r.get("code", 0) == 0 and r.get("status", "render finished") == "render finished", r.get("status")
    return by


def _slots(plan: dict) -> list[tuple[int, int, float, float]]:
    """``(segment, index, start, end)`` of every image of the plan, in order (the engine's slots, unrounded)."""
    return [
        (k, i, a, b)
        for k, s in enumerate(plan["segments"])
        for i, (a, b) in enumerate(image_slots(float(s["start"]), float(s["end"]), int(s["images"]), digits=None))
    ]


def _rendered(r: dict) -> list[tuple[int, int]]:
    return [(e["segment"], e["index"]) for e in r["events"] if e["event"] == "image"]


def _first_frames(strips: list[dict]) -> list[int]:
    """Each image's first timeline frame, read off the add-on's own image strips (the frame that first shows it)."""
    out = []
    for s in strips:
        seen = {}
        for j, name in enumerate(s["files"]):
            seen.setdefault(name, s["start"] + j)
        out += sorted(seen.values())
    return out


def test_text_strips_guide_their_images_and_an_edit_rerenders(built, song, tmp_path, small_models, blender_python):  # noqa: F811
    needs_sound(blender_python)
    strips = {"words": (140, 200, "a lighthouse in a storm", 1.0), "more": (200, 290, "neon city lights", 0.6)}
    by = _run(
        built,
        song,
        tmp_path,
        small_models,
        blender_python,
        f"""
st.use_prompt_strips = True
made = {{name: text_strip(name, *v) for name, v in {strips!r}.items()}}
render("first", weights={{name: s.m2v_prompt_weight for name, s in made.items()}})
made["more"].text = "neon  town\\nat night"  # an editor's line break and double space: the words count
render("edited")
""",
    )
    first, edited = by["first"], by["edited"]
    timing = StripTiming(*first["timing"])
    # The strips' spans in song time as the add-on's timing gives them (0.1 ms, as plans keep times), their weights
    # as Blender holds them (a float property: 0.6 in single precision).
    weights = first["weights"]
    assert weights["words"] == 1.0 and weights["more"] == pytest.approx(0.6)
    parts = [
        PromptPart(round(timing.time_at(a), 4), round(timing.time_at(b), 4), t, weights[name])
        for name, (a, b, t, _) in strips.items()
    ]
    plan = json.loads(first["plan"])
    assert [PromptPart(p["start"], p["end"], p["text"], p["weight"]) for p in plan["prompts"]] == parts
    slots = _slots(plan)
    records = first["frames"]
    assert len(records) == len(slots) == sum(s["images"] for s in plan["segments"]) >= 9
    # Each image's record names the text of the strip whose span guides its slot (the engine's own rule), its weight
    # where below 1; images no strip reaches have none.
    guided = {}
    for (k, i, a, b), rec in zip(slots, records):
        p = prompt_for_span(parts, a, b)
        assert rec.get("prompt") == (p.text if p else None), (k, i, a, b, rec)
        assert rec.get("prompt_weight") == (p.weight if p and p.weight < 1 else None), (k, i, rec)
        if p:
            guided.setdefault(p.text, set()).add(k)
    # Both strips cross a cut: each guides images of two segments; and some images are guided by none.
    assert guided == {"a lighthouse in a storm": {0, 1}, "neon city lights": {1, 2}}
    assert any(r.get("prompt") is None for r in records)

    # The edited strip: a new plan part; the images it touches (and what follows them in the chain) render again,
    # those before the first of them are the very same files, not rendered again.
    new = [parts[0], PromptPart(parts[1].start, parts[1].end, "neon town at night", parts[1].weight)]
    plan2 = json.loads(edited["plan"])
    assert [PromptPart(p["start"], p["end"], p["text"], p["weight"]) for p in plan2["prompts"]] == new
    assert _slots(plan2) == slots
    touched = [j for j, (_, _, a, b) in enumerate(slots) if prompt_for_span(new, a, b) != prompt_for_span(parts, a, b)]
    j0 = touched[0]
    k0, i0 = slots[j0][:2]
    assert i0 > 0 and k0 == 1  # inside the second segment: its leading images stay, not only the segments before
    assert _rendered(first) == [s[:2] for s in slots]
    assert _rendered(edited) == [s[:2] for s in slots[j0:]]
    assert [e["segment"] for e in edited["events"] if e["event"] == "segment_end" and e["reused"]] == list(range(k0))
    assert [e["resumed_at"] for e in edited["events"] if e["event"] == "segment_start"][0] == i0
    again = edited["frames"]
    for old, now in zip(records[:j0], again[:j0]):
        assert (now["sha"], now["ino"]) == (old["sha"], old["ino"])  # the same file (a hard link), same bytes
    for j in touched:  # guided by the new words now, and drawn anew
        assert again[j]["prompt"] == "neon town at night" and again[j]["sha"] != records[j]["sha"], j
    assert [r.get("prompt") for r in again[:j0]] == [r.get("prompt") for r in records[:j0]]
    # The strips on the timeline show the new images: the segments from the touched one on have new keys.
    keys0, keys1 = [s["key"] for s in first["strips"]], [s["key"] for s in edited["strips"]]
    assert len(keys0) == len(keys1) == 3 and keys0[:k0] == keys1[:k0] and keys0[k0] != keys1[k0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_keyframed_zoom_per_image_a_changed_key_and_the_cli(built, song, tmp_path, small_models, blender_python):  # noqa: F811
    needs_sound(blender_python)
    keys = [(101, 0.0), (200, 0.08), (300, 0.02)]
    by = _run(
        built,
        song,
        tmp_path,
        small_models,
        blender_python,
        f"""
st.use_prompt_strips = True
text_strip("words", 150, 240, "a lighthouse in a storm", 0.8)
names = {{}}
for use in (False, True):  # the zoom counts in a render with Custom Motion on only
    st.use_motion = use
    names[use] = d.animated_names(st, m2v.flags.conditions(st))
for f, v in {keys!r}:
    st.zoom = v
    scene.keyframe_insert("m2v.zoom", frame=f)
fc = d.find_fcurve(scene, "m2v.zoom", 0)
for k in fc.keyframe_points:
    k.interpolation = "BEZIER"
frames = range(song.frame_final_start, song.frame_final_end)

def curve():
    return {{f: fc.evaluate(f) for f in frames}}

render("first", curve=curve(), names={{str(k): v for k, v in names.items()}})
# Only the last keyframe changes, as an editor re-keys it.
st.zoom = 0.05
scene.keyframe_insert("m2v.zoom", frame={keys[-1][0]})
render("last_key", curve=curve(), keys=[tuple(k.co) for k in fc.keyframe_points])
""",
    )
    first, last = by["first"], by["last_key"]
    assert "zoom" not in first["names"]["False"] and "zoom" in first["names"]["True"]
    assert np.allclose(last["keys"], [[101.0, 0.0], [200.0, 0.08], [300.0, 0.05]])
    plan = json.loads(first["plan"])
    slots = _slots(plan)
    frames = _first_frames(first["strips"])
    assert len(frames) == len(slots) == len(first["frames"]) >= 9 and _first_frames(last["strips"]) == frames
    # (the frames the add-on evaluates the curves at: its rule, in direction, says the same)
    timing = StripTiming(*first["timing"])
    assert frames == [f for s, e, n in segments_of_plan(plan) for f in image_first_frames(timing, s, e, n)]
    curve0 = {int(f): v for f, v in first["curve"].items()}
    curve1 = {int(f): v for f, v in last["curve"].items()}
    # Each image's zoom is Blender's evaluation of the bezier at the image's first frame, to the bit.
    for f, rec in zip(frames, first["frames"]):
        assert rec["animated"] == {"zoom": curve0[f]}, (f, rec)
    for f, rec in zip(frames, last["frames"]):
        assert rec["animated"] == {"zoom": curve1[f]}, (f, rec)
    # (a bezier: not the straight lines between the keys)
    lin = np.interp(frames, [k[0] for k in keys], [k[1] for k in keys])
    assert np.max(np.abs(np.array([curve0[f] for f in frames]) - lin)) > 0.005
    # The changed last key: nothing before the first image whose value changed renders again.
    changed = [j for j, f in enumerate(frames) if curve0[f] != curve1[f]]
    j0 = changed[0]
    k0, i0 = slots[j0][:2]
    assert j0 > 0 and i0 > 0  # mid-segment: the kept images are not only whole segments
    assert _rendered(first) == [s[:2] for s in slots]
    assert _rendered(last) == [s[:2] for s in slots[j0:]]
    assert [e["resumed_at"] for e in last["events"] if e["event"] == "segment_start"][0] == i0
    for old, now in zip(first["frames"][:j0], last["frames"][:j0]):
        assert (now["sha"], now["ino"]) == (old["sha"], old["ino"])
    # Rendered again, the images whose zoom changed noticeably are new pixels (a change of a few millionths, just
    # past the middle key, may warp a 32-pixel image onto the same codes).
    moved = [j for j in changed if abs(curve1[frames[j]] - curve0[frames[j]]) > 0.01]
    assert moved and all(last["frames"][j]["sha"] != first["frames"][j]["sha"] for j in moved)

    # Headless: the CLI given the add-on's own prompts.json and curves.json, with the flags the add-on used, plans
    # the same bytes and renders the same frames.
    out = tmp_path / "out"
    plan_cmd, render_cmd = last["commands"]
    assert plan_cmd[plan_cmd.index("--prompts") + 1] == str(out / "prompts.json")
    assert render_cmd[render_cmd.index("--curves") + 1] == str(out / "curves.json")
    head = tmp_path / "headless"
    swap = {str(out / "plan.json"): str(head / "plan.json"), str(out / "frames"): str(head / "frames")}
    head.mkdir()
    for cmd in (plan_cmd, render_cmd):
        argv = [swap.get(a, a) for a in cmd]
        assert argv != cmd
        r = run_engine(*argv)
        assert r.returncode == 0, r.stderr[-3000:]
    assert (head / "plan.json").read_bytes() == (out / "plan.json").read_bytes()
    manifest = json.loads((head / "frames" / "manifest.json").read_text())
    records = [f for s in manifest["segments"] for f in manifest["cache"][s["key"]]["frames"]]
    assert [_sha(head / "frames" / f["file"]) for f in records] == [f["sha"] for f in last["frames"]]
    drop = ("sha", "ino")
    assert records == [{k: v for k, v in f.items() if k not in drop} for f in last["frames"]]
    assert {r.get("prompt") for r in records} == {None, "a lighthouse in a storm"}

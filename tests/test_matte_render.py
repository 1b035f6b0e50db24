"""Issue 28 through the render: the synthetic shot (a white disc moving on black as the matte, a coloured-noise
movie as footage, the small models), frames with the matte as alpha, the step inside the matte's box, images
without steps, a short matte, renders without a matte as before, a moved matte that re-renders only what it
changed, resume, bad input and the export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine.analysis.synth import Section, synth_song
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.plan.schedule import image_steps
from engine.progress import Collect
from engine.protocol import image_slots
from engine.render.jobs.loop import render
from engine.render.sources.footage import Footage
from engine.render.sources.matte import Matte, matte_from_pixels
from engine.render.step.matte import matte_box
from engine.store.alpha import composite
from tests.conftest import REPO, write_song
from tests.matte_media import disc_frame, noise_frame, write_png_movie
from tests.small_models import load_small, model_args, render_cmd, small_settings

W = H = 32  # the render size: the 64x48 matte and footage are resized to it (stretched, as footage is)


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _plan(d, seconds: int):
    s = synth_song([Section(seconds, 120, "rock", "soft", 0.5)], seed=4)
    wav = write_song(d / "song.wav", s.y, s.sr)
    # One segment a second, 4 images of one step each.
    p = plan_from_boundaries(wav, [float(t) for t in range(seconds + 1)], preset="draft", min_rate=4, max_rate=4, fps=4)
    write_json_atomic(p, d / "plan.json")
    return d / "plan.json", p


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """The synthetic shot: a 2 s plan (8 images), the disc matte and the noise footage (lossless, 29.97 fps)."""
    d = tmp_path_factory.mktemp("shot")
    plan_path, plan = _plan(d, 2)
    write_png_movie(d / "disc.mov", [disc_frame(j) for j in range(60)])
    write_png_movie(d / "noise.mov", [noise_frame(j) for j in range(60)])
    return {"dir": d, "plan": plan_path, "p": plan, "matte": d / "disc.mov", "footage": d / "noise.mov"}


@pytest.fixture(scope="module")
def models(small_models):
    return load_small(small_models)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("M2V_CACHE", str(tmp_path / "cache"))  # the matte and footage digests of this test only


def _settings(**kw):
    return small_settings(lr=0.3, **kw)


def _records(out) -> list[dict]:
    m = json.loads((out / "manifest.json").read_text())
    return [f for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]


def _keys(out) -> list[str]:
    return [s["key"] for s in json.loads((out / "manifest.json").read_text())["segments"]]


def _bytes(out) -> list[bytes]:
    return [(out / f["file"]).read_bytes() for f in _records(out)]


def _pixels(out, rec) -> np.ndarray:
    return np.asarray(Image.open(out / rec["file"]))


def _warnings(events) -> list[str]:
    return [e["message"] for e in events.events if e["event"] == "warning"]


# ---------------------------------------------------------------- the synthetic shot


def test_the_synthetic_shot(shot, models, tmp_path, monkeypatch):
    """Every image's alpha is the matte after the same resize; outside it the RGB is the footage frame, inside it
    is generated; each step's cutouts come from the matte's padded box only; without --alpha the frame is that
    laid over the footage."""
    import engine.render.step.cutouts as cutouts
    import engine.render.step.matte as step_matte

    boxes, views = [], []
    clip_view, make_cutouts = step_matte.clip_view, cutouts.make_cutouts

    def record_view(image, m):
        boxes.append(m.box)
        return clip_view(image, m)

    def record_cutouts(image, *a, **kw):
        views.append(tuple(image.shape[2:]))
        return make_cutouts(image, *a, **kw)

    monkeypatch.setattr(step_matte, "clip_view", record_view)
    monkeypatch.setattr(cutouts, "make_cutouts", record_cutouts)
    kw = dict(footage=str(shot["footage"]), matte=str(shot["matte"]))
    out = tmp_path / "alpha"
    events = Collect()
    assert render(shot["plan"], out, _settings(alpha="matte", **kw), models, events) == 0
    assert _warnings(events) == []
    matte, footage = Matte(shot["matte"]), Footage(shot["footage"])
    recs = _records(out)
    assert len(recs) == 8 and [r["matte"] for r in recs] == [r["footage"] for r in recs]
    assert len({r["matte"] for r in recs}) == 8  # the disc moves: every image has its own matte
    want_boxes = []
    for rec in recs:
        rgba = _pixels(out, rec)
        assert rgba.shape == (H, W, 4)
        disc = matte_from_pixels(_rgb(disc_frame(rec["matte"])), W, H)  # the same resize, by hand
        alpha = rgba[..., 3].astype(int)
        assert np.abs(alpha - disc).max() <= 1 and np.array_equal(alpha, matte.frame(rec["matte"], W, H))
        frame = footage.frame(rec["footage"], W, H).astype(int)
        outside, inside = disc == 0, disc == 255
        assert outside.sum() > 200 and inside.sum() > 50
        assert np.abs(rgba[..., :3].astype(int) - frame)[outside].max() <= 2
        assert np.abs(rgba[..., :3].astype(int) - frame)[inside].mean() > 20  # generated there, not the footage
        want_boxes.append(matte_box(disc, align=models.vqgan.factor))
    # One step an image (the plan's schedule): each step's cutouts came from that image's padded box, smaller
    # than the frame, and CLIP saw nothing else.
    steps = [len(s) for seg in shot["p"]["segments"] for s in image_steps(seg)]
    assert steps == [1] * 8 and boxes == want_boxes
    assert views == [(y1 - y0, x1 - x0) for x0, y0, x1, y1 in want_boxes]
    assert all((x1 - x0) * (y1 - y0) < 0.7 * W * H for x0, y0, x1, y1 in want_boxes)
    # Opaque frames (no --alpha): the same images laid over their footage frames.
    opaque = tmp_path / "opaque"
    assert render(shot["plan"], opaque, _settings(**kw), models, Collect()) == 0
    for a, b in zip(recs, _records(opaque)):
        rgb = _pixels(opaque, b)
        assert rgb.shape == (H, W, 3)
        assert np.array_equal(rgb, composite(_pixels(out, a), footage.frame(a["footage"], W, H)))
    matte.close()
    footage.close()


def test_without_a_matte_keys_and_frames_are_as_before(shot, models, tmp_path):
    """A matte that is not used (its rows set, no --matte) changes no key; an all-white matte makes the same keys and
    the same frame bytes as no matte (the plain step, the plain pixels)."""
    from engine.analysis.audio import load_song
    from engine.models.factory import pick_device
    from engine.render.jobs.keys import segment_keys
    from engine.render.sources.model import ModelSource

    plain = tmp_path / "plain"
    assert render(shot["plan"], plain, _settings(), models, Collect()) == 0
    rows = dict(matte_offset=0.5, matte_speed=2.0, matte_span=(0.2, 1.5), matte_fps=12.0, matte_channel="alpha",
                matte_invert=True, matte_feather=3.0)  # fmt: skip
    song = load_song(shot["p"]["song"]["path"], sr=16000, min_duration=0.0).y
    src = ModelSource(shot["p"], _settings(**rows), models, song, pick_device("cpu"))
    assert segment_keys(shot["p"], song, src.settings, src.ids(), src.key_content) == _keys(plain)
    white = tmp_path / "white.png"
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(white)
    out = tmp_path / "white"
    events = Collect()
    kw = dict(matte=str(white), matte_feather=3.0, matte_offset=0.5)
    assert render(shot["plan"], out, _settings(**kw), models, events) == 0
    assert _warnings(events) == []
    assert _keys(out) == _keys(plain) and _bytes(out) == _bytes(plain)
    assert [{k: v for k, v in r.items() if k != "matte"} for r in _records(out)] == _records(plain)


# ---------------------------------------------------------------- a moved matte


def test_a_moved_matte_rerenders_only_what_it_changed(models, tmp_path, monkeypatch):
    """The disc moved in the second second only: the first segment is reused; the third too where it starts a
    chain, not where it follows the second (keys chain); an unchanged matte decodes nothing for its keys."""
    from engine.analysis.audio import load_song
    from engine.models.factory import pick_device
    from engine.render.jobs.keys import segment_keys
    from engine.render.sources.model import ModelSource

    plan_path, p = _plan(tmp_path, 3)
    a, b = tmp_path / "a.mov", tmp_path / "b.mov"
    write_png_movie(a, [disc_frame(j) for j in range(90)])
    write_png_movie(b, [disc_frame(j, moved=6 if 30 <= j < 60 else 0) for j in range(90)])
    song = load_song(p["song"]["path"], sr=16000, min_duration=0.0).y
    decoded = []
    frame = Matte.frame
    monkeypatch.setattr(Matte, "frame", lambda self, j, w, h: decoded.append(j) or frame(self, j, w, h))

    def keys(matte, starts=(0,)):
        src = ModelSource(p, _settings(matte=str(matte)), models, song, pick_device("cpu"))
        src.starts = list(starts)
        return segment_keys(p, song, src.settings, src.ids(), src.key_content, starts)

    ka, kb = keys(a), keys(b)
    assert ka[0] == kb[0] and ka[1] != kb[1] and ka[2] != kb[2]  # the third follows the second's latent
    ca, cb = keys(a, (0, 2)), keys(b, (0, 2))
    assert ca[0] == cb[0] and ca[1] != cb[1] and ca[2] == cb[2]  # a chain starts there: only the second changed
    decoded.clear()
    assert keys(a, (0, 2)) == ca and decoded == []  # the digests are kept by the matte's content
    # Rendered: the second render of the moved matte makes only the second segment's images.
    out = tmp_path / "out"
    assert render(plan_path, out, _settings(matte=str(a)), models, Collect(), chain_at=(2.0,)) == 0
    assert _keys(out) == ca
    before = {f["file"]: ((out / f["file"]).read_bytes(), (out / f["file"]).stat().st_mtime_ns) for f in _records(out)}
    events = Collect()
    assert render(plan_path, out, _settings(matte=str(b)), models, events, chain_at=(2.0,)) == 0
    assert _keys(out) == cb
    ends = [e for e in events.events if e["event"] == "segment_end"]
    assert [e["reused"] for e in sorted(ends, key=lambda e: e["segment"])] == [True, False, True]
    assert sum(e["event"] == "image" for e in events.events) == 4
    for f in _records(out):
        if f["file"] in before:  # the reused segments' frames are the very files
            assert ((out / f["file"]).read_bytes(), (out / f["file"]).stat().st_mtime_ns) == before[f["file"]]


# ---------------------------------------------------------------- black, short, resume


def test_black_and_short_mattes_and_resume(shot, models, small_models, tmp_path):
    """A matte all black over the first second and ending at 1.33 s: those 4 images get no steps (said once), the
    last 2 have no matte (said once, generated over the whole frame, opaque); killed and resumed, the render is
    byte for byte the uninterrupted one."""
    import engine.render.step.optimize as optimize

    matte = tmp_path / "black_then_disc.mov"
    write_png_movie(matte, [np.zeros((48, 64), np.uint8)] * 30 + [disc_frame(j) for j in range(30, 40)])
    kw = dict(footage=str(shot["footage"]), matte=str(matte), alpha="matte")
    whole = tmp_path / "whole"
    events = Collect()
    steps = []
    step = optimize.Optimizer.step
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optimize.Optimizer, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
        assert render(shot["plan"], whole, _settings(**kw), models, events) == 0
    notes = _warnings(events)
    assert len(notes) == 2, notes
    assert "covers 6 of the 8 images" in notes[0] and "from song time 0.000 s to 1.335 s" in notes[0]
    assert notes[1] == f"the matte {matte} is all black for 4 image(s): they are made without steps"
    recs = _records(whole)
    assert [r.get("matte") for r in recs] == [0, 8, 15, 23, 30, 38, None, None]
    assert ["loss" in r for r in recs] == [False] * 4 + [True] * 4 and len(steps) == 4
    footage = Footage(shot["footage"])
    for r in recs[:4]:  # nothing generated: transparent, the footage frame's RGB
        rgba = _pixels(whole, r)
        assert (rgba[..., 3] == 0).all()
        assert np.array_equal(rgba[..., :3], footage.frame(r["footage"], W, H))
    for r in recs[6:]:  # past the matte's end: generated over the whole frame, opaque
        assert (_pixels(whole, r)[..., 3] == 255).all()
    # Killed at the 6th frame written, then resumed from its resume points: the same bytes.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    flags = ["--footage", str(shot["footage"]), "--matte", str(matte), "--alpha", "matte", "--snapshot-every", "0"]
    cmd = render_cmd(shot["plan"], tmp_path / "resumed", small_models, *flags)
    killed = subprocess.run(cmd, env={**env, "M2V_FAULT": "frame.renamed:6"}, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _bytes(tmp_path / "resumed") == _bytes(whole)


# ---------------------------------------------------------------- bad input and the export

BAD = """
import contextlib, io, json, sys
from engine.cli.commands import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    out.append([code, [line for line in err.getvalue().splitlines() if "error:" in line],
                "Traceback" in err.getvalue()])
print(json.dumps(out))
"""


def test_bad_mattes_exit_2_naming_the_file_and_write_nothing(shot, small_models, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a movie" * 100)
    cut = tmp_path / "cut.mov"
    cut.write_bytes(shot["matte"].read_bytes()[: shot["matte"].stat().st_size // 3])
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(disc_frame(0)).save(folder / "m1.png")
    out = tmp_path / "out"
    base = ["render", str(shot["plan"]), "--out", str(out), "--size", "32", "32", *model_args(small_models)]
    cases = [
        (["--matte", str(tmp_path / "gone.mov")], ["--matte", "gone.mov"]),
        (["--matte", str(junk)], ["--matte: not a movie or picture", "junk.mp4"]),
        (["--matte", str(cut)], ["--matte", "cut.mov"]),
        (["--matte", str(shot["matte"]), "--matte-channel", "alpha"], ["--matte-channel alpha", "disc.mov"]),
        (["--matte", str(folder)], ["--matte-fps", "pictures"]),
        (["--matte", str(shot["matte"]), "--matte-feather", "-1"], ["--matte-feather"]),
        (["--alpha", "matte"], ["--alpha matte needs --matte"]),
        (["--matte", str(shot["matte"]), "--matte-span", "2", "1"], ["--matte-span"]),
    ]
    exports = [
        (["export", str(tmp_path), "-o", str(tmp_path / "v.mov"), "--alpha", "webm"], ["--alpha"]),
    ]
    runs = [base + extra for extra, _ in cases] + [args for args, _ in exports]
    env = dict(os.environ, PYTHONPATH=str(REPO), M2V_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", BAD, json.dumps(runs)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for (code, errors, traceback), (_, words) in zip(json.loads(proc.stdout.splitlines()[-1]), cases + exports):
        assert code == 2 and len(errors) == 1 and not traceback, (words, code, errors)
        assert all(w in errors[0] for w in words), (words, errors)
    assert not out.exists()


def test_export_lays_the_frames_over_their_footage_or_keeps_the_alpha(shot, models, tmp_path):
    from tests.test_matte import _decoded

    frames = tmp_path / "frames"
    kw = dict(footage=str(shot["footage"]), matte=str(shot["matte"]), alpha="matte")
    assert render(shot["plan"], frames, _settings(**kw), models, Collect()) == 0
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def export(*args):
        return subprocess.run([sys.executable, "-m", "engine", "export", str(frames), *args], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip

    recs = {r["file"]: r for r in _records(frames)}
    footage = Footage(shot["footage"])
    # A movie that keeps the alpha: PNG in QuickTime, every byte of every frame (held for its slot).
    done = export("-o", str(tmp_path / "alpha.mov"), "--alpha", "png", "--fps", "8")
    assert done.returncode == 0, done.stderr
    got = _decoded(tmp_path / "alpha.mov", "rgba")
    assert len(got) == 16
    want = [_pixels(frames, r) for r in recs.values()]
    assert all(any(np.array_equal(g, w) for w in want) for g in got)
    # The MP4: laid over the footage frame each image followed (from the render's own record), not over black.
    done = export("-o", str(tmp_path / "video.mp4"), "--fps", "4")
    assert done.returncode == 0, done.stderr
    video = _decoded(tmp_path / "video.mp4", "rgb24")
    for g, r in zip(video, recs.values()):
        rgba = _pixels(frames, r)
        over = composite(rgba, footage.frame(r["footage"], W, H)).astype(int)
        black = composite(rgba).astype(int)
        assert np.abs(g.astype(int) - over).mean() * 3 < np.abs(g.astype(int) - black).mean()
    bad = export("-o", str(tmp_path / "v.mp4"), "--alpha", "prores")
    assert bad.returncode == 2 and "-o must name a .mov file with --alpha" in bad.stderr
    # The footage gone since: the MP4 cannot be laid over it; the error names it (the alpha movie needs none).
    moved = shot["footage"].with_suffix(".away")
    shot["footage"].rename(moved)
    try:
        gone = export("-o", str(tmp_path / "again.mp4"), "--fps", "4")
        kept = export("-o", str(tmp_path / "again.mov"), "--alpha", "png", "--fps", "4")
    finally:
        moved.rename(shot["footage"])
    assert gone.returncode == 2 and str(shot["footage"]) in gone.stderr and "export --alpha" in gone.stderr
    assert not (tmp_path / "again.mp4").exists()
    assert kept.returncode == 0, kept.stderr
    footage.close()



# ---------------------------------------------------------------- with the timeline's direction (issues 27 and 28)


def test_a_matte_with_timed_prompts_and_keyframes(shot, models, tmp_path):
    """A matte, a timed prompt and a keyframed footage carry-over in one render: each image's record holds its
    matte frame, its prompt and its value; the alpha is still the matte; a later keyframe changed re-renders only
    from the first image whose value changed (the image keys read the matte's per-image frames)."""
    from engine.plan.curves import parse_curves
    from engine.plan.prompts import apply_prompts, parse_prompts_doc, plan_prompts, prompt_for_span

    p = json.loads(shot["plan"].read_text())
    doc = {"kind": "m2v-prompts", "version": 1, "prompts": [{"start": 0.5, "end": 1.6, "text": "a red door"}]}
    assert apply_prompts(p, parse_prompts_doc(doc)) == []
    plan = tmp_path / "plan.json"
    write_json_atomic(p, plan)
    kw = dict(footage=str(shot["footage"]), matte=str(shot["matte"]), alpha="matte")

    def settings(last: float):
        keys = [[0.0, 0.2, "linear"], [1.0, 0.2, "linear"], [1.5, last, "linear"]]
        doc = {"kind": "m2v-curves", "version": 1, "curves": {"footage_blend": keys}}
        return _settings(**kw).with_curves(parse_curves(doc, ["footage_blend"]))

    out = tmp_path / "out"
    assert render(plan, out, settings(0.6), models, Collect()) == 0
    recs = _records(out)
    slots = [s for seg in p["segments"] for s in image_slots(seg["start"], seg["end"], seg["images"], digits=None)]
    assert len(recs) == len(slots) == 8
    matte = Matte(shot["matte"])
    for rec, (a, b) in zip(recs, slots):
        guide = prompt_for_span(plan_prompts(p), a, b)
        assert rec.get("prompt") == (guide.text if guide else None)
        assert rec["animated"]["footage_blend"] == pytest.approx(0.2 + (0.6 - 0.2) * min(max(a - 1.0, 0), 0.5) / 0.5)
        assert np.array_equal(_pixels(out, rec)[..., 3], matte.frame(rec["matte"], W, H))
    matte.close()
    assert {r.get("prompt") for r in recs} == {None, "a red door"}
    before = [(out / r["file"]).read_bytes() for r in recs]
    events = Collect()
    assert render(plan, out, settings(0.9), models, events) == 0
    first = next(j for j, (a, _) in enumerate(slots) if a > 1.0)  # the curve changes after 1 s only
    assert 0 < first - 4 < 4  # inside the second segment: its first image is kept too
    made = [(e["segment"], e["index"]) for e in events.events if e["event"] == "image"]
    assert len(made) == len(slots) - first
    assert [(out / r["file"]).read_bytes() for r in _records(out)][:first] == before[:first]

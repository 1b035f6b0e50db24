"""Mattes (issue 28, the parts before the render wires them in): a matte timed and read like footage, the step
inside the matte, images with straight alpha as Blender's Alpha Over takes them, and exports with alpha."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.render.sources.footage import Footage
from engine.render.sources.matte import (
    Matte,
    MatteTiming,
    blank_digest,
    is_empty,
    is_full,
    luma,
    matte_digests,
    matte_from_pixels,
    matte_warnings,
    segment_mattes,
)
from engine.render.step.matte import StepMatte, clip_view, latent_mask, matte_box, step_matte
from engine.store.alpha import composite, rgba_frame
from tests.conftest import REPO
from tests.footage_media import footage_frame
from tests.matte_media import disc_frame, noise_frame, with_alpha, write_png_movie
from tests.small_models import load_small, small_settings


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def disc_movie(tmp_path_factory):
    """One second of a white disc moving on black at 29.97 fps (lossless) and its frames."""
    path = tmp_path_factory.mktemp("matte") / "disc.mov"
    return path, write_png_movie(path, [disc_frame(j) for j in range(30)])


# ---------------------------------------------------------------- the matte's media


def test_a_matte_is_timed_by_the_footage_rule_and_read_at_the_render_size(disc_movie):
    path, frames = disc_movie
    matte, footage = Matte(path), Footage(path)
    assert matte.kind == "movie" and len(matte) == 30 and matte.times == footage.times
    slots = [(a / 7, (a + 1) / 7) for a in range(-3, 12)]
    for timing in (
        MatteTiming(),
        MatteTiming(footage_offset=0.3, footage_speed=29.97 / 24),
        MatteTiming(footage_offset=-0.2, footage_speed=0.5, footage_span=(0.1, 0.9)),
    ):
        picks = [matte.pick(timing, a, b, first=k == 0) for k, (a, b) in enumerate(slots)]
        assert picks == [footage.pick(timing, a, b, first=k == 0) for k, (a, b) in enumerate(slots)]
        assert any(p is None for p in picks) and any(p is not None for p in picks)
    # The same size: the very frame; another size: the frame resized as footage is (Lanczos, stretched).
    for j in (0, 11, 29):
        assert np.array_equal(matte.frame(j, 64, 48), frames[j])
        small = matte.frame(j, 40, 40)
        assert small.shape == (40, 40)
        assert np.array_equal(small, np.asarray(Image.fromarray(frames[j]).resize((40, 40), Image.LANCZOS)))
    matte.close()
    footage.close()


def test_luma_alpha_and_invert(tmp_path):
    noise, disc = noise_frame(3), disc_frame(3)
    # Rec. 709 weights on the bytes: pure red, green and blue, and grey.
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    assert luma(px).tolist() == [[54, 182, 18, 90]]
    # A movie whose RGB is noise and whose alpha is the disc: the alpha channel is the disc, the luma is not.
    mov = tmp_path / "rgba.mov"
    write_png_movie(mov, [with_alpha(noise_frame(j), disc_frame(j)) for j in range(5)])
    assert np.array_equal(Matte(mov, channel="alpha").frame(3, 64, 48), disc)
    assert np.array_equal(Matte(mov, channel="luma").frame(3, 64, 48), luma(noise))
    assert np.array_equal(Matte(mov, channel="alpha", invert=True).frame(3, 64, 48), 255 - disc)
    # A picture with alpha, and a folder of them played at --matte-fps.
    Image.fromarray(with_alpha(noise, disc), "RGBA").save(tmp_path / "still.png")
    assert np.array_equal(Matte(tmp_path / "still.png", channel="alpha").frame(0, 64, 48), disc)
    seq = tmp_path / "seq"
    seq.mkdir()
    for j in range(4):
        Image.fromarray(with_alpha(noise_frame(j), disc_frame(j)), "RGBA").save(seq / f"m{j + 1}.png")
    m = Matte(seq, fps=12, channel="alpha")
    assert m.kind == "sequence" and m.times == [0, 1 / 12, 2 / 12, 3 / 12]
    assert np.array_equal(m.frame(2, 64, 48), disc_frame(2))


def test_feather_softens_the_edge_over_about_its_width():
    disc = disc_frame(15, 128, 96, radius=30)
    hard = matte_from_pixels(_rgb(disc), 128, 96)
    assert np.array_equal(hard, disc)
    soft = matte_from_pixels(_rgb(disc), 128, 96, feather=8)
    y, x = np.mgrid[0:96, 0:128] + 0.5
    cx = 30 + (128 - 60) * (15 / 29)
    d = np.hypot(x - cx, y - 48) - 30  # signed distance to the edge, pixels
    assert (soft[d < -8] >= 250).all() and (soft[d > 8] <= 5).all()
    partial = (soft > 5) & (soft < 250)
    assert partial.any() and (np.abs(d[partial]) <= 8).all()
    assert abs(float(soft.mean()) - float(hard.mean())) < 1.0  # a blur moves no matte, it softens it


def test_bad_mattes_are_refused_naming_the_file(tmp_path, disc_movie):
    path, _ = disc_movie
    with pytest.raises(InputError, match="--matte movie or picture not found") as e:
        Matte(tmp_path / "nope.mov")
    assert "nope.mov" in str(e.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a movie" * 100)
    with pytest.raises(InputError, match="--matte: not a movie or picture") as e:
        Matte(junk)
    assert "junk.mp4" in str(e.value)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(InputError, match="--matte: not a picture m2v can read"):
        Matte(broken)
    # A movie cut short: refused when opened or when the frame that is gone is read, naming it either way.
    cut = tmp_path / "cut.mov"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="--matte") as e:
        m = Matte(cut)
        for j in range(len(m)):
            m.frame(j, 64, 48)
    assert "cut.mov" in str(e.value)
    with pytest.raises(InputError, match="--matte-channel alpha: the matte has no alpha channel"):
        Matte(path, channel="alpha")
    seq = tmp_path / "seq"
    seq.mkdir()
    Image.fromarray(disc_frame(0)).save(seq / "a1.png")
    with pytest.raises(InputError, match="--matte-fps"):
        Matte(seq)
    with pytest.raises(InputError, match="--matte-fps"):
        Matte(seq, fps=-1)
    with pytest.raises(InputError, match="--matte-channel"):
        Matte(path, channel="red")
    with pytest.raises(InputError, match="--matte-feather"):
        Matte(path, feather=float("nan"))


def test_a_short_matte_has_no_matte_past_its_end_and_says_so_once(disc_movie):
    path, _ = disc_movie
    matte = Matte(path)  # one second
    segs = [{"start": 0.0, "end": 1.5, "images": 6}, {"start": 1.5, "end": 3.0, "images": 6}]
    timing = MatteTiming()
    frames = [segment_mattes(matte, timing, s) for s in segs]
    # The last frame shows from 0.968 s to 1.001 s: the image starting at 1.0 s still has it.
    assert all(j is not None for j in frames[0][:5]) and frames[0][4] == 29 and frames[0][5] is None
    assert frames[1] == [None] * 6
    notes = matte_warnings(path, frames, timing=timing, end=matte.end)
    assert len(notes) == 1 and "covers 5 of the 12 images" in notes[0] and "0.000 s to 1.001 s" in notes[0]
    late = MatteTiming(footage_offset=5.0)
    none = [segment_mattes(matte, late, s) for s in segs]
    assert matte_warnings(path, none) == [
        f"the matte {path} covers none of the plan's images: check --matte-offset, --matte-speed and --matte-span; "
        "every image is generated over the whole frame"
    ]
    assert matte_warnings(path, frames[:1][:4], empty=3)[-1] == (
        f"the matte {path} is all black for 3 image(s): they are made without steps"
    )


def test_matte_digests_change_only_where_the_matte_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("M2V_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.mov", tmp_path / "b.mov"
    write_png_movie(a, [disc_frame(j) for j in range(20)])
    write_png_movie(b, [disc_frame(j, moved=6 if j >= 12 else 0) for j in range(20)])  # moved from frame 12 on
    da = matte_digests(Matte(a), range(20), 64, 48)
    db = matte_digests(Matte(b), range(20), 64, 48)
    assert [da[j] == db[j] for j in range(20)] == [True] * 12 + [False] * 8
    assert len(set(da.values())) == 20  # every frame of the moving disc is its own matte
    assert list((tmp_path / "cache" / "matte").iterdir())  # kept, as footage's digests are
    # How the matte is read is part of what it is: another channel, invert or feather is another matte.
    digests = {Matte(a).digest, Matte(a, invert=True).digest, Matte(a, feather=2).digest}
    assert len(digests) == 3
    assert matte_digests(Matte(a, invert=True), [0], 64, 48)[0] != da[0]
    # All black and all white are known by their digests.
    blank = tmp_path / "blank.mov"
    write_png_movie(blank, [np.zeros((48, 64), np.uint8), np.full((48, 64), 255, np.uint8), disc_frame(0)])
    d = matte_digests(Matte(blank), range(3), 64, 48)
    assert [d[j] == blank_digest(64, 48, 0) for j in range(3)] == [True, False, False]
    assert [d[j] == blank_digest(64, 48, 255) for j in range(3)] == [False, True, False]


def test_all_white_and_all_black():
    white, black = np.full((32, 32), 255, np.uint8), np.zeros((32, 32), np.uint8)
    assert is_full(white) and not is_empty(white) and is_empty(black) and not is_full(black)
    assert step_matte(white, 2, torch.device("cpu")) is None  # the plain step
    assert matte_box(black) is None
    with pytest.raises(ValueError, match="made without steps"):
        step_matte(black, 2, torch.device("cpu"))


# ---------------------------------------------------------------- the step inside the matte


def test_the_box_is_the_mattes_bounding_box_padded_to_whole_cells():
    m = np.zeros((96, 128), np.uint8)
    m[40:50, 70:90] = 255
    x0, y0, x1, y1 = matte_box(m, align=16)
    assert (x0, y0, x1, y1) == (64, 32, 96, 64)  # 20 px wide: padded by 3, then out to multiples of 16
    assert matte_box(m, align=1) == (67, 37, 93, 53)
    m[:] = 0
    m[0:5, 120:128] = 10
    assert matte_box(m, align=16) == (112, 0, 128, 16)  # inside the frame


def _disc_matte(size=32, feather=0.0):
    return matte_from_pixels(_rgb(disc_frame(5, size, size, radius=size / 4)), size, size, feather=feather)


@pytest.mark.parametrize("method,impl", [("latest", "batched"), ("latest", "kornia"), ("crops", "batched")])
def test_cutouts_come_only_from_the_box_and_see_nothing_outside_the_matte(method, impl):
    from engine.render.step.cutouts import make_cutouts

    matte = _disc_matte(64)
    backdrop = noise_frame(1, 64, 64)
    m = step_matte(matte, 8, torch.device("cpu"), backdrop)
    x0, y0, x1, y1 = m.box
    assert (x1 - x0, y1 - y0) != (64, 64)
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    view = clip_view(image, m)
    assert view.shape == (1, 3, y1 - y0, x1 - x0)
    cuts = make_cutouts(view, 8, 32, seed=3, method=method, impl=impl)
    (grad,) = torch.autograd.grad((cuts * torch.randn_like(cuts)).sum(), image)
    g = grad.abs().sum(1)[0]
    inside_box = torch.zeros(64, 64, dtype=torch.bool)
    inside_box[y0:y1, x0:x1] = True
    assert (g[~inside_box] == 0).all() and (g[torch.from_numpy(matte == 0)] == 0).all()
    assert (g[torch.from_numpy(matte == 255)] > 0).float().mean() > 0.9
    # Outside the matte the view is the backdrop, inside it the image.
    back = torch.from_numpy(backdrop).permute(2, 0, 1).float().div(255)[:, y0:y1, x0:x1]
    out = torch.from_numpy(matte[y0:y1, x0:x1] == 0)
    assert torch.equal(view[0][:, out], back[:, out])
    inn = torch.from_numpy(matte[y0:y1, x0:x1] == 255)
    assert torch.equal(view[0][:, inn], image.detach()[0, :, y0:y1, x0:x1][:, inn])


@pytest.fixture(scope="module")
def models(small_models):
    return load_small(small_models)


def _optimizer(models, method="latest", **kw):
    from engine.render.step.optimize import Optimizer

    s = small_settings(width=32, height=32, cutouts=8, lr=0.2, cutout_method=method, l1_weight=0.5, **kw)
    opt = Optimizer(models.vqgan, models.clip, s, torch.device("cpu"))
    opt.reset()
    return opt


def _run(opt, target, steps, matte=None, start=0):
    losses, outs = [], []
    anchor = opt.z.detach().clone()
    draws = opt.image_draws(list(range(start, start + steps)))
    for i in range(steps):
        out, loss = opt.step([(target, 1.0)], start + i, anchor, None, draws[i] if draws else None, matte=matte)
        losses.append(loss)
        outs.append(out)
    return losses, outs


@pytest.mark.parametrize("method", ["latest", "crops"])
def test_without_a_matte_the_step_is_the_same_bits(models, method):
    """A matte that is white everywhere, forced through every matte operation, changes no bit of the step: the
    composite, the box, the gradient mask and the confined update are exact no-ops at 1 (and without a matte none
    of them runs)."""
    target = models.clip.embed_text(["a red balloon over the sea"])[0]
    plain, forced = _optimizer(models, method), _optimizer(models, method)
    ones = torch.ones(1, 1, 32, 32)
    full = StepMatte(ones, latent_mask(ones, 2), torch.rand(1, 3, 32, 32), (0, 0, 32, 32), torch.arange(32),
                     torch.arange(32))  # fmt: skip
    a_loss, a_out = _run(plain, target, 4)
    b_loss, b_out = _run(forced, target, 4, matte=full)
    assert all(torch.equal(x, y) for x, y in zip(a_loss, b_loss))
    assert all(torch.equal(x, y) for x, y in zip(a_out, b_out))
    assert torch.equal(plain.z, forced.z)
    assert plain.opt.state_dict()["state"][0]["exp_avg"].equal(forced.opt.state_dict()["state"][0]["exp_avg"])
    # The matte path is really different where the matte is not white.
    half = _optimizer(models, method)
    _run(half, target, 4, matte=step_matte(_disc_matte(), 2, torch.device("cpu")))
    assert not torch.equal(half.z, plain.z)


@pytest.mark.parametrize("feather", [0.0, 6.0])
def test_the_gradient_and_the_update_stay_inside_the_matte(models, feather):
    target = models.clip.embed_text(["a violet forest"])[0]
    opt = _optimizer(models)
    _run(opt, target, 3)  # Adam's moments now move every cell: the matte's update must still keep them
    matte = _disc_matte(feather=feather)
    m = step_matte(matte, models.vqgan.factor, torch.device("cpu"), noise_frame(0, 32, 32))
    mask = m.latent[0, 0]
    outside, inside = mask == 0, mask == 1
    assert outside.any() and inside.any() and (feather == 0 or ((mask > 0) & (mask < 1)).any())
    before = opt.z.detach().clone()
    losses, _ = _run(opt, target, 4, matte=m, start=3)
    grad = opt.z.grad[0].abs().sum(0)
    assert (grad[outside] == 0).all() and (grad[inside] > 0).any()
    after = opt.z.detach()
    assert torch.equal(after[..., outside], before[..., outside])  # bit for bit, after 4 steps and eq. 1
    moved = (after - before).abs().sum(1)[0]
    assert (moved[inside] > 0).float().mean() > 0.5
    if feather:
        part = (mask > 0) & (mask < 1)
        assert (moved[part] > 0).any()
    assert all(torch.isfinite(x) for x in losses)


# ---------------------------------------------------------------- images with alpha


def test_rgba_frames_hold_the_matte_as_straight_alpha():
    gen, foot = noise_frame(7, 32, 32), noise_frame(8, 32, 32)
    matte = _disc_matte(feather=6)
    rgba = rgba_frame(gen, matte, foot)
    assert np.array_equal(rgba[..., 3], matte)
    out, inn = matte == 0, matte > 0
    assert np.array_equal(rgba[..., :3][out], foot[out]) and np.array_equal(rgba[..., :3][inn], gen[inn])
    assert np.array_equal(rgba_frame(gen, matte)[..., :3][out], np.zeros_like(gen)[out])  # no footage: empty
    over = composite(rgba, foot)
    assert np.array_equal(over[matte == 255], gen[matte == 255]) and np.array_equal(over[out], foot[out])
    a = matte[..., None].astype(float) / 255
    assert np.abs(over - (a * gen + (1 - a) * foot)).max() <= 0.5 + 1e-9  # rounded to the nearest
    assert np.array_equal(composite(rgba)[out], np.zeros_like(gen)[out])


BLENDER_42 = REPO / ".venv" / "blender-4.2" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
BLENDERS = {"5.0": sys.executable, **({"4.2": str(BLENDER_42)} if BLENDER_42.exists() else {})}

ALPHA_OVER = """
import sys, bpy
fg_path, bg_path, out = sys.argv[-3:]
scene = bpy.context.scene
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 32, 100
scene.frame_start = scene.frame_end = 1
scene.view_settings.view_transform = "Standard"
scene.render.image_settings.file_format = "PNG"
scene.render.image_settings.color_mode = "RGB"
scene.render.filepath = out
ed = scene.sequence_editor_create()
strips = ed.strips if hasattr(ed, "strips") else ed.sequences
bg = strips.new_image("footage", bg_path, 1, 1)
fg = strips.new_image("m2v", fg_path, 2, 1)
assert fg.alpha_mode == "STRAIGHT", fg.alpha_mode  # Blender's default for an image strip
fg.blend_type = "ALPHA_OVER"
bpy.ops.render.render(write_still=True)
"""


@pytest.mark.parametrize("version", sorted(BLENDERS))
def test_blenders_alpha_over_shows_our_frames_as_straight_alpha(tmp_path, version):
    gen, foot = noise_frame(7, 32, 32), noise_frame(8, 32, 32)
    matte = _disc_matte(feather=6)
    Image.fromarray(rgba_frame(gen, matte, foot), "RGBA").save(tmp_path / "fg.png")
    Image.fromarray(foot).save(tmp_path / "bg.png")
    (tmp_path / "alpha_over.py").write_text(ALPHA_OVER)
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [BLENDERS[version], str(tmp_path / "alpha_over.py"), str(tmp_path / "fg.png"), str(tmp_path / "bg.png"),
         str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shown = np.asarray(Image.open(out).convert("RGB")).astype(int)
    want = composite(rgba_frame(gen, matte, foot), foot).astype(int)
    assert np.abs(shown - want).max() <= 1, np.abs(shown - want).max()
    # Premultiplied, the same file would show otherwise where the matte is soft.
    a = matte[..., None] / 255
    premul = np.clip(gen + (1 - a) * foot, 0, 255)
    soft = (matte > 40) & (matte < 215)
    assert np.abs(shown - premul)[soft].max() > 20


# ---------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def alpha_render(tmp_path_factory):
    """A finished render (layout cards) whose frames were made RGBA: the moving disc as alpha over smooth footage
    (the gradient and block of tests/footage_media.py: noise would drown the MP4 check in yuv420p's error)."""
    from engine.analysis.synth import Section, synth_song
    from engine.files import write_json_atomic
    from engine.plan.build import plan_from_boundaries
    from engine.progress import Collect
    from engine.render.jobs.loop import render
    from tests.conftest import write_song

    d = tmp_path_factory.mktemp("alpha_render")
    s = synth_song([Section(2, 120, "rock", "soft", 0.5)], seed=4)
    wav = write_song(d / "song.wav", s.y, s.sr)
    plan = plan_from_boundaries(wav, [0.0, 1.0, 2.0], preset="draft", min_rate=4, max_rate=4, fps=4)
    write_json_atomic(plan, d / "plan.json")
    out = d / "out"
    assert render(d / "plan.json", out, small_settings(layout=True, width=64, height=48), None, Collect()) == 0
    man = json.loads((out / "manifest.json").read_text())
    want = {}
    n = 0
    import hashlib

    from engine.store.writer import png_bytes

    for entry in man["cache"].values():
        for rec in entry["frames"]:
            path = out / rec["file"]
            rgb = np.asarray(Image.open(path).convert("RGB"))
            rgba = rgba_frame(rgb, matte_from_pixels(_rgb(disc_frame(n)), 64, 48, feather=4), footage_frame(n))
            data = png_bytes(rgba)
            path.write_bytes(data)
            rec["sha256"], rec["footage"] = hashlib.sha256(data).hexdigest(), n
            want[rec["file"]] = rgba
            n += 1
    (out / "manifest.json").write_text(json.dumps(man))
    return out, want


def _decoded(path, fmt):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(video=0)]


def test_export_lays_frames_with_alpha_over_the_footage_or_keeps_their_alpha(alpha_render, tmp_path):
    from engine.store.export import export_mp4, frame_schedule, probe, video_pixels

    out, want = alpha_render
    from engine.store.export import finished_segments

    _, segs = finished_segments(out)
    schedule = frame_schedule(segs, (segs[0]["start"], segs[-1]["end"]), 8)
    recs = {f["file"]: f for s in segs for f in s["frames"]}
    backdrop = lambda rec: footage_frame(rec["footage"])  # noqa: E731 - the footage frame each image followed

    # The MP4: each frame over its footage frame (or black), within the codec's error.
    for name, bd in (("over.mp4", backdrop), ("black.mp4", None)):
        m = export_mp4(out, tmp_path / name, fps=8, backdrop=bd)
        assert m["frames"] == len(schedule)
        got = _decoded(tmp_path / name, "rgb24")
        for j, rel in enumerate(schedule):
            exact = video_pixels(out, recs[rel], None, bd)
            assert np.array_equal(exact, composite(want[rel], None if bd is None else backdrop(recs[rel])))
            err = np.abs(got[j].astype(int) - exact)
            # yuv420p at 64x48 is lossy, but this is the frame: not its straight RGB where the matte is soft, not
            # the frame over the other backdrop.
            a = want[rel][..., 3]
            soft = (a > 0) & (a < 255)
            straight = np.abs(got[j].astype(int) - want[rel][..., :3])[soft].mean()
            other = composite(want[rel], None if bd is not None else backdrop(recs[rel]))
            assert err.mean() < 5 and err[soft].mean() * 2 < straight, (err.mean(), err[soft].mean(), straight)
            assert np.abs(got[j].astype(int) - other).mean() > 10 * err.mean()
    # Movies with alpha: PNG keeps every byte; ProRes 4444 keeps the alpha within 1/255.
    for codec, rgb_tol, alpha_tol in (("png", 0, 0), ("prores", 6, 1)):
        video = tmp_path / f"alpha-{codec}.mov"
        m = export_mp4(out, video, fps=8, alpha=codec)
        assert m == {**probe(video), "warnings": []} and m["frames"] == len(schedule)
        got = _decoded(video, "rgba")
        for j, rel in enumerate(schedule):
            diff = np.abs(got[j].astype(int) - want[rel])
            assert diff[..., 3].max() <= alpha_tol, (codec, diff[..., 3].max())
            assert diff[..., :3].mean() <= rgb_tol + 0.5, (codec, diff[..., :3].mean())
    with pytest.raises(InputError, match="--alpha must be one of prores, png"):
        export_mp4(out, tmp_path / "x.mov", alpha="webm")


def test_frames_without_alpha_export_as_before(tmp_path):
    """``video_pixels`` of an RGB frame is the frame (the MP4 of a render without a matte is unchanged); with
    ``alpha`` it is opaque."""
    import hashlib

    from engine.store.export import _read_frame, video_pixels
    from engine.store.writer import png_bytes

    rgb = noise_frame(2, 10, 8)
    data = png_bytes(rgb)
    (tmp_path / "f.png").write_bytes(data)
    rec = {"file": "f.png", "sha256": hashlib.sha256(data).hexdigest()}
    assert np.array_equal(video_pixels(tmp_path, rec), rgb) and np.array_equal(_read_frame(tmp_path, rec), rgb)
    opaque = video_pixels(tmp_path, rec, alpha="png")
    assert np.array_equal(opaque[..., :3], rgb) and (opaque[..., 3] == 255).all()

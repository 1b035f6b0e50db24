"""Footage styling and motion: the VQGAN encoder, which footage frame each image follows, frames that
follow their footage, motion in the direction asked, cache keys, lookahead and byte-identical resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from engine.analysis.synth import Section, synth_song
from engine.errors import InputError
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.progress import Collect
from engine.render.jobs.keys import segment_keys
from engine.render.jobs.loop import render
from engine.render.sources.footage import Footage, pick_frame
from engine.render.sources.motion import Motion, segment_motion, warp
from engine.settings import RenderSettings
from tests.conftest import REPO, run_engine, write_song
from tests.footage_media import footage_frame, nearest_frame, write_movie
from tests.small_models import load_small, render_cmd, small_settings, synthetic_pictures, write_vqgan

NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """Six seconds of 29.97 fps footage (a block going round, changing colour) and its frames."""
    path = tmp_path_factory.mktemp("footage") / "footage.mp4"
    return path, write_movie(path, 180)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    d = tmp_path_factory.mktemp("footage_plan")
    s = synth_song([Section(3, 120, "rock", "soft", 0.5)], seed=4)
    wav = write_song(d / "song.wav", s.y, s.sr)
    # Two segments of 1.5 s, 4 images a second of one or two steps each: 12 images.
    p = plan_from_boundaries(wav, [0.0, 1.5, 3.0], preset="draft", min_rate=4, max_rate=8, fps=4)
    path = d / "plan.json"
    write_json_atomic(p, path)
    return path, p


_settings = small_settings


def _frames(out):
    m = json.loads((out / "manifest.json").read_text())
    return [f for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]


def _pixels(out, f):
    return np.asarray(Image.open(out / f["file"])).astype(np.float32)


def _codes(vq, z):
    f = z.movedim(1, 3)
    return (f.pow(2).sum(-1, keepdim=True) + vq.codebook.pow(2).sum(1) - 2 * f @ vq.codebook.T).argmin(-1)


# ---------------------------------------------------------------- the encoder


def test_encoder_loads_from_the_checkpoint_weights_only_and_strictly(small_models, tmp_path):
    from engine.models.checkpoints import load_torch_file
    from engine.models.vqgan import load_encoder, load_vqgan

    cfg, ckpt = small_models / "vqgan" / "model.yaml", small_models / "vqgan" / "last.ckpt"
    vq = load_vqgan(cfg, ckpt)
    # A render without footage or motion never builds the encoder, and the decoder's keys are unchanged.
    assert not vq.has_encoder and not any(k.startswith(("encoder.", "quant_conv.")) for k in vq.state_dict())
    sd = load_torch_file(ckpt)["state_dict"]
    enc = vq.require_encoder()  # loaded on first use, from the same file
    assert vq.has_encoder and torch.equal(enc.encoder.conv_in.weight, sd["encoder.conv_in.weight"])
    assert torch.equal(enc.quant_conv.weight, sd["quant_conv.weight"])
    assert torch.equal(load_encoder(cfg, ckpt).encoder.conv_out.bias, sd["encoder.conv_out.bias"])
    z = vq.encode(torch.rand(1, 3, 32, 32))
    assert z.shape == vq.latent_shape(32, 32)
    assert set(_codes(vq, z).flatten().tolist()) <= set(range(vq.cfg.n_embed))
    # Transformer checkpoints keep their autoencoder under first_stage_model.
    tcfg, tckpt = write_vqgan(tmp_path / "t", mode="transformer")
    assert load_vqgan(tcfg, tckpt, with_encoder=True).encode(torch.rand(1, 3, 16, 16)).shape == (1, 32, 8, 8)
    # Tampered encoders fail by name; the decoder alone still loads from such a file.
    for mode, words in [
        ("missing-encoder-key", "VQGAN encoder architecture: missing encoder.conv_out.bias"),
        ("wrong-encoder-shape", "wrong shape quant_conv.weight (5, 5, 1, 1)"),
    ]:
        bad_cfg, bad = write_vqgan(tmp_path / mode, mode=mode)
        load_vqgan(bad_cfg, bad)
        with pytest.raises(InputError) as e:
            load_vqgan(bad_cfg, bad).require_encoder()
        assert str(bad) in str(e.value) and words in str(e.value)


def test_encoder_round_trip(roundtrip_models, small_models):
    from engine.models.vqgan import load_vqgan

    vq = load_vqgan(roundtrip_models / "vqgan" / "model.yaml", roundtrip_models / "vqgan" / "last.ckpt")
    pictures = synthetic_pictures(8, 32, 99)
    shots = torch.from_numpy(np.stack([footage_frame(j, 32, 32) for j in range(0, 160, 20)]))
    shots = shots.permute(0, 3, 1, 2).float() / 255
    # Every picture comes back far closer to itself than to another (measured: 3-50x for the varied
    # pictures, 1.6-3.5x for the footage frames, which share their background).
    for x, factor in ((pictures, 0.3), (shots, 0.75)):
        with torch.no_grad():
            back = vq(vq.encode(x))
        own = (back - x).pow(2).flatten(1).mean(1)
        other = (back - x.roll(1, 0)).pow(2).flatten(1).mean(1)
        assert bool((own < factor * other).all()), (own, other)
    g = torch.Generator().manual_seed(0)
    z = vq.random_latent(32, 32, g)
    with torch.no_grad():
        kept = float((_codes(vq, vq.encode(vq(z))) == _codes(vq, z)).float().mean())
    assert kept > 0.9  # measured 0.95
    # Not vacuous: the random small VQGAN keeps almost none (chance is 1/128).
    rand = load_small(small_models).vqgan
    with torch.no_grad():
        z = rand.random_latent(32, 32, g)
        assert float((_codes(rand, rand.encode(rand(z))) == _codes(rand, z)).float().mean()) < 0.2


# ---------------------------------------------------------------- which frame


def test_each_image_follows_the_frame_that_starts_in_its_slot():
    times = [j / float(NTSC) for j in range(300)]
    end = 300 / float(NTSC)
    t = RenderSettings()
    # Frame boundaries on the timeline grid: the first frame starting in the slot.
    assert pick_frame(times, end, t, 10 / float(NTSC), 12 / float(NTSC)) == 10
    assert pick_frame(times, end, t, 10.5 / float(NTSC), 12 / float(NTSC)) == 11
    # Boundaries are rounded to 0.1 ms in a plan: a segment's first image follows the frame starting nearest
    # to the segment's start (its strip starts at the nearest timeline frame), the others the rule above.
    assert pick_frame(times, end, t, 10 / float(NTSC) + 4e-5, 12 / float(NTSC)) == 11
    assert pick_frame(times, end, t, 10 / float(NTSC) + 4e-5, 12 / float(NTSC), first=True) == 10
    assert pick_frame(times, end, t, 10.6 / float(NTSC), 12 / float(NTSC), first=True) == 11
    # A slot shorter than a frame, with no frame starting inside it: the frame showing at its start.
    assert pick_frame(times, end, t, 10.2 / float(NTSC), 10.6 / float(NTSC)) == 10
    # Offset: the movie time shown at song time 0; speed: movie seconds per song second.
    t = RenderSettings(footage_offset=2.0)
    assert pick_frame(times, end, t, 0.0, 0.25) == math.ceil(2.0 * float(NTSC))
    t = RenderSettings(
        footage_offset=0.0, footage_speed=30 / float(NTSC)
    )  # a 30 fps timeline playing it frame for frame
    assert [pick_frame(times, end, t, f / 30, (f + 1) / 30) for f in range(5, 9)] == [5, 6, 7, 8]
    # Before the movie starts, after it ends, and outside the visible span: no footage.
    assert pick_frame(times, end, RenderSettings(footage_offset=-1.0), 0.0, 0.5) is None
    assert pick_frame(times, end, RenderSettings(footage_offset=-1.0), 0.9, 1.2) == 0
    assert pick_frame(times, end, t, 11.0, 11.5) is None
    span = RenderSettings(footage_span=(1.0, 2.0))
    assert pick_frame(times, end, span, 0.5, 0.9) is None
    assert pick_frame(times, end, span, 1.0, 1.2) == 30  # 30 / 29.97 s is the first frame at or after 1 s
    assert pick_frame(times, end, span, 1.9, 2.1) == 57 and pick_frame(times, end, span, 2.0, 2.1) is None
    # A still shows everywhere.
    assert pick_frame([0.0], math.inf, RenderSettings(footage_offset=50), 100.0, 101.0) == 0


def test_footage_reader_returns_the_movie_frames_in_any_order(movie, tmp_path):
    path, frames = movie
    f = Footage(path)
    assert f.kind == "movie" and len(f) == 180 and f.end == pytest.approx(180 / float(NTSC))
    assert f.times[7] == pytest.approx(7 / float(NTSC), abs=1e-9)
    for j in (0, 1, 2, 90, 91, 5, 179, 100):  # forward, a jump back, a jump ahead
        rgb = f.frame(j, 64, 48)
        assert rgb.shape == (48, 64, 3) and nearest_frame(rgb, frames) == j
        assert float(np.abs(rgb.astype(int) - frames[j]).mean()) < 2.0
    assert f.frame(3, 32, 32).shape == (32, 32, 3)
    f.close()
    # A still image, and a folder played as an image sequence.
    still = tmp_path / "still.png"
    Image.fromarray(frames[4]).save(still)
    s = Footage(still)
    assert s.kind == "still" and s.pick(RenderSettings(), 99.0, 100.0) == 0
    seq = tmp_path / "seq"
    seq.mkdir()
    for j in (1, 2, 10):  # numbered 1, 2, 10: played in numeric order
        Image.fromarray(frames[j]).save(seq / f"shot_{j}.png")
    with pytest.raises(InputError, match="--footage-fps"):
        Footage(seq)
    q = Footage(seq, fps=24)
    assert [nearest_frame(q.frame(k, 64, 48), frames) for k in range(3)] == [1, 2, 10]
    assert q.digest == Footage(seq, fps=25).digest  # the rate is timing, not content
    for bad, words in [(tmp_path / "none.mp4", "not found"), (tmp_path / "junk.mp4", "not a movie")]:
        if bad.name == "junk.mp4":
            bad.write_bytes(b"not a movie at all")
        with pytest.raises(InputError, match=words):
            Footage(bad)


# ---------------------------------------------------------------- motion


def _centroid(img):
    ys, xs = torch.meshgrid(torch.arange(img.shape[2]).float(), torch.arange(img.shape[3]).float(), indexing="ij")
    w = img[0, 0]
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def test_warp_moves_zooms_and_turns_the_way_asked():
    img = torch.zeros(1, 1, 32, 48)
    img[0, 0, 8:12, 20:24] = 1.0  # a block left of and above the centre (23.5, 15.5)
    x0, y0 = _centroid(img)
    x, y = _centroid(warp(img, Motion(dx=5)))
    assert (x - x0, y - y0) == pytest.approx((5, 0), abs=1e-3)
    x, y = _centroid(warp(img, Motion(dy=3)))  # y is up: the block rises
    assert (x - x0, y - y0) == pytest.approx((0, -3), abs=1e-3)
    x, y = _centroid(warp(img, Motion(angle=90)))  # counter-clockwise: up-left goes to down-left
    assert (x, y) == pytest.approx((23.5 - (15.5 - y0), 15.5 + (23.5 - x0)), abs=1e-3)
    x, y = _centroid(warp(img, Motion(zoom=1.5)))  # about the centre: away from it
    assert (x - 23.5, y - 15.5) == pytest.approx((1.5 * (x0 - 23.5), 1.5 * (y0 - 15.5)), abs=0.1)
    assert warp(img, Motion()) is img


def test_motion_follows_beats_and_intensity(plan):
    _, p = plan
    p = json.loads(json.dumps(p))
    p["beats"], p["beat_strength"] = [0.5, 1.0, 2.2], [1.0, 0.5, 0.25]
    p["segments"][0]["intensity"], p["segments"][1]["intensity"] = 0.2, 0.8
    ms = RenderSettings(zoom=0.1, rotate=10.0, shift=(20.0, -4.0))
    moves = [m for k in range(2) for m in segment_motion(p, k, ms)]
    slots = [(a, b) for k in range(2) for a, b in _slots(p["segments"][k])]
    # Zoom pulses start on beats: no image before the first beat zooms, the image holding a beat does.
    first = next(i for i, (a, b) in enumerate(slots) if b > 0.5)
    assert all(m.zoom == 1.0 for m in moves[:first]) and moves[first].zoom > 1.01
    # Each beat's pulse adds up to (1 + zoom) ** strength, however many images share it.
    total = math.prod(m.zoom for m in moves)
    spent = sum(s * (1 - math.exp(-(3.0 - t) / 0.15)) for t, s in zip(p["beats"], p["beat_strength"]))
    assert total == pytest.approx(1.1**spent, rel=1e-9)
    # Drift per second scales with the segment's intensity.
    for m, (a, b), k in zip(moves, slots, [0] * 6 + [1] * 6):
        x = p["segments"][k]["intensity"]
        assert (m.angle, m.dx, m.dy) == pytest.approx((10 * x * (b - a), 20 * x * (b - a), -4 * x * (b - a)))
    steady = segment_motion(p, 0, RenderSettings(zoom=0.1, motion_drive="steady"))
    assert math.prod(m.zoom for m in steady) == pytest.approx(1.1**1.5)
    assert all(m.identity for m in segment_motion(p, 0, RenderSettings()))


def _slots(seg):
    from engine.protocol import image_slots

    return image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)


# ---------------------------------------------------------------- renders


def _source(models_dir, p, **kw):
    from engine.analysis.audio import load_song
    from engine.models.factory import pick_device
    from engine.render.sources.model import ModelSource

    song = load_song(p["song"]["path"], sr=16000, min_duration=0.0).y
    return ModelSource(p, _settings(**kw), load_small(models_dir), song, pick_device("cpu"))


def test_frames_follow_their_footage(plan, movie, roundtrip_models, tmp_path):
    plan_path, p = plan
    path, _ = movie
    models = load_small(roundtrip_models)
    gaps = {}
    for name, kw in {
        "footage": dict(footage=str(path), footage_offset=1.0, footage_blend=0.3, init_weight=100.0),
        "pixel": dict(footage=str(path), footage_offset=1.0, footage_blend=0.3, init_weight=100.0, init_space="pixel"),
        "none": dict(footage_offset=1.0),
    }.items():
        out = tmp_path / name
        assert render(plan_path, out, _settings(**kw), models, Collect()) == 0
        own, other = [], []
        for i, f in enumerate(_frames(out)):
            j = f.get("footage", math.ceil(float(NTSC) * (1.0 + i * 0.25)))  # the control: the same frames
            img = _pixels(out, f)
            own.append(float(((img - footage_frame(j, 32, 32)) ** 2).mean()))
            # Half a lap of the block away (20 frames): another picture of the same scene.
            other.append(float(((img - footage_frame(j + 20, 32, 32)) ** 2).mean()))
        gaps[name] = (np.array(own), np.array(other))
        if name != "none":
            assert [f["footage"] for f in _frames(out)] == [
                math.ceil(float(NTSC) * (1.0 + i * 0.25)) for i in range(12)
            ]
    for name in ("footage", "pixel"):
        own, other = gaps[name]
        assert bool((own < other).all()) and own.mean() < 0.7 * other.mean(), (name, own, other)
    own, other = gaps["none"]
    assert own.mean() > 0.8 * other.mean()  # without footage, no frame prefers its "own" footage frame


def _best(candidates, a, b):
    """The candidate motion that, applied to picture ``a``, comes closest to ``b``."""
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].float()
    return min(candidates, key=lambda m: float((warp(ta, m) - tb)[..., 4:-4, 4:-4].pow(2).mean()))


def test_motion_moves_content_between_frames_in_the_direction_asked(plan, movie, roundtrip_models):
    _, p = plan
    path, _ = movie
    # Footage gives the first image something to move (only the first: a short span); a small step size
    # keeps CLIP from repainting it, so the motion shows between consecutive frames.
    base = dict(lr=0.02, footage=str(path), footage_span=(0.0, 0.1), footage_blend=0.0, motion_drive="steady")
    cases = [
        (dict(shift=(24.0, 0.0)), [Motion(dx=d) for d in (-6, -3, 0, 3, 6)], lambda m: m.dx > 0),
        (dict(shift=(0.0, -24.0)), [Motion(dy=d) for d in (-6, -3, 0, 3, 6)], lambda m: m.dy < 0),
        # 2.5x a second, 1.26x an image: smaller zooms move 32-pixel pictures by less than a latent cell.
        (dict(zoom=1.5), [Motion(zoom=z) for z in (0.8, 0.9, 1.0, 1.15, 1.3)], lambda m: m.zoom > 1),
        (dict(rotate=-60.0), [Motion(angle=a) for a in (-30, -15, 0, 15, 30)], lambda m: m.angle < 0),
    ]
    for kw, candidates, asked in cases:
        src = _source(roundtrip_models, p, **base, **kw)
        src.optimizer.reset()
        frames = []
        for i in range(5):
            src.make_image(0, i)
            frames.append(src.decode())
        assert len({f.tobytes() for f in frames}) == 5
        best = [_best(candidates, a, b) for a, b in zip(frames, frames[1:])]
        assert all(asked(m) for m in best), (kw, best)


def test_lookahead_cache_and_resume_with_footage_and_motion(plan, movie, roundtrip_models, tmp_path):
    plan_path, p = plan
    path, _ = movie
    kw = dict(
        lr=0.3, footage=str(path), footage_offset=0.5, footage_span=(0.7, 3.0), init_weight=1.0, zoom=0.2, rotate=8.0
    )
    whole = tmp_path / "whole"
    assert render(plan_path, whole, _settings(**kw), load_small(roundtrip_models), Collect()) == 0
    saved = [_pixels(whole, f) for f in _frames(whole)]
    assert len({s.tobytes() for s in saved}) > len(saved) // 2
    # Each saved frame is the latent after its own steps, though footage and motion change the latent
    # before them (the first forward pass then no longer decodes the previous image).
    src = _source(roundtrip_models, p, **kw)
    src.optimizer.reset()
    after = []
    for k, seg in enumerate(p["segments"]):
        for i in range(seg["images"]):
            src.make_image(k, i)
            after.append(src.decode().astype(np.float32))
    assert all(np.array_equal(a, b) for a, b in zip(saved, after))
    # Killed at a write point, then resumed from a resume point: byte for byte the uninterrupted render.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = render_cmd(
        plan_path,
        tmp_path / "resumed",
        roundtrip_models,
        *("--footage", str(path), "--footage-offset", "0.5", "--footage-span", "0.7", "3.0"),
        *("--init-weight", "1", "--zoom", "0.2", "--rotate", "8", "--snapshot-every", "0"),
    )
    killed = subprocess.run(cmd, env={**env, "M2V_FAULT": "frame.renamed:8"}, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = _frames(tmp_path / "resumed")
    assert [(tmp_path / "resumed" / f["file"]).read_bytes() for f in resumed] == [
        (whole / f["file"]).read_bytes() for f in _frames(whole)
    ]


def test_cache_keys_hold_the_footage_frames_and_moves_each_segment_uses(plan, movie, small_models, tmp_path):
    _, p = plan
    path, frames = movie
    from engine.analysis.audio import load_song

    song = load_song(p["song"]["path"], sr=16000, min_duration=0.0).y

    def keys(**kw):
        src = _source(small_models, p, **kw)
        return segment_keys(p, song, src.settings, src.ids(), src.key_content)

    plain = keys()
    assert keys(init_weight=3.0, footage_blend=0.9) == plain  # footage settings without footage change nothing
    # Footage visible in the second segment only: the first keeps its key.
    late = keys(footage=str(path), footage_span=(1.6, 3.0))
    assert late[0] == plain[0] and late[1] != plain[1]
    # Trimming the footage's end changes the key only of the segment whose frames it covered.
    trimmed = keys(footage=str(path), footage_span=(1.6, 2.6))
    assert trimmed[0] == plain[0] and trimmed[1] not in (plain[1], late[1])
    # The footage's content, not its name: a copy gives the same keys, a changed movie others.
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    assert keys(footage=str(copy), footage_span=(1.6, 3.0)) == late
    write_movie(tmp_path / "other.mp4", 180, width=48)
    assert keys(footage=str(tmp_path / "other.mp4"), footage_span=(1.6, 3.0))[1] != late[1]
    # Motion changes every key; motion settings at zero change none.
    assert keys(zoom=0.1)[0] != plain[0] and keys(motion_drive="steady") == plain


def test_cli_flags_are_checked_and_the_musicvideo_preset_moves(plan, movie, tmp_path):
    plan_path, _ = plan
    path, _ = movie
    for args, words in [
        (["--footage", str(tmp_path / "missing.mp4")], "--footage not found"),
        (["--footage", str(path), "--footage-span", "3", "1"], "--footage-span must end after it starts"),
        (["--footage", str(path), "--footage-speed", "0"], "--footage-speed must be above 0"),
        (["--zoom", "nan"], "--zoom must be a finite number"),
        (["--footage-blend", "1.5"], "--footage-blend must be at least 0 and at most 1"),
        (["--init-space", "sideways"], "invalid choice: 'sideways'"),
    ]:
        proc = run_engine("render", str(plan_path), "--out", str(tmp_path / "o"), "--layout", *args)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr[-500:])
    proc = run_engine(
        "render",
        str(plan_path),
        "--out",
        str(tmp_path / "mv"),
        "--layout",
        "--preset",
        "musicvideo",
        "--size",
        "32",
        "32",
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "mv" / "manifest.json").read_text())["settings"]
    from engine.protocol import MOTION_PRESETS

    want = MOTION_PRESETS["musicvideo"]
    assert (s["zoom"], s["rotate"], s["motion_drive"]) == (want["zoom"], want["rotate"], want["motion_drive"])
    proc = run_engine("render", str(plan_path), "--out", str(tmp_path / "pp"), "--layout", "--preset", "paper")
    assert proc.returncode == 0 and json.loads((tmp_path / "pp" / "manifest.json").read_text())["settings"]["zoom"] == 0

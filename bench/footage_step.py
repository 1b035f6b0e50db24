"""Benchmark: what footage styling and motion add to each image's time, through the render's own code.

Runs ``ModelSource.make_image`` (the render loop's call) on a one-segment plan with one optimisation step
per image, four ways: plain, with footage (a synthesised movie, encoded per image, latent pull), with
motion (every image moved and re-encoded), and both. ``--full`` uses the official architectures (ViT-B/32,
the f16/16384 VQGAN with its encoder, Wav2CLIP; random weights: timing does not depend on values) at the
``--size`` given; otherwise the small test models. The first image of each run is a warm-up and not
counted.

Run: .venv/bin/python bench/footage_step.py [--full] [--size 256] [--images 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def full_models(device):
    """The official architectures with random weights, the VQGAN's encoder attached."""
    import torch

    from engine.models.architectures import OFFICIAL_VQGAN, official_models
    from engine.models.factory import Models
    from engine.models.vqgan import VQGANEncoder, parse_config
    from engine.models.wav2clip import Wav2CLIP

    vq, clip = official_models(device)
    vq.attach_encoder(VQGANEncoder(parse_config(OFFICIAL_VQGAN)))
    torch.manual_seed(0)
    audio = Wav2CLIP().eval().requires_grad_(False).to(device)
    return Models(vq, clip, audio, paths=None)


def small_models(folder: Path):
    sys.path.insert(0, str(ROOT))
    from tests.small_models import load_small, write_all

    write_all(folder, roundtrip=True)
    return load_small(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the official architectures (else the small test models)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutouts", type=int, default=32)
    ap.add_argument("--images", type=int, default=4, help="timed images per variant (after one warm-up)")
    args = ap.parse_args()

    import torch

    from engine.analysis.audio import load_song
    from engine.analysis.synth import Section, synth_song
    from engine.files import write_json_atomic
    from engine.plan.build import plan_from_boundaries
    from engine.render.sources.model import ModelSource
    from engine.settings import RenderSettings
    from tests.conftest import write_song
    from tests.footage_media import write_movie

    torch.set_grad_enabled(True)
    device = torch.device("cpu")
    tmp = Path(tempfile.mkdtemp(prefix="m2v-bench-footage-"))
    song = synth_song([Section(4, 120, "rock", "bright", 0.7)], seed=1)
    wav = write_song(tmp / "song.wav", song.y, song.sr)
    n = args.images + 1
    plan = plan_from_boundaries(wav, [0.0, 2.0], preset="draft", min_rate=n / 2, max_rate=n / 2, fps=n / 2)
    assert plan["segments"][0]["images"] == plan["segments"][0]["steps"] == n, plan["segments"][0]
    write_json_atomic(plan, tmp / "plan.json")
    movie = tmp / "footage.mp4"
    write_movie(movie, 90, width=320, height=240)
    song16 = load_song(wav, sr=16000, min_duration=0.0).y
    models = full_models(device) if args.full else small_models(tmp / "models")
    size = args.size if args.full else 32
    variants = {
        "plain": {},
        "footage": dict(footage=str(movie), init_weight=1.0),
        "motion": dict(zoom=0.05, rotate=5.0, shift=(10.0, 0.0)),
        "footage+motion": dict(footage=str(movie), init_weight=1.0, zoom=0.05, rotate=5.0, shift=(10.0, 0.0)),
    }
    base = dict(width=size, height=size, cutouts=args.cutouts, cutout_method="latest", seed=0)
    print(f"{'full-size' if args.full else 'small'} models, {size}x{size}, {args.cutouts} cutouts, 1 step an image")
    # Interleaved, image by image, so a busy moment on a shared machine hits every variant alike.
    sources = {
        name: ModelSource(plan, RenderSettings(**base, **kw), models, song16, device) for name, kw in variants.items()
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for src in sources.values():
        src.optimizer.reset()
        src.make_image(0, 0)  # warm-up
    for i in range(1, n):
        for name, src in sources.items():
            t = time.perf_counter()
            src.make_image(0, i)
            times[name].append(time.perf_counter() - t)
    plain = statistics.median(times["plain"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{name:15s} {m:8.3f} s/image (median of {len(ts)})  {m - plain:+.3f} s  {100 * (m - plain) / plain:+.0f}%"
        )
        sources[name].close()


if __name__ == "__main__":
    main()

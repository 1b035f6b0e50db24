"""The bookkeeping of the render loop before issue 15 (commit 056c058), for ``bench/bookkeeping.py``'s "before".

That loop did everything on the render thread after each image: PNG
encode (zlib level 6), SHA-256, atomic frame write, ``torch.save`` of the
latent and Adam state, and a rewrite of the whole ``manifest.json`` (which
lists every frame twice, so it grows with the render). This script extracts
056c058's ``engine/`` into a temporary folder (``git archive``) and runs its
own ``render()`` on a version-1 plan of the same beat segments at 512x512,
with only the model replaced: ``Renderer.step`` is the same synthetic step
as the benchmark's (a fixed latent update, the same frames, a sleep of
``--step-ms``), ``initial_state`` makes a 1x256x32x32 latent with Adam's
moments, and the guidance is a constant. The render thread's time between
two steps is that loop's bookkeeping for one image.

Because the manifest rewrite grows with the number of images, a
20,000-image run would take over an hour; the figures for 20,000 images come from
a shorter run in two ways. Extrapolated: the per-image overhead and
manifest bytes fitted with a straight line in the image number (least
squares) and read at image 19,500 (and summed over 20,000 images).
Measured (the last line): the fit's intercept (PNG, hash, state, frame)
plus one timed rewrite of the manifest the old loop holds at 20,000 images,
and bytes with that manifest's size, halved for the linear growth from 0.

Run: .venv/bin/python bench/bookkeeping_before.py [--images 2000] [--step-ms 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bookkeeping as bk  # noqa: E402 - the same frames and segments as the benchmark

COMMIT = "056c058"
TARGET = 20_000


def extract(commit: str, into: Path) -> Path:
    """``engine/`` at ``commit``, importable from ``into`` (placed first on ``sys.path``)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "engine"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    sys.path.insert(0, str(into))  # before any import of engine: this process runs the old one only
    return into


def v1_plan(song: Path, images: int) -> dict:
    """The benchmark's beat segments in plan version 1 (one guidance per segment)."""
    import soundfile as sf
    from engine.audio import file_sha256

    segs = []
    for k, n in enumerate(bk.segment_sizes(images)):
        start, end = round(k * bk.SEGMENT_SECONDS, 4), round((k + 1) * bk.SEGMENT_SECONDS, 4)
        segs.append({"index": k, "start": start, "end": end, "images": n, "guidance": {"kind": "audio"}})
    duration = sf.info(str(song)).duration
    return {
        "version": 1,
        "song": {"path": str(song), "sha256": file_sha256(song), "duration": duration},
        "segments": segs,
    }


class Meter:
    """Gaps between steps (the bookkeeping of the image before) and bytes per kind of file."""

    def __init__(self, total: int) -> None:
        self.gaps = np.full(total, np.nan)
        self.n = 0
        self.step_end: float | None = None
        self.png = self.state = self.manifest = 0
        self.manifest_sizes: list[tuple[int, int]] = []


def patch(render, meter: Meter, step_s: float, size: int) -> None:
    """The old loop with the synthetic step; counts what it writes."""
    import torch

    frames = bk.Frames(size, size)

    def init(self, vqgan, clip, audio_model, settings, device):
        self.s, self.device = settings, device

    def initial_state(self):
        shape = (1, bk.LATENT_CHANNELS, size // bk.FACTOR, size // bk.FACTOR)
        z = torch.zeros(shape, requires_grad=True)
        opt = torch.optim.Adam([z], lr=self.s.lr)
        z.grad = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        opt.step()
        return z, opt

    def step(self, z, opt, targets, generator, z_prev=None):
        t0 = time.monotonic()
        if meter.step_end is not None:
            meter.gaps[meter.n - 1] = t0 - meter.step_end
        rgb = frames.frame(meter.n)  # the image before the update, as the old step returned
        with torch.no_grad():
            z.add_(1e-3)
        meter.n += 1
        left = t0 + step_s - time.monotonic()
        if left > 0:
            time.sleep(left)
            meter.step_end = t0 + step_s
        else:
            meter.step_end = time.monotonic()
        return rgb, 1.0 / (1 + meter.n)

    atomic, save_manifest = render._atomic_bytes, render.save_manifest

    def counted_atomic(path, data):
        atomic(path, data)
        if str(path).endswith(".png"):
            meter.png += len(data)
        else:
            meter.state += len(data)

    def counted_manifest(out_dir, manifest):
        save_manifest(out_dir, manifest)
        n = (Path(out_dir) / "manifest.json").stat().st_size
        meter.manifest += n
        meter.manifest_sizes.append((meter.n, n))

    render.Renderer.__init__, render.Renderer.initial_state, render.Renderer.step = init, initial_state, step
    render.Guidance.target = lambda self, k, average: None
    render._atomic_bytes, render.save_manifest = counted_atomic, counted_manifest


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = a + b x``."""
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def manifest_at(render, out_dir: Path, images: int) -> float:
    """Seconds (median of 3) and bytes of the old loop's manifest rewrite once ``images`` frames are done."""
    import hashlib

    cache, segments = {}, []
    for k, n in enumerate(bk.segment_sizes(images)):
        key = hashlib.sha256(str(k).encode()).hexdigest()
        folder = f"seg_{k:04d}_{key[:10]}"
        frames = [
            {
                "index": i,
                "time": round(k * bk.SEGMENT_SECONDS + i * bk.SEGMENT_SECONDS / n, 4),
                "file": f"{folder}/frame_{i:05d}.png",
                "sha256": hashlib.sha256(f"{k}:{i}".encode()).hexdigest(),
                "loss": 0.912345,
            }
            for i in range(n)
        ]
        cache[key] = {"status": "done", "folder": folder, "frames": frames, "segment": k}
        start = round(k * bk.SEGMENT_SECONDS, 4)
        seg = {"start": start, "end": start + bk.SEGMENT_SECONDS, "images": n, "guidance": {"kind": "audio"}}
        segments.append({"index": k, "key": key, **seg, "status": "done", "folder": folder, "frames": frames})
    manifest = {"version": 1, "kind": "m2v-render", "status": "running", "segments": segments, "cache": cache}
    times = []
    for _ in range(3):
        t = time.perf_counter()
        render.save_manifest(out_dir, manifest)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), (out_dir / "manifest.json").stat().st_size


def report(meter: Meter, images: int, wall: float, rewrite: tuple[float, int]) -> None:
    gaps = meter.gaps[:-1] * 1000
    n = np.arange(len(gaps))
    a, b = fit(n, gaps)
    print(f"056c058 loop, {images} images at 512x512: wall {wall:.1f} s ({images / wall:.1f} images/s)")
    print("images          overhead ms: mean    p50    p99")
    for part in np.array_split(np.arange(len(gaps)), 4):
        w = gaps[part]
        name = f"{part[0]}-{part[-1] + 1}"
        print(f"{name:<15} {w.mean():17.2f} {np.percentile(w, 50):6.2f} {np.percentile(w, 99):6.2f}")
    print(f"fit: overhead = {a:.2f} ms + {b * 1000:.2f} ms per thousand images done")
    sizes = np.array(meter.manifest_sizes, dtype=float)
    ma, mb = fit(sizes[:, 0], sizes[:, 1])
    png_per, state_per = meter.png / images, meter.state / images
    print(
        f"per image: PNG {png_per / 1000:.1f} KB, state {state_per / 1000:.1f} KB,"
        f" manifest rewrite {ma / 1000:.1f} KB + {mb:.0f} B per image done"
    )
    measured = (meter.png + meter.state + meter.manifest) / meter.png
    print(f"measured: bytes_ratio={measured:.3f} over {images} images")
    last = a + b * (TARGET - 500)
    manifests = TARGET * ma + mb * TARGET * (TARGET - 1) / 2
    ratio = (TARGET * (png_per + state_per) + manifests) / (TARGET * png_per)
    print(f"extrapolated to {TARGET} images: last thousand {last:.1f} ms/image, bytes_ratio {ratio:.2f}")
    # The same at TARGET images, measured: one rewrite of the manifest the old loop holds by then.
    rewrite_s, rewrite_bytes = rewrite
    direct = a + rewrite_s * 1000
    direct_ratio = (png_per + state_per + rewrite_bytes / 2) / png_per  # the manifest grows linearly from 0
    print(
        f"at {TARGET} images, measured: one manifest rewrite {rewrite_s * 1000:.0f} ms and {rewrite_bytes / 1e6:.1f} MB;"
        f" with the fit's {a:.0f} ms of the rest, {direct:.0f} ms/image"
    )
    print(f"overhead_ms={direct:.0f} bytes_ratio={direct_ratio:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--step-ms", type=float, default=40.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="m2v-bookkeeping-before-"))
    try:
        extract(COMMIT, work / "tree")
        import torch

        from engine import render

        assert Path(render.__file__).is_relative_to(work), "the old engine must be the one imported"

        torch.set_num_threads(1)
        meter = Meter(args.images)
        patch(render, meter, args.step_ms / 1000, 512)
        song = bk.write_song(work / "song.wav", len(bk.segment_sizes(args.images)) * bk.SEGMENT_SECONDS + 1.0)
        from engine.plan import write_json_atomic as write_plan

        write_plan(v1_plan(song, args.images), work / "plan.json")
        settings = render.RenderSettings(width=512, height=512)
        models = (None, SimpleNamespace(embed_dim=1), SimpleNamespace(embed_dim=1, to=lambda d: None), None)
        paths = render.ModelPaths()
        with open(os.devnull, "w", encoding="utf-8") as sink:
            t0 = time.monotonic()
            code = render.render(
                work / "plan.json",
                work / "out",
                settings,
                load_models=lambda: (*models[:3], paths),
                progress=render.Progress(out=sink, bar=False),
                device="cpu",
            )
            wall = time.monotonic() - t0
        if code != 0:
            raise SystemExit(f"the old render ended with code {code}")
        report(meter, args.images, wall, manifest_at(render, work / "rewrite", TARGET))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

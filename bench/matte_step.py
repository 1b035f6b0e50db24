"""Benchmark: milliseconds per optimisation step with a matte covering a quarter of the frame, against without.

Both run the full-size architectures (ViT-B/32 with QuickGELU, the VQGAN f16/16384 decoder; random weights:
timing does not depend on values) with the same settings (the ``latest`` cutouts, 32 of them, Adam lr 0.1, eq. 1
on), interleaved step by step in one process (others share the machine), medians reported. The matte is a disc
of a quarter of the frame's area over a coloured-noise footage frame (the composite CLIP sees); its cutouts come
from its padded box (:mod:`engine.render.step.matte`). On CUDA the plain step is also timed eagerly: a step with
a matte runs eagerly there (not captured) for now.

Also printed: the CPU time's ratio and the median of the round-by-round ratios (on a shared machine the wall
clock of one step swings with the others' load). Last line: ``ratio=<matte ms / plain ms>`` (medians of the wall
clock; the goal: at most 1.1). About 10 s of CPU a step at 128x128 with 32 cutouts (CLIP's 32 passes at 224x224
dominate): a few minutes on two cores.

Run: .venv/bin/python bench/matte_step.py [--rounds N] [--size 128] [--cutouts 32] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def quarter_disc(size: int):
    """``(size, size)`` uint8: a white disc of a quarter of the frame's area, centred, on black."""
    import numpy as np

    r = math.sqrt(size * size / (4 * math.pi))
    y, x = np.mgrid[0:size, 0:size] + 0.5
    return np.where((x - size / 2) ** 2 + (y - size / 2) ** 2 <= r * r, 255, 0).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds (each runs every variant once)")
    ap.add_argument("--size", type=int, default=128, help="frame side in pixels (a multiple of 16)")
    ap.add_argument("--cutouts", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    args = ap.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine one thread swings less with the others' load

    from engine.models.architectures import official_models
    from engine.render.step.matte import step_matte
    from engine.render.step.optimize import Optimizer
    from engine.settings import RenderSettings

    device = torch.device(args.device)
    vq, clip = official_models(device)
    size = args.size
    matte = quarter_disc(size)
    backdrop = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    sm = step_matte(matte, vq.factor, device, backdrop)
    x0, y0, x1, y1 = sm.box
    print(
        f"torch {torch.__version__}; {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
        + f"; {torch.get_num_threads()} threads; {size}x{size}, {args.cutouts} latest cutouts; matte {100 * float((matte > 0).mean()):.1f}% of the "
        f"frame, box {x1 - x0}x{y1 - y0}",
        flush=True,
    )
    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim, device=device), dim=-1)
    s = RenderSettings(width=size, height=size, cutouts=args.cutouts, cutout_method="latest", l1_weight=0.1)
    names = ["plain", "matte"] + (["plain-eager"] if device.type == "cuda" else [])
    opts = {}
    for n in names:
        opts[n] = Optimizer(vq, clip, s, device)
        opts[n].reset()
        if n == "plain-eager":
            opts[n].graphs = None
    anchors = {n: o.z.detach().clone() for n, o in opts.items()}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds + 1):  # round 0 warms up (allocator, oneDNN primitives, capture)
        draws = opts["plain"].image_draws([r])
        # The order alternates round by round, so neither variant always runs first after the other.
        for n in names if r % 2 else names[::-1]:
            o = opts[n]
            sync()
            t, c = time.perf_counter(), time.process_time()
            o.step([(target, 1.0)], r, anchors[n], None, draws[0], matte=sm if n == "matte" else None)
            sync()
            if r:
                times[n].append(time.perf_counter() - t)
                cpu[n].append(time.process_time() - c)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    for n in names:
        print(
            f"{n:12s} {med[n] * 1000:8.1f} ms/step wall (median of {len(times[n])}: "
            f"{', '.join(f'{t * 1000:.0f}' for t in times[n])}), {statistics.median(cpu[n]) * 1000:8.1f} ms CPU",
            flush=True,
        )
    # Round by round (the two steps of a round ran back to back): the machine's load changes less within a round.
    paired = statistics.median(m / p for m, p in zip(times["matte"], times["plain"]))
    print(f"ratio_cpu_time={statistics.median(cpu['matte']) / statistics.median(cpu['plain']):.3f}")
    print(f"ratio_paired={paired:.3f}")
    # The matte's own operations alone (composite and box, their backward, the gradient mask, the confined
    # update), many times over: their cost is what the matte can add to a step.
    from engine.render.step.matte import clip_view, confine, mask_gradient

    z = opts["matte"].z
    image = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    reps, ops = 20, []
    for _ in range(3):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            clip_view(image, sm).sum().backward()
            z.grad = torch.ones_like(z)
            before = z.detach().clone()
            mask_gradient(z, sm)
            confine(z, before, sm)
        sync()
        ops.append((time.perf_counter() - t) / reps)
    print(f"matte ops alone: {min(ops) * 1000:.2f} ms a step ({100 * min(ops) / med['plain']:.2f}% of the plain step)")
    if "plain-eager" in med:
        print(f"ratio_eager={med['matte'] / med['plain-eager']:.3f}")
    print(f"ratio={med['matte'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()

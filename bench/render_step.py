"""Benchmark: seconds per optimisation step, m2v against a faithful port of the authors' step.

Both run the full-size architectures (ViT-B/32 with QuickGELU, the VQGAN
f16/16384 decoder; random weights: timing does not depend on values) with
identical settings: the authors' ``latest`` cutouts and augments, 32 cutouts,
Adam lr 0.1. The reference (``bench/reference_step.py``) is their step as
written (fp32, a per-cutout pooling loop, one-hot codebook lookup, taming's
``x * sigmoid(x)``); m2v's is batched with fused SiLU (float32 on every
device: see ``engine.optimize.AUTOCAST_CUDA``). Each variant runs in its own process so its peak memory is its own.

On the CPU the step is compute-bound, so the achieved FLOP rate of the step
(counted with torch's FLOP counter) is printed against a plain
matrix-multiply peak measured in the same run. Also checks that the two steps
compute the same losses from the same seeds on the small test models.
Last line: ``ratio=<reference seconds / m2v seconds>``.

Run: .venv/bin/python bench/render_step.py [--steps N] [--size 256] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def step_flops(fn) -> float:
    """FLOPs of one call of ``fn`` (forward and backward), by torch's own counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_peak(device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a plain float32 matrix multiply: the machine's practical peak."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def run_variant(variant: str, steps: int, device_name: str, size: int, cutn: int) -> dict:
    import torch
    from reference_step import reference_step

    from engine.estimate import official_models
    from engine.optimize import Optimizer
    from engine.render import RenderSettings
    from engine.vqgan import use_fused_activation

    device = torch.device(device_name)
    vq, clip = official_models(device)
    use_fused_activation(variant == "m2v")
    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim, device=device), dim=-1)
    opt = Optimizer(vq, clip, RenderSettings(width=size, height=size, cutouts=cutn, cut_method="latest"), device)
    opt.reset()
    if variant == "m2v":

        def one(i):
            opt.step([(target, 1.0)], i)
    else:
        opt.autocast = False  # the authors' step is fp32

        def one(i):
            reference_step(vq, clip, opt.z, opt.opt, [(target, 1.0)], i, cutn, opt.z_min, opt.z_max)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    one(0)  # warm-up: allocator, oneDNN primitive caches, cuDNN autotune
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for i in range(steps):
        one(i + 1)
    sync()
    sec = (time.perf_counter() - t) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    flops = step_flops(lambda: one(steps + 1))
    return {"variant": variant, "sec_per_step": sec, "peak_mb": peak, "flops": flops, "device": device_name}


def loss_curves(steps: int = 20, prompt: str = "a red balloon over the sea", control: str = "a violet forest"):
    """Losses of the authors' step and m2v's on the small test models, from the same start and seeds.

    Returns ``(reference, m2v, control)``: the last is m2v's step towards another prompt.
    """
    import torch
    from reference_step import reference_step

    from engine.clip_guide import load_clip
    from engine.optimize import Optimizer
    from engine.render import RenderSettings
    from engine.vqgan import load_vqgan, use_fused_activation
    from tests.small_models import write_clip, write_vqgan

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ckpt = write_vqgan(Path(tmp) / "vq")
        ccfg, cw = write_clip(Path(tmp) / "clip")
        curves = []
        for variant, text in (("ref", prompt), ("m2v", prompt), ("m2v", control)):
            use_fused_activation(variant == "m2v")
            vq, clip = load_vqgan(cfg, ckpt), load_clip(str(ccfg), cw)
            target = clip.embed_text([text])[0]
            s = RenderSettings(width=64, height=64, cutouts=16, lr=0.2, cut_method="latest", precision="fp32")
            r = Optimizer(vq, clip, s, torch.device("cpu"))
            r.cut_impl = "kornia"  # the authors' draws: the two steps see identical cutouts
            r.reset()
            losses = []
            for i in range(steps):
                if variant == "m2v":
                    losses.append(float(r.step([(target, 1.0)], i)[1]))
                else:
                    losses.append(reference_step(vq, clip, r.z, r.opt, [(target, 1.0)], i, 16, r.z_min, r.z_max))
            curves.append(losses)
        use_fused_activation(True)
    return curves[0], curves[1], curves[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutouts", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.device, args.size, args.cutouts)))
        return
    import torch

    peak = matmul_peak(torch.device(args.device))
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s (float32, 2048^3, {args.device})", flush=True)
    res = {}
    for variant in ("ref", "m2v"):
        cmd = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps), "--device", args.device]
        cmd += ["--size", str(args.size), "--cutouts", str(args.cutouts)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        rate = r["flops"] / r["sec_per_step"]
        print(
            f"{variant:4s}: {r['sec_per_step'] * 1000:.1f} ms/step, peak {r['peak_mb']:.0f} MB, {r['flops'] / 1e9:.0f} GFLOP/step, "
            f"{rate / 1e9:.1f} GFLOP/s = {rate / peak:.0%} of the matmul peak "
            f"({args.device}, {args.size}x{args.size}, {args.cutouts} latest cutouts, {args.steps} steps after warm-up)",
            flush=True,
        )
    if args.device != "cpu":  # the loss check runs on the CPU with the small models: once, in the CPU run
        print(f"ratio={res['ref']['sec_per_step'] / res['m2v']['sec_per_step']:.3f}")
        return
    ref, m2v, control = loss_curves()
    gap = max(abs(a - b) for a, b in zip(ref, m2v))
    other = max(abs(a - b) for a, b in zip(ref, control))
    print(
        f"loss curves on the small models (20 steps, same seeds): largest gap m2v vs authors {gap:.2e}, "
        f"vs the same step towards another prompt {other:.2e}"
    )
    print(f"ratio={res['ref']['sec_per_step'] / res['m2v']['sec_per_step']:.3f}")


if __name__ == "__main__":
    main()

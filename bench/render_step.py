"""Benchmark: milliseconds per optimisation step, m2v against a faithful port of the authors' step.

All variants run the full-size architectures (ViT-B/32 with QuickGELU, the VQGAN f16/16384 decoder; random
weights: timing does not depend on values) with identical settings: the authors' ``latest`` cutouts and augments,
32 cutouts, Adam lr 0.1. Variants (:data:`VARIANTS`): the authors' step at their real precision (``ref``: fp16
CLIP and TF32 on CUDA, float32 on a CPU) and all in float32 (``ref32``, the old port), m2v's step as it was
before the batched cutouts (``before``), and m2v's at ``--precision fp32`` and ``mixed``; each report names its
precision and whether the step was captured (CUDA graphs). The variants run interleaved, round by round, in one
process (others share the machine), and the medians are reported. Also checks that m2v's step with the kornia
cutouts computes the authors' losses from the same seeds on the small test models (CPU).
Last line: ``ratio=<authors' real-precision ms / m2v mixed ms>``.

Run: .venv/bin/python bench/render_step.py [--rounds N] [--size 256] [--device cpu|cuda] [--variants a,b]
"""

from __future__ import annotations

import argparse
import resource
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


#: The variants, interleaved step by step in one process (others share this machine: medians of rounds).
#: ``ref``: the authors' step at their real precision (fp16 CLIP and TF32 on CUDA; float32 on a CPU);
#: ``ref32``: their step all in float32 (``--fp32``: the port as it was); ``before``: m2v's step as it was before
#: the batched cutouts (kornia cutouts, float32); ``fp32``/``mixed``: m2v's step at each ``--precision``.
VARIANTS = ("ref", "ref32", "before", "fp32", "mixed")


def make_variant(name: str, vq, clip, size: int, cutn: int, device):
    """A callable ``one(i)`` running step ``i`` of variant ``name``, and its description."""
    import torch
    from reference_step import authors_precision, reference_step, set_tf32

    from engine.models.vqgan import use_fused_activation
    from engine.render.step.optimize import Optimizer
    from engine.settings import RenderSettings

    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim, device=device), dim=-1)
    precision = "mixed" if name == "mixed" else "fp32"
    s = RenderSettings(width=size, height=size, cutouts=cutn, cutout_method="latest", precision=precision)
    opt = Optimizer(vq, clip, s, device)
    opt.reset()
    if name in ("ref", "ref32"):
        rclip, tf32 = authors_precision(clip, device, fp32=name == "ref32")

        def one(i):
            use_fused_activation(False)
            set_tf32(tf32)
            reference_step(vq, rclip, opt.z, opt.opt, [(target, 1.0)], i, cutn, opt.z_min, opt.z_max)

        return one, {"clip": "fp16" if rclip is not clip else "fp32", "tf32": tf32, "capture": False}
    if name == "before":
        opt.cutout_impl = "kornia"
        opt.graphs = None  # eager, as it was

    def one(i):
        use_fused_activation(True)
        set_tf32(False)  # m2v's precision switches TF32 on itself, only inside its step
        draw = opt.image_draws([i]) if opt.batched else None
        opt.step([(target, 1.0)], i, draw=draw[0] if draw is not None else None)

    return one, {**opt.precision.formats(), "capture": opt.graphs is not None, "cutouts": opt.cutout_impl}


def run_variants(names, rounds: int, device_name: str, size: int, cutn: int) -> dict:
    """Median seconds a step per variant, the variants interleaved round by round after one warm-up each."""
    import statistics

    import torch

    from engine.models.architectures import official_models

    device = torch.device(device_name)
    vq, clip = official_models(device)
    runs = {n: make_variant(n, vq, clip, size, cutn, device) for n in names}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict = {n: [] for n in names}
    peaks: dict = {n: 0.0 for n in names}
    for r in range(rounds + 1):  # round 0 warms up: allocator, oneDNN primitives, cuDNN autotune, capture
        for n in names:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            t = time.perf_counter()
            runs[n][0](r)
            sync()
            if r:
                times[n].append(time.perf_counter() - t)
            if device.type == "cuda":
                peaks[n] = max(peaks[n], torch.cuda.max_memory_allocated() / 2**20)
    out = {}
    for n in names:
        out[n] = {"sec_per_step": statistics.median(times[n]), "times": times[n], "peak_mb": peaks[n], **runs[n][1]}
    if device.type != "cuda":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for n in names:
            out[n]["peak_mb"] = rss  # one process: the peak of all variants together
    return out


def loss_curves(steps: int = 20, prompt: str = "a red balloon over the sea", control: str = "a violet forest"):
    """Losses of the authors' step and m2v's on the small test models, from the same start and seeds.

    Returns ``(reference, m2v, control)``: the last is m2v's step towards another prompt.
    """
    import torch
    from reference_step import reference_step

    from engine.models.clip_guide import load_clip
    from engine.models.vqgan import load_vqgan, use_fused_activation
    from engine.render.step.optimize import Optimizer
    from engine.settings import RenderSettings
    from tests.small_models import write_clip, write_vqgan

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ckpt = write_vqgan(Path(tmp) / "vq")
        ccfg, cw = write_clip(Path(tmp) / "clip")
        curves = []
        for variant, text in (("ref", prompt), ("m2v", prompt), ("m2v", control)):
            use_fused_activation(variant == "m2v")
            vq, clip = load_vqgan(cfg, ckpt), load_clip(str(ccfg), cw)
            target = clip.embed_text([text])[0]
            s = RenderSettings(width=64, height=64, cutouts=16, lr=0.2, cutout_method="latest", precision="fp32")
            r = Optimizer(vq, clip, s, torch.device("cpu"))
            r.cutout_impl = "kornia"  # the authors' draws: the two steps see identical cutouts
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
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (each runs every variant once)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cutouts", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    ap.add_argument("--no-loss-check", action="store_true", help="skip the loss check on the small models")
    args = ap.parse_args()
    import torch

    names = [v for v in args.variants.split(",") if v]
    if args.device == "cpu" and "ref" in names and "ref32" in names:
        names.remove("ref32")  # on a CPU the authors' real precision is float32: the same step
    peak = matmul_peak(torch.device(args.device))
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s (float32, 2048^3, {args.device})", flush=True)
    print(
        f"torch {torch.__version__}; {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    res = run_variants(names, args.rounds, args.device, args.size, args.cutouts)
    for n, r in res.items():
        extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("sec_per_step", "times", "peak_mb"))
        print(
            f"{n:6s}: {r['sec_per_step'] * 1000:.1f} ms/step (median of {len(r['times'])}: "
            f"{', '.join(f'{t * 1000:.0f}' for t in r['times'])}), peak {r['peak_mb']:.0f} MB; {extra} "
            f"({args.device}, {args.size}x{args.size}, {args.cutouts} latest cutouts)",
            flush=True,
        )
    sec = {n: r["sec_per_step"] for n, r in res.items()}
    if "mixed" in sec and "fp32" in sec:
        print(f"mixed_vs_fp32={sec['fp32'] / sec['mixed']:.3f}")
    if "fp32" in sec and "before" in sec:
        print(f"fp32_vs_before={sec['before'] / sec['fp32']:.3f}")
    if "ref32" in sec and "mixed" in sec:
        print(f"ratio_fp32_reference={sec['ref32'] / sec['mixed']:.3f}")
    if args.device == "cpu" and not args.no_loss_check:
        ref, m2v, control = loss_curves()
        gap = max(abs(a - b) for a, b in zip(ref, m2v))
        other = max(abs(a - b) for a, b in zip(ref, control))
        print(
            f"loss curves on the small models (20 steps, same seeds, kornia cutouts): largest gap m2v vs authors "
            f"{gap:.2e}, vs the same step towards another prompt {other:.2e}"
        )
    if "ref" in sec and "mixed" in sec:
        print(f"ratio={sec['ref'] / sec['mixed']:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: seconds per optimisation step at 256x256 with the full-size architectures.

m2v's step (batched cutouts, fused SiLU, bf16 autocast on CUDA)
against the straightforward reference step (bench/reference_step.py) with identical settings:
32 cutouts, ViT-B/32 (QuickGELU) and the VQGAN f16/16384 decoder, random weights (timing does not
depend on values). Each variant runs in its own process so peak memory is its own.
Also compares the two steps' loss curves on the small test models (same random draws).
Last line: ``ratio=<reference seconds / m2v seconds>``.

Run: .venv/bin/python bench/render_step.py [--steps N] [--device cpu|cuda]
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

FULL_VQGAN = {
    "model": {
        "target": "taming.models.vqgan.VQModel",
        "params": {
            "embed_dim": 256,
            "n_embed": 16384,
            "ddconfig": {
                "double_z": False,
                "z_channels": 256,
                "resolution": 256,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 1, 2, 2, 4],
                "num_res_blocks": 2,
                "attn_resolutions": [16],
                "dropout": 0.0,
            },
        },
    }
}


def build_full(device):
    import logging

    import open_clip
    import torch

    from engine.clip_guide import ClipGuide
    from engine.vqgan import VQGAN, parse_config

    torch.manual_seed(0)
    vq = VQGAN(parse_config(FULL_VQGAN)).eval().requires_grad_(False)
    vq.codebook.normal_()
    logging.getLogger().setLevel(logging.ERROR)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval().requires_grad_(False)
    clip = ClipGuide(model, open_clip.get_tokenizer("ViT-B-32-quickgelu"), "ViT-B-32-quickgelu")
    return vq.to(device), clip.to(device)


def run_variant(variant: str, steps: int, device_name: str, size: int = 256, cutn: int = 32) -> dict:
    import torch
    from reference_step import reference_step

    from engine.render import Renderer, RenderSettings
    from engine.vqgan import use_fused_activation

    device = torch.device(device_name)
    use_fused_activation(variant == "m2v")
    vq, clip = build_full(device)
    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim, device=device), dim=-1)
    settings = RenderSettings(width=size, height=size, cutouts=cutn)
    if variant == "m2v":

        class _A:  # the renderer only needs embed_dim from the audio model here
            embed_dim = clip.embed_dim

            def to(self, d):
                return self

        r = Renderer(vq, clip, _A(), settings, device)
        z, opt = r.initial_state()

        def one(i):
            r.step(z, opt, [(target, 1.0)], torch.Generator().manual_seed(i))
    else:
        g0 = torch.Generator().manual_seed(0)
        z = vq.random_latent(size, size, g0).to(device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.1)
        z_min, z_max = (t.to(device) for t in vq.z_bounds())

        def one(i):
            reference_step(vq, clip, z, opt, [(target, 1.0)], i, cutn, z_min, z_max)

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
    return {"variant": variant, "sec_per_step": sec, "peak_mb": peak, "device": device_name}


def loss_curves(steps: int = 30) -> tuple[list[float], list[float]]:
    """Both steps on the small test models from the same start with the same random draws."""
    import torch
    from reference_step import reference_step

    from engine.clip_guide import load_clip
    from engine.render import Renderer, RenderSettings
    from engine.vqgan import load_vqgan, use_fused_activation
    from tests.small_models import write_clip, write_vqgan

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ckpt = write_vqgan(Path(tmp) / "vq")
        ccfg, cw = write_clip(Path(tmp) / "clip")
        curves = []
        for variant in ("ref", "m2v"):
            use_fused_activation(variant == "m2v")
            vq, clip = load_vqgan(cfg, ckpt), load_clip(str(ccfg), cw)
            target = clip.embed_text(["a red balloon over the sea"])[0]
            s = RenderSettings(width=32, height=32, cutouts=16, lr=0.2)

            class _A:
                embed_dim = clip.embed_dim

                def to(self, d):
                    return self

            r = Renderer(vq, clip, _A(), s, torch.device("cpu"))
            z, opt = r.initial_state()
            losses = []
            for i in range(steps):
                g = torch.Generator().manual_seed(i)
                if variant == "m2v":
                    losses.append(r.step(z, opt, [(target, 1.0)], g)[1])
                else:
                    losses.append(reference_step(vq, clip, z, opt, [(target, 1.0)], i, 16, r.z_min, r.z_max))
            curves.append(losses)
    return curves[0], curves[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.device)))
        return
    res = {}
    for variant in ("ref", "m2v"):
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps), "--device", args.device],
            check=True,
            capture_output=True,
            text=True,
        )
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{variant:4s}: {res[variant]['sec_per_step']:.2f} s/step, peak {res[variant]['peak_mb']:.0f} MB "
            f"({args.device}, 256x256, 32 cutouts, {args.steps} steps after warm-up)",
            flush=True,
        )
    import numpy as np

    ref, m2v = loss_curves()
    corr = float(np.corrcoef(ref, m2v)[0, 1])
    print(
        f"loss curves on the small models (30 steps): reference {ref[0]:.4f} -> {ref[-1]:.4f}, "
        f"m2v {m2v[0]:.4f} -> {m2v[-1]:.4f}, correlation {corr:.3f}"
    )
    print(f"ratio={res['ref']['sec_per_step'] / res['m2v']['sec_per_step']:.3f}")


if __name__ == "__main__":
    main()

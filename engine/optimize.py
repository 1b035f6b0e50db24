"""The optimisation step: decode the latent, cut out, embed with CLIP, pull towards the targets, Adam.

One latent ``z`` runs through the whole video. The step is written once
here and used by the render loop, the cost calibration and the benchmarks.
"""

from __future__ import annotations

import hashlib

import numpy as np


def sub_seed(*parts) -> int:
    """A 63-bit seed from any parts (the render seed, a segment, an image, a step)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def spherical_distance(x, y):
    """Squared great-circle distance between unit vectors (VQGAN-CLIP's loss)."""
    import torch.nn.functional as F

    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def cutout_draws(h: int, w: int, n: int, size: int, generator, cut_pow: float = 1.0, noise: float = 0.1) -> tuple:
    """Random crop sizes and offsets, flips, noise factors and noise for ``n`` cutouts, in a fixed order."""
    import torch

    max_size, min_size = min(h, w), min(h, w, size)
    sizes = (torch.rand(n, generator=generator) ** cut_pow * (max_size - min_size) + min_size).floor()
    ox = (torch.rand(n, generator=generator) * (w - sizes + 1)).floor()
    oy = (torch.rand(n, generator=generator) * (h - sizes + 1)).floor()
    flips = torch.rand(n, generator=generator) < 0.5
    facs = torch.rand(n, 1, 1, 1, generator=generator) * noise
    eps = torch.randn(n, 3, size, size, generator=generator)
    return sizes, ox, oy, flips, facs, eps


def make_cutouts(image, n: int, size: int, generator, cut_pow: float = 1.0, noise: float = 0.1):
    """``n`` random square crops of ``image`` (``(1, 3, H, W)``), resampled to ``size`` in one batched op."""
    import torch
    from torchvision.ops import roi_align

    _, _, h, w = image.shape
    sizes, ox, oy, flips, facs, eps = cutout_draws(h, w, n, size, generator, cut_pow, noise)
    boxes = torch.stack([torch.zeros(n), ox, oy, ox + sizes, oy + sizes], 1).to(image)
    cuts = roi_align(image, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=False)
    dev = image.device
    flips = flips.to(dev)
    cuts = torch.where(flips[:, None, None, None], cuts.flip(-1), cuts)
    return cuts + facs.to(dev) * eps.to(dev)


def to_rgb(image) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] to an ``(H, W, 3)`` uint8 array on the CPU."""
    import torch

    return (image.detach().float()[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def cpu_copy(obj):
    """A deep copy with every tensor on the CPU (a snapshot must not change while it is written)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


class Optimizer:
    """The latent, its Adam state, and the step (the models stay frozen)."""

    def __init__(self, vqgan, clip, settings, device) -> None:
        self.vqgan, self.clip, self.s, self.device = vqgan, clip, settings, device
        self.z_min, self.z_max = (t.to(device) for t in vqgan.z_bounds())
        self.autocast = device.type == "cuda"
        self.z = self.opt = None

    def reset(self) -> None:
        """The starting latent: random codebook entries drawn from the seed."""
        import torch

        g = torch.Generator().manual_seed(sub_seed(self.s.seed, "init"))
        self._set(self.vqgan.random_latent(self.s.width, self.s.height, g).to(self.device), None)

    def _set(self, z, opt_state) -> None:
        import torch

        self.z = z.clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.z], lr=self.s.lr)
        if opt_state is not None:
            self.opt.load_state_dict(opt_state)

    def state(self) -> dict:
        """A CPU copy of the latent and optimiser state (for a snapshot)."""
        return {"z": cpu_copy(self.z), "opt": cpu_copy(self.opt.state_dict())}

    def load(self, state: dict) -> bool:
        """Restore a snapshot; False if it does not fit this render (another size or model)."""
        z = state["z"]
        if tuple(z.shape) != self.vqgan.latent_shape(self.s.width, self.s.height):
            return False
        try:
            self._set(z.to(self.device), state["opt"])
        except (ValueError, KeyError, TypeError, RuntimeError):
            return False
        return True

    def step(self, targets: list, generator, z_prev=None) -> tuple:
        """One optimisation step; returns the decoded image (before the update) and the loss."""
        import torch

        z, opt = self.z, self.opt
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.vqgan(z)
            cuts = make_cutouts(
                out.float(), self.s.cutouts, self.clip.input_size, generator, self.s.cut_pow, self.s.noise
            )
            emb = self.clip.embed_images(cuts)
        loss = sum(w * spherical_distance(emb, t[None]).mean() for t, w in targets)
        if z_prev is not None and self.s.l1_weight > 0:
            loss = loss + self.s.l1_weight * (z - z_prev).abs().mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.z_max), self.z_min))
        return out, float(loss.detach())

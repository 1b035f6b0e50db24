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


class InitPull:
    """VQGAN-CLIP's ``--init_weight``: ``weight / 2`` times the mean squared distance to an init picture.

    ``space`` ``latent`` measures it between the latent and the picture's encoding (VQGAN-CLIP's own term),
    ``pixel`` between the decoded image and the picture itself (``(1, 3, H, W)`` in [0, 1]).
    """

    def __init__(self, target, weight: float, space: str = "latent") -> None:
        self.target, self.weight, self.space = target, float(weight), space

    def loss(self, z, image):
        x = z if self.space == "latent" else image.float()
        return (x - self.target).pow(2).mean() * (self.weight / 2)


#: bf16 autocast on CUDA: off. Measured on an H200 (bench/render_step.py, 512x512, 32 latest cutouts) it made
#: the step slower, 97 ms against 75 ms in float32: the decoder is bound by GroupNorm and elementwise work that
#: autocast keeps in float32 (so it only adds ~800 casts a step), and the step is bound by kernel launches on
#: the CPU, not by the convolutions and matmuls that bf16 speeds up. float32 is also the authors' precision.
AUTOCAST_CUDA = False


def use_autocast(device) -> bool:
    """Whether the step runs under bf16 autocast on ``device`` (see :data:`AUTOCAST_CUDA`)."""
    return device.type == "cuda" and AUTOCAST_CUDA


class Optimizer:
    """The latent, its Adam state, and the step (the models stay frozen)."""

    def __init__(self, vqgan, clip, settings, device) -> None:
        self.vqgan, self.clip, self.s, self.device = vqgan, clip, settings, device
        self.z_min, self.z_max = (t.to(device) for t in vqgan.z_bounds())
        self.autocast = use_autocast(device)
        self.z = self.opt = None

    def reset(self, take: int = 0, segment: int = 0) -> None:
        """The starting latent: random codebook entries drawn from the seed and the chain's first segment (its
        index, unless 0, and its take)."""
        import torch

        parts = [*([f"chain{segment}"] if segment else []), *([f"take{take}"] if take else [])]
        g = torch.Generator().manual_seed(sub_seed(self.s.seed, "init", *parts))
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

    def set_latent(self, z) -> None:
        """Move the latent to ``z`` and keep Adam's moments (the image moved, or its footage frame came in)."""
        import torch

        with torch.no_grad():
            self.z.copy_(z)

    def step(self, targets: list, seed: int, anchor=None, pull: InitPull | None = None) -> tuple:
        """One optimisation step.

        Parameters
        ----------
        targets : list of (Tensor, float)
            Unit target vectors and their weights.
        seed : int
            Fixes the step's cutouts and augments.
        anchor : Tensor, optional
            The previous image's final latent: eq. 1 pulls towards it (``l1_weight``).
        pull : InitPull, optional
            An L2 pull towards a footage frame, added to the loss.

        Returns
        -------
        tuple
            The image decoded from the latent *before* the update (``(1, 3, H, W)`` in [0, 1]) and the loss
            (a 0-d tensor: reading it waits for the device, so callers read it once an image, not once a step).
        """
        import torch

        from engine.cutouts import make_cutouts

        s, z, opt = self.s, self.z, self.opt
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.vqgan(z)
            cuts = make_cutouts(out.float(), s.cutouts, self.clip.input_size, seed, s.cut_method, s.cut_pow, s.noise)
            emb = self.clip.embed_images(cuts)
        loss = sum(w * spherical_distance(emb, t[None]).mean() for t, w in targets)
        if pull is not None and pull.weight > 0:
            loss = loss + pull.loss(z, out)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if anchor is not None and s.l1_weight > 0:
                # Eq. 1 as a proximal step: an L1 term has no gradient where z equals the anchor (the start of
                # every image), so it would never act at one step per image. Soft-thresholding each change by
                # lr x weight is the exact minimiser of the L1 part: small changes vanish, large ones shrink.
                d = z - anchor
                z.copy_(anchor + d.sign() * (d.abs() - s.lr * s.l1_weight).clamp_min(0))
            z.copy_(torch.maximum(torch.minimum(z, self.z_max), self.z_min))
        return out, loss.detach()

    def decode(self):
        """The image of the current latent, as a step's forward pass would decode it."""
        import torch

        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            return self.vqgan(self.z)

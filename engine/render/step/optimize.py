"""The optimisation step: decode the latent, cut out, embed with CLIP, pull towards the targets, Adam.

One latent ``z`` runs through the whole video. The step is written once
here and used by the render loop, the cost calibration and the benchmarks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from engine.render.step.graph import StepGraphs
from engine.render.step.precision import step_precision


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


class Optimizer:
    """The latent, its Adam state, and the step (the models stay frozen).

    One step function (:meth:`step_body`) serves both ways a step runs: eagerly (CPU, MPS, and wherever capture
    fails) and, on CUDA, captured once per image shape as a CUDA graph and replayed (:mod:`engine.render.step.graph`).
    ``settings.precision`` picks the number formats (:mod:`engine.render.step.precision`).
    """

    def __init__(self, vqgan, clip, settings, device, warn=None) -> None:
        self.vqgan, self.clip, self.s, self.device = vqgan, clip, settings, device
        self.z_min, self.z_max = (t.to(device) for t in vqgan.z_bounds())
        self.precision = step_precision(settings.precision, device)
        #: ``latest`` cutouts: "batched" (engine.render.step.augment) or "kornia" (the authors' pipeline, for the reference).
        self.cutout_impl = "batched"
        self.graphs = StepGraphs(self, warn) if device.type == "cuda" else None
        self.z = self.opt = None
        self._targets: tuple = (None, None)

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
        # capturable: Adam's step count lives on the device, so a captured step can update it.
        self.opt = torch.optim.Adam([self.z], lr=self.s.lr, capturable=self.device.type == "cuda")
        if opt_state is not None:
            self.opt.load_state_dict(opt_state)
        if self.graphs is not None:
            self.graphs.clear()  # they hold the old latent and optimiser

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

    @property
    def batched(self) -> bool:
        """Whether the step's cutouts are the batched ``latest`` ones (drawn per image, capturable)."""
        return self.s.cutout_method == "latest" and self.cutout_impl == "batched"

    def image_draws(self, seeds: list[int]):
        """The cutout draws of an image's steps (:class:`engine.render.step.augment.ImageDraws`), or None where the cutouts
        draw per step from the seed (``crops``, or the ``kornia`` implementation)."""
        if not self.batched:
            return None
        from engine.render.step.augment import ImageDraws

        s = self.s
        return ImageDraws(seeds, s.cutouts, self.clip.input_size, s.noise, self.device)

    def step(self, targets: list, seed: int, anchor=None, pull: InitPull | None = None, draw=None) -> tuple:
        """One optimisation step.

        Parameters
        ----------
        targets : list of (Tensor, float)
            Unit target vectors and their weights.
        seed : int
            Fixes the step's cutouts and augments (where ``draw`` is not given).
        anchor : Tensor, optional
            The previous image's final latent: eq. 1 pulls towards it (``l1_weight``).
        pull : InitPull, optional
            An L2 pull towards a footage frame, added to the loss.
        draw : tuple, optional
            ``(draws, j)``: this step's cutout draws, from :meth:`image_draws` (made once for the image's steps).

        Returns
        -------
        tuple
            The image decoded from the latent *before* the update (``(1, 3, H, W)`` in [0, 1]) and the loss
            (a 0-d tensor: reading it waits for the device, so callers read it once an image, not once a step).
        """
        if draw is None and self.batched:
            draw = self.image_draws([seed])[0]
        tgt, wts = self._target_tensors(targets)
        if self.graphs is not None and draw is not None and (pull is None or pull.weight <= 0):
            done = self.graphs.replay(tgt, wts, draw, anchor)
            if done is not None:
                return done
        with self.precision.matmuls():
            self.opt.zero_grad(set_to_none=True)
            return self.step_body(tgt, wts, draw, anchor, pull, seed=seed)

    def step_body(self, tgt, wts, draw, anchor=None, pull=None, static: bool = False, seed: int = 0) -> tuple:
        """Decode, cut out, embed, loss, backward, Adam, eq. 1, clamp: the step, eager or under capture.

        ``tgt`` ``(T, d)`` unit targets and ``wts`` ``(T,)`` their weights, on the device; ``static`` selects the
        colour order on the device (a captured step). Gradients must be cleared by the caller.
        """
        import torch

        from engine.render.step.cutouts import latest_batched, make_cutouts

        s, z, opt, size = self.s, self.z, self.opt, self.clip.input_size
        with self.precision.decoder():
            out = self.vqgan(z)
        image = out.float()
        if draw is not None:
            cuts = latest_batched(image, s.cutouts, size, draw[0], draw[1], static=static)
        else:
            cuts = make_cutouts(image, s.cutouts, size, seed, s.cutout_method, s.cutout_pow, s.noise, impl=self.cutout_impl)
        with self.precision.clip():
            emb = self.clip.embed_images(cuts)
        loss = (spherical_distance(emb.float()[:, None], tgt[None]).mean(0) * wts).sum()
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

    def _target_tensors(self, targets: list) -> tuple:
        """``targets`` stacked on the device, made again only when they change (the weights cross from the host)."""
        import torch

        key = [(id(t), float(w)) for t, w in targets]
        if self._targets[0] != key:
            tgt = torch.stack([t.float() for t, _ in targets])
            wts = torch.tensor([float(w) for _, w in targets], device=self.device)
            # The list is kept with the key so that no target is freed and its id reused by another.
            self._targets = (key, (tgt, wts), list(targets))
        return self._targets[1]

    def decode(self):
        """The image of the current latent, as a step's forward pass would decode it."""
        import torch

        with torch.no_grad(), self.precision.matmuls(), self.precision.decoder():
            return self.vqgan(self.z)

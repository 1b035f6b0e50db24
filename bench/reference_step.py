"""A port of the authors' optimisation step (joeljang/music2video ``generate.py``, after nerdyrodent/VQGAN-CLIP).

The baseline m2v's step is compared against, written as their script writes it: fp32, contiguous tensors; cut method
``latest`` (``MakeCutouts``: the whole image pooled once per cutout in a Python loop, the kornia augment
``nn.Sequential`` over the batch, then noise); the one-hot codebook lookup with a straight-through gradient;
taming's own ``x * sigmoid(x)`` (the caller must not have swapped in fused SiLU); ``clamp_with_grad``; the spherical
distance loss (their ``Prompt``) averaged over cutouts; Adam; ``z`` clamped to the codebook's range after each step.

Precision: on a CPU their step is float32 (OpenAI's ``clip.load`` converts CLIP to float32 there). On a CUDA
device ``clip.load`` leaves CLIP's weights in fp16, and torch 1.9, which they pinned, ran float32 matmuls and
cuDNN convolutions in TF32: :func:`authors_precision` gives that step (``fp32=True``: all float32, the port as
it was before m2v knew this).

One departure, for comparability: where their script seeds torch once per segment and lets every step draw on from
the global generators, a step here takes its own ``seed`` and draws from generators seeded with it (the caller's
state is restored). On the CPU those are the very draws ``engine.render.step.cutouts.make_cutouts(..., method="latest")`` makes
from the same seed, so the two see identical cutouts. On a GPU the noise comes from the GPU's generator, as in
their script (m2v draws it on the CPU).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class ReplaceGrad(torch.autograd.Function):
    """Forward the first argument, send the gradient to the second (straight-through)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


class ClampWithGrad(torch.autograd.Function):
    """Clamp whose gradient still flows where it would move an out-of-range value back into range."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad_in):
        (x,) = ctx.saved_tensors
        return grad_in * (grad_in * (x - x.clamp(ctx.lo, ctx.hi)) >= 0), None, None


def vector_quantize(x, codebook):
    """Nearest codebook row for each row of ``x`` by a one-hot matrix product; straight-through gradient."""
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    x_q = F.one_hot(d.argmin(-1), codebook.shape[0]).to(d.dtype) @ codebook
    return ReplaceGrad.apply(x_q, x)


def synth(vqgan, z):
    """Latent to image in [0, 1] (their ``synth``; ``decode`` = ``post_quant_conv`` then the decoder)."""
    z_q = vector_quantize(z.movedim(1, 3), vqgan.codebook).movedim(3, 1)
    return ClampWithGrad.apply(vqgan.decoder(vqgan.post_quant_conv(z_q)).add(1).div(2), 0, 1)


def prompt_loss(image_embeds, target, weight=1.0):
    """Their ``Prompt`` with no stop: weighted squared great-circle distance, mean over cutouts."""
    a = F.normalize(image_embeds.unsqueeze(1), dim=2)
    b = F.normalize(target[None, None], dim=2)
    dists = a.sub(b).norm(dim=2).div(2).arcsin().pow(2).mul(2)
    return abs(weight) * (dists * (1 if weight >= 0 else -1)).mean()


class MakeCutouts(nn.Module):
    """Their ``MakeCutouts`` (cut method ``latest``) with the default augments ``Af Pe Ji Er``."""

    def __init__(self, cut_size, cutn, noise_fac=0.1):
        super().__init__()
        import kornia.augmentation as K

        self.cut_size, self.cutn, self.noise_fac = cut_size, cutn, noise_fac
        # Their settings, in their order. Their kornia (0.5.4; 0.6.1 in cog.yaml) called ColorJiggle "ColorJitter".
        self.augs = nn.Sequential(
            K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7, padding_mode="zeros", keepdim=True),
            K.RandomPerspective(distortion_scale=0.7, p=0.7),
            K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7),
            K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
        )
        self.av_pool = nn.AdaptiveAvgPool2d((cut_size, cut_size))
        self.max_pool = nn.AdaptiveMaxPool2d((cut_size, cut_size))

    def forward(self, input, seed):
        cuda = [input.device] if input.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            cutouts = []
            for _ in range(self.cutn):
                cutouts.append((self.av_pool(input) + self.max_pool(input)) / 2)
            batch = self.augs(torch.cat(cutouts, dim=0))
            if self.noise_fac:
                facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
                batch = batch + facs * torch.randn_like(batch)
        return batch


@functools.lru_cache(maxsize=4)
def make_cutouts_for(cut_size, cutn, noise_fac=0.1):
    """One ``MakeCutouts`` per setting, built once as their script does."""
    return MakeCutouts(cut_size, cutn, noise_fac)


class HalfClip:
    """CLIP as ``clip.load`` leaves it on a CUDA device: fp16 weights, the image cast to fp16 on the way in."""

    def __init__(self, clip) -> None:
        import copy

        self.clip = copy.deepcopy(clip).half()
        self.input_size, self.embed_dim = clip.input_size, clip.embed_dim
        self.mean, self.std = clip.mean.float(), clip.std.float()

    def embed_images(self, images):
        return self.clip.model.encode_image(((images - self.mean) / self.std).half()).float()


def authors_precision(clip, device, fp32: bool = False):
    """``(clip, tf32)``: the CLIP their step ran on ``device``, and whether TF32 was on (torch 1.9's default)."""
    if device.type != "cuda" or fp32:
        return clip, False
    return HalfClip(clip), True


def set_tf32(on: bool) -> None:
    """torch 1.9's defaults (TF32 for float32 matmuls and cuDNN convolutions) or all float32."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _check_taming_nonlinearity():
    import taming.modules.diffusionmodules.model as tm

    if tm.nonlinearity is F.silu:
        raise RuntimeError("the reference step runs taming's own x * sigmoid(x): call use_fused_activation(False)")


def reference_step(vqgan, clip, z, opt, targets, seed, cutn, z_min, z_max, noise=0.1):
    """One optimisation step as the authors' ``train(i)`` does it; returns the loss.

    ``targets`` is a list of ``(embedding, weight)``; ``seed`` fixes the cutouts' random draws.
    """
    _check_taming_nonlinearity()
    opt.zero_grad(set_to_none=True)
    out = synth(vqgan, z)
    emb = clip.embed_images(make_cutouts_for(clip.input_size, cutn, noise)(out, seed))
    loss = sum(prompt_loss(emb, t, w) for t, w in targets)
    loss.backward()
    opt.step()
    with torch.no_grad():
        z.copy_(z.maximum(z_min).minimum(z_max))
    return float(loss.detach())

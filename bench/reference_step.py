"""The straightforward VQGAN-CLIP step, as the original scripts write it: the baseline for m2v's step.

Per-cutout crop loop with adaptive average pooling (``MakeCutoutsOrig``), flips and
noise per cutout, one-hot codebook lookup, taming's own ``x * sigmoid(x)``, fp32,
contiguous (NCHW) tensors. Same settings and same random draws as m2v's step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.optimize import cutout_draws, spherical_distance
from engine.vqgan import clamp_with_grad


def vector_quantize_onehot(x, codebook):
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return x + (x_q - x).detach()


def reference_cutouts(image, n, size, generator, cut_pow=1.0, noise=0.1):
    _, _, h, w = image.shape
    # The same draws as m2v's step, so the two see the same cutouts.
    sizes, ox, oy, flips, facs, eps = cutout_draws(h, w, n, size, generator, cut_pow, noise)
    cutouts = []
    for i in range(n):
        s, x, y = int(sizes[i]), int(ox[i]), int(oy[i])
        cut = F.adaptive_avg_pool2d(image[:, :, y : y + s, x : x + s], size)
        if flips[i]:
            cut = cut.flip(-1)
        cutouts.append(cut + facs[i] * eps[i : i + 1])
    return torch.cat(cutouts)


def reference_step(vqgan, clip, z, opt, targets, generator, cutn, z_min, z_max, cut_pow=1.0, noise=0.1):
    """One optimisation step written the plain way; returns the loss."""
    opt.zero_grad(set_to_none=True)
    z_q = vector_quantize_onehot(z.movedim(1, 3), vqgan.codebook).movedim(3, 1)
    out = clamp_with_grad(vqgan.decoder(vqgan.post_quant_conv(z_q)).add(1).div(2), 0, 1)
    cuts = reference_cutouts(out, cutn, clip.input_size, generator, cut_pow, noise)
    emb = clip.embed_images(cuts)
    loss = sum(w * spherical_distance(emb, t[None]).mean() for t, w in targets)
    loss.backward()
    opt.step()
    with torch.no_grad():
        z.copy_(z.maximum(z_min).minimum(z_max))
    return float(loss.detach())

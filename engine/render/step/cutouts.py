"""Cutouts: the batch of views of the decoded image that CLIP scores at every step.

Two methods:

``latest`` (the default, as in the authors' ``generate.py``)
    Every cutout is the whole image pooled to CLIP's input size, ``(average + max) / 2``; then the authors'
    augments (random affine, perspective, colour jitter, erasing, in that order, each with p = 0.7) and
    per-cutout Gaussian noise. Two implementations: ``batched`` (the default, :mod:`engine.render.step.augment`: a few
    batched tensor ops with static shapes) and ``kornia`` (the authors' own kornia pipeline, kept for the
    reference step and the tests that compare against it).
``crops``
    Random square crops (sizes ``rand ** cutout_pow`` between CLIP's input size and the image's short side), resampled
    to the input size by exact box averaging (or bilinear interpolation when the image is smaller than the input),
    randomly mirrored, plus the same noise.

Every random draw comes from the integer ``seed`` and is made on the CPU (but the ``batched`` noise, drawn on the
image's device by a generator seeded from it), so a seed fixes the cutouts, and the caller's random state is
left alone.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from engine.render.step.augment import AUGMENTS, augment_batch, latest_draws, step_draws
from engine.render.step.augment import P as AUGMENT_P
from engine.settings_table import CUTOUT_METHODS  # noqa: F401 - re-exported: the methods this module implements


def make_cutouts(
    image: torch.Tensor,
    n: int,
    size: int,
    seed: int,
    method: str = "latest",
    cutout_pow: float = 1.0,
    noise: float = 0.1,
    augments: tuple[str, ...] = AUGMENTS,
    impl: str = "batched",
) -> torch.Tensor:
    """``n`` random views of ``image`` at ``size`` x ``size``, for CLIP.

    Parameters
    ----------
    image : Tensor
        ``(1, 3, H, W)`` in [0, 1], on any device; any ``H``, ``W`` (also smaller than ``size``).
    n : int
        Number of cutouts.
    size : int
        Side of each cutout (CLIP's input size).
    seed : int
        Fixes every random draw: the same seed gives the same cutouts on every device (bit for bit on the CPU).
    method : str
        One of `CUTOUT_METHODS`.
    cutout_pow : float
        ``crops`` only: exponent on the uniform draw of crop sizes (above 1 favours small crops; the authors' name).
    noise : float
        Each cutout gets Gaussian noise of a standard deviation drawn from U(0, ``noise``); 0 adds none.
    augments : tuple of str
        ``latest`` only: kornia augments in application order, by the authors' codes: ``"Af"`` affine, ``"Pe"``
        perspective, ``"Ji"`` colour jitter, ``"Er"`` erasing. ``()`` leaves the pooled image as is.
    impl : str
        ``latest`` only: ``"batched"`` (:mod:`engine.render.step.augment`: the same augments and distributions as a few batched
        tensor ops, draws from :func:`engine.render.step.augment.latest_draws`) or ``"kornia"`` (the authors' kornia pipeline
        with the draws their code makes from the seed: what the reference step in ``bench/`` sees).

    Returns
    -------
    Tensor
        ``(n, 3, size, size)`` on ``image``'s device, differentiable with respect to ``image``.
    """
    if method == "latest" and impl == "kornia":
        return _latest(image, n, size, seed, noise, tuple(augments))
    if method == "latest" and impl == "batched":
        return latest_batched(image, n, size, latest_draws([seed], n, size, noise, image.device), 0, augments)
    if method == "latest":
        raise ValueError(f"unknown cutout implementation {impl!r}; expected 'batched' or 'kornia'")
    if method == "crops":
        return _crops(image, n, size, seed, cutout_pow, noise)
    raise ValueError(f"unknown cutout method {method!r}; expected one of {CUTOUT_METHODS}")


def pool_whole(image: torch.Tensor, size: int) -> torch.Tensor:
    """The whole image at ``size`` x ``size``: the mean of adaptive average and adaptive max pooling.

    The average keeps the image's tones, the max keeps thin bright detail that averaging would wash out.
    """
    return (F.adaptive_avg_pool2d(image, size) + F.adaptive_max_pool2d(image, size)) / 2


def latest_batched(image, n: int, size: int, draws: dict, i: int, augments=AUGMENTS, static: bool = False):
    """``latest`` cutouts of ``image`` from step ``i`` of ``draws`` (:func:`engine.render.step.augment.latest_draws`).

    No host work and no shape that depends on a draw: what a captured step runs (``static`` selects the colour
    order on the device, see :func:`engine.render.step.augment.jiggle`).
    """
    _check_augments(augments)
    batch = pool_whole(image, size).expand(n, -1, -1, -1)
    return augment_batch(batch, step_draws(draws, i), tuple(augments), static)


def _check_augments(augments) -> None:
    unknown = [a for a in augments if a not in AUGMENTS]
    if unknown:
        raise ValueError(f"unknown augments {unknown}; expected codes from {AUGMENTS}")


def augmentations(augments: tuple[str, ...] = AUGMENTS, p: float = AUGMENT_P) -> tuple:
    """The kornia augment modules for ``augments``, with the authors' settings; built once per list and cached.

    The modules stay on the CPU and are never moved: kornia then draws their random parameters there.
    """
    return _build_augmentations(tuple(augments), float(p))


@functools.lru_cache(maxsize=8)
def _build_augmentations(augments: tuple[str, ...], p: float) -> tuple:
    import kornia.augmentation as K

    # The authors pinned kornia 0.5.4, whose ColorJitter (additive brightness, HSV saturation, hue in turns) is
    # today's ColorJiggle; today's ColorJitter uses torchvision's formulas instead.
    build = {
        "Af": lambda: K.RandomAffine(degrees=15, translate=0.1, shear=5, p=p, padding_mode="zeros", keepdim=True),
        "Pe": lambda: K.RandomPerspective(distortion_scale=0.7, p=p),
        "Ji": lambda: K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=p),
        "Er": lambda: K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=p),
    }
    unknown = [a for a in augments if a not in build]
    if unknown:
        raise ValueError(f"unknown augments {unknown}; expected codes from {tuple(build)}")
    mods = tuple(build[a]() for a in augments)
    for m in mods:  # explicit, whatever torch's default dtype: parameters are drawn on the CPU in float32
        m.set_rng_device_and_dtype(torch.device("cpu"), torch.float32)
    return mods


def _seeded_cpu_draws(seed: int, draw):
    """Run ``draw()`` with torch's CPU generator seeded by ``seed``, then put the caller's state back.

    kornia draws from torch's global generator (it takes no generator argument). ``torch.manual_seed`` would also
    reseed every CUDA generator, which ``fork_rng(devices=[])`` does not restore, so only the CPU generator is
    seeded. Not thread-safe, as anything that uses the global generator.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return draw()


def _placed(params: dict, like: torch.Tensor) -> dict:
    """kornia parameters drawn on the CPU, with the real-valued ones moved to ``like``'s device and dtype.

    Integer entries (the colour jitter's order, the input shape) are read on the host by kornia: they stay.
    """
    return {
        k: v.to(like.device, like.dtype, non_blocking=True) if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in params.items()
    }


def _latest(image, n, size, seed, noise, augments):
    augs = augmentations(augments)
    shape = torch.Size((n, image.shape[1], size, size))

    # All draws in the order the authors' code makes them: each augment's parameters, then the noise scales, then
    # the noise; the same generator calls so a port of their code seeded alike sees identical draws.
    def draw():
        params = [aug.forward_parameters(shape) for aug in augs]
        facs = torch.empty(n, 1, 1, 1).uniform_(0, noise) if noise else None
        eps = torch.randn(shape) if noise else None
        return params, facs, eps

    params, facs, eps = _seeded_cpu_draws(seed, draw)
    # The authors pool the same image once per cutout; pooling once and repeating gives the same values and, through
    # the repeat, the same gradient (the sum over cutouts).
    batch = pool_whole(image, size).expand(n, -1, -1, -1).contiguous()
    for aug, prm in zip(augs, params):
        batch = aug(batch, params=_placed(prm, batch))
    if noise:
        batch = batch + facs.to(batch) * eps.to(batch)
    return batch


def crop_draws(h: int, w: int, n: int, size: int, seed: int, cutout_pow: float = 1.0, noise: float = 0.1) -> tuple:
    """Random square crops of an ``h`` x ``w`` image for ``n`` cutouts, from ``seed``, on the CPU.

    Returns
    -------
    tuple
        ``sizes``, ``ox``, ``oy`` (int64, ``(n,)``: side and top-left corner of each crop), ``flips`` (bool,
        ``(n,)``), ``facs`` (``(n, 1, 1, 1)`` noise scales) and ``eps`` (``(n, 3, size, size)`` unit noise).
    """
    g = torch.Generator().manual_seed(seed)
    # Crops span CLIP's input size up to the short side; in an image smaller than the input every crop is the
    # short side (then upsampled).
    max_size, min_size = min(h, w), min(h, w, size)
    sizes = (torch.rand(n, generator=g) ** cutout_pow * (max_size - min_size) + min_size).floor().long()
    ox = (torch.rand(n, generator=g) * (w - sizes + 1)).floor().long()
    oy = (torch.rand(n, generator=g) * (h - sizes + 1)).floor().long()
    flips = torch.rand(n, generator=g) < 0.5
    facs = torch.rand(n, 1, 1, 1, generator=g) * noise
    eps = torch.randn(n, 3, size, size, generator=g)
    return sizes, ox, oy, flips, facs, eps


def _crops(image, n, size, seed, cutout_pow, noise):
    _, _, h, w = image.shape
    sizes, ox, oy, flips, facs, eps = crop_draws(h, w, n, size, seed, cutout_pow, noise)
    cuts = resample_crops(image, sizes, ox, oy, size)
    flips = flips.to(image.device)[:, None, None, None]
    cuts = torch.where(flips, cuts.flip(-1), cuts)
    if noise:
        cuts = cuts + facs.to(cuts) * eps.to(cuts)
    return cuts


def resample_crops(image: torch.Tensor, sizes, ox, oy, size: int) -> torch.Tensor:
    """Square crops of ``image`` resampled to ``size`` x ``size``, all in one batched gather.

    A crop at least ``size`` wide is averaged over the same pixel boxes as ``F.adaptive_avg_pool2d`` of the crop
    (box sums from a summed-area table); a smaller one is interpolated as ``F.interpolate(mode="bilinear",
    align_corners=False)`` of the crop would. Either way a cutout depends only on its crop's pixels, with pixel
    centres where they belong: no half-pixel shift, no blur from bilinear samples between pixels.

    Parameters
    ----------
    image : Tensor
        ``(1, C, H, W)``.
    sizes, ox, oy : Tensor
        int64 ``(n,)``: the side and top-left corner of each crop, inside the image.
    size : int
        Output side.

    Returns
    -------
    Tensor
        ``(n, C, size, size)`` in ``image``'s dtype.
    """
    # Decided before the draws move to the image's device, so it costs no device round trip.
    down, up = bool((sizes >= size).all()), bool((sizes <= size).all())
    dev = image.device
    sizes, ox, oy = (t.to(dev, torch.int64) for t in (sizes, ox, oy))
    # float64 keeps box sums from the summed-area table exact to ~1e-11 even at 4k x 4k; MPS has no float64.
    acc = torch.float32 if dev.type == "mps" else torch.float64
    if down:
        table = F.pad(image[0].to(acc).cumsum(1).cumsum(2), (1, 0, 1, 0))  # table[:, y, x]: sum of image[:, :y, :x]
        (ya, yb, wy), (xa, xb, wx) = _box_taps(oy, sizes, size, acc), _box_taps(ox, sizes, size, acc)
    elif up:
        table = image[0].to(acc)
        (ya, yb, wy), (xa, xb, wx) = _linear_taps(oy, sizes, size, acc), _linear_taps(ox, sizes, size, acc)
    else:
        raise ValueError("crops both larger and smaller than the output size")
    # Each output pixel is separable: out[i, j] = sum over a, b in {0, 1} of wy[a][i] * wx[b][j] * table[y_a[i], x_b[j]].
    out = 0
    for y, vy in ((ya, wy[0]), (yb, wy[1])):
        for x, vx in ((xa, wx[0]), (xb, wx[1])):
            out = out + table[:, y[:, :, None], x[:, None, :]] * (vy[:, :, None] * vx[:, None, :])
    return out.transpose(0, 1).to(image.dtype).contiguous()


def _box_taps(offset, sizes, size, dtype):
    """Summed-area-table taps for adaptive average pooling of ``sizes``-long runs starting at ``offset`` to ``size``.

    Bin ``i`` covers ``[floor(i s / size), ceil((i + 1) s / size))`` as in PyTorch's adaptive pooling; its mean is
    ``(T[end] - T[start]) / (end - start)`` for a prefix-sum table ``T``.
    """
    i = torch.arange(size, device=offset.device)
    s = sizes[:, None]
    start = offset[:, None] + i * s // size
    end = offset[:, None] - (-(i + 1) * s // size)  # ceil division in integers: exact for any size
    inv = 1 / (end - start).to(dtype)
    return end, start, (inv, -inv)


def _linear_taps(offset, sizes, size, dtype):
    """Linear interpolation taps for upsampling ``sizes``-long runs starting at ``offset`` to ``size`` samples.

    Output pixel centres map back to ``(i + 0.5) s / size - 0.5`` in the run (``align_corners=False``), clamped to
    the run so the edges repeat the crop's own border pixels rather than reading the neighbours outside it. The
    positions are computed in float32 as PyTorch's own bilinear upsampling computes them, so both agree to rounding.
    """
    i = torch.arange(size, device=offset.device, dtype=torch.float32)
    s = sizes[:, None]
    src = ((s.float() / size) * (i + 0.5) - 0.5).clamp(min=0)
    lo = src.long()  # floor: src >= 0
    frac = torch.where(lo < s - 1, src - lo, 0).to(dtype)  # past the last pixel centre: the last pixel
    lo = torch.minimum(lo, s - 1)
    hi = torch.minimum(lo + 1, s - 1)
    return offset[:, None] + lo, offset[:, None] + hi, (1 - frac, frac)

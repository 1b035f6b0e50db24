"""The step inside a matte: what CLIP sees, and which part of the latent may move.

Three small pieces, used by :meth:`engine.render.step.optimize.Optimizer.step_body` only when it is given a
:class:`StepMatte` (without one the step runs exactly as before, bit for bit):

- :func:`clip_view`: the picture CLIP's cutouts are drawn from. The decoded image is laid over the backdrop
  through the matte (the footage frame, or black where the picture will be empty: what the viewer will see),
  then cut to the matte's box, its bounding box padded (:func:`matte_box`). The cutouts come from the box only,
  and the loss has no gradient through the image's pixels outside the matte.
- :func:`mask_gradient`: the latent's gradient times the matte at the latent grid (:func:`latent_mask`), so
  Adam's moments gather nothing outside it;
- :func:`confine`: after the update (Adam, eq. 1, the clamp) each latent cell keeps ``mask`` of its change:
  cells outside the matte stay where they were (Adam's moments from earlier images would otherwise still move
  them), feathered cells move part way.

An all-white matte gives no :class:`StepMatte` (:func:`step_matte` returns None): the step is the plain step.
An all-black one is the caller's to skip (no steps, :func:`engine.render.sources.matte.is_empty`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: The box is padded by this share of its larger side on every side, then out to whole latent cells.
BOX_PAD = 0.125
#: Changes when the step inside a matte changes (it is in the cache key of every segment an image's matte is in).
STEP_VERSION = 1


def matte_box(matte: np.ndarray, pad: float = BOX_PAD, align: int = 16) -> tuple[int, int, int, int] | None:
    """The matte's region as a pixel box ``(x0, y0, x1, y1)`` (end exclusive), padded, or None where it is empty.

    The bounding box of the pixels above 0, grown by ``pad`` times its larger side on each side and out to
    multiples of ``align`` (the VQGAN's cell: boxes of a moving matte then keep one size), inside the frame.
    """
    ys, xs = np.nonzero(np.asarray(matte).any(axis=1)), np.nonzero(np.asarray(matte).any(axis=0))
    if not len(ys[0]):
        return None
    h, w = matte.shape[:2]
    y0, y1, x0, x1 = int(ys[0][0]), int(ys[0][-1]) + 1, int(xs[0][0]), int(xs[0][-1]) + 1
    p = math.ceil(pad * max(x1 - x0, y1 - y0))
    x0, y0 = max(0, (x0 - p) // align * align), max(0, (y0 - p) // align * align)
    x1, y1 = min(w, -(-(x1 + p) // align) * align), min(h, -(-(y1 + p) // align) * align)
    return x0, y0, x1, y1


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """The matte at the latent grid: each cell takes the largest value of its ``factor`` x ``factor`` pixels.

    A cell that shows any of the matte may move (its pixels inside the matte must be free to change); the
    feather carries over as the cells' fractions. ``mask`` is ``(1, 1, H, W)`` in [0, 1], ``H`` and ``W``
    multiples of ``factor``.
    """
    return F.max_pool2d(mask, factor)


@dataclass
class StepMatte:
    """One image's matte, on the step's device.

    Attributes
    ----------
    mask : Tensor
        ``(1, 1, H, W)`` in [0, 1]: the matte at the render size.
    latent : Tensor
        ``(1, 1, H / f, W / f)``: the matte at the latent grid (:func:`latent_mask`).
    backdrop : Tensor or None
        ``(1, 3, H, W)`` in [0, 1]: what shows outside the matte (the footage frame); None: black.
    box : tuple of int
        ``(x0, y0, x1, y1)``: the region the cutouts are drawn from (:func:`matte_box`).
    rows, cols : Tensor
        int64 pixel indices of the box (a gather: the same shapes for every box of one size).
    """

    mask: torch.Tensor
    latent: torch.Tensor
    backdrop: torch.Tensor | None
    box: tuple[int, int, int, int]
    rows: torch.Tensor
    cols: torch.Tensor


def step_matte(matte: np.ndarray, factor: int, device, backdrop: np.ndarray | None = None) -> StepMatte | None:
    """The :class:`StepMatte` of an ``(H, W)`` uint8 matte at the render size, or None where it is all white.

    Parameters
    ----------
    matte : ndarray
        ``(H, W)`` uint8 (:meth:`engine.render.sources.matte.Matte.frame`), not all black.
    factor : int
        The VQGAN's downsampling factor (pixels per latent cell).
    device : torch.device
    backdrop : ndarray, optional
        ``(H, W, 3)`` uint8: the footage frame the image follows.
    """
    if (matte == 255).all():
        return None  # generated everywhere: the plain step, the same bits
    box = matte_box(matte, align=factor)
    if box is None:
        raise ValueError("an all-black matte has no step: the image is made without steps")
    mask = torch.from_numpy(np.array(matte, np.uint8)).to(device).float().div(255)[None, None]
    back = None
    if backdrop is not None:
        back = torch.from_numpy(np.array(backdrop, np.uint8)).to(device).permute(2, 0, 1)[None].float().div(255)
    x0, y0, x1, y1 = box
    rows = torch.arange(y0, y1, device=device)
    cols = torch.arange(x0, x1, device=device)
    return StepMatte(mask, latent_mask(mask, factor), back, box, rows, cols)


def clip_view(image: torch.Tensor, m: StepMatte) -> torch.Tensor:
    """The picture the cutouts are drawn from: ``image`` over the backdrop through the matte, cut to the box.

    ``(1, 3, y1 - y0, x1 - x0)``; its gradient reaches ``image`` only where the matte is above 0.
    """
    shown = image * m.mask if m.backdrop is None else torch.lerp(m.backdrop, image, m.mask)
    return shown.index_select(2, m.rows).index_select(3, m.cols)


def mask_gradient(z: torch.Tensor, m: StepMatte) -> None:
    """The latent's gradient times the matte at the latent grid: none outside it."""
    if z.grad is not None:
        z.grad.mul_(m.latent)


def confine(z: torch.Tensor, before: torch.Tensor, m: StepMatte) -> None:
    """Keep ``mask`` of each latent cell's change since ``before``: exactly ``before`` where the mask is 0,
    exactly ``z`` where it is 1 (``torch.lerp`` returns its ends exactly)."""
    with torch.no_grad():
        z.copy_(torch.lerp(before, z, m.latent))

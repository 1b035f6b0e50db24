"""Images with alpha: a generated picture, its matte as alpha, and the picture laid over a backdrop.

The convention is **straight** (unassociated) alpha, the one PNG defines and
the one Blender's sequencer expects of an image strip by default (the strip's
Alpha Mode ``Straight``, which Blender converts to premultiplied itself):
with the strip above the footage and its blend mode Alpha Over, each pixel
shows ``alpha x RGB + (1 - alpha) x footage``, computed on the 8-bit values as
they are (the sequencer blends in its sRGB space; ``tests/test_matte.py``
renders it in real bpy to hold us to it).

- Inside the matte (alpha above 0) the RGB is the generated picture's.
- Outside it (alpha 0) the RGB is the footage frame the image follows, or
  black where there is none: a viewer that ignores alpha shows the footage
  there, and nothing else has to be made up.

:func:`composite` is the Alpha Over the exports make (over the footage frame,
or black).
"""

from __future__ import annotations

import numpy as np


def rgba_frame(rgb: np.ndarray, matte: np.ndarray, backdrop: np.ndarray | None = None) -> np.ndarray:
    """The ``(H, W, 4)`` uint8 straight-alpha picture of a generated image and its matte.

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8: the generated image.
    matte : ndarray
        ``(H, W)`` uint8 at the same size (:meth:`engine.render.sources.matte.Matte.frame`): becomes the alpha.
    backdrop : ndarray, optional
        ``(H, W, 3)`` uint8: the footage frame, the RGB where the matte is 0 (black without one).
    """
    if matte.shape != rgb.shape[:2]:
        raise ValueError(f"a {matte.shape} matte for a {rgb.shape[:2]} image")
    out = np.empty((*rgb.shape[:2], 4), np.uint8)
    outside = (matte == 0)[..., None]
    out[..., :3] = np.where(outside, 0 if backdrop is None else backdrop, rgb)
    out[..., 3] = matte
    return out


def composite(rgba: np.ndarray, backdrop: np.ndarray | None = None) -> np.ndarray:
    """Alpha Over: a straight-alpha ``(H, W, 4)`` uint8 picture over ``backdrop`` (``(H, W, 3)``; black).

    ``(a x fg + (255 - a) x bg) / 255``, rounded to the nearest, in integers (the same bytes on every machine).
    """
    a = rgba[..., 3:4].astype(np.uint32)
    fg = rgba[..., :3].astype(np.uint32)
    bg = np.zeros_like(fg) if backdrop is None else backdrop.astype(np.uint32)
    return ((a * fg + (255 - a) * bg + 127) // 255).astype(np.uint8)

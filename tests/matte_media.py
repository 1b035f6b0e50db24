"""Synthesised mattes for the tests: a white disc moving on black, as a movie, pictures, or an alpha channel.

The synthetic shot of issue 28: the disc (the matte) moves across the frame over a coloured-noise movie
(the footage, :func:`noise_frame`). Movies are written losslessly (PNG in QuickTime), so every decoded frame is
exactly the frame written.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def disc_frame(j: int, width: int = 64, height: int = 48, radius: float | None = None, moved: int = 0) -> np.ndarray:
    """Frame ``j``: ``(height, width)`` uint8, a white disc on black, its centre moving left to right.

    ``moved`` shifts the disc down by that many pixels (a matte an editor moved).
    """
    r = min(width, height) / 4 if radius is None else radius
    cx = r + (width - 2 * r) * ((j % 30) / 29)
    cy = height / 2 + moved
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return np.where((x - cx) ** 2 + (y - cy) ** 2 <= r * r, 255, 0).astype(np.uint8)


def noise_frame(j: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frame ``j`` of coloured noise: ``(height, width, 3)`` uint8, other noise in every frame."""
    return np.random.default_rng(1000 + j).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_png_movie(path: Path, frames: list[np.ndarray], rate: Fraction = Fraction(30000, 1001)) -> list[np.ndarray]:
    """A lossless QuickTime movie (PNG frames) of ``(h, w)`` grey, ``(h, w, 3)`` RGB or ``(h, w, 4)`` RGBA frames."""
    import av

    def rgb(a):
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    alpha = frames[0].ndim == 3 and frames[0].shape[2] == 4
    with av.open(str(path), "w", format="mov") as c:
        s = c.add_stream("png", rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "rgba" if alpha else "rgb24"
        for j, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb(a)), format=s.pix_fmt)
            f.pts = j
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return frames


def with_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(h, w, 4)``: ``rgb`` with ``alpha`` as its fourth channel."""
    return np.concatenate([rgb, alpha[..., None]], axis=2)

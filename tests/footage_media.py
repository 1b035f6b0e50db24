"""Synthesised footage for the tests: a movie (PyAV) whose frames tell themselves apart.

Every frame is a two-colour gradient with a coloured block that moves along a
path and changes colour as it goes, so any two frames some way apart differ
clearly, and each frame's index can be read back from its pixels
(:func:`nearest_frame`).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def footage_frame(j: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frame ``j`` as ``(height, width, 3)`` uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 40 + 120 * x / width
    img[..., 1] = 60 + 100 * y / height
    img[..., 2] = 170 - 80 * x / width
    bw, bh = width // 3, height // 3
    # A block going round a rectangle (one lap every 40 frames) and changing hue as it goes.
    p = (j % 40) / 40
    path = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    leg, f = int(p * 4), (p * 4) % 1
    (x0, y0), (x1, y1) = path[leg], path[(leg + 1) % 4]
    cx, cy = (x0 + (x1 - x0) * f) * width, (y0 + (y1 - y0) * f) * height
    left, top = int(round(cx - bw / 2)), int(round(cy - bh / 2))
    hue = 2 * np.pi * j / 97
    color = 128 + 120 * np.array([np.cos(hue), np.cos(hue + 2.1), np.cos(hue + 4.2)])
    img[max(0, top) : top + bh, max(0, left) : left + bw] = color
    return img.clip(0, 255).astype(np.uint8)


def write_movie(
    path: Path,
    frames: int,
    rate: Fraction = Fraction(30000, 1001),
    width: int = 64,
    height: int = 48,
    regraded_from: int | None = None,
):
    """An H.264 (lossless) mp4 of ``frames`` frames at ``rate``; returns the frames written.

    ``regraded_from``: frames from this index on get another colour grade (an editor's re-export that changed
    only the end); the frames before it are the same pixels.
    """
    import av

    out = [footage_frame(j, width, height) for j in range(frames)]
    if regraded_from is not None:
        out[regraded_from:] = [(255 - a // 2).astype(np.uint8) for a in out[regraded_from:]]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = width, height, "yuv444p"
        s.options = {"crf": "0", "preset": "ultrafast"}
        for a in out:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return out


def nearest_frame(rgb: np.ndarray, frames: list[np.ndarray]) -> int:
    """Index of the frame closest to ``rgb`` (mean squared difference, after resizing to its size)."""
    from PIL import Image

    h, w = frames[0].shape[:2]
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
    d = [float(((rgb.astype(np.float32) - f.astype(np.float32)) ** 2).mean()) for f in frames]
    return int(np.argmin(d))

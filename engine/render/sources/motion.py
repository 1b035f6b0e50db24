"""Motion that follows the music: how each image moves the previous one before its own steps.

VQGAN-CLIP's zoom video transforms the current image (zoom about the centre,
shift), encodes it back into the latent and optimises on. m2v does the same
per image, with amounts the music drives:

- ``music``: a **zoom pulse on every beat**: a beat of onset strength ``s``
  zooms by ``(1 + zoom) ** s`` in all, spread over the images after it along
  a short exponential decay (``PULSE_DECAY`` seconds), so the total per beat
  does not depend on how many images a second the segment has; **rotation
  and shift drift** at ``rotate`` degrees and ``shift`` pixels per second,
  scaled by the segment's intensity (quiet passages drift slowly, loud ones
  fast).
- ``steady``: no music: ``(1 + zoom)`` per second, and the full rotation and
  shift per second, everywhere.

Conventions: zoom above 0 magnifies (content grows from the centre);
rotation in degrees, positive counter-clockwise on screen; shift in pixels,
``x`` to the right and ``y`` up. Every amount is a pure function of the plan
and the settings, so a resumed render moves its images exactly as an
uninterrupted one.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from engine.protocol import image_slots

#: Seconds over which a beat's zoom pulse decays to 1/e.
PULSE_DECAY = 0.15


@dataclass(frozen=True)
class Motion:
    """One image's transform of the previous image."""

    zoom: float = 1.0  # scale factor about the centre (1: none)
    angle: float = 0.0  # degrees, counter-clockwise
    dx: float = 0.0  # pixels to the right
    dy: float = 0.0  # pixels up

    @property
    def identity(self) -> bool:
        return self.zoom == 1.0 and self.angle == 0.0 and self.dx == 0.0 and self.dy == 0.0

    def key(self) -> list[float]:
        return [round(self.zoom, 9), round(self.angle, 9), round(self.dx, 9), round(self.dy, 9)]


def pulse_mass(t_beat: float, a: float, b: float, decay: float = PULSE_DECAY) -> float:
    """Share of a beat's exponential pulse (starting at ``t_beat``) that falls in ``[a, b)``."""
    lo, hi = max(a, t_beat), max(b, t_beat)
    if hi <= lo:
        return 0.0
    return math.exp(-(lo - t_beat) / decay) - math.exp(-(hi - t_beat) / decay)


def beat_strengths(plan: dict) -> tuple[list[float], list[float]]:
    """The plan's beat times and onset strengths (1 each where a plan has times only)."""
    beats = [float(t) for t in plan.get("beats") or []]
    strength = plan.get("beat_strength")
    if strength is None or len(strength) != len(beats):
        strength = [1.0] * len(beats)
    return beats, [float(s) for s in strength]


def _each(value, n: int) -> list:
    """An animated setting's values per image, or one value for all ``n`` images."""
    return value if isinstance(value, list) else [value] * n


def segment_motion(plan: dict, k: int, settings) -> list[Motion]:
    """Each image's transform in segment ``k`` (identity everywhere when motion is off).

    ``settings`` (:class:`engine.settings.RenderSettings`): ``zoom``, ``rotate``, ``shift``, ``motion_drive``;
    an animated amount moves each image by its own value.
    """
    seg = plan["segments"][k]
    slots = image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)
    if not settings.motion_active:
        return [Motion() for _ in slots]
    times, n = [a for a, _ in slots], len(slots)
    zooms = [math.log1p(z) for z in _each(settings.image_values("zoom", times), n)]
    rotates = _each(settings.image_values("rotate", times), n)
    shifts = _each(settings.image_values("shift", times), n)
    if settings.motion_drive == "steady":
        drift = 1.0
    else:
        drift = float(seg.get("intensity", 0.5))
        beats, strength = beat_strengths(plan)
        # A pulse is spent (e^-12) a dozen decays after its beat: older beats cannot reach these images.
        lo = bisect.bisect_left(beats, slots[0][0] - 12 * PULSE_DECAY)
    out = []
    for (a, b), log_zoom, rotate, shift in zip(slots, zooms, rotates, shifts):
        length = b - a
        if settings.motion_drive == "steady":
            zoom_log = log_zoom * length
        else:
            zoom_log = 0.0
            for t, s in zip(beats[lo:], strength[lo:]):
                if t >= b:
                    break
                zoom_log += log_zoom * s * pulse_mass(t, a, b)
        out.append(
            Motion(
                zoom=math.exp(zoom_log),
                angle=rotate * drift * length,
                dx=shift[0] * drift * length,
                dy=shift[1] * drift * length,
            )
        )
    return out


def affine_theta(m: Motion, width: int, height: int):
    """The ``(1, 2, 3)`` matrix for ``affine_grid``: output pixel -> where to sample the input (normalised)."""
    import torch

    c, s = math.cos(math.radians(m.angle)), math.sin(math.radians(m.angle))
    hw, hh = width / 2, height / 2
    # In pixel units about the centre with y up, the forward map is out = zoom * R(angle) @ in + (dx, dy);
    # grid_sample needs its inverse, in grid coordinates (x right, y down, each from -1 to 1).
    z = m.zoom
    theta = [
        [c / z, -s * hh / (z * hw), -(c * m.dx + s * m.dy) / (z * hw)],
        [s * hw / (z * hh), c / z, (c * m.dy - s * m.dx) / (z * hh)],
    ]
    return torch.tensor([theta], dtype=torch.float64)


def warp(image, m: Motion):
    """``image`` (``(1, C, H, W)``) moved by ``m``; uncovered edges are mirrored in (no black borders)."""
    import torch.nn.functional as F

    if m.identity:
        return image
    _, _, h, w = image.shape
    theta = affine_theta(m, w, h).to(device=image.device, dtype=image.dtype)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

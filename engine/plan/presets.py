"""Resolving ``--preset auto|paper|draft|musicvideo`` and filling in what the user did not set.

``paper`` is the paper's method as its text reads (``--intensity authors``
takes the authors' code's intensity instead); ``draft`` a preview a CPU renders in
reasonable time; ``musicvideo`` the paper's workload with motion that follows
the music. ``auto`` takes ``paper`` where a GPU is found (CUDA or Apple's
MPS) and ``draft`` on a CPU, and says so.
"""

from __future__ import annotations

from engine.errors import InputError
from engine.models.factory import pick_device
from engine.protocol import MOTION_OFF, MOTION_PRESETS, PRESETS
from engine.settings_table import PRESET_CHOICES


def resolve_preset(name: str, device: str = "auto") -> tuple[str, str]:
    """The preset to use and the device it was chosen for (``cuda``, ``mps`` or ``cpu``)."""

    if name not in PRESET_CHOICES:
        raise InputError(f"--preset must be one of {', '.join(PRESET_CHOICES)}, not {name!r}")
    dev = pick_device(device).type
    if name != "auto":
        return name, dev
    return ("paper" if dev in ("cuda", "mps") else "draft"), dev


def preset_value(preset: str, key: str, given):
    """``given`` where the user set it, else the preset's value."""
    return PRESETS[preset][key] if given is None else given


def motion_value(preset: str, key: str, given):
    """``given`` where the user set it, else the preset's motion (none outside ``musicvideo``)."""
    return MOTION_PRESETS.get(preset, MOTION_OFF)[key] if given is None else given


def describe(preset: str) -> str:
    """``paper (beats, 10-120 steps/s, 512x512, 32 latest cutouts)``."""
    p = PRESETS[preset]
    w, h = p["size"]
    text = (
        f"{preset} ({p['granularity']}, {p['min_rate']:g}-{p['max_rate']:g} steps/s, {w}x{h}, "
        f"{p['cutouts']} {p['cutout_method']} cutouts"
    )
    m = MOTION_PRESETS.get(preset)
    if m:
        text += f", a {m['zoom']:g} zoom pulse a beat and {m['rotate']:g} deg/s drift"
    return text + ")"

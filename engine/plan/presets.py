"""Resolving ``--preset auto|paper|draft|musicvideo`` and filling in what the user did not set.

``paper`` is the paper's method as its text reads (``--intensity authors``
takes the authors' code's intensity instead); ``draft`` a preview a CPU renders in
reasonable time; ``musicvideo`` the paper's workload with motion that follows
the music. ``auto`` takes ``paper`` where a GPU is found (CUDA or Apple's
MPS) and ``draft`` on a CPU, and says so.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import InputError
from engine.protocol import MOTION_PRESETS, PRESETS
from engine.settings_table import PRESET_CHOICES, describe_preset


def resolve_preset(name: str, device_kind: Callable[[], str]) -> str:
    """The preset to use: ``name``, or for ``auto`` what the device's kind (``cuda``, ``mps`` or ``cpu``) calls for.

    ``device_kind`` is asked only for ``auto``: knowing whether there is a GPU may cost an import of torch.
    """
    if name not in PRESET_CHOICES:
        raise InputError(f"--preset must be one of {', '.join(PRESET_CHOICES)}, not {name!r}")
    if name != "auto":
        return name
    return "paper" if device_kind() in ("cuda", "mps") else "draft"


def describe(preset: str) -> str:
    """``paper (beats, 10-120 steps/s, 512x512, 32 latest cutouts)``: the preset's numbers, from the contract."""
    return describe_preset(preset, PRESETS, MOTION_PRESETS)

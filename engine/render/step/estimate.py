"""What a render will cost, measured before it starts: a few timed calibration steps, cached per device.

The step's cost is modelled as the VQGAN decoder's forward and backward
passes (in proportion to the pixels), CLIP's (in proportion to the
cutouts) and the rest of the step (cutouts, augments, Adam). Each is timed
once on the device with the official architectures and random weights
(timing does not depend on the values, so no model file is needed), and
kept in ``calibration.json`` in m2v's cache folder. The add-on applies the
same model (``engine.protocol.estimate_seconds``) when markers or settings change.
"""

from __future__ import annotations

import json
import math
import os
import time

from engine.files import (  # noqa: F401 - cache_dir: part of this module's interface
    cache_dir,
    read_cache_file,
    write_json_atomic,
)
from engine.models.architectures import OFFICIAL_CLIP, official_models
from engine.render.step.optimize import Optimizer
from engine.render.step.precision import step_precision
from engine.settings import RenderSettings
from engine.settings_table import row

CALIBRATION_VERSION = 2
#: The step is timed in the formats a render uses by default (``--precision``'s default).
DEFAULT_PRECISION = row("precision").default


def _timed(fn, device, repeats: int) -> float:
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()  # warm-up: allocator, kernel caches
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t) / repeats


def calibrate(device, vqgan=None, clip=None, size: int = 128, cutouts: int = 4, repeats: int = 2) -> dict:
    """Time the parts of a step on ``device``; returns the cost model (seconds).

    ``vqgan``/``clip`` default to the official architectures with random weights.
    """
    import torch

    if vqgan is None or clip is None:
        vqgan, clip = official_models(device)
    z = vqgan.random_latent(size, size, torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    cuts = torch.rand(cutouts, 3, clip.input_size, clip.input_size, device=device, requires_grad=True)
    prec = step_precision(DEFAULT_PRECISION, device)

    def decode():
        with prec.matmuls(), prec.decoder():
            vqgan(z).float().mean().backward()

    def embed():
        with prec.matmuls(), prec.clip():
            clip.embed_images(cuts).float().mean().backward()

    settings = RenderSettings(width=size, height=size, cutouts=cutouts, cutout_method="latest")
    opt = Optimizer(vqgan, clip, settings, device)
    opt.reset()
    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim, device=device), dim=-1)
    t_dec, t_clip = _timed(decode, device, repeats), _timed(embed, device, repeats)
    t_step = _timed(lambda: opt.step([(target, 1.0)], 0), device, repeats)
    return {
        "version": CALIBRATION_VERSION,
        "device": device.type,
        "decode_s_per_mpix": t_dec / (size * size / 1e6),
        "clip_s_per_cutout": t_clip / cutouts,
        "step_overhead_s": max(0.0, t_step - t_dec - t_clip),
        "image_s": 0.0,
    }


def device_label(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


#: What each calibration field may be (seconds): a cache entry outside these bounds is measured again.
_CAL_FIELDS = {"decode_s_per_mpix": 1e4, "clip_s_per_cutout": 1e3, "step_overhead_s": 1e3, "image_s": 1e3}


def valid_calibration(cal: object, device_type: str | None = None) -> bool:
    """Whether a cached calibration holds what :func:`calibrate` measures: finite, non-negative, bounded seconds.

    ``calibration.json`` lives in a cache folder anyone may edit: a NaN, a string, a negative or an absurd
    number there would make every estimate wrong (or raise), so such an entry is ignored and measured again.
    """
    if not isinstance(cal, dict) or cal.get("version") != CALIBRATION_VERSION:
        return False
    if device_type is not None and cal.get("device") != device_type:
        return False
    for name, hi in _CAL_FIELDS.items():
        v = cal.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= hi:
            return False
    return cal["decode_s_per_mpix"] + cal["clip_s_per_cutout"] + cal["step_overhead_s"] > 0


def cached_calibration(device, warn=None) -> dict:
    """The calibration of this device (and torch version), measured once and kept in the cache folder.

    A cache entry that fails its check is measured again; a cache folder that cannot be written (read-only,
    a file in its place, a full disk) only means no cache: ``warn`` is told once, and the estimate goes on.
    """
    import torch

    # The formats are in the key: a calibration timed before the decoder ran in bf16 would overstate its time.
    formats = "+".join(f"{k}={v}" for k, v in sorted(step_precision(DEFAULT_PRECISION, device).formats().items()))
    key = f"{device.type}|{device_label(device)}|torch {torch.__version__}|{OFFICIAL_CLIP}+f16_16384|{formats}"
    path = cache_dir() / "calibration.json"
    known = {}
    raw = read_cache_file(path)  # a bounded regular file, never a pipe, a device or a link
    if raw is not None:
        try:
            known = json.loads(raw)
        except (ValueError, RecursionError):
            known = {}
        if not isinstance(known, dict):
            known = {}
    cal = known.get(key)
    if not valid_calibration(cal, device.type):
        cal = {**calibrate(device), "label": device_label(device)}
        known = {k: v for k, v in known.items() if isinstance(k, str) and valid_calibration(v)}
        known[key] = cal
        try:
            write_json_atomic(known, path)
        except OSError as e:  # a full disk too (NoSpaceError is an OSError)
            if warn is not None:
                why = e.strerror or str(e)
                warn(
                    f"the cache folder {path.parent} cannot be written ({why}): no calibration cache, it is "
                    "measured again next time"
                )
    return cal

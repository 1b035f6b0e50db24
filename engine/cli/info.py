"""``engine info``: what the add-on's Check shows — versions, the device torch finds, the model files."""

from __future__ import annotations

import platform
from pathlib import Path

from engine import __version__
from engine.models import weights
from engine.models.factory import pick_device
from engine.protocol import INFO_KIND, INFO_VERSION


def engine_info(models_dir: Path) -> dict:
    """Versions, device and model-file status as one JSON-ready document (``kind: m2v-info``)."""
    import torch


    dev = pick_device("auto")
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(0)
        mem = torch.cuda.get_device_properties(0).total_memory / 2**30
        name = f"{name}, {mem:.0f} GB"
    elif dev.type == "mps":
        name = "Apple GPU"
    else:
        name = platform.processor() or platform.machine()
    return {
        "kind": INFO_KIND,
        "version": INFO_VERSION,
        "engine": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": dev.type,
        "device_name": name,
        "models_dir": str(models_dir),
        "models": weights.check(models_dir),
    }

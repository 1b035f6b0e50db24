"""Which kind of device a command will run on, asked without importing torch where the answer needs no torch.

``--preset auto`` and the cost line need to know whether there is a GPU, and
importing torch to learn it costs seconds (and gigabytes of libraries) in
commands that never run a model (``analyze``, ``plan``, ``render --layout``).
A GPU needs its driver: where no CUDA (or ROCm) driver library loads and the
machine is no Apple-silicon Mac, there is no GPU torch could use, and the
answer is ``cpu`` at once. Only where a driver is there does torch decide
(a CPU-only build of torch, an old driver): the answer is always torch's.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys

from engine.models.factory import pick_device

#: Driver libraries whose presence means torch may find a GPU (NVIDIA's CUDA driver; AMD's HIP for ROCm builds).
DRIVER_LIBRARIES = {
    "linux": ("libcuda.so.1", "libcuda.so", "libamdhip64.so"),
    "win32": ("nvcuda.dll", "amdhip64.dll"),
}


@functools.lru_cache(maxsize=1)
def gpu_driver() -> bool:
    """Whether a GPU driver library loads here (CUDA or ROCm), or this is an Apple-silicon Mac (MPS)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    for name in DRIVER_LIBRARIES.get(sys.platform, ()):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def device_kind(name: str = "auto") -> str:
    """``cuda``, ``mps`` or ``cpu``: what ``--device name`` runs on (``auto``: a GPU where torch finds one).

    Torch is imported only where its answer is needed: a named GPU, or ``auto`` with a GPU driver present.
    """
    if name == "cpu":
        return "cpu"
    if name == "auto" and not gpu_driver():
        return "cpu"
    return pick_device(name).type

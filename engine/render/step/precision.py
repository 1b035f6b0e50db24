"""``--precision``: the number formats a step runs in, per device.

``mixed`` (the default) is the precision the authors' step really had on a GPU: OpenAI's ``clip.load`` leaves
CLIP's weights in fp16 on a CUDA device, and torch 1.9, which they pinned, ran float32 matmuls and cuDNN
convolutions in TF32 on Ampere and later. So on CUDA, CLIP runs under fp16 autocast and the decoder in TF32.
On a CPU with bf16 units (AVX512-BF16 or AMX) CLIP and the decoder run under bf16 autocast (the decoder
where that is faster, see :data:`CPU_DECODER_BF16`). Elsewhere (MPS, CPUs without bf16 units)
``mixed`` is float32. ``fp32`` is float32 everywhere, TF32 off.

The loss, the cutouts, Adam and the latent are float32 in every case.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from engine.settings_table import PRECISIONS

#: Whether ``mixed`` also runs the VQGAN decoder under bf16 autocast on a CPU with bf16 units. Measured (f16/16384
#: decoder forward and backward at 256x256, 2-core AVX512-BF16 CPU, otherwise idle, interleaved, medians of 3):
#: 0.93 s bf16 against 1.76 s float32 (an earlier run on a loaded machine saw no difference: 26.8 s against
#: 27.6 s). Its pictures differ from float32's by 0.9 levels of 255 on average (random weights).
CPU_DECODER_BF16 = True


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (AVX512-BF16 or AMX-BF16); asked once per process."""
    import torch

    if "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper():
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


@dataclass(frozen=True)
class StepPrecision:
    """How one step runs: autocast dtypes (``None``: float32) for CLIP and the decoder, and TF32."""

    name: str
    device_type: str
    clip_dtype: object = None
    decoder_dtype: object = None
    tf32: bool = False

    def clip(self):
        """Context for CLIP's forward pass."""
        return self._autocast(self.clip_dtype)

    def decoder(self):
        """Context for the decoder's forward pass."""
        return self._autocast(self.decoder_dtype)

    def _autocast(self, dtype):
        import torch

        if dtype is None:
            return contextlib.nullcontext()
        # cache_enabled=False: autocast's weight-cast cache must not outlive a CUDA graph capture.
        return torch.autocast(self.device_type, dtype=dtype, cache_enabled=False)

    @contextlib.contextmanager
    def matmuls(self):
        """TF32 for float32 matmuls and convolutions while the step (forward and backward) runs, then as before."""
        import torch

        if not self.tf32:
            yield
            return
        m, c = torch.backends.cuda.matmul, torch.backends.cudnn
        old = m.allow_tf32, c.allow_tf32
        m.allow_tf32 = c.allow_tf32 = True
        try:
            yield
        finally:
            m.allow_tf32, c.allow_tf32 = old

    def formats(self) -> dict:
        """The formats it runs in, by name (the cache keys hold them; the benchmarks print them)."""
        name = lambda d: "fp32" if d is None else str(d).removeprefix("torch.")  # noqa: E731
        return {
            "precision": self.name,
            "clip": name(self.clip_dtype),
            "decoder": name(self.decoder_dtype),
            "tf32": self.tf32,
        }


def step_precision(precision: str, device) -> StepPrecision:
    """The formats ``precision`` (one of :data:`PRECISIONS`) means on ``device``."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    kind = torch.device(device).type
    if precision == "fp32":
        return StepPrecision(precision, kind)
    if kind == "cuda":
        return StepPrecision(precision, kind, clip_dtype=torch.float16, tf32=True)
    if kind == "cpu" and cpu_has_bf16():
        return StepPrecision(
            precision, kind, clip_dtype=torch.bfloat16, decoder_dtype=torch.bfloat16 if CPU_DECODER_BF16 else None
        )
    return StepPrecision(precision, kind)

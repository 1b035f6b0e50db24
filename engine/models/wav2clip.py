"""Wav2CLIP's audio encoder (Wu et al. 2022) in plain torch, no torchaudio.

Same computation as the ``wav2clip`` 0.1.0 package's frozen, transformed
extractor: a power spectrogram (n_fft 512, hop 353, periodic Hann, centred,
reflect padding), ``log(spec + 1e-7)`` standardised by the mean and
(unbiased) std of the **whole batch tensor**, a ResNet-18 on the ``(B, 1,
257, frames)`` image, global average pooling, then a two-layer MLP into CLIP
ViT-B/32's image-embedding space. Module and buffer names follow the
original so its ``Wav2CLIP.pt`` loads key for key.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.errors import InputError
from engine.models.checkpoints import check_keys, load_state_dict_file
from engine.protocol import AUDIO_RATE

SAMPLE_RATE = AUDIO_RATE  # Wav2CLIP's input rate
N_FFT = 512
HOP = 353


class Spectrogram(nn.Module):
    """Power spectrogram matching ``torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353)``."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        spec = torch.stft(
            x.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.abs().pow(2.0)
        return power.reshape(shape[:-1] + power.shape[-2:])


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class AudioEncoder(nn.Module):
    """ResNet-18 over the log spectrogram; ``width`` 64 is the original (smaller widths for tests)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.spectrogram = Spectrogram()
        self.conv1 = nn.Conv2d(1, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        inplanes = width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes))
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_dim = inplanes

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.spectrogram(wav.unsqueeze(1))
        x = torch.log(x + 1e-7)
        # Batch-wide standardisation, as the original: embeddings depend on what else is in the batch.
        x = (x - torch.mean(x)) / (torch.std(x) + 1e-9)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).reshape(x.size(0), -1)


class AudioTransform(nn.Module):
    def __init__(self, dim_in: int = 512, dim_out: int = 512):
        super().__init__()
        self.sequential = nn.Sequential(
            nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Dropout(0.1), nn.Linear(dim_in, dim_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class Wav2CLIP(nn.Module):
    """Audio (16 kHz mono, ``(B, T)``) to CLIP image-embedding space."""

    def __init__(self, width: int = 64, embed_dim: int = 512):
        super().__init__()
        self.audio_encoder = AudioEncoder(width)
        self.audio_transform = AudioTransform(self.audio_encoder.out_dim, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.audio_transform(self.audio_encoder(wav))


def load_wav2clip(path: str | Path) -> Wav2CLIP:
    """Load ``Wav2CLIP.pt`` (a flat state dict) with strict key and shape checks.

    Only ``audio_encoder.*`` and ``audio_transform.*`` are read; other prefixes are ignored.
    The encoder width and embedding size are read from the file, so small test models of
    the same architecture load through the same code.
    """
    sd = load_state_dict_file(path)
    part = {k: v for k, v in sd.items() if k.startswith(("audio_encoder.", "audio_transform."))}
    try:
        width = int(part["audio_encoder.conv1.weight"].shape[0])
        embed = int(part["audio_transform.sequential.3.weight"].shape[0])
    except KeyError as e:
        raise InputError(f"not a Wav2CLIP checkpoint (missing {e.args[0]})", path) from None
    model = Wav2CLIP(width, embed)
    check_keys(model, part, path, "Wav2CLIP")
    return model.eval().requires_grad_(False)


def embed_audio(model: Wav2CLIP, wav16k: torch.Tensor) -> torch.Tensor:
    """Embed each clip of a ``(B, T)`` batch at 16 kHz; ``(B, embed_dim)``.

    Clips shorter than one FFT frame are padded with silence so the reflect padding is defined.
    """
    if wav16k.shape[-1] < N_FFT:
        wav16k = torch.nn.functional.pad(wav16k, (0, N_FFT - wav16k.shape[-1]))
    # The song lives on the CPU; the model may have been moved to the GPU with the others.
    wav16k = wav16k.to(next(model.parameters()).device)
    with torch.no_grad():
        return model(wav16k)

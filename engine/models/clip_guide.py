"""CLIP for guidance: open_clip's model factory, weights loaded by m2v (safetensors, strict keys).

The official guidance model is ViT-B/32 with OpenAI's weights, the space
Wav2CLIP was distilled into. OpenAI's weights were trained with QuickGELU;
loading them into plain ``ViT-B-32`` (GELU) runs without error and gives
subtly wrong features, so m2v always builds ``ViT-B-32-quickgelu`` for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from engine.errors import InputError
from engine.models.architectures import OFFICIAL_CLIP
from engine.models.checkpoints import check_keys, load_state_dict_file

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_QUICKGELU_TRAPS = {
    "ViT-B-32": "ViT-B-32-quickgelu",
    "ViT-B-16": "ViT-B-16-quickgelu",
    "ViT-L-14": "ViT-L-14-quickgelu",
}


def resolve_model_name(name: str, weights: str | Path | None, warn: Callable[[str], None] | None = None) -> str:
    """Model name to build: a JSON config file is registered with open_clip; OpenAI weights get QuickGELU.

    ``warn`` receives the notice when a name is switched to its QuickGELU twin.
    """
    import open_clip

    p = Path(name)
    if p.suffix == ".json":
        if not p.is_file():
            raise InputError("CLIP model config not found", p)
        open_clip.add_model_config(p)
        name = p.stem
    if name in _QUICKGELU_TRAPS and weights is not None and "openai" in Path(weights).name.lower():
        fixed = _QUICKGELU_TRAPS[name]
        if warn is not None:
            warn(f"OpenAI CLIP weights need QuickGELU: using {fixed} instead of {name}")
        name = fixed
    if name not in open_clip.list_models():
        raise InputError(f"unknown CLIP model {name!r} (open_clip knows e.g. {OFFICIAL_CLIP}; or pass a config .json)")
    return name


class ClipGuide(nn.Module):
    """A frozen CLIP model with its tokenizer and image normalisation."""

    def __init__(self, model: nn.Module, tokenizer, name: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else -1

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Unit-length text embeddings, ``(len(texts), d)``."""
        device = self.mean.device
        with torch.no_grad():
            e = self.model.encode_text(self.tokenizer(texts).to(device)).float()
        return nn.functional.normalize(e, dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings (not normalised) of images in ``[0, 1]`` at the model's input size; keeps gradients."""
        return self.model.encode_image((images - self.mean) / self.std).float()


def load_clip(name: str, weights: str | Path, warn: Callable[[str], None] | None = None) -> ClipGuide:
    """Build an open_clip model by name (or config file) and load weights from a file.

    Parameters
    ----------
    name : str
        open_clip model name, or a path to an open_clip model config ``.json``.
    weights : str or Path
        ``.safetensors`` (preferred) or a torch checkpoint of the model's state dict.
    warn : callable, optional
        Receives notices (a model name switched to QuickGELU).
    """
    import open_clip

    name = resolve_model_name(name, weights, warn)
    # open_clip logs that no pretrained weights were loaded: m2v loads them itself, just below.
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        log.setLevel(level)
    sd = load_state_dict_file(weights)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    check_keys(model, sd, weights, f"CLIP {name}")
    model = model.eval().requires_grad_(False)
    return ClipGuide(model, open_clip.get_tokenizer(name), name)

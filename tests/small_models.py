"""Small models from the real architectures, random weights, saved in the official file shapes.

- VQGAN: a taming config (model.yaml) and a PyTorch-Lightning-1.0.8-shaped checkpoint whose
  ``callbacks`` key is the ``ModelCheckpoint`` class, written by a helper process that has a
  stand-in ``pytorch_lightning`` module (Lightning itself is never installed);
- CLIP: an open_clip model config (.json) and its weights as safetensors;
- Wav2CLIP: a flat state dict (``audio_encoder.*``, ``audio_transform.*`` and one foreign key).

The product loads them through the same code as the official files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

VQGAN_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 32
    n_embed: 128
    ddconfig:
      double_z: false
      z_channels: 32
      resolution: 32
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: [8]
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {disc_conditional: false, disc_in_channels: 3, disc_start: 250001, disc_weight: 0.8, codebook_weight: 1.0}
"""

CLIP_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

STUB_LIGHTNING = {
    "pytorch_lightning/__init__.py": "",
    "pytorch_lightning/callbacks/__init__.py": "",
    "pytorch_lightning/callbacks/model_checkpoint.py": "class ModelCheckpoint:\n    pass\n",
    "evil/__init__.py": (
        "class Payload:\n    pass\n\n\n"
        "class Runner:\n    def __reduce__(self):\n        return (print, ('this must never run',))\n"
    ),
}

WRITER = textwrap.dedent(
    """
    import sys, torch, yaml
    from torch import nn
    from taming.modules.diffusionmodules.model import Encoder, Decoder
    from taming.modules.vqvae.quantize import VectorQuantizer2
    from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint

    cfg_path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    p = yaml.safe_load(open(cfg_path))["model"]["params"]
    torch.manual_seed(1234)

    class VQModelShape(nn.Module):
        def __init__(self):
            super().__init__()
            dd = p["ddconfig"]
            self.encoder, self.decoder = Encoder(**dd), Decoder(**dd)
            self.quantize = VectorQuantizer2(p["n_embed"], p["embed_dim"], beta=0.25)
            self.quant_conv = nn.Conv2d(dd["z_channels"], p["embed_dim"], 1)
            self.post_quant_conv = nn.Conv2d(p["embed_dim"], dd["z_channels"], 1)

    sd = VQModelShape().state_dict()
    # Spread the codebook so random latents decode to varied images.
    sd["quantize.embedding.weight"] = torch.randn_like(sd["quantize.embedding.weight"])
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    if mode == "wrong-shape":
        sd["decoder.conv_in.weight"] = torch.randn(5, 5, 3, 3)
    if mode == "missing-key":
        del sd["decoder.conv_out.bias"]
    if mode == "transformer":
        sd = {"first_stage_model." + k: v for k, v in sd.items()}
        sd["transformer.tok_emb.weight"] = torch.randn(4, 4)
    ckpt = {
        "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8",
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-06, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "state_dict": sd,
    }
    if mode == "evil":
        from evil import Payload
        ckpt["hyper_parameters"] = {"x": Payload()}
    if mode == "runner":
        from evil import Runner
        ckpt["hyper_parameters"] = {"x": Runner()}
    torch.save(ckpt, out)
    """
)


def write_stub_lightning(folder: Path) -> Path:
    for rel, text in STUB_LIGHTNING.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return folder


def write_vqgan(folder: Path, mode: str = "ok") -> tuple[Path, Path]:
    """Write ``model.yaml`` and a Lightning-shaped ``last.ckpt`` (``mode`` tampers with it)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "model.yaml"
    text = VQGAN_YAML
    if mode == "transformer":
        inner = textwrap.indent(VQGAN_YAML.split("model:\n", 1)[1], "    ")
        text = (
            "model:\n  target: taming.models.cond_transformer.Net2NetTransformer\n  params:\n"
            "    first_stage_config:\n" + inner
        )
    cfg.write_text(text)
    ckpt = folder / "last.ckpt"
    stub = write_stub_lightning(folder / "_stub")
    env = dict(os.environ, PYTHONPATH=str(stub))
    # The writer runs with the stand-in Lightning, the reader (the product) without it.
    subprocess.run(
        [
            sys.executable,
            "-c",
            WRITER,
            str(folder / "model.yaml") if mode != "transformer" else _flat_cfg(folder),
            str(ckpt),
            mode,
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    return cfg, ckpt


def _flat_cfg(folder: Path) -> str:
    p = folder / "_flat.yaml"
    p.write_text(VQGAN_YAML)
    return str(p)


def write_clip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a small open_clip config (``m2v-tiny-clip.json``) and its safetensors weights."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "m2v-tiny-clip.json"
    cfg.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model("m2v-tiny-clip", pretrained=None)
    weights = folder / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return cfg, weights


def write_wav2clip(folder: Path, seed: int = 0) -> Path:
    """Write a small Wav2CLIP checkpoint as the original: a flat state dict of tensors."""
    import torch

    from engine.wav2clip import Wav2CLIP

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Wav2CLIP(width=8, embed_dim=CLIP_CONFIG["embed_dim"])
    sd = {k: v for k, v in model.state_dict().items()}
    sd["pre_training.projection.weight"] = torch.randn(4, 4)  # other prefixes exist and are ignored
    path = folder / "Wav2CLIP.pt"
    torch.save(sd, path)
    return path


def model_args(folder: Path) -> list[str]:
    """Command-line flags that point ``engine render`` at the small models in ``folder``."""
    return [
        "--vqgan-config",
        str(folder / "vqgan" / "model.yaml"),
        "--vqgan-ckpt",
        str(folder / "vqgan" / "last.ckpt"),
        "--clip-model",
        str(folder / "clip" / "m2v-tiny-clip.json"),
        "--clip-weights",
        str(folder / "clip" / "tiny_clip.safetensors"),
        "--audio-encoder",
        str(folder / "Wav2CLIP.pt"),
    ]


def load_small(folder: Path, device: str = "cpu"):
    """The small models in ``folder``, loaded through the product's factory."""
    from engine.models import load_models, resolve_model_paths

    paths = resolve_model_paths(
        folder,
        folder / "vqgan" / "model.yaml",
        folder / "vqgan" / "last.ckpt",
        str(folder / "clip" / "m2v-tiny-clip.json"),
        folder / "clip" / "tiny_clip.safetensors",
        folder / "Wav2CLIP.pt",
    )
    return load_models(paths, device)


def write_all(folder: Path) -> Path:
    write_vqgan(folder / "vqgan")
    write_clip(folder / "clip")
    write_wav2clip(folder)
    return folder

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
    if mode.startswith("state="):  # weights trained by the test helper, wrapped as Lightning wrote them
        sd.update(torch.load(mode[len("state="):], weights_only=True))
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    if mode == "wrong-shape":
        sd["decoder.conv_in.weight"] = torch.randn(5, 5, 3, 3)
    if mode == "missing-key":
        del sd["decoder.conv_out.bias"]
    if mode == "missing-encoder-key":
        del sd["encoder.conv_out.bias"]
    if mode == "wrong-encoder-shape":
        sd["quant_conv.weight"] = torch.randn(5, 5, 1, 1)
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


def write_vqgan(folder: Path, mode: str = "ok", config: str = VQGAN_YAML) -> tuple[Path, Path]:
    """Write ``model.yaml`` and a Lightning-shaped ``last.ckpt`` (``mode`` tampers with it)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "model.yaml"
    text = config
    if mode == "transformer":
        inner = textwrap.indent(config.split("model:\n", 1)[1], "    ")
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
            str(folder / "model.yaml") if mode != "transformer" else _flat_cfg(folder, config),
            str(ckpt),
            mode,
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    return cfg, ckpt


def synthetic_pictures(n: int, size: int, seed: int):
    """``(n, 3, size, size)`` pictures in [0, 1]: a coloured block on a two-colour gradient, like the test footage."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    a, b = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    horizontal = torch.rand(n, 1, 1, 1, generator=g) < 0.5
    t = torch.where(horizontal, ramp[None, None, None, :], ramp[None, None, :, None])
    out = a + (b - a) * t
    for j in range(n):
        w, h = (int(v) for v in torch.randint(size // 6, size // 2, (2,), generator=g))
        x, y = (int(v) for v in torch.randint(0, size - min(w, h), (2,), generator=g))
        out[j, :, y : y + h, x : x + w] = torch.rand(3, 1, 1, generator=g)
    return out.clamp(0, 1)


#: The round-trip VQGAN's config: as :data:`VQGAN_YAML` but with 64 channels at full resolution, so every
#: GroupNorm (32 groups) sees channel pairs, which :func:`roundtrip_vqgan_weights` relies on.
ROUNDTRIP_YAML = VQGAN_YAML.replace("ch_mult: [1, 2]", "ch_mult: [2, 2]")
#: Operating point of the normalised activations inside swish: nearly linear there (curvature 0.25%).
_SWISH_AT, _SWISH_GAIN = 6.0, 0.3


def _swish_line() -> tuple[float, float]:
    """Value and slope of swish at :data:`_SWISH_AT`."""
    import math

    sig = 1 / (1 + math.exp(-_SWISH_AT))
    return _SWISH_AT * sig, sig + _SWISH_AT * sig * (1 - sig)


def roundtrip_vqgan_weights(seed: int = 0) -> dict:
    """Weights, set by hand, for which the small VQGAN's encoder and decoder invert each other (no training).

    A random VQGAN maps every picture to noise, so footage and motion tests need one that keeps what is
    where; training one takes many minutes on a CPU. Here every residual branch and attention output is
    zero (the blocks pass their input on), down- and upsampling average and copy, and each colour channel
    travels as a pair ``(u, -u)`` (``u = 2 x - 1``) through the GroupNorms, which then divide it by its
    root mean square over the picture and nothing else; swish is used where it is nearly linear. So
    ``decode(encode(x))`` is the picture at half resolution, its contrast normalised per channel, its colours
    snapped to a codebook of k-means centres of :func:`synthetic_pictures`' normalised colours.
    """
    import torch
    import yaml
    from taming.modules.diffusionmodules.model import Decoder, Encoder
    from torch import nn

    p = yaml.safe_load(ROUNDTRIP_YAML)["model"]["params"]
    dd = p["ddconfig"]
    torch.manual_seed(seed)
    enc, dec = Encoder(**dd), Decoder(**dd)
    qc, pqc = nn.Conv2d(dd["z_channels"], p["embed_dim"], 1), nn.Conv2d(p["embed_dim"], dd["z_channels"], 1)
    s0, s1 = _swish_line()
    with torch.no_grad():
        for m in [*enc.modules(), *dec.modules()]:
            name = type(m).__name__
            if name == "ResnetBlock":
                m.conv2.weight.zero_(), m.conv2.bias.zero_()
                if m.in_channels != m.out_channels:
                    _eye(m.nin_shortcut, 1)
            elif name == "AttnBlock":
                m.proj_out.weight.zero_(), m.proj_out.bias.zero_()
            elif name == "Downsample":  # stride-2 conv on a (0, 1, 0, 1)-padded input: average each 2x2 block
                m.conv.weight.zero_(), m.conv.bias.zero_()
                for c in range(m.conv.out_channels):
                    m.conv.weight[c, c, :2, :2] = 0.25
            elif name == "Upsample":  # nearest, then the identity
                _eye(m.conv, 3)
            elif isinstance(m, nn.GroupNorm):
                m.weight.fill_(_SWISH_GAIN), m.bias.fill_(_SWISH_AT)
        for conv_in in (enc.conv_in, dec.conv_in):
            conv_in.weight.zero_(), conv_in.bias.zero_()
            k = conv_in.kernel_size[0] // 2
            for c in range(3):
                conv_in.weight[2 * c, c, k, k], conv_in.weight[2 * c + 1, c, k, k] = 1.0, -1.0
        for conv_out in (enc.conv_out, dec.conv_out):  # undo swish's line: back to the normalised colour
            conv_out.weight.zero_()
            k = conv_out.kernel_size[0] // 2
            for c in range(3):
                conv_out.weight[c, 2 * c, k, k] = 1 / (_SWISH_GAIN * s1)
            conv_out.bias.zero_()
            conv_out.bias[:3] = -s0 / (_SWISH_GAIN * s1)
        # The decoder's output is u, not u / rms(u): give it a typical contrast back.
        dec.conv_out.weight.mul_(0.5), dec.conv_out.bias.mul_(0.5)
        _eye(qc, 1), _eye(pqc, 1)
        x = synthetic_pictures(64, 32, seed + 1) * 2 - 1
        n = (x / x.pow(2).mean((2, 3), keepdim=True).sqrt()).movedim(1, 3).reshape(-1, 3)
        book = torch.zeros(p["n_embed"], p["embed_dim"])
        book[:, :3] = _kmeans(n, p["n_embed"], seed)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    sd.update({f"quant_conv.{k}": v for k, v in qc.state_dict().items()})
    sd.update({f"post_quant_conv.{k}": v for k, v in pqc.state_dict().items()})
    sd["quantize.embedding.weight"] = book
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def _eye(conv, size: int) -> None:
    """Make ``conv`` pass its first channels through unchanged (the rest zero)."""
    conv.weight.zero_(), conv.bias.zero_()
    k = size // 2
    for c in range(min(conv.in_channels, conv.out_channels)):
        conv.weight[c, c, k, k] = 1.0


def _kmeans(points, k: int, seed: int, iterations: int = 20):
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = points[torch.randperm(len(points), generator=g)[:k]].clone()
    for _ in range(iterations):
        idx = torch.cdist(points, centres).argmin(1)
        for c in range(k):
            members = points[idx == c]
            if len(members):
                centres[c] = members.mean(0)
    return centres


def write_roundtrip_vqgan(folder: Path) -> tuple[Path, Path]:
    """The small VQGAN of :func:`roundtrip_vqgan_weights`, saved in the official file shape."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "_roundtrip.pt"
    torch.save(roundtrip_vqgan_weights(), weights)
    return write_vqgan(folder, mode=f"state={weights}", config=ROUNDTRIP_YAML)


def _flat_cfg(folder: Path, config: str = VQGAN_YAML) -> str:
    p = folder / "_flat.yaml"
    p.write_text(config)
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

    from engine.models.wav2clip import Wav2CLIP

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Wav2CLIP(width=8, embed_dim=CLIP_CONFIG["embed_dim"])
    sd = {k: v for k, v in model.state_dict().items()}
    sd["pre_training.projection.weight"] = torch.randn(4, 4)  # other prefixes exist and are ignored
    path = folder / "Wav2CLIP.pt"
    torch.save(sd, path)
    return path


def render_cmd(plan_path: Path, out: Path, models: Path, *extra: str, cutouts: int = 8, seed: int = 1) -> list[str]:
    """``engine render`` at the tests' common settings (32x32, crops, lr 0.3) with the small models."""
    common = ["--size", "32", "32", "--cutouts", str(cutouts), "--seed", str(seed), "--lr", "0.3"]
    return [
        *(sys.executable, "-m", "engine", "render", str(plan_path), "--out", str(out)),
        *common,
        *("--cutout-method", "crops"),
        *extra,
        *model_args(models),
    ]


def small_settings(**kw):
    """:class:`engine.settings.RenderSettings` at the tests' common settings; ``kw`` overrides them."""
    from engine.settings import RenderSettings

    return RenderSettings(**{"width": 32, "height": 32, "cutouts": 8, "seed": 1, "cutout_method": "crops", **kw})


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
    from engine.models.factory import load_models, resolve_model_paths

    paths = resolve_model_paths(
        folder,
        folder / "vqgan" / "model.yaml",
        folder / "vqgan" / "last.ckpt",
        str(folder / "clip" / "m2v-tiny-clip.json"),
        folder / "clip" / "tiny_clip.safetensors",
        folder / "Wav2CLIP.pt",
    )
    return load_models(paths, device)


def write_all(folder: Path, roundtrip: bool = False) -> Path:
    """Every small model in ``folder``; ``roundtrip`` takes the VQGAN whose encoder inverts its decoder."""
    if roundtrip:
        write_roundtrip_vqgan(folder / "vqgan")
    else:
        write_vqgan(folder / "vqgan")
    write_clip(folder / "clip")
    write_wav2clip(folder)
    return folder

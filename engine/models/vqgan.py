"""VQGAN decoders built from taming-transformers' modules, without its Lightning classes.

Supported configs (taming's ``model.yaml``):

- ``taming.models.vqgan.VQModel`` (imagenet f16 1024/16384, wikiart): codebook ``quantize.embedding.weight``;
- ``taming.models.vqgan.GumbelVQ`` (gumbel f8 8192): codebook ``quantize.embed.weight``, used as a plain
  nearest-neighbour codebook as the VQGAN-CLIP scripts do;
- transformer configs (``cond_transformer.Net2NetTransformer``: sflckr, coco, faceshq) whose autoencoder
  sits under ``first_stage_model.*``.

The generation path (codebook, ``post_quant_conv``, ``decoder``) is what every render loads. The
encoder (``encoder``, ``quant_conv``, and for GumbelVQ ``quantize.proj``) is built only when a render
needs to turn pictures into latents (footage styling, motion), from the same checkpoint with the same
safety (:func:`load_encoder`); a render without them never pays for it. The training loss (LPIPS,
discriminator) is never constructed.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import InputError
from engine.files import MAX_TEXT_BYTES, read_regular
from engine.models.checkpoints import check_keys, load_torch_file

DDCONFIG_KEYS = (
    "ch",
    "out_ch",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "in_channels",
    "resolution",
    "z_channels",
)


@dataclass(frozen=True)
class VQGANConfig:
    """What m2v needs from a taming config."""

    kind: str  # "vq" or "gumbel"
    ddconfig: dict
    n_embed: int
    embed_dim: int
    prefix: str  # "" or "first_stage_model."

    @property
    def factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)


def parse_config(data: dict, path: str | Path = "<config>") -> VQGANConfig:
    """Read a taming config dictionary (``model: {target, params}``)."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or "target" not in model:
        raise InputError("not a taming-transformers model config (no model.target)", path)
    target, params = str(model["target"]), model.get("params") or {}
    prefix = ""
    if target.endswith("Net2NetTransformer"):
        first = params.get("first_stage_config") or {}
        target, params, prefix = str(first.get("target", "")), first.get("params") or {}, "first_stage_model."
    if target.endswith(".GumbelVQ"):
        kind = "gumbel"
    elif target.endswith(".VQModel"):
        kind = "vq"
    else:
        raise InputError(
            f"unsupported VQGAN type {target!r}: m2v supports taming's VQModel, GumbelVQ and "
            "transformer configs built on them",
            path,
        )
    dd = params.get("ddconfig")
    if not isinstance(dd, dict) or any(k not in dd for k in DDCONFIG_KEYS):
        raise InputError("the config's ddconfig is missing or incomplete", path)
    if dd.get("double_z"):
        raise InputError("double_z autoencoders (KL models) are not VQGANs", path)
    try:
        n_embed, embed_dim = int(params["n_embed"]), int(params["embed_dim"])
    except (KeyError, TypeError, ValueError):
        raise InputError("the config lacks n_embed or embed_dim", path) from None
    keep = {k: dd[k] for k in DDCONFIG_KEYS}
    keep.update(double_z=False, dropout=0.0, ch_mult=list(dd["ch_mult"]), attn_resolutions=list(dd["attn_resolutions"]))
    return VQGANConfig(kind=kind, ddconfig=keep, n_embed=n_embed, embed_dim=embed_dim, prefix=prefix)


def load_config(path: str | Path) -> VQGANConfig:
    """Parse a ``model.yaml``; an HTML page (a failed download) gets its own message."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("VQGAN config not found", path)
    text = read_regular(path, "VQGAN config", MAX_TEXT_BYTES).decode("utf-8", errors="replace")
    if text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        raise InputError("is an HTML page, not a model config: the download probably failed", path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML ({str(e).splitlines()[0]})", path) from None
    return parse_config(data, path)


class _ClampWithGrad(torch.autograd.Function):
    """Clamp whose gradient still pushes values that are out of range back in (VQGAN-CLIP)."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0), None, None


class _ReplaceGrad(torch.autograd.Function):
    """Forward ``x_forward``, backward into ``x_backward`` (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad):
        return None, grad.sum_to_size(ctx.shape)


def clamp_with_grad(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return _ClampWithGrad.apply(x, lo, hi)


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codebook vector for each row of ``x`` (``(..., e)``), straight-through gradient."""
    d = x.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * x @ codebook.T
    q = codebook[d.argmin(-1)]
    return _ReplaceGrad.apply(q, x)


class VQGAN(nn.Module):
    """The generation half of a taming VQGAN: latent ``z`` -> image in ``[0, 1]``."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder

        self.cfg = cfg
        # taming prints the latent shape on construction: keep stdout clean for JSON progress.
        with contextlib.redirect_stdout(io.StringIO()):
            self.decoder = Decoder(**cfg.ddconfig)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.ddconfig["z_channels"], 1)
        self.register_buffer("codebook", torch.zeros(cfg.n_embed, cfg.embed_dim))
        # Not submodules: the decoder's state dict (and its strict key check) stays exactly the checkpoint's
        # generation half, and a render that never encodes never builds or moves the encoder.
        self.__dict__["_encoder"] = None
        self.__dict__["source"] = None  # (config path, checkpoint path) where loaded from a file

    @property
    def factor(self) -> int:
        return self.cfg.factor

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int, int]:
        f = self.factor
        return (1, self.cfg.embed_dim, height // f, width // f)

    def random_latent(self, width: int, height: int, generator: torch.Generator) -> torch.Tensor:
        """A latent made of random codebook entries (VQGAN-CLIP's start)."""
        _, e, h, w = self.latent_shape(width, height)
        idx = torch.randint(self.cfg.n_embed, (h * w,), generator=generator)
        return self.codebook[idx].reshape(1, h, w, e).permute(0, 3, 1, 2).contiguous()

    def z_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codebook.min(0).values[None, :, None, None], self.codebook.max(0).values[None, :, None, None]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z_q = vector_quantize(z.movedim(1, 3), self.codebook).movedim(3, 1)
        x = self.decoder(self.post_quant_conv(z_q))
        return clamp_with_grad(x.add(1).div(2), 0, 1)

    # ------------------------------------------------------------ the encoder (pictures -> latents)

    @property
    def has_encoder(self) -> bool:
        return self._encoder is not None

    def attach_encoder(self, encoder: VQGANEncoder) -> None:
        """Use ``encoder`` for :meth:`encode` (moved to the codebook's device)."""
        if encoder.cfg != self.cfg:
            raise ValueError("the encoder was built for another VQGAN config")
        self.__dict__["_encoder"] = encoder.to(self.codebook.device).eval().requires_grad_(False)

    def require_encoder(self) -> VQGANEncoder:
        """The encoder, loaded from this model's own checkpoint on first use.

        Raises
        ------
        InputError
            When the model was not loaded from a file, or its checkpoint has no (or a mismatched) encoder.
        """
        if self._encoder is None:
            if self.source is None:
                raise InputError("this VQGAN was not loaded from a checkpoint, so it has no encoder")
            self.attach_encoder(load_encoder(*self.source))
        return self._encoder

    def _apply(self, fn, *args, **kwargs):
        # ``.to(device)`` and friends: keep an attached encoder beside the decoder.
        out = super()._apply(fn, *args, **kwargs)
        if self._encoder is not None:
            self._encoder._apply(fn, *args, **kwargs)
        return out

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image(s) in ``[0, 1]`` (``(B, 3, H, W)``, H and W multiples of :attr:`factor`) to latents of codebook vectors.

        VQGAN-CLIP's ``model.encode(x * 2 - 1)``: encoder, ``quant_conv``, nearest codebook vector (GumbelVQ:
        the most likely code, where taming would draw one at random).
        """
        enc = self.require_encoder()
        return enc(image.to(self.codebook.dtype), self.codebook)


class VQGANEncoder(nn.Module):
    """The analysis half of a taming VQGAN: image -> pre-quantisation latent, then codebook vectors."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        from taming.modules.diffusionmodules.model import Encoder

        self.cfg = cfg
        with contextlib.redirect_stdout(io.StringIO()):
            self.encoder = Encoder(**cfg.ddconfig)
        self.quant_conv = nn.Conv2d(cfg.ddconfig["z_channels"], cfg.embed_dim, 1)
        if cfg.kind == "gumbel":
            # GumbelQuantize's logits over the codes, from the quant_conv output (taming's GumbelVQ.encode).
            self.proj = nn.Conv2d(cfg.ddconfig["z_channels"], cfg.n_embed, 1)

    def forward(self, image: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        f = self.cfg.factor
        if image.shape[-1] % f or image.shape[-2] % f:
            raise ValueError(f"image size {tuple(image.shape[-2:])} is not a multiple of {f}")
        h = self.quant_conv(self.encoder(image * 2 - 1))
        if self.cfg.kind == "gumbel":
            idx = self.proj(h).argmax(1)
            return codebook[idx].permute(0, 3, 1, 2).contiguous()
        flat = h.movedim(1, 3)
        d = flat.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.T
        return codebook[d.argmin(-1)].permute(0, 3, 1, 2).contiguous()


def load_vqgan(config_path: str | Path, ckpt_path: str | Path, with_encoder: bool = False) -> VQGAN:
    """Build a VQGAN from a taming config and load its checkpoint safely.

    Parameters
    ----------
    config_path : str or Path
        taming ``model.yaml``.
    ckpt_path : str or Path
        Lightning ``last.ckpt`` (or any file holding the same ``state_dict``).
    with_encoder : bool
        Also build the encoder now (else :meth:`VQGAN.require_encoder` loads it on first use).

    Raises
    ------
    InputError
        For unsupported configs, refused globals, missing or mismatched keys.
    """
    cfg = load_config(config_path)
    sd = _state_dict(ckpt_path)
    p = cfg.prefix
    book_key = p + ("quantize.embed.weight" if cfg.kind == "gumbel" else "quantize.embedding.weight")
    if book_key not in sd:
        raise InputError(f"missing codebook {book_key} (is this checkpoint for this config?)", ckpt_path)
    model = VQGAN(cfg)
    part = {
        k[len(p) :]: v for k, v in sd.items() if k.startswith(p + "decoder.") or k.startswith(p + "post_quant_conv.")
    }
    part["codebook"] = sd[book_key]
    check_keys(model, part, ckpt_path, "VQGAN decoder")
    model.__dict__["source"] = (Path(config_path), Path(ckpt_path))
    if with_encoder:
        model.attach_encoder(_encoder_from(cfg, sd, ckpt_path))
    return model.eval().requires_grad_(False)


def _state_dict(ckpt_path: str | Path) -> dict:
    obj = load_torch_file(ckpt_path)
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, dict):
        raise InputError("the checkpoint has no state_dict", ckpt_path)
    return sd


def _encoder_from(cfg: VQGANConfig, sd: dict, ckpt_path: str | Path) -> VQGANEncoder:
    p = cfg.prefix
    keep = ("encoder.", "quant_conv.") + (("quantize.proj.",) if cfg.kind == "gumbel" else ())
    part = {k[len(p) :]: v for k, v in sd.items() if k.startswith(tuple(p + x for x in keep))}
    part = {("proj." + k[len("quantize.proj.") :] if k.startswith("quantize.proj.") else k): v for k, v in part.items()}
    if not part:
        raise InputError(
            "the checkpoint has no encoder weights (encoder.*, quant_conv.*): footage and motion need them", ckpt_path
        )
    enc = VQGANEncoder(cfg)
    check_keys(enc, part, ckpt_path, "VQGAN encoder")
    return enc.eval().requires_grad_(False)


def load_encoder(config_path: str | Path, ckpt_path: str | Path) -> VQGANEncoder:
    """The VQGAN's encoder from the same config and checkpoint as :func:`load_vqgan` (weights only, strict keys).

    Raises
    ------
    InputError
        For unsupported configs, refused globals, a checkpoint without encoder weights or mismatched keys.
    """
    cfg = load_config(config_path)
    return _encoder_from(cfg, _state_dict(ckpt_path), ckpt_path)


def use_fused_activation(enabled: bool = True) -> None:
    """Swap taming's ``x * sigmoid(x)`` for the fused SiLU kernel (same function; measured 7% lower peak memory)."""
    import taming.modules.diffusionmodules.model as tm

    if not hasattr(tm, "_m2v_original_nonlinearity"):
        tm._m2v_original_nonlinearity = tm.nonlinearity
    tm.nonlinearity = torch.nn.functional.silu if enabled else tm._m2v_original_nonlinearity

"""The model factory: which files to load, on which device, loaded once for the CLI, tests and benchmarks.

Like open_clip's ``create_model``: :func:`resolve_model_paths` turns a models
folder and optional user files into :class:`ModelPaths` (fast, with errors
that say where a missing file goes), and :func:`load_models` builds the
VQGAN, CLIP and Wav2CLIP from them on a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.files import check_input_file
from engine.models.architectures import OFFICIAL_CLIP
from engine.models.weights import default_models_dir, require
from engine.settings_table import DEVICES  # noqa: F401 - the choices pick_device takes

OFFICIAL_FILES = {
    "vqgan_config": "vqgan_imagenet_f16_16384/model.yaml",
    "vqgan_ckpt": "vqgan_imagenet_f16_16384/last.ckpt",
    "clip_weights": "open_clip_vit_b32_openai.safetensors",
    "audio_encoder": "Wav2CLIP.pt",
}


@dataclass(frozen=True)
class ModelPaths:
    """The files a render loads."""

    vqgan_config: Path
    vqgan_ckpt: Path
    clip_weights: Path
    audio_encoder: Path
    clip_model: str = OFFICIAL_CLIP

    def ids(self) -> dict:
        """Cheap identities for cache keys: name, size and modification time of each file."""
        out: dict = {"clip_model": Path(self.clip_model).name}
        for k in ("vqgan_config", "vqgan_ckpt", "clip_weights", "audio_encoder"):
            p = Path(getattr(self, k))
            st = p.stat()
            out[k] = f"{p.name}:{st.st_size}:{st.st_mtime_ns}"
        return out


def _given(value: str | Path | None, what: str) -> Path | None:
    if value is None:
        return None
    return check_input_file(value, what)  # a regular file: a pipe or device would hang the loader


def resolve_model_paths(
    models_dir: str | Path | None = None,
    vqgan_config: str | Path | None = None,
    vqgan_ckpt: str | Path | None = None,
    clip_model: str | None = None,
    clip_weights: str | Path | None = None,
    audio_encoder: str | Path | None = None,
) -> ModelPaths:
    """The files to load: the user's where given, else the official files in ``models_dir``.

    Raises
    ------
    InputError
        For a missing file: where to put it and how to fetch it.
    """
    folder = Path(models_dir).expanduser() if models_dir else default_models_dir()
    if folder.exists() and not folder.is_dir():
        raise InputError("--models names a file, not a folder", folder)
    if (vqgan_config is None) != (vqgan_ckpt is None):
        raise InputError("--vqgan-config and --vqgan-ckpt go together")
    if clip_model and not clip_weights:
        raise InputError("--clip-model needs --clip-weights (the file to load)")
    return ModelPaths(
        vqgan_config=_given(vqgan_config, "VQGAN config") or require(folder, OFFICIAL_FILES["vqgan_config"]),
        vqgan_ckpt=_given(vqgan_ckpt, "VQGAN checkpoint") or require(folder, OFFICIAL_FILES["vqgan_ckpt"]),
        clip_model=clip_model or OFFICIAL_CLIP,
        clip_weights=_given(clip_weights, "CLIP weights") or require(folder, OFFICIAL_FILES["clip_weights"]),
        audio_encoder=_given(audio_encoder, "audio encoder") or require(folder, OFFICIAL_FILES["audio_encoder"]),
    )


def pick_device(name: str = "auto"):
    """A torch device: ``auto`` takes CUDA, else Apple's MPS, else the CPU."""
    import torch

    if name not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch finds no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for, but torch finds no Apple GPU")
    return torch.device(name)


@dataclass
class Models:
    """Loaded, frozen models and where they came from."""

    vqgan: object
    clip: object
    audio: object
    paths: ModelPaths
    warnings: list[str] = field(default_factory=list)

    def ids(self) -> dict:
        return self.paths.ids()


def load_models(paths: ModelPaths, device: object = "cpu", encoder: bool = False) -> Models:
    """Build and load the VQGAN, CLIP and Wav2CLIP models on ``device``.

    ``encoder`` also loads the VQGAN's encoder now (footage, motion); otherwise it is loaded on first use.

    Raises
    ------
    InputError
        For unreadable, unsafe or mismatched files, or an audio encoder whose
        embedding does not live in CLIP's space.
    """
    from engine.models.clip_guide import load_clip
    from engine.models.vqgan import load_vqgan, use_fused_activation
    from engine.models.wav2clip import load_wav2clip

    use_fused_activation(True)
    warnings: list[str] = []
    clip = load_clip(paths.clip_model, paths.clip_weights, warn=warnings.append)
    audio = load_wav2clip(paths.audio_encoder)
    if clip.embed_dim != audio.embed_dim:
        raise InputError(
            f"the audio encoder's embedding ({audio.embed_dim}) does not match CLIP's ({clip.embed_dim})",
            paths.audio_encoder,
        )
    vqgan = load_vqgan(paths.vqgan_config, paths.vqgan_ckpt, with_encoder=encoder)
    return Models(vqgan.to(device), clip.to(device), audio.to(device), paths, warnings)


def verify_structure(path: Path, role: str, models_dir: Path) -> None:
    """Check that a downloaded file loads as what it should be (before its hash is pinned)."""
    if role == "vqgan-config":
        from engine.models.vqgan import load_config

        load_config(path)
    elif role == "vqgan-ckpt":
        from engine.models.vqgan import load_vqgan

        load_vqgan(models_dir / OFFICIAL_FILES["vqgan_config"], path)
    elif role == "audio":
        from engine.models.wav2clip import load_wav2clip

        load_wav2clip(path)
    elif role == "clip":
        from engine.models.clip_guide import load_clip

        load_clip(OFFICIAL_CLIP, path)

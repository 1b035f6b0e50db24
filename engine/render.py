"""``engine render``: a plan to frames, guided by CLIP (paper 3.2 and 3.3).

One latent ``z`` is carried through the whole video. Every generated image is
one optimisation step (or ``steps_per_image``): decode ``z`` with the VQGAN,
take random cutouts, embed them with CLIP and pull them towards the segment's
target by spherical distance, Adam. The target is the lyric's CLIP text
embedding for lyric segments and the Wav2CLIP embedding of the segment's audio
otherwise; with time consistency (eq. 2) it is the normalised mean of the
previous and the current segment's vectors. Eq. 1 optionally adds an L1 pull
of ``z_t`` towards ``z_{t-1}``.

Frames, manifest and latent state are written after every image, atomically,
so a crash or cancel keeps every finished frame and the next run resumes.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine import __version__
from engine.errors import InputError
from engine.manifest import load_manifest, new_manifest, save_manifest, segment_key
from engine.plan import load_plan
from engine.progress import Progress

EXIT_CANCELLED = 3


@dataclass
class RenderSettings:
    """Everything a user controls that changes the frames (all recorded in the manifest)."""

    width: int = 256
    height: int = 256
    cutouts: int = 32
    cut_pow: float = 1.0
    steps_per_image: int = 1
    lr: float = 0.1
    seed: int = 0
    style: str | None = None
    style_weight: float = 0.5
    prompt_average: bool = True  # eq. 2
    l1_weight: float = 0.0  # eq. 1; 0 turns it off
    noise: float = 0.1
    layout: bool = False

    def validate(self) -> None:
        if self.width < 16 or self.height < 16:
            raise InputError(f"--size must be at least 16x16, got {self.width}x{self.height}")
        if self.cutouts < 1 or self.steps_per_image < 1:
            raise InputError("--cutouts and --steps-per-image must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.l1_weight < 0:
            raise InputError("--l1-weight must not be negative")

    def key_fields(self) -> dict:
        return asdict(self)


@dataclass
class ModelPaths:
    vqgan_config: Path | None = None
    vqgan_ckpt: Path | None = None
    clip_model: str = "ViT-B-32-quickgelu"
    clip_weights: Path | None = None
    audio_encoder: Path | None = None
    official: dict = field(default_factory=dict)

    def ids(self) -> dict:
        """Cheap identities for cache keys: name, size and modification time of each file."""
        out: dict = {"clip_model": Path(self.clip_model).name}
        for k in ("vqgan_config", "vqgan_ckpt", "clip_weights", "audio_encoder"):
            p = getattr(self, k)
            if p is not None:
                st = Path(p).stat()
                out[k] = f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}"
        return out


class StopFlag:
    """Set by SIGINT/SIGTERM: the render finishes the current image, saves, and exits."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            self.stop = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGBREAK"):  # Windows: what the add-on sends to cancel
            signal.signal(signal.SIGBREAK, handler)


def pick_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch finds no CUDA GPU")
    return torch.device(name)


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _sub_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def spherical_distance(x, y):
    """Squared great-circle distance between unit vectors (VQGAN-CLIP's loss)."""
    import torch.nn.functional as F

    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def cutout_draws(h: int, w: int, n: int, size: int, generator, cut_pow: float = 1.0, noise: float = 0.1) -> tuple:
    """Random crop sizes and offsets, flips, noise factors and noise for ``n`` cutouts, in a fixed order."""
    import torch

    max_size, min_size = min(h, w), min(h, w, size)
    sizes = (torch.rand(n, generator=generator) ** cut_pow * (max_size - min_size) + min_size).floor()
    ox = (torch.rand(n, generator=generator) * (w - sizes + 1)).floor()
    oy = (torch.rand(n, generator=generator) * (h - sizes + 1)).floor()
    flips = torch.rand(n, generator=generator) < 0.5
    facs = torch.rand(n, 1, 1, 1, generator=generator) * noise
    eps = torch.randn(n, 3, size, size, generator=generator)
    return sizes, ox, oy, flips, facs, eps


def make_cutouts(image, n: int, size: int, generator, cut_pow: float = 1.0, noise: float = 0.1):
    """``n`` random square crops of ``image`` (``(1, 3, H, W)``), resampled to ``size`` in one batched op.

    Crop sizes, offsets, flips and noise come from ``generator`` (CPU), so a seed
    fixes them on every device. One ``roi_align`` call replaces the per-crop loop.
    """
    import torch
    from torchvision.ops import roi_align

    _, _, h, w = image.shape
    sizes, ox, oy, flips, facs, eps = cutout_draws(h, w, n, size, generator, cut_pow, noise)
    boxes = torch.stack([torch.zeros(n), ox, oy, ox + sizes, oy + sizes], 1).to(image)
    cuts = roi_align(image, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=False)
    dev = image.device
    flips = flips.to(dev)
    cuts = torch.where(flips[:, None, None, None], cuts.flip(-1), cuts)
    return cuts + facs.to(dev) * eps.to(dev)


class Guidance:
    """Target vectors per segment, computed once and only for segments that are rendered."""

    def __init__(self, plan: dict, clip, audio_model, song_16k: np.ndarray | None, device) -> None:
        self.plan, self.clip, self.audio_model, self.song, self.device = plan, clip, audio_model, song_16k, device
        self.cache: dict[int, object] = {}
        self.style = None

    def raw(self, k: int):
        import torch

        if k not in self.cache:
            seg = self.plan["segments"][k]
            if seg["guidance"]["kind"] == "lyric":
                v = self.clip.embed_text([seg["guidance"]["text"]])[0]
            else:
                from engine.wav2clip import embed_audio

                a, b = int(seg["start"] * 16000), int(seg["end"] * 16000)
                wav = torch.from_numpy(np.ascontiguousarray(self.song[a:b])).float()[None]
                v = torch.nn.functional.normalize(embed_audio(self.audio_model, wav)[0], dim=-1)
            self.cache[k] = v.to(self.device)
        return self.cache[k]

    def target(self, k: int, average: bool):
        import torch

        cur = self.raw(k)
        if average and k > 0:
            return torch.nn.functional.normalize(self.raw(k - 1) + cur, dim=-1)
        return cur


class Renderer:
    """Loaded models plus the optimisation step."""

    def __init__(self, vqgan, clip, audio_model, settings: RenderSettings, device) -> None:

        self.vqgan, self.clip, self.audio_model = vqgan.to(device), clip.to(device), audio_model
        self.s, self.device = settings, device
        self.z_min, self.z_max = (t.to(device) for t in vqgan.z_bounds())
        self.autocast = device.type == "cuda"

    def initial_state(self):
        import torch

        g = torch.Generator().manual_seed(_sub_seed(self.s.seed, "init"))
        z = self.vqgan.random_latent(self.s.width, self.s.height, g).to(self.device)
        return self._opt_for(z, None)

    def _opt_for(self, z, opt_state):
        import torch

        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.s.lr)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        return z, opt

    def load_state(self, path: Path):
        import torch

        st = torch.load(path, map_location="cpu", weights_only=True)
        return self._opt_for(st["z"].to(self.device), st["opt"])

    @staticmethod
    def save_state(path: Path, z, opt) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save({"z": z.detach().cpu(), "opt": opt.state_dict()}, buf)
        _atomic_bytes(path, buf.getvalue())

    def step(self, z, opt, targets: list, generator, z_prev=None) -> tuple[np.ndarray, float]:
        """One optimisation step; returns the decoded image (before the update) and the loss."""
        import torch

        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.vqgan(z)
            cuts = make_cutouts(
                out.float(), self.s.cutouts, self.clip.input_size, generator, self.s.cut_pow, self.s.noise
            )
            emb = self.clip.embed_images(cuts)
        loss = sum(w * spherical_distance(emb, t[None]).mean() for t, w in targets)
        if z_prev is not None and self.s.l1_weight > 0:
            loss = loss + self.s.l1_weight * (z - z_prev).abs().mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.z_max), self.z_min))
        rgb = (out.detach().float()[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return rgb, float(loss.detach())


def _segment_dir(k: int, key: str) -> str:
    return f"seg_{k:04d}_{key[:10]}"


def _frames_ok(out_dir: Path, entry: dict) -> bool:
    from engine.audio import file_sha256

    for im in entry.get("frames", []):
        p = out_dir / im["file"]
        if not p.exists() or file_sha256(p) != im["sha256"]:
            return False
    return True


def _load_song_16k(path: str) -> np.ndarray:
    from engine.audio import load_song

    return load_song(path, sr=16000, min_duration=0.0).y


def render(
    plan_path: str | Path,
    out_dir: str | Path,
    settings: RenderSettings,
    load_models=None,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
    device: str = "auto",
    prune: bool = True,
) -> int:
    """Render a plan into ``out_dir``; returns an exit code (0 done, 3 cancelled).

    ``load_models`` is a callable returning ``(vqgan, clip, audio_model, ModelPaths)``; not
    needed for ``settings.layout``.
    """
    import torch

    settings.validate()
    progress = progress or Progress()
    stop = stop or StopFlag()
    out_dir = Path(out_dir)
    plan = load_plan(plan_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    song_path = plan["song"]["path"]
    if not Path(song_path).exists():
        raise InputError("the plan's song file is missing", song_path)
    from engine.audio import file_sha256

    if plan["song"].get("sha256") and file_sha256(song_path) != plan["song"]["sha256"]:
        progress.emit("warning", message=f"{song_path} changed since the plan was made: analyse it again")
    song16 = _load_song_16k(song_path)
    dev = pick_device(device) if not settings.layout else torch.device("cpu")
    if settings.layout:
        renderer, guidance, model_ids = None, None, {"layout": __version__}
    else:
        if load_models is None:
            raise InputError("no models given")
        vqgan, clip, audio_model, paths = load_models()
        model_ids = paths.ids()
        if clip.embed_dim != audio_model.embed_dim:
            raise InputError(
                f"the audio encoder's embedding ({audio_model.embed_dim}) does not match CLIP's ({clip.embed_dim})"
            )
        torch.manual_seed(settings.seed)
        renderer = Renderer(vqgan, clip, audio_model.to(dev), settings, dev)
        guidance = Guidance(plan, clip, audio_model, song16, dev)
    skeys = settings.key_fields()
    segs = plan["segments"]
    keys, prev = [], None
    for seg in segs:
        a, b = int(seg["start"] * 16000), int(seg["end"] * 16000)
        audio_sha = hashlib.sha256(np.ascontiguousarray(song16[a:b]).tobytes()).hexdigest()
        prev = segment_key(seg, audio_sha, skeys, model_ids, prev)
        keys.append(prev)
    manifest = load_manifest(out_dir) or new_manifest(plan, skeys, model_ids)
    cache: dict = manifest.setdefault("cache", {})
    manifest.update(settings=skeys, models=model_ids, song=plan["song"], status="running", engine=__version__)
    state_dir = out_dir / "state"
    total = sum(int(s["images"]) for s in segs)
    progress.emit("start", segments=len(segs), total=total, out=str(out_dir), layout=settings.layout, device=str(dev))
    done_images, t_render, n_rendered = 0, 0.0, 0
    z = opt = None
    seg_entries = []
    cancelled = False
    for k, seg in enumerate(segs):
        key = keys[k]
        entry = cache.get(key)
        end_state = state_dir / f"{key}.end.pt"
        reusable = (
            entry is not None
            and entry.get("status") == "done"
            and (settings.layout or end_state.exists())
            and _frames_ok(out_dir, entry)
        )
        if reusable:
            seg_entries.append(
                {
                    "index": k,
                    "key": key,
                    **_seg_public(seg),
                    "status": "done",
                    "folder": entry["folder"],
                    "frames": entry["frames"],
                }
            )
            done_images += len(entry["frames"])
            progress.emit(
                "segment_end",
                segment=k,
                key=key,
                reused=True,
                folder=entry["folder"],
                images=len(entry["frames"]),
                done=done_images,
                total=total,
            )
            z = opt = None  # the next rendered segment loads this one's end state
            continue
        folder = _segment_dir(k, key)
        entry = cache.get(key) if cache.get(key, {}).get("status") == "partial" else None
        partial_state = state_dir / f"{key}.partial.pt"
        frames = []
        start_i = 0
        if not settings.layout:
            if entry and partial_state.exists() and _frames_ok(out_dir, entry):
                frames = list(entry["frames"])
                start_i = len(frames)
                z, opt = renderer.load_state(partial_state)
            elif k > 0:
                prev_end = state_dir / f"{keys[k - 1]}.end.pt"
                if z is None or opt is None:
                    if not prev_end.exists():
                        raise InputError(
                            f"internal cache state for segment {k - 1} is missing; render into a fresh folder"
                        )
                    z, opt = renderer.load_state(prev_end)
            else:
                z, opt = renderer.initial_state()
        elif entry:
            frames = list(entry["frames"])
            start_i = len(frames)
        cache[key] = {"status": "partial", "folder": folder, "frames": frames, "segment": k}
        progress.emit(
            "segment_start",
            segment=k,
            start=seg["start"],
            end=seg["end"],
            images=seg["images"],
            guidance=seg["guidance"]["kind"],
            text=seg["guidance"].get("text"),
            folder=folder,
            resumed_at=start_i,
        )
        targets = []
        if not settings.layout:
            targets = [(guidance.target(k, settings.prompt_average), 1.0)]
            if settings.style:
                if guidance.style is None:
                    guidance.style = renderer.clip.embed_text([settings.style])[0].to(dev)
                targets.append((guidance.style, settings.style_weight))
        n = int(seg["images"])
        dur = (seg["end"] - seg["start"]) / n
        for i in range(start_i, n):
            t0 = time.monotonic()
            if settings.layout:
                from engine.layout import layout_card

                rgb, loss = layout_card(seg, i, len(segs), settings.width, settings.height), None
            else:
                z_prev = z.detach().clone() if settings.l1_weight > 0 else None
                for s in range(settings.steps_per_image):
                    g = torch.Generator().manual_seed(_sub_seed(settings.seed, k, i, s))
                    rgb, loss = renderer.step(z, opt, targets, g, z_prev)
            data = png_bytes(rgb)
            rel = f"{folder}/frame_{i:05d}.png"
            _atomic_bytes(out_dir / rel, data)
            frames.append(
                {
                    "index": i,
                    "time": round(seg["start"] + i * dur, 4),
                    "file": rel,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    **({"loss": round(loss, 6)} if loss is not None else {}),
                }
            )
            if not settings.layout:
                Renderer.save_state(partial_state, z, opt)
            cache[key]["frames"] = frames
            manifest["segments"] = seg_entries + [
                {"index": k, "key": key, **_seg_public(seg), "status": "partial", "folder": folder, "frames": frames}
            ]
            save_manifest(out_dir, manifest)
            done_images += 1
            n_rendered += 1
            t_render += time.monotonic() - t0
            eta = (total - done_images) * t_render / n_rendered
            progress.emit(
                "image",
                segment=k,
                index=i,
                done=done_images,
                total=total,
                file=rel,
                eta_s=round(eta, 1),
                **({"loss": round(loss, 5)} if loss is not None else {}),
            )
            if stop.stop:
                cancelled = True
                break
        if cancelled:
            break
        if not settings.layout:
            os.replace(partial_state, end_state)
        cache[key]["status"] = "done"
        seg_entries.append(
            {"index": k, "key": key, **_seg_public(seg), "status": "done", "folder": folder, "frames": frames}
        )
        manifest["segments"] = list(seg_entries)
        save_manifest(out_dir, manifest)
        progress.emit(
            "segment_end", segment=k, key=key, reused=False, folder=folder, images=n, done=done_images, total=total
        )
    if cancelled:
        manifest["status"] = "cancelled"
        save_manifest(out_dir, manifest)
        progress.emit("cancelled", done=done_images, total=total)
        return EXIT_CANCELLED
    manifest["status"] = "done"
    manifest["segments"] = seg_entries
    if prune:
        _prune(out_dir, manifest, set(keys))
    save_manifest(out_dir, manifest)
    progress.emit("done", done=done_images, total=total, out=str(out_dir))
    return 0


def _seg_public(seg: dict) -> dict:
    return {"start": seg["start"], "end": seg["end"], "images": seg["images"], "guidance": seg["guidance"]}


def _prune(out_dir: Path, manifest: dict, live: set[str]) -> None:
    """Drop cache entries (frames, states) of segments no longer in the plan: only m2v's own files."""
    cache = manifest["cache"]
    for key in [k for k in cache if k not in live]:
        folder = out_dir / cache[key]["folder"]
        if folder.is_dir() and folder.name.startswith("seg_"):
            shutil.rmtree(folder, ignore_errors=True)
        for suffix in (".end.pt", ".partial.pt"):
            (out_dir / "state" / f"{key}{suffix}").unlink(missing_ok=True)
        del cache[key]

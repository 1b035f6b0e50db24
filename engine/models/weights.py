"""Official model files: where they come from, where they live, downloading and verifying them.

``engine models fetch`` downloads into the models folder with resume, a
progress bar, hash verification and no partial file ever left under the
final name; ``engine models check`` says what is present and whether it
verifies. Offline, a user drops the official files into the folder by hand.

Hashes: where the registry has a SHA-256 it is enforced. For files whose
hash could not be pinned when this registry was written (the hosts were not
reachable from our build machines), the first download that passes the
structural check (it loads as the expected architecture) is pinned in
``pins.json`` in the models folder and enforced from then on.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.files import entry_kind, file_sha256, open_append, read_cache_file, space_for, write_json_atomic

PINS = "pins.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """One official file.

    Attributes
    ----------
    name : str
        File name in the models folder (may contain one sub-folder).
    url : str
        Official download address.
    sha256 : str or None
        Expected hash; None when it must be pinned on first verified download.
    role : str
        ``vqgan-config``, ``vqgan-ckpt``, ``clip`` or ``audio``.
    about : str
        Where the file comes from.
    """

    name: str
    url: str
    sha256: str | None
    role: str
    about: str


_HEIBOX_16384 = "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2F{}&dl=1"

REGISTRY: dict[str, WeightFile] = {
    f.name: f
    for f in (
        WeightFile(
            "vqgan_imagenet_f16_16384/model.yaml",
            _HEIBOX_16384.format("configs%2Fmodel.yaml"),
            None,
            "vqgan-config",
            "taming-transformers model table: VQGAN ImageNet f=16, 16384 codes (config)",
        ),
        WeightFile(
            "vqgan_imagenet_f16_16384/last.ckpt",
            _HEIBOX_16384.format("ckpts%2Flast.ckpt"),
            None,
            "vqgan-ckpt",
            "taming-transformers model table: VQGAN ImageNet f=16, 16384 codes (~980 MB Lightning checkpoint)",
        ),
        WeightFile(
            "open_clip_vit_b32_openai.safetensors",
            "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/"
            "a6f597a30f7b82c51704746581f9a4e41421e878/open_clip_model.safetensors",
            "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
            "clip",
            "OpenAI CLIP ViT-B/32 in open_clip's safetensors format (Hugging Face timm/, pinned revision)",
        ),
        WeightFile(
            "Wav2CLIP.pt",
            "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt",
            None,
            "audio",
            "Wav2CLIP v0.1.0-alpha (MIT), descriptinc/lyrebird-wav2clip",
        ),
    )
}


def default_models_dir() -> Path:
    """``$M2V_MODELS``, else the per-user data folder of the platform."""
    env = os.environ.get("M2V_MODELS")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "m2v" / "models"


def load_pins(models_dir: Path) -> dict[str, str]:
    raw = read_cache_file(models_dir / PINS)  # m2v's own record: a bounded regular file, never a pipe or link
    try:
        pins = json.loads(raw) if raw is not None else {}
    except (ValueError, RecursionError):
        return {}
    return (
        {k: v for k, v in pins.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(pins, dict) else {}
    )


def save_pin(models_dir: Path, name: str, digest: str) -> None:
    pins = load_pins(models_dir)
    pins[name] = digest
    write_json_atomic(dict(sorted(pins.items())), models_dir / PINS)


def expected_hash(models_dir: Path, wf: WeightFile) -> str | None:
    return wf.sha256 or load_pins(models_dir).get(wf.name)


class DownloadError(InputError):
    """A download failed; the message says why and nothing is left under the final name."""


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip()[:64].lower()
    return h.startswith(b"<!doctype html") or h.startswith(b"<html")


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
    allow_html: bool = False,
) -> str:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present; return the file's SHA-256.

    The file appears under ``dest`` only when complete and (if ``sha256`` is
    given) verified; a wrong hash deletes the partial file. A web page sent
    instead of the file (an error or login page) is refused.

    Raises
    ------
    DownloadError
        Server errors, a wrong hash or a web page; the message names the URL.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if entry_kind(part) not in (None, "file"):  # m2v's partial download is a plain file, never written through a link
        raise DownloadError(f"{part} is not m2v's partial download (a link, folder or pipe); remove it", url)
    have = part.stat().st_size if entry_kind(part) == "file" else 0
    req = urllib.request.Request(url, headers={"User-Agent": "m2v-engine"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - official https URLs or a user's mirror
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # The partial file is already complete: verify it below.
            resp = None
        else:
            raise DownloadError(f"server answered {e.code} {e.reason}", url) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DownloadError(f"cannot reach the server ({getattr(e, 'reason', e)})", url) from None
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if have and status != 206:
                have = 0  # the server ignored the range: start again
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            ctype = resp.headers.get("Content-Type", "")
            first = True
            with _open_part(part, have) as f, space_for(dest.parent):
                done = have
                while block := resp.read(CHUNK):
                    if first and not have and not allow_html and ("text/html" in ctype or _looks_like_html(block)):
                        f.close()
                        part.unlink(missing_ok=True)
                        raise DownloadError(
                            "the server sent a web page instead of the file (moved, or a login page)", url
                        )
                    first = False
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            if total is not None and part.stat().st_size < total:
                raise DownloadError(
                    f"the download stopped early ({part.stat().st_size} of {total} bytes); run again to resume", url
                )
    digest = file_sha256(part)
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"wrong SHA-256 {digest} (expected {sha256}); the file was deleted", url)
    os.replace(part, dest)
    return digest


def _open_part(part: Path, have: int):
    """The partial download, to append to (``have`` bytes kept) or to start afresh; never through a link."""
    if have:
        return open_append(part, "partial download")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "wb")


def fetch(
    models_dir: Path,
    names: list[str] | None = None,
    mirror: str | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    verify: Callable[[Path, str, Path], None] | None = None,
) -> list[str]:
    """Download missing or unverified official files; return the names fetched.

    ``mirror`` replaces each official URL with ``mirror/<name>`` (a studio's own copy).
    ``verify(path, role, models_dir)`` checks a file whose hash is not pinned yet
    (it must load as its architecture) before its hash is pinned; without it such
    files are not pinned.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    fetched = []
    for wf in REGISTRY.values():
        if names and wf.name not in names:
            continue
        dest = models_dir / wf.name
        want = expected_hash(models_dir, wf)
        if dest.exists() and want and file_sha256(dest) == want:
            continue
        url = f"{mirror.rstrip('/')}/{wf.name}" if mirror else wf.url
        digest = download(url, dest, want, (lambda d, t, n=wf.name: progress(n, d, t)) if progress else None)
        if not want and verify is not None:
            try:
                verify(dest, wf.role, models_dir)
            except InputError as e:
                dest.unlink(missing_ok=True)
                raise DownloadError(f"the downloaded file is not a valid {wf.role} file ({e}); deleted", url) from None
            save_pin(models_dir, wf.name, digest)
        fetched.append(wf.name)
    return fetched


def check(models_dir: Path) -> list[dict]:
    """Status of each official file: ``missing``, ``ok`` (hash verified), ``unpinned`` or ``bad-hash``."""
    out = []
    for wf in REGISTRY.values():
        path = models_dir / wf.name
        row = {"name": wf.name, "path": str(path), "role": wf.role}
        if not path.exists():
            row["status"] = "missing"
        else:
            want = expected_hash(models_dir, wf)
            got = file_sha256(path)
            row["sha256"] = got
            row["status"] = "unpinned" if not want else "ok" if got == want else "bad-hash"
        out.append(row)
    return out


def require(models_dir: Path, name: str) -> Path:
    """Path of an official file, or an error that says where to put it and how to fetch it."""
    path = models_dir / name
    if not path.exists():
        raise InputError(
            f"model file {name} is missing. Put it at {path} (offline), or download the official files with: "
            f"python -m engine models fetch --models {models_dir}   (or render a preview with --layout)"
        )
    return path

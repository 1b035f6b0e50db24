"""The render manifest (``manifest.json``, versioned) and the content keys behind the cache.

Segment ``k``'s key hashes everything its frames depend on: its span,
guidance, audio slice, the render settings, the model ids, the seed, and the
key of segment ``k - 1`` (whose final latent it starts from). Equal keys mean
equal frames, so a changed plan reuses every segment before the first
changed key and re-renders from there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.errors import InputError
from engine.plan import write_json_atomic

MANIFEST_VERSION = 1
MANIFEST = "manifest.json"


def segment_key(seg: dict, audio_sha: str, settings: dict, models: dict, prev_key: str | None) -> str:
    """Content key of one segment's render (hex SHA-256)."""
    payload = {
        "start": round(float(seg["start"]), 4),
        "end": round(float(seg["end"]), 4),
        "images": int(seg["images"]),
        "guidance": {"kind": seg["guidance"]["kind"], "text": seg["guidance"].get("text")},
        "audio": audio_sha,
        "settings": settings,
        "models": models,
        "prev": prev_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def new_manifest(plan: dict, settings: dict, models: dict) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "kind": "m2v-render",
        "song": plan["song"],
        "settings": settings,
        "models": models,
        "status": "running",
        "segments": [],
        "cache": {},
    }


def load_manifest(out_dir: Path) -> dict | None:
    """The folder's manifest, or None; a foreign or newer manifest is an error, never overwritten."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("the render manifest is damaged; choose another output folder or delete it", path) from None
    if data.get("kind") != "m2v-render" or data.get("version") != MANIFEST_VERSION:
        raise InputError(f"not an m2v render manifest of version {MANIFEST_VERSION}", path)
    return data


def save_manifest(out_dir: Path, manifest: dict) -> None:
    write_json_atomic(manifest, out_dir / MANIFEST)

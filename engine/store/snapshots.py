"""Resume points: the latent and the optimiser's state at a position in the render.

A snapshot at ``(key, i)`` holds the state after the first ``i`` images of
the segment with that key. Snapshots are taken at a bounded rate (at most
one per ``interval`` seconds of rendering, plus on cancel), never per
image: after a kill, a render restarts from the latest snapshot on its chain
of segment keys and re-runs the few images after it without writing them;
on the CPU they come out bit for bit as before, so nothing is lost. A
snapshot ahead of the recorded frames is never used, so the state and the
frames cannot disagree, whatever instant the process died at.

Only snapshots on the current chain are kept, and at most ``cap_bytes`` of
them: over the cap every other old one is dropped, which at most doubles
the replay after an edit.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.files import entry_kind, write_bytes_atomic
from engine.models.checkpoints import UnsafeCheckpoint, load_torch_file

_NAME = re.compile(r"^([0-9a-f]{64})-(\d{5})\.pt$")
DEFAULT_INTERVAL = 15.0
DEFAULT_CAP_BYTES = 2 << 30


@dataclass(frozen=True)
class Snapshot:
    key: str
    images: int
    path: Path


def snapshot_name(key: str, images: int) -> str:
    return f"{key}-{images:05d}.pt"


def list_snapshots(state_dir: Path) -> list[Snapshot]:
    if entry_kind(state_dir) != "folder":
        return []
    out = []
    for p in state_dir.iterdir():
        m = _NAME.match(p.name)
        # Only regular files: a pipe, folder or link under a resume point's name is not m2v's (and a pipe would
        # block the read), so it is neither read nor deleted.
        if m and entry_kind(p) == "file":
            out.append(Snapshot(m.group(1), int(m.group(2)), p))
    return out


def latest_on_chain(
    snaps: list[Snapshot], keys: list[str], k: int, i: int, first: int = 0
) -> tuple[int, Snapshot] | None:
    """The latest snapshot at or before position ``(k, i)`` (segment ``k``, ``i`` images done) on the key chain.

    ``first`` is the first segment of the latent chain (engine.plan.chains) ``k`` belongs to: nothing before it.
    Returns ``(segment index, snapshot)`` or None (then the render starts from its seed).
    """
    where = {key: j for j, key in enumerate(keys[: k + 1]) if j >= first}
    best = None
    for s in snaps:
        j = where.get(s.key)
        if j is None or (j == k and s.images > i):
            continue
        if best is None or (j, s.images) > (best[0], best[1].images):
            best = (j, s)
    return best


def encode_state(state: dict) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_snapshot(state_dir: Path, key: str, images: int, data: bytes) -> Path:
    path = state_dir / snapshot_name(key, images)
    write_bytes_atomic(path, data, durable=True, point="snapshot")
    return path


def load_snapshot(path: Path) -> dict | None:
    """A snapshot's tensors, or None when the file is damaged (a truncated or foreign file is skipped).

    Raises
    ------
    InputError
        When the file would run code (someone put a crafted pickle there): m2v refuses it by name.
    """

    try:
        obj = load_torch_file(path)
    except UnsafeCheckpoint as e:
        raise InputError(f"{e}. This resume point is not m2v's; delete it to continue", None) from None
    except InputError:
        return None
    if "z" not in obj or "opt" not in obj:
        return None
    return obj


def prune_snapshots(state_dir: Path, chain: list[str], cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
    """Drop snapshots off the key chain, then thin the rest to ``cap_bytes`` (every other one, oldest first)."""
    order = {k: j for j, k in enumerate(chain)}
    keep = []
    for s in list_snapshots(state_dir):
        if s.key in order:
            keep.append(s)
        else:
            s.path.unlink(missing_ok=True)
    keep.sort(key=lambda s: (order[s.key], s.images))
    while len(keep) > 2 and sum(s.path.stat().st_size for s in keep) > cap_bytes:
        drop = keep[:-1][::2]
        for s in drop:
            s.path.unlink(missing_ok=True)
        keep = [s for s in keep if s not in drop]

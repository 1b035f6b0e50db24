"""``run``'s output folder: which files in it are m2v's own, and writing them so a failed run can undo them.

m2v knows its own files in a ``run --out`` folder by ``.m2v-run.json``, the list of names ``run`` writes
there, written (under the folder's lock) before the first of them: a listed name is m2v's to replace; an
unlisted file of one of those names is the user's, and the run is refused without touching anything (a
render folder holding m2v's manifest counts as m2v's too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import InputError
from engine.files import (
    check_not_inputs,
    check_own_entry,
    created_file,
    entry_kind,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)
from engine.protocol import MANIFEST_FILE, MANIFEST_KIND
from engine.store.manifest import check_render_folder

RUN_FILES = ".m2v-run.json"
RUN_FILES_KIND = "m2v-run-files"


def run_names(args: argparse.Namespace) -> list[str]:
    """The names ``run`` writes into its ``--out`` folder (files and its render folder)."""
    names = ["plan.json", "plan.png", "render-events.jsonl", "layout" if args.layout else "frames"]
    names.append("layout.mp4" if args.layout else "video.mp4")
    if args.song is None:
        names += ["demo_song.wav", "demo_lyrics.lrc"]
    return names


#: The names ``run`` writes that are folders (its render folder); every other name is a file.
RUN_FOLDERS = ("frames", "layout")


def check_run_inputs(args: argparse.Namespace, out: Path, names: list[str]) -> None:
    """None of the files ``run`` reads (song, lyrics, footage, matte, prompts, curves) may be one it writes; every
    name it writes is free.

    A folder, a link or a pipe in place of one of its files (``video.mp4/``, say), or a file or link in place
    of its render folder, is refused here, before any work (exit 2).
    """
    inputs = {
        "song": args.song,
        "lyrics file": args.lyrics,
        "--footage": args.footage,
        "--matte": args.matte,
        "prompts file": args.prompts,
        "curves file": args.curves,
    }
    check_not_inputs({f"--out {out}/{n}": out / n for n in names}, inputs)
    check_own_entry(out / RUN_FILES, "file")
    for n in names:
        check_own_entry(out / n, "folder" if n in RUN_FOLDERS else "file")
        if n in RUN_FOLDERS:
            check_render_folder(out / n)


def _read_run_files(out: Path) -> list[str]:
    path = out / RUN_FILES
    if entry_kind(path) is None:
        return []
    doc = read_json(path, "m2v run record", follow=False)
    if not isinstance(doc, dict) or doc.get("kind") != RUN_FILES_KIND or not isinstance(doc.get("files"), list):
        raise InputError("is not m2v's record of its files; choose another --out folder", path)
    return [n for n in doc["files"] if isinstance(n, str)]


def _is_render_folder(folder: Path) -> bool:
    try:
        doc = read_json(folder / MANIFEST_FILE, "render manifest", follow=False)
    except InputError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == MANIFEST_KIND


def claim_run_files(out: Path, names: list[str]) -> None:
    """Refuse a folder holding a file of one of ``names`` that m2v did not write there; then record them."""
    own = set(_read_run_files(out))
    for n in names:
        p = out / n
        kind = "folder" if n in RUN_FOLDERS else "file"
        check_own_entry(p, kind)  # again, under the lock: only a file where a file goes, a folder where one goes
        if n in own or entry_kind(p) is None:
            continue
        if kind == "folder" and (not any(p.iterdir()) or _is_render_folder(p)):
            continue
        raise InputError(f"--out holds {n}, which m2v did not write; move it, or choose another --out folder", p)
    existed = (out / RUN_FILES).exists()
    write_json_atomic({"kind": RUN_FILES_KIND, "version": 1, "files": sorted(own | set(names))}, out / RUN_FILES)
    if not existed:
        created_file(out / RUN_FILES)


def write_noted(path: str | Path, data: bytes) -> None:
    """Write a file atomically; a new one is noted, so that a command that fails later removes it again."""
    path = Path(path)
    existed = path.exists()
    write_bytes_atomic(path, data)
    if not existed:
        created_file(path)

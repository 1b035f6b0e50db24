"""A render folder's record of finished frames: the segment cache, its journal and its manifest.

Segment ``k``'s key hashes everything its frames depend on (span, steps,
guidance, audio, settings, models, seed, take) and the key of segment
``k - 1``, whose final latent it starts from. Equal keys mean equal frames,
so a changed plan reuses every segment before the first changed key.

Bookkeeping costs constant work per image: each finished frame is one line
appended to ``frames.jsonl`` (after the frame file is on disk); the
versioned summary ``manifest.json`` is rewritten only when the journal has
grown as large as it (amortised constant bytes per frame), on cancel and at
the end, and then the journal starts again. A reader folds the journal into
the manifest, so a process killed at any instant loses at most the line being
written, which is ignored (and cut off) on the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from engine import __version__, faults
from engine.errors import InputError
from engine.files import (
    MAX_JSON_BYTES,
    check_own_entry,
    dumps_strict,
    entry_kind,
    open_append,
    read_regular,
    space_for,
    write_bytes_atomic,
)
from engine.protocol import (
    JOURNAL_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    MANIFEST_KIND,
    MANIFEST_VERSION,
    RAY_LOG_FILE,
    SEGMENT_DIR_PREFIX,
    STATE_DIR,
    check_document,
)

#: Frames of segments the plan no longer uses are kept up to this much at least (see RenderStore.prune).
DEFAULT_STALE_CAP = 1 << 30


def segment_key(payload: dict, prev_key: str | None) -> str:
    """Content key of one segment's render (hex SHA-256) from what its frames depend on."""
    return hashlib.sha256(dumps_strict({**payload, "prev": prev_key}, indent=None).encode()).hexdigest()


def segment_folder(k: int, key: str) -> str:
    return f"{SEGMENT_DIR_PREFIX}{k:04d}_{key[:10]}"


_KEY = re.compile(r"[0-9a-f]{64}")


def own_folder(key: object, segment: object, folder: object) -> bool:
    """Whether a recorded segment folder is exactly the one m2v makes for that key and segment.

    Records are read back from the render folder, where anyone could have edited them: only a name m2v
    itself makes (``seg_<k>_<key>``, directly inside the folder: no separator, no ``..``) is ever written
    into or deleted.
    """
    return (
        isinstance(key, str)
        and _KEY.fullmatch(key) is not None
        and isinstance(segment, int)
        and not isinstance(segment, bool)
        and 0 <= segment <= 9999
        and folder == segment_folder(segment, key)
    )


def check_render_folder(out_dir: str | Path, folders: list[str] | tuple = (), flag: str = "--out") -> None:
    """Before any work: every name a render writes in ``out_dir`` is absent or already what m2v makes there.

    A folder, pipe or link in place of the manifest, the journal or the lock, a file or link in place of
    the resume points' folder or a segment folder (``folders``): exit 2 at once, nothing touched.
    """
    out_dir = Path(out_dir).expanduser()
    for name in (MANIFEST_FILE, JOURNAL_FILE, LOCK_FILE, RAY_LOG_FILE):
        check_own_entry(out_dir / name, "file", flag)
    for name in (STATE_DIR, *folders):
        check_own_entry(out_dir / name, "folder", flag)


def frame_file(folder: str, index: int) -> str:
    """A frame's file, relative to the render folder (the name the journal and the manifest record)."""
    return f"{folder}/frame_{index:05d}.png"


@dataclass
class Entry:
    """One rendered (or partly rendered) segment in the cache."""

    key: str
    segment: int
    folder: str
    images: int
    status: str = "partial"  # partial | done
    frames: dict[int, dict] = field(default_factory=dict)
    used: int = 0

    def to_json(self) -> dict:
        return {
            "segment": self.segment,
            "folder": self.folder,
            "images": self.images,
            "status": self.status,
            "used": self.used,
            "frames": [self.frames[i] for i in sorted(self.frames)],
        }

    @classmethod
    def from_json(cls, key: str, d: dict) -> Entry:
        frames = {int(f["index"]): f for f in d.get("frames", [])}
        return cls(key, int(d["segment"]), str(d["folder"]), int(d["images"]), d["status"], frames, int(d["used"]))

    def own_frames(self) -> list[int]:
        """Drop frame records that do not name this entry's own frame file; returns the indices dropped."""
        bad = [
            i
            for i, f in self.frames.items()
            if not (isinstance(f, dict) and 0 <= i < self.images and f.get("file") == frame_file(self.folder, i))
        ]
        for i in bad:
            del self.frames[i]
        return bad

    def first_missing(self, out_dir: Path) -> int:
        """Index of the first image that is not on disk as recorded (``images`` when all are)."""
        for i in range(self.images):
            f = self.frames.get(i)
            if f is None:
                return i
            try:
                st = os.lstat(out_dir / f["file"])  # a link in a frame's place is not the frame
                if not stat.S_ISREG(st.st_mode) or st.st_size != f["bytes"]:
                    return i
            except (OSError, TypeError):
                return i
        return self.images


class RenderStore:
    """The cache of a render folder: entries by key, the journal, the manifest."""

    def __init__(self, out_dir: Path, header: dict, entries: dict[str, Entry], generation: int) -> None:
        self.out_dir = out_dir
        self.header = header
        self.entries = entries
        self.generation = generation
        #: The current plan's segments (index, key, span, counts); statuses are added when written.
        self.segments: list[dict] = []
        self._journal = None
        self._journal_bytes = 0
        self._manifest_bytes = 0
        #: Journal and manifest bytes written by this process (the benchmark reports them).
        self.bytes_written = 0
        #: What the records held that m2v did not write and ignores (the render says so in warnings).
        self.warnings: list[str] = []

    # ------------------------------------------------------------ loading

    @classmethod
    def open(cls, out_dir: Path, header: dict, repair: bool = True) -> RenderStore:
        """Read the folder's manifest and journal (a foreign or damaged manifest is an error, never overwritten).

        ``repair`` cuts off a journal line that a kill left half-written (the writer's own start).
        """
        entries, generation = {}, 0
        path = out_dir / MANIFEST_FILE
        if entry_kind(path) is None and entry_kind(out_dir / JOURNAL_FILE) is not None:
            # m2v writes its manifest before its first journal line: this journal is someone else's file.
            raise InputError(
                f"holds a {JOURNAL_FILE} that m2v did not write (no {MANIFEST_FILE}); choose another output folder",
                out_dir,
            )
        if entry_kind(path) is not None:
            data = _read_manifest(path)
            try:
                entries = {k: Entry.from_json(k, v) for k, v in data.get("cache", {}).items()}
                generation = int(data.get("generation", 0))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputError("the render manifest is damaged; choose another output folder", path) from None
        store = cls(out_dir, header, entries, generation + 1)
        store._replay_journal(repair)
        store._drop_foreign()
        return store

    def _drop_foreign(self) -> None:
        """Ignore records naming folders or files m2v would not make: they are never read, written or deleted."""
        for key, e in list(self.entries.items()):
            if not own_folder(key, e.segment, e.folder):
                del self.entries[key]
                self.warnings.append(
                    f"{self.out_dir / MANIFEST_FILE}: ignored a record of segment folder {str(e.folder)[:80]!r}, "
                    "which is not a folder m2v makes (m2v never touches it)"
                )
            elif e.own_frames():
                self.warnings.append(
                    f"{self.out_dir / MANIFEST_FILE}: ignored frame records of {e.folder} that name other files; "
                    "those frames are rendered again"
                )

    def _replay_journal(self, repair: bool) -> None:
        path = self.out_dir / JOURNAL_FILE
        if entry_kind(path) is None:
            return
        raw = read_regular(path, "render journal", MAX_JSON_BYTES, follow=False)
        if os.lstat(path).st_nlink > 1:  # cut back or appended to, it would change another file too
            raise InputError(
                "is a hard link to another file, not m2v's render journal; m2v leaves it alone: move it", path
            )
        good = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # the line a kill interrupted
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
        if good < len(raw) and repair:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.ftruncate(fd, good)
            finally:
                os.close(fd)
        self._journal_bytes = good

    def _apply(self, rec: dict) -> None:
        if "frame" in rec:
            e = self.entries[rec["key"]]
            e.frames[int(rec["frame"]["index"])] = rec["frame"]
        elif "begin" in rec:
            b = rec["begin"]
            old = self.entries.get(b["key"])
            if old is None or old.folder != b["folder"]:
                self.entries[b["key"]] = Entry(b["key"], int(b["segment"]), b["folder"], int(b["images"]))
        elif "done" in rec:
            self.entries[rec["done"]].status = "done"

    # ------------------------------------------------------------ writing (one thread)

    def _append(self, rec: dict) -> None:
        if self._journal is None:
            self._journal = open_append(self.out_dir / JOURNAL_FILE, "render journal")
        line = (dumps_strict(rec, indent=None) + "\n").encode("utf-8")
        if faults.hit("journal.torn"):
            self._journal.write(line[: len(line) // 2])
            self._journal.flush()
            faults.kill()
        with space_for(self.out_dir):
            self._journal.write(line)
            self._journal.flush()
        faults.point("journal.appended")
        self._journal_bytes += len(line)
        self.bytes_written += len(line)

    def begin(self, k: int, key: str, images: int) -> Entry:
        """The entry segment ``k`` renders into (an existing partial one is continued)."""
        e = self.entries.get(key)
        if e is None or e.images != images or e.folder != segment_folder(k, key):
            e = Entry(key, k, segment_folder(k, key), images)
            self.entries[key] = e
            self._append({"begin": {"key": key, "segment": k, "folder": e.folder, "images": images}})
        e.status = "partial"
        e.used = self.generation
        return e

    def add_image(self, key: str, frame: dict) -> None:
        """Record a frame whose file is already on disk."""
        self.entries[key].frames[frame["index"]] = frame
        self._append({"key": key, "frame": frame})
        self.maybe_compact()

    def finish(self, key: str) -> None:
        self.entries[key].status = "done"
        self._append({"done": key})

    def use(self, key: str) -> None:
        self.entries[key].used = self.generation

    def maybe_compact(self) -> None:
        """Fold the journal into the manifest once it has grown as large as the manifest."""
        if self._journal_bytes > max(self._manifest_bytes, 64 * 1024):
            self.compact()

    def compact(self, status: str | None = None) -> None:
        """Write ``manifest.json`` with everything known, then start the journal again."""
        if status is not None:
            self.header["status"] = status
        doc = {
            "version": MANIFEST_VERSION,
            "kind": MANIFEST_KIND,
            "engine": __version__,
            **self.header,
            "generation": self.generation,
            "segments": [{**s, "status": self._status(s["key"])} for s in self.segments],
            "cache": {k: e.to_json() for k, e in self.entries.items()},
        }
        text = dumps_strict(doc) + "\n"
        write_bytes_atomic(self.out_dir / MANIFEST_FILE, text.encode("utf-8"), point="manifest")
        self._manifest_bytes = len(text.encode("utf-8"))
        self.bytes_written += self._manifest_bytes
        # A kill between the two steps replays records the manifest already holds: harmless.
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        (self.out_dir / JOURNAL_FILE).unlink(missing_ok=True)
        self._journal_bytes = 0

    def _status(self, key: str) -> str:
        e = self.entries.get(key)
        return "pending" if e is None else e.status

    def prune(self, live: set[str], cap_bytes: int | None = None) -> None:
        """Keep recent other takes, drop the rest: entries not in the plan, least recently used first.

        Segments the plan no longer uses (an earlier take or prompt, a moved cut) stay on disk while their
        frames add up to at most ``cap_bytes`` (default: as much as the plan's own frames, and at least
        1 GiB), so switching back to an earlier take re-uses its frames. Only m2v's own folders are deleted.
        """
        size = {k: sum(int(f.get("bytes", 0)) for f in e.frames.values()) for k, e in self.entries.items()}
        if cap_bytes is None:
            cap_bytes = max(DEFAULT_STALE_CAP, sum(size[k] for k in live if k in size))
        stale = sorted((k for k in self.entries if k not in live), key=lambda k: self.entries[k].used)
        total = sum(size[k] for k in stale)
        for key in stale:
            if total <= cap_bytes:
                break
            total -= size[key]
            e = self.entries[key]
            folder = self.out_dir / e.folder
            # Only m2v's own segment folder, directly inside the render folder, and a real one (not a link).
            if own_folder(key, e.segment, e.folder) and entry_kind(folder) == "folder":
                shutil.rmtree(folder, ignore_errors=True)
            del self.entries[key]

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _read_manifest(path: Path) -> dict:
    raw = read_regular(path, "render manifest", MAX_JSON_BYTES, follow=False)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError("the render manifest is damaged; choose another output folder", path) from None
    try:
        check_document(data, MANIFEST_KIND, MANIFEST_VERSION)
    except ValueError as e:
        raise InputError(f"{e}; choose another output folder", path) from None
    return data


def load_render(out_dir: str | Path) -> RenderStore:
    """A finished or partial render's record, for readers (export): manifest plus journal, read only."""
    out_dir = Path(out_dir)
    if entry_kind(out_dir / MANIFEST_FILE) is None:
        raise InputError("no render here (no manifest.json): render first", out_dir)
    data = _read_manifest(out_dir / MANIFEST_FILE)
    store = RenderStore.open(out_dir, {}, repair=False)
    store.header = {k: v for k, v in data.items() if k not in ("cache", "segments", "generation")}
    store.segments = data.get("segments") or []
    return store

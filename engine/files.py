"""Files the engine writes: atomic writes, hashes, leftovers of crashes, output paths, a folder lock.

Every file m2v writes appears complete under its final name or not at all:
it is written to a temporary name ending in :data:`engine.protocol.TEMP_SUFFIX`
in the same folder and renamed. A process killed mid-write leaves only such a
temporary file, which :func:`remove_temp_files` clears on the next start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from pathlib import Path

from engine import faults
from engine.errors import InputError
from engine.protocol import TEMP_SUFFIX

_UMASK: int | None = None


def _file_mode() -> int:
    """Mode for new files: what ``open()`` would give under the user's umask (mkstemp forces 0600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False, point: str = "file") -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    ``durable`` also flushes the file to disk before the rename (for records
    that later writes depend on, like a frame before its journal line).
    ``point`` names the write for the crash tests (:mod:`engine.faults`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        faults.point(f"{point}.written")
        os.replace(tmp, path)
        faults.point(f"{point}.renamed")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dumps_strict(data: object, indent: int | None = 1) -> str:
    """JSON text that is JSON: NaN and infinities are refused, not written as ``NaN``."""
    return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)


def write_json_atomic(data: object, path: str | Path) -> None:
    """Strict JSON (no NaN or infinity), written atomically."""
    write_bytes_atomic(path, (dumps_strict(data) + "\n").encode("utf-8"))


def read_json(path: str | Path, what: str) -> object:
    """Parse a JSON file; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path)
    if path.is_dir():
        raise InputError(f"is a folder, not a {what}", path)

    try:
        # NaN and Infinity parse (as Python does); the document's validator names the field that holds one.
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid {what} ({str(e)[:160]})", path) from None
    except OSError as e:
        raise InputError(f"cannot read the {what} ({e.strerror})", path) from None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remove_temp_files(folder: str | Path, recursive_into: tuple[str, ...] = ()) -> int:
    """Delete m2v's temporary files left in ``folder`` (and its sub-folders starting with the given prefixes).

    Only names m2v itself makes (``.<name>.<hex>.m2v-tmp``) are touched. Returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    dirs = [folder] + [d for d in folder.iterdir() if d.is_dir() and d.name.startswith(recursive_into)]
    n = 0
    for d in dirs:
        for p in d.glob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def check_output_file(path: str | Path, flag: str) -> Path:
    """A path a command will write a file to: not a folder, its parent a folder (created if missing) and writable.

    Checked before any work, so a bad ``-o`` fails at once, not after a render or an export.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{flag} names a folder; give a file name", path)
    parent = path.parent
    for up in [parent, *parent.parents]:
        if up.exists():
            if not up.is_dir():
                raise InputError(f"{flag}: {up} is a file, so nothing can be written under it", path)
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag}: cannot create the folder {parent} ({e.strerror})", path) from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag}: the folder {parent} is not writable", path)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag}: the file exists and is not writable", path)
    return path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """A folder a command will write into: not a file, not under a file, writable (not created here)."""
    path = Path(path).expanduser()
    for up in [path, *path.parents]:
        if up.exists():
            if not up.is_dir():
                what = "is a file" if up == path else f"is under {up}, which is a file"
                raise InputError(f"{flag} {what}; give a folder", path)
            if not os.access(up, os.W_OK | os.X_OK):
                raise InputError(f"{flag}: {up} is not writable", path)
            break
    return path


def check_number(
    value: object,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    lo_open: bool = False,
    path: str | Path | None = None,
) -> float | int:
    """A number from the user or a file: finite, in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), integral if asked.

    Raises
    ------
    InputError
        Naming ``name`` (a flag or a field) and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}", path)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}", path)
    if integer and value != int(value):
        raise InputError(f"{name} must be a whole number, got {value!r}", path)
    below = lo is not None and (value <= lo if lo_open else value < lo)
    if below or (hi is not None and value > hi):
        lo_txt = "" if lo is None else (f"above {lo:g}" if lo_open else f"at least {lo:g}")
        hi_txt = "" if hi is None else f"at most {hi:g}"
        raise InputError(f"{name} must be {' and '.join(t for t in (lo_txt, hi_txt) if t)}, got {value!r}", path)
    return int(value) if integer else float(value)


class FolderLock:
    """An exclusive lock on a render folder, so two renders never write into one folder at once."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / name
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(self._fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise InputError(
                "another m2v render is writing into this folder; wait for it, or choose another folder",
                self.path.parent,
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

"""Files the engine writes: atomic writes, hashes, leftovers of crashes, output paths, a folder lock.

Every file m2v writes appears complete under its final name or not at all:
it is written to a temporary name ending in :data:`engine.protocol.TEMP_SUFFIX`
in the same folder and renamed. A process killed mid-write leaves only such a
temporary file, which :func:`remove_temp_files` clears on the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import stat
import sys
from pathlib import Path

from engine import faults
from engine.errors import InputError
from engine.protocol import TEMP_SUFFIX

_UMASK: int | None = None

#: Largest file each kind of input may be (bytes): far above any real one, far below what exhausts memory.
MAX_TEXT_BYTES = 64 << 20  # lyrics
MAX_JSON_BYTES = 1 << 30  # plans, segment settings, render manifests

#: m2v's own temporary names, exactly as :func:`temp_name` makes them (nothing else is ever deleted as one).
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))

#: Folders this process created (in order), so a failed command can remove them again (:func:`undo_created`).
_CREATED_DIRS: list[Path] = []
#: Files this process created that a failed command removes again.
_CREATED_FILES: list[Path] = []


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
    make_dirs(path.parent)
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


def check_input_file(path: str | Path, what: str, max_bytes: int | None = None) -> Path:
    """An input the command will read: an existing regular file, at most ``max_bytes`` long.

    FIFOs, devices and sockets are refused before they are opened (reading one could hang or never end).
    """
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as e:
        raise InputError(f"cannot read the {what} ({e.strerror})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a folder, not a {what}", path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is not a regular file (a pipe, device or socket), so it cannot be the {what}", path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"the {what} is {st.st_size / 1e6:.0f} MB, more than a {what} can be", path)
    return path


def loads_json(text: str | bytes, what: str, path: str | Path) -> object:
    """Parse JSON text; errors (bad syntax, absurd nesting) name the file."""
    try:
        # NaN and Infinity parse (as Python does); the document's validator names the field that holds one.
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid {what} ({str(e)[:160]})", path) from None
    except RecursionError:
        raise InputError(f"not a valid {what} (nested too deep)", path) from None


def read_json(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Parse a JSON file (a bounded regular file); errors name the file."""
    path = check_input_file(path, what, max_bytes)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the {what} ({e.strerror})", path) from None
    return loads_json(raw, what, path)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remove_temp_files(folder: str | Path, recursive_into: tuple[str, ...] = (), name: str | None = None) -> int:
    """Delete m2v's temporary files left in ``folder`` (and its sub-folders starting with the given prefixes).

    Only names m2v itself makes (exactly ``.<name>.<8 hex digits>.m2v-tmp``, regular files) are touched;
    with ``name``, only those of that one file. Returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    dirs = [folder] + [d for d in folder.iterdir() if d.is_dir() and d.name.startswith(recursive_into)]
    n = 0
    for d in dirs:
        for p in d.glob(f".*{TEMP_SUFFIX}"):
            if name is not None and not p.name.startswith(f".{name}."):
                continue
            if _TEMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                n += 1
    return n


def make_dirs(folder: str | Path) -> None:
    """``mkdir -p``, remembering the folders it made so that :func:`undo_created` can remove them."""
    folder = Path(folder)
    missing = []
    for up in [folder, *folder.parents]:
        if up.is_dir():
            break
        missing.append(up)
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        _CREATED_DIRS.append(d)


def created_file(path: str | Path) -> None:
    """Note a file this command made (that did not exist before), for :func:`undo_created`."""
    _CREATED_FILES.append(Path(path))


def undo_created() -> None:
    """After a failed command: remove the files it noted and the folders it made, if they are empty now.

    A folder that holds anything else (a finished frame, a file a user put there meanwhile) stays.
    """
    for p in reversed(_CREATED_FILES):
        try:
            if p.is_file():
                p.unlink()
        except OSError:
            pass
    for d in reversed(_CREATED_DIRS):
        with contextlib.suppress(OSError):
            d.rmdir()
    _CREATED_FILES.clear()
    _CREATED_DIRS.clear()


def keep_created() -> None:
    """What this command created so far is kept whatever happens next (finished work, say)."""
    _CREATED_FILES.clear()
    _CREATED_DIRS.clear()


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a.expanduser()) == os.path.abspath(b.expanduser())


def check_not_inputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse an output that is one of the command's inputs (or another of its outputs).

    Compared as files (hard links and symbolic links included) when both exist, else as absolute paths.
    """
    outs = [(f, Path(p)) for f, p in outputs.items() if p]
    ins = [(f, Path(p)) for f, p in inputs.items() if p]
    for i, (flag, out) in enumerate(outs):
        for what, src in ins:
            if _same_file(out, src):
                raise InputError(f"{flag} names the {what}, which this command reads; choose another name", out)
        for flag2, out2 in outs[i + 1 :]:
            if _same_file(out, out2):
                raise InputError(f"{flag} and {flag2} name the same file; choose two names", out)


def check_output_file(path: str | Path, flag: str) -> Path:
    """A path a command will write a file to: not a folder, not a pipe or device, under a writable folder.

    Checked before any work, so a bad ``-o`` fails at once, not after a render or an export. Nothing is
    created here: the folder is made when the file is written (:func:`make_dirs`).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{flag} names a folder; give a file name", path)
    if path.exists() and not path.is_file():
        raise InputError(f"{flag} names a pipe, device or socket, not a file", path)
    parent = path.parent
    for up in [parent, *parent.parents]:
        if up.exists():
            if not up.is_dir():
                raise InputError(f"{flag}: {up} is a file, so nothing can be written under it", path)
            if not os.access(up, os.W_OK | os.X_OK):
                raise InputError(f"{flag}: the folder {up} is not writable", path)
            break
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
        raise InputError(f"{name} must be a number, got {_short_repr(value)}", path)
    if isinstance(value, int) and value.bit_length() > 1000:
        # A 400-digit integer from a file: no float holds it (comparing it would overflow), and no field needs it.
        raise InputError(f"{name} is out of range (a {len(str(abs(value)))}-digit number)", path)
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


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class FolderLock:
    """An exclusive lock on a render folder, so two renders never write into one folder at once.

    The lock file exists only while the lock is held: it is removed (still locked) on release, so a refused
    or finished command leaves no trace. A process that locked a file another one removed meanwhile sees
    that the name now points elsewhere and counts as refused.
    """

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
        try:
            current = os.stat(self.path).st_ino
        except OSError:
            current = None
        if os.name != "nt" and current != os.fstat(self._fd).st_ino:
            os.close(self._fd)  # the holder released and removed it between our open and our lock
            self._fd = None
            raise InputError(
                "another m2v render was writing into this folder just now; run again", self.path.parent
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            if os.name != "nt":
                self.path.unlink(missing_ok=True)  # while still held: see the class note
            os.close(self._fd)  # closing releases the lock
            self._fd = None
            if os.name == "nt":
                with contextlib.suppress(OSError):
                    self.path.unlink()


def cache_dir() -> Path:
    """``$M2V_CACHE``, else the platform's per-user cache folder."""
    env = os.environ.get("M2V_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "m2v" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "m2v"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "m2v"

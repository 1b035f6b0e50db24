"""Files the engine writes: atomic writes, hashes, leftovers of crashes, output paths, a folder lock.

Every file m2v writes appears complete under its final name or not at all:
it is written to a temporary name ending in :data:`engine.protocol.TEMP_SUFFIX`
in the same folder and renamed. A process killed mid-write leaves only such a
temporary file, which :func:`remove_temp_files` clears on the next start.
"""

from __future__ import annotations

import contextlib
import errno
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
from engine.protocol import TEMP_SUFFIX, check_document

_UMASK: int | None = None

#: Largest file each kind of input may be (bytes): far above any real one, far below what exhausts memory.
MAX_TEXT_BYTES = 64 << 20  # lyrics
MAX_JSON_BYTES = 1 << 30  # plans, segment settings, render manifests

#: Largest m2v-owned record or cache file read back (resume-point lists, caches, journals are far smaller).
MAX_CACHE_BYTES = 64 << 20
#: Largest frame file of a render read back (export): a 16k x 16k PNG is far smaller.
MAX_FRAME_BYTES = 1 << 30

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
    with space_for(path.parent):
        make_dirs(path.parent)
    tmp = temp_name(path)
    try:
        with space_for(path.parent):
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), _file_mode()
            )
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        faults.point(f"{point}.written")
        os.replace(tmp, path)  # replaces the name (a link there is replaced, never written through)
        faults.point(f"{point}.renamed")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class NoSpaceError(InputError, OSError):
    """The disk (or quota) is full: bad input's exit 2, naming the folder m2v was writing (ENOSPC names none)."""


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk or an exceeded quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NoSpaceError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space_message(folder: str | Path) -> str:
    return f"no space left on the device for {folder}"


@contextlib.contextmanager
def space_for(folder: str | Path):
    """A full disk inside the block becomes :class:`NoSpaceError` naming ``folder`` (exit 2, no traceback)."""
    try:
        yield
    except NoSpaceError:
        raise
    except Exception as e:
        if is_no_space(e):
            raise NoSpaceError(no_space_message(folder)) from None
        raise


def read_regular(path: str | Path, what: str, max_bytes: int, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else is an InputError naming the file.

    The file is opened without blocking (a FIFO put in its place can neither hang the open nor the read) and
    checked on the open descriptor, so what is checked is what is read. ``follow=False`` is for m2v's own
    records and caches: a symbolic link there is not m2v's file and is refused, never followed.
    """
    path = Path(path).expanduser()
    flags = os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0) | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"is a symbolic link, not m2v's {what}; m2v does not follow it", path) from None
        if e.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
            raise InputError(f"is not a regular file (a socket), so it cannot be the {what}", path) from None
        raise InputError(f"cannot read the {what} ({e.strerror})", path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"is a folder, not a {what}", path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is not a regular file (a pipe, device or socket), so it cannot be the {what}", path)
        if st.st_size > max_bytes:
            raise InputError(f"the {what} is {st.st_size / 1e6:.0f} MB, more than a {what} can be", path)
        chunks, total = [], 0
        while block := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(block)
            total += len(block)
            if total > max_bytes:  # grew while read
                raise InputError(f"the {what} is more than {max_bytes / 1e6:.0f} MB", path)
        return b"".join(chunks)
    except OSError as e:
        raise InputError(f"cannot read the {what} ({e.strerror})", path) from None
    finally:
        os.close(fd)


def read_cache_file(path: str | Path, max_bytes: int = MAX_CACHE_BYTES) -> bytes | None:
    """An m2v cache file's bytes, or None when it is missing or not a bounded regular file (never a link).

    A cache entry that fails its check is simply not used: it is measured or computed again.
    """
    try:
        return read_regular(path, "cache file", max_bytes, follow=False)
    except InputError:
        return None


def entry_kind(path: str | Path) -> str | None:
    """What is at ``path`` without following a link: None, ``file``, ``folder``, ``link`` or ``other``."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return "other"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "other"


_KIND_WORDS = {"link": "a symbolic link", "folder": "a folder", "file": "a file", "other": "a pipe, device or socket"}


def check_own_entry(path: str | Path, want: str, flag: str = "--out") -> None:
    """An entry m2v will write (``want``: ``file`` or ``folder``) is absent or already of that kind, never a link.

    Checked before any work, so an output name held by a folder, a pipe or a link fails at once (exit 2),
    not after a render, and nothing is ever written through a link.
    """
    kind = entry_kind(path)
    if kind is None or kind == want:
        return
    what = "file" if want == "file" else "folder"
    raise InputError(
        f"{flag}: m2v writes its {what} {Path(path).name} here, but this is {_KIND_WORDS[kind]}; "
        "move it, or choose another folder",
        path,
    )


def open_append(path: str | Path, what: str):
    """A binary file m2v appends to (a journal, an event log), opened without following a link.

    Created when missing; an existing entry must be a regular file (a link, folder or pipe is refused, naming it).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK, _file_mode())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"is a symbolic link; m2v never writes its {what} through a link", path) from None
        if e.errno in (errno.EISDIR, errno.ENXIO):
            raise InputError(f"is not a file, so m2v cannot write its {what} there", path) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        what_is = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
        raise InputError(f"is {what_is}, so m2v does not append its {what} to it", path)
    if _NONBLOCK:
        os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def open_replacing(path: str | Path):
    """A new, empty binary file under ``path``, put in place of whatever had that name (a log m2v writes as it goes)."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), _file_mode())
    try:
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return os.fdopen(fd, "wb")


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


def read_json(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES, follow: bool = True) -> object:
    """Parse a JSON file (a bounded regular file; ``follow=False``: never through a link); errors name the file."""
    path = Path(path).expanduser()
    return loads_json(read_regular(path, what, max_bytes, follow), what, path)


def check_input_document(doc: object, kind: str, version: int, path: str | Path) -> dict:
    """A user's document of ``kind`` and ``version`` (``engine.protocol.check_document``); errors name the file."""
    try:
        return check_document(doc, kind, version)
    except ValueError as e:
        raise InputError(str(e), path) from None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))  # a pipe never blocks the open
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # nor the read: only regular files are hashed
            raise InputError("is not a regular file (a folder, pipe, device or socket), so m2v cannot read it", path)
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
    # Only real sub-folders: a link named like m2v's segment folder points at someone else's files.
    dirs = [folder] + [d for d in folder.iterdir() if d.name.startswith(recursive_into) and entry_kind(d) == "folder"]
    n = 0
    for d in dirs:
        for p in d.glob(f".*{TEMP_SUFFIX}"):
            if name is not None and not p.name.startswith(f".{name}."):
                continue
            if _TEMP_NAME.fullmatch(p.name) and entry_kind(p) == "file":
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

    def _open(self) -> int:
        """The lock file: created new, or an earlier render's left-over regular file, never through a link.

        A lock-named entry that is not a plain file of m2v's (a link, a folder, a pipe, a hard link to another
        file) is someone else's: refused (exit 2) and left as it is.
        """
        flags = os.O_RDWR | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, _file_mode())
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise NoSpaceError(no_space_message(self.path.parent)) from None
            raise
        try:
            fd = os.open(self.path, flags)  # no O_CREAT: exactly the entry that is there
        except FileNotFoundError:
            raise InputError(
                "another m2v render was writing into this folder just now; run again", self.path.parent
            ) from None
        except OSError:
            fd = None
        if fd is not None:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                return fd
            os.close(fd)
        raise InputError(
            f"is not m2v's lock file ({_KIND_WORDS.get(entry_kind(self.path) or 'other', 'not a plain file')}); "
            "m2v leaves it alone: remove it, or choose another folder",
            self.path,
        )

    def __enter__(self) -> FolderLock:
        self._fd = self._open()
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
        if os.name != "nt" and not _same_inode(self.path, self._fd):
            os.close(self._fd)  # the holder released and removed it between our open and our lock
            self._fd = None
            raise InputError(
                "another m2v render was writing into this folder just now; run again", self.path.parent
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            if os.name != "nt" and _same_inode(self.path, self._fd):
                self.path.unlink(missing_ok=True)  # while still held: see the class note
            os.close(self._fd)  # closing releases the lock
            self._fd = None
            if os.name == "nt":
                with contextlib.suppress(OSError):
                    self.path.unlink()


def _same_inode(path: Path, fd: int) -> bool:
    """Whether ``path`` (not followed) is still the file open as ``fd``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)


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

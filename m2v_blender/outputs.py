"""Files the add-on writes in the output folder: by replacing their name, or appended without following a link.

No bpy: plain file handling, so the rules are the engine's (``engine/files.py``): a file m2v writes is
replaced as a whole (a temporary file in the same folder, then a rename), so a link a user put under one of
its names is replaced, never written through; the engine log is appended only when it is a plain file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from .errors import M2VError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_text_replacing(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) under ``path`` through a temporary file in its folder and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.m2v-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        os.replace(tmp, path)
    except OSError as e:
        raise M2VError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def open_log(path: Path):
    """The engine log, opened to append; a link, folder or pipe under its name is refused, never followed."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as e:
        raise M2VError(f"cannot write the engine log {path}: it is a link or not a file ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise M2VError(f"cannot write the engine log {path}: it is not a plain file")
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


def read_text_regular(path: Path, max_bytes: int = 1 << 30) -> str:
    """A UTF-8 file the engine wrote: a regular file of bounded size (a pipe in its place would hang Blender)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{st.st_size / 1e6:.0f} MB, too large")
        return f.read(max_bytes + 1).decode("utf-8")

"""Error types whose messages are shown to users as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: engine.stopping imports this before its handlers are in place, so no more
    from pathlib import Path


class InputError(Exception):
    """Bad input from the user: a file that cannot be used, or bad arguments.

    The command line maps this to exit code 2. The message names the file
    and says what is wrong in plain words.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class ExternalError(Exception):
    """Something outside m2v failed (a Ray cluster, say): exit 1 with this one line, no traceback.

    Not the user's input and not a defect of m2v's own code, so neither exit 2 nor "please report it".
    """

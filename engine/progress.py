"""Progress: protocol events as JSON lines on stdout (the add-on reads them), a bar on stderr for people."""

from __future__ import annotations

import json
import sys
import time
from typing import IO

from engine.protocol import make_event


class Progress:
    """Emit events; each is one JSON object on one line, flushed at once.

    Events and their fields are defined in :mod:`engine.protocol`. Errors are
    not echoed to stderr here: the command line prints each error once.
    """

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        bar: bool | None = None,
        segment_lines: bool = False,
    ):
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.bar = self.err.isatty() if bar is None else bar
        self.segment_lines = segment_lines
        self.t0 = time.monotonic()

    def emit(self, event: str, **fields) -> None:
        ev = make_event(event, t=round(time.monotonic() - self.t0, 3), **fields)
        self.out.write(json.dumps(ev, ensure_ascii=False, allow_nan=False) + "\n")
        self.out.flush()
        if self.bar and event == "image":
            done, total = ev["done"], max(1, ev["total"])
            n = int(30 * done / total)
            eta = ev["eta_s"]
            self.err.write(
                f"\r[{'#' * n}{'.' * (30 - n)}] {done}/{total} segment {ev['segment'] + 1}"
                + (f" ETA {eta:.0f}s" if eta is not None else "")
                + "   "
            )
            self.err.flush()
        elif self.bar and event in ("done", "cancelled"):
            self.err.write("\n")
        if self.segment_lines and event == "segment_end":
            self.err.write(
                f"segment {ev['segment'] + 1}: {len(ev['files'])} images"
                + (" (reused)" if ev["reused"] else "")
                + f", {ev['done']}/{ev['total']} done\n"
            )
            self.err.flush()
        if event == "warning":
            self.err.write(f"warning: {ev['message']}\n")
            self.err.flush()


class Collect:
    """A progress sink that keeps events in a list (tests, benchmarks, embedding)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: str, **fields) -> None:
        self.events.append(make_event(event, **fields))

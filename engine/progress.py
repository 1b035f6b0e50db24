"""Progress as JSON lines on stdout (the add-on reads them), a bar on stderr for people."""

from __future__ import annotations

import json
import sys
import time
from typing import IO


class Progress:
    """Emit events; each is one JSON object on one line, flushed at once.

    Events: ``start``, ``segment_start``, ``image``, ``segment_end``, ``warning``,
    ``error``, ``cancelled``, ``done``.
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
        fields = {"event": event, "t": round(time.monotonic() - self.t0, 3), **fields}
        self.out.write(json.dumps(fields, ensure_ascii=False) + "\n")
        self.out.flush()
        if self.bar and event == "image":
            done, total = fields.get("done", 0), max(1, fields.get("total", 1))
            n = int(30 * done / total)
            eta = fields.get("eta_s")
            self.err.write(
                f"\r[{'#' * n}{'.' * (30 - n)}] {done}/{total} segment {fields.get('segment')}"
                + (f" ETA {eta:.0f}s" if eta is not None else "")
                + "   "
            )
            self.err.flush()
        elif self.bar and event in ("done", "cancelled"):
            self.err.write("\n")
        if self.segment_lines and event == "segment_end":
            self.err.write(
                f"segment {fields['segment'] + 1}: {fields['images']} images"
                + (" (reused)" if fields.get("reused") else "")
                + f", {fields['done']}/{fields['total']} done\n"
            )
            self.err.flush()
        if event in ("warning", "error"):
            self.err.write(f"{event}: {fields.get('message', '')}\n")
            self.err.flush()

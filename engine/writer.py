"""The render's writer thread: frames, journal, snapshots and progress, off the step's critical path.

The render thread hands each finished image to :class:`FrameWriter` and
goes on with the next step at once. The writer encodes the PNG, hashes it,
writes it atomically, appends its journal line and prints the ``image``
event, in order; snapshots and segment ends pass through the same queue, so
every event describes files that are already on disk. The queue is bounded:
when the disk is slower than the model, the render thread waits instead of
holding images in memory without limit.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
from pathlib import Path

import numpy as np

from engine.files import write_bytes_atomic
from engine.manifest import RenderStore
from engine.snapshots import encode_state, save_snapshot

_STOP = object()


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an ``(h, w, 3)`` uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class FrameWriter:
    """A thread that owns the render folder's files while a render runs.

    Parameters
    ----------
    store : RenderStore
        The folder's cache (journal and manifest); only this thread writes it.
    progress : object
        Has ``emit(event, **fields)``.
    state_dir : Path
        Where snapshots go.
    maxsize : int
        Images that may wait in the queue before the render thread blocks.
    """

    def __init__(self, store: RenderStore, progress, state_dir: Path, maxsize: int = 8) -> None:
        self.store, self.progress, self.state_dir = store, progress, state_dir
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        #: Bytes of frames and snapshots written, and how many snapshots (the benchmark reports them).
        self.bytes_written = self.frame_bytes = self.snapshot_bytes = self.snapshots = 0
        self._thread = threading.Thread(target=self._run, name="m2v-writer", daemon=True)

    def __enter__(self) -> FrameWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the render thread's side

    def _put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def frame(self, key: str, segment: int, record: dict, rgb: np.ndarray, event: dict) -> None:
        """Queue a finished image: ``record`` gets ``sha256`` and ``bytes``; ``event`` is the ``image`` event."""
        self._put(("frame", key, segment, record, rgb, event))

    def snapshot(self, key: str, images: int, state: dict) -> None:
        """Queue a resume point (``state`` must already be a CPU copy)."""
        self._put(("snapshot", key, images, state))

    def call(self, fn, *args, **kw) -> None:
        """Run ``fn`` on the writer thread, after everything queued before it."""
        self._put(("call", fn, args, kw))

    def emit(self, event: str, **fields) -> None:
        self._put(("call", self.progress.emit, (event,), fields))

    def close(self) -> None:
        """Write everything queued, stop the thread, re-raise its error if it had one."""
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join()
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # keep draining so the render thread never blocks on a dead writer
            try:
                self._handle(item)
            except BaseException as e:  # noqa: BLE001 - handed to the render thread, which raises it
                self.error = e

    def _handle(self, item) -> None:
        kind = item[0]
        if kind == "frame":
            _, key, segment, record, rgb, event = item
            data = png_bytes(rgb)
            write_bytes_atomic(self.store.out_dir / record["file"], data, durable=True, point="frame")
            self.bytes_written += len(data)
            self.frame_bytes += len(data)
            record = {**record, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            self.store.add_frame(key, record)
            self.progress.emit("image", **event)
        elif kind == "snapshot":
            _, key, images, state = item
            data = encode_state(state)
            save_snapshot(self.state_dir, key, images, data)
            self.bytes_written += len(data)
            self.snapshot_bytes += len(data)
            self.snapshots += 1
        elif kind == "call":
            _, fn, args, kw = item
            fn(*args, **kw)


class Clock:
    """Seconds since the last snapshot, for the bounded snapshot rate."""

    def __init__(self) -> None:
        self.t = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t

    def reset(self) -> None:
        self.t = time.monotonic()

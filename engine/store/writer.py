"""The render's writer thread: frames, journal, snapshots and progress, off the step's critical path.

The render thread hands each finished image to :class:`ImageWriter` and
goes on with the next step at once. Encoder threads (see
:func:`default_encoders`) turn images into PNG bytes and their SHA-256, in
parallel where there are cores for it (zlib and hashlib release the GIL);
the writer thread then writes each frame atomically, appends its journal
line and prints the ``image`` event, strictly in order. Snapshots and segment ends pass through the same queue,
so every event describes files that are already on disk.

Frames in flight are bounded (``maxsize``): when the disk or the encoders
are slower than the model, the render thread waits instead of holding
images in memory without limit. Calls and snapshots take no frame slot, so
a segment end never makes the render thread wait for a frame.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.files import write_bytes_atomic
from engine.store.manifest import RenderStore
from engine.store.snapshots import encode_state, save_snapshot

_STOP = object()


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an ``(h, w, 3)`` uint8 image, deflated with zlib's RLE strategy.

    On 512x512 photographs RLE encodes 3-4 times faster than zlib's default
    (17-20 ms against 45-80 ms on one core) for files 0-12 % larger:
    after PNG's row filters, textured images have few long matches to find.
    The bytes are deterministic, so a resumed render's frames still equal an
    uninterrupted one's.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False, compress_type=zlib.Z_RLE)
    return buf.getvalue()


def encode_image(rgb: np.ndarray) -> tuple[bytes, str]:
    """PNG bytes of an image and their hex SHA-256 (runs on an encoder thread)."""
    data = png_bytes(rgb)
    return data, hashlib.sha256(data).hexdigest()


def default_encoders() -> int:
    """Encoder threads: one per core but one, up to 4.

    One core stays with the render thread, which must wake the moment its step ends; one encoder at
    about 20 ms a 512x512 frame already keeps up with 25 images a second.
    """
    # The cores this process may run on (affinity, cpusets), not the machine's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores - 1))


class ImageWriter:
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
        Images that may be in flight (queued, encoding or being written) before the render thread blocks.
    encoders : int, optional
        Threads that encode and hash frames (default :func:`default_encoders`).
    """

    def __init__(
        self, store: RenderStore, progress, state_dir: Path, maxsize: int = 8, encoders: int | None = None
    ) -> None:
        self.store, self.progress, self.state_dir = store, progress, state_dir
        # Unbounded: the frame slots bound memory. Calls are small, and each snapshot follows a frame
        # (even at --snapshot-every 0), so at most about maxsize + 1 of them wait here.
        self.queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(maxsize)
        self.encoders = encoders or default_encoders()
        self._pool = ThreadPoolExecutor(self.encoders, thread_name_prefix="m2v-png")
        self.error: BaseException | None = None
        #: Bytes of frames and snapshots written, and how many snapshots (the benchmark reports them).
        self.bytes_written = self.image_bytes = self.snapshot_bytes = self.snapshots = 0
        self._thread = threading.Thread(target=self._serve, name="m2v-writer", daemon=True)

    def __enter__(self) -> ImageWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the render thread's side

    def _put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def image(self, key: str, segment: int, frame: dict, rgb: np.ndarray, event: dict) -> None:
        """Queue a finished image: ``frame`` (its manifest entry) gets ``sha256`` and ``bytes``; ``event`` is the ``image`` event.

        Blocks while ``maxsize`` frames are in flight (back-pressure); the encoding starts at once.
        """
        if self.error is not None:
            raise self.error
        self._slots.acquire()
        if self.error is not None:  # the writer died while we waited: no more encoding, no more steps
            self._slots.release()
            raise self.error
        try:
            encoded = self._pool.submit(encode_image, rgb)
        except BaseException:
            self._slots.release()
            raise
        self.queue.put(("image", key, segment, frame, encoded, event))  # the writer frees the slot

    def encoded_frame(self, key: str, segment: int, frame: dict, png: bytes, digest: str, event: dict) -> None:
        """Queue an image already encoded elsewhere (a Ray worker): as :meth:`image`, without the encoding."""
        done: Future = Future()
        done.set_result((png, digest))
        if self.error is not None:
            raise self.error
        self._slots.acquire()
        self.queue.put(("image", key, segment, frame, done, event))  # the writer frees the slot

    def snapshot(self, key: str, images: int, state: dict | bytes) -> None:
        """Queue a resume point (``state`` must already be a CPU copy, or its encoded bytes)."""
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
        self._pool.shutdown(wait=True)
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------ the writer thread

    def _serve(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            try:
                if self.error is None:  # else drain, so the render thread never blocks on a dead writer
                    self._handle(item)
            except BaseException as e:  # noqa: BLE001 - handed to the render thread, which raises it
                self.error = e
            finally:
                if item[0] == "image":
                    self._slots.release()

    def _handle(self, item) -> None:
        kind = item[0]
        if kind == "image":
            self._write_image(*item[1:])
        elif kind == "snapshot":
            _, key, images, state = item
            data = state if isinstance(state, bytes) else encode_state(state)
            save_snapshot(self.state_dir, key, images, data)
            self.bytes_written += len(data)
            self.snapshot_bytes += len(data)
            self.snapshots += 1
        elif kind == "call":
            _, fn, args, kw = item
            fn(*args, **kw)

    def _write_image(self, key: str, segment: int, frame: dict, encoded: Future, event: dict) -> None:
        """The frame file, durable, then its journal line, then its event: a line never names a missing file."""
        data, digest = encoded.result()
        write_bytes_atomic(self.store.out_dir / frame["file"], data, durable=True, point="frame")
        self.bytes_written += len(data)
        self.image_bytes += len(data)
        self.store.add_image(key, {**frame, "sha256": digest, "bytes": len(data)})
        self.progress.emit("image", **event)


class Clock:
    """Seconds since the last snapshot, for the bounded snapshot rate."""

    def __init__(self) -> None:
        self.t = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t

    def reset(self) -> None:
        self.t = time.monotonic()

"""One latent chain's images as messages: what a Ray worker runs and streams back to the render's driver.

:class:`ChainRunner` walks a chain's segments exactly as the local render
loop does (:class:`engine.render.jobs.loop.RenderJob`): the same seeks, the same
one-image look-ahead, the same decode before a jump, so its frames are the
local render's frames. Instead of writing them it yields messages, in the
order the local loop would write them:

- ``("begin", k, first)``: segment ``k`` starts (at image ``first``);
- ``("frame", k, key, i, png, sha256, loss, info)``: a finished image, encoded;
- ``("snapshot", key, images, data)``: a resume point (``torch.save`` bytes);
- ``("finish", k)``: segment ``k``'s images are all out;
- ``("warning", text)``; ``("stopped",)`` after a stop; ``("end",)``.

A resume point follows the frame before it, so the driver never holds a
resume point ahead of the frames it has written.
"""

from __future__ import annotations

import threading
from pathlib import Path


class _Pending:
    def __init__(self, k: int, key: str, i: int, loss: float, info: dict) -> None:
        self.k, self.key, self.i, self.loss, self.info = k, key, i, loss, info
        self.after: list = []


class ChainRunner:
    """Runs one chain's work on a model source; see the module.

    Parameters
    ----------
    source : engine.render.sources.model.ModelSource
        With ``starts`` set to the plan's chain starts.
    keys : list of str
        Every segment's cache key.
    state_dir : Path
        Where the resume points this chain may start from lie (the worker's own copy).
    snapshot_every : float
        Seconds between resume points.
    stop : threading.Event
        Set to finish the current image, save a resume point and return.
    """

    def __init__(self, source, keys: list[str], state_dir: Path, snapshot_every: float, stop: threading.Event):
        self.source, self.keys, self.state_dir = source, keys, state_dir
        self.every, self.stop = snapshot_every, stop
        self.pending: _Pending | None = None

    def _then(self, msg: tuple) -> list:
        """``msg`` after the pending frame (or now, when none is pending)."""
        if self.pending is not None:
            self.pending.after.append(msg)
            return []
        return [msg]

    def _resolve(self, rgb) -> list:
        from engine.store.writer import encode_image

        p, self.pending = self.pending, None
        if p is None:
            return []
        png, digest = encode_image(rgb)
        return [("frame", p.k, p.key, p.i, png, digest, p.loss, p.info), *p.after]

    def _flush(self) -> list:
        return self._resolve(self.source.decode()) if self.pending is not None else []

    def run(self, todo: list[tuple[int, str, int, int]]):
        """Messages for ``todo``: ``(segment, key, first image, images)`` of the chain's segments, in order."""
        from engine.store.snapshots import encode_state
        from engine.store.writer import Clock

        # Plain loops, not ``yield from``: Ray drives the generator with send(), which lists lack.
        clock, warnings = Clock(), []
        if self.stop.is_set():
            yield ("stopped",)
            return
        for k, key, first, n in todo:
            for m in self._then(("begin", k, first)):
                yield m
            if first < n and not self.source.at(k, first):
                for m in self._flush():  # the latent is about to jump: the pending frame needs its own decode
                    yield m
                self.source.seek(k, first, self.keys, self.state_dir, warnings.append)
                for w in warnings:
                    yield ("warning", w)
                warnings.clear()
            for i in range(first, n):
                rgb, loss = self.source.run_image(k, i)
                for m in self._resolve(rgb):  # the previous image (look-ahead)
                    yield m
                self.pending = _Pending(k, key, i, loss, self.source.image_info(k, i))
                stop = self.stop.is_set()
                if stop or clock.elapsed() >= self.every:
                    self.pending.after.append(("snapshot", key, i + 1, encode_state(self.source.state())))
                    clock.reset()
                if stop:
                    for m in self._flush():
                        yield m
                    yield ("stopped",)
                    return
            for m in self._then(("finish", k)):
                yield m
        for m in self._flush():
            yield m
        yield ("end",)

"""The one producer of a render's messages: a plan's images in the order their records must be written.

A render here, its chains here, and each chain on a Ray worker all run
:func:`produce`; what differs is only where its messages go (the writer,
journal and manifest here; the Ray transport back to the driver, which
routes them to the same writer). The ordering rules live here and nowhere
else:

- **look-ahead**: an image is the latent after its own steps, and the next
  image's first forward pass decodes exactly that latent, so a model source
  returns the *previous* image from ``make_image``: an image waits (is
  *pending*) until the next one has run, or is decoded on its own before the
  latent jumps (a seek), on a stop and at the end;
- whatever follows a pending image (a segment finished, the next one begun, a
  warning) is held until that image is out, so a record never names a frame
  that is not yet written;
- a **resume point** is taken after an image, at most every ``every``
  seconds and on a stop; it may go out before the pending image (a resume
  point ahead of the recorded frames is never used, see
  :mod:`engine.store.snapshots`);
- a **stop** is looked at before the first image and after each image: the
  current image is finished, saved with a resume point, and the producer ends
  with :class:`Stopped`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.store.writer import Clock


@dataclass(frozen=True)
class Work:
    """What one segment needs: nothing (``reused``) or its images from ``first`` on."""

    k: int
    key: str
    first: int
    images: int
    reused: bool


@dataclass(frozen=True)
class SegmentReused:
    """Segment ``k``'s frames are all on disk under its key: nothing to render."""

    k: int
    key: str
    images: int


@dataclass(frozen=True)
class SegmentBegun:
    """Segment ``k`` starts, at image ``first`` (a resumed segment keeps the images before it)."""

    k: int
    key: str
    first: int
    images: int


@dataclass(frozen=True)
class ImageReady:
    """Image ``i`` of segment ``k``: its pixels (``rgb``, or already encoded: ``png`` and its ``sha256``).

    ``seconds``: how long its steps took on the producer's side (the ETA).
    """

    k: int
    key: str
    i: int
    loss: float | None
    info: dict = field(default_factory=dict)
    seconds: float = 0.0
    rgb: np.ndarray | None = None
    png: bytes | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ResumePoint:
    """The latent and optimiser after ``images`` images of the segment with ``key`` (a CPU copy, or its bytes)."""

    key: str
    images: int
    state: dict | bytes


@dataclass(frozen=True)
class SegmentFinished:
    """Segment ``k``'s images are all out."""

    k: int
    key: str


@dataclass(frozen=True)
class Warned:
    message: str


@dataclass(frozen=True)
class Stopped:
    """Asked to stop: the current image is out with a resume point; the rest is left for the next render."""


Message = SegmentReused | SegmentBegun | ImageReady | ResumePoint | SegmentFinished | Warned | Stopped


def produce(
    source, work: list[Work], keys: list[str], state_dir: Path, every: float, stop: Callable[[], bool]
) -> Iterator[Message]:
    """The messages of ``work`` in the order they are written (see the module).

    Parameters
    ----------
    source : engine.render.sources.model.ModelSource or engine.render.sources.cards.CardSource
        Runs images (``make_image``), seeks, decodes and hands out its state.
    work : list of Work
        The segments, in order (a render's, or one chain's).
    keys : list of str
        Every segment's cache key (a seek follows the chain of keys to a resume point).
    state_dir : Path
        Where the resume points a seek may start from lie.
    every : float
        Seconds of rendering between resume points.
    stop : callable
        True once the render is asked to stop.
    """
    return _Producer(source, keys, state_dir, every, stop).messages(work)


class _Producer:
    def __init__(self, source, keys: list[str], state_dir: Path, every: float, stop: Callable[[], bool]) -> None:
        self.source, self.keys, self.state_dir, self.every, self.stop = source, keys, state_dir, every, stop
        self.pending: ImageReady | None = None
        self.after: list[Message] = []

    def _then(self, msg: Message) -> list[Message]:
        """``msg`` after the pending image (now, when none is pending)."""
        if self.pending is not None:
            self.after.append(msg)
            return []
        return [msg]

    def _resolve(self, rgb: np.ndarray) -> list[Message]:
        """The pending image's pixels have arrived: it, then what waited for it."""
        p, self.pending = self.pending, None
        if p is None:
            return []
        out, self.after = [replace(p, rgb=rgb), *self.after], []
        return out

    def _flush(self) -> list[Message]:
        """Decode the pending image now (before a jump of the latent, a stop or the end)."""
        return self._resolve(self.source.decode()) if self.pending is not None else []

    def messages(self, work: list[Work]) -> Iterator[Message]:
        src, clock = self.source, Clock()
        if self.stop():
            yield Stopped()
            return
        for w in work:
            if w.reused:
                yield from self._then(SegmentReused(w.k, w.key, w.images))
                continue
            yield from self._then(SegmentBegun(w.k, w.key, w.first, w.images))
            if w.first < w.images and src.stateful and not src.at(w.k, w.first):
                yield from self._flush()  # the latent is about to jump: the pending image needs its own decode
                warnings: list[str] = []
                src.seek(w.k, w.first, self.keys, self.state_dir, warnings.append)
                for text in warnings:
                    yield Warned(text)
            for i in range(w.first, w.images):
                t0 = time.monotonic()
                rgb, loss = src.make_image(w.k, i)
                image = ImageReady(w.k, w.key, i, loss, src.image_info(w.k, i), time.monotonic() - t0)
                if src.lookahead:
                    yield from self._resolve(rgb)  # the previous image, decoded by this image's first step
                    self.pending = image
                else:
                    self.pending = image
                    yield from self._resolve(rgb)
                stopping = self.stop()
                if src.stateful and (stopping or clock.elapsed() >= self.every):
                    yield ResumePoint(w.key, i + 1, src.state())
                    clock.reset()
                if stopping:
                    yield from self._flush()
                    yield Stopped()
                    return
            yield from self._then(SegmentFinished(w.k, w.key))
        yield from self._flush()

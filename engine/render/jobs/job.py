"""The render job: the segments' images in order, through the writer, with resume points and progress.

:func:`engine.render.jobs.loop.render` sets it up (keys, the folder's lock, the cache) and runs it;
:class:`engine.render.jobs.ray_render.RayRenderJob` runs the same job's chains on Ray workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.protocol import EXIT_CANCELLED, EXIT_OK, STATE_DIR, image_slots
from engine.stopping import hold_signals, on_stop_signals
from engine.store.manifest import RenderStore, segment_folder
from engine.store.snapshots import prune_snapshots
from engine.store.writer import Clock, ImageWriter


class StopFlag:
    """Set by SIGINT/SIGTERM: the render finishes the current image, saves, and exits."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            self.stop = True

        on_stop_signals(handler)

    def ignore(self) -> None:
        """After the final event a late cancel has nothing left to stop: the exit code stays the render's."""
        hold_signals()


@dataclass
class Work:
    """What one segment needs: nothing (``first == images`` and done) or its images from ``first`` on."""

    k: int
    key: str
    first: int
    images: int
    reused: bool


class _Pending:
    """An image whose pixels the next step decodes, and what must be written after it (in order)."""

    def __init__(self, key: str, segment: int, record: dict, event: dict) -> None:
        self.key, self.segment, self.record, self.event = key, segment, record, event
        self.after: list = []


class RenderJob:
    """The loop over a plan's images, and the events and records around it."""

    def __init__(self, plan, keys, store: RenderStore, source, progress, snapshot_every: float, cache_cap=None):
        self.plan, self.keys, self.store, self.source, self.progress = plan, keys, store, source, progress
        self.cache_cap = cache_cap
        self.segs = plan["segments"]
        self.state_dir = store.out_dir / STATE_DIR
        self.snapshot_every = snapshot_every
        self.total = sum(int(s["images"]) for s in self.segs)
        self.done = 0
        self.t_images, self.n_images = 0.0, 0
        self.pending: _Pending | None = None
        self.writer: ImageWriter | None = None

    def work(self) -> list[Work]:
        out = []
        for k, (seg, key) in enumerate(zip(self.segs, self.keys)):
            e, n = self.store.entries.get(key), int(seg["images"])
            fits = e is not None and e.images == n and e.folder == segment_folder(k, key)
            first = e.first_missing(self.store.out_dir) if fits else 0
            out.append(Work(k, key, first, n, reused=fits and e.status == "done" and first == n))
        return out

    def run(self, stop: StopFlag) -> int:
        todo = self.work()
        self.store.segments = [
            {
                "index": w.k,
                "key": w.key,
                "start": self.segs[w.k]["start"],
                "end": self.segs[w.k]["end"],
                "images": w.images,
            }
            for w in todo
        ]
        self.store.compact("running")
        self.progress.emit(
            "start",
            segments=len(self.segs),
            total=self.total,
            steps=sum(int(s["steps"]) for s in self.segs),
            out=str(self.store.out_dir),
            layout=not self.source.stateful,
            device=str(getattr(getattr(self.source, "optimizer", None), "device", "cpu")),
        )
        with ImageWriter(self.store, self.progress, self.state_dir) as writer:
            self.writer = writer
            cancelled = self._loop(todo, stop)
            self._flush()
            writer.call(self._finish, cancelled)
        return EXIT_CANCELLED if cancelled else EXIT_OK

    # ------------------------------------------------------------ ordering

    def _then(self, fn, *args, **kw) -> None:
        """Run ``fn`` on the writer thread after every frame rendered so far, the pending one included."""
        if self.pending is not None:
            self.pending.after.append((fn, args, kw))
        else:
            self.writer.call(fn, *args, **kw)

    def _resolve(self, rgb: np.ndarray) -> None:
        """The pending frame's pixels have arrived: write it, then what waited for it."""
        p, self.pending = self.pending, None
        if p is None:
            return
        self.writer.image(p.key, p.segment, p.record, rgb, p.event)
        for fn, args, kw in p.after:
            self.writer.call(fn, *args, **kw)

    def _flush(self) -> None:
        """Decode the pending frame now (before a jump of the latent, a cancel or the end)."""
        if self.pending is not None:
            self._resolve(self.source.decode())

    # ------------------------------------------------------------ the loop

    def _loop(self, todo: list[Work], stop: StopFlag) -> bool:
        clock = Clock()
        for w in todo:
            if w.reused:
                self.done += w.images
                self._then(self.store.use, w.key)
                self._then(self._segment_end, w.k, True, self.done)
                continue
            self.done += w.first
            self._then(self.store.begin, w.k, w.key, w.images)
            self._then(self._segment_start, w)
            if w.first < w.images and self.source.stateful and not self.source.at(w.k, w.first):
                self._flush()  # the latent is about to jump: the pending frame needs its own decode
                self.source.seek(w.k, w.first, self.keys, self.state_dir, self._warn)
            for i in range(w.first, w.images):
                self._image(w, i)
                if self.source.stateful and (stop.stop or clock.elapsed() >= self.snapshot_every):
                    self.writer.snapshot(w.key, i + 1, self.source.state())
                    clock.reset()
                if stop.stop:
                    return True
            self._then(self.store.finish, w.key)
            self._then(self._segment_end, w.k, False, self.done)
        return False

    def _segment_start(self, w: Work) -> None:
        seg = self.segs[w.k]
        self.progress.emit(
            "segment_start",
            segment=w.k,
            start=seg["start"],
            end=seg["end"],
            images=w.images,
            steps=int(seg["steps"]),
            resumed_at=w.first,
        )

    def _image(self, w: Work, i: int) -> None:
        t0 = time.monotonic()
        rgb, loss = self.source.run_image(w.k, i)
        self.t_images += time.monotonic() - t0
        self.n_images += 1
        record, event = self._describe(w.k, w.key, i, loss, self.source.image_info(w.k, i))
        frame = _Pending(w.key, w.k, record, event)
        if self.source.lookahead:
            self._resolve(rgb)  # the previous image, decoded by this image's first step
            self.pending = frame
        else:
            self.pending = frame
            self._resolve(rgb)

    def _describe(self, k: int, key: str, i: int, loss: float | None, info: dict) -> tuple[dict, dict]:
        """Image ``i`` of segment ``k`` is done: its manifest record and its ``image`` event (counts it)."""
        self.done += 1
        seg, n = self.segs[k], int(self.segs[k]["images"])
        record = {
            "index": i,
            "time": round(seg["start"] + i * (seg["end"] - seg["start"]) / n, 4),
            "file": f"{segment_folder(k, key)}/frame_{i:05d}.png",
            **({"loss": round(loss, 6)} if loss is not None else {}),
            **info,
        }
        eta = (self.total - self.done) * self.t_images / max(1, self.n_images)
        event = {"segment": k, "index": i, "done": self.done, "total": self.total, "file": record["file"]}
        event.update(eta_s=round(eta, 1), **({"loss": round(loss, 5)} if loss is not None else {}))
        return record, event

    def _warn(self, message: str) -> None:
        self._then(self.progress.emit, "warning", message=message)

    def _segment_end(self, k: int, reused: bool, done: int) -> None:
        """(writer thread) The event the add-on turns into an image strip: everything it needs, no file to read."""
        seg, e = self.segs[k], self.store.entries[self.keys[k]]
        files = [Path(e.records[i]["file"]).name for i in range(e.images)]
        self.progress.emit(
            "segment_end",
            segment=k,
            key=self.keys[k],
            reused=reused,
            start=seg["start"],
            end=seg["end"],
            dir=str((self.store.out_dir / e.folder).resolve()),
            files=files,
            slots=image_slots(seg["start"], seg["end"], e.images),
            done=done,
            total=self.total,
        )

    def _finish(self, cancelled: bool) -> None:
        """(writer thread) Fold the journal into the manifest; on success drop what the plan no longer uses."""
        if cancelled:
            self.store.compact("cancelled")
            self.progress.emit("cancelled", done=self.done, total=self.total)
            return
        self.store.prune(set(self.keys), self.cache_cap)
        prune_snapshots(self.state_dir, self.keys)
        self.store.compact("done")
        self.progress.emit("done", done=self.done, total=self.total, out=str(self.store.out_dir))

"""The render job: the producer's messages (:mod:`engine.render.jobs.produce`) routed to the writer, journal,
manifest and progress.

:func:`engine.render.jobs.loop.render` sets it up (keys, the folder's lock, the cache) and runs it;
:class:`engine.render.jobs.ray_render.RayRenderJob` routes the same messages, sent by Ray workers.
"""

from __future__ import annotations

from pathlib import Path

from engine.protocol import STATE_DIR, image_slots
from engine.render.jobs.produce import (
    ImageReady,
    Message,
    ResumePoint,
    SegmentBegun,
    SegmentFinished,
    SegmentReused,
    Stopped,
    Warned,
    Work,
    produce,
)
from engine.stopping import StopFlag, render_code
from engine.store.manifest import RenderStore, segment_folder
from engine.store.snapshots import list_snapshots, prune_snapshots, snapshot_name
from engine.store.writer import ImageWriter


class RenderJob:
    """A render of a plan's images into a folder: which segments need work, and where each message goes."""

    def __init__(
        self, plan, keys, store: RenderStore, source, progress, snapshot_every: float, cache_cap=None, image_keys=None
    ):
        self.plan, self.keys, self.store, self.source, self.progress = plan, keys, store, source, progress
        self.cache_cap = cache_cap
        #: Each image's key (``engine.render.jobs.keys.image_keys``) where timed prompts or keyframes direct the
        #: render, else None: a segment whose key changed keeps the frames of its leading images whose keys did not.
        self.image_keys = image_keys
        self.segs = plan["segments"]
        self.state_dir = store.out_dir / STATE_DIR
        self.snapshot_every = snapshot_every
        self.total = sum(int(s["images"]) for s in self.segs)
        self.done = 0
        self.t_images, self.n_images = 0.0, 0
        self.writer: ImageWriter | None = None

    def work(self) -> list[Work]:
        out = []
        for k, (seg, key) in enumerate(zip(self.segs, self.keys)):
            e, n = self.store.entries.get(key), int(seg["images"])
            fits = e is not None and e.images == n and e.folder == segment_folder(k, key)
            if not fits and self.image_keys is not None:
                e = self._keep_leading(k, key, n)
                fits = e is not None
            first = e.first_missing(self.store.out_dir) if fits else 0
            out.append(Work(k, key, first, n, reused=fits and e.status == "done" and first == n))
        return out

    def _keep_leading(self, k: int, key: str, n: int):
        """A segment whose key changed (a text strip or keyframe edited): the frames of its leading images whose image
        keys are unchanged, taken from the cache entry of this segment that shares the most of them (hard links, else
        copies), with its resume points up to there; returns the new key's entry, or None when no image is kept."""
        mine, out_dir = self.image_keys[k], self.store.out_dir
        best, kept = None, 0
        for e in self.store.entries.values():
            if e.segment != k or e.key == key:
                continue
            j, top = 0, min(n, e.first_missing(out_dir))
            while j < top and e.frames[j].get("image_key") == mine[j]:
                j += 1
            if j > kept:
                best, kept = e, j
        if best is None:
            return None
        entry = self.store.begin(k, key, n)
        (out_dir / entry.folder).mkdir(parents=True, exist_ok=True)
        for i in range(kept):
            frame = best.frames[i]
            name = Path(frame["file"]).name
            _link_or_copy(out_dir / frame["file"], out_dir / entry.folder / name)
            self.store.add_image(key, {**frame, "file": f"{entry.folder}/{name}"})
        for snap in list_snapshots(self.state_dir):
            if snap.key == best.key and snap.images <= kept:
                _link_or_copy(snap.path, self.state_dir / snapshot_name(key, snap.images))
        return entry

    def render(self, stop: StopFlag) -> int:
        """Render every image the folder lacks, with its records and events; returns the exit code."""
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
            cancelled = self.images(todo, stop)
            writer.call(self._finish, cancelled)
        return render_code(cancelled)

    def images(self, todo: list[Work], stop: StopFlag) -> bool:
        """Produce the images here and route them; True when stopped before the end."""
        stopped = False
        for msg in produce(self.source, todo, self.keys, self.state_dir, self.snapshot_every, lambda: stop.stop):
            stopped = self.route(msg) or stopped
        return stopped

    # ------------------------------------------------------------ routing

    def route(self, msg: Message) -> bool:
        """Send one message where it goes, in order; True for :class:`Stopped`."""
        w = self.writer
        if isinstance(msg, ImageReady):
            frame, event = self._describe(msg)
            if msg.png is not None:
                w.encoded_frame(msg.key, msg.k, frame, msg.png, msg.sha256, event)
            else:
                w.image(msg.key, msg.k, frame, msg.rgb, event)
        elif isinstance(msg, ResumePoint):
            w.snapshot(msg.key, msg.images, msg.state)
        elif isinstance(msg, SegmentBegun):
            self.done += msg.first
            w.call(self.store.begin, msg.k, msg.key, msg.images)
            w.call(self._segment_start, msg)
        elif isinstance(msg, SegmentFinished):
            w.call(self.store.finish, msg.key)
            w.call(self._segment_end, msg.k, False, self.done)
        elif isinstance(msg, SegmentReused):
            self.done += msg.images
            w.call(self.store.use, msg.key)
            w.call(self._segment_end, msg.k, True, self.done)
        elif isinstance(msg, Warned):
            w.emit("warning", message=msg.message)
        return isinstance(msg, Stopped)

    def _segment_start(self, msg: SegmentBegun) -> None:
        seg = self.segs[msg.k]
        self.progress.emit(
            "segment_start",
            segment=msg.k,
            start=seg["start"],
            end=seg["end"],
            images=msg.images,
            steps=int(seg["steps"]),
            resumed_at=msg.first,
        )

    def _image_seconds(self, msg: ImageReady) -> None:
        """Count the image's time for the ETA (here: its steps' own time)."""
        self.t_images += msg.seconds
        self.n_images += 1

    def _describe(self, msg: ImageReady) -> tuple[dict, dict]:
        """An image is out: its manifest entry and its ``image`` event (counts it)."""
        self._image_seconds(msg)
        k, i, loss = msg.k, msg.i, msg.loss
        self.done += 1
        seg, n = self.segs[k], int(self.segs[k]["images"])
        frame = {
            "index": i,
            "time": round(seg["start"] + i * (seg["end"] - seg["start"]) / n, 4),
            "file": f"{segment_folder(k, msg.key)}/frame_{i:05d}.png",
            **({"loss": round(loss, 6)} if loss is not None else {}),
            **msg.info,
            **({"image_key": self.image_keys[k][i]} if self.image_keys is not None else {}),
        }
        eta = (self.total - self.done) * self.t_images / max(1, self.n_images)
        event = {"segment": k, "index": i, "done": self.done, "total": self.total, "file": frame["file"]}
        event.update(eta_s=round(eta, 1), **({"loss": round(loss, 5)} if loss is not None else {}))
        return frame, event

    def _segment_end(self, k: int, reused: bool, done: int) -> None:
        """(writer thread) The event the add-on turns into an image strip: everything it needs, no file to read."""
        seg, e = self.segs[k], self.store.entries[self.keys[k]]
        files = [Path(e.frames[i]["file"]).name for i in range(e.images)]
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


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as the same file as ``src`` (a hard link; a copy where the file system has none)."""
    import os
    import shutil

    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)

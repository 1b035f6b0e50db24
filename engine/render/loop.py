"""``engine render``: a plan to frames, guided by CLIP (paper 3.2 and 3.3).

The loop is short on purpose: the frame source (layout cards or the model,
:mod:`engine.render.sources`) is chosen once; the source runs each image; a writer
thread (:mod:`engine.store.writer`) writes frames, the journal, resume points and
progress; the folder's cache (:mod:`engine.store.manifest`) says what can be
reused. A crash, a SIGKILL at any instant or a cancel keeps every finished
frame, and the next render resumes where the frames end, bit for bit on the
CPU.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.files import FolderLock, check_output_dir, file_sha256, make_dirs, remove_temp_files
from engine.plan.schema import load_plan
from engine.progress import Progress
from engine.protocol import (
    AUDIO_RATE,
    CUTOUT_IMPL,
    EXIT_CANCELLED,
    EXIT_OK,
    JOURNAL_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    SEGMENT_DIR_PREFIX,
    STATE_DIR,
    image_slots,
)
from engine.render.chains import chain_starts
from engine.settings_check import check_fields
from engine.settings_table import per_segment_fields, record_names, render_fields
from engine.store.manifest import RenderStore, segment_folder, segment_key
from engine.store.snapshots import DEFAULT_INTERVAL, prune_snapshots
from engine.store.writer import Clock, ImageWriter


class _RenderSettingsMethods:
    """What ``RenderSettings`` does; its fields and defaults are the settings table's ``render`` rows."""

    def validate(self) -> None:
        """Every value in its row's range (:mod:`engine.settings_check`); raises InputError naming the flag."""
        check_fields(self, "render")
        self.footage_timing().validate()
        if self.footage is not None and not Path(self.footage).expanduser().exists():
            raise InputError("--footage not found", self.footage)
        self.motion().validate()

    def footage_timing(self):
        from engine.render.footage import FootageTiming

        span = tuple(self.footage_span) if self.footage_span is not None else None
        return FootageTiming(offset=self.footage_offset, speed=self.footage_speed, span=span)

    def motion(self):
        from engine.render.motion import MotionSettings

        return MotionSettings(zoom=self.zoom, rotate=self.rotate, shift=tuple(self.shift), drive=self.motion_drive)

    @property
    def needs_encoder(self) -> bool:
        """Footage or motion turn pictures into latents: the VQGAN's encoder is loaded for them only."""
        return not self.layout and (self.footage is not None or self.motion().active)

    def key_fields(self) -> dict:
        """What every segment's key holds. Footage and motion enter per segment instead (:func:`segment_keys`):
        the frames and moves a segment uses, so a changed footage strip re-renders from what it covers on, and
        a render without them keeps the keys it always had."""
        return {k: v for k, v in self.record().items() if k not in _PER_SEGMENT_RECORDED}

    def record(self) -> dict:
        """Every setting, for the manifest (under its recorded name: the manifest and the keys are a format)."""
        return {RECORD_NAMES.get(k, k): v for k, v in asdict(self).items()}


#: Everything a user controls that changes the frames (all recorded in the manifest and the cache keys): one
#: field per ``render`` row of :mod:`engine.settings_table`, in its order (the keys depend on it).
RenderSettings = make_dataclass(
    "RenderSettings",
    [(name, Any, field(default=default)) for name, default in render_fields()],
    bases=(_RenderSettingsMethods,),
    namespace={"__module__": __name__, "__doc__": _RenderSettingsMethods.__doc__},
)

#: Settings that enter the cache keys per segment (as the footage frames and motion each segment uses).
PER_SEGMENT_FIELDS = per_segment_fields()
RECORD_NAMES = record_names()
_PER_SEGMENT_RECORDED = {RECORD_NAMES.get(f, f) for f in PER_SEGMENT_FIELDS}


class StopFlag:
    """Set by SIGINT/SIGTERM: the render finishes the current image, saves, and exits."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            self.stop = True

        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: what the add-on sends on Windows
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), handler)

    def ignore(self) -> None:
        """After the final event a late cancel has nothing left to stop: the exit code stays the render's."""
        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)


def load_plan_song(plan: dict, progress) -> np.ndarray:
    """The plan's song at 16 kHz (guidance and cache keys); warns when it changed since the plan was made."""
    from engine.analysis.audio import load_song

    song_path = plan["song"]["path"]
    if not Path(song_path).is_file():
        raise InputError("the plan's song file is missing", song_path)
    if file_sha256(song_path) != plan["song"]["sha256"]:
        progress.emit("warning", message=f"{song_path} changed since the plan was made: analyse it again")
    song = load_song(song_path, sr=AUDIO_RATE, min_duration=0.0)
    if plan["segments"][-1]["end"] > song.file_duration + 0.05:
        raise InputError(
            f"the plan runs to {plan['segments'][-1]['end']} s, past the song's end ({song.file_duration:.2f} s)",
            song_path,
        )
    return song.y


def segment_keys(
    plan: dict, song_16k: np.ndarray, settings: RenderSettings, model_ids: dict, extras=None, starts=(0,)
) -> list[str]:
    """The chained cache key of every segment (see :mod:`engine.store.manifest`).

    ``extras(k)`` adds what only the frame source knows about segment ``k`` (the footage frames and the
    motion it uses); a segment it adds nothing to keeps the key it had without footage and motion.
    ``starts`` are the latent chains' first segments (:mod:`engine.render.chains`): a chain start's key holds its
    index instead of the previous key, so a moved chain start re-renders only the chains it touches.
    """
    from engine.render.guidance import audio_digest

    keys, prev = [], None
    for k, seg in enumerate(plan["segments"]):
        parts = [
            [round(float(p["start"]), 4), round(float(p["end"]), 4), p["kind"], p.get("text")]
            + ([audio_digest(song_16k, p["start"], p["end"])] if p["kind"] == "audio" else [])
            for p in seg["parts"]
        ]
        payload = {
            "start": round(float(seg["start"]), 4),
            "end": round(float(seg["end"]), 4),
            "steps": int(seg["steps"]),
            "images": int(seg["images"]),
            "parts": parts,
            "prompt": seg.get("prompt"),
            "prompt_weight": float(seg.get("prompt_weight", 1.0)),
            "take": int(seg.get("take", 0)),
            "settings": settings.key_fields(),
            "models": model_ids,
            "cutouts": CUTOUT_IMPL,  # frames from another cutout implementation are not reused
        }
        if extras is not None:
            payload.update(extras(k))
        if k > 0 and k in starts:
            payload["chain_start"], prev = k, None
        prev = segment_key(payload, prev)
        keys.append(prev)
    return keys


def make_source(plan: dict, settings: RenderSettings, models, song_16k: np.ndarray, device: str, progress):
    """Layout cards or the model, decided once; returns ``(source, settings)`` (the size fitted to the model)."""
    from engine.render.sources import LayoutSource, ModelSource, fit_size

    if settings.layout:
        return LayoutSource(plan, settings), settings
    if models is None:
        raise InputError("no models given (or use --layout)")
    from engine.models.factory import pick_device

    dev = pick_device(device)
    settings = fit_size(settings, models.vqgan.factor, lambda m: progress.emit("warning", message=m))
    for w in models.warnings:
        progress.emit("warning", message=w)
    source = ModelSource(plan, settings, models, song_16k, dev)
    for w in source.warnings():
        progress.emit("warning", message=w)
    return source, settings


def render(
    plan_path: str | Path,
    out_dir: str | Path,
    settings: RenderSettings,
    models=None,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
    device: str = "auto",
    snapshot_every: float = DEFAULT_INTERVAL,
    cache_cap_bytes: int | None = None,
    chains: int | None = None,
    chain_at: list[float] | None = None,
    ray=None,
) -> int:
    """Render a plan into ``out_dir``; returns an exit code (0 done, 3 cancelled).

    Parameters
    ----------
    models : engine.models.factory.Models, optional
        Loaded models (not needed for ``settings.layout``; with ``ray``, the paths are what counts).
    chains, chain_at : optional
        Split the song into latent chains (:func:`engine.render.chains.chain_starts`; default: the plan's marks).
    ray : engine.render.ray_render.RayOptions, optional
        Render the chains as Ray tasks (:mod:`engine.render.ray_render`) instead of here, one after another.
    snapshot_every : float
        Seconds of rendering between resume points.
    cache_cap_bytes : int, optional
        Frames of segments the plan no longer uses (earlier takes, moved cuts) kept on disk, at most
        (default: as much as the plan's own frames, and at least 1 GiB).
    """
    progress, stop = progress or Progress(), stop or StopFlag()
    settings.validate()
    out_dir = check_output_dir(out_dir, "--out")
    plan = load_plan(plan_path)
    starts = chain_starts(plan, chains, chain_at)
    song_16k = load_plan_song(plan, progress)
    # With Ray the workers render on ``device``; here the source only gives keys: on the CPU.
    source, settings = make_source(plan, settings, models, song_16k, "cpu" if ray else device, progress)
    source.starts = starts
    job_class = RenderJob
    if ray is not None and not source.stateful:
        progress.emit("warning", message="--ray: a layout preview has no latent to share out; it renders here")
    elif ray is not None:
        from engine.render.ray_render import RayRenderJob

        job_class = RayRenderJob.bind(ray, models, song_16k, settings, device)
    try:
        return _render_into(
            plan, song_16k, out_dir, settings, source, progress, stop, snapshot_every, cache_cap_bytes, job_class
        )
    finally:
        source.close()


def _render_into(
    plan, song_16k, out_dir: Path, settings, source, progress, stop, snapshot_every: float, cache_cap_bytes, job_class
) -> int:
    """The part of a render that writes: keys, the folder's lock, its cache, the job."""
    starts = getattr(source, "starts", [0])
    keys = segment_keys(plan, song_16k, settings, source.ids(), source.key_extras, starts)
    make_dirs(out_dir)
    with FolderLock(out_dir, LOCK_FILE):
        remove_temp_files(out_dir, (SEGMENT_DIR_PREFIX, STATE_DIR))
        header = {"song": plan["song"], "settings": settings.record(), "models": source.ids(), "status": "running"}
        if len(starts) > 1:
            header["chains"] = [plan["segments"][k]["start"] for k in starts]
        store = RenderStore.open(out_dir, header)
        had = {p: (out_dir / p).exists() for p in (MANIFEST_FILE, JOURNAL_FILE, STATE_DIR)}
        try:
            job = job_class(plan, keys, store, source, progress, snapshot_every, cache_cap_bytes)
            code = job.run(stop)
        except BaseException:
            store.close()
            if not any(e.records for e in store.entries.values()):
                _undo_bookkeeping(out_dir, had)
            raise
        finally:
            store.close()
            remove_temp_files(out_dir, (SEGMENT_DIR_PREFIX, STATE_DIR))
    return code


def _undo_bookkeeping(out_dir: Path, had: dict[str, bool]) -> None:
    """A render that failed before its first frame: remove the records it created, so the folder is as it was."""
    import shutil

    for name, existed in had.items():
        p = out_dir / name
        if existed:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file():
            p.unlink(missing_ok=True)
    for d in out_dir.glob(f"{SEGMENT_DIR_PREFIX}*"):
        with contextlib.suppress(OSError):
            d.rmdir()  # only an empty segment folder this render began


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

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
from dataclasses import asdict, field, make_dataclass
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
    JOURNAL_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    RAY_LOG_FILE,
    SEGMENT_DIR_PREFIX,
    STATE_DIR,
)
from engine.render.chains import chain_starts
from engine.render.job import RenderJob, StopFlag, Work  # noqa: F401 - StopFlag, Work: this module's interface
from engine.settings_check import check_fields
from engine.settings_table import per_segment_fields, record_names, render_fields
from engine.store.manifest import RenderStore, check_render_folder, segment_folder, segment_key
from engine.store.snapshots import DEFAULT_INTERVAL


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
    check_render_folder(out_dir)
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
    check_render_folder(out_dir, [segment_folder(k, key) for k, key in enumerate(keys)])
    new_folder = not out_dir.exists()
    make_dirs(out_dir)
    with FolderLock(out_dir, LOCK_FILE):
        remove_temp_files(out_dir, (SEGMENT_DIR_PREFIX, STATE_DIR))
        header = {"song": plan["song"], "settings": settings.record(), "models": source.ids(), "status": "running"}
        if len(starts) > 1:
            header["chains"] = [plan["segments"][k]["start"] for k in starts]
        store = RenderStore.open(out_dir, header)
        for w in store.warnings:
            progress.emit("warning", message=w)
        had = {p: (out_dir / p).exists() for p in (MANIFEST_FILE, JOURNAL_FILE, STATE_DIR, RAY_LOG_FILE)}
        try:
            job = job_class(plan, keys, store, source, progress, snapshot_every, cache_cap_bytes)
            code = job.run(stop)
            if code == EXIT_CANCELLED and not any(e.records for e in store.entries.values()):
                store.close()  # stopped before any frame (a Ray render stopped while Ray started): as it was found
                _undo_bookkeeping(out_dir, had)
        except BaseException:
            store.close()
            if not any(e.records for e in store.entries.values()):
                _undo_bookkeeping(out_dir, had)
            raise
        finally:
            store.close()
            remove_temp_files(out_dir, (SEGMENT_DIR_PREFIX, STATE_DIR))
    if new_folder and code == EXIT_CANCELLED:
        with contextlib.suppress(OSError):
            out_dir.rmdir()  # only when empty: nothing was rendered into the folder this render made
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

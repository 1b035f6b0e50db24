"""``engine render``: a plan to frames, guided by CLIP (paper 3.2 and 3.3).

The loop is short on purpose: the frame source (layout cards or the model,
:mod:`engine.render.sources.model`) is chosen once; the source runs each image; a writer
thread (:mod:`engine.store.writer`) writes frames, the journal, resume points and
progress; the folder's cache (:mod:`engine.store.manifest`) says what can be
reused. A crash, a SIGKILL at any instant or a cancel keeps every finished
frame, and the next render resumes where the frames end, bit for bit on the
CPU.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from engine.analysis.audio import load_song
from engine.errors import InputError
from engine.files import FolderLock, check_output_dir, file_sha256, make_dirs, remove_temp_files
from engine.models.factory import pick_device
from engine.plan.chains import chain_starts
from engine.plan.schema import load_plan
from engine.progress import Progress
from engine.protocol import (
    AUDIO_RATE,
    EXIT_CANCELLED,
    JOURNAL_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    RAY_LOG_FILE,
    SEGMENT_DIR_PREFIX,
    STATE_DIR,
)
from engine.render.jobs.job import RenderJob
from engine.render.jobs.keys import keys_and_image_keys
from engine.render.jobs.ray_render import RayRenderJob
from engine.render.sources.cards import CardSource
from engine.render.sources.model import ModelSource, fit_size
from engine.settings import JobSettings, RenderSettings
from engine.stopping import StopFlag
from engine.store.manifest import RenderStore, check_render_folder, segment_folder


def load_plan_song(plan: dict, progress) -> np.ndarray:
    """The plan's song at 16 kHz (guidance and cache keys); warns when it changed since the plan was made."""
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


def make_source(plan: dict, settings: RenderSettings, models, song_16k: np.ndarray, device: str, progress):
    """Layout cards or the model, decided once; returns ``(source, settings)`` (the size fitted to the model)."""
    if settings.layout:
        return CardSource(plan, settings), settings
    if models is None:
        raise InputError("no models given (or use --layout)")
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
    job: JobSettings | None = None,
    **job_values,
) -> int:
    """Render a plan into ``out_dir``; returns an exit code (0 done, 3 cancelled).

    Parameters
    ----------
    settings : RenderSettings
        What the frames depend on.
    models : engine.models.factory.Models, optional
        Loaded models (not needed for ``settings.layout``; with Ray, the paths are what counts).
    job : JobSettings, optional
        How the render runs, or its values as keywords (``device``, ``chains``, ``chain_at``, ``ray``,
        ``ray_workers``, ``ray_cpus``, ``snapshot_every``, ``cache_cap_mb``): the latent chains
        (:func:`engine.plan.chains.chain_starts`; default: the plan's marks), Ray (:mod:`engine.render.jobs.ray_render`)
        instead of here, the seconds of rendering between resume points, and how much of the frames of segments
        the plan no longer uses is kept (default: as much as the plan's own frames, and at least 1 GiB).
    """
    progress, stop = progress or Progress(), stop or StopFlag()
    job = JobSettings.of(job, **job_values)
    out_dir = check_output_dir(out_dir, "--out")
    check_render_folder(out_dir)
    plan = load_plan(plan_path)
    starts = chain_starts(plan, job.chains, job.chain_at)
    song_16k = load_plan_song(plan, progress)
    # With Ray the workers render on the job's device; here the source only gives keys: on the CPU.
    source, settings = make_source(plan, settings, models, song_16k, "cpu" if job.ray else job.device, progress)
    source.starts = starts
    job_class = RenderJob
    if job.ray is not None and not source.stateful:
        progress.emit("warning", message="--ray: a layout preview has no latent to share out; it renders here")
    elif job.ray is not None:
        job_class = RayRenderJob.bind(job, models, song_16k, settings)
    try:
        return _render_into(plan, song_16k, out_dir, settings, source, progress, stop, job, job_class)
    finally:
        source.close()


def _render_into(plan, song_16k, out_dir: Path, settings, source, progress, stop, job: JobSettings, job_class) -> int:
    """The part of a render that writes: keys, the folder's lock, its cache, the job."""
    starts = getattr(source, "starts", [0])
    keys, image_keys = keys_and_image_keys(plan, song_16k, settings, source.ids(), source.key_content, starts)
    check_render_folder(out_dir, [segment_folder(k, key) for k, key in enumerate(keys)])
    new_folder = not out_dir.exists()
    make_dirs(out_dir)
    with FolderLock(out_dir, LOCK_FILE):
        remove_temp_files(out_dir, (SEGMENT_DIR_PREFIX, STATE_DIR))
        header = {"song": plan["song"], "settings": settings.saved(), "models": source.ids(), "status": "running"}
        if len(starts) > 1:
            header["chains"] = [plan["segments"][k]["start"] for k in starts]
        store = RenderStore.open(out_dir, header)
        for w in store.warnings:
            progress.emit("warning", message=w)
        had = {p: (out_dir / p).exists() for p in (MANIFEST_FILE, JOURNAL_FILE, STATE_DIR, RAY_LOG_FILE)}
        try:
            runner = job_class(
                plan, keys, store, source, progress, job.snapshot_every, job.cache_cap_bytes, image_keys=image_keys
            )
            code = runner.render(stop)
            if code == EXIT_CANCELLED and not any(e.frames for e in store.entries.values()):
                store.close()  # stopped before any frame (a Ray render stopped while Ray started): as it was found
                _undo_bookkeeping(out_dir, had)
        except BaseException:
            store.close()
            if not any(e.frames for e in store.entries.values()):
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

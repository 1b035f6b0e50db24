"""The running engine jobs, one per scene, and the pump that feeds their events to their handlers.

Every function here runs on Blender's main thread (an operator, a timer, or the
background-mode loop); the engine itself runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import time

import bpy

from . import adapters, preferences
from .contract import protocol
from .engine_client import EngineJob
from .errors import M2VError

#: The running job per scene name, the one registry: "m2v is working on this scene" (its handler rides on it).
JOBS: dict[str, EngineJob] = {}


def is_running(scene) -> bool:
    job = JOBS.get(scene.name)
    return job is not None and not job.finished


BUSY = "m2v is already working on this scene: wait, or press Cancel"


def refuse_if_running(scene) -> None:
    """Raise before a job changes anything (markers, settings files) while another one runs on the scene."""
    if is_running(scene):
        raise M2VError(BUSY)


def start(scene, kind: str, commands: list[list[str]], handler, before_step=None) -> EngineJob:
    """Start the engine commands as the scene's job (``before_step``: see ``EngineJob``)."""
    refuse_if_running(scene)
    python = preferences.engine_python()
    if not python.exists():
        raise M2VError(
            f"the m2v engine is not installed ({python} is missing): open Preferences > Add-ons > m2v and press Install Engine"
        )
    job = EngineJob(python, commands, adapters.output_dir(scene) / protocol.LOG_FILE, before_step=before_step)
    return track(scene, kind, job.start(), handler)


def track(scene, kind: str, job: EngineJob, handler) -> EngineJob:
    """Make ``job`` the scene's running job: the pump step feeds its events to ``handler``."""
    if is_running(scene):
        job.kill()
        raise M2VError(BUSY)
    job.handler = handler
    JOBS[scene.name] = job
    st = scene.m2v
    st.job_kind, st.progress, st.status = kind, 0.0, f"{kind}: starting..."
    return job


def pump(scene) -> bool:
    """Read what the engine printed and update the scene; True while the job runs."""
    job = JOBS.get(scene.name)
    if job is None:
        return False
    for ev in job.pump():
        job.handler(scene, job, ev)
    if job.finished:
        del JOBS[scene.name]
        return False
    return True


def pump_to_end(scene, timeout: float | None = None) -> EngineJob:
    """Background mode (no timers): loop on the pump step until the job ends."""
    job = JOBS[scene.name]
    t0 = time.monotonic()
    while pump(scene):
        if timeout is not None and time.monotonic() - t0 > timeout:
            job.kill()
        time.sleep(0.05)
    return job


def undo_push(message: str) -> None:
    """One undo step for what a timer-driven job changed (operators in background mode get theirs)."""
    if bpy.app.background:
        return
    # A timer may run where the undo system has no context; the edit itself must still land.
    with contextlib.suppress(RuntimeError):
        bpy.ops.ed.undo_push(message=message)


def _tag_redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []) or []:
        for area in window.screen.areas:
            if area.type in ("SEQUENCE_EDITOR", "PREFERENCES"):
                area.tag_redraw()


def _timer_for(scene_name: str):
    def tick():
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            job = JOBS.pop(scene_name, None)
            if job:
                job.kill()
            return None
        alive = pump(scene)
        _tag_redraw()
        return 0.2 if alive else None

    return tick


def follow(scene) -> None:
    """With a window, a timer pumps the job; in background mode the caller loops instead."""
    if not bpy.app.background:
        bpy.app.timers.register(_timer_for(scene.name), first_interval=0.1)


def cancel(scene) -> bool:
    job = JOBS.get(scene.name)
    if job is None:
        return False
    job.cancel()
    scene.m2v.status = "cancelling after the current image..."
    return True


def stop_all_jobs(*_args) -> None:
    for job in list(JOBS.values()):
        job.kill(grace=3.0)
    JOBS.clear()

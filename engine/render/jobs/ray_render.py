"""``render --ray``: the plan's latent chains rendered as Ray tasks, written here by today's writer.

Each Ray worker is an actor (:class:`ChainWorker`) that loads the models
once and then runs whole chains through the render's one producer
(:func:`engine.render.jobs.produce.produce`), streaming its messages back to
the driver with every image already encoded (PNG bytes, SHA-256) and every
resume point as bytes. The driver (:class:`RayRenderJob`) routes them as a
local render routes its own, to the same writer, journal and manifest, so
the folder, the events, cancel (exit 3) and resume are a local render's, and
workers need no shared file system: only the models (and a footage file)
at the same paths on every node.

A worker that dies has its chain retried (Ray restarts the actor, which
loads the models again) from the chain's last resume point the driver
holds; the images after it are re-run and, on the CPU with the same thread
count, come out bit for bit as before.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import queue
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import ExternalError, InputError
from engine.files import MAX_CACHE_BYTES, read_regular
from engine.models.factory import load_models, pick_device
from engine.plan.chains import chain_spans
from engine.protocol import EXIT_INTERNAL, LOCK_FILE, RAY_LOG_FILE, make_event
from engine.render.jobs import ray_setup
from engine.render.jobs.job import RenderJob
from engine.render.jobs.produce import (
    ImageReady,
    Message,
    ResumePoint,
    SegmentBegun,
    SegmentFinished,
    Work,
    produce,
)
from engine.render.sources.model import ModelSource
from engine.settings import JobSettings, RenderSettings
from engine.stopping import exit_without_handlers
from engine.store.snapshots import encode_state, latest_on_chain, list_snapshots, snapshot_name
from engine.store.writer import encode_image

#: The Ray this engine is tested with (install/requirements-ray.txt).
RAY_PIN = "ray==2.60.0"
HOW_TO_ADD = (
    "--ray needs Ray in the engine's environment: add it with "
    "`python install/setup.py --env ENV --ray` (or `ENV/bin/python -m pip install " + RAY_PIN + "`)"
)


#: Messages a worker may run ahead of the driver (frames in flight are bounded, as in the local writer).
BACKLOG = 8
#: How often one chain may be retried after its worker died.
RETRIES = 3
#: Seconds before a chain's n-th retry: 1, 2, 4... (a failure that repeats at once does not burn every retry).
RETRY_BACKOFF_S = 1.0


def import_ray():
    """The ``ray`` module, or an InputError that says how to add it."""
    try:
        import ray
    except ImportError:
        raise InputError(HOW_TO_ADD) from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Join (or start, for ``address`` None) a Ray instance; True when this call started or joined it (so it shuts it
    down).

    The address is probed first (a few seconds at most, :func:`engine.render.jobs.ray_setup.probe_address`), and
    m2v's stop handlers stay in place while Ray starts (:func:`engine.render.jobs.ray_setup.keep_stop_handlers`).
    """
    if ray.is_initialized():
        return False
    ray_setup.probe_address(address)
    engine_dir = str(Path(__file__).resolve().parents[2])  # the engine package, not engine/render/jobs
    kw = {
        "runtime_env": {"py_modules": [engine_dir]},  # workers on other machines get this engine's code
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    try:
        with ray_setup.keep_stop_handlers():
            if address is None:
                ray.init(**kw)
            else:
                ray.init(address=address, **kw)
    except (ConnectionError, ValueError, RuntimeError) as e:
        if address is None:
            raise InputError(f"--ray: cannot start a local Ray instance ({ray_setup.one_line(e)})") from None
        raise InputError(f"--ray {address}: cannot reach the Ray cluster ({ray_setup.one_line(e)})") from None
    return True


class ChainWorker:
    """A Ray worker's state: the models, loaded once, and the plan's frame source (see the module)."""

    def __init__(
        self, paths, settings, plan: dict, song_16k, starts: list[int], device: str, threads: int, job_id: str = ""
    ) -> None:
        import os

        import torch

        t0 = time.monotonic()
        if device == "cpu" or not torch.cuda.is_available():
            torch.set_num_threads(threads)
        for name in ("vqgan_config", "vqgan_ckpt", "clip_weights", "audio_encoder"):
            if not Path(getattr(paths, name)).is_file():
                raise InputError(f"this Ray node has no {getattr(paths, name)}: put the models at the same path")
        dev = pick_device(device)
        models = load_models(paths, dev, encoder=settings.needs_encoder)
        self.source = ModelSource(plan, settings, models, song_16k, dev)
        self.source.starts = starts
        self.stop_event = threading.Event()
        self.job_id = job_id
        self.tmp = ray_setup.worker_dir(job_id)  # the driver removes it at the end, this worker dead or alive
        atexit.register(shutil.rmtree, self.tmp, True)
        info = {"pid": os.getpid(), "node": _node_ip(), "load_s": round(time.monotonic() - t0, 3)}
        self.info_ = {**info, "tmp": self.tmp}

    def info(self) -> dict:
        return self.info_

    def stop(self) -> None:
        self.stop_event.set()

    def close(self, every: bool = False) -> int:
        """Remove this worker's folder; ``every``: all of this render's on this node (the end: dead workers' too)."""
        if every:
            return ray_setup.remove_worker_dirs(self.job_id, {self.tmp})
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 1

    def render_chain(self, todo: list[Work], keys: list[str], snapshots: dict, snapshot_every: float, origin: str = ""):
        """Stream a chain's messages (:func:`engine.render.jobs.produce.produce`), resuming from the given resume
        points; images and resume points travel encoded.

        ``origin``: the driver's resume-point folder, named in errors instead of this worker's copy of it.
        """
        state_dir = Path(self.tmp) / "state"
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)
        for name, data in snapshots.items():
            (state_dir / name).write_bytes(data)
        self.source.pos = None  # a new chain: seek from its resume points
        try:
            # A plain loop, not ``yield from``: Ray drives this generator with send().
            for msg in produce(self.source, todo, keys, state_dir, snapshot_every, self.stop_event.is_set):
                yield _for_transport(msg)
        except InputError as e:
            if not origin:
                raise
            raise InputError(str(e).replace(str(state_dir), origin)) from None
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


def _for_transport(msg: Message) -> Message:
    """A message as it crosses to the driver: an image as PNG bytes and their SHA-256, a resume point as bytes."""
    if isinstance(msg, ImageReady):
        png, digest = encode_image(msg.rgb)
        return replace(msg, rgb=None, png=png, sha256=digest)
    if isinstance(msg, ResumePoint) and not isinstance(msg.state, bytes):
        return replace(msg, state=encode_state(msg.state))
    return msg


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only a label for the events
        return "?"


@dataclass
class Chain:
    """One chain's work, as the driver tracks it."""

    index: int  # its first segment
    work: list[Work]
    attempts: int = 0
    latest: tuple[str, bytes] | None = None  # the newest resume point received: (file name, bytes)
    not_before: float = 0.0  # monotonic time before which a retry does not start (back-off)


class RayRenderJob(RenderJob):
    """A render whose chains run as Ray tasks; the writing, events and records are :class:`RenderJob`'s."""

    @classmethod
    def bind(cls, job: JobSettings, models, song_16k, settings: RenderSettings):
        """A job factory with :class:`RenderJob`'s arguments; ``job`` says where (``ray``), with how many workers
        (``ray_workers``, ``ray_cpus``) and on which device."""
        return functools.partial(cls, ray_args=(job, models, song_16k, settings))

    def __init__(self, *args, ray_args, **kw) -> None:
        super().__init__(*args, **kw)
        self.job_settings, self.models, self.song, self.settings = ray_args
        self.begun: set[int] = set()
        self.finished: set[int] = set()
        self.got: dict[int, set[int]] = {}
        self.job_id = ray_setup.new_job_id()
        self.worker_dirs: set[str] = set()  # reported by the workers: removed at the end
        self.ray_lost = False  # Ray died under the render: no more calls into it (they would end the process)

    def images(self, todo: list[Work], stop) -> bool:
        """Hand the chains to Ray workers and route what they send; True when stopped before the end."""
        # The segments the folder holds already, through the same producer (it asks no source for them).
        for msg in produce(None, [w for w in todo if w.reused], self.keys, self.state_dir, 0.0, lambda: False):
            self.route(msg)
        chains = self._chains(todo)
        if not chains:
            return False
        ray = import_ray()
        t0 = time.monotonic()
        guard = self._guardian()
        try:
            return self._ray_images(ray, chains, stop, t0)
        finally:
            if self.ray_lost:  # Ray may still end this process before it is over: the guardian says so then
                atexit.register(guard.disarm)
                exit_without_handlers(guard.disarm)  # Ray's own exit handlers would crash the process now
            else:
                guard.disarm()

    def _guardian(self) -> ray_setup.Guardian:
        log = self.store.out_dir / RAY_LOG_FILE
        message = (
            "the render's process ended before the render did (Ray ends it when a process of Ray's on this "
            f"machine dies); finished frames are kept, run again to resume. Ray's log: {log}"
        )
        event = json.dumps(make_event("error", message=message, code=EXIT_INTERNAL), ensure_ascii=False)
        return ray_setup.Guardian(self.store.out_dir / LOCK_FILE, getattr(self.progress, "out", None), message, event)

    def _ray_images(self, ray, chains: list[Chain], stop, t0: float) -> bool:
        # Ray's own lines (its notices, restarts, advice) go to ray.log in the render folder, not the terminal.
        with ray_setup.RayLog(self.store.out_dir / RAY_LOG_FILE, self.progress) as log:
            started = connect(ray, self.job_settings.ray_address)
            if started and hasattr(stop, "install"):
                stop.install()  # Ray's core worker installs its own SIGTERM handler (a crash report): ours again
            driver = None
            try:
                if stop.stop:  # stopped while Ray started: no worker to start
                    return True
                actors = self._actors(ray, len(chains))
                self.writer.emit(
                    "ray_start",
                    address=self.job_settings.ray_address or "local",
                    workers=len(actors),
                    startup_s=round(time.monotonic() - t0, 3),
                )
                driver = _Driver(self, ray, actors, chains, stop)
                return driver.drive()
            finally:
                if self.ray_lost:
                    ray_setup.forget_ray_at_exit()
                    log.keep = True
                else:
                    if driver is not None:
                        driver.close()
                    if started:
                        ray.shutdown()
                ray_setup.remove_worker_dirs(self.job_id, self.worker_dirs)

    def _chains(self, todo: list[Work]) -> list[Chain]:

        out = []
        for a, b in chain_spans(self.source.starts, len(todo)):
            work = [w for w in todo[a:b] if not w.reused]
            if work:
                out.append(Chain(a, work))
        return out

    def _actors(self, ray, n_chains: int) -> list:
        job = self.job_settings
        # As many workers as the cluster holds at once (--ray-cpus above every node's CPUs: exit 2).
        use_gpus = job.device in ("auto", "cuda")
        res, device, n, warnings = ray_setup.plan_workers(ray, job.ray_workers, job.ray_cpus, use_gpus, n_chains)
        for w in warnings:
            self.writer.emit("warning", message=w)
        remote = ray.remote(max_restarts=RETRIES, max_task_retries=0, max_concurrency=2, **res)(ChainWorker)
        # Held for the job's life: a restarted actor reads its arguments again.
        self.refs = plan, song = ray.put(self.plan), ray.put(self.song)
        starts = list(self.source.starts)
        args = (self.models.paths, self.settings, plan, song, starts, device, job.ray_cpus, self.job_id)
        return [remote.remote(*args) for _ in range(n)]

    # ------------------------------------------------------------ the driver's records of a chain

    def remaining(self, chain: Chain) -> list[Work]:
        """What is left of a chain: its unfinished segments, each from its first image not yet received."""
        out = []
        for w in chain.work:
            if w.k not in self.finished:
                out.append(replace(w, first=w.first + len(self.got.get(w.k, ()))))
        return out

    def resume_points(self, chain: Chain) -> dict[str, bytes]:
        """The resume points a worker may need for what is left of ``chain`` (files by name)."""

        snaps, out = list_snapshots(self.state_dir), {}
        for w in self.remaining(chain):
            found = latest_on_chain(snaps, self.keys, w.k, w.first, first=chain.index)
            if found is not None:  # a regular file (list_snapshots), read without blocking; errors name it
                out[found[1].path.name] = read_regular(found[1].path, "resume point", 64 * MAX_CACHE_BYTES, False)
        if chain.latest is not None:
            out[chain.latest[0]] = chain.latest[1]
        return out

    def take(self, chain: Chain, msg: Message) -> None:
        """Route what a worker sent, as a local render routes its own; what a retried chain sends again is
        dropped (a segment begun or finished, an image already written)."""
        if isinstance(msg, SegmentBegun):
            if msg.k in self.begun:
                return
            self.begun.add(msg.k)
        elif isinstance(msg, ImageReady):
            got = self.got.setdefault(msg.k, set())
            if msg.i in got:
                return
            got.add(msg.i)
        elif isinstance(msg, SegmentFinished):
            if msg.k in self.finished:
                return
            self.finished.add(msg.k)
        elif isinstance(msg, ResumePoint):
            chain.latest = (snapshot_name(msg.key, msg.images), msg.state)
        self.route(msg)

    def _image_seconds(self, msg: ImageReady) -> None:
        """Count the image's time for the ETA (with Ray: the time since the chains started, as images arrive)."""
        self.n_images += 1
        self.t_images = time.monotonic() - self.t_start


class _Driver:
    """Hands chains to idle workers, collects their messages, retries chains whose worker died."""

    def __init__(self, job: RayRenderJob, ray, actors: list, chains: list[Chain], stop) -> None:
        self.job, self.ray, self.stop = job, ray, stop
        self.idle = list(actors)
        self.todo = list(chains)
        self.busy: dict[int, object] = {}
        self.inbox: queue.Queue = queue.Queue()
        self.stopping = False
        self.ready: set = set()  # the workers that came up (a worker still loading is ended without a word)
        self.checked = time.monotonic()  # when Ray's raylet was last seen alive

    def drive(self) -> bool:
        """True when the render was stopped before every chain was done."""
        self.job.t_start = time.monotonic()
        while self.todo or self.busy:
            if self.stop.stop and not self.stopping:
                self.stopping = True
                self.todo.clear()
                for actor in self.busy.values():
                    actor.stop.remote()
            while self.todo and self.idle and not self.stopping:
                ready = [c for c in self.todo if c.not_before <= time.monotonic()]
                if not ready:
                    break
                self.todo.remove(ready[0])
                self._start(ready[0], self.idle.pop(0))
            self._check_ray()
            try:
                chain, msg = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(msg, tuple) and msg[0] == "exit":
                self._exit(chain, msg[1])
            elif isinstance(msg, tuple):  # ("event", name, fields): the driver's own news of a chain
                self.job.writer.emit(msg[1], **msg[2])
            else:
                self.job.take(chain, msg)
        return self.stopping

    def _start(self, chain: Chain, actor) -> None:
        self._check_ray(now=True)
        chain.attempts += 1
        self.busy[chain.index] = actor
        job = self.job
        args = (job.remaining(chain), job.keys, job.resume_points(chain), job.snapshot_every, str(job.state_dir))
        threading.Thread(target=self._stream, args=(chain, actor, args), daemon=True).start()

    def _stream(self, chain: Chain, actor, args) -> None:
        """(a thread per chain in flight) Pass a worker's messages to the driver; then ``("exit", error)``."""
        error = None
        try:
            info = self._ready(actor)
            self.ready.add(actor)
            if info.get("tmp"):
                self.job.worker_dirs.add(info["tmp"])
            segs = [w.k for w in chain.work]
            self.inbox.put((chain, ("event", "chain_start", {"chain": chain.index, "segments": segs, **info})))
            call = actor.render_chain.options(num_returns="streaming", _generator_backpressure_num_objects=BACKLOG)
            stream = call.remote(*args)
            while self._ray_up():  # each call into a dead Ray would end the process: look first
                ref = next(stream, None)
                if ref is None:
                    break
                self.inbox.put((chain, self.ray.get(ref)))
        except BaseException as e:  # noqa: BLE001 - handed to the driver's thread
            error = e
        self.inbox.put((chain, ("exit", error)))

    def _ready(self, actor) -> dict:
        """The worker's pid, node and model-loading time, once it is up (a restarted one reloads its models)."""
        while self._ray_up():
            try:
                return self.ray.get(actor.info.remote())
            except self.ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)
        return {}

    def _ray_up(self, deep: bool = False) -> bool:
        """(any thread) Whether Ray may still be called: this machine's raylet lives (``raylet_alive``) and, ``deep``,
        its node counts as alive (``own_node_alive``)."""
        if not self.job.ray_lost and not ray_setup.raylet_alive():
            self.job.ray_lost = True
        if deep and not self.job.ray_lost and not ray_setup.own_node_alive(self.ray):
            self.job.ray_lost = True
        return not self.job.ray_lost

    def _check_ray(self, now: bool = False) -> None:
        """Stop the render, cleanly, when this machine's Ray died: before each worker start, retry or release, else
        each few seconds."""
        if not now and time.monotonic() - self.checked < 0.5:
            return
        self.checked = time.monotonic()
        if not self._ray_up(deep=True):
            raise ExternalError(
                "Ray stopped under the render (a process of Ray's on this machine died); finished frames are kept, "
                f"run again to resume. Ray's log: {self.job.store.out_dir / RAY_LOG_FILE}"
            )

    def close(self) -> None:
        """Release every worker: each removes this render's folders on its node, then it is ended."""
        for actor in list(self.idle) + list(self.busy.values()):
            self._release(actor, every=True)
        self.idle.clear()

    def _release(self, actor, every: bool = False) -> None:
        """End a worker that has no chain left, so its CPUs (or GPU) are free for the rest of the cluster."""
        if not self._ray_up(deep=True):
            return
        if actor in self.ready:
            with contextlib.suppress(Exception):  # a worker already gone: its node's folders go at the end
                self.ray.get(actor.close.remote(every), timeout=10)
        with contextlib.suppress(Exception):  # a worker already gone: its node's folders go at the end
            self.ray.kill(actor, no_restart=True)

    def _exit(self, chain: Chain, error) -> None:
        actor = self.busy.pop(chain.index)
        job = self.job
        self._check_ray(now=True)  # a worker's error may be Ray dying under it: no retry then
        if error is None:
            job.writer.emit("chain_end", chain=chain.index, attempts=chain.attempts)
            if self.todo or self.stopping:
                self.idle.append(actor)
            else:
                self._release(actor)  # nothing left to hand out: its resources go back to the cluster
            return
        self.idle.append(actor)
        if isinstance(error, self.ray.exceptions.RayTaskError):
            cause = getattr(error, "cause", None)
            if isinstance(cause, InputError):
                raise InputError(ray_setup.one_line(cause)) from None
            why = ray_setup.one_line(getattr(cause, "args", [error])[0] if cause is not None else error)
            raise RuntimeError(f"a Ray worker failed on chain {chain.index}: {why}") from None
        if not isinstance(error, self.ray.exceptions.RayError):
            raise error
        if isinstance(error, self.ray.exceptions.RayActorError) and error.actor_init_failed:
            # The worker could not start (models missing on its node, say): retrying would not help.
            lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
            last = lines[-1] if lines else str(error)
            if "InputError" in last:
                raise InputError("a Ray worker could not start: " + last.split("InputError:", 1)[-1].strip())
            raise ExternalError(f"a Ray worker could not start: {ray_setup.one_line(error)}")
        if self.stopping:
            return  # stopped anyway: the next render resumes from what was written
        if chain.attempts > RETRIES:
            raise ExternalError(
                f"chain {chain.index}: its Ray worker died {chain.attempts} times ({type(error).__name__}); "
                f"see {job.store.out_dir / RAY_LOG_FILE}"
            )
        left = job.remaining(chain)
        at = (left[0].k, left[0].first) if left else (chain.index, 0)
        job.writer.emit("chain_retry", chain=chain.index, segment=at[0], index=at[1], reason=type(error).__name__)
        chain.not_before = time.monotonic() + RETRY_BACKOFF_S * 2 ** (chain.attempts - 1)
        self.todo.insert(0, chain)

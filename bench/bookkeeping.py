"""Benchmark: the render's bookkeeping per image, with the model step replaced by a fixed latent update.

A synthetic render of ``--images`` images (default 20,000) at 512x512 goes
through the real machinery: :class:`engine.render.jobs.loop.RenderJob` with its
one-image lookahead, :class:`engine.store.writer.ImageWriter` (PNG encode,
SHA-256, durable atomic write, journal line, ``image`` event),
:class:`engine.store.manifest.RenderStore` (journal, amortised compaction) and
the time-based resume points of :mod:`engine.store.snapshots`. Only the frame
source is synthetic: :class:`SyntheticSource` has the interface of
:class:`engine.render.sources.model.ModelSource`, its state is the size of the real one
at 512x512 (a 1x256x32x32 float32 latent and Adam's two moments), and its
"step" adds a fixed update to the latent and makes a frame that encodes
like a VQGAN frame (a smooth colour field that changes slowly, plus mild
noise: about 450 KB of PNG at 512x512, within the 350-550 KB that real
frames take).

The step is paced like a GPU's: the render thread sleeps until ``--step-ms``
(default 40 ms, 25 images/s, faster than the 8-10 images/s a 3-minute song
in 10 minutes needs) has passed since the step began. While a real step waits
for the GPU, its Python thread has released the GIL and the writer and
encoder threads have the CPU; but it also launches kernels with the GIL
held, so ``--busy-ms`` (default 10 ms) of each step is pure-Python work,
timed alone before the render and again during it: the difference is how
much the other threads' Python work stretches a step. The step counts for
exactly ``--step-ms`` (or its compute time, if longer); everything else on
the render thread between two steps is the bookkeeping overhead: building
the records, queueing (and any wait on the bounded queue, i.e.
back-pressure), copying the state for a snapshot, segment ends, waking late
because another thread held the GIL.

The plan is a real plan file (validated by :func:`engine.plan.build.load_plan`)
over a synthesised song: beat segments of 0.6 s with 14 images each, as
the paper's beat-cut videos have. The same steps as
:func:`engine.render.jobs.loop.render` open the folder and run the job, so the
writer's and the store's byte counters can be read.

Prints per-thousand figures for the first and the last thousand images
(overhead per image on the render thread, bytes written per image against
the PNGs, resident memory), totals and the render's peak memory; the last line is
``overhead_ms=<mean of the last thousand> bytes_ratio=<all bytes written / PNG bytes>``.
Goals: overhead at most 5 ms per image, ratio at most 1.1, both constant in
the number of images.

Run: .venv/bin/python bench/bookkeeping.py [--images N] [--step-ms 40] [--out DIR --keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEGMENT_SECONDS = 0.6  # one beat at 100 bpm
SEGMENT_IMAGES = 14  # 23.3 images per second of music, as a 24 fps beat-cut video
LATENT_CHANNELS, FACTOR = 256, 16  # the f16/16384 VQGAN's latent at 512x512: 1x256x32x32
WINDOW = 1000


# ------------------------------------------------------------ song and plan


def write_song(path: Path, seconds: float) -> Path:
    """A synthesised song at least ``seconds`` long (rock at 100 bpm, 2.4 s a bar)."""
    import soundfile as sf

    from engine.analysis.synth import Section, synth_song

    bars = int(np.ceil(seconds / 2.4)) + 1
    song = synth_song([Section(bars, 100, "rock", "soft", 0.5)], seed=5)
    sf.write(path, song.y, song.sr)
    return path


def segment_sizes(images: int, per: int = SEGMENT_IMAGES) -> list[int]:
    """Images per segment: ``per`` each, the remainder in a last, shorter one."""
    sizes = [per] * (images // per)
    return sizes + ([images % per] if images % per else [])


def make_plan(song: Path, images: int, seconds: float = SEGMENT_SECONDS, per: int = SEGMENT_IMAGES) -> dict:
    """A version-2 plan of segments of ``seconds`` and ``per`` images, one audio guidance part each."""
    import soundfile as sf

    from engine import __version__
    from engine.files import file_sha256
    from engine.protocol import PLAN_KIND, PLAN_VERSION

    segments = []
    for k, n in enumerate(segment_sizes(images, per)):
        start, end = round(k * seconds, 4), round((k + 1) * seconds, 4)
        segments.append(
            {
                "index": k,
                "start": start,
                "end": end,
                "intensity": 0.5,
                "rate": round(n / seconds, 4),
                "steps": n,
                "images": n,
                "parts": [{"start": start, "end": end, "kind": "audio", "text": None}],
                "prompt": None,
                "prompt_weight": 1.0,
                "take": 0,
            }
        )
    return {
        "version": PLAN_VERSION,
        "kind": PLAN_KIND,
        "engine": __version__,
        "song": {"path": str(song), "sha256": file_sha256(song), "duration": sf.info(str(song)).duration},
        "segments": segments,
        "totals": {"steps": images, "images": images},
        "lyrics": [],
        "warnings": [],
    }


# ------------------------------------------------------------ the synthetic source


class Frames:
    """Frames that encode like VQGAN output: a smooth, slowly moving colour field plus mild noise.

    A bank of ``bank`` frames along one period of the field is made once; frame ``n`` is bank entry
    ``n % bank`` shifted by ``n // bank`` pixels, so every frame differs and making one is a copy.
    """

    def __init__(self, width: int, height: int, noise: float = 4.0, bank: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
        self.bank = []
        for j in range(bank):
            t = 2 * np.pi * j / bank
            rgb = np.stack(
                [
                    np.sin(2 * np.pi * 1.3 * x + np.cos(2 * np.pi * 2 * y) + t),
                    np.sin(2 * np.pi * 1.7 * y + 1.0 - t),
                    np.cos(2 * np.pi * 2.1 * (x + y) + t),
                ],
                -1,
            )
            rgb = 120 + 100 * rgb + rng.normal(0, noise, rgb.shape)
            self.bank.append(np.clip(rgb, 0, 255).astype(np.uint8))

    def frame(self, n: int) -> np.ndarray:
        """Frame ``n`` (a new array: the writer keeps it until it is encoded)."""
        return np.roll(self.bank[n % len(self.bank)], n // len(self.bank), axis=1)


@dataclass
class Sample:
    """Counters read on the render thread when image ``n`` starts (the writer is a few images behind)."""

    n: int
    t: float
    written: int
    image_bytes: int
    rss_mb: float


@dataclass
class Meter:
    """The render thread's time outside the step, per image, and the byte counters every thousand images."""

    total: int
    gaps: np.ndarray = field(init=False)
    samples: list[Sample] = field(default_factory=list)
    step_end: float | None = None
    compute: float = 0.0
    busy: float = 0.0

    def __post_init__(self) -> None:
        self.gaps = np.full(self.total, np.nan)


class Busy:
    """Python work that holds the GIL for about ``ms`` milliseconds, as a real step's kernel launches do.

    A GPU step is not all sleep: its Python thread launches kernels with the GIL held, so the writer's
    and encoders' own Python work can stretch the step. :meth:`calibrate` times the work alone, before
    the render; the report compares its time during the render with that.
    """

    def __init__(self, ms: float) -> None:
        self.ms, self.loops, self.alone = ms, 0, 0.0

    def calibrate(self, rounds: int = 200) -> None:
        self.loops = 20_000
        t = time.perf_counter()
        _spin(self.loops)
        self.loops = max(1, int(self.loops * self.ms / 1000 / (time.perf_counter() - t)))
        times = sorted(self.run() for _ in range(rounds))
        self.alone = times[len(times) // 2]

    def run(self) -> float:
        t = time.perf_counter()
        _spin(self.loops)
        return time.perf_counter() - t


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x ^= i
    return x


def png_strategies(frames: Frames, n: int = 20) -> dict:
    """PNG size and encode time of ``n`` frames with zlib's RLE strategy (m2v's) and its default, for the report."""
    import io
    import zlib

    from PIL import Image

    out = {}
    for name, kw in (("rle", {"compress_type": zlib.Z_RLE}), ("default", {})):
        size, t = 0, time.perf_counter()
        for k in range(n):
            buf = io.BytesIO()
            Image.fromarray(frames.frame(k * 37)).save(buf, format="PNG", optimize=False, **kw)
            size += buf.tell()
        out[name] = (size / n / 1000, (time.perf_counter() - t) / n * 1000)
    return out


def reset_peak() -> bool:
    """Start the peak-memory count again (Linux), so the song and plan made before the render do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Peak resident memory since :func:`reset_peak` (Linux), else since the process began."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SyntheticSource:
    """:class:`engine.render.sources.model.ModelSource`'s interface; a step is a fixed latent update and a sleep."""

    stateful = True
    lookahead = True

    def __init__(self, plan: dict, settings, step_s: float, busy: Busy | None = None) -> None:
        import torch

        self.plan, self.settings, self.step_s, self.busy = plan, settings, step_s, busy
        self.images = [int(s["images"]) for s in plan["segments"]]
        self.records = Frames(settings.width, settings.height)
        shape = (1, LATENT_CHANNELS, settings.height // FACTOR, settings.width // FACTOR)
        self.z = torch.zeros(shape, requires_grad=True)
        self.opt = torch.optim.Adam([self.z], lr=settings.lr)
        self.z.grad = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        self.opt.step()  # Adam's moments now exist: a snapshot is latent-plus-Adam sized
        self.dz = torch.full(shape, 1e-3)
        self.n = 0
        self.pos: tuple[int, int] = (0, 0)
        self.current = self.records.frame(0)
        self.meter = Meter(sum(self.images))
        self.job = None  # set by the benchmark: the byte counters are read from its writer and store

    def ids(self) -> dict:
        return {"synthetic": "bench/bookkeeping.py"}

    def norm(self, k: int, i: int) -> tuple[int, int]:
        return (k + 1, 0) if i >= self.images[k] and k + 1 < len(self.images) else (k, i)

    def at(self, k: int, i: int) -> bool:
        return self.norm(*self.pos) == self.norm(k, i)

    def image_info(self, k: int, i: int) -> dict:
        return {}  # no footage

    def seek(self, k: int, i: int, keys, state_dir, warn) -> int:
        raise RuntimeError("the benchmark renders into a fresh folder: no seek expected")

    def make_image(self, k: int, i: int) -> tuple[np.ndarray, float]:
        """Image ``i`` of segment ``k``: the previous image (the lookahead), after a step of ``step_s``."""
        import torch

        t0 = time.monotonic()
        m = self.meter
        if m.step_end is not None:
            m.gaps[self.n - 1] = t0 - m.step_end
        if self.n % WINDOW == 0 or self.n == m.total - 1:
            self._sample(t0)
        previous = self.current
        if self.busy is not None:
            m.busy += self.busy.run()
        with torch.no_grad():
            self.z.add_(self.dz)
        self.n += 1
        self.current = self.records.frame(self.n)
        self.pos = (k, i + 1)
        m.compute += time.monotonic() - t0
        left = t0 + self.step_s - time.monotonic()
        if left > 0:
            time.sleep(left)
            m.step_end = t0 + self.step_s  # waking late (another thread holds the GIL) counts as overhead
        else:
            m.step_end = time.monotonic()
        return previous, 1.0 / (1 + self.n)

    def _sample(self, t: float) -> None:
        w, s = self.job.writer, self.job.store
        self.meter.samples.append(Sample(self.n, t, w.bytes_written + s.bytes_written, w.image_bytes, rss_mb()))

    def decode(self) -> np.ndarray:
        return self.current

    def state(self) -> dict:
        from engine.render.step.optimize import cpu_copy

        return {"z": cpu_copy(self.z), "opt": cpu_copy(self.opt.state_dict())}


# ------------------------------------------------------------ the run


def sleep_floor(step_s: float, n: int = 100) -> float:
    """Mean ms a bare ``sleep(step_s)`` wakes late on this machine now, with no writer running.

    On a shared or loaded machine the scheduler alone wakes the render thread late; this is the
    part of the overhead that no bookkeeping can remove.
    """
    late = 0.0
    for _ in range(n):
        t = time.monotonic()
        time.sleep(step_s)
        late += time.monotonic() - t - step_s
    return late / n * 1000


def run_render(plan_path: Path, out_dir: Path, step_ms: float, snapshot_every: float, busy: Busy | None = None):
    """What :func:`engine.render.jobs.loop.render` does once its source is made; returns the finished job."""
    from engine.files import FolderLock
    from engine.plan.build import load_plan
    from engine.progress import Progress
    from engine.protocol import LOCK_FILE
    from engine.render.jobs.job import RenderJob
    from engine.render.jobs.keys import segment_keys
    from engine.render.jobs.loop import load_plan_song
    from engine.settings import RenderSettings
    from engine.stopping import StopFlag
    from engine.store.manifest import RenderStore

    settings = RenderSettings(width=512, height=512)
    plan = load_plan(plan_path)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        progress = Progress(out=sink, bar=False)  # events are made and written as for the add-on
        song_16k = load_plan_song(plan, progress)
        source = SyntheticSource(plan, settings, step_ms / 1000, busy)
        keys = segment_keys(plan, song_16k, settings, source.ids())
        out_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(out_dir, LOCK_FILE):
            header = {"song": plan["song"], "settings": settings.key_fields(), "models": source.ids()}
            store = RenderStore.open(out_dir, header)
            try:
                job = RenderJob(plan, keys, store, source, progress, snapshot_every)
                source.job = job
                job.rss_start, job.peak_reset = rss_mb(), reset_peak()
                t0, cpu0, main0 = time.monotonic(), _process_cpu(), time.thread_time()
                code = job.render(StopFlag())
                job.wall = time.monotonic() - t0
                # Every thread but this one: the writer and the encoders (torch runs one thread here).
                job.helper_cpu = (_process_cpu() - cpu0) - (time.thread_time() - main0)
                job.peak = peak_mb()
            finally:
                store.close()
    if code != 0:
        raise SystemExit(f"the render ended with code {code}")
    return job


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------ the report


def window(source: SyntheticSource, lo: int, hi: int) -> dict:
    """Figures for images ``[lo, hi)``: overhead statistics and bytes per image between two samples."""
    gaps = source.meter.gaps[lo:hi]
    gaps = gaps[~np.isnan(gaps)] * 1000
    by_n = {s.n: s for s in source.meter.samples}
    # Samples fall every WINDOW images and on the last: take the nearest at or below each end.
    a = by_n[max((n for n in by_n if n <= lo), default=min(by_n))]
    b = by_n[max(n for n in by_n if n <= hi)]
    written, png = b.written - a.written, b.image_bytes - a.image_bytes
    images = max(1, b.n - a.n)
    return {
        "mean": float(gaps.mean()),
        "p50": float(np.percentile(gaps, 50)),
        "p99": float(np.percentile(gaps, 99)),
        "max": float(gaps.max()),
        "kb": written / images / 1000,
        "png_kb": png / images / 1000,
        "ratio": written / max(1, png),
        "rss": b.rss_mb,
    }


def report(job, step_ms: float, floor_ms: float, png: dict) -> str:
    source: SyntheticSource = job.source
    n = source.meter.total
    w, s = job.writer, job.store
    first = window(source, 0, min(WINDOW, n))
    last = window(source, max(0, n - WINDOW), n)
    print(f"{n} images at 512x512, step {step_ms:g} ms, wall {job.wall:.1f} s ({n / job.wall:.1f} images/s)")
    print(f"synthetic step compute {source.meter.compute / n * 1000:.2f} ms of the {step_ms:g} ms")
    print(f"encoder threads {job.writer.encoders}; a bare sleep wakes {floor_ms:.2f} ms late on this machine now")
    print(
        f"writer and encoder threads: {job.helper_cpu / n * 1000:.1f} ms of CPU per image"
        f" (off the render thread; PNG {png['rle'][0]:.0f} KB in {png['rle'][1]:.0f} ms with zlib's RLE strategy,"
        f" {png['default'][0]:.0f} KB in {png['default'][1]:.0f} ms with its default)"
    )
    busy = source.busy
    if busy is not None:
        during = source.meter.busy / n
        print(
            f"GIL-held part of the step: {busy.alone * 1000:.2f} ms alone, {during * 1000:.2f} ms during the render"
            f" (stretched {(during - busy.alone) * 1000:+.2f} ms by the other threads' Python work)"
        )
    print()
    print("images          overhead ms: mean    p50    p99     max | KB written/image  PNG KB  ratio | RSS MB")
    for name, f in ((f"first {WINDOW}", first), (f"last {WINDOW}", last)):
        print(
            f"{name:<15} {f['mean']:17.2f} {f['p50']:6.2f} {f['p99']:6.2f} {f['max']:7.1f} |"
            f" {f['kb']:16.1f} {f['png_kb']:7.1f} {f['ratio']:6.3f} | {f['rss']:6.0f}"
        )
    gaps = source.meter.gaps[~np.isnan(source.meter.gaps)] * 1000
    total = w.bytes_written + s.bytes_written
    print()
    print(
        f"all images: overhead mean {gaps.mean():.2f} ms, p99 {np.percentile(gaps, 99):.2f} ms, max {gaps.max():.1f} ms"
    )
    print(
        f"bytes: PNG {w.image_bytes / 1e6:.1f} MB ({w.image_bytes / n / 1000:.1f} KB/image),"
        f" snapshots {w.snapshot_bytes / 1e6:.1f} MB ({w.snapshots} of them),"
        f" journal+manifest {s.bytes_written / 1e6:.1f} MB; all {total / 1e6:.1f} MB"
    )
    during = "during the render" if job.peak_reset else "of the process"
    print(f"RSS at the render's start {job.rss_start:.0f} MB (torch, numpy, the song); peak {during} {job.peak:.0f} MB")
    return f"overhead_ms={last['mean']:.2f} bytes_ratio={total / w.image_bytes:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--step-ms", type=float, default=40.0, help="the simulated GPU step (default 40 ms)")
    ap.add_argument(
        "--busy-ms", type=float, default=10.0, help="part of the step that holds the GIL, as kernel launches do"
    )
    ap.add_argument("--snapshot-every", type=float, default=None, help="seconds between resume points (default 15)")
    ap.add_argument("--out", type=Path, default=None, help="render folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the render folder")
    args = ap.parse_args()
    if args.images < 2:
        ap.error("--images must be at least 2")
    if not 0 <= args.busy_ms < args.step_ms:
        ap.error("--busy-ms must be at least 0 and less than --step-ms")
    import torch

    from engine.files import write_json_atomic
    from engine.store.snapshots import DEFAULT_INTERVAL

    torch.set_num_threads(1)  # a GPU render's torch uses no CPU threads for the step
    work = Path(tempfile.mkdtemp(prefix="m2v-bookkeeping-"))
    out = args.out or work / "out"
    try:
        song = write_song(work / "song.wav", len(segment_sizes(args.images)) * SEGMENT_SECONDS + 1.0)
        plan_path = work / "plan.json"
        write_json_atomic(make_plan(song, args.images), plan_path)
        every = DEFAULT_INTERVAL if args.snapshot_every is None else args.snapshot_every
        floor = sleep_floor(args.step_ms / 1000)
        png = png_strategies(Frames(512, 512))
        busy = None
        if args.busy_ms > 0:
            busy = Busy(args.busy_ms)
            busy.calibrate()
        job = run_render(plan_path, out, args.step_ms, every, busy)
        last = report(job, args.step_ms, floor, png)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(last)


if __name__ == "__main__":
    main()

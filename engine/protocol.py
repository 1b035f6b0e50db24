"""The contract between the Blender add-on and the engine, in one place.

Exit codes, the JSON events the engine prints, the files it writes, the
kinds and versions of its JSON documents, the rule that maps a song time to
the image shown then, and the rule that turns segment loudness into
optimisation steps. Standard library only: the add-on runs inside Blender
(no numpy guarantees, never torch) and loads this very file from the engine
sources it ships, so both sides read one definition.

Events
------
Every event is one JSON object on one line of the engine's stdout, with
``event`` (its name) and ``t`` (seconds since the command started). Each
name below lists the fields a reader may rely on; writers may add more.
The add-on's own bookkeeping events use the ``client.`` prefix and never
come from the engine.
"""

from __future__ import annotations

import math

# ---------------------------------------------------------------- exit codes

EXIT_OK = 0
#: A bug in the engine: the message asks for a report.
EXIT_INTERNAL = 1
#: Bad input (a file, a flag, a plan): the message names it and says what is wrong.
EXIT_INPUT = 2
#: Cancelled (Ctrl-C, SIGTERM, the add-on's Cancel): every finished frame is kept; run again to resume.
EXIT_CANCELLED = 3
#: Interrupted outside a render (Ctrl-C while analysing, say).
EXIT_INTERRUPTED = 130

# ---------------------------------------------------------------- documents

PLAN_KIND, PLAN_VERSION = "m2v-plan", 2
MANIFEST_KIND, MANIFEST_VERSION = "m2v-render", 2
INFO_KIND, INFO_VERSION = "m2v-info", 1
SEGMENT_SETTINGS_KIND, SEGMENT_SETTINGS_VERSION = "m2v-segment-settings", 1
#: How far (seconds) a segment-settings entry's start may be from a segment's start and still belong to it (the
#: engine's matching, and the add-on's for keyframed segment weights).
SEGMENT_MATCH_S = 0.02
ANALYSIS_SUMMARY_KIND, ANALYSIS_SUMMARY_VERSION = "m2v-analysis-summary", 1
#: Timed prompts (``--prompts``, ``engine.plan.prompts``) and keyframed settings (``--curves``, ``engine.plan.curves``).
PROMPTS_KIND, PROMPTS_VERSION = "m2v-prompts", 1
CURVES_KIND, CURVES_VERSION = "m2v-curves", 1
#: The music as curves (``engine signals``, ``engine.plan.signals``): what Bake Music to F-Curve writes as keyframes.
SIGNALS_KIND, SIGNALS_VERSION = "m2v-signals", 1
#: (The signals themselves are a list of choices: ``engine.settings_table.SIGNALS``.)

# ---------------------------------------------------------------- defaults

#: The workloads. ``paper``: the paper's method as its text reads (every beat a segment, 10 + 110 x intensity
#: optimisation steps per second of music, 512x512, 32 cutouts of the authors' ``latest`` kind, Adam lr 0.1,
#: eq. 2); the intensity is the paper's reading unless ``--intensity authors`` (:data:`INTENSITIES`).
#: ``draft``: a preview that a CPU renders in reasonable time. ``auto`` picks ``paper`` on a GPU, ``draft`` on
#: a CPU. Any flag overrides its preset's value.
PRESETS: dict[str, dict] = {
    "paper": {
        "granularity": "beats",
        "min_rate": 10.0,
        "max_rate": 120.0,
        "size": (512, 512),
        "cutouts": 32,
        "cutout_method": "latest",
        "lr": 0.1,
    },
    "draft": {
        "granularity": "scenes",
        "min_rate": 2.0,
        "max_rate": 8.0,
        "size": (256, 256),
        "cutouts": 32,
        "cutout_method": "crops",
        "lr": 0.1,
    },
}
# ``musicvideo``: the paper's workload with motion that follows the music (:data:`MOTION_PRESETS`).
PRESETS["musicvideo"] = dict(PRESETS["paper"])
#: Motion per preset (``engine.render.sources.motion``): zoom per beat at full onset strength, rotation in degrees and shift
#: in pixels (x right, y up) per second at full intensity. Presets not listed have no motion.
MOTION_PRESETS: dict[str, dict] = {
    "musicvideo": {"zoom": 0.03, "rotate": 2.0, "shift": (0.0, 0.0), "motion_drive": "music"},
}
MOTION_OFF = {"zoom": 0.0, "rotate": 0.0, "shift": (0.0, 0.0), "motion_drive": "music"}
#: The flags, their ranges and choices (devices, presets, cutout methods...) are rows of
#: :mod:`engine.settings_table`, loaded by the add-on beside this file.

# ---------------------------------------------------------------- media

#: The rate songs are read at for guidance and cache keys (Wav2CLIP's input rate).
AUDIO_RATE = 16000
#: Timed lyrics files the engine reads.
LYRIC_SUFFIXES = (".lrc", ".srt", ".vtt", ".csv")
#: Still images footage may be (alone, or a folder of them as an image sequence).
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".tga")

#: The authors' intensity curve (``--intensity authors``): sample rate, hop, mel bands and top frequency of their
#: mel spectrogram. A plan (or an analysis summary) without ``levels["intensity"]`` is ``paper``.
AUTHORS_POWER = {"sr": 16000, "hop": 512, "n_mels": 128, "fmax": 8000.0}
#: The implementation of the cutouts (engine.render.step.augment), in every cache key: frames made by another are not reused.
CUTOUT_IMPL = "batched-1"

# ---------------------------------------------------------------- files in a render folder

MANIFEST_FILE = "manifest.json"
#: Append-only record of finished frames (one JSON object a line), folded into the manifest now and then.
JOURNAL_FILE = "frames.jsonl"
#: Latent and optimiser snapshots (resume points).
STATE_DIR = "state"
#: Held while a render writes into the folder.
LOCK_FILE = ".m2v-lock"
#: Every temporary file m2v writes ends with this, so a crash's leftovers can be found and removed.
TEMP_SUFFIX = ".m2v-tmp"
#: The engine's stderr, kept by the add-on in its output folder.
LOG_FILE = "engine.log"
#: Ray's own log lines during a ``render --ray`` (its notices and warnings), kept out of the user's terminal.
RAY_LOG_FILE = "ray.log"
#: Segment folders start with this (only these are ever deleted by m2v).
SEGMENT_DIR_PREFIX = "seg_"

# ---------------------------------------------------------------- events

EVENTS: dict[str, tuple[str, ...]] = {
    # render
    "start": ("segments", "total", "steps", "out", "layout", "device"),
    "segment_start": ("segment", "start", "end", "images", "steps", "resumed_at"),
    "image": ("segment", "index", "done", "total", "file", "eta_s"),
    # ``dir``: absolute folder of the frames; ``files``: one file name per image, in order;
    # ``slots``: each image's [start, end) in song seconds (see :func:`image_at`).
    "segment_end": ("segment", "key", "reused", "start", "end", "dir", "files", "slots", "done", "total"),
    "cancelled": ("done", "total"),
    "done": ("done", "total", "out"),
    # render --ray (engine.render.jobs.ray_render): the cluster joined, each chain handed to a worker, retried, done
    "ray_start": ("address", "workers", "startup_s"),
    "chain_start": ("chain", "segments", "pid", "node", "load_s"),
    "chain_retry": ("chain", "segment", "index", "reason"),
    "chain_end": ("chain", "attempts"),
    # analyze / plan (with --events)
    "planned": ("output", "segments", "steps", "images"),
    # export --timeline (with --events): the file written, its format, clips and the gaps left for missing images
    "exported": ("output", "format", "clips", "gaps"),
    "estimate": ("steps", "images", "seconds", "device"),
    # info (with --events): the add-on's Check
    "info": ("engine", "torch", "device", "device_name", "models_dir", "models"),
    # every command
    "warning": ("message",),
    "error": ("message", "code"),
}
#: The engine's global flag that makes every command speak these events (the add-on's mode).
EVENTS_FLAG = "--events"
#: Events the add-on makes itself (process exit, a non-JSON line): never printed by the engine.
CLIENT_EXIT = "client.exit"
CLIENT_OUTPUT = "client.output"


def make_event(name: str, **fields) -> dict:
    """An event dictionary, checked against :data:`EVENTS` (a writer's typo fails loudly in tests)."""
    missing = [f for f in EVENTS[name] if f not in fields]
    if missing:
        raise ValueError(f"event {name!r} lacks {', '.join(missing)}")
    return {"event": name, **fields}


def check_event(ev: object) -> dict:
    """Validate an event read from the engine; raises ``ValueError`` naming what is wrong."""
    if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
        raise ValueError("not an m2v event (no 'event' name)")
    name = ev["event"]
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}")
    missing = [f for f in EVENTS[name] if f not in ev]
    if missing:
        raise ValueError(f"event {name!r} lacks {', '.join(missing)}")
    return ev


def check_document(doc: object, kind: str, version: int) -> dict:
    """Check a JSON document's ``kind`` and ``version``; raises ``ValueError`` in plain words."""
    if not isinstance(doc, dict):
        raise ValueError(f"not an {kind} document")
    if doc.get("kind") != kind:
        raise ValueError(f"not an {kind} document (kind {doc.get('kind')!r})")
    if doc.get("version") != version:
        raise ValueError(f"{kind} version {doc.get('version')!r}; this version of m2v reads version {version}")
    return doc


# ---------------------------------------------------------------- time -> image


def image_at(t: float, start: float, end: float, n_images: int) -> int:
    """Index of the image shown at song time ``t`` in a segment of ``n_images`` equal slots.

    The one rule for the exported video and for the add-on's image strips: a
    frame shows the image whose slot holds the frame's start time.
    """
    if n_images < 1 or not end > start:
        raise ValueError("a segment needs a positive length and at least one image")
    slot = (end - start) / n_images
    return min(n_images - 1, max(0, int(math.floor((t - start) / slot + 1e-6))))


def image_slots(start: float, end: float, n_images: int, digits: int | None = 6) -> list[list[float]]:
    """Each image's ``[start, end)`` in song seconds, rounded to ``digits`` (``None``: unrounded, the same
    arithmetic as :func:`image_at`)."""
    slot = (end - start) / n_images
    if digits is None:
        return [[start + i * slot, start + (i + 1) * slot] for i in range(n_images)]
    return [[round(start + i * slot, digits), round(start + (i + 1) * slot, digits)] for i in range(n_images)]


# ---------------------------------------------------------------- timeline rates (issue 29)

#: NTSC rates are n x 1000/1001 frames a second; a rate within this of one (23.976, 23.98, 29.97) is that one.
NTSC_TOLERANCE = 0.005


def timeline_rate(fps: float | str) -> tuple[int, int]:
    """A frame rate as an exact fraction ``(numerator, denominator)``.

    ``"30000/1001"`` is taken as written; a number near an NTSC rate (23.976, 23.98, 29.97, 59.94, or
    Blender's ``fps / fps_base`` = 30 / 1.001) is ``n * 1000 / 1001``; any other is the nearest fraction
    with a denominator of at most 1001 (24, 25, 12.5). The exported timeline and the add-on use it, so a
    29.97 timeline's frames fall where Blender's do, not a 30 fps grid's.
    """
    if isinstance(fps, str) and "/" in fps:
        num, _, den = fps.partition("/")
        n, d = int(num), int(den)
        if n <= 0 or d <= 0:
            raise ValueError(f"not a frame rate: {fps!r}")
        g = math.gcd(n, d)
        return n // g, d // g
    x = float(fps)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"not a frame rate: {fps!r}")
    n = round(x * 1.001)
    if n > 0 and x != round(x) and abs(x - n * 1000 / 1001) <= NTSC_TOLERANCE:
        g = math.gcd(n * 1000, 1001)
        return n * 1000 // g, 1001 // g
    from fractions import Fraction

    f = Fraction(x).limit_denominator(1001)
    return f.numerator, f.denominator


# ---------------------------------------------------------------- loudness -> steps


def step_rate(intensity: float, min_rate: float, max_rate: float) -> float:
    """Optimisation steps per second of music, linear in normalised intensity (paper 3.1)."""
    return min_rate + intensity * (max_rate - min_rate)


def step_and_image_counts(rate: float, length: float, fps: float, whole: bool = False) -> tuple[int, int]:
    """Steps and distinct images of a segment.

    ``steps = round(rate x length)`` (at least one; with ``whole``, the authors'
    ``int(rate x length)``); the images are as many as the steps but never more
    than the output frame rate can show (``round(fps x length)``, at least
    one): extra steps are spread over the images, so a 120 steps/s segment on
    a 24 fps timeline makes 24 images a second of 5 steps each.
    """
    x = rate * length
    steps = max(1, int(x + 1e-9) if whole else int(round(x)))
    return steps, max(1, min(steps, int(round(fps * length))))


def steps_per_image(steps: int, images: int) -> list[int]:
    """Steps of each image, spread evenly (the counts differ by at most one and sum to ``steps``)."""
    return [(i + 1) * steps // images - i * steps // images for i in range(images)]


def mean_level(levels: list[float], hop: float, start: float, end: float) -> float:
    """Mean of a level curve (one value per ``hop`` seconds from time 0) over ``[start, end)``."""
    n = len(levels)
    a = min(max(int(math.floor(start / hop)), 0), n - 1)
    b = min(max(int(math.ceil(end / hop)), a + 1), n)
    return math.fsum(levels[a:b]) / (b - a)


def max_level(levels: list[float], hop: float, start: float, end: float) -> float:
    """Maximum of a curve (one value per ``hop`` seconds from time 0) over the frames from ``start`` to ``end``.

    The authors' window: frames ``floor(start / hop)`` up to but not including ``floor(end / hop)``; a segment
    ending at the curve's last frame takes it too (their last segment runs to the song's end).
    """
    n = len(levels)
    a = min(max(int(math.floor(start / hop + 1e-6)), 0), n - 1)
    b = min(max(int(math.floor(end / hop + 1e-6)), a + 1), n)
    if b >= n - 1:
        b = n
    return max(levels[a:b])


def normalized_intensity(level: float, lo: float, hi: float) -> float:
    """A level scaled to 0-1 between the song's quiet and loud ends (0.5 for a flat song)."""
    if hi - lo <= 1e-6:
        return 0.5
    return min(1.0, max(0.0, (level - lo) / (hi - lo)))


def segment_counts(
    levels: dict, bounds: list[float], min_rate: float, max_rate: float, fps: float
) -> list[tuple[float, float, int, int]]:
    """``(intensity, rate, steps, images)`` per segment for the given boundaries.

    ``levels`` is the plan's ``analysis.levels`` (``hop``, ``offset``, ``db``,
    ``range``; with ``intensity: "authors"`` also ``power``: ``hop``, ``offset``,
    ``values``, see :data:`INTENSITIES`): the add-on recomputes a plan's cost
    from it when markers move, with exactly the engine's arithmetic.
    """
    authors = levels.get("intensity", "paper") == "authors"
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        x = segment_intensity(levels, a, b)
        rate = step_rate(x, min_rate, max_rate)
        steps, images = step_and_image_counts(rate, b - a, fps, whole=authors)
        out.append((x, rate, steps, images))
    return out


def segment_intensity(levels: dict, start: float, end: float) -> float:
    """A segment's intensity, 0-1, from the plan's level curves (file seconds ``start`` to ``end``)."""
    if levels.get("intensity", "paper") == "authors":
        p = levels["power"]
        return min(1.0, max(0.0, max_level(p["values"], p["hop"], start - p["offset"], end - p["offset"])))
    hop, off, (lo, hi) = levels["hop"], levels["offset"], levels["range"]
    return normalized_intensity(mean_level(levels["db"], hop, start - off, end - off), lo, hi)


def estimate_seconds(calibration: dict, steps: int, images: int, width: int, height: int, cutouts: int) -> float:
    """Render time from a calibration's cost model (seconds per step at a size and cutout count)."""
    per_step = (
        calibration["decode_s_per_mpix"] * width * height / 1e6
        + calibration["clip_s_per_cutout"] * cutouts
        + calibration.get("step_overhead_s", 0.0)
    )
    return steps * per_step + images * calibration.get("image_s", 0.0)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min"

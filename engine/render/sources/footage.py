"""The editor's footage: which frame each generated image follows, and that frame's pixels.

A footage source is a movie (anything PyAV reads), a still image, or a folder
of images played at a given rate. Where it sits against the song is three
settings (``RenderSettings``), the same numbers a video editor shows:

- ``footage_offset``: the movie time (seconds) shown at song time 0;
- ``footage_speed``: movie seconds per song second (1 plays it as recorded; a
  24 fps movie that an editor plays frame for frame on a 29.97 fps timeline
  runs at 29.97 / 24);
- ``footage_span``: the song times where the footage is visible (a trimmed
  strip), or ``None``: the whole movie.

Image ``i`` of a segment holds the slot ``[a, b)`` of song time (see
:func:`engine.protocol.image_at`). It follows the first footage frame that
*starts* inside its slot, which is the frame shown at the image's first
timeline frame whenever the footage's frame grid and the timeline's agree
(the usual case: a movie strip on the song's timeline); a slot shorter than
a footage frame, with no frame starting inside it, follows the frame showing
at ``a``. A segment's first image follows the frame starting nearest to the
segment's start, where the add-on starts its strip. Everything here is a pure function of the frame times, so a resumed
render picks exactly the frames an uninterrupted one picked.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import warnings
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.files import cache_dir, check_input_file, file_sha256, read_cache_file, write_json_atomic

# Still images (STILL_SUFFIXES) are read with PIL; anything else that is a file is opened as a movie (PyAV).
from engine.protocol import STILL_SUFFIXES, image_slots

#: Slack for float arithmetic on frame times (seconds): far below any frame's length.
EPS = 1e-7
#: Decode forward instead of seeking when the wanted frame is at most this many frames ahead.
SEEK_WINDOW = 48
#: The per-frame digests of a footage file at one render size, kept in m2v's cache folder by the file's hash.
DIGESTS_KIND, DIGESTS_VERSION = "m2v-footage-digests", 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def movie_time(settings, t: float) -> float:
    """The movie time shown at song time ``t``."""
    return settings.footage_offset + settings.footage_speed * t


def song_time(settings, tm: float) -> float:
    """The song time at which movie time ``tm`` is shown."""
    return (tm - settings.footage_offset) / settings.footage_speed


def pick_frame(times: list[float], end: float, settings, a: float, b: float, first: bool = False) -> int | None:
    """The footage frame an image with the song-time slot ``[a, b)`` follows, or None where there is no footage.

    A footage frame "starts in the slot" by the rule that decides which image a timeline frame shows
    (``protocol.image_at``: ``floor((t - start) / slot + 1e-6)``), so a frame the add-on shows with an
    image is the frame that image follows, even where the plan's boundaries are rounded. A segment's
    ``first`` image is shown from the timeline frame *nearest* to the segment's start (the add-on's strip
    starts there, and ``image_at`` clamps to the first image), so it follows the footage frame starting
    nearest to ``a``.

    Parameters
    ----------
    times : list of float
        Start time (movie seconds, increasing, the first at 0) of every footage frame.
    end : float
        Movie time at which the last frame stops showing (``inf`` for a still).
    settings : engine.settings.RenderSettings
        Where the footage sits: ``footage_offset``, ``footage_speed``, ``footage_span``.
    a, b : float
        The image's slot in song seconds.
    """
    slack = 1e-6 * (b - a)
    ta, tb = movie_time(settings, a - slack), movie_time(settings, b - slack)
    if movie_time(settings, a) >= end - EPS or tb <= times[0]:
        return None
    j = bisect.bisect_left(times, ta)
    if first:
        near = movie_time(settings, a)
        j = min((k for k in (j - 1, j) if 0 <= k < len(times)), key=lambda k: abs(times[k] - near), default=j)
    if j < len(times) and times[j] < tb:
        t_song = song_time(settings, times[j]) if first else max(a, song_time(settings, times[j]))
    else:
        j = bisect.bisect_right(times, movie_time(settings, a) + EPS) - 1
        if j < 0:
            return None
        t_song = a
    span = settings.footage_span
    if span is not None and not (span[0] - EPS <= t_song < span[1] - EPS):
        return None
    return j


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def sequence_files(folder: Path) -> list[Path]:
    """The still images of a folder in the order an image sequence plays them (numbers compared as numbers)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in STILL_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture at the render size (Lanczos, stretched as VQGAN-CLIP does)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    if img.size != (width, height):
        img = img.resize((width, height), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


class _Movie:
    """Frames of a movie by index, decoded forward and seeking only on a jump."""

    def __init__(self, path: Path) -> None:
        import av

        try:
            probe = av.open(str(path))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"--footage: not a movie or picture m2v can read ({e})", path) from None
        with probe:
            if not probe.streams.video:
                raise InputError("--footage: the file has no video stream", path)
            stream = probe.streams.video[0]
            try:
                stamps = (p.pts if p.pts is not None else p.dts for p in probe.demux(stream) if p.size)
                pts = sorted({t for t in stamps if t is not None})
            except (av.error.FFmpegError, OSError, ValueError) as e:
                raise InputError(f"--footage: the movie is damaged ({e})", path) from None
            base = stream.time_base
            rate = stream.average_rate or stream.guessed_rate
        if not pts or base is None:
            raise InputError("--footage: the movie has no timed frames", path)
        self.path, self.pts = path, pts
        self.index = {p: j for j, p in enumerate(pts)}
        self.times = [float((p - pts[0]) * base) for p in pts]
        last = float(1 / rate) if rate else (self.times[-1] - self.times[-2] if len(pts) > 1 else 1 / 24)
        self.end = self.times[-1] + last
        self._container = None
        self._frames = None
        self._next = -1

    def _open(self, j: int) -> None:
        import av

        if self._container is None:
            self._container = av.open(str(self.path))
        stream = self._container.streams.video[0]
        if j > 0:
            self._container.seek(self.pts[j], stream=stream, backward=True, any_frame=False)
        else:
            self._container.seek(0, stream=stream, backward=True, any_frame=False)
        self._frames = self._container.decode(stream)

    def frame(self, j: int) -> np.ndarray:
        import av

        try:
            return self._decode(j)
        except (av.error.FFmpegError, OSError, ValueError, MemoryError) as e:
            # Damage found mid-render is the movie's, so the user's to fix: say which file and frame.
            self.close()
            raise InputError(
                f"--footage: frame {j} of the movie is damaged and cannot be decoded ({e})", self.path
            ) from None

    def _decode(self, j: int) -> np.ndarray:
        if self._frames is None or not (self._next <= j <= self._next + SEEK_WINDOW):
            self._open(j)
        for f in self._frames:
            k = self.index.get(f.pts if f.pts is not None else -1)
            if k is None or k < j:
                continue
            self._next = k + 1
            return f.to_ndarray(format="rgb24")
        raise InputError(f"--footage: frame {j} could not be decoded", self.path)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None


class Footage:
    """An opened footage source: frame times, a content digest, and frames at the render size.

    Parameters
    ----------
    path : str or Path
        A movie, a still image, or a folder of images (an image sequence, needs ``fps``).
    fps : float, optional
        Frames per second of an image sequence (a movie has its own; a still has none).
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        path = Path(path).expanduser()
        self.path = path
        self._movie: _Movie | None = None
        self._files: list[Path] = []
        if path.is_dir():
            self._files = sequence_files(path)
            if not self._files:
                raise InputError("--footage: the folder holds no images", path)
            if fps is None:
                raise InputError("--footage names an image sequence (a folder): give its rate with --footage-fps", path)
            self.kind = "sequence" if len(self._files) > 1 else "still"
            self.times = [j / fps for j in range(len(self._files))]
            self.end = math.inf if self.kind == "still" else len(self._files) / fps
            h = hashlib.sha256()
            for p in self._files:
                h.update(f"{p.name}:{file_sha256(p)}\n".encode())
            self.digest = h.hexdigest()
        else:
            check_input_file(path, "--footage movie or picture")
            self.digest = file_sha256(path)
            if path.suffix.lower() in STILL_SUFFIXES:
                self.kind, self._files, self.times, self.end = "still", [path], [0.0], math.inf
                self._read_still(path)  # fail now, not mid-render
            else:
                self._movie = _Movie(path)
                self.kind, self.times, self.end = "movie", self._movie.times, self._movie.end

    def __len__(self) -> int:
        return len(self.times)

    def pick(self, settings, a: float, b: float, first: bool = False) -> int | None:
        """The frame index an image with slot ``[a, b)`` follows (see :func:`pick_frame`)."""
        return pick_frame(self.times, self.end, settings, a, b, first)

    def _read_still(self, p: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                # Past PIL's pixel limit a picture is a decompression bomb, not footage: refuse it, do not decode it.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(p) as img:
                    return np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputError(f"--footage: the picture is too large to decode ({e})", p) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise InputError(f"--footage: not a picture m2v can read ({e})", p) from None

    def frame(self, j: int, width: int, height: int) -> np.ndarray:
        """Frame ``j`` as an ``(height, width, 3)`` uint8 picture."""
        rgb = self._movie.frame(j) if self._movie is not None else self._read_still(self._files[j])
        return resize_rgb(rgb, width, height)

    def close(self) -> None:
        if self._movie is not None:
            self._movie.close()


def frame_digest(rgb: np.ndarray) -> str:
    """SHA-256 of a picture's pixels (its shape included): what an image that follows it depends on."""
    h = hashlib.sha256(f"{rgb.shape}:{rgb.dtype}\n".encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def digest_cache_path(footage: Footage, width: int, height: int) -> Path:
    """Where the digests of this footage's frames at this size are kept (``$M2V_CACHE``/footage)."""

    return cache_dir() / "footage" / f"{footage.digest}-{width}x{height}.json"


def _read_digest_cache(path: Path, width: int, height: int) -> dict[int, str]:
    """The cached digests, or none: a damaged or foreign cache file is ignored and rewritten, never trusted."""
    import json

    raw = read_cache_file(path)  # a bounded regular file, never a pipe (it would hang) or a link
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not (
        isinstance(doc, dict)
        and doc.get("kind") == DIGESTS_KIND
        and doc.get("version") == DIGESTS_VERSION
        and doc.get("size") == [width, height]
        and isinstance(doc.get("frames"), dict)
    ):
        return {}
    out = {}
    for j, d in doc["frames"].items():
        if isinstance(j, str) and j.isdigit() and isinstance(d, str) and _HEX64.match(d):
            out[int(j)] = d
    return out


def frame_digests(footage: Footage, frames, width: int, height: int, cache: Path | None = None) -> dict[int, str]:
    """The digest of each of ``frames`` (indices) decoded and resized to the render size.

    Segments are keyed by the pixels of the footage frames they use, so a re-exported movie re-renders only
    from the first segment whose frames changed. Digests are kept by the file's hash (``cache``, by default
    :func:`digest_cache_path`): an unchanged file decodes nothing; frames not yet known are decoded once, in
    order.
    """
    cache = digest_cache_path(footage, width, height) if cache is None else cache
    known = _read_digest_cache(cache, width, height)
    missing = sorted({int(j) for j in frames} - set(known))
    for j in missing:
        known[j] = frame_digest(footage.frame(j, width, height))
    if missing:

        doc = {"kind": DIGESTS_KIND, "version": DIGESTS_VERSION, "size": [width, height]}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic({**doc, "frames": {str(j): d for j, d in sorted(known.items())}}, cache)
        except OSError:
            pass  # a cache that cannot be written costs the decoding next time, nothing else
    return {int(j): known[int(j)] for j in frames}


def segment_frames(footage: Footage, settings, seg: dict) -> list[int | None]:
    """The footage frame of each image of a segment (None: no footage there)."""
    slots = image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)
    return [footage.pick(settings, a, b, first=i == 0) for i, (a, b) in enumerate(slots)]

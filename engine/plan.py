"""The render plan: segments with rates and guidance, as versioned JSON.

A plan comes either from analysis (:func:`analyze`) or from boundaries the
caller gives, such as the markers an editor moved (:func:`plan_from_boundaries`);
both share the same per-segment derivation so they agree exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from engine import __version__
from engine.audio import Song, load_song
from engine.beats import BeatTrack, track_beats
from engine.errors import InputError
from engine.features import Features, compute_features
from engine.files import file_sha256
from engine.lyrics import LyricLine, load_lyrics
from engine.protocol import PLAN_KIND, PLAN_VERSION
from engine.segments import GRANULARITIES, segment_bounds

DEFAULT_MIN_FPS = 2.0
DEFAULT_MAX_FPS = 8.0
#: Boundaries closer to the song's end than this are taken as the end (float rounding in callers).
END_TOLERANCE = 0.05


def segment_intensity(feats: Features, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean mel-spectrogram level (dB) of each span; times relative to the analysed signal."""
    level = feats.mel_db.mean(axis=0)
    csum = np.concatenate([[0.0], np.cumsum(level)])
    n = len(level)
    a = np.clip(np.floor(np.asarray(starts) * feats.frame_rate).astype(int), 0, n - 1)
    b = np.clip(np.ceil(np.asarray(ends) * feats.frame_rate).astype(int), a + 1, n)
    return (csum[b] - csum[a]) / (b - a)


def level_range(feats: Features, window: float = 2.0) -> tuple[float, float]:
    """Quietest and loudest level (dB) of the song, over ``window``-second stretches.

    The range comes from the song, not from the segments, so moving one
    boundary changes the rates of the two segments beside it and no others
    (a render then reuses everything before the move).
    """
    from scipy.ndimage import uniform_filter1d

    level = feats.mel_db.mean(axis=0)
    size = max(1, int(round(window * feats.frame_rate)))
    smooth = uniform_filter1d(level, size=min(size, len(level)), mode="nearest")
    # Leading and trailing silence is no part of the music's dynamics.
    sounding = smooth[level > level.min() + 6.0]
    if len(sounding) < size:
        sounding = smooth
    return float(np.percentile(sounding, 2)), float(np.percentile(sounding, 98))


def normalize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Scale levels to 0-1 between the song's ``lo`` and ``hi`` (clipped; 0.5 for a flat song)."""
    x = np.asarray(x, dtype=float)
    if hi - lo <= 1e-6:
        return np.full(len(x), 0.5)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def generation_rate(norm_intensity: np.ndarray, min_fps: float, max_fps: float) -> np.ndarray:
    """Images generated per second of music, linear in normalised intensity (paper 3.1)."""
    return min_fps + np.asarray(norm_intensity) * (max_fps - min_fps)


def image_count(fps: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Whole images per segment: at least one, so every segment is seen."""
    return np.maximum(1, np.rint(np.asarray(fps) * np.asarray(durations))).astype(int)


#: A lyric starting this little before a boundary (a pickup, or a boundary snapped
#: to the next beat) belongs to the segment after it.
LYRIC_LEAD = 0.25


def _credited_time(t: float, boundaries: list[float]) -> float:
    for b in boundaries:
        if t < b <= t + LYRIC_LEAD:
            return b
    return t


def assign_guidance(starts: list[float], ends: list[float], lyrics: list[LyricLine]) -> list[dict]:
    """Guidance per segment (paper 3.2): the lyric whose time stamp falls in it, else its own audio.

    A segment holding several time stamps is guided by the first; all are
    listed. The last segment includes its end. A time stamp up to
    ``LYRIC_LEAD`` seconds before a boundary counts as at the boundary.
    """
    out = []
    last = len(starts) - 1
    times = [_credited_time(ly.time, starts[1:]) for ly in lyrics]
    for k, (s, e) in enumerate(zip(starts, ends)):
        inside = [i for i, t in enumerate(times) if s <= t < e or (k == last and t == e)]
        if inside:
            out.append({"kind": "lyric", "text": lyrics[inside[0]].text, "lyric": inside[0], "lyrics": inside})
        else:
            out.append({"kind": "audio", "text": None})
    return out


def _check_fps(min_fps: float, max_fps: float) -> None:
    if not (0 < min_fps <= max_fps) or not math.isfinite(max_fps):
        raise InputError(f"frame rates must satisfy 0 < min-fps <= max-fps (got {min_fps} and {max_fps})")


def build_plan(
    song: Song,
    feats: Features,
    bounds_rel: np.ndarray,
    lyrics: list[LyricLine],
    *,
    min_fps: float,
    max_fps: float,
    analysis: dict,
    lyrics_path: str | None,
    beats: BeatTrack | None = None,
) -> dict:
    """Assemble the plan dictionary from analysed parts.

    ``bounds_rel`` are boundaries in seconds relative to ``song.y`` (0 to ``song.duration``).
    """
    _check_fps(min_fps, max_fps)
    starts, ends = bounds_rel[:-1], bounds_rel[1:]
    level = segment_intensity(feats, starts, ends)
    norm = normalize(level, *level_range(feats))
    fps = generation_rate(norm, min_fps, max_fps)
    images = image_count(fps, ends - starts)
    f_starts = [round(song.offset + float(s), 4) for s in starts]
    f_ends = [round(song.offset + float(e), 4) for e in ends]
    f_ends[-1] = round(song.end, 4)
    warnings = []
    usable = []
    for ly in lyrics:
        if ly.time >= song.file_duration:
            warnings.append(
                f"lyric line {ly.line} at {ly.time:.2f} s ({ly.text!r}) is past the song's end ({song.file_duration:.2f} s)"
            )
        elif ly.time < song.offset or ly.time > song.end:
            warnings.append(f"lyric line {ly.line} at {ly.time:.2f} s is outside the analysed span")
        else:
            usable.append(ly)
    guidance = assign_guidance(f_starts, f_ends, usable)
    # Lyric indices refer to the plan's full lyric list.
    index_of = {id(ly): i for i, ly in enumerate(lyrics)}
    for g in guidance:
        if g["kind"] == "lyric":
            g["lyric"] = index_of[id(usable[g["lyric"]])]
            g["lyrics"] = [index_of[id(usable[i])] for i in g["lyrics"]]
    segments = []
    for k in range(len(starts)):
        segments.append(
            {
                "index": k,
                "start": f_starts[k],
                "end": f_ends[k],
                "intensity": round(float(norm[k]), 4),
                "level_db": round(float(level[k]), 2),
                "fps": round(float(fps[k]), 4),
                "images": int(images[k]),
                "guidance": guidance[k],
            }
        )
    lyric_json = []
    for ly in lyrics:
        j = ly.to_json()
        if ly.time >= song.file_duration:
            j["past_end"] = True
        lyric_json.append(j)
    plan = {
        "version": PLAN_VERSION,
        "kind": PLAN_KIND,
        "engine": __version__,
        "song": {
            "path": str(Path(song.path).resolve()),
            "sha256": file_sha256(song.path),
            "duration": round(song.file_duration, 4),
            "sample_rate": song.native_sr,
            "channels": song.channels,
            "span": [round(song.offset, 4), round(song.end, 4)],
        },
        "analysis": {**analysis, "min_fps": min_fps, "max_fps": max_fps, "lyrics_file": lyrics_path},
        "segments": segments,
        "lyrics": lyric_json,
        "warnings": warnings,
    }
    if beats is not None:
        plan["analysis"]["tempo_bpm"] = beats.tempo
        plan["beats"] = [round(song.offset + float(t), 4) for t in feats.frames_to_time(beats.frames)]
    return plan


def _lyrics(lyrics_path: str | Path | None) -> list[LyricLine]:
    return load_lyrics(lyrics_path) if lyrics_path else []


def analyze(
    song_path: str | Path,
    *,
    granularity: str = "scenes",
    lyrics_path: str | Path | None = None,
    min_fps: float = DEFAULT_MIN_FPS,
    max_fps: float = DEFAULT_MAX_FPS,
    min_length: float = 3.0,
    target_length: float = 8.0,
    start: float | None = None,
    end: float | None = None,
) -> dict:
    """Analyse a song into a plan (paper 3.1 and 3.2).

    Parameters
    ----------
    song_path : str or Path
        Audio file.
    granularity : {'scenes', 'beats'}
        Segment at scene changes or at every beat.
    lyrics_path : str or Path, optional
        Timed lyrics (LRC, SRT, VTT, CSV).
    min_fps, max_fps : float
        Generation rate range (images per second of music).
    min_length, target_length : float
        Scene lengths in seconds (``scenes`` only): minimum and target mean.
    start, end : float, optional
        Analyse only this span of the file (seconds).

    Returns
    -------
    dict
        The plan (see ``docs`` in the README).
    """
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    if not (0 < min_length <= target_length):
        raise InputError(
            f"scene lengths must satisfy 0 < min-length <= target-length (got {min_length}, {target_length})"
        )
    _check_fps(min_fps, max_fps)
    lyrics = _lyrics(lyrics_path)
    song = load_song(song_path, start=start, end=end)
    feats = compute_features(song.y, song.sr)
    beats = track_beats(feats.onset, feats.frame_rate)
    bounds = segment_bounds(feats, beats.frames, song.duration, granularity, min_length, target_length)
    analysis = {
        "source": "analysis",
        "granularity": granularity,
        "min_length": min_length,
        "target_length": target_length,
        "sample_rate": song.sr,
        "hop_seconds": feats.hop / feats.sr,
    }
    return build_plan(
        song,
        feats,
        bounds,
        lyrics,
        min_fps=min_fps,
        max_fps=max_fps,
        analysis=analysis,
        lyrics_path=str(lyrics_path) if lyrics_path else None,
        beats=beats,
    )


def parse_boundaries(text: str) -> list[float]:
    """Parse ``"0,4.2,9.7"`` into floats, with a plain error on bad values."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"boundaries must be numbers in seconds separated by commas, got {text!r}") from None
    return values


def plan_from_boundaries(
    song_path: str | Path,
    boundaries: list[float],
    *,
    lyrics_path: str | Path | None = None,
    min_fps: float = DEFAULT_MIN_FPS,
    max_fps: float = DEFAULT_MAX_FPS,
) -> dict:
    """Re-derive intensity, rates and guidance for caller-given boundaries (file seconds).

    The first and last boundary bound the span; every consecutive pair is one segment.
    """
    b = [float(x) for x in boundaries]
    if len(b) < 2:
        raise InputError("at least two boundaries (a start and an end) are needed")
    if any(not math.isfinite(x) for x in b) or b[0] < 0:
        raise InputError(f"boundaries must be finite and not negative, got {b}")
    for x, y in zip(b, b[1:]):
        if y <= x:
            raise InputError(f"boundaries must increase strictly: {y} follows {x}")
    _check_fps(min_fps, max_fps)
    lyrics = _lyrics(lyrics_path)
    song = load_song(song_path, start=b[0], end=b[-1] + 10.0, min_duration=0.0)
    if b[-1] > song.file_duration + END_TOLERANCE:
        raise InputError(f"boundary {b[-1]} s is past the song's end ({song.file_duration:.3f} s)", song_path)
    span_end = min(b[-1], song.file_duration)
    song = Song(
        path=song.path,
        y=song.y[: int(round((span_end - song.offset) * song.sr))],
        sr=song.sr,
        offset=song.offset,
        file_duration=song.file_duration,
        native_sr=song.native_sr,
        channels=song.channels,
    )
    feats = compute_features(song.y, song.sr)
    rel = np.array(b) - song.offset
    rel[-1] = song.duration
    if np.any(np.diff(rel) <= 0):
        raise InputError("the last segment is empty after clipping to the song's end", song_path)
    analysis = {"source": "boundaries", "sample_rate": song.sr, "hop_seconds": feats.hop / feats.sr}
    return build_plan(
        song,
        feats,
        rel,
        lyrics,
        min_fps=min_fps,
        max_fps=max_fps,
        analysis=analysis,
        lyrics_path=str(lyrics_path) if lyrics_path else None,
    )


def load_plan(path: str | Path) -> dict:
    """Read and validate a plan file.

    Raises
    ------
    InputError
        When the file is not a plan of a known version or its segments are inconsistent.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("plan file not found", path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid JSON plan ({e})", path) from None
    validate_plan(plan, path)
    return plan


def validate_plan(plan: dict, path: str | Path = "<plan>") -> None:
    """Check a plan's version and segments: ordered, non-overlapping, non-empty, with guidance."""
    if not isinstance(plan, dict) or "version" not in plan:
        raise InputError("not an m2v plan (no version field)", path)
    if plan["version"] != PLAN_VERSION:
        raise InputError(f"unknown plan version {plan['version']!r} (this engine reads version {PLAN_VERSION})", path)
    segs = plan.get("segments")
    if not isinstance(segs, list) or not segs:
        raise InputError("the plan has no segments", path)
    prev_end = None
    for k, s in enumerate(segs):
        try:
            start, end, images = float(s["start"]), float(s["end"]), int(s["images"])
            kind = s["guidance"]["kind"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"segment {k} lacks start, end, images or guidance", path) from None
        if end <= start:
            raise InputError(f"segment {k} is empty or reversed ({start} to {end} s)", path)
        if prev_end is not None and start < prev_end - 1e-6:
            raise InputError(f"segment {k} starts at {start} s, before segment {k - 1} ends ({prev_end} s)", path)
        if images < 1:
            raise InputError(f"segment {k} has {images} images (at least 1 needed)", path)
        if kind not in ("audio", "lyric"):
            raise InputError(f"segment {k} has unknown guidance kind {kind!r}", path)
        if kind == "lyric" and not s["guidance"].get("text"):
            raise InputError(f"segment {k} is lyric-guided but has no text", path)
        prev_end = end

"""The render plan: segments with step counts and guidance, as versioned JSON (``kind: m2v-plan``).

A plan comes either from analysis (:func:`analyze`) or from boundaries the
caller gives, such as the markers an editor moved (:func:`plan_from_boundaries`);
both share the same per-segment derivation so they agree exactly. The plan
carries the song's level curve, so the add-on recomputes a plan's cost for
moved markers with the engine's own arithmetic (:mod:`engine.protocol`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine import __version__
from engine.analysis.audio import Song, load_song
from engine.analysis.beats import BeatTrack, track_beats
from engine.analysis.features import Features, compute_features, mel_power_curve
from engine.analysis.lyrics import LyricLine, load_lyrics
from engine.analysis.segments import segment_bounds
from engine.errors import InputError
from engine.files import file_sha256
from engine.plan.schema import load_plan  # noqa: F401 - plans are read where they are checked
from engine.protocol import AUTHORS_POWER, PLAN_KIND, PLAN_VERSION, PRESETS, segment_counts
from engine.settings import AnalysisSettings
from engine.settings_check import check_setting
from engine.settings_table import segment_defaults

#: Boundaries closer to the song's end than this are taken as the end (float rounding in callers).
END_TOLERANCE = 0.05
#: A lyric starting this little before a boundary (a pickup, or a boundary snapped
#: to the next beat) belongs to the segment after it.
LYRIC_LEAD = 0.25
#: Audio guidance before a segment's first lyric only stands on its own when at least this long; a
#: shorter stretch (always, in ``beats`` mode) is guided by the lyric, as in the paper.
MIN_AUDIO_PART = 1.0
#: A lyric stamped at (or just before) a segment's end still guides this long.
MIN_LYRIC_PART = 0.1


def level_curve(feats: Features, offset: float, window: float = 2.0) -> dict:
    """The song's loudness per analysis frame (mean mel level, dB) and its quiet and loud ends.

    The range comes from the song, not from the segments, so moving one
    boundary changes the rates of the two segments beside it and no others
    (a render then reuses everything before the move). Values are rounded as
    stored, and every count is computed from the stored values.
    """
    from scipy.ndimage import uniform_filter1d

    level = np.round(feats.mel_db.mean(axis=0), 2)
    size = max(1, int(round(window * feats.frame_rate)))
    smooth = uniform_filter1d(level, size=min(size, len(level)), mode="nearest")
    # Leading and trailing silence is no part of the music's dynamics.
    sounding = smooth[level > level.min() + 6.0]
    if len(sounding) < size:
        sounding = smooth
    lo, hi = float(np.percentile(sounding, 2)), float(np.percentile(sounding, 98))
    if not (np.all(np.isfinite(level)) and math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("the analysis produced invalid loudness values (is the audio damaged?)")
    return {
        "hop": feats.hop / feats.sr,
        "offset": round(float(offset), 6),
        "db": [float(x) for x in level],
        "range": [round(lo, 4), round(hi, 4)],
    }


def authors_power(song_path: str | Path) -> dict:
    """The authors' intensity curve of the whole file (``levels["power"]``, see ``engine.settings_table.INTENSITIES``).

    Normalised over the whole song as their code does, whatever span is
    planned: the curve, and so every segment's intensity, stays the same when
    the first or last cut moves.
    """
    a = AUTHORS_POWER
    whole = load_song(song_path, sr=a["sr"], min_duration=0.0)
    curve = mel_power_curve(whole.y, whole.sr, a["hop"], a["n_mels"], a["fmax"])
    return {"hop": a["hop"] / a["sr"], "offset": 0.0, "values": [round(float(v), 5) for v in curve]}


def _credited_time(t: float, boundaries: list[float]) -> float:
    for b in boundaries:
        if t < b <= t + LYRIC_LEAD:
            return b
    return t


def guidance_parts(starts: list[float], ends: list[float], lyrics: list[tuple[int, LyricLine]]) -> list[list[dict]]:
    """Guidance spans per segment (paper 3.2): every lyric line guides from its time stamp on.

    A segment without a time stamp is guided by its own audio. Inside a
    segment each lyric guides until the next one or the segment's end; what
    comes before the first lyric is guided by its audio when it lasts at
    least ``MIN_AUDIO_PART`` seconds, else by that lyric (so in ``beats``
    mode a sung beat is the lyric's, as in the authors' code). Time stamps
    shared by several lines join their words. A time stamp up to
    ``LYRIC_LEAD`` seconds before a boundary counts as at the boundary; the
    last segment includes its end.

    ``lyrics`` are ``(index in the plan's lyric list, line)`` pairs.
    """
    credited = sorted((_credited_time(ly.time, starts[1:]), i, ly) for i, ly in lyrics)
    out = []
    last = len(starts) - 1
    for k, (s, e) in enumerate(zip(starts, ends)):
        inside = [(t, i, ly) for t, i, ly in credited if s <= t < e or (k == last and t == e)]
        parts: list[dict] = []
        prev_t = None
        for t, i, ly in inside:
            t = min(t, e - min(MIN_LYRIC_PART, (e - s) / 2))  # a time stamp at the very end still gets a span
            if prev_t is not None and abs(prev_t - t) < 1e-9:
                parts[-1]["text"] += " / " + ly.text
                parts[-1]["lyrics"].append(i)
                continue
            prev_t = t
            if not parts and t - s >= MIN_AUDIO_PART:
                parts.append({"start": s, "kind": "audio", "text": None})
            parts.append({"start": s if not parts else t, "kind": "lyric", "text": ly.text, "lyrics": [i]})
        if not parts:
            parts.append({"start": s, "kind": "audio", "text": None})
        for p, nxt in zip(parts, parts[1:] + [None]):
            p["end"] = e if nxt is None else nxt["start"]
        out.append([{"start": round(p["start"], 4), "end": round(p["end"], 4), **_rest(p)} for p in parts])
    return out


def _rest(p: dict) -> dict:
    return {k: p[k] for k in ("kind", "text", "lyrics") if k in p}


def build_plan(
    song: Song,
    feats: Features,
    bounds_rel: np.ndarray,
    lyrics: list[LyricLine],
    *,
    settings: AnalysisSettings,
    analysis: dict,
    lyrics_path: str | Path | None,
    beats: BeatTrack | None = None,
) -> dict:
    """Assemble the plan dictionary from analysed parts.

    ``bounds_rel`` are boundaries in seconds relative to ``song.y`` (0 to ``song.duration``); ``settings`` (with
    the preset's values filled in) gives the rates (steps per second of music), the output frame rate (which caps
    distinct images) and the intensity: the paper's or the authors' (``engine.settings_table.INTENSITIES``).
    """
    s = settings
    levels = level_curve(feats, song.offset)
    if s.intensity == "authors":
        # Only then: a paper plan stays byte for byte what it was, and reads as paper by the key's absence.
        levels["intensity"] = "authors"
        levels["power"] = authors_power(song.path)
    f_bounds = [round(song.offset + float(b), 4) for b in bounds_rel]
    f_bounds[-1] = round(song.end, 4)
    counts = segment_counts(levels, f_bounds, s.min_rate, s.max_rate, s.fps)
    warnings, usable = _usable_lyrics(lyrics, song)
    parts = guidance_parts(f_bounds[:-1], f_bounds[1:], usable)
    segments = []
    for k, ((x, rate, steps, images), p) in enumerate(zip(counts, parts)):
        segments.append(
            {
                "index": k,
                "start": f_bounds[k],
                "end": f_bounds[k + 1],
                "intensity": round(x, 4),
                "rate": round(rate, 4),
                "steps": steps,
                "images": images,
                "parts": p,
                **segment_defaults(),
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
        "song": _song_json(song),
        "analysis": {
            **analysis,
            **{"preset": s.preset, "min_rate": s.min_rate, "max_rate": s.max_rate, "fps": s.fps},
            "lyrics_file": str(lyrics_path) if lyrics_path else None,
            "levels": levels,
        },
        "segments": segments,
        "totals": {"steps": sum(g["steps"] for g in segments), "images": sum(g["images"] for g in segments)},
        "lyrics": lyric_json,
        "warnings": warnings,
    }
    if beats is not None:
        plan["analysis"]["tempo_bpm"] = beats.tempo
        plan["beats"] = [round(song.offset + float(t), 4) for t in feats.frames_to_time(beats.frames)]
        plan["beat_strength"] = beat_strength(feats.onset, beats.frames)
    return plan


def beat_strength(onset: np.ndarray, frames: np.ndarray) -> list[float]:
    """Each beat's onset strength, 0-1: the envelope's peak within a frame of the beat over the song's 95th
    percentile (what drives the zoom pulses of ``engine.render.sources.motion``)."""
    if len(onset) == 0 or len(frames) == 0:
        return []
    ref = float(np.percentile(onset, 95)) or 1.0
    idx = np.clip(np.asarray(frames, dtype=int)[:, None] + np.arange(-1, 2)[None, :], 0, len(onset) - 1)
    return [round(float(min(1.0, max(0.0, v / ref))), 3) for v in onset[idx].max(axis=1)]


def preset_totals(levels: dict, bounds: list[float], preset: str, fps: float) -> dict:
    """Steps and images another preset's rates would give for the same boundaries (file seconds)."""
    p = PRESETS[preset]
    counts = segment_counts(levels, bounds, p["min_rate"], p["max_rate"], fps)
    return {"steps": sum(c[2] for c in counts), "images": sum(c[3] for c in counts)}


def _song_json(song: Song) -> dict:
    return {
        "path": str(Path(song.path).resolve()),
        "sha256": file_sha256(song.path),
        "duration": round(song.file_duration, 4),
        "sample_rate": song.native_sr,
        "channels": song.channels,
        "span": [round(song.offset, 4), round(song.end, 4)],
    }


#: Lyric lines outside the song warned one by one; the rest are counted in one line.
MAX_LYRIC_WARNINGS = 10


def _usable_lyrics(lyrics: list[LyricLine], song: Song) -> tuple[list[str], list[tuple[int, LyricLine]]]:
    warnings, usable = [], []
    for i, ly in enumerate(lyrics):
        if ly.time >= song.file_duration:
            warnings.append(
                f"lyric line {ly.line} at {ly.time:.2f} s ({ly.text!r}) is past the song's end ({song.file_duration:.2f} s)"
            )
        elif ly.time < song.offset or ly.time > song.end:
            warnings.append(f"lyric line {ly.line} at {ly.time:.2f} s is outside the analysed span")
        else:
            usable.append((i, ly))
    if len(warnings) > MAX_LYRIC_WARNINGS:
        # A lyrics file for another (longer) song would otherwise bury the terminal in one line per lyric.
        more = len(warnings) - MAX_LYRIC_WARNINGS
        warnings = warnings[:MAX_LYRIC_WARNINGS] + [f"... and {more} more lyric lines outside the song or the span"]
    return warnings, usable


def _lyrics(lyrics_path: str | Path | None) -> list[LyricLine]:
    return load_lyrics(lyrics_path) if lyrics_path else []


def analysis_settings(settings: AnalysisSettings | None, values: dict) -> AnalysisSettings:
    """The settings a plan is built with: ``settings``, or one made from keyword values (the ``paper`` preset
    unless one is named), with the preset's values for what is left open."""
    if settings is None:
        settings = AnalysisSettings.from_values(None, **{"preset": "paper", **values})
    elif values:
        raise TypeError("give AnalysisSettings or its values, not both")
    return settings.resolved()


def analyze(
    song_path: str | Path,
    settings: AnalysisSettings | None = None,
    *,
    lyrics_path: str | Path | None = None,
    start: float | None = None,
    end: float | None = None,
    **values,
) -> dict:
    """Analyse a song into a plan (paper 3.1 and 3.2).

    Parameters
    ----------
    song_path : str or Path
        Audio file.
    settings : AnalysisSettings, optional
        The preset (``paper`` by default), rates, frame rate, intensity, granularity and scene lengths; or give
        their values as keywords (``preset="draft", min_rate=4, ...``). What is left open is the preset's (see
        ``engine.protocol.PRESETS``).
    lyrics_path : str or Path, optional
        Timed lyrics (LRC, SRT, VTT, CSV).
    start, end : float, optional
        Analyse only this span of the file (seconds).

    Returns
    -------
    dict
        The plan (see the README).
    """
    s = analysis_settings(settings, values)
    start, end = check_setting("start", start), check_setting("end", end)
    lyrics = _lyrics(lyrics_path)
    song = load_song(song_path, start=start, end=end)
    feats = compute_features(song.y, song.sr)
    beats = track_beats(feats.onset, feats.frame_rate)
    bounds = segment_bounds(feats, beats.frames, song.duration, s.granularity, s.min_length, s.target_length)
    paper_bounds = bounds if s.granularity == "beats" else segment_bounds(feats, beats.frames, song.duration, "beats")
    analysis = {
        "source": "analysis",
        "granularity": s.granularity,
        "min_length": s.min_length,
        "target_length": s.target_length,
        "sample_rate": song.sr,
        "hop_seconds": feats.hop / feats.sr,
    }
    plan = build_plan(song, feats, bounds, lyrics, settings=s, analysis=analysis, lyrics_path=lyrics_path, beats=beats)
    if s.preset != "paper":
        f_bounds = [round(song.offset + float(b), 4) for b in paper_bounds]
        f_bounds[-1] = round(song.end, 4)
        plan["analysis"]["paper_totals"] = preset_totals(plan["analysis"]["levels"], f_bounds, "paper", s.fps)
    return plan


def parse_boundaries(text: str) -> list[float]:
    """Parse ``"0,4.2,9.7"`` into floats, with a plain error on bad values."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--boundaries must be numbers in seconds separated by commas, got {text!r}") from None
    return values


def plan_from_boundaries(
    song_path: str | Path,
    boundaries: list[float],
    settings: AnalysisSettings | None = None,
    *,
    lyrics_path: str | Path | None = None,
    **values,
) -> dict:
    """Re-derive intensity, steps and guidance for caller-given boundaries (file seconds).

    The first and last boundary bound the span; every consecutive pair is one segment. ``settings`` (or their
    values as keywords) as in :func:`analyze`; the scene lengths and granularity are not used.
    """
    b = [float(x) for x in boundaries]
    if len(b) < 2:
        raise InputError("--boundaries needs at least two times (a start and an end)")
    if any(not math.isfinite(x) for x in b) or b[0] < 0:
        raise InputError(f"--boundaries must be finite and not negative, got {b}")
    for x, y in zip(b, b[1:]):
        if y <= x:
            raise InputError(f"--boundaries must increase strictly: {y} follows {x}")
        if round(y, 4) <= round(x, 4):
            # Plans keep times to 0.1 ms; a shorter segment would be empty in the plan, which render refuses.
            raise InputError(f"--boundaries {x} and {y} are less than 0.0001 s apart: that segment would be empty")
    s = analysis_settings(settings, values)
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
    # The beats drive motion (engine.render.sources.motion); they never change the segments given here.
    beats = track_beats(feats.onset, feats.frame_rate)
    plan = build_plan(song, feats, rel, lyrics, settings=s, analysis=analysis, lyrics_path=lyrics_path, beats=beats)
    if s.preset != "paper":
        bounds = [seg["start"] for seg in plan["segments"]] + [plan["segments"][-1]["end"]]
        plan["analysis"]["paper_totals"] = preset_totals(plan["analysis"]["levels"], bounds, "paper", s.fps)
    return plan

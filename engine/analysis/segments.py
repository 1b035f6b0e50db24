"""Splitting a song into variable-length segments at drastic musical changes (paper 3.1).

Two granularities:

``beats``
    Every beat interval is a segment, as in the paper (about 0.6 s each).
``scenes``
    Boundaries where beat-synchronous timbre, harmony, loudness and onset
    statistics change most (Foote novelty on a self-similarity matrix),
    snapped to beats, with a minimum length and a target mean length.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from engine.analysis.beats import beat_grid
from engine.analysis.features import Features
from engine.settings_table import ANALYSIS_DEFAULTS, GRANULARITIES


def beat_sync(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Mean of ``x`` (``(d, n)``) over each interval between consecutive ``frames``.

    Returns ``(d, len(frames) - 1)``.
    """
    csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    a, b = frames[:-1], np.maximum(frames[1:], frames[:-1] + 1)
    return (csum[:, b] - csum[:, a]) / (b - a)


def beat_features(feats: Features, frames: np.ndarray) -> np.ndarray:
    """Standardised beat-synchronous features: MFCC-like timbre, chroma, loudness, onset density.

    Returns ``(n_beats - 1, d)``.
    """
    mfcc = scipy.fft.dct(feats.mel_db, axis=0, norm="ortho")[1:20]
    loud = feats.mel_db.mean(axis=0, keepdims=True)
    onset = feats.onset[None, :]
    blocks = [beat_sync(mfcc, frames), 2.0 * beat_sync(feats.chroma, frames), beat_sync(loud, frames) * 3.0]
    blocks.append(beat_sync(onset, frames) * 2.0)
    x = np.concatenate(blocks, axis=0).T
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-9)
    return x


def novelty(x: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty of rows of ``x`` with a Gaussian checkerboard kernel of ``half`` rows a side.

    Value ``i`` measures the change between rows ``i - half .. i - 1`` and ``i .. i + half - 1``,
    i.e. a boundary *before* row ``i``.
    """
    n = x.shape[0]
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    ssm = xn @ xn.T
    pad = np.pad(ssm, half, mode="edge")
    t = np.arange(-half, half) + 0.5
    g = np.exp(-0.5 * (t / (0.5 * half)) ** 2)
    kernel = np.outer(g, g) * np.sign(t)[:, None] * np.sign(t)[None, :]
    out = np.zeros(n)
    # Diagonal windows only: O(n * half^2) instead of a full 2-D convolution.
    idx = np.arange(2 * half)
    for i in range(n):
        block = pad[i + idx[:, None], i + idx[None, :]]
        out[i] = np.sum(block * kernel)
    out[:1] = 0.0
    return np.maximum(out, 0.0)


def scene_boundaries(
    feats: Features,
    beat_frames: np.ndarray,
    duration: float,
    min_length: float = ANALYSIS_DEFAULTS["min_length"],
    target_length: float = ANALYSIS_DEFAULTS["target_length"],
) -> np.ndarray:
    """Beat indices where scenes change.

    Parameters
    ----------
    feats : Features
        Frame features of the analysed signal.
    beat_frames : np.ndarray
        Beat frames (ascending).
    duration : float
        Analysed duration in seconds.
    min_length : float
        No scene shorter than this (seconds), ends included.
    target_length : float
        Target mean scene length (seconds): sets how many boundaries are kept.

    Returns
    -------
    np.ndarray
        Sorted indices into ``beat_frames`` of the chosen boundaries.
    """
    nb = len(beat_frames)
    if nb < 4:
        return np.array([], dtype=int)
    x = beat_features(feats, beat_frames)
    beat_t = feats.frames_to_time(beat_frames)
    spb = float(np.median(np.diff(beat_t)))
    # Several kernel sizes (about 2, 4 and 8 s a side): short ones place, long ones confirm.
    nov = np.zeros(len(x))
    for secs in (2.0, 4.0, 8.0):
        half = int(np.clip(round(secs / spb), 2, max(2, len(x) // 2)))
        v = novelty(x, half)
        nov += v / max(v.max(), 1e-9)
    # nov[i] is a change before beat interval i, i.e. at beat i.
    want = max(0, int(round(duration / target_length)) - 1)
    order = np.argsort(-nov, kind="stable")
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= want or nov[i] <= 0:
            break
        t = beat_t[i]
        if t < min_length or duration - t < min_length:
            continue
        if all(abs(t - beat_t[j]) >= min_length for j in chosen):
            chosen.append(int(i))
    return np.array(sorted(chosen), dtype=int)


def segment_bounds(
    feats: Features,
    beat_frames: np.ndarray,
    duration: float,
    granularity: str = "scenes",
    min_length: float = ANALYSIS_DEFAULTS["min_length"],
    target_length: float = ANALYSIS_DEFAULTS["target_length"],
) -> np.ndarray:
    """Segment boundaries in seconds (relative to the analysed signal), from 0 to ``duration``.

    Parameters
    ----------
    granularity : {'beats', 'scenes'}
        Segment at every beat or at scene changes.

    Returns
    -------
    np.ndarray
        Strictly increasing times starting at 0 and ending at ``duration``.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    beat_frames = beat_grid(beat_frames, feats.n_frames)
    beat_t = feats.frames_to_time(beat_frames)
    if granularity == "beats":
        inner = beat_t
    else:
        inner = beat_t[scene_boundaries(feats, beat_frames, duration, min_length, target_length)]
    # A sliver before the first or after the last boundary is no segment of its own.
    sliver = 0.25 if granularity == "beats" else min_length
    inner = inner[(inner >= sliver) & (inner <= duration - sliver)]
    return np.concatenate([[0.0], inner, [duration]])

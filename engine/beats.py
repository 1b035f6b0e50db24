"""Beat tracking that weighs several tempo hypotheses against the onset envelope.

librosa's tracker fixes one tempo from a tempogram with a strong prior near
120 bpm, so fast songs (170-190 bpm) come out at half tempo. Here each
plausible metrical level is tracked with dynamic programming (Ellis 2007)
and scored by how much stronger the onsets on its beats are than those
half-way between them; the winner is then re-tracked with a local period
so songs whose tempo drifts or changes between sections stay locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BPM_MIN = 50.0
BPM_MAX = 220.0
#: Log-normal tempo prior: centre and width in octaves. Wide on purpose:
#: the onset contrast decides, the prior only breaks near-ties.
PRIOR_BPM = 120.0
PRIOR_OCTAVES = 1.0
TIGHTNESS = 100.0


@dataclass(frozen=True)
class BeatTrack:
    """Result of :func:`track_beats`.

    Attributes
    ----------
    tempo : float
        Tempo in beats per minute (median of the tracked beat spacing).
    frames : np.ndarray
        Beat positions in onset-envelope frames.
    hypotheses : list of dict
        Every tempo hypothesis tried, with its score, for inspection.
    """

    tempo: float
    frames: np.ndarray
    hypotheses: list[dict] = field(default_factory=list)


def _autocorr(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Unbiased autocorrelation of ``x`` for lags ``0..max_lag`` along the last axis."""
    n = x.shape[-1]
    spec = np.fft.rfft(x, 2 * n, axis=-1)
    ac = np.fft.irfft(spec.real**2 + spec.imag**2, axis=-1)[..., : max_lag + 1]
    return ac * (n / np.maximum(n - np.arange(max_lag + 1), 1))


def _peaks(x: np.ndarray) -> np.ndarray:
    """Indices of strict local maxima of a 1-D array (ends excluded)."""
    return np.nonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]))[0] + 1


def _refine(ac: np.ndarray, i: int) -> float:
    """Sub-sample peak position by parabolic interpolation."""
    if 0 < i < len(ac) - 1:
        a, b, c = ac[i - 1], ac[i], ac[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            return i + 0.5 * (a - c) / denom
    return float(i)


def _prior(bpm: float) -> float:
    return float(np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2))


def tempo_hypotheses(env: np.ndarray, frame_rate: float, n_peaks: int = 3) -> list[float]:
    """Candidate tempi (bpm): the strongest autocorrelation peaks and their double, half and 3:2 relatives.

    Parameters
    ----------
    env : np.ndarray
        Onset strength envelope.
    frame_rate : float
        Envelope frames per second.
    n_peaks : int
        How many autocorrelation peaks to expand.
    """
    max_lag = int(np.ceil(frame_rate * 60.0 / (BPM_MIN / 2)))
    ac = _autocorr(env - env.mean(), min(max_lag, len(env) - 1))
    lo = int(np.floor(frame_rate * 60.0 / BPM_MAX))
    idx = [i for i in _peaks(ac) if i >= lo and 60.0 * frame_rate / i >= BPM_MIN]
    weighted = sorted(idx, key=lambda i: -ac[i] * _prior(60.0 * frame_rate / i))[:n_peaks]
    out: list[float] = []
    for i in weighted:
        base = 60.0 * frame_rate / _refine(ac, i)
        for mult in (1.0, 2.0, 0.5):
            bpm = base * mult
            if BPM_MIN <= bpm <= BPM_MAX and all(abs(np.log(bpm / b)) > 0.04 for b in out):
                out.append(bpm)
    if not out:
        out.append(PRIOR_BPM)
    return out


def local_period(env: np.ndarray, frame_rate: float, period: float, win_s: float = 8.0) -> np.ndarray:
    """Per-frame beat period near ``period``, from windowed autocorrelation.

    Each 8 s window (1 s hop) picks its autocorrelation peak within a factor
    1.3 of ``period``, pulled towards ``period``; a median filter keeps a few
    odd windows from steering.
    """
    n = len(env)
    win = int(round(win_s * frame_rate))
    hop = max(1, int(round(frame_rate)))
    if n < win + hop:
        return np.full(n, period)
    starts = np.arange(0, n - win + 1, hop)
    frames = np.lib.stride_tricks.sliding_window_view(env, win)[starts]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(win)
    lo, hi = max(2, int(np.floor(period / 1.3))), int(np.ceil(period * 1.3))
    ac = _autocorr(frames, min(hi + 1, win - 1))
    lags = np.arange(lo, hi + 1)
    # Stay near the song's tempo unless a window clearly says otherwise (tempo changes between sections).
    pull = np.exp(-0.5 * (np.log(lags / period) / 0.12) ** 2)
    periods = np.empty(len(starts))
    for k in range(len(starts)):
        seg = ac[k, lo : hi + 1]
        j = int(np.argmax(seg * pull))
        periods[k] = _refine(ac[k], lo + j) if seg[j] > 0 else period
    from scipy.ndimage import median_filter

    periods = median_filter(periods, size=9, mode="nearest")
    centres = starts + win / 2
    return np.interp(np.arange(n), centres, periods)


def _local_score(env_n: np.ndarray, period: float) -> np.ndarray:
    width = max(1, int(round(period)))
    t = np.arange(-width, width + 1)
    window = np.exp(-0.5 * (t * 32.0 / period) ** 2)
    return np.convolve(env_n, window, mode="same")


def dp_beats(local: np.ndarray, period: np.ndarray, tightness: float = TIGHTNESS) -> np.ndarray:
    """Dynamic-programming beat tracker with a (possibly time-varying) period.

    Frames are processed in blocks of half a period: every predecessor of a
    frame in a block lies before the block, so each block is one vectorised
    step rather than a Python loop per frame.

    Parameters
    ----------
    local : np.ndarray
        Local onset score per frame.
    period : np.ndarray
        Beat period in frames, per frame.
    tightness : float
        Cost weight of deviating from the period.

    Returns
    -------
    np.ndarray
        Beat frames, ascending.
    """
    n = len(local)
    cum = np.zeros(n)
    back = np.full(n, -1, dtype=int)
    thresh = 0.01 * local.max()
    b = 0
    while b < n:
        p = float(period[b])
        lo, hi = max(1, int(round(p / 2))), max(2, int(round(2 * p)))
        offs = np.arange(-hi, -lo + 1)
        tx = -tightness * np.log(-offs / p) ** 2
        ts = np.arange(b, min(b + lo, n))
        idx = ts[:, None] + offs[None, :]
        valid = idx >= 0
        cand = tx[None, :] + np.where(valid, cum[np.maximum(idx, 0)], 0.0)
        j = np.argmax(cand, axis=1)
        rows = np.arange(len(ts))
        cum[ts] = local[ts] + cand[rows, j]
        prev = idx[rows, j]
        # A chain may only start on a real onset, not on the silence before it.
        starts_here = (prev < 0) | (cum[np.maximum(prev, 0)] <= 0) & (local[ts] < thresh)
        back[ts] = np.where(starts_here, -1, prev)
        b += len(ts)
    # Last beat: latest local maximum of the cumulative score that is not weak.
    pk = _peaks(cum)
    if len(pk) == 0:
        return np.array([], dtype=int)
    good = pk[cum[pk] >= 0.5 * np.median(cum[pk])]
    beats = [int(good[-1])]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    return np.array(beats[::-1], dtype=int)


def trim_beats(local: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Drop weak leading and trailing beats (silence, fade-in, fade-out)."""
    if len(beats) < 3:
        return beats
    w = np.convolve(local[beats], np.hanning(5)[1:-1], mode="same")
    thresh = 0.5 * np.sqrt(np.mean(w**2))
    # Smoothing lets a beat in silence borrow strength from its loud neighbours:
    # also require some onset of its own.
    own = local[beats] >= 0.25 * np.median(local[beats])
    keep = np.nonzero((w >= thresh) & own)[0]
    if len(keep) == 0:
        return beats
    return beats[keep[0] : keep[-1] + 1]


def beat_grid(beats: np.ndarray, n_frames: int) -> np.ndarray:
    """Tracked beats extended over the untracked start and end at the typical beat period.

    Segments must start on beats even in a drumless intro or outro, where the
    tracker (rightly) reports none; the music's pulse goes on there.
    """
    if len(beats) < 2:
        return beats
    period = float(np.median(np.diff(beats)))
    before = beats[0] - period * np.arange(int((beats[0]) // period), 0, -1)
    after = beats[-1] + period * np.arange(1, int((n_frames - 1 - beats[-1]) // period) + 1)
    grid = np.concatenate([before, beats, after])
    return np.rint(grid[(grid >= 0) & (grid < n_frames)]).astype(int)


def _tempo_of(beats: np.ndarray, frame_rate: float) -> float:
    """Tempo from the mean of the typical beat gaps (finer than one frame, unlike the median)."""
    gaps = np.diff(beats).astype(float)
    med = np.median(gaps)
    typical = gaps[np.abs(gaps - med) <= 0.25 * med]
    return 60.0 * frame_rate / float(typical.mean())


def _salience(env_n: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Onset strength at each frame, allowing one frame of timing slack."""
    frames = np.clip(frames, 1, len(env_n) - 2)
    return np.maximum(np.maximum(env_n[frames - 1], env_n[frames]), env_n[frames + 1])


def _level_score(env_n: np.ndarray, beats: np.ndarray, bpm: float) -> float:
    """How well a track fits as *the* beat: strong on its beats, regular, near common tempi."""
    if len(beats) < 4:
        return -np.inf
    gaps = np.diff(beats)
    # A track that lands on onsets only by bending its spacing is the wrong level.
    irregular = float(np.std(gaps) / max(np.mean(gaps), 1e-9))
    return float(np.mean(_salience(env_n, beats))) * _prior(bpm) - 10.0 * irregular


def octave_ratios(env_n: np.ndarray, beats: np.ndarray) -> tuple[float, float]:
    """Evidence for halving and doubling a beat track.

    Returns
    -------
    alternate : float
        Weaker over stronger mean salience of the even and odd beats; low
        means every other beat is weak, so half the tempo is the beat.
    halfway : float
        Mean salience half-way between beats over that on the beats; high
        means the in-between onsets are beats too, so the tempo is double.
    """
    on = _salience(env_n, beats)
    even, odd = on[0::2].mean(), on[1::2].mean()
    alternate = float(min(even, odd) / max(even, odd, 1e-9))
    mids = ((beats[:-1] + beats[1:]) / 2).round().astype(int)
    halfway = float(_salience(env_n, mids).mean() / max(on.mean(), 1e-9))
    return alternate, halfway


#: Halving never goes below this: slower "beats" are bars to a listener.
HALVE_MIN_BPM = 70.0
#: Both octave tests use one threshold, so halving and doubling cannot undo each other.
OCTAVE_THRESHOLD = 0.65


def track_beats(env: np.ndarray, frame_rate: float) -> BeatTrack:
    """Track beats in an onset envelope.

    Each tempo hypothesis is tracked; the best-fitting one is then moved an
    octave down when every other beat is weak, or up when the onsets half-way
    between beats are nearly as strong as the beats (fast songs that other
    trackers halve).

    Parameters
    ----------
    env : np.ndarray
        Onset strength per frame.
    frame_rate : float
        Frames per second of ``env``.

    Returns
    -------
    BeatTrack
    """
    env = np.asarray(env, dtype=float)
    std = env.std()
    if len(env) < 8 or std <= 0:
        return BeatTrack(tempo=0.0, frames=np.array([], dtype=int))
    env_n = env / std
    hyps = []
    for bpm in tempo_hypotheses(env, frame_rate):
        period = 60.0 * frame_rate / bpm
        local = _local_score(env_n, period)
        beats = trim_beats(local, dp_beats(local, np.full(len(env), period)))
        # The DP may bend a wrong period onto the right beats: judge the track by the tempo it really has.
        tracked = _tempo_of(beats, frame_rate) if len(beats) > 1 else bpm
        hyps.append(
            {
                "bpm": round(bpm, 2),
                "tracked_bpm": round(tracked, 2),
                "score": round(_level_score(env_n, beats, tracked), 4),
                "_beats": beats,
            }
        )
    best = max(hyps, key=lambda h: h["score"])
    bpm = best["tracked_bpm"]
    if len(best["_beats"]) >= 8:
        alternate, halfway = octave_ratios(env_n, best["_beats"])
        best["alternate"], best["halfway"] = round(alternate, 3), round(halfway, 3)
        if alternate < OCTAVE_THRESHOLD and bpm / 2 >= HALVE_MIN_BPM:
            bpm /= 2
        elif halfway >= OCTAVE_THRESHOLD and bpm * 2 <= BPM_MAX:
            bpm *= 2
    for h in hyps:
        del h["_beats"]
    period = 60.0 * frame_rate / bpm
    local = _local_score(env_n, period)
    steady = trim_beats(local, dp_beats(local, np.full(len(env), period)))
    # A local period follows tempo changes but can be misled in quiet passages: keep whichever fits better.
    varying = trim_beats(local, dp_beats(local, local_period(env_n, frame_rate, period)))
    beats = max((steady, varying), key=lambda b: _level_score(env_n, b, bpm))
    tempo = _tempo_of(beats, frame_rate) if len(beats) > 1 else bpm
    return BeatTrack(tempo=round(tempo, 2), frames=beats, hypotheses=hyps)

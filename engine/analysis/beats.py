"""Beat tracking that weighs several tempo hypotheses against the onset envelope.

librosa's tracker fixes one tempo from a tempogram with a strong prior near
120 bpm, so fast songs (170-190 bpm) come out at half tempo. Here each
plausible metrical level is tracked with dynamic programming (Ellis 2007)
and scored by how much stronger the onsets on its beats are than those
half-way between them; the winner is then re-tracked with a local period
so songs whose tempo drifts or changes between sections stay locked.

Whatever level wins, its beats must hold the song's grid: a steady song
keeps one period, the track must hold the whole song rather than its
loudest part, and the grid is extended beyond the track at the fitted,
fractional period (segments are cut on it).
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


#: A window moves the beat period only when its autocorrelation peak is this much stronger than the
#: autocorrelation at the song's period (frame rounding alone makes a steady beat's peak ~1.15 times it) ...
LOCAL_MIN_GAIN = 1.5
#: ... and the window is clearly periodic there (peak over energy): drumless or quiet passages are not.
LOCAL_MIN_PERIODICITY = 0.2


def local_period(env: np.ndarray, frame_rate: float, period: float, win_s: float = 8.0) -> np.ndarray:
    """Per-frame beat period near ``period``, from windowed autocorrelation.

    Each 8 s window (1 s hop) picks its autocorrelation peak within a factor
    1.3 of ``period``, pulled towards ``period``. The window keeps ``period``
    unless that peak is clearly periodic and clearly beats ``period``: a
    steady song must give a steady period, and a passage without a clear
    beat (a drumless intro) would otherwise let the period wander and the
    beats drift off the grid. A median filter keeps a few odd windows from
    steering.
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
    periods = np.full(len(starts), period)
    for k in range(len(starts)):
        seg = ac[k, lo : hi + 1]
        j = int(np.argmax(seg * pull))
        at_period = np.interp(period, np.arange(ac.shape[1]), ac[k])
        if seg[j] >= LOCAL_MIN_PERIODICITY * ac[k, 0] and seg[j] >= LOCAL_MIN_GAIN * max(at_period, 0.0):
            periods[k] = _refine(ac[k], lo + j)
    from scipy.ndimage import median_filter

    periods = median_filter(periods, size=9, mode="nearest")
    centres = starts + win / 2
    return np.interp(np.arange(n), centres, periods)


def _local_score(env_n: np.ndarray, period: float) -> np.ndarray:
    width = max(1, int(round(period)))
    t = np.arange(-width, width + 1)
    window = np.exp(-0.5 * (t * 32.0 / period) ** 2)
    # Not mode="same": it returns the window's length when a clip is shorter than two beats.
    return np.convolve(env_n, window)[width : width + len(env_n)]


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
    if len(good) == 0:  # every peak scores below zero (a steady tone, no onsets): no peak is weaker than another
        good = pk
    beats = [int(good[-1])]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    return np.array(beats[::-1], dtype=int)


#: Silence and a recording's noise floor have onset flux too, but no more at a beat than around it:
#: a beat stands out when its onset is this many times the median onset strength ...
TRIM_CONTRAST = 3.0
#: ... over this many seconds around it ...
TRIM_CONTEXT_S = 0.5
#: ... and it is not negligible next to the song's strong beats (upper quartile).
TRIM_FLOOR = 0.1


def trim_beats(env_n: np.ndarray, local: np.ndarray, beats: np.ndarray, frame_rate: float) -> np.ndarray:
    """Drop weak leading and trailing beats (silence, fade-in, fade-out).

    A beat is music when it is strong next to the song's typical beats, or
    when it stands out from the onsets around it and is not negligible. The
    second test is what keeps a dense passage after a sparse loud one: blast
    beats have a fifth of the onset strength per beat of a sparse intro, as
    little as a noise floor has next to them, but unlike noise they stand
    out from their surroundings. The track runs from the first to the last
    music beat that has another within two beats.

    Parameters
    ----------
    env_n : np.ndarray
        Normalised onset envelope.
    local : np.ndarray
        Local onset score the beats were tracked on.
    beats : np.ndarray
        Beat frames, ascending.
    frame_rate : float
        Envelope frames per second.
    """
    if len(beats) < 3:
        return beats
    own = local[beats]
    w = np.convolve(own, np.hanning(5)[1:-1], mode="same")
    # Smoothing lets a beat in silence borrow strength from its loud neighbours:
    # also require some onset of its own.
    strong = (w >= 0.5 * np.sqrt(np.mean(w**2))) & (own >= 0.25 * np.median(own))
    from scipy.ndimage import median_filter

    around = median_filter(env_n, size=2 * int(round(TRIM_CONTEXT_S * frame_rate / 2)) + 1, mode="nearest")[beats]
    sal = _salience(env_n, beats)
    stands_out = sal >= TRIM_CONTRAST * np.maximum(around, 1e-3 * sal.max())
    music = np.pad(strong | stands_out & (own >= TRIM_FLOOR * np.percentile(own, 75)), 2)
    # A lone such beat may be a chord starting a drumless intro or a noise blip: the beat has another
    # within two beats (every other beat may be weak).
    near = music[:-4] | music[1:-3] | music[3:-1] | music[4:]
    keep = np.nonzero(music[2:-2] & near)[0]
    if len(keep) == 0:
        return beats
    return beats[keep[0] : keep[-1] + 1]


#: Beats at each end of a track that set the period its grid is extended with.
EDGE_BEATS = 16


def _fit_line(beats: np.ndarray) -> tuple[float, float, float]:
    """Least-squares beat line through consecutive beats.

    Beats are counted in typical gaps, so a skipped beat does not bend the
    line. Fitting all of them, not taking the median gap, keeps the fraction
    of the period: a 13.6-frame beat read as 14 frames is a beat off after a
    few bars.

    Returns
    -------
    first, last : float
        The line at the first and the last beat, in frames.
    period : float
        Its slope, in frames per beat.
    """
    gaps = np.diff(beats).astype(float)
    k = np.concatenate([[0.0], np.cumsum(np.maximum(1.0, np.round(gaps / np.median(gaps))))])
    period, start = np.polyfit(k, beats.astype(float), 1)
    return float(start), float(start + period * k[-1]), float(period)


def beat_grid(beats: np.ndarray, n_frames: int) -> np.ndarray:
    """Tracked beats extended over the untracked start and end at the beat period there.

    Segments must start on beats even in a drumless intro or outro, where the
    tracker (rightly) reports none; the music's pulse goes on there, on the
    grid of the nearest tracked beats.
    """
    if len(beats) < 2:
        return beats
    first, _, period = _fit_line(beats[:EDGE_BEATS])
    before = first - period * np.arange(int(first // period), 0, -1)
    _, last, period = _fit_line(beats[-EDGE_BEATS:])
    after = last + period * np.arange(1, int((n_frames - 1 - last) // period) + 1)
    grid = np.concatenate([before, beats, after])
    return np.rint(grid[(grid >= 0) & (grid < n_frames)]).astype(int)


#: End beats checked against the grid of the beats inside them ...
EDGE_CHECK = 4
#: ... and dropped from the first one further off it than this fraction of a period.
EDGE_TOLERANCE = 0.15


def hold_edges(beats: np.ndarray) -> np.ndarray:
    """Drop end beats that leave the grid of the beats next to them.

    With no beats beyond it to hold it, the DP bends a track's last beats
    onto a strong onset just off the grid (a song's final snare, a 16th
    before the beat) and its first beats onto a pickup; a steady song must
    keep its steady period to the end.
    """
    if len(beats) < EDGE_BEATS + 2 * EDGE_CHECK:
        return beats
    _, last, period = _fit_line(beats[-EDGE_BEATS - EDGE_CHECK : -EDGE_CHECK])
    tail = beats[-EDGE_CHECK:] - last
    off_tail = np.abs(tail - period * np.round(tail / period)) > EDGE_TOLERANCE * period
    first, _, period = _fit_line(beats[EDGE_CHECK : EDGE_CHECK + EDGE_BEATS])
    head = first - beats[:EDGE_CHECK]
    off_head = np.abs(head - period * np.round(head / period)) > EDGE_TOLERANCE * period
    # Cut at the innermost beat off the grid: the ones beyond it hang on it.
    start = int(np.nonzero(off_head)[0].max()) + 1 if off_head.any() else 0
    stop = len(beats) - EDGE_CHECK + int(np.nonzero(off_tail)[0].min()) if off_tail.any() else len(beats)
    return beats[start:stop]


def _on_onsets(env_n: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Which beats have an onset of their own: at least half the median beat's."""
    sal = _salience(env_n, beats)
    return sal >= 0.5 * np.median(sal)


def even_out_breaks(env_n: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Runs of beats with no onsets, between two beats that have them, spaced evenly between those two.

    Through a drumless break the DP can only follow faint onsets (a pad
    swelling, noise) and wanders off the grid the drums come back on; the
    pulse goes on evenly there. A run is left alone where the DP's beat
    count does not fit the gap at the song's period.
    """
    if len(beats) < 4:
        return beats
    on = _on_onsets(env_n, beats)
    anchors = np.nonzero(on)[0]
    if len(anchors) < 2:
        return beats
    period = float(np.median(np.diff(beats)))
    out = beats.astype(float)
    for a, b in zip(anchors[:-1], anchors[1:]):
        # A single weak beat between onsets is just an off beat; two or more in a row are a break.
        if b - a > 2 and abs((beats[b] - beats[a]) / ((b - a) * period) - 1) < 0.1:
            out[a : b + 1] = np.linspace(beats[a], beats[b], b - a + 1)
    return np.rint(out).astype(int)


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


def _span(beats: np.ndarray) -> int:
    return int(beats[-1] - beats[0]) if len(beats) > 1 else 0


def _level_score(env_n: np.ndarray, beats: np.ndarray, bpm: float, span: int) -> float:
    """How well a track fits as *the* beat: strong on its beats all through the song, regular, near common tempi.

    ``span`` is the longest stretch, in frames, that any track held.
    """
    if len(beats) < 4:
        return -np.inf
    gaps = np.diff(beats)
    # A track that lands on onsets only by bending its spacing is the wrong level.
    irregular = float(np.std(gaps) / max(np.mean(gaps), 1e-9))
    # One that holds only part of the song (a loud intro) has not found the song's beat, however strong there.
    coverage = min(1.0, _span(beats) / max(span, 1))
    return float(np.mean(_salience(env_n, beats))) * _prior(bpm) * coverage - 10.0 * irregular


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


#: Two onset-carrying beats whose distance is this far (in periods) from a whole number of beats
#: have jumped to the other half of the beat.
JUMP_PHASE = 0.35


def jumps_half_a_beat(env_n: np.ndarray, beats: np.ndarray) -> bool:
    """Whether a track moves to the other half of its beat somewhere and carries on there.

    At half the true tempo the strongest onsets can sit on one phase in one
    section and on the other in the next (a kick-led intro, then a
    snare-led verse); the DP bridges the two with a beat off the grid.
    Only beats on real onsets, at most four beats apart, are compared: the
    DP's path through a quiet passage proves nothing.
    """
    if len(beats) < 8:
        return False
    on = beats[_on_onsets(env_n, beats)]
    gaps = np.diff(beats).astype(float)
    med = np.median(gaps)
    typical = gaps[np.abs(gaps - med) <= 0.1 * med]
    period = float(typical.mean()) if len(typical) else float(med)
    q = np.diff(on) / period
    shift = np.where(q <= 4.5, q - np.round(q), 0.0)
    # The jump may be made in one gap or split over two (a bridging beat in between).
    return bool(np.any(np.abs(shift) >= JUMP_PHASE) or np.any(np.abs(shift[1:] + shift[:-1]) >= JUMP_PHASE))


def _track_level(env_n: np.ndarray, frame_rate: float, bpm: float, span: int) -> np.ndarray:
    """Beats at one metrical level: a steady-period track, or a local-period one where that fits better."""
    period = 60.0 * frame_rate / bpm
    local = _local_score(env_n, period)
    steady = trim_beats(env_n, local, dp_beats(local, np.full(len(env_n), period)), frame_rate)
    # A local period follows tempo changes but can be misled in quiet passages: keep whichever fits better.
    varying = trim_beats(env_n, local, dp_beats(local, local_period(env_n, frame_rate, period)), frame_rate)
    beats = hold_edges(max((steady, varying), key=lambda b: _level_score(env_n, b, bpm, span)))
    return even_out_breaks(env_n, beats)


def track_beats(env: np.ndarray, frame_rate: float) -> BeatTrack:
    """Track beats in an onset envelope.

    Each tempo hypothesis is tracked; the best-fitting one is then moved an
    octave down when every other beat is weak, or up when the onsets half-way
    between beats are nearly as strong as the beats (fast songs that other
    trackers halve), or when its track jumps half a beat to hold on to them.

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
        beats = trim_beats(env_n, local, dp_beats(local, np.full(len(env), period)), frame_rate)
        # The DP may bend a wrong period onto the right beats: judge the track by the tempo it really has.
        tracked = _tempo_of(beats, frame_rate) if len(beats) > 1 else bpm
        hyps.append({"bpm": round(bpm, 2), "tracked_bpm": round(tracked, 2), "_beats": beats})
    span = max(_span(h["_beats"]) for h in hyps)
    for h in hyps:
        h["score"] = round(_level_score(env_n, h["_beats"], h["tracked_bpm"], span), 4)
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
    beats = _track_level(env_n, frame_rate, bpm, span)
    # Beats on both halves of this level's beat are beats of the level above: only it holds the grid.
    if bpm * 2 <= BPM_MAX and jumps_half_a_beat(env_n, beats):
        bpm *= 2
        beats = _track_level(env_n, frame_rate, bpm, span)
    tempo = _tempo_of(beats, frame_rate) if len(beats) > 1 else bpm
    return BeatTrack(tempo=round(tempo, 2), frames=beats, hypotheses=hyps)

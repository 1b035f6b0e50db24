"""The music as curves: signals over song time that an editor bakes into keyframes (Bake Music to F-Curve).

Each signal is 0-1, one value per analysis frame (``hop`` seconds apart, frame ``i`` at file time
``offset + i x hop``), computed from the same features as the analysis (:mod:`engine.analysis.features`):

- ``intensity``: m2v's intensity, the song's level curve (mean mel level, dB) scaled between the song's quiet and
  loud ends exactly as a segment's intensity is (:func:`engine.plan.build.level_curve`);
- ``onset``: the onset strength over the song's 95th percentile (as beats' strengths are), clipped to 1;
- ``beat``: a pulse on every tracked beat, the beat's strength decaying over :data:`PULSE_DECAY` seconds (the
  ``music`` motion drive's pulse);
- ``low``, ``mid``, ``high``: the loudness (mean dB) of the mel bands centred below :data:`LOW_HZ`, between it and
  :data:`HIGH_HZ`, and above, each scaled between its own 2nd and 98th percentile.

A signal's value over an image's slot is its mean there (``engine.protocol.mean_level``), so a key per image follows
the music at the image rate, not the audio frame rate. ``engine signals SONG -o signals.json`` writes them
(kind ``m2v-signals``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.analysis.audio import load_song
from engine.analysis.beats import track_beats
from engine.analysis.features import Features, compute_features, hz_to_mel, mel_to_hz
from engine.files import file_sha256
from engine.plan.build import beat_strength, level_curve
from engine.protocol import SIGNALS_KIND, SIGNALS_VERSION, mean_level, normalized_intensity
from engine.settings_table import SIGNALS

#: Band edges (Hz) of the ``low``, ``mid`` and ``high`` signals: bass and kick; voice and most instruments; air.
LOW_HZ = 250.0
HIGH_HZ = 4000.0
#: Seconds over which a beat's pulse decays to 1/e (``engine.render.motion.PULSE_DECAY``, the motion drive's).
PULSE_DECAY = 0.15


def _scaled(x: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    lo, hi = np.percentile(x, lo_pct), np.percentile(x, hi_pct)
    if not hi > lo:
        return np.full(x.shape, 0.5)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def band_loudness(feats: Features) -> dict[str, np.ndarray]:
    """Loudness of the low, mid and high mel bands per frame (mean dB), each scaled 0-1 over the song."""
    n_mels = feats.mel_db.shape[0]
    centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(feats.sr / 2), n_mels + 2))[1:-1]
    bands = {"low": centres < LOW_HZ, "mid": (centres >= LOW_HZ) & (centres < HIGH_HZ), "high": centres >= HIGH_HZ}
    return {name: _scaled(feats.mel_db[rows].mean(axis=0)) for name, rows in bands.items()}


def beat_pulse(n_frames: int, hop: float, beat_frames: np.ndarray, strength: list[float]) -> np.ndarray:
    """Each beat's strength at its frame, decaying over ``PULSE_DECAY`` seconds after it (the largest where
    pulses overlap)."""
    out = np.zeros(n_frames)
    t = np.arange(n_frames) * hop
    for f, s in zip(np.asarray(beat_frames, dtype=int), strength):
        if 0 <= f < n_frames:
            tail = slice(f, min(n_frames, f + int(np.ceil(8 * PULSE_DECAY / hop)) + 1))
            out[tail] = np.maximum(out[tail], s * np.exp(-(t[tail] - t[f]) / PULSE_DECAY))
    return out


def music_signals(feats: Features, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Every signal of :data:`engine.settings_table.SIGNALS`, one 0-1 value per frame of ``feats``."""
    levels = level_curve(feats, offset)
    lo, hi = levels["range"]
    intensity = np.array([normalized_intensity(v, lo, hi) for v in levels["db"]])
    ref = float(np.percentile(feats.onset, 95)) or 1.0
    onset = np.clip(feats.onset / ref, 0.0, 1.0)
    beats = track_beats(feats.onset, feats.frame_rate)
    pulse = beat_pulse(feats.n_frames, feats.hop / feats.sr, beats.frames, beat_strength(feats.onset, beats.frames))
    out = {"intensity": intensity, "onset": onset, "beat": pulse, **band_loudness(feats)}
    return {name: out[name] for name in SIGNALS}


def signals_document(song_path: str | Path, start: float | None = None, end: float | None = None) -> dict:
    """The signals of a song (or of its span ``[start, end)``) as a ``m2v-signals`` document.

    ``{"kind": "m2v-signals", "version": 1, "song": {"path", "sha256"}, "hop": s, "offset": s,
    "signals": {"intensity": [...], ...}}``: value ``i`` of each signal is at file time ``offset + i x hop``.
    """
    song = load_song(song_path, start=start, end=end)
    feats = compute_features(song.y, song.sr)
    sig = music_signals(feats, song.offset)
    return {
        "kind": SIGNALS_KIND,
        "version": SIGNALS_VERSION,
        "song": {"path": str(Path(song.path).resolve()), "sha256": file_sha256(song.path)},
        "hop": feats.hop / feats.sr,
        "offset": round(song.offset, 6),
        "signals": {name: [round(float(v), 4) for v in values] for name, values in sig.items()},
    }


def slot_value(doc: dict, name: str, start: float, end: float) -> float:
    """A signal's mean over ``[start, end)`` (file seconds), as the add-on bakes it per image."""
    return mean_level(doc["signals"][name], doc["hop"], start - doc["offset"], end - doc["offset"])

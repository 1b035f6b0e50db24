"""Synthesised songs with known structure: the demo song and test material.

Every section has its own tempo, drum pattern, timbre and loudness; the
generator returns the true beat times and section boundaries with the audio,
so analysis can be checked against what was really put in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SR = 22050


@dataclass(frozen=True)
class Section:
    """One section of a synthesised song.

    Attributes
    ----------
    bars : int
        Length in 4/4 bars.
    bpm : float
        Tempo.
    pattern : str
        Drum pattern: ``rock``, ``metal``, ``four`` (four on the floor), ``sparse``, ``blast`` or ``none``.
    timbre : str
        Chord timbre: ``soft`` (sines), ``bright`` (saw-like), ``organ`` (odd harmonics).
    gain : float
        Linear loudness of the section.
    chords : tuple of int
        MIDI roots, one per bar, cycled.
    """

    bars: int
    bpm: float
    pattern: str = "rock"
    timbre: str = "soft"
    gain: float = 0.5
    chords: tuple[int, ...] = (57, 53, 60, 55)


@dataclass
class SynthSong:
    """A synthesised song and its ground truth."""

    y: np.ndarray
    sr: int
    beats: np.ndarray
    boundaries: np.ndarray
    sections: list[Section] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.y) / self.sr


def _env(n: int, decay: float, sr: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * sr))


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    freq = 50 + 90 * np.exp(-t / 0.03)
    # The beater's click: a real kick's broadband transient, not just a low thump.
    click = 0.5 * rng.standard_normal(n) * _env(n, 0.004, sr)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, 0.09, sr) + click


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.2 * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n) * _env(n, 0.05, sr)
    return 0.6 * noise + 0.5 * np.sin(2 * np.pi * 190 * t) * _env(n, 0.04, sr)


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.06 * sr)
    noise = np.diff(rng.standard_normal(n + 1))
    return 0.12 * noise * _env(n, 0.012, sr)


def _china(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A loud, trashy cymbal: bright noise with a long decay."""
    n = int(0.6 * sr)
    noise = 0.7 * np.diff(rng.standard_normal(n + 1)) + 0.4 * rng.standard_normal(n)
    return noise * _env(n, 0.15, sr)


def _tone(midi: float, n: int, sr: int, timbre: str) -> np.ndarray:
    f = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(n) / sr
    if timbre == "bright":
        harmonics = [(k, 1.0 / k) for k in range(1, 9)]
    elif timbre == "organ":
        harmonics = [(k, 1.0 / k) for k in (1, 3, 5, 7)]
    else:
        harmonics = [(1, 1.0), (2, 0.2)]
    out = np.zeros(n)
    for k, a in harmonics:
        if f * k < sr / 2:
            out += a * np.sin(2 * np.pi * f * k * t)
    return out


PATTERNS: dict[str, list[tuple[str, float]]] = {
    # (instrument, position in beats within a 4-beat bar)
    "rock": [("kick", 0), ("kick", 2), ("snare", 1), ("snare", 3)] + [("hat", x / 2) for x in range(8)],
    "metal": [("kick", x / 2) for x in range(8)] + [("snare", 1), ("snare", 3), ("crash", 0), ("crash", 2)],
    "four": [("kick", x) for x in range(4)] + [("hat", x + 0.5) for x in range(4)] + [("snare", 1), ("snare", 3)],
    "sparse": [("kick", 0), ("snare", 2)] + [("hat", x) for x in range(4)],
    # Traditional blast beat: kick and snare alternating on 16ths, a china cymbal with the kick on every beat.
    "blast": [("kick", x / 2) for x in range(8)]
    + [("snare", x / 2 + 0.25) for x in range(8)]
    + [("china", x) for x in range(4)],
    "none": [],
}


def synth_song(sections: list[Section], sr: int = SR, seed: int = 0, lead_in: float = 0.0) -> SynthSong:
    """Render sections into one song.

    Parameters
    ----------
    sections : list of Section
        The song's sections in order.
    sr : int
        Sample rate.
    seed : int
        Seed for the noise in drums (deterministic output).
    lead_in : float
        Seconds of silence before the first beat.

    Returns
    -------
    SynthSong
        Audio with true beat times and section boundaries (seconds).
    """
    rng = np.random.default_rng(seed)
    drums = {"kick": _kick(sr, rng), "snare": _snare(sr, rng), "hat": _hat(sr, rng)}
    # Its own noise stream: songs without it keep the exact samples they always had.
    drums["china"] = _china(sr, np.random.default_rng([seed, 1]))
    drums["crash"] = 0.6 * np.concatenate([drums["hat"] * 2, np.zeros(int(0.1 * sr))]) + 0.0
    total = lead_in + sum(s.bars * 4 * 60.0 / s.bpm for s in sections) + 1.0
    y = np.zeros(int(total * sr) + sr)
    beats: list[float] = []
    bounds = [lead_in]
    t0 = lead_in
    for sec in sections:
        spb = 60.0 / sec.bpm
        for bar in range(sec.bars):
            bar_t = t0 + bar * 4 * spb
            beats.extend(bar_t + k * spb for k in range(4))
            for inst, pos in PATTERNS[sec.pattern]:
                i = int(round((bar_t + pos * spb) * sr))
                hit = drums[inst]
                y[i : i + len(hit)] += sec.gain * hit[: len(y) - i]
            root = sec.chords[bar % len(sec.chords)]
            n = int(4 * spb * sr)
            i = int(round(bar_t * sr))
            chord = sum(_tone(root + iv, n, sr, sec.timbre) for iv in (0, 4, 7))
            chord += 0.8 * _tone(root - 24, n, sr, "soft")
            fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.04 * sr))
            y[i : i + n] += 0.12 * sec.gain * chord * fade
        t0 += sec.bars * 4 * spb
        bounds.append(t0)
    y = y[: int((t0 + 1.0) * sr)]
    # A faint noise floor, as any recording has: empty bands would make tiny hits look huge in dB.
    floor = rng.standard_normal(len(y)) * 1e-3
    y += floor * (np.abs(y).max() > 0)
    y = 0.9 * y / max(1e-9, np.abs(y).max())
    return SynthSong(
        y=y.astype(np.float32), sr=sr, beats=np.array(beats), boundaries=np.array(bounds), sections=list(sections)
    )


DEMO_SECTIONS = [
    Section(bars=4, bpm=100, pattern="sparse", timbre="soft", gain=0.25),
    Section(bars=8, bpm=100, pattern="rock", timbre="organ", gain=0.5, chords=(57, 53, 48, 55)),
    Section(bars=8, bpm=100, pattern="four", timbre="bright", gain=0.9, chords=(53, 55, 57, 57)),
    Section(bars=4, bpm=100, pattern="none", timbre="soft", gain=0.3, chords=(50, 53)),
    Section(bars=8, bpm=100, pattern="metal", timbre="bright", gain=1.0, chords=(52, 55, 57, 59)),
]

DEMO_LYRICS = [
    (10.0, "campfire under a sky full of stars"),
    (20.0, "a crowd of people laughing"),
    (30.0, "neon city lights in the rain"),
    (40.0, "the ocean swallows the sun"),
    (62.0, "mountains made of glass"),
    (72.0, "a lighthouse in a storm"),
]


def demo_song(sr: int = SR) -> SynthSong:
    """The project's own demo song (about 77 s), free of third-party material."""
    return synth_song(DEMO_SECTIONS, sr=sr, seed=2024, lead_in=0.5)


def demo_lrc() -> str:
    """LRC lyrics for :func:`demo_song`."""
    lines = ["[ti:m2v demo]", "[ar:m2v]"]
    for t, text in DEMO_LYRICS:
        lines.append(f"[{int(t // 60):02d}:{t % 60:05.2f}]{text}")
    return "\n".join(lines) + "\n"

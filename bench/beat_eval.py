"""Beat F-measure (mir_eval, +-70 ms) of m2v's tracker and librosa's on synthesised songs.

Not a timed test: prints a table and the mean F-measure of each tracker.
Run: .venv/bin/python bench/beat_eval.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mir_eval  # noqa: E402
import numpy as np  # noqa: E402

from engine.beats import track_beats  # noqa: E402
from engine.features import compute_features  # noqa: E402
from engine.synth import Section, synth_song  # noqa: E402


def cases() -> dict[str, list[Section]]:
    out = {}
    for bpm, pat in [
        (72, "rock"),
        (90, "rock"),
        (100, "sparse"),
        (120, "four"),
        (128, "four"),
        (140, "rock"),
        (150, "rock"),
        (175, "metal"),
        (185, "metal"),
        (180, "rock"),
    ]:
        out[f"{pat}-{bpm}"] = [Section(bars=16, bpm=bpm, pattern=pat, timbre="bright", gain=0.7)]
    out["change-110-128"] = [
        Section(8, 110, "rock", "soft", 0.5),
        Section(8, 128, "four", "bright", 0.9),
        Section(8, 118, "rock", "organ", 0.7),
    ]
    out["metal-verse-180"] = [Section(8, 180, "rock", "soft", 0.5), Section(16, 180, "metal", "bright", 0.9)]
    return out


def main() -> None:
    import librosa

    rows = []
    for name, secs in cases().items():
        song = synth_song(secs, seed=7, lead_in=1.0)
        feats = compute_features(song.y, song.sr)
        bt = track_beats(feats.onset, feats.frame_rate)
        est = feats.frames_to_time(bt.frames)
        f_m2v = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(song.beats), mir_eval.beat.trim_beats(est))
        tempo_l, bl = librosa.beat.beat_track(y=song.y, sr=song.sr, units="time")
        f_lib = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(song.beats), mir_eval.beat.trim_beats(bl))
        rows.append((name, bt.tempo, float(np.atleast_1d(tempo_l)[0]), f_m2v, f_lib))
        print(f"{name:18s} m2v {bt.tempo:6.1f} bpm F={f_m2v:.3f}   librosa {rows[-1][2]:6.1f} bpm F={f_lib:.3f}")
    print(f"mean F: m2v={np.mean([r[3] for r in rows]):.3f} librosa={np.mean([r[4] for r in rows]):.3f}")


if __name__ == "__main__":
    main()

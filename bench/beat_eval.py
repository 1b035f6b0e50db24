"""Beat F-measure (mir_eval, +-70 ms) of m2v's tracker and librosa's on synthesised songs.

Not a timed test: prints a table and the mean F-measure of each tracker. For songs at
one steady tempo it also prints ``grid``: how far (ms) the farthest position of m2v's
beat grid (the tracked beats, extended as segments use them) lies from the true grid
at the level m2v tracked (half, same or double tempo); segments cut on these.
Run: .venv/bin/python bench/beat_eval.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mir_eval  # noqa: E402
import numpy as np  # noqa: E402

from engine.analysis.beats import beat_grid, track_beats  # noqa: E402
from engine.analysis.features import compute_features  # noqa: E402
from engine.analysis.synth import Section, synth_song  # noqa: E402


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
    # Fast steady songs with blast beats, alone and after an intro (issue 12, item 6).
    for bpm in (180, 190, 200):
        out[f"blast-{bpm}"] = [Section(16, bpm, "blast", "bright", 0.7)]
    out["intro-blast-190"] = [Section(4, 190, "sparse", "soft", 0.4), Section(16, 190, "blast", "bright", 0.8)]
    out["metal-blast-200"] = [Section(8, 200, "metal", "bright", 0.7), Section(16, 200, "blast", "bright", 0.8)]
    out["pad-metal-190"] = [Section(4, 190, "none", "soft", 0.4), Section(16, 190, "metal", "bright", 0.8)]
    return out


def grid_error_ms(song, times: np.ndarray, tempo: float) -> float:
    """Farthest of ``times`` (within the song's beats) from the true steady grid at the tracked level."""
    bpms = {s.bpm for s in song.sections}
    if len(bpms) != 1 or len(times) == 0:
        return float("nan")
    period = 60.0 / bpms.pop()
    step = period / 2 if tempo * period / 60.0 > 1.5 else period
    t = times[(times >= song.beats[0] - 0.05) & (times <= song.beats[-1] + 0.05)]
    return 1000.0 * float(np.max(np.abs(t - (song.beats[0] + np.round((t - song.beats[0]) / step) * step))))


def main() -> None:
    import librosa

    rows = []
    for name, secs in cases().items():
        song = synth_song(secs, seed=7, lead_in=1.0)
        feats = compute_features(song.y, song.sr)
        bt = track_beats(feats.onset, feats.frame_rate)
        est = feats.frames_to_time(bt.frames)
        grid = grid_error_ms(song, feats.frames_to_time(beat_grid(bt.frames, feats.n_frames)), bt.tempo)
        f_m2v = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(song.beats), mir_eval.beat.trim_beats(est))
        tempo_l, bl = librosa.beat.beat_track(y=song.y, sr=song.sr, units="time")
        f_lib = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(song.beats), mir_eval.beat.trim_beats(bl))
        rows.append((name, bt.tempo, float(np.atleast_1d(tempo_l)[0]), f_m2v, f_lib, grid))
        print(
            f"{name:18s} m2v {bt.tempo:6.1f} bpm F={f_m2v:.3f} grid {grid:4.0f} ms"
            f"   librosa {rows[-1][2]:6.1f} bpm F={f_lib:.3f}"
        )
    print(f"mean F: m2v={np.mean([r[3] for r in rows]):.3f} librosa={np.mean([r[4] for r in rows]):.3f}")
    print(f"worst m2v grid error: {np.nanmax([r[5] for r in rows]):.0f} ms")


if __name__ == "__main__":
    main()

"""Benchmark: analysing a 4-minute song in a fresh process, m2v against plain librosa.

The baseline is what a script would do with librosa alone: load, onset
strength, beat tracking, mel spectrogram. Both run as fresh interpreters
("cold": imports, decoding, any JIT compile included) and again inside one
process ("warm"). Not a test: prints figures; the last line is
``ratio=<cold m2v / cold baseline>``.

Run: .venv/bin/python bench/analyze.py [SONG]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = """
import sys, time
t = time.perf_counter()
import librosa
y, sr = librosa.load(sys.argv[1])
onset = librosa.onset.onset_strength(y=y, sr=sr)
tempo, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr)
mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr))
print(time.perf_counter() - t)
"""

M2V = """
import sys, time
t = time.perf_counter()
from engine.plan.build import analyze
analyze(sys.argv[1])
print(time.perf_counter() - t)
"""


def fresh(code: str, song: Path) -> float:
    """Wall seconds of a fresh interpreter running ``code`` (interpreter start included)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(song)], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t


def warm(code: str, song: Path, repeats: int = 3) -> float:
    """Median in-process seconds of the work after a first (warming) call."""
    body = code.replace("t = time.perf_counter()\n", "").replace("print(time.perf_counter() - t)\n", "")
    loop = f"""
import time, statistics, sys
times = []
for _ in range({repeats + 1}):
    t = time.perf_counter()
{chr(10).join("    " + line for line in body.strip().splitlines() if not line.startswith("import sys, time"))}
    times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""
    out = subprocess.run([sys.executable, "-c", loop, str(song)], check=True, cwd=ROOT, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def make_song(folder: Path) -> Path:
    """A 4-minute synthesised song (no third-party audio), written as 44.1 kHz stereo mp3 when possible."""
    import numpy as np
    import soundfile as sf

    from engine.analysis.synth import Section, synth_song

    kinds = [("sparse", "soft", 0.3), ("rock", "organ", 0.6), ("metal", "bright", 1.0), ("four", "bright", 0.8)]
    secs = [Section(8, 124, *kinds[i % 4], chords=(50 + i % 5, 53, 57)) for i in range(16)]
    song = synth_song(secs, sr=44100, seed=1)
    y = np.stack([song.y, song.y], axis=1)[: 240 * 44100]
    path = folder / "bench_song.mp3"
    try:
        sf.write(path, y, 44100, format="MP3")
    except Exception:  # noqa: BLE001 - older libsndfile: fall back to wav
        path = folder / "bench_song.wav"
        sf.write(path, y, 44100)
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(sys.argv[1]) if len(sys.argv) > 1 else make_song(Path(tmp))
        print(f"song: {song.name}")
        # The very first run of each pays one-off caches (numba's on-disk cache, font caches): not counted.
        fresh(BASELINE, song)
        fresh(M2V, song)
        base_cold = statistics.median(fresh(BASELINE, song) for _ in range(3))
        m2v_cold = statistics.median(fresh(M2V, song) for _ in range(3))
        base_warm, m2v_warm = warm(BASELINE, song), warm(M2V, song)
        print(f"cold (fresh process, median of 3): baseline {base_cold:.2f} s, m2v {m2v_cold:.2f} s")
        print(f"warm (in process, median of 3):    baseline {base_warm:.2f} s, m2v {m2v_warm:.2f} s")
        print(f"warm ratio m2v/baseline: {m2v_warm / base_warm:.2f}")
        print(f"ratio={m2v_cold / base_cold:.3f}")


if __name__ == "__main__":
    main()

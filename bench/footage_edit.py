"""How much a re-exported footage movie re-renders: the last ``--changed`` seconds of the movie regraded.

A synthesised song (``--seconds`` long, 120 bpm) is planned at every beat (2-8 steps a second, ``--fps`` images a
second), rendered with the small models of ``tests/small_models.py`` (32x32) following a synthesised movie
as long as the song (``tests/footage_media.py``); then the movie is written again with its last
``--changed`` seconds regraded, at the same path, and the plan rendered again into the same folder. Prints
the segments re-rendered and reused, where the first re-rendered one starts, and the second render's time
against the first's. m2v's cache folder is a fresh temporary one, so the first render decodes the frames.

Run: .venv/bin/python bench/footage_edit.py [--seconds 40] [--changed 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--changed", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=4.0, help="images a second (the plan's --fps)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="m2v-footage-edit-"))
    os.environ["M2V_CACHE"] = str(tmp / "cache")

    from engine.analysis.synth import Section, synth_song
    from engine.files import write_json_atomic
    from engine.plan.build import plan_from_boundaries
    from engine.progress import Collect
    from engine.render.jobs.loop import render
    from tests.conftest import write_song
    from tests.footage_media import write_movie
    from tests.small_models import load_small, small_settings, write_all

    bars = int(round(args.seconds / 2))
    s = synth_song([Section(bars, 120, "rock", "soft", 0.5)], seed=4)
    wav = write_song(tmp / "song.wav", s.y, s.sr)
    bounds = [0.0] + [float(b) for b in s.beats if 0.25 < b < s.duration - 0.25] + [s.duration]
    plan = plan_from_boundaries(wav, bounds, preset="draft", min_rate=2, max_rate=8, fps=args.fps)
    write_json_atomic(plan, tmp / "plan.json")
    rate = Fraction(30000, 1001)
    frames = int(s.duration * rate) + 1
    movie = tmp / "live.mp4"
    write_movie(movie, frames, rate)
    models = load_small(write_all(tmp / "models", roundtrip=True))
    settings = small_settings(footage=str(movie), footage_blend=0.3, init_weight=10.0)
    out = tmp / "render"
    t0 = time.perf_counter()
    render(tmp / "plan.json", out, settings, models, Collect())
    first_s = time.perf_counter() - t0
    write_movie(movie, frames, rate, regraded_from=int((s.duration - args.changed) * rate))
    again = Collect()
    t0 = time.perf_counter()
    render(tmp / "plan.json", out, settings, models, again)
    second_s = time.perf_counter() - t0
    ends = [e for e in again.events if e["event"] == "segment_end"]
    redone = [e for e in ends if not e["reused"]]
    start = redone[0]["start"] if redone else None
    print(
        f"segments={len(ends)} rerendered={len(redone)} reused={len(ends) - len(redone)} "
        f"first_rerendered_at={start} s (movie changed from {s.duration - args.changed:.2f} s) "
        f"first_render={first_s:.1f}s second_render={second_s:.1f}s"
    )


if __name__ == "__main__":
    main()

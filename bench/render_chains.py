"""Latent chains on a local Ray instance with W workers against the same chains rendered here, one after another.

A synthesised song is cut into ``--segments`` equal segments and split into
``--chains`` equal chains (``--chain-at``); it is rendered with the small
random-weight models of ``tests/small_models.py`` on the CPU, once here
(``render --chain-at``, one torch thread) and once per W on a fresh local
Ray instance (``--ray --ray-workers W --ray-cpus 1``: one torch thread per
worker). Reported apart:

- Ray start-up: joining a new local instance and creating the workers (the ``ray_start`` event);
- model loading per worker (each ``chain_start`` event's ``load_s``);
- rendering speed once every worker is up: images a second from the moment the last of the first W
  chains started to the end, against the local render's images a second from its first image to its end.

The frames of every Ray render are checked to equal the local render's, byte for byte.

Run: .venv/bin/python bench/render_chains.py [--workers 1,2] [--size 64] [--seconds 24]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_plan(work: Path, seconds: float, segments: int, rate: float, fps: float) -> tuple[Path, list[float]]:
    from engine.analysis.synth import Section, synth_song
    from engine.files import write_json_atomic
    from engine.plan.build import plan_from_boundaries
    from tests.conftest import write_song

    bars = max(1, int(seconds / 2))  # 2 s bars at 120 bpm
    s = synth_song([Section(bars, 120, "rock", "soft", 0.4), Section(bars, 120, "metal", "bright", 0.9)], seed=2)
    wav = write_song(work / "song.wav", s.y, s.sr)
    bounds = [round(seconds * k / segments, 4) for k in range(segments + 1)]
    plan = plan_from_boundaries(wav, bounds, preset="draft", min_rate=rate, max_rate=rate, fps=fps)
    write_json_atomic(plan, work / "plan.json")
    return work / "plan.json", bounds


def frames(out: Path) -> list[bytes]:
    import json

    m = json.loads((out / "manifest.json").read_text())
    return [(out / f["file"]).read_bytes() for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]


class Timed:
    """Events as they are emitted, each with ``t_seen`` (monotonic seconds)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: str, **fields) -> None:
        self.events.append({"event": event, "t_seen": time.monotonic(), **fields})


def render_once(plan, out, models, settings, chain_at, workers=None):
    from engine.render.jobs.loop import render

    events = Timed()
    t0 = time.monotonic()
    ray = {"ray": "local", "ray_workers": workers, "ray_cpus": 1} if workers else {}
    code = render(plan, out, settings, models, events, chain_at=chain_at, snapshot_every=1000, **ray)
    wall = time.monotonic() - t0
    assert code == 0, code
    return events.events, wall, t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="W values, comma-separated")
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--segments", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=24.0)
    ap.add_argument("--rate", type=float, default=8.0, help="steps per second of music")
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from tests.small_models import load_small, small_settings, write_all

    work = Path(tempfile.mkdtemp(prefix="m2v-render-chains-"))
    try:
        models = load_small(write_all(work / "models"))
        plan, bounds = make_plan(work, args.seconds, args.segments, args.rate, args.fps)
        per = args.segments // args.chains
        chain_at = [bounds[k] for k in range(per, args.segments, per)][: args.chains - 1]
        settings = small_settings(width=args.size, height=args.size)
        ev, wall, _ = render_once(plan, work / "local", models, settings, chain_at)
        images = [e for e in ev if e["event"] == "image"]
        n = len(images)
        print(f"{args.chains} chains, {n} images at {args.size}x{args.size}, small models, CPU, 1 torch thread each")
        print(f"cores here: {os.cpu_count()} (load average {os.getloadavg()[0]:.1f} at the start)")
        t_local = _span(ev, images)
        base = frames(work / "local")
        print(f"local, one chain after another: {n / t_local:6.2f} images/s ({t_local:.1f} s rendering)")
        for w in (int(x) for x in args.workers.split(",")):
            out = work / f"ray{w}"
            ev, wall, _ = render_once(plan, out, models, settings, chain_at, workers=w)
            assert frames(out) == base, "a Ray render's frames differ from the local render's"
            start = next(e for e in ev if e["event"] == "ray_start")
            loads = [e for e in ev if e["event"] == "chain_start"]
            first_wave = loads[: start["workers"]]
            t_up = max(e["t_seen"] for e in first_wave)
            after = [e for e in ev if e["event"] == "image" and e["t_seen"] > t_up]
            t_render = ev[-1]["t_seen"] - t_up
            rate = len(after) / t_render
            load_s = ", ".join(f"{e['load_s']:.2f}" for e in first_wave)
            print(
                f"ray W={w}: start-up {start['startup_s']:.1f} s, model loading per worker "
                f"{load_s} s; "
                f"{rate:6.2f} images/s once up ({len(after)} images in {t_render:.1f} s): "
                f"speed-up {rate / (n / t_local):.2f} (goal >= {0.8 * w:.1f}); whole command {wall:.1f} s; "
                "frames equal the local render's"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _span(ev, images) -> float:
    return images[-1]["t_seen"] - images[0]["t_seen"]


if __name__ == "__main__":
    main()

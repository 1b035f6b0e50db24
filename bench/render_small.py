"""A real small-model render's wall time per image: commit 056c058 (before issue 15) against this tree.

Both versions render the same beat segments (``--images`` images, one
optimisation step each) through their own command line, in fresh
processes, with the small random-weight models of ``tests/small_models.py``
at 64x64 and the same number of cutouts (this tree with ``--cutout-method
crops``; 056c058 has only its own crops). The time per image is read from
the ``image`` events (last minus first, over the images between), so model
loading is left out; runs alternate between the versions and the median of
``--rounds`` is kept, because the machine may be shared.

Run: .venv/bin/python bench/render_small.py [--images 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COMMIT = "056c058"
SEGMENT_SECONDS, SEGMENT_IMAGES = 1.0, 10


def old_tree(into: Path) -> Path:
    """056c058's ``engine/`` in ``into`` (for ``PYTHONPATH``)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", COMMIT, "engine"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def plans(work: Path, images: int) -> tuple[Path, Path]:
    """The same segments as a version-2 plan (this tree) and a version-1 plan (056c058)."""
    import bookkeeping as bk

    from engine.files import write_json_atomic

    song = bk.write_song(work / "song.wav", len(bk.segment_sizes(images, SEGMENT_IMAGES)) * SEGMENT_SECONDS + 1.0)
    new = bk.make_plan(song, images, SEGMENT_SECONDS, SEGMENT_IMAGES)
    old = {
        "version": 1,
        "song": new["song"],
        "segments": [
            {
                "index": s["index"],
                "start": s["start"],
                "end": s["end"],
                "images": s["images"],
                "guidance": {"kind": "audio"},
            }
            for s in new["segments"]
        ],
    }
    write_json_atomic(new, work / "plan-v2.json")
    write_json_atomic(old, work / "plan-v1.json")
    return work / "plan-v2.json", work / "plan-v1.json"


def run(tree: Path, plan: Path, out: Path, models: Path, extra: list[str], cutouts: int) -> tuple[float, float]:
    """One render in a fresh process; returns (seconds per image from the events, whole process seconds)."""
    from tests.small_models import model_args

    cmd = [sys.executable, "-m", "engine", "render", str(plan), "--out", str(out), "--size", "64", "64"]
    cmd += ["--cutouts", str(cutouts), "--seed", "0", "--device", "cpu", *extra, *model_args(models)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, timeout=1800)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: render failed ({proc.returncode}): {proc.stderr[-2000:]}")
    times = [ev["t"] for ev in map(json.loads, proc.stdout.splitlines()) if ev.get("event") == "image"]
    shutil.rmtree(out)
    return (times[-1] - times[0]) / (len(times) - 1), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cutouts", type=int, default=8)
    args = ap.parse_args()
    from tests.small_models import write_all

    work = Path(tempfile.mkdtemp(prefix="m2v-render-small-"))
    try:
        models = write_all(work / "models")
        new_plan, old_plan = plans(work, args.images)
        versions = {
            COMMIT: (old_tree(work / "old"), old_plan, ["--steps-per-image", "1"]),
            "this tree": (ROOT, new_plan, ["--cutout-method", "crops"]),
        }
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        for _ in range(args.rounds):
            for name, (tree, plan, extra) in versions.items():
                got[name].append(run(tree, plan, work / "out", models, extra, args.cutouts))
        print(f"{args.images} images, 64x64, {args.cutouts} cutouts, one step each, small models, CPU")
        for name, runs in got.items():
            per = statistics.median(r[0] for r in runs) * 1000
            wall = statistics.median(r[1] for r in runs)
            print(
                f"{name:<10} {per:7.1f} ms/image (runs: {', '.join(f'{r[0] * 1000:.1f}' for r in runs)}), process {wall:.1f} s"
            )
        old, new = (statistics.median(r[0] for r in got[n]) for n in versions)
        print(f"before_ms={old * 1000:.1f} after_ms={new * 1000:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

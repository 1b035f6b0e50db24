"""Benchmark: a whole song rendered at the ``paper`` preset on whatever device is present.

The real render (analysis, plan, the loop, the writer, resume points) with the
official architectures — the official weights when ``--models`` holds them,
else random weights of the same shapes (timing does not depend on values).
Prints steps/s, images/s, total time and peak memory. On a CPU a whole song
takes days at the paper's workload; ``--seconds N`` renders only its first N
seconds (the rate is what matters), ``--preset draft`` the preview workload.

Also prints the step's precision (``--precision``) and whether it ran captured (CUDA graphs) or eagerly.

Run: .venv/bin/python bench/render_song.py [SONG] [--lyrics FILE] [--seconds N] [--device auto] [--precision mixed]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FANTASMA = ROOT.parent / "shared" / "data" / "songs" / "fantasma"


class RandomWeights:
    """The official architectures with random weights, shaped like :class:`engine.models.factory.Models`."""

    def __init__(self, device) -> None:
        from engine.models.architectures import official_models
        from engine.models.wav2clip import Wav2CLIP

        self.vqgan, self.clip = official_models(device)
        self.audio = Wav2CLIP().eval().requires_grad_(False).to(device)
        self.warnings: list[str] = []

    def ids(self) -> dict:
        return {"random-weights": "official architectures"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("song", nargs="?", default=str(FANTASMA / "song.mp3"))
    ap.add_argument("--lyrics", default=str(FANTASMA / "lyrics.lrc"))
    ap.add_argument("--preset", default="paper", choices=("paper", "draft"))
    ap.add_argument("--seconds", type=float, help="render only the first N seconds of the song")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", help="a folder with the official model files (default: random weights)")
    ap.add_argument("--precision", default="mixed", choices=("mixed", "fp32"))
    args = ap.parse_args()

    from engine.files import write_json_atomic
    from engine.models.factory import load_models, pick_device, resolve_model_paths
    from engine.plan.build import analyze
    from engine.progress import Collect
    from engine.protocol import PRESETS
    from engine.render.jobs.loop import render
    from engine.settings import RenderSettings

    dev = pick_device(args.device)
    t0 = time.perf_counter()
    plan = analyze(args.song, preset=args.preset, lyrics_path=args.lyrics, end=args.seconds)
    t_plan = time.perf_counter() - t0
    models = load_models(resolve_model_paths(args.models), dev) if args.models else RandomWeights(dev)
    p = PRESETS[args.preset]
    settings = RenderSettings(
        width=p["size"][0],
        height=p["size"][1],
        cutouts=p["cutouts"],
        cutout_method=p["cutout_method"],
        precision=args.precision,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_json_atomic(plan, Path(tmp) / "plan.json")
        if dev.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:  # a failed capture says so here
            warnings.simplefilter("always")
            code = render(Path(tmp) / "plan.json", Path(tmp) / "out", settings, models, Collect(), device=args.device)
        wall = time.perf_counter() - t0
    assert code == 0
    t = plan["totals"]
    span = plan["song"]["span"]
    if dev.type == "cuda":
        import torch

        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB on the GPU"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB resident"
    from engine.render.step.precision import step_precision

    failed = [str(w.message) for w in caught if "CUDA graph" in str(w.message)]
    capture = "eager" if dev.type != "cuda" else ("eager (" + failed[0] + ")" if failed else "CUDA graphs")
    prec = step_precision(args.precision, dev).formats()
    print(f"device: {dev} | preset {args.preset} | song {span[1] - span[0]:.1f} s, {len(plan['segments'])} segments")
    print(f"precision {prec} | step: {capture}")
    print(f"analysis {t_plan:.1f} s; render {t['steps']} steps, {t['images']} images in {wall:.1f} s")
    print(f"steps/s={t['steps'] / wall:.3f} images/s={t['images'] / wall:.3f} peak={peak}")
    print(f"a 3-minute song at this rate: {wall * 180 / (span[1] - span[0]) / 60:.0f} min")


if __name__ == "__main__":
    main()

"""Benchmark: operators dispatched in one optimisation step, m2v against the authors' step (CPU, deterministic).

Every ATen operator call a step makes (forward, backward, Adam, clamp) is counted by a ``TorchDispatchMode``,
on the full-size architectures (ViT-B/32, the f16/16384 decoder; random weights) at a small image and few
cutouts: the count depends on the step's structure, not on tensor sizes, and a CPU run stays short. On a GPU
each operator is at least one kernel launch and its host-side dispatch; this is the count the eager step pays
for and a captured step (CUDA graph) replays without the host.

Last line: ``ops_ratio=<m2v ops / authors' ops>`` (m2v's eager step, ``--precision fp32``).

Run: .venv/bin/python bench/step_ops.py [--size 64] [--cutouts 4]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def count_ops(fn) -> Counter:
    """The ATen operators ``fn()`` dispatches, by name."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[str(func.overloadpacket.__name__)] += 1
            return func(*args, **(kwargs or {}))

    with Count() as c:
        fn()
    return c.ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cutouts", type=int, default=4)
    ap.add_argument("--top", type=int, default=8, help="most frequent operators to list per step")
    args = ap.parse_args()
    import torch
    from reference_step import reference_step

    from engine.models.architectures import official_models
    from engine.models.vqgan import use_fused_activation
    from engine.render.step.optimize import Optimizer
    from engine.settings import RenderSettings

    torch.manual_seed(0)
    dev = torch.device("cpu")
    vq, clip = official_models(dev)
    target = torch.nn.functional.normalize(torch.randn(clip.embed_dim), dim=-1)
    counts = {}
    for name, precision in (("authors", "fp32"), ("m2v", "fp32"), ("m2v-mixed", "mixed")):
        s = RenderSettings(width=args.size, height=args.size, cutouts=args.cutouts, precision=precision)
        opt = Optimizer(vq, clip, s, dev)
        opt.reset()
        use_fused_activation(name != "authors")
        if name == "authors":

            def one(i, opt=opt):
                reference_step(vq, clip, opt.z, opt.opt, [(target, 1.0)], i, args.cutouts, opt.z_min, opt.z_max)
        else:
            draws = opt.image_draws([1, 2])  # made before the steps, as a render does

            def one(i, opt=opt, draws=draws):
                opt.step([(target, 1.0)], i, draw=draws[i - 1])

        one(1)  # the first step also creates Adam's state: count the second, a steady-state step
        counts[name] = count_ops(lambda one=one: one(2))
        top = ", ".join(f"{k} {v}" for k, v in counts[name].most_common(args.top))
        print(f"{name:9s}: {sum(counts[name].values())} ops a step ({top})", flush=True)
    use_fused_activation(True)
    a, m = sum(counts["authors"].values()), sum(counts["m2v"].values())
    print(f"(CPU, {args.size}x{args.size}, {args.cutouts} latest cutouts, torch {torch.__version__})")
    print(f"ops_ratio={m / a:.3f}")


if __name__ == "__main__":
    main()

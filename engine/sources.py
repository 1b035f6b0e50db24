"""Where a render's images come from, chosen once before the loop: layout cards or the model.

Both give ``run_image(k, i) -> (rgb, loss)`` for image ``i`` of segment
``k``. The model source also carries the latent through the video: it can
``seek`` to any position by loading the nearest resume point on the chain of
segment keys and re-running the images after it.

The model source looks one image ahead (``lookahead``): an image is the
latent after its own steps, and the first forward pass of the next image's
first step decodes exactly that latent, so ``run_image`` returns the
*previous* image and a render never pays for a decode of its own per image
(only :meth:`ModelSource.decode`, before a jump or at the end).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np


class LayoutSource:
    """Titled cards per image: the cut and timing at a glance, no models, no state."""

    stateful = False
    lookahead = False

    def __init__(self, plan: dict, settings) -> None:
        self.plan, self.settings = plan, settings

    def ids(self) -> dict:
        from engine import __version__

        return {"layout": __version__}

    def seek(self, k: int, i: int, keys: list[str], state_dir: Path, warn) -> int:
        return 0

    def run_image(self, k: int, i: int) -> tuple[np.ndarray, float | None]:
        from engine.layout import layout_card

        seg = self.plan["segments"][k]
        s = self.settings
        return layout_card(seg, i, len(self.plan["segments"]), s.width, s.height), None


class ModelSource:
    """Images optimised with the models; one latent through the whole plan."""

    stateful = True
    lookahead = True

    def __init__(self, plan: dict, settings, models, song_16k: np.ndarray, device) -> None:
        from engine.guidance import Guidance
        from engine.optimize import Optimizer

        self.plan, self.settings, self.models = plan, settings, models
        self.optimizer = Optimizer(models.vqgan, models.clip, settings, device)
        self.guidance = Guidance(plan, models.clip, models.audio, song_16k, device)
        self.images = [int(s["images"]) for s in plan["segments"]]
        self.pos: tuple[int, int] | None = None
        self._schedules: dict[int, list[list[int]]] = {}

    def ids(self) -> dict:
        return self.models.ids()

    # ------------------------------------------------------------ positions

    def norm(self, k: int, i: int) -> tuple[int, int]:
        """A segment's end is the next segment's start."""
        return (k + 1, 0) if i >= self.images[k] and k + 1 < len(self.images) else (k, i)

    def at(self, k: int, i: int) -> bool:
        """True when the latent is where it is after ``i`` images of segment ``k``."""
        return self.pos is not None and self.norm(*self.pos) == self.norm(k, i)

    def _positions(self, frm: tuple[int, int], to: tuple[int, int]):
        k, i = frm
        while (k, i) < to:
            if i >= self.images[k]:
                k, i = k + 1, 0
                continue
            yield k, i
            i += 1

    def seek(self, k: int, i: int, keys: list[str], state_dir: Path, warn) -> int:
        """Put the latent where it is after ``i`` images of segment ``k``; returns how many images were re-run."""
        from engine.snapshots import latest_on_chain, list_snapshots, load_snapshot

        target = self.norm(k, i)
        if self.at(*target):
            return 0
        start = (0, 0)
        snaps = list_snapshots(state_dir)
        self.optimizer.reset(int(self.plan["segments"][0].get("take", 0)))
        while True:
            found = latest_on_chain(snaps, keys, *target)
            if found is None:
                break
            j, snap = found
            state = load_snapshot(snap.path)
            if state is not None and self.optimizer.load(state):
                start = self.norm(j, snap.images)
                break
            warn(f"{snap.path}: damaged resume point, skipped (the images after an earlier one are re-run)")
            snaps.remove(snap)
        n = 0
        for pos in self._positions(start, target):
            self.run_image(*pos)
            n += 1
        self.pos = target
        return n

    # ------------------------------------------------------------ images

    def schedule(self, k: int) -> list[list[int]]:
        if k not in self._schedules:
            from engine.schedule import image_steps

            self._schedules[k] = image_steps(self.plan["segments"][k])
        return self._schedules[k]

    def targets(self, k: int, p: int) -> list:
        s = self.settings
        out = [(self.guidance.target(k, p, s.prompt_average), 1.0)]
        if s.style:
            out.append((self.guidance.text(s.style), s.style_weight))
        return out

    def run_image(self, k: int, i: int) -> tuple[np.ndarray, float]:
        """Run image ``i`` of segment ``k``'s steps; returns the image *before* them (the previous image) and the loss."""
        from engine.optimize import sub_seed, to_rgb

        s, opt = self.settings, self.optimizer
        take = int(self.plan["segments"][k].get("take", 0))
        anchor = opt.z.detach().clone() if s.l1_weight > 0 else None
        first = None
        for step, p in enumerate(self.schedule(k)[i]):
            seed = sub_seed(s.seed, k, *([f"take{take}"] if take else []), i, step)
            out, loss = opt.step(self.targets(k, p), seed, anchor)
            if first is None:
                first = out
        self.pos = (k, i + 1)
        return to_rgb(first), loss

    def decode(self) -> np.ndarray:
        """The current image (the latent after the last image run)."""
        from engine.optimize import to_rgb

        return to_rgb(self.optimizer.decode())

    def state(self) -> dict:
        return self.optimizer.state()


def fit_size(settings, factor: int, warn):
    """Round the frame size down to the VQGAN's block size, saying so (a 17x17 request makes 16x16 frames)."""
    w, h = (
        max(factor, settings.width - settings.width % factor),
        max(factor, settings.height - settings.height % factor),
    )
    if (w, h) != (settings.width, settings.height):
        warn(
            f"--size {settings.width}x{settings.height} rounded to {w}x{h}: the VQGAN works in blocks of {factor} pixels"
        )
        settings = replace(settings, width=w, height=h)
    return settings

"""Make ``docs/composite.png``: a frame of the synthetic shot (issue 28) rendered by m2v and composited.

The shot: a white disc moving on black as the matte, a coloured-noise movie as the footage
(``tests/matte_media.py``), rendered with ``--matte --alpha matte`` by the small random-weight test models
(``tests/small_models.py``: the real architectures, so the generated part is texture, not a picture), and laid
over its footage frame as ``engine export`` and Blender's Alpha Over do. Left to right: the matte, the footage
frame, the RGBA frame m2v wrote (over a grey checkerboard: its alpha), the composite.

    .venv/bin/python docs/composite.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.analysis.synth import Section, synth_song  # noqa: E402
from engine.files import write_json_atomic  # noqa: E402
from engine.plan.build import plan_from_boundaries  # noqa: E402
from engine.progress import Collect  # noqa: E402
from engine.render.jobs.loop import render  # noqa: E402
from engine.render.sources.footage import Footage  # noqa: E402
from engine.settings import RenderSettings  # noqa: E402
from engine.store.alpha import composite  # noqa: E402
from tests.conftest import write_song  # noqa: E402
from tests.matte_media import disc_frame, noise_frame, write_png_movie  # noqa: E402
from tests.small_models import load_small, write_all  # noqa: E402

W, H, SCALE = 96, 64, 2


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        song = synth_song([Section(2, 120, "rock", "soft", 0.5)], seed=4)
        wav = write_song(d / "song.wav", song.y, song.sr)
        write_json_atomic(plan_from_boundaries(wav, [0.0, 1.0], preset="draft", min_rate=8, max_rate=8, fps=4),
                          d / "plan.json")  # fmt: skip
        write_png_movie(d / "disc.mov", [disc_frame(j, W, H) for j in range(30)])
        write_png_movie(d / "noise.mov", [noise_frame(j, W, H) for j in range(30)])
        settings = RenderSettings(width=W, height=H, cutouts=16, cutout_method="crops", lr=0.3, seed=1,
                                  footage=str(d / "noise.mov"), matte=str(d / "disc.mov"), alpha="matte")  # fmt: skip
        assert render(d / "plan.json", d / "out", settings, load_small(write_all(d / "models")), Collect()) == 0
        man = json.loads((d / "out" / "manifest.json").read_text())
        rec = man["cache"][man["segments"][0]["key"]]["frames"][2]
        rgba = np.asarray(Image.open(d / "out" / rec["file"]))
        footage = Footage(d / "noise.mov").frame(rec["footage"], W, H)
    y, x = np.mgrid[0:H, 0:W]
    checker = np.where(((x // 8 + y // 8) % 2)[..., None] == 0, 200, 150).astype(np.uint8).repeat(3, axis=2)
    panels = [np.repeat(rgba[..., 3:], 3, axis=2), footage, composite(rgba, checker), composite(rgba, footage)]
    gap = np.full((H, 2, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    out = REPO / "docs" / "composite.png"
    Image.fromarray(strip).resize((strip.shape[1] * SCALE, H * SCALE), Image.NEAREST).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()

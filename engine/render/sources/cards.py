"""The layout preview's source: one titled card per segment image, in seconds, without any model."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from engine import __version__
from engine.plan.prompts import image_prompts
from engine.protocol import image_slots


def _colour(intensity: float) -> tuple[int, int, int]:
    """Quiet segments deep blue, loud ones warm orange."""
    lo, hi = np.array([28, 38, 92]), np.array([236, 128, 40])
    c = lo + (hi - lo) * float(np.clip(intensity, 0, 1))
    return tuple(int(v) for v in c)


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:05.2f}"


def title_card(seg: dict, image_index: int, n_segments: int, width: int, height: int, prompt=None) -> np.ndarray:
    """Draw the card for one image of one segment; ``(height, width, 3)`` uint8. ``prompt``: the timed prompt that
    guides the image (``engine.plan.prompts.PromptPart``), its title where there is one."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), _colour(seg["intensity"]))
    d = ImageDraw.Draw(img)
    big = ImageFont.load_default(size=max(10, height // 9))
    small = ImageFont.load_default(size=max(8, height // 16))

    t0, t1 = image_slots(seg["start"], seg["end"], seg["images"])[image_index]
    part = next((p for p in reversed(seg["parts"]) if p["start"] <= (t0 + t1) / 2), seg["parts"][0])
    lines = [
        (f"Segment {seg['index'] + 1}/{n_segments}", big),
        (f"{_clock(seg['start'])} - {_clock(seg['end'])}", small),
        (f"image {image_index + 1}/{seg['images']}  ({seg['steps']} steps)", small),
    ]
    if prompt is not None:
        body = f"prompt: {prompt.text}"
    elif seg.get("prompt"):
        body = f"prompt: {seg['prompt']}"
    else:
        body = f"\u201c{part['text']}\u201d" if part["kind"] == "lyric" else "audio"
    for part in textwrap.wrap(body, width=max(8, width // max(6, height // 22)))[:4]:
        lines.append((part, small))
    y = height // 12
    for text, font in lines:
        d.text((width // 14, y), text, fill=(255, 255, 255), font=font)
        y += int(font.size * 1.35)
    # A bar that fills through the segment, so playback shows where the cut is.
    frac = (image_index + 1) / seg["images"]
    d.rectangle([0, height - height // 20, int(width * frac), height], fill=(255, 255, 255))
    return np.asarray(img)


class CardSource:
    """Titled cards per image: the cut and timing at a glance, no models, no state."""

    stateful = False
    lookahead = False

    def __init__(self, plan: dict, settings) -> None:
        self.plan, self.settings = plan, settings
        self.prompts = image_prompts(plan)

    def ids(self) -> dict:

        return {"layout": __version__}

    def key_content(self, k: int) -> dict:
        return {}

    def image_info(self, k: int, i: int) -> dict:
        """The timed prompt that titles the card (the manifest says which text guided each image)."""
        p = self.prompts[k][i]
        return {} if p is None else p.record()

    def finish(self, k: int, i: int, rgb: np.ndarray) -> np.ndarray:
        """A card is written as it is (a layout preview has no matte, as it has no footage)."""
        return rgb

    def close(self) -> None:
        pass

    def seek(self, k: int, i: int, keys: list[str], state_dir: Path, warn) -> int:
        return 0

    def make_image(self, k: int, i: int) -> tuple[np.ndarray, float | None]:

        seg = self.plan["segments"][k]
        s = self.settings
        return title_card(seg, i, len(self.plan["segments"]), s.width, s.height, self.prompts[k][i]), None

"""Which guidance each optimisation step of a segment follows, and which image it belongs to.

A segment's ``steps`` are spread evenly over its length (step ``j`` sits at
``start + (j + 1/2) x length / steps``) and over its ``images`` (the counts
differ by at most one): image ``i`` is the latent after its own steps. Each
step follows the guidance part that holds its time; a part too short to
hold a step's time still gets the step nearest to it, so every lyric line
guides at least one step (when there are as many steps as parts).
"""

from __future__ import annotations

from engine.protocol import steps_per_image


def step_parts(seg: dict) -> list[int]:
    """Guidance part index of each step of a segment."""
    n, start, end, parts = int(seg["steps"]), float(seg["start"]), float(seg["end"]), seg["parts"]
    length = end - start
    times = [start + (j + 0.5) * length / n for j in range(n)]
    out, p = [], 0
    for t in times:
        while p + 1 < len(parts) and t >= parts[p + 1]["start"]:
            p += 1
        out.append(p)
    if n >= len(parts):
        for p, part in enumerate(parts):
            if p in out:
                continue
            mid = (part["start"] + part["end"]) / 2
            counts = {q: out.count(q) for q in set(out)}
            # The nearest step whose own part keeps another step.
            j = min((j for j in range(n) if counts[out[j]] > 1), key=lambda j: abs(times[j] - mid))
            out[j] = p
    return out


def image_steps(seg: dict) -> list[list[int]]:
    """For each image of a segment, the guidance part of each of its steps (in order)."""
    parts = step_parts(seg)
    out, j = [], 0
    for n in steps_per_image(int(seg["steps"]), int(seg["images"])):
        out.append(parts[j : j + n])
        j += n
    return out

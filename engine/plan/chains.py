"""Independent latent chains: a song split at chosen cuts, each part run from its own initial latent.

One latent runs through the whole song by default, so a render is one
sequential job. A plan may instead be split at some of its cuts into
*chains*: a chain starts from a fresh latent, drawn from the seed and the
chain's first segment, and runs its segments in order as a whole song would.
Chains share nothing, so they can render at once on several workers
(:mod:`engine.render.jobs.ray_render`); the price is a visible fresh start at each chain
start (see the README).

Where the chains start (segment indices; segment 0 always starts one):

- ``--chains N``: at the ``N - 1`` cuts with the strongest musical change
  (:func:`cut_change`);
- ``--chain-at T1,T2,...``: at the cuts at these song seconds;
- neither: at the segments the plan marks ``"new_chain": true`` (the add-on's
  *New Chain* toggle, carried by a segment-settings file).
"""

from __future__ import annotations

import bisect

from engine.errors import InputError

#: A --chain-at time may differ from a cut's time by this much (seconds) and still name it.
CUT_TOLERANCE = 0.02
#: A beat this close to a cut (seconds) lends it its onset strength.
BEAT_WINDOW = 0.15
#: Weight of the onset at a cut against the change of intensity across it (both 0-1).
ONSET_WEIGHT = 0.25


def cut_change(plan: dict) -> list[float]:
    """The strength of the musical change at each cut, ``[change at segment 1, ..., at segment n-1]``.

    What the plan holds about a cut is the loudness-derived ``intensity`` (0-1) of the segments on
    either side and, for analysed plans, the onset strength of each beat (0-1). A cut's change is
    ``|intensity after - intensity before| + ONSET_WEIGHT x (onset strength of a beat within
    BEAT_WINDOW s of the cut, else 0)``: a jump in loudness first, a hit right on the cut second.
    """
    segs = plan["segments"]
    beats, strength = plan.get("beats") or [], plan.get("beat_strength") or []
    out = []
    for k in range(1, len(segs)):
        t = float(segs[k]["start"])
        step = abs(float(segs[k].get("intensity", 0.0)) - float(segs[k - 1].get("intensity", 0.0)))
        onset = 0.0
        j = bisect.bisect_left(beats, t)
        for b in (j - 1, j):
            if 0 <= b < len(beats) and b < len(strength) and abs(beats[b] - t) <= BEAT_WINDOW:
                onset = max(onset, float(strength[b]))
        out.append(step + ONSET_WEIGHT * onset)
    return out


def strongest_cuts(plan: dict, chains: int) -> list[int]:
    """Chain starts for ``chains`` chains: segment 0 and the ``chains - 1`` cuts of strongest change.

    Ties go to the earlier cut, so the choice is deterministic.
    """
    n = len(plan["segments"])
    if chains > n:
        raise InputError(f"--chains {chains}: the plan has only {n} segments (at most {n} chains)")
    change = cut_change(plan)
    best = sorted(range(1, n), key=lambda k: (-change[k - 1], k))[: chains - 1]
    return sorted([0, *best])


def cuts_at_times(plan: dict, times: list[float]) -> list[int]:
    """Chain starts at the cuts at ``times`` (song seconds); each must be a cut of the plan (not its start)."""
    segs = plan["segments"]
    starts = [float(s["start"]) for s in segs]
    out = {0}
    for t in times:
        k = min(range(len(starts)), key=lambda i: abs(starts[i] - t))
        if k == 0 or abs(starts[k] - t) > CUT_TOLERANCE:
            near = ", ".join(f"{x:g}" for x in starts[1:6]) + (", ..." if len(starts) > 6 else "")
            raise InputError(f"--chain-at {t:g} is not a cut of the plan (its cuts: {near or 'none'})")
        out.add(k)
    return sorted(out)


def parse_times(text: str) -> list[float]:
    """``"12.5,40"`` as song seconds, each finite and not negative."""
    import math

    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            t = float(part)
        except ValueError:
            raise InputError(f"--chain-at takes song seconds separated by commas, not {part!r}") from None
        if not math.isfinite(t) or t < 0:
            raise InputError(f"--chain-at {part}: not a time in the song")
        out.append(t)
    if not out:
        raise InputError("--chain-at is empty: give the song seconds of cuts, e.g. --chain-at 12.5,40")
    return out


def plan_marks(plan: dict) -> list[int]:
    """Chain starts the plan marks (``"new_chain": true`` on a segment), with segment 0."""
    return sorted({0} | {k for k, s in enumerate(plan["segments"]) if s.get("new_chain") is True})


def chain_starts(plan: dict, chains: int | None = None, chain_at: list[float] | None = None) -> list[int]:
    """Where the chains start: ``--chains``, else ``--chain-at``, else the plan's marks (see the module)."""
    if chains is not None and chain_at is not None:
        raise InputError("--chains and --chain-at choose the chains two ways: give one of them")
    if chains is not None:
        return strongest_cuts(plan, chains)
    if chain_at is not None:
        return cuts_at_times(plan, chain_at)
    return plan_marks(plan)


def chain_spans(starts: list[int], n: int) -> list[tuple[int, int]]:
    """Each chain's segments as ``range(a, b)`` bounds."""
    return list(zip(starts, [*starts[1:], n]))


def chain_of(starts: list[int], k: int) -> int:
    """The first segment of the chain segment ``k`` belongs to."""
    return starts[bisect.bisect_right(starts, k) - 1]

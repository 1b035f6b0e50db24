"""The panel's cost line: steps, images and render time for the markers and settings as they are now."""

from __future__ import annotations

import math

from . import adapters, flags, markers, timeline, vse
from .contract import protocol
from .errors import M2VError

_ESTIMATES: dict[tuple, str] = {}


def estimate_text(scene) -> str:
    """``N steps · ≈ T on <device>`` for the markers and settings as they are now ('' before an Analyze)."""
    st = scene.m2v
    if not st.analysis_json:
        return ""
    try:
        strip = vse.song_strip(scene, st.song_strip)
    except M2VError:
        return ""
    timing = adapters.strip_timing(scene, strip)
    v = flags.effective(st)
    problem = custom_problem(v) if st.preset == "custom" else ""
    if problem:
        return problem  # a cost the engine would then refuse (or a NaN that would raise on every redraw): say why
    frames = tuple(markers.scene_segment_frames(scene))
    # The panel redraws often: parse the stored analysis only when something it depends on changed.
    sig = (frames, tuple(sorted(v.items())), timing, st.analysis_json.__hash__(), st.intensity)
    if sig not in _ESTIMATES:
        _ESTIMATES.clear()
        _ESTIMATES[sig] = _estimate(markers.analysis_summary(scene), frames, timing, v, st.intensity)
    return _ESTIMATES[sig]


def _estimate(summary: dict | None, frames: tuple, timing: timeline.StripTiming, v: dict, intensity: str) -> str:
    if summary is None or not summary.get("levels"):
        return ""
    if summary["levels"].get("intensity", "paper") != intensity:
        # The stored curve is the other intensity's: only a new Analyze measures this one.
        return f"Analyze again to cost the {intensity} intensity"
    span = timing.visible_span()
    bounds = timeline.boundaries_from_frames(list(frames), timing, span)
    counts = protocol.segment_counts(summary["levels"], bounds, v["min_rate"], v["max_rate"], timing.fps)
    steps, images = sum(c[2] for c in counts), sum(c[3] for c in counts)
    text = f"{steps} steps, {images} images"
    cal = summary.get("calibration")
    if cal:
        sec = protocol.estimate_seconds(cal, steps, images, v["size"][0], v["size"][1], v["cutouts"])
        text += f" \u00b7 \u2248 {protocol.format_duration(sec)} on {summary.get('device') or cal.get('device')}"
    return text


def custom_problem(v: dict) -> str:
    """Why the Custom values cannot be costed, in the panel's words ('' when they can): a field that is not a
    number (NaN typed in), a value outside the engine's limits (its settings table's), a value below the one it
    must reach (min rate above max rate). The fields are the table's Custom rows that hold numbers."""
    rows = [r for r in flags.custom_rows() if r.type in ("int", "float")]
    values = []
    for row in rows:
        if row.nargs == 2:  # a pair (Size): each part under its own name
            values += [(x, part.title(), row) for x, part in zip(v[row.name], row.parts)]
        else:
            values.append((v[row.name], row.ui.label, row))
    for x, label, row in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return f"{label} is not a number: type a value to see the cost"
        lo, hi = row.lo, row.hi
        low = lo is not None and (x <= lo if row.lo_open else x < lo)
        if low or (hi is not None and x > hi):
            span = f"{lo:g}-{hi:g}" if lo is not None and hi is not None else "its range"
            return f"{label} {x:g} is outside {span}: the engine would refuse it"
    for row in rows:
        other = next((r for r in rows if r.name == row.at_least), None)
        if other is not None and v[other.name] > v[row.name]:
            return (
                f"{other.ui.label} ({v[other.name]:g}) is above {row.ui.label} ({v[row.name]:g}): "
                "the engine would refuse it"
            )
    return ""

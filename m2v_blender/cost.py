"""The panel's cost line: steps, images and render time for the markers and settings as they are now."""

from __future__ import annotations

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

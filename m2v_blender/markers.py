"""m2v's timeline markers: cuts (segment starts), lyrics, snapping cuts to beats, and each segment's settings
(prompt, weight, take) kept with the cut marker that starts it; the last analysis they are measured against."""

from __future__ import annotations

import json

from . import adapters, timeline, vse
from .contract import protocol, settings_table
from .errors import M2VError


def remember_analysis(scene, plan: dict) -> None:
    """Keep what the panel needs to re-cost moved markers and to snap cuts to beats, in the .blend."""
    a = plan["analysis"]
    summary = {
        "kind": protocol.ANALYSIS_SUMMARY_KIND,
        "version": protocol.ANALYSIS_SUMMARY_VERSION,
        "preset": a.get("preset"),
        "levels": a.get("levels"),
        "calibration": a.get("calibration"),
        "device": (plan.get("estimate") or {}).get("device"),
        "beats": plan.get("beats", []),
        "span": plan["song"]["span"],
    }
    scene.m2v.analysis_json = json.dumps(summary)
    if a.get("preset") in protocol.PRESETS:
        scene.m2v.resolved_preset = a["preset"]


def analysis_summary(scene) -> dict | None:
    text = scene.m2v.analysis_json
    if not text:
        return None
    try:
        return protocol.check_document(
            json.loads(text), protocol.ANALYSIS_SUMMARY_KIND, protocol.ANALYSIS_SUMMARY_VERSION
        )
    except ValueError:
        return None


def apply_analysis(scene, plan: dict, timing: timeline.StripTiming) -> None:
    """A new analysis on the timeline: its cuts and lyrics as markers, each segment's settings kept with its cut.

    The new cuts are named afresh (``m2v S01``... in order), so a segment's prompt, take and New Chain follow
    the cut at their time, not a name that now belongs to another cut.
    """
    sync_segments(scene)  # each item at its cut's frame as it is now, before the cuts are renamed
    apply_markers(scene, plan, timing)
    remember_analysis(scene, plan)
    sync_segments(scene, by_time=True)


def remove_m2v_markers(scene) -> None:
    for m in [m for m in scene.timeline_markers if timeline.is_m2v_marker(m.name)]:
        scene.timeline_markers.remove(m)


def place_cuts(scene, plan: dict, timing: timeline.StripTiming) -> None:
    """A cut marker (``m2v S02``, ...) at each of the plan's segment starts but the first."""
    for k, seg in enumerate(plan["segments"][1:], start=1):
        scene.timeline_markers.new(timeline.segment_marker_name(k), frame=timing.frame_at(seg["start"]))


def replace_cuts(scene, plan: dict, timing: timeline.StripTiming) -> int:
    """Make the plan's segment starts the scene's cuts: every cut marker goes (yours named "cut" too), lyric
    and other markers stay; returns how many cut markers were removed."""
    old = cut_markers(scene)
    for m in old:
        scene.timeline_markers.remove(m)
    place_cuts(scene, plan, timing)
    sync_segments(scene)
    return len(old)


def apply_markers(scene, plan: dict, timing: timeline.StripTiming) -> None:
    """Replace m2v's markers (only those) with the plan's segment starts and lyric times."""
    remove_m2v_markers(scene)
    place_cuts(scene, plan, timing)
    texts = []
    for ly in plan["lyrics"]:
        if ly.get("past_end"):
            continue
        span = plan["song"]["span"]
        if not span[0] <= ly["time"] <= span[1]:
            continue
        scene.timeline_markers.new(
            timeline.lyric_marker_name(len(texts), ly["text"]), frame=timing.frame_at(ly["time"])
        )
        texts.append(ly["text"])
    scene.m2v.lyrics_json = json.dumps(texts, ensure_ascii=False)


def cut_markers(scene) -> list:
    """The markers that count as cuts (see ``timeline.CUT_RULE``), in timeline order."""
    return sorted((m for m in scene.timeline_markers if timeline.is_cut_marker(m.name)), key=lambda m: m.frame)


def scene_segment_frames(scene) -> list[int]:
    return [m.frame for m in cut_markers(scene)]


def stored_lyrics(scene) -> list[str]:
    try:
        texts = json.loads(scene.m2v.lyrics_json or "[]")
    except ValueError:
        return []
    return [t if isinstance(t, str) else "" for t in texts] if isinstance(texts, list) else []


def lyric_marker_frames(scene) -> list[tuple[int, str]]:
    """Each lyric marker's frame and words: the marker's name is the truth (see ``timeline.lyric_text``)."""
    texts = stored_lyrics(scene)
    out = []
    for m in scene.timeline_markers:
        i = timeline.lyric_index(m.name)
        if i is None:
            continue
        text = timeline.lyric_text(m.name, texts[i] if 0 <= i < len(texts) else None)
        if text:
            out.append((m.frame, text))
    return out


def scene_lyrics(scene, timing: timeline.StripTiming) -> list[tuple[float, str]]:
    """Each lyric marker's time (song seconds, 0.1 ms) and words."""
    return [(round(timing.time_at(frame), 4), text) for frame, text in lyric_marker_frames(scene)]


def sync_segments(scene, by_time: bool = False) -> None:
    """Make ``scene.m2v.segments`` one item per segment, each keeping its settings with its cut marker.

    An item belongs to the cut marker of its name (the first segment, which no marker starts, has the
    name ""); where several markers share a name, to the one nearest its last known frame. Moving
    markers keeps each segment's prompt and take with its segment; a deleted cut drops its item.
    ``by_time`` (after a new Analyze, which names its cuts afresh): an item belongs to the cut at its frame
    (within a frame), whatever that cut is called; an item whose time no cut keeps is dropped.
    """
    items = scene.m2v.segments
    cuts = [("", None)] + [(m.name, m.frame) for m in cut_markers(scene)]
    if [(it.cut, it.frame) for it in items] == [(n, f or 0) for n, f in cuts]:
        return  # the timer's usual case: no cut added, moved, renamed or deleted
    names = [r.name for r in _segment_rows()]
    old = [(it.cut, it.frame, *(getattr(it, n) for n in names)) for it in items]
    taken = set()
    matched = []
    for name, frame in cuts:
        if by_time and frame is not None:
            cands = [j for j, o in enumerate(old) if o[0] and j not in taken and abs(o[1] - frame) <= 1]
            j = min(cands, key=lambda j: (abs(old[j][1] - frame), old[j][0] != name), default=None)
        else:
            cands = [j for j, o in enumerate(old) if o[0] == name and j not in taken]
            j = min(cands, key=lambda j: abs(old[j][1] - (frame or 0)), default=None)
        if j is not None:
            taken.add(j)
        matched.append((name, frame, old[j] if j is not None else None))
    fresh = tuple(r.ui.default if r.ui.default is not None else r.default for r in _segment_rows())
    want = [(n, f or 0, *(o[2:] if o else fresh)) for n, f, o in matched]
    if want == old:
        return
    items.clear()
    for name, frame, *values in want:
        it = items.add()
        it.cut, it.frame = name, frame
        for n, v in zip(names, values):
            setattr(it, n, v)


def _segment_rows() -> list:
    """The settings table's ``segment`` rows (each an item property of ``scene.m2v.segments``)."""
    return settings_table.in_scope("segment")


def segment_settings_doc(scene, timing: timeline.StripTiming, bounds: list[float]) -> dict:
    """The editor's prompts, takes and chain starts for the engine (``--segment-settings``), by segment start time."""
    sync_segments(scene)
    rows = _segment_rows()
    entries = []
    for it in scene.m2v.segments:
        values = {r.name: getattr(it, r.name) for r in rows}
        values["prompt"] = values["prompt"].strip() or None
        values["new_chain"] = bool(values["new_chain"] and it.cut)  # the first segment always starts a chain
        # A weight alone changes nothing: it weighs the segment's prompt.
        if all(values[r.name] == r.default for r in rows if r.name != "prompt_weight"):
            continue
        start = bounds[0] if not it.cut else round(timing.time_at(it.frame), 4)
        if bounds[0] <= start < bounds[-1]:
            # A value at its default is written where the plan holds it anyway (the rows that enter the key).
            entry = {r.name: values[r.name] for r in rows if r.per_segment or values[r.name] != r.default}
            entries.append({"start": start, **entry})
    return {"kind": protocol.SEGMENT_SETTINGS_KIND, "version": protocol.SEGMENT_SETTINGS_VERSION, "segments": entries}


def beat_snapper(scene):
    """``frame -> frame`` on the nearest beat of the last analysis (identity before an analysis)."""
    summary = analysis_summary(scene)
    try:
        timing = adapters.strip_timing(scene, vse.song_strip(scene, scene.m2v.song_strip))
    except M2VError:
        timing = None
    if summary is None or not summary.get("beats") or timing is None:
        return lambda frame: frame
    beats = summary["beats"]
    return lambda frame: timing.frame_at(timeline.snap_to_beat(timing.time_at(frame), beats))


def add_cuts(scene, frames, snap: bool) -> list[str]:
    """Cut markers (``m2v S..``) at these frames, moved to the nearest beat of the last analysis when ``snap``;
    a frame that already holds a cut gets none. The one way m2v adds cuts (Add Cut at Playhead, Cuts from Strips).

    Returns the new markers' names, in the order of ``frames``.
    """
    to_beat = beat_snapper(scene) if snap else (lambda frame: frame)
    taken = {m.frame for m in cut_markers(scene)}
    names = []
    for frame in frames:
        frame = to_beat(int(frame))
        if frame in taken:
            continue
        taken.add(frame)
        marker = scene.timeline_markers.new(
            timeline.next_cut_name([m.name for m in scene.timeline_markers]), frame=frame
        )
        names.append(marker.name)
    if names:
        sync_segments(scene)
    return names


def snap_cuts(scene) -> int:
    """Move every cut to the nearest beat of the last analysis (within half a beat); returns how many moved."""
    snap = beat_snapper(scene)
    moved = 0
    for m in cut_markers(scene):
        frame = snap(m.frame)
        if frame != m.frame:
            m.frame = frame
            moved += 1
    return moved

"""What m2v does on the timeline: run engine jobs and turn their results into markers and strips.

Every function here runs on Blender's main thread (an operator, a timer, or
the background-mode loop); the engine itself runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import bpy

from . import preferences, timeline, vse
from .contract import protocol, read_document
from .engine_client import EngineJob
from .errors import M2VError

#: The running job per scene name: the one truth for "m2v is working on this scene".
JOBS: dict[str, EngineJob] = {}
_HANDLERS: dict[str, object] = {}


def is_running(scene) -> bool:
    job = JOBS.get(scene.name)
    return job is not None and not job.finished


def output_dir(scene) -> Path:
    st = scene.m2v
    out = Path(bpy.path.abspath(st.output_dir or "//m2v/"))
    if not out.is_absolute():
        raise M2VError("save the .blend file first, or choose an absolute Output folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def strip_timing(scene, strip) -> timeline.StripTiming:
    """Where the strip's song sits: its start, less any content slip (animation_offset_start), plus Sound Offset."""
    fps = scene_fps(scene)
    return timeline.StripTiming(
        # Measured in a mixdown: slipping the content by N frames plays file time 0 N frames earlier.
        frame_start=float(strip.frame_start) - float(getattr(strip, "animation_offset_start", 0.0) or 0.0),
        frame_final_start=float(strip.frame_final_start),
        frame_final_end=float(strip.frame_final_end),
        fps=fps,
        sound_offset=float(getattr(strip, "sound_offset", 0.0) or 0.0),
    )


def song_path(strip) -> Path:
    path = Path(bpy.path.abspath(strip.sound.filepath))
    if not path.exists():
        raise M2VError(f"the song file of strip {strip.name!r} is missing: {path}")
    return path


def _start(scene, kind: str, commands: list[list[str]], handler) -> EngineJob:
    if is_running(scene):
        raise M2VError("m2v is already working on this scene: wait, or press Cancel")
    python = preferences.engine_python()
    if not python.exists():
        raise M2VError(
            f"the m2v engine is not installed ({python} is missing): open Preferences > Add-ons > m2v and press Install Engine"
        )
    return track(scene, kind, EngineJob(python, commands, output_dir(scene) / protocol.LOG_FILE).start(), handler)


def track(scene, kind: str, job: EngineJob, handler) -> EngineJob:
    """Make ``job`` the scene's running job: the pump step feeds its events to ``handler``."""
    if is_running(scene):
        job.kill()
        raise M2VError("m2v is already working on this scene: wait, or press Cancel")
    JOBS[scene.name] = job
    _HANDLERS[scene.name] = handler
    st = scene.m2v
    st.job_kind, st.progress, st.status = kind, 0.0, f"{kind}: starting..."
    return job


def pump(scene) -> bool:
    """Read what the engine printed and update the scene; True while the job runs."""
    job = JOBS.get(scene.name)
    if job is None:
        return False
    events = job.pump()
    handler = _HANDLERS.get(scene.name)
    for ev in events:
        handler(scene, job, ev)
    if job.finished:
        del JOBS[scene.name]
        _HANDLERS.pop(scene.name, None)
        return False
    return True


def run_to_end(scene, timeout: float | None = None) -> EngineJob:
    """Background mode (no timers): loop on the pump step until the job ends."""
    import time

    job = JOBS[scene.name]
    t0 = time.monotonic()
    while pump(scene):
        if timeout is not None and time.monotonic() - t0 > timeout:
            job.kill()
        time.sleep(0.05)
    return job


def _undo_push(message: str) -> None:
    """One undo step for what a timer-driven job changed (operators in background mode get theirs)."""
    if bpy.app.background:
        return
    # A timer may run where the undo system has no context; the edit itself must still land.
    with contextlib.suppress(RuntimeError):
        bpy.ops.ed.undo_push(message=message)


def _tag_redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []) or []:
        for area in window.screen.areas:
            if area.type in ("SEQUENCE_EDITOR", "PREFERENCES"):
                area.tag_redraw()


def _timer_for(scene_name: str):
    def tick():
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            job = JOBS.pop(scene_name, None)
            if job:
                job.kill()
            return None
        alive = pump(scene)
        _tag_redraw()
        return 0.2 if alive else None

    return tick


def follow(scene) -> None:
    """With a window, a timer pumps the job; in background mode the caller loops instead."""
    if not bpy.app.background:
        bpy.app.timers.register(_timer_for(scene.name), first_interval=0.1)


# ---------------------------------------------------------------- analyze


def effective(st) -> dict:
    """The values a render will use: the preset's (Auto: what the last Analyze chose), or the Custom fields."""
    if st.preset == "custom":
        return {
            "granularity": st.granularity,
            "min_rate": st.min_rate,
            "max_rate": st.max_rate,
            "size": (st.width, st.height),
            "cutouts": st.cutouts,
            "cut_method": st.cut_method,
        }
    return dict(protocol.PRESETS[preset_in_use(st)])


def preset_in_use(st) -> str:
    """The named preset a render uses (not for Custom): Auto means what the last Analyze chose."""
    return st.preset if st.preset != "auto" else (st.resolved_preset or "draft")


def preset_args(st, fps: float | None, rates: bool, look: bool) -> list[str]:
    """Engine flags for the chosen preset: its name, or (Custom) every value the editor set."""
    if st.preset != "custom":
        out = ["--preset", st.preset]
    else:
        out = ["--preset", "draft"]
        if rates:
            out += ["--min-rate", repr(float(st.min_rate)), "--max-rate", repr(float(st.max_rate))]
        if look:
            out += [
                "--size",
                str(st.width),
                str(st.height),
                "--cutouts",
                str(st.cutouts),
                "--cut-method",
                st.cut_method,
            ]
    if rates:
        out += ["--intensity", st.intensity]
    if fps is not None:
        out += ["--fps", repr(float(fps))]
    return out


def start_analyze(scene) -> EngineJob:
    st = scene.m2v
    strip = vse.song_strip(scene, st.song_strip)
    timing = strip_timing(scene, strip)
    t0, t1 = timing.visible_span()
    out = output_dir(scene)
    args = [
        "analyze",
        str(song_path(strip)),
        "--start",
        f"{t0:.4f}",
        "--end",
        f"{t1:.4f}",
        "--min-length",
        repr(float(st.min_length)),
        "--target-length",
        repr(float(st.target_length)),
        "--device",
        preferences.device(),
        *preset_args(st, scene_fps(scene), rates=True, look=False),
        "-o",
        str(out / "analysis.json"),
    ]
    if st.preset == "custom":
        args += ["--granularity", st.granularity]
    if st.lyrics_file:
        lyr = Path(bpy.path.abspath(st.lyrics_file))
        if not lyr.exists():
            raise M2VError(f"the lyrics file is missing: {lyr}")
        args += ["--lyrics", str(lyr)]
    ctx = {"strip": strip.name, "timing": timing}

    def handle(scene, job, ev):
        if ev["event"] == protocol.CLIENT_EXIT:
            if ev["code"] == protocol.EXIT_OK:
                plan = read_document(out / "analysis.json", protocol.PLAN_KIND, protocol.PLAN_VERSION)
                apply_markers(scene, plan, ctx["timing"])
                remember_analysis(scene, plan)
                sync_segments(scene)
                scene.m2v.status = f"analysed: {len(scene_segment_frames(scene)) + 1} segments"
                _undo_push("m2v Analyze")
            else:
                scene.m2v.status = f"analysis failed: {job.error}"

    return _start(scene, "analyze", [args], handle)


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
    timing = strip_timing(scene, strip)
    v = effective(st)
    frames = tuple(scene_segment_frames(scene))
    # The panel redraws often: parse the stored analysis only when something it depends on changed.
    sig = (frames, tuple(sorted(v.items())), timing, st.analysis_json.__hash__(), st.intensity)
    if sig not in _ESTIMATES:
        _ESTIMATES.clear()
        _ESTIMATES[sig] = _estimate(analysis_summary(scene), frames, timing, v, st.intensity)
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


def remove_m2v_markers(scene) -> None:
    for m in [m for m in scene.timeline_markers if timeline.is_m2v_marker(m.name)]:
        scene.timeline_markers.remove(m)


def apply_markers(scene, plan: dict, timing: timeline.StripTiming) -> None:
    """Replace m2v's markers (only those) with the plan's segment starts and lyric times."""
    remove_m2v_markers(scene)
    for k, seg in enumerate(plan["segments"][1:], start=1):
        scene.timeline_markers.new(timeline.segment_marker_name(k), frame=timing.frame_at(seg["start"]))
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


def scene_lyrics(scene, timing: timeline.StripTiming) -> list[tuple[float, str]]:
    """Each lyric marker's time and words: the marker's name is the truth (see ``timeline.lyric_text``)."""
    texts = stored_lyrics(scene)
    out = []
    for m in scene.timeline_markers:
        i = timeline.lyric_index(m.name)
        if i is None:
            continue
        text = timeline.lyric_text(m.name, texts[i] if 0 <= i < len(texts) else None)
        if text:
            out.append((round(timing.time_at(m.frame), 4), text))
    return out


# ---------------------------------------------------------------- segments: cuts, prompts, takes


def sync_segments(scene) -> None:
    """Make ``scene.m2v.segments`` one item per segment, each keeping its settings with its cut marker.

    An item belongs to the cut marker of its name (the first segment, which no marker starts, has the
    name ""); where several markers share a name, to the one nearest its last known frame. Moving
    markers keeps each segment's prompt and take with its segment; a deleted cut drops its item.
    """
    items = scene.m2v.segments
    cuts = [("", None)] + [(m.name, m.frame) for m in cut_markers(scene)]
    if [(it.cut, it.frame) for it in items] == [(n, f or 0) for n, f in cuts]:
        return  # the timer's usual case: no cut added, moved, renamed or deleted
    old = [(it.cut, it.frame, it.prompt, it.prompt_weight, it.take, it.new_chain) for it in items]
    taken = set()
    matched = []
    for name, frame in cuts:
        cands = [j for j, o in enumerate(old) if o[0] == name and j not in taken]
        j = min(cands, key=lambda j: abs(old[j][1] - (frame or 0)), default=None)
        if j is not None:
            taken.add(j)
        matched.append((name, frame, old[j] if j is not None else None))
    want = [(n, f or 0, *(o[2:] if o else ("", 1.0, 0, False))) for n, f, o in matched]
    if want == old:
        return
    items.clear()
    for name, frame, prompt, weight, take, new_chain in want:
        it = items.add()
        it.cut, it.frame, it.prompt, it.prompt_weight, it.take = name, frame, prompt, weight, take
        it.new_chain = new_chain


def segment_settings_doc(scene, timing: timeline.StripTiming, bounds: list[float]) -> dict:
    """The editor's prompts, takes and chain starts for the engine (``--segment-settings``), by segment start."""
    sync_segments(scene)
    entries = []
    for it in scene.m2v.segments:
        chain = bool(it.new_chain and it.cut)
        if not (it.prompt.strip() or it.take or chain):
            continue
        start = bounds[0] if not it.cut else round(timing.time_at(it.frame), 4)
        if bounds[0] <= start < bounds[-1]:
            prompt = it.prompt.strip() or None
            entries.append({"start": start, "prompt": prompt, "prompt_weight": it.prompt_weight, "take": it.take})
            if chain:
                entries[-1]["new_chain"] = True
    return {"kind": protocol.SEGMENT_SETTINGS_KIND, "version": protocol.SEGMENT_SETTINGS_VERSION, "segments": entries}


def beat_snapper(scene):
    """``frame -> frame`` on the nearest beat of the last analysis (identity before an analysis)."""
    summary = analysis_summary(scene)
    try:
        timing = strip_timing(scene, vse.song_strip(scene, scene.m2v.song_strip))
    except M2VError:
        timing = None
    if summary is None or not summary.get("beats") or timing is None:
        return lambda frame: frame
    beats = summary["beats"]
    return lambda frame: timing.frame_at(timeline.snap_to_beat(timing.time_at(frame), beats))


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


# ---------------------------------------------------------------- render


def start_render(scene, layout: bool = False, extra_model_args: list[str] | None = None) -> EngineJob:
    """Plan from the markers as they are now, then render; strips appear segment by segment."""
    st = scene.m2v
    strip = vse.song_strip(scene, st.song_strip)
    timing = strip_timing(scene, strip)
    span = timing.visible_span()
    out = output_dir(scene)
    if st.snap_cuts:
        snap_cuts(scene)
    bounds = timeline.boundaries_from_frames(scene_segment_frames(scene), timing, span)
    lyr = out / "markers_lyrics.csv"
    entries = scene_lyrics(scene, timing)
    settings_path = out / "segment_settings.json"
    settings_path.write_text(json.dumps(segment_settings_doc(scene, timing, bounds), indent=1), encoding="utf-8")
    plan_args = [
        "plan",
        str(song_path(strip)),
        "--boundaries",
        ",".join(f"{b:.4f}" for b in bounds),
        "--device",
        preferences.device(),
        *preset_args(st, scene_fps(scene), rates=True, look=False),
        "--segment-settings",
        str(settings_path),
        "-o",
        str(out / "plan.json"),
    ]
    if entries:
        lyr.write_text(timeline.lyrics_csv(entries), encoding="utf-8")
        plan_args += ["--lyrics", str(lyr)]
    frames_dir = out / ("layout" if layout else "frames")
    render_args = [
        "render",
        str(out / "plan.json"),
        "--out",
        str(frames_dir),
        *preset_args(st, None, rates=False, look=True),
        "--seed",
        str(st.seed),
        "--device",
        preferences.device(),
        *("--precision", st.precision),  # setting: precision (issue 19)
    ]
    if layout:
        render_args.append("--layout")
    else:
        render_args += ["--models", str(preferences.models_dir())] + list(extra_model_args or [])
        render_args += preferences.ray_args()
        if st.style:
            render_args += ["--style", st.style]
    from . import footage

    # Footage and motion flags; generated strips go above the footage strip.
    more, floor = footage.render_args(scene, timing) if not layout else ([], 0)
    render_args += more
    state = {"keys": set(), "timing": timing, "channel": floor, "chains": {}}

    def handle(scene, job, ev):
        kind = ev["event"]
        stt = scene.m2v
        if kind == "start":
            stt.status = f"rendering {ev['total']} images..."
        elif kind == "image":
            stt.progress = ev["done"] / max(1, ev["total"])
            eta = ev["eta_s"]
            stt.status = f"{ev['done']}/{ev['total']} images" + (f", about {eta:.0f} s left" if eta else "")
            stt.status += chains_in_flight(state["chains"], ev["segment"])
        elif kind in ("chain_start", "chain_end", "chain_retry"):
            note_chain(state["chains"], ev)
        elif kind == "segment_end":
            state["keys"].add(ev["key"])
            place_segment(scene, state["timing"], ev, state["channel"])
        elif kind == protocol.CLIENT_EXIT:
            if ev["code"] == protocol.EXIT_OK:
                drop_stale_strips(scene, state["keys"])
                stt.status = "render finished"
                stt.progress = 1.0
            elif ev["code"] == protocol.EXIT_CANCELLED:
                stt.status = "render cancelled: finished frames are kept; Render again resumes"
            else:
                stt.status = f"render failed: {job.error}"
            _undo_push("m2v Render")

    return _start(scene, "render", [plan_args, render_args], handle)


def note_chain(chains: dict, ev: dict) -> None:
    """Keep the chains a Ray render has in flight (``--ray`` events): first segment -> its segments."""
    if ev["event"] == "chain_start":
        chains[ev["chain"]] = ev["segments"]
    elif ev["event"] == "chain_end":
        chains.pop(ev["chain"], None)


def chains_in_flight(chains: dict, segment: int) -> str:
    """The status's note on the chains in flight, e.g. ``; chains in flight: 1, 3 (on Ray)``."""
    if not chains:
        return ""
    names = ", ".join(str(c + 1) for c in sorted(chains))
    return f"; chains in flight: {names} (at segment {segment + 1})"


def place_segment(scene, timing: timeline.StripTiming, ev: dict, min_channel: int = 0) -> None:
    """An image strip for a finished segment (a ``segment_end`` event), from its marker's frame to the next one's.

    ``min_channel``: the lowest channel allowed (above the footage strip the frames follow)."""
    start, end = timing.frame_at(ev["start"]), timing.frame_at(ev["end"])
    if end <= start:
        return
    key = ev["key"]
    mine = vse.m2v_strips(scene)
    if any(s.get(vse.STRIP_TAG) == key and s.frame_final_start == start and s.frame_final_end == end for s in mine):
        return  # reused segment, strip already in place
    vse.remove_strips(scene, [s for s in mine if s.frame_final_start < end and s.frame_final_end > start])
    files = timeline.strip_files(ev, timing, start, end)
    st = scene.m2v
    strip = vse.top_strips(scene).new_image(
        name=f"m2v S{ev['segment'] + 1:02d}",
        filepath=str(Path(ev["dir"]) / files[0]),
        channel=vse.free_channel(scene, max(st.channel, min_channel), start, end),
        frame_start=start,
        fit_method="FIT",
    )
    for name in files[1:]:
        strip.elements.append(name)
    strip.frame_final_duration = end - start
    strip[vse.STRIP_TAG] = key
    strip.blend_type = st.blend_type
    strip.blend_alpha = st.opacity


def drop_stale_strips(scene, live_keys: set[str]) -> None:
    vse.remove_strips(scene, [s for s in vse.m2v_strips(scene) if s.get(vse.STRIP_TAG) not in live_keys])


def cancel(scene) -> bool:
    job = JOBS.get(scene.name)
    if job is None:
        return False
    job.cancel()
    scene.m2v.status = "cancelling after the current image..."
    return True


def stop_all_jobs(*_args) -> None:
    for job in list(JOBS.values()):
        job.kill(grace=3.0)
    JOBS.clear()
    _HANDLERS.clear()

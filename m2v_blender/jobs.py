"""The Analyze and Render jobs: the engine commands they run and what their events change on the timeline."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from . import adapters, directing, flags, footage_strip, markers, preferences, registry, timeline, vse
from .contract import protocol, read_document
from .engine_client import EngineJob
from .errors import M2VError
from .outputs import write_text_replacing


def start_analyze(scene) -> EngineJob:
    st = scene.m2v
    registry.refuse_if_running(scene)
    strip = vse.song_strip(scene, st.song_strip)
    timing = adapters.strip_timing(scene, strip)
    t0, t1 = timing.visible_span()
    out = adapters.output_dir(scene)
    args = [
        "analyze",
        str(adapters.song_path(strip)),
        *flags.flag("start", round(t0, 4)),
        *flags.flag("end", round(t1, 4)),
        *flags.preset_args(st, adapters.scene_fps(scene)),
        *flags.setting_args(st, "analyze", flags.conditions(st), _preference_values()),
        *flags.flag("output", out / "analysis.json"),
    ]
    if st.lyrics_file:
        lyr = Path(bpy.path.abspath(st.lyrics_file))
        if not lyr.exists():
            raise M2VError(f"the lyrics file is missing: {lyr}")
        args += flags.flag("lyrics", lyr)
    ctx = {"strip": strip.name, "timing": timing}

    def handle(scene, job, ev):
        if ev["event"] == protocol.CLIENT_EXIT:
            if ev["code"] == protocol.EXIT_OK:
                plan = read_document(out / "analysis.json", protocol.PLAN_KIND, protocol.PLAN_VERSION)
                markers.apply_analysis(scene, plan, ctx["timing"])
                scene.m2v.status = f"analysed: {len(markers.scene_segment_frames(scene)) + 1} segments"
                registry.undo_push("m2v Analyze")
            else:
                scene.m2v.status = f"analysis failed: {job.error}"

    return registry.start(scene, "analyze", [args], handle)


def start_render(scene, preview: bool = False, extra_model_args: list[str] | None = None) -> EngineJob:
    """Plan from the markers (and the Prompt Channel's text strips) as they are now, then render (``preview``: the
    layout preview's title cards) with each image's value of every keyframed setting; strips appear segment by
    segment."""
    st = scene.m2v
    # Refused before anything changes: no cut snapped, no file of the running job rewritten under it.
    registry.refuse_if_running(scene)
    strip = vse.song_strip(scene, st.song_strip)
    timing = adapters.strip_timing(scene, strip)
    span = timing.visible_span()
    out = adapters.output_dir(scene)
    if st.snap_cuts:
        markers.snap_cuts(scene)
    bounds = timeline.boundaries_from_frames(markers.scene_segment_frames(scene), timing, span)
    lyr = out / "markers_lyrics.csv"
    entries = markers.scene_lyrics(scene, timing)
    settings_path = out / "segment_settings.json"
    write_text_replacing(settings_path, json.dumps(markers.segment_settings_doc(scene, timing, bounds), indent=1))
    plan_args = [
        "plan",
        str(adapters.song_path(strip)),
        *flags.flag("boundaries", ",".join(f"{b:.4f}" for b in bounds)),
        *flags.preset_args(st, adapters.scene_fps(scene)),
        *flags.setting_args(st, "plan", flags.conditions(st), _preference_values()),
        *flags.flag("segment_settings", settings_path),
        *flags.flag("output", out / "plan.json"),
    ]
    if entries:
        write_text_replacing(lyr, timeline.lyrics_csv(entries))
        plan_args += flags.flag("lyrics", lyr)
    prompts = directing.write_prompts_file(scene, timing, out / "prompts.json")
    if prompts is not None:
        plan_args += flags.flag("prompts", prompts)
    # Footage, matte and motion flags; generated strips go above the footage and matte strips, laid with Alpha Over
    # where a matte gives them alpha (unless the editor chose another blend than Replace).
    more, floor = footage_strip.render_args(scene, timing) if not preview else ([], 0)
    footage, matte = (bool(st.footage_strip), bool(st.matte_strip)) if not preview else (False, False)
    render_args = _render_args(st, out / ("layout" if preview else "frames"), preview, extra_model_args, footage, matte)
    blend = "ALPHA_OVER" if matte and st.blend_type == "REPLACE" else st.blend_type
    handle = _render_handler({"keys": set(), "timing": timing, "channel": floor, "chains": {}, "blend": blend})
    # Keyframed settings: evaluated at each image's first frame once the plan says where the images are (the cards
    # of a layout preview use none of them).
    names = directing.animated_names(st, flags.conditions(st, preview, footage, matte))
    before = None if preview else directing.curves_before_render(scene.name, timing, out, names)
    return registry.start(scene, "render", [plan_args, render_args + more], handle, before)


def _preference_values() -> dict:
    """The values of the settings the preferences own (the device, with its environment override)."""
    return {"device": preferences.device()}


def _render_args(
    st, frames_dir: Path, preview: bool, extra_model_args, with_footage: bool, with_matte: bool = False
) -> list[str]:
    """The ``render`` command: the preset, the settings the editor set, the models (not for a layout preview)."""
    args = ["render", str(frames_dir.parent / "plan.json"), *flags.flag("out", frames_dir)]
    args += flags.preset_args(st, None)
    held = flags.conditions(st, preview, with_footage, with_matte)
    args += flags.setting_args(st, "render", held, _preference_values())
    if preview:
        return args + flags.flag("layout", True)
    models = flags.flag("models", preferences.models_dir())
    return args + models + list(extra_model_args or []) + preferences.ray_args()


def _render_handler(state: dict):
    """What the render's events do: progress in the panel, a strip per finished segment, stale strips gone."""

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
            adapters.place_segment(scene, state["timing"], ev, state["channel"], state.get("blend"))
        elif kind == protocol.CLIENT_EXIT:
            if ev["code"] == protocol.EXIT_OK:
                adapters.drop_stale_strips(scene, state["keys"])
                stt.status = "render finished"
                stt.progress = 1.0
            elif ev["code"] == protocol.EXIT_CANCELLED:
                stt.status = "render cancelled: finished frames are kept; Render again resumes"
            else:
                stt.status = f"render failed: {job.error}"
            registry.undo_push("m2v Render")

    return handle


def note_chain(chains: dict, ev: dict) -> None:
    """Keep the chains a Ray render has in flight (``--ray`` events): first segment -> its segments."""
    if ev["event"] == "chain_start":
        chains[ev["chain"]] = ev["segments"]
    elif ev["event"] == "chain_end":
        chains.pop(ev["chain"], None)


def chains_in_flight(chains: dict, segment: int) -> str:
    """The status's note on the chains in flight, e.g. ``; chains in flight: 1, 3 (at segment 4)``."""
    if not chains:
        return ""
    names = ", ".join(str(c + 1) for c in sorted(chains))
    return f"; chains in flight: {names} (at segment {segment + 1})"

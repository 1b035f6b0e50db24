"""Directing from the timeline, Blender's side: text strips on the Prompt Channel as prompts, Lyrics -> Text Strips,
Cuts from Strips, animated settings evaluated per image (4.2 ``action.fcurves`` and 5.x slotted actions), and Bake
Music to F-Curve. The arithmetic is in ``direction`` (plain Python)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from . import adapters, direction, flags, markers, registry, timeline, vse
from .contract import protocol, read_document, settings_table
from .errors import M2VError
from .outputs import write_text_replacing

#: The prompt weight of a text strip (a property registered on text strips, shown on the strip's m2v panel).
WEIGHT_PROP = "m2v_prompt_weight"
#: Custom property on every text strip Lyrics -> Text Strips made (its value: the words it was made with); only
#: these are ever replaced or removed by m2v.
LYRIC_STRIP_TAG = "m2v_lyric"
#: Settings an editor can keyframe on the scene (and bake music onto): the settings table's ``animatable`` rows the
#: add-on shows on ``scene.m2v``.
ANIMATABLE = tuple(
    r.name for r in settings_table.SETTINGS if r.animatable and r.ui is not None and r.ui.owner == "scene"
)


def text_strip_type():
    """The text strip's RNA type: ``TextStrip`` (5.x) or ``TextSequence`` (4.2)."""
    return getattr(bpy.types, "TextStrip", None) or bpy.types.TextSequence


def _weight(strip) -> float:
    return float(getattr(strip, WEIGHT_PROP, 1.0))


def channel_strips(scene, channel: int) -> list:
    """The top-level strips on a timeline channel (strips inside meta strips have channels of their own)."""
    sed = scene.sequence_editor
    if sed is None:
        return []
    return [s for s in vse.top_strips(scene) if s.channel == channel]


def prompt_text_strips(scene, channel: int) -> list:
    """The text strips that are prompts: on the Prompt Channel and not muted (a muted strip is not shown)."""
    return [s for s in channel_strips(scene, channel) if s.type == "TEXT" and not s.mute]


def scene_prompt_parts(scene, timing: timeline.StripTiming) -> list[dict]:
    """The prompt parts of the Prompt Channel's text strips (none while the channel is off)."""
    st = scene.m2v
    if not st.use_prompt_strips:
        return []
    spans = [
        direction.StripSpan(int(s.frame_final_start), int(s.frame_final_end), s.text, _weight(s), s.name)
        for s in prompt_text_strips(scene, st.prompt_channel)
    ]
    return direction.prompt_parts(spans, timing, timing.visible_span())


def _remove_own(path: Path) -> None:
    """Remove m2v's own file (or a link in its place, never what it points to); anything else stays."""
    if path.is_symlink() or path.is_file():
        path.unlink()


def write_prompts_file(scene, timing: timeline.StripTiming, path: Path) -> Path | None:
    """The ``--prompts`` file of the scene's text strips (``None``, and no file, when there are none)."""
    parts = scene_prompt_parts(scene, timing)
    if not parts:
        _remove_own(path)  # an earlier render's file says nothing about this one
        return None
    write_text_replacing(path, json.dumps(direction.prompts_document(parts), indent=1, ensure_ascii=False))
    return path


# ---------------------------------------------------------------- Lyrics -> Text Strips


def _new_text_strip(scene, name: str, channel: int, start: int, end: int):
    coll = vse.top_strips(scene)
    try:
        return coll.new_effect(name=name, type="TEXT", channel=channel, frame_start=start, length=end - start)
    except TypeError:  # Blender 4.2 takes frame_end
        return coll.new_effect(name=name, type="TEXT", channel=channel, frame_start=start, frame_end=end)


def lyrics_to_strips(scene, timing: timeline.StripTiming, keep_markers: bool = False) -> list:
    """Turn the lyric markers into text strips on the Prompt Channel; returns the new strips.

    Each strip spans what its lyric guides (to the next lyric or the next cut, ``direction.lyric_strip_spans``),
    so the picture does not change. Strips an earlier run made (tagged ``m2v_lyric``) are replaced; any other
    strip where a new one would go stops the whole operation before anything changes (it is the editor's). The
    lyric markers are removed unless ``keep_markers``: the strips are the lyrics now.
    """
    st = scene.m2v
    lyrics = markers.lyric_marker_frames(scene)
    if not lyrics:
        raise M2VError("there are no lyric markers (m2v \u266a...): Analyze with a lyrics file, or Add Lyric first")
    first, last = int(timing.frame_final_start), int(timing.frame_final_end)
    spans = direction.lyric_strip_spans(lyrics, markers.scene_segment_frames(scene), first, last)
    if not spans:
        raise M2VError("no lyric marker lies where the song is heard")
    channel = st.prompt_channel
    ours = [s for s in vse.all_strips(scene) if s.get(LYRIC_STRIP_TAG) is not None]
    for s in channel_strips(scene, channel):
        if s.get(LYRIC_STRIP_TAG) is not None:
            continue
        for a, b, _ in spans:
            if s.frame_final_start < b and s.frame_final_end > a:
                raise M2VError(
                    f"the strip {s.name!r} on channel {channel} is where a lyric strip would go (frames {a}-{b}): "
                    "choose another Prompt Channel, or move it"
                )
    _remove(scene, ours)
    made = []
    for k, (a, b, text) in enumerate(spans):
        strip = _new_text_strip(scene, f"m2v \u266a{k + 1:02d}", channel, a, b)
        strip.text = text
        strip.location = (0.5, 0.08)  # a caption's place, should the editor show them
        strip[LYRIC_STRIP_TAG] = text
        made.append(strip)
    if not keep_markers:  # only those that became strips: a marker where the song is not heard stays
        done = {a for a, _, _ in spans}
        for m in [m for m in scene.timeline_markers if timeline.lyric_index(m.name) is not None and m.frame in done]:
            scene.timeline_markers.remove(m)
    st.use_prompt_strips = True
    return made


def _remove(scene, strips: list) -> None:
    sed = scene.sequence_editor
    if sed is None or not strips:
        return
    coll = vse.top_strips(scene)
    for s in strips:
        if s.get(LYRIC_STRIP_TAG) is not None:
            coll.remove(s)


# ---------------------------------------------------------------- Cuts from Strips


def cuts_from_strips(scene, channel: int, snap: bool) -> list[str]:
    """Cut markers at the cut points of the strips on ``channel`` (inside the song's visible span when there is a
    song strip), snapped to the last analysis's beats only when ``snap``; returns the new markers' names."""
    spans = [(s.frame_final_start, s.frame_final_end) for s in channel_strips(scene, channel)]
    if not spans:
        raise M2VError(f"there are no strips on channel {channel}")
    try:
        song = vse.song_strip(scene, scene.m2v.song_strip)
        first, last = int(song.frame_final_start), int(song.frame_final_end)
    except M2VError:
        first = last = None
    return markers.add_cuts(scene, direction.strip_cut_frames(spans, first, last), snap)


# ---------------------------------------------------------------- animated settings


def fcurves_of(id_data) -> list:
    """The F-curves of the action animating ``id_data``: its slot's channelbag (5.x) or ``action.fcurves`` (4.2)."""
    ad = id_data.animation_data
    action = ad.action if ad is not None else None
    if action is None:
        return []
    if getattr(action, "layers", None) is not None and getattr(ad, "action_slot", None) is not None:
        for layer in action.layers:
            for strip in layer.strips:
                bag = strip.channelbag(ad.action_slot)
                if bag is not None:
                    return list(bag.fcurves)
        if not hasattr(action, "fcurves"):
            return []
    return list(getattr(action, "fcurves", []))


def find_fcurve(id_data, data_path: str, index: int = 0):
    return next((f for f in fcurves_of(id_data) if f.data_path == data_path and f.array_index == index), None)


def setting_data_path(name: str) -> str:
    return f"m2v.{name}"


def image_values(scene, name: str, segments, timing: timeline.StripTiming):
    """Each image's value of a setting as Blender's F-curve gives it at the image's first timeline frame, or None
    when the setting is not animated. A pair (``shift``) gives pairs (an unanimated half: the property's value)."""
    row = settings_table.by_name()[name]
    width = 2 if row.nargs == 2 else 1
    curves = [find_fcurve(scene, setting_data_path(name), i) for i in range(width)]
    if not any(curves):
        return None
    static = getattr(scene.m2v, name)
    frames = direction.image_frames(segments, timing)
    if width == 1:
        return [curves[0].evaluate(f) for f in frames]
    return [[c.evaluate(f) if c is not None else float(static[i]) for i, c in enumerate(curves)] for f in frames]


def animated_curves(scene, segments, timing: timeline.StripTiming, names=ANIMATABLE) -> dict[str, list[list]]:
    """``--curves`` keys of every animated setting: one constant key per image, at its start, holding Blender's
    value at the image's first frame (``direction.curve_keys``)."""
    starts = direction.image_starts(segments)
    out = {}
    for name in names:
        values = image_values(scene, name, segments, timing)
        if values is not None:
            out[name] = direction.curve_keys(starts, values)
    return out


def segment_weight_values(scene, plan: dict, timing: timeline.StripTiming) -> list | None:
    """Each image's segment-prompt weight where an editor keyframed it on a segment item (``scene.m2v.segments[i]
    .prompt_weight``, the item of the segment the plan starts there): Blender's value at the image's first frame;
    elsewhere, and in a segment without a prompt (where a weight weighs nothing), the plan's own. None when no item's
    weight is animated."""
    items = scene.m2v.segments
    curves = {i: find_fcurve(scene, f"m2v.segments[{i}].prompt_weight") for i in range(len(items))}
    curves = {i: c for i, c in curves.items() if c is not None}
    if not curves:
        return None
    segs = plan["segments"]
    starts = {i: segs[0]["start"] if not it.cut else round(timing.time_at(it.frame), 4) for i, it in enumerate(items)}
    out = []
    for seg in segs:
        own = float(seg.get("prompt_weight", 1.0))
        near = [i for i, t in starts.items() if abs(t - seg["start"]) <= protocol.SEGMENT_MATCH_S and i in curves]
        n = int(seg["images"])
        if not near or not seg.get("prompt"):
            out += [own] * n
            continue
        frames = direction.image_first_frames(timing, float(seg["start"]), float(seg["end"]), n)
        out += [curves[near[0]].evaluate(f) for f in frames]
    return out


def keyframed(scene) -> list[str]:
    """The keyframeable settings an editor animated on the scene (table order)."""
    rows = settings_table.by_name()
    return [
        n
        for n in ANIMATABLE
        if any(find_fcurve(scene, setting_data_path(n), i) for i in range(2 if rows[n].nargs == 2 else 1))
    ]


def animated_names(st, conditions: set[str]) -> list[str]:
    """The keyframeable settings whose value a render uses now: those whose flag the add-on passes in these
    conditions (``flags.conditions``: a motion setting counts with Custom Motion on, a footage one with footage)."""
    rows = settings_table.by_name()
    return [n for n in ANIMATABLE if all(w in conditions | {"given"} for w in rows[n].ui.when)]


def render_curves(scene, plan: dict, timing: timeline.StripTiming, names) -> dict[str, list[list]]:
    """The ``--curves`` keys of a render of ``plan``: every animated setting of ``names`` and the segments' keyframed
    prompt weights, one constant key per image (``direction.curve_keys``)."""
    segments = direction.segments_of_plan(plan)
    out = animated_curves(scene, segments, timing, names)
    weights = segment_weight_values(scene, plan, timing)
    if weights is not None:
        out["prompt_weight"] = direction.curve_keys(direction.image_starts(segments), weights)
    return out


def curves_before_render(scene_name: str, timing: timeline.StripTiming, out: Path, names):
    """The Render job's step between ``plan`` and ``render`` (``EngineJob.before_step``): read the plan's images,
    evaluate every animated setting at each image's first frame, write ``curves.json`` and pass it (``--curves``);
    without animation, no file and no flag."""

    def before(job, step: int) -> None:
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            raise M2VError("the scene was closed")
        plan = read_document(out / "plan.json", protocol.PLAN_KIND, protocol.PLAN_VERSION)
        curves = render_curves(scene, plan, timing, names)
        path = out / "curves.json"
        if not curves:
            _remove_own(path)
            return
        write_text_replacing(path, json.dumps(direction.curves_document(curves)))
        job.commands[step] = job.commands[step] + flags.flag("curves", path)

    return before


# ---------------------------------------------------------------- Bake Music to F-Curve


def bake_targets() -> list[tuple[str, str, int, str]]:
    """``(identifier, setting, index, label)`` of every value music can be baked onto (a pair gives two): the
    ``bake_target`` row's choices (``settings_table.animatable_targets``)."""
    rows = settings_table.by_name()
    out = []
    for ident, (label, _) in rows["bake_target"].ui.items.items():
        name, index = ident, 0
        if ident not in rows:
            name, part = ident.rsplit("_", 1)
            index = rows[name].parts.index(part)
        out.append((ident, name, index, label))
    return out


def write_keys(scene, name: str, index: int, keys: list[tuple[int, float]], interpolation: str = "LINEAR"):
    """Replace the F-curve of ``scene.m2v.<name>[index]`` with these keys (creating the action, its slot and the
    curve the usual way, through ``keyframe_insert``); returns the F-curve."""
    path = setting_data_path(name)
    fc = find_fcurve(scene, path, index)
    if fc is None:
        array = scene.m2v.bl_rna.properties[name].is_array
        scene.keyframe_insert(data_path=path, index=index if array else -1, frame=keys[0][0])
        fc = find_fcurve(scene, path, index)
    fc.keyframe_points.clear()
    fc.keyframe_points.add(len(keys))
    fc.keyframe_points.foreach_set("co", [x for f, v in keys for x in (float(f), float(v))])
    for k in fc.keyframe_points:
        k.interpolation = interpolation
    fc.update()
    return fc


def current_segments(scene, timing: timeline.StripTiming):
    """``(start, end, images)`` per segment for the cut markers as they are now (needs an analysis)."""
    summary = markers.analysis_summary(scene)
    if summary is None or not summary.get("levels"):
        raise M2VError("press Analyze first: the images' slots come from the song's analysis")
    v = flags.effective(scene.m2v)
    return direction.segments_now(
        summary["levels"], markers.scene_segment_frames(scene), timing, v["min_rate"], v["max_rate"]
    )


def start_bake(scene):
    """Run ``engine signals`` for the song's visible span, then write the chosen signal as keys on the chosen
    setting (one per image slot)."""
    st = scene.m2v
    target = {t[0]: t for t in bake_targets()}.get(st.bake_target)
    if target is None:
        raise M2VError(f"m2v cannot bake onto {st.bake_target!r}")
    strip = vse.song_strip(scene, st.song_strip)
    timing = adapters.strip_timing(scene, strip)
    current_segments(scene, timing)  # refuse before the engine runs
    t0, t1 = timing.visible_span()
    out = adapters.output_dir(scene) / "signals.json"
    args = [
        "signals",
        str(adapters.song_path(strip)),
        *flags.flag("start", round(t0, 4)),
        *flags.flag("end", round(t1, 4)),
        *flags.flag("output", out),
    ]
    _, name, index, label = target
    signal, lo, hi = st.bake_signal, st.bake_min, st.bake_max

    def handle(scene, job, ev):
        if ev["event"] != protocol.CLIENT_EXIT:
            return
        if ev["code"] != protocol.EXIT_OK:
            scene.m2v.status = f"bake failed: {job.error}"
            return
        try:
            doc = read_document(out, protocol.SIGNALS_KIND, protocol.SIGNALS_VERSION)
            keys = direction.bake_keys(doc, signal, current_segments(scene, timing), timing, lo, hi)
        except M2VError as e:  # the analysis dropped meanwhile, a damaged file: said, not raised into the pump
            scene.m2v.status = f"bake failed: {e}"
            return
        write_keys(scene, name, index, keys)
        scene.m2v.status = f"baked {signal} onto {label}: {len(keys)} keys"
        if "motion" in settings_table.row(name).ui.when and not scene.m2v.use_motion:
            scene.m2v.use_motion = True  # the motion fields count with Custom Motion on: the keys are meant to
            scene.m2v.status += " (Custom Motion on)"
        registry.undo_push("m2v Bake Music")

    return registry.start(scene, "bake", [args], handle)

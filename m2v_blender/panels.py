"""The "Music Video" sidebar panel in the Sequencer."""

from __future__ import annotations

import bpy

from . import adapters, cost, flags, markers, registry, timeline, vse
from .contract import protocol
from .errors import M2VError
from .setting_props import draw_section


class SEQUENCER_PT_m2v(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Music Video"
    bl_label = "Music Video"

    def draw(self, context):
        layout = self.layout
        st = context.scene.m2v
        col = layout.column(align=True)
        try:
            song = vse.song_strip(context.scene, st.song_strip).name
        except M2VError as e:
            song = None
            col.label(text=str(e), icon="ERROR")
        if song:
            col.label(text=f"Song: {song}", icon="SOUND")
        strip_field(col, context.scene, "song_strip")
        row = col.row(align=True)
        row.prop(st, "lyrics_file")
        row.operator("m2v.import_lyrics", text="", icon="FILEBROWSER")
        box = layout.box()
        box.prop(st, "preset")
        if st.preset == "auto" and st.resolved_preset:
            box.label(text=f"Auto chose {st.resolved_preset.title()} at the last Analyze", icon="INFO")
        v = flags.effective(st)
        held = shown_conditions(st, v)
        if st.preset == "custom":
            draw_section(box, st, "custom", held)
        else:
            custom = box.column(align=True)
            custom.enabled = False
            custom.label(text=f"{v['granularity']}, {v['min_rate']:g}-{v['max_rate']:g} steps/s")
            custom.label(text=f"{v['size'][0]}x{v['size'][1]}, {v['cutouts']} {v['cutout_method']} cutouts")
        draw_section(box, st, "analysis", held)
        line = cost.estimate_text(context.scene)
        if line:
            box.label(text=line, icon="TIME")
        box = layout.box()
        draw_section(box, st, "look", held)
        draw_section(box, st, "output", held)
        draw_footage_box(layout.box(), context.scene, held)
        draw_matte_box(layout.box(), context.scene, held)
        running = registry.is_running(context.scene)
        row = layout.row(align=True)
        row.enabled = not running
        row.operator("m2v.analyze", icon="MARKER_HLT")
        row.operator("m2v.render", icon="RENDER_ANIMATION").preview = False
        row.operator("m2v.render", text="Preview Layout", icon="SEQ_PREVIEW").preview = True
        row = layout.row(align=True)  # hand-off to other editors (issue 29)
        row.enabled = not running
        row.operator("m2v.export_timeline", text="Export Timeline", icon="EXPORT")
        row.operator("m2v.import_edit_cuts", text="Import Cuts", icon="IMPORT")
        if running or st.status:
            col = layout.column()
            if running:
                col.prop(st, "progress", text=st.job_kind.title())
                col.operator("m2v.cancel_render", icon="CANCEL")
            col.label(text=st.status)


def shown_conditions(st, values: dict) -> set[str]:
    """What holds for drawing the table's sections (``UI.shown``): ``scenes``, ``footage``, ``matte``, ``motion``."""
    held = {"scenes"} if values["granularity"] == "scenes" else set()
    if st.footage_strip:
        held.add("footage")
    if st.matte_strip:
        held.add("matte")
    if st.use_motion:
        held.add("motion")
    return held


def strip_field(layout, scene, prop: str) -> None:
    """A strip-name setting with a search over the scene's strips (4.2: ``sequences_all``; 5.x: ``strips_all``)."""
    sed = scene.sequence_editor
    if sed is None:
        layout.prop(scene.m2v, prop)
        return
    layout.prop_search(scene.m2v, prop, sed, "strips_all" if hasattr(sed, "strips_all") else "sequences_all")


def draw_footage_box(box, scene, held: set[str] | None = None) -> None:
    """The panel's "Footage & Motion" box (``held``: what holds for drawing, see :func:`shown_conditions`)."""
    st = scene.m2v
    if held is None:
        held = shown_conditions(st, flags.effective(st))
    box.label(text="Footage & Motion", icon="SEQUENCE")
    strip_field(box, scene, "footage_strip")
    draw_section(box, st, "footage", held)
    box.prop(st, "use_motion")
    if st.use_motion:
        draw_section(box, st, "motion", held)
    else:
        m = protocol.MOTION_PRESETS.get(flags.preset_in_use(st))
        box.label(text=f"Motion: {m['zoom']:g} zoom a beat, {m['rotate']:g} deg/s" if m else "Motion: off (preset)")


def draw_matte_box(box, scene, held: set[str] | None = None) -> None:
    """The panel's "Compositing" box: the matte strip and how it is read, and the frames' alpha."""
    st = scene.m2v
    if held is None:
        held = shown_conditions(st, flags.effective(st))
    box.label(text="Compositing", icon="NODE_COMPOSITING")
    strip_field(box, scene, "matte_strip")
    draw_section(box, st, "matte", held)


def _segment_rows(scene) -> list[tuple[float, str]]:
    """(start time, guidance in use) per segment, from the markers as they are now (no engine needed)."""
    try:
        timing = adapters.strip_timing(scene, vse.song_strip(scene, scene.m2v.song_strip))
    except M2VError:
        return []
    t0, t1 = timing.visible_span()
    starts = [t0] + [timing.time_at(m.frame) for m in markers.cut_markers(scene)]
    lyrics = sorted(markers.scene_lyrics(scene, timing))
    rows = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else t1
        words = [text for t, text in lyrics if start <= t < end]
        rows.append(
            (start, f"\u266a {words[0]}" + (f" (+{len(words) - 1})" if len(words) > 1 else "") if words else "audio")
        )
    return rows


#: The rows of the Segments list being drawn: the panel makes them once a redraw, before its list asks row by
#: row (template_list calls draw_item while the panel draws), instead of every row re-reading every marker.
_drawn_rows: list[tuple[float, str]] = []


class M2V_UL_segments(bpy.types.UIList):
    """Segments: start, guidance in use, prompt, take, New Chain, Re-roll."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        rows = _drawn_rows or _segment_rows(context.scene)
        start, guidance = rows[index] if index < len(rows) else (0.0, "")
        row = layout.row(align=True)
        row.label(text=f"{int(start // 60)}:{start % 60:05.2f}")
        sub = row.row()
        sub.scale_x = 1.4
        sub.label(text=("prompt" if item.prompt.strip() and item.prompt_weight >= 1 else guidance)[:28])
        row.prop(item, "prompt", text="")
        row.prop(item, "take", text="")
        if index:  # the first segment always starts a chain
            row.prop(item, "new_chain", text="", icon="UNLINKED" if item.new_chain else "LINKED")
        row.operator("m2v.reroll", text="", icon="FILE_REFRESH").index = index


class SEQUENCER_PT_m2v_segments(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Music Video"
    bl_label = "Segments"
    bl_parent_id = "SEQUENCER_PT_m2v"

    def draw(self, context):
        layout = self.layout
        st = context.scene.m2v
        layout.label(text=timeline.CUT_RULE, icon="INFO")
        row = layout.row(align=True)
        row.operator("m2v.add_cut", icon="ADD")
        row.operator("m2v.remove_cut", icon="REMOVE")
        row = layout.row(align=True)
        row.prop(st, "snap_cuts")
        row.operator("m2v.snap_cuts", text="", icon="SNAP_ON")
        row = layout.row(align=True)
        row.prop(st, "new_lyric", text="")
        row.operator("m2v.add_lyric", text="Add Lyric", icon="OUTLINER_OB_FONT").text = st.new_lyric
        _drawn_rows[:] = _segment_rows(context.scene)
        try:
            layout.template_list("M2V_UL_segments", "", st, "segments", st, "segments_index", rows=4)
        finally:
            _drawn_rows.clear()  # never stale: a list drawn any other way makes its own rows
        if 0 <= st.segments_index < len(st.segments):
            item = st.segments[st.segments_index]
            layout.prop(item, "prompt_weight")


def marker_menu(self, context) -> None:
    layout = self.layout
    layout.separator()
    layout.operator("m2v.add_cut", icon="ADD")
    layout.operator("m2v.remove_cut", icon="REMOVE")
    layout.operator("m2v.add_lyric", icon="OUTLINER_OB_FONT")


CLASSES = (SEQUENCER_PT_m2v, M2V_UL_segments, SEQUENCER_PT_m2v_segments)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.SEQUENCER_MT_marker.append(marker_menu)


def unregister() -> None:
    bpy.types.SEQUENCER_MT_marker.remove(marker_menu)
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)

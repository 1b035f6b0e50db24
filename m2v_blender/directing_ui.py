"""Directing from the timeline: the operators (Lyrics -> Text Strips, Cuts from Strips, Bake Music to F-Curve) and
their collapsible sub-panels under the Music Video panel, plus the active text strip's m2v panel."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty

from . import adapters, directing, flags, operators, registry, vse
from .contract import settings_table
from .errors import M2VError


class M2V_OT_lyrics_to_strips(bpy.types.Operator):
    """Turn the lyric markers into text strips on the Prompt Channel: correct words and timing where you see them"""

    bl_idname = "m2v.lyrics_to_strips"
    bl_label = "Lyrics \u2192 Text Strips"
    bl_options = {"REGISTER", "UNDO"}

    keep_markers: BoolProperty(
        name="Keep Markers", default=False, description="Keep the lyric markers too (they would guide as well)"
    )

    def execute(self, context):
        scene = context.scene
        try:
            timing = adapters.strip_timing(scene, vse.song_strip(scene, scene.m2v.song_strip))
            made = directing.lyrics_to_strips(scene, timing, self.keep_markers)
        except M2VError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(made)} lyric(s) as text strips on channel {scene.m2v.prompt_channel}")
        return {"FINISHED"}


class M2V_OT_cuts_from_strips(bpy.types.Operator):
    """Put a cut at every start and end of the strips on the chosen channel (your footage edit)"""

    bl_idname = "m2v.cuts_from_strips"
    bl_label = "Cuts from Strips"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        st = context.scene.m2v
        try:
            names = directing.cuts_from_strips(context.scene, st.cut_channel, st.cut_snap)
        except M2VError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(names)} cut(s) added from channel {st.cut_channel}")
        return {"FINISHED"}


class M2V_OT_bake_music(bpy.types.Operator):
    """Write the chosen signal of the music as keyframes on the chosen setting, one per image, from Min to Max"""

    bl_idname = "m2v.bake_music"
    bl_label = "Bake Music to F-Curve"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        return operators._start_job(self, context, directing.start_bake)


def _active_text_strip(context):
    sed = context.scene.sequence_editor
    strip = getattr(sed, "active_strip", None) if sed else None
    return strip if strip is not None and strip.type == "TEXT" else None


class _SubPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Music Video"
    bl_parent_id = "SEQUENCER_PT_m2v"
    bl_options = {"DEFAULT_CLOSED"}


class SEQUENCER_PT_m2v_prompts(_SubPanel, bpy.types.Panel):
    bl_label = "Prompts from Text Strips"

    def draw_header(self, context):
        self.layout.prop(context.scene.m2v, "use_prompt_strips", text="")

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        st = scene.m2v
        layout.use_property_split = True
        col = layout.column()
        col.active = st.use_prompt_strips
        col.prop(st, "prompt_channel")
        n = len(directing.prompt_text_strips(scene, st.prompt_channel))
        if not st.use_prompt_strips:
            col.label(text="Off: text strips guide nothing", icon="INFO")
        else:
            col.label(text=f"{n} text strip(s) guide their images" if n else "No text strips on this channel")
        strip = _active_text_strip(context)
        if strip is not None and strip.channel == st.prompt_channel:
            col.prop(strip, directing.WEIGHT_PROP, text=f"Weight of {strip.name}")
        layout.operator("m2v.lyrics_to_strips", icon="OUTLINER_OB_FONT")


class SEQUENCER_PT_m2v_strip_cuts(_SubPanel, bpy.types.Panel):
    bl_label = "Cuts from Strips"

    def draw(self, context):
        layout = self.layout
        st = context.scene.m2v
        layout.use_property_split = True
        layout.prop(st, "cut_channel")
        layout.prop(st, "cut_snap")
        n = len(directing.channel_strips(context.scene, st.cut_channel))
        layout.label(text=f"{n} strip(s) on channel {st.cut_channel}" if n else "No strips on this channel")
        layout.operator("m2v.cuts_from_strips", icon="MARKER_HLT")


class SEQUENCER_PT_m2v_bake(_SubPanel, bpy.types.Panel):
    bl_label = "Bake Music to F-Curve"

    def draw(self, context):
        layout = self.layout
        st = context.scene.m2v
        layout.use_property_split = True
        layout.prop(st, "bake_target")
        layout.prop(st, "bake_signal")
        col = layout.column(align=True)
        col.prop(st, "bake_min")
        col.prop(st, "bake_max")
        row = layout.row()
        row.enabled = bool(st.analysis_json) and not registry.is_running(context.scene)
        row.operator("m2v.bake_music", icon="GRAPH")
        if not st.analysis_json:
            layout.label(text="Analyze first: one key per image", icon="INFO")
        animated = directing.keyframed(context.scene)
        if animated:  # what Render evaluates at each image's first frame (a field that counts now, Custom Motion...)
            used = directing.animated_names(st, flags.conditions(st, footage=bool(st.footage_strip)))
            rows = settings_table.by_name()
            names = [rows[n].ui.label + ("" if n in used else " (unused now)") for n in animated]
            layout.label(text="Keyframed, per image: " + ", ".join(names), icon="IPO_BEZIER")


class SEQUENCER_PT_m2v_text_strip(bpy.types.Panel):
    """The active text strip's m2v settings (in the sidebar's Strip tab)."""

    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Strip"
    bl_label = "Music Video Prompt"

    @classmethod
    def poll(cls, context):
        return _active_text_strip(context) is not None

    def draw(self, context):
        layout = self.layout
        st = context.scene.m2v
        strip = _active_text_strip(context)
        layout.use_property_split = True
        layout.prop(strip, directing.WEIGHT_PROP)
        if not st.use_prompt_strips:
            layout.label(text="Prompts from Text Strips is off", icon="INFO")
        elif strip.channel != st.prompt_channel:
            layout.label(text=f"Not a prompt: the Prompt Channel is {st.prompt_channel}", icon="INFO")
        elif strip.mute:
            layout.label(text="Muted: guides nothing", icon="INFO")
        else:
            layout.label(text="Guides the images in its span", icon="CHECKMARK")


CLASSES = (
    M2V_OT_lyrics_to_strips,
    M2V_OT_cuts_from_strips,
    M2V_OT_bake_music,
    SEQUENCER_PT_m2v_prompts,
    SEQUENCER_PT_m2v_strip_cuts,
    SEQUENCER_PT_m2v_bake,
    SEQUENCER_PT_m2v_text_strip,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)

"""The "Music Video" sidebar panel in the Sequencer."""

from __future__ import annotations

import bpy

from . import footage, jobs, vse
from .errors import M2VError


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
        sed = context.scene.sequence_editor
        if sed is not None:
            # Pick the song from the scene's strips (4.2: sequences_all, 5.x: strips_all).
            col.prop_search(st, "song_strip", sed, "strips_all" if hasattr(sed, "strips_all") else "sequences_all")
        else:
            col.prop(st, "song_strip")
        row = col.row(align=True)
        row.prop(st, "lyrics_file")
        row.operator("m2v.import_lyrics", text="", icon="FILEBROWSER")
        box = layout.box()
        box.prop(st, "preset")
        if st.preset == "auto" and st.resolved_preset:
            box.label(text=f"Auto chose {st.resolved_preset.title()} at the last Analyze", icon="INFO")
        custom = box.column(align=True)
        custom.enabled = st.preset == "custom"
        v = jobs.effective(st)
        if st.preset == "custom":
            custom.prop(st, "granularity")
            row = custom.row(align=True)
            row.prop(st, "min_rate")
            row.prop(st, "max_rate")
            row = custom.row(align=True)
            row.prop(st, "width")
            row.prop(st, "height")
            row = custom.row(align=True)
            row.prop(st, "cutouts")
            row.prop(st, "cut_method", text="")
        else:
            custom.label(text=f"{v['granularity']}, {v['min_rate']:g}-{v['max_rate']:g} steps/s")
            custom.label(text=f"{v['size'][0]}x{v['size'][1]}, {v['cutouts']} {v['cut_method']} cutouts")
        if v["granularity"] == "scenes":
            row = box.row(align=True)
            row.prop(st, "min_length")
            row.prop(st, "target_length")
        cost = jobs.estimate_text(context.scene)
        if cost:
            box.label(text=cost, icon="TIME")
        box = layout.box()
        box.prop(st, "seed")
        box.prop(st, "style")
        box.prop(st, "output_dir")
        row = box.row(align=True)
        row.prop(st, "channel")
        row.prop(st, "blend_type", text="")
        box.prop(st, "opacity")
        footage.draw_box(layout.box(), context.scene)
        running = jobs.is_running(context.scene)
        row = layout.row(align=True)
        row.enabled = not running
        row.operator("m2v.analyze", icon="MARKER_HLT")
        row.operator("m2v.render", icon="RENDER_ANIMATION").layout = False
        row.operator("m2v.render", text="Preview Layout", icon="SEQ_PREVIEW").layout = True
        if running or st.status:
            col = layout.column()
            if running:
                col.prop(st, "progress", text=st.job_kind.title())
                col.operator("m2v.cancel_render", icon="CANCEL")
            col.label(text=st.status)


def register() -> None:
    bpy.utils.register_class(SEQUENCER_PT_m2v)


def unregister() -> None:
    bpy.utils.unregister_class(SEQUENCER_PT_m2v)

"""File > Export > m2v Timeline and File > Import > m2v Cuts from Edit (issue 29): thin bpy glue over ``handoff``."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import adapters, handoff, markers, operators, registry, vse
from .contract import protocol, read_document

_FORMAT_ITEMS = [(suffix, label, text) for suffix, label, text in handoff.FORMATS]
_GLOB = ";".join(f"*{s}" for s in handoff.SUFFIXES)


def start_export(scene, path: Path):
    """Run ``export --timeline`` on the scene's latest render; the status line says what was written."""
    strip = vse.song_strip(scene, scene.m2v.song_strip)
    timing = adapters.strip_timing(scene, strip)
    out = adapters.output_dir(scene)
    r = scene.render
    args = handoff.export_args(
        handoff.latest_render(out), path, handoff.rate_text(r.fps, r.fps_base), timing, scene.frame_start
    )
    state = {"text": None}

    def handle(scene, job, ev):
        kind = ev["event"]
        if kind == "exported":
            text = f"exported {Path(ev['output']).name} ({ev['format']}): {ev['clips']} clips"
            if ev["gaps"]:
                text += f", {ev['gaps']} gaps (the render is not finished: render again, then export again)"
            state["text"] = text
        elif kind == protocol.CLIENT_EXIT:
            ok = ev["code"] == protocol.EXIT_OK and state["text"]
            scene.m2v.status = state["text"] if ok else f"export failed: {job.error}"

    return registry.start(scene, "export", [args], handle)


def start_import(scene, edit: Path):
    """Run ``plan --boundaries-from EDIT``; its segment starts become the scene's cut markers."""
    strip = vse.song_strip(scene, scene.m2v.song_strip)
    timing = adapters.strip_timing(scene, strip)
    out = adapters.output_dir(scene)
    plan_out = out / "edit_cuts.json"
    args = handoff.import_args(adapters.song_path(strip), edit, adapters.scene_fps(scene), plan_out)
    state = {"warnings": []}

    def handle(scene, job, ev):
        kind = ev["event"]
        if kind == "warning":
            state["warnings"].append(ev["message"])
        elif kind == protocol.CLIENT_EXIT:
            if ev["code"] != protocol.EXIT_OK:
                scene.m2v.status = f"import failed: {job.error}"
                return
            plan = read_document(plan_out, protocol.PLAN_KIND, protocol.PLAN_VERSION)
            removed = markers.replace_cuts(scene, plan, timing)
            text = f"{edit.name}: {len(plan['segments'])} segments ({removed} cut markers replaced)"
            if state["warnings"]:
                text += f"; warning: {state['warnings'][0]}"
            scene.m2v.status = text
            registry.undo_push("m2v Import Cuts")

    return registry.start(scene, "import", [args], handle)


class M2V_OT_export_timeline(bpy.types.Operator):
    """Export the cut, the lyrics and the generated clips as a timeline for another editor"""

    bl_idname = "m2v.export_timeline"
    bl_label = "Export m2v Timeline"

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default=_GLOB, options={"HIDDEN"})
    file_format: EnumProperty(
        name="Format", items=_FORMAT_ITEMS, default=".otio", description="Used when the name has no such extension"
    )

    def invoke(self, context, event):
        if not self.filepath:
            try:
                self.filepath = str(adapters.output_dir(context.scene) / "m2v-timeline.otio")
            except Exception:  # noqa: BLE001 - an unsaved file: the browser starts where Blender says
                self.filepath = "m2v-timeline.otio"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = handoff.with_suffix(bpy.path.abspath(self.filepath), self.file_format)
        return operators._start_job(self, context, start_export, path)


class M2V_OT_import_edit_cuts(bpy.types.Operator):
    """Use the cuts of an edit made in another editor (.otio, .xml, .fcpxml, .edl, .kdenlive) as this video's cuts"""

    bl_idname = "m2v.import_edit_cuts"
    bl_label = "Import Cuts from Edit"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default=_GLOB, options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        return operators._start_job(self, context, start_import, Path(bpy.path.abspath(self.filepath)))


def menu_export(self, context) -> None:
    self.layout.operator(M2V_OT_export_timeline.bl_idname, text="m2v Timeline (.otio, .xml, .fcpxml, .edl)")


def menu_import(self, context) -> None:
    self.layout.operator(M2V_OT_import_edit_cuts.bl_idname, text="m2v Cuts from Edit (.otio, .xml, .fcpxml, .edl)")


CLASSES = (M2V_OT_export_timeline, M2V_OT_import_edit_cuts)


def register() -> None:
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)

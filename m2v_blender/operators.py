"""Operators: Analyze, Render (and Preview Layout), Cancel, Import Lyrics, Install Engine, Fetch Models, Check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import flags, jobs, markers, preferences, registry, timeline
from .contract import engine_root, protocol
from .engine_client import EngineJob
from .errors import M2VError


def _finish_or_follow(op, scene, ok_codes: tuple[int, ...]) -> set[str]:
    """Background mode: loop on the pump step until the job ends. With a window: let a timer pump."""
    if bpy.app.background:
        job = registry.pump_to_end(scene)
        if job.returncode not in ok_codes:
            op.report({"ERROR"}, scene.m2v.status)
            return {"CANCELLED"}
        op.report({"INFO"}, scene.m2v.status)
        return {"FINISHED"}
    registry.follow(scene)
    op.report({"INFO"}, f"m2v: {scene.m2v.status}")
    return {"FINISHED"}


def _start_job(op, context, starter, *args) -> set[str]:
    scene = context.scene
    try:
        starter(scene, *args)
    except M2VError as e:
        op.report({"ERROR"}, str(e))
        return {"CANCELLED"}
    return _finish_or_follow(op, scene, ok_codes=(protocol.EXIT_OK, protocol.EXIT_CANCELLED))


class M2V_OT_analyze(bpy.types.Operator):
    """Find scene changes and lyric times in the song and write them as timeline markers"""

    bl_idname = "m2v.analyze"
    bl_label = "Analyze"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        return _start_job(self, context, jobs.start_analyze)


class M2V_OT_render(bpy.types.Operator):
    """Render the music video from the markers as they are now; strips appear segment by segment"""

    bl_idname = "m2v.render"
    bl_label = "Render"
    bl_options = {"REGISTER", "UNDO"}

    # Not ``layout``: an operator property of that name would hide Operator.layout (its UILayout).
    preview: BoolProperty(
        name="Preview Layout",
        default=False,
        description="Titled cards instead of generated images (seconds, no models)",
    )
    model_args: StringProperty(
        name="Model Arguments",
        default="",
        options={"HIDDEN", "SKIP_SAVE"},
        description="Extra engine model flags as JSON (scripts: your own model files)",
    )

    def execute(self, context):
        try:
            extra = json.loads(self.model_args) if self.model_args else None
        except ValueError:
            self.report({"ERROR"}, "Model Arguments must be a JSON list of engine flags")
            return {"CANCELLED"}
        return _start_job(self, context, jobs.start_render, self.preview, extra)


class M2V_OT_cancel_render(bpy.types.Operator):
    """Stop after the current image; finished frames are kept and the next Render resumes"""

    bl_idname = "m2v.cancel_render"
    bl_label = "Cancel"

    def execute(self, context):
        if not registry.cancel(context.scene):
            self.report({"WARNING"}, "m2v is not running")
            return {"CANCELLED"}
        return {"FINISHED"}


class M2V_OT_import_lyrics(bpy.types.Operator):
    """Choose a timed lyrics file (.lrc, .srt, .vtt, .csv) for this scene"""

    bl_idname = "m2v.import_lyrics"
    bl_label = "Import Lyrics"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.lrc;*.srt;*.vtt;*.csv", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"lyrics file not found: {path}")
            return {"CANCELLED"}
        if path.suffix.lower() not in (".lrc", ".srt", ".vtt", ".csv"):
            self.report({"ERROR"}, f"{path.name}: use an .lrc, .srt, .vtt or .csv lyrics file")
            return {"CANCELLED"}
        context.scene.m2v.lyrics_file = str(path)
        self.report({"INFO"}, f"lyrics: {path.name} (Analyze to place them as markers)")
        return {"FINISHED"}


class M2V_OT_add_cut(bpy.types.Operator):
    """Cut the music video at the playhead (snapped to the nearest beat when Snap Cuts to Beats is on)"""

    bl_idname = "m2v.add_cut"
    bl_label = "Add Cut at Playhead"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        frame = markers.beat_snapper(scene)(scene.frame_current) if scene.m2v.snap_cuts else scene.frame_current
        names = markers.add_cuts(scene, [frame], snap=False)
        if not names:
            self.report({"WARNING"}, f"there is already a cut at frame {frame}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"cut {names[0]} at frame {frame}")
        return {"FINISHED"}


class M2V_OT_remove_cut(bpy.types.Operator):
    """Remove the selected cuts, or else the cut that starts the segment under the playhead"""

    bl_idname = "m2v.remove_cut"
    bl_label = "Remove Cut"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        cuts = markers.cut_markers(scene)
        chosen = [m for m in cuts if m.select] or [m for m in cuts if m.frame <= scene.frame_current][-1:]
        if not chosen:
            self.report({"WARNING"}, "no cut at or before the playhead (the first segment starts the song)")
            return {"CANCELLED"}
        names = [m.name for m in chosen]
        for m in chosen:
            scene.timeline_markers.remove(m)
        markers.sync_segments(scene)
        self.report({"INFO"}, "removed " + ", ".join(names))
        return {"FINISHED"}


class M2V_OT_add_lyric(bpy.types.Operator):
    """Add a lyric line at the playhead: from here on it guides the images, as a timed lyric does"""

    bl_idname = "m2v.add_lyric"
    bl_label = "Add Lyric at Playhead"
    bl_options = {"REGISTER", "UNDO"}

    text: StringProperty(name="Words", description="The lyric's words")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        scene = context.scene
        text = " ".join((self.text or scene.m2v.new_lyric).split())
        if not text:
            self.report({"ERROR"}, "type the lyric's words first")
            return {"CANCELLED"}
        i = timeline.next_lyric_index([m.name for m in scene.timeline_markers])
        texts = markers.stored_lyrics(scene)
        texts += [""] * (i + 1 - len(texts))
        texts[i] = text
        scene.m2v.lyrics_json = json.dumps(texts, ensure_ascii=False)
        marker = scene.timeline_markers.new(timeline.lyric_marker_name(i, text), frame=scene.frame_current)
        self.report({"INFO"}, f"lyric {marker.name} at frame {scene.frame_current}")
        return {"FINISHED"}


class M2V_OT_reroll(bpy.types.Operator):
    """Another take of this segment: new random draws for it alone (the segments after it follow from it)"""

    bl_idname = "m2v.reroll"
    bl_label = "Re-roll"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Segment", default=-1, description="Segment (0 is the first); -1: the selected one")

    def execute(self, context):
        st = context.scene.m2v
        markers.sync_segments(context.scene)
        i = st.segments_index if self.index < 0 else self.index
        if not 0 <= i < len(st.segments):
            self.report({"ERROR"}, f"there is no segment {i + 1}")
            return {"CANCELLED"}
        st.segments[i].take += 1
        self.report({"INFO"}, f"segment {i + 1}: take {st.segments[i].take} (Render to see it)")
        return {"FINISHED"}


class M2V_OT_snap_cuts(bpy.types.Operator):
    """Move every cut to the nearest beat of the last analysis"""

    bl_idname = "m2v.snap_cuts"
    bl_label = "Snap Cuts to Beats"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            n = markers.snap_cuts(context.scene)
        except M2VError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        markers.sync_segments(context.scene)
        self.report({"INFO"}, f"{n} cut(s) moved to the nearest beat")
        return {"FINISHED"}


def _tool_job(op, context, kind: str, python: Path, commands: list[list[str]], module: bool, on_event=None) -> set[str]:
    """Install, Fetch and Check: the same job path as Analyze and Render (no frozen UI)."""
    scene = context.scene

    def handle(scene, job, ev):
        if on_event is not None:
            on_event(ev)
        if ev["event"] == protocol.CLIENT_OUTPUT:
            scene.m2v.status = ev["text"][-120:]
        elif ev["event"] == protocol.CLIENT_EXIT:
            ok = ev["code"] == protocol.EXIT_OK
            scene.m2v.status = f"{kind}: done" if ok else f"{kind} failed: {job.error}"

    log = preferences.env_dir(context).parent / f"{kind}.log"
    try:
        registry.track(scene, kind, EngineJob(python, commands, log, module=module).start(), handle)
    except M2VError as e:
        op.report({"ERROR"}, str(e))
        return {"CANCELLED"}
    return _finish_or_follow(op, scene, ok_codes=(protocol.EXIT_OK,))


def _online(op) -> bool:
    if not getattr(bpy.app, "online_access", True):
        op.report(
            {"ERROR"}, "Blender's online access is off: enable it in Preferences > System > Network, then try again"
        )
        return False
    return True


class M2V_OT_install_engine(bpy.types.Operator):
    """Create the managed engine environment (PyTorch and friends, several GB) in the folder set above"""

    bl_idname = "m2v.install_engine"
    bl_label = "Install Engine"

    python: StringProperty(
        name="Base Python", default="", description="Python to build the environment with (empty: Blender's own)"
    )

    def execute(self, context):
        if not _online(self):
            return {"CANCELLED"}
        setup = engine_root() / "install" / "setup.py"
        base = self.python or sys.executable
        dev = preferences.device(context)
        argv = [str(setup), "--env", str(preferences.env_dir(context)), "--device", "cpu" if dev == "cpu" else "auto"]
        return _tool_job(self, context, "install", Path(base), [argv], module=False)


class M2V_OT_fetch_models(bpy.types.Operator):
    """Download the official model files (about 1.6 GB) into the models folder, verifying each"""

    bl_idname = "m2v.fetch_models"
    bl_label = "Fetch Models"

    def execute(self, context):
        if not _online(self):
            return {"CANCELLED"}
        argv = ["models", "fetch", *flags.flag("models", preferences.models_dir(context))]
        return _tool_job(self, context, "fetch", preferences.engine_python(context), [argv], module=True)


class M2V_OT_check_engine(bpy.types.Operator):
    """Check the engine: versions, device, and which model files are present and verified"""

    bl_idname = "m2v.check_engine"
    bl_label = "Check"

    def execute(self, context):
        p = preferences.prefs(context)
        python = preferences.engine_python(context)
        if not python.exists():
            msg = f"engine not installed: {python} is missing (press Install Engine)"
            if p:
                p.check_result = msg
            self.report({"WARNING"}, msg)
            return {"CANCELLED"}

        def on_event(ev):
            if ev["event"] == "info" and p:
                p.check_result = check_text(ev)
            elif ev["event"] == protocol.CLIENT_EXIT and ev["code"] != protocol.EXIT_OK and p:
                p.check_result = "the engine environment is broken: see check.log beside it"

        argv = ["info", *flags.flag("models", preferences.models_dir(context))]
        return _tool_job(self, context, "check", python, [argv], module=True, on_event=on_event)


def check_text(info: dict) -> str:
    """The Check result in plain words: versions, device, each model file."""
    dev = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}.get(info["device"], "CPU only (slow)")
    lines = [f"engine {info['engine']}, torch {info['torch']}, device: {dev} ({info['device_name']})"]
    lines += [f"{row['status']}: {row['name']}" for row in info["models"]]
    return "\n".join(lines)


CLASSES = (
    M2V_OT_add_cut,
    M2V_OT_remove_cut,
    M2V_OT_add_lyric,
    M2V_OT_reroll,
    M2V_OT_snap_cuts,
    M2V_OT_analyze,
    M2V_OT_render,
    M2V_OT_cancel_render,
    M2V_OT_import_lyrics,
    M2V_OT_install_engine,
    M2V_OT_fetch_models,
    M2V_OT_check_engine,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)

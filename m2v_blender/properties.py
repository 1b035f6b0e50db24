"""Settings on ``scene.m2v`` (saved with the .blend) and live job state shown in the panel.

The settings are the settings table's rows (``setting_props``); what is written here is the add-on's data and
state: the cut each segment item belongs to, the last analysis, the lyric texts, the running job."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import directing, flags, registry
from .contract import protocol
from .setting_props import setting_properties


def _running(self) -> bool:
    return registry.is_running(self.id_data)


def _preset_changed(self, context) -> None:
    """Choosing Custom starts from the values of the preset chosen before it (Auto: what it chose), so nothing
    jumps, as Blender's presets fill their fields."""
    if self.preset != "custom":
        self.preset_before = self.preset
        return
    chosen = self.preset_before if self.preset_before not in ("", "auto", "custom") else self.resolved_preset
    presets = protocol.PRESETS
    base = presets.get(chosen or "draft", presets["draft"])
    for row in flags.custom_rows():
        value = base[row.name]
        names = row.prop_names
        for name, v in zip(names, value) if len(names) == 2 else [(names[0], value)]:
            setattr(self, name, v)


class M2VSegmentSettings(bpy.types.PropertyGroup):
    """One segment's direction (the settings table's ``segment`` rows: prompt, weight, take, new chain), kept with
    the cut marker that starts the segment."""

    cut: StringProperty(name="Cut", description="Name of the cut marker that starts this segment ('' for the first)")
    frame: IntProperty(name="Frame", description="Where that marker was when last seen")


class M2VSceneSettings(bpy.types.PropertyGroup):
    resolved_preset: StringProperty(
        name="Preset in Use", default="", description="What Auto chose at the last Analyze (paper or draft)"
    )
    preset_before: StringProperty(
        name="Preset Before Custom", default="", description="The preset chosen before Custom (its values fill Custom)"
    )
    lyrics_json: StringProperty(
        name="Lyric Texts", description="Full lyric texts behind the lyric markers (JSON)", default="[]"
    )
    segments: CollectionProperty(type=M2VSegmentSettings, name="Segments")
    segments_index: IntProperty(name="Segment", default=0)
    new_lyric: StringProperty(name="Lyric", description="Words for Add Lyric at Playhead")
    analysis_json: StringProperty(
        name="Analysis", default="", description="The last analysis: level curve, beats, device calibration (JSON)"
    )
    # Live state (shown in the panel, not user settings).
    running: BoolProperty(name="Running", get=_running, description="m2v is working on this scene")
    job_kind: StringProperty(default="", options={"SKIP_SAVE"})
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(name="Status", default="", options={"SKIP_SAVE"})


# The table's rows become annotations before Blender registers the classes (it reads them then). They are given as
# the class body gives them (this module's annotations are text that Blender evaluates at registration): a property
# object put into the annotations itself, with an update hook, crashes Blender 4.2's bpy module at exit.
_SEGMENT_ROWS = setting_properties("segment")
_SCENE_ROWS = setting_properties("scene", {"preset_changed": _preset_changed})
M2VSegmentSettings.__annotations__.update({name: f"_SEGMENT_ROWS[{name!r}]" for name in _SEGMENT_ROWS})
M2VSceneSettings.__annotations__.update({name: f"_SCENE_ROWS[{name!r}]" for name in _SCENE_ROWS})


def register() -> None:
    bpy.utils.register_class(M2VSegmentSettings)
    bpy.utils.register_class(M2VSceneSettings)
    bpy.types.Scene.m2v = PointerProperty(type=M2VSceneSettings)
    # A text strip's prompt weight: a real property (limits, slider), shown on the strip's m2v panel. It belongs to a
    # strip, not to the scene's settings: not a row of the settings table.
    setattr(
        directing.text_strip_type(),
        directing.WEIGHT_PROP,
        FloatProperty(
            name="Prompt Weight",
            default=1.0,
            min=0.0,
            max=1.0,
            subtype="FACTOR",
            description="1: the strip's text replaces the lyric or audio guidance of its images; below 1 it mixes in",
        ),
    )


def unregister() -> None:
    delattr(directing.text_strip_type(), directing.WEIGHT_PROP)
    del bpy.types.Scene.m2v
    bpy.utils.unregister_class(M2VSceneSettings)
    bpy.utils.unregister_class(M2VSegmentSettings)

"""Settings on ``scene.m2v`` (saved with the .blend) and live job state shown in the panel."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import directing, registry
from .contract import protocol
from .setting_props import setting_properties

BLEND_TYPES = [
    (t, t.replace("_", " ").title(), "")
    for t in ("REPLACE", "CROSS", "ALPHA_OVER", "ALPHA_UNDER", "ADD", "SUBTRACT", "MULTIPLY", "SCREEN", "OVERLAY")
]


def _running(self) -> bool:
    return registry.is_running(self.id_data)


_P = protocol.PRESETS

PRESET_ITEMS = [
    ("auto", "Auto", "Paper on a GPU, Draft on a CPU (decided by the engine at Analyze)"),
    ("paper", "Paper", "The paper's method as its text reads: every beat, 10-120 steps/s, 512x512"),
    ("draft", "Draft", "A fast preview: scene changes, 2-8 steps/s, 256x256"),
    ("musicvideo", "Music Video", "Paper, with a zoom pulse on every beat and a drift that follows the loudness"),
    ("custom", "Custom", "Your own values below"),
]


def _preset_changed(self, context) -> None:
    """Choosing Custom starts from the values of the preset in use, so nothing jumps."""
    if self.preset == "custom":
        base = _P.get(self.resolved_preset or "draft", _P["draft"])
        self.granularity = base["granularity"]
        self.min_rate, self.max_rate = base["min_rate"], base["max_rate"]
        self.width, self.height = base["size"]
        self.cutouts = base["cutouts"]
        self.cut_method = base["cutout_method"]


class M2VSegmentSettings(bpy.types.PropertyGroup):
    """One segment's direction: a prompt and a take, kept with the cut marker that starts the segment."""

    cut: StringProperty(name="Cut", description="Name of the cut marker that starts this segment ('' for the first)")
    frame: IntProperty(name="Frame", description="Where that marker was when last seen")
    prompt: StringProperty(
        name="Prompt", description="What this segment should show: replaces (or mixes with) its lyric or audio"
    )
    prompt_weight: FloatProperty(
        name="Weight",
        default=1.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="1: the prompt replaces the lyric or audio guidance; below 1 it mixes with it",
    )
    take: IntProperty(name="Take", default=0, min=0, description="Another take changes only this segment's draws")
    new_chain: BoolProperty(
        name="New Chain",
        default=False,
        description="Start an independent latent chain here: a fresh image at this cut (chains can render at "
        "once on a Ray cluster)",
    )


class M2VSceneSettings(bpy.types.PropertyGroup):
    song_strip: StringProperty(
        name="Song Strip", description="Sound strip to use (empty: the active or only sound strip)"
    )
    lyrics_file: StringProperty(
        name="Lyrics", description="Timed lyrics: .lrc, .srt, .vtt or .csv", subtype="FILE_PATH"
    )
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="auto", update=_preset_changed)
    resolved_preset: StringProperty(
        name="Preset in Use", default="", description="What Auto chose at the last Analyze (paper or draft)"
    )
    output_dir: StringProperty(
        name="Output", default="//m2v/", subtype="DIR_PATH", description="Folder for plans, frames and the engine log"
    )
    channel: IntProperty(
        name="Channel",
        default=2,
        min=1,
        max=128,
        description="Channel for the generated strips (or the next free one above)",
    )
    blend_type: EnumProperty(name="Blend", items=BLEND_TYPES, default="REPLACE")
    opacity: FloatProperty(name="Opacity", default=1.0, min=0.0, max=1.0, subtype="FACTOR")
    lyrics_json: StringProperty(
        name="Lyric Texts", description="Full lyric texts behind the lyric markers (JSON)", default="[]"
    )
    segments: CollectionProperty(type=M2VSegmentSettings, name="Segments")
    segments_index: IntProperty(name="Segment", default=0)
    snap_cuts: BoolProperty(
        name="Snap Cuts to Beats",
        default=True,
        description="Cuts move to the nearest beat of the last analysis (at Add Cut and at Render)",
    )
    new_lyric: StringProperty(name="Lyric", description="Words for Add Lyric at Playhead")
    analysis_json: StringProperty(
        name="Analysis", default="", description="The last analysis: level curve, beats, device calibration (JSON)"
    )
    # Footage & Motion (m2v_blender/footage.py turns these into engine flags).
    footage_strip: StringProperty(
        name="Footage", description="Movie or image strip whose frames the generated images follow (empty: none)"
    )
    use_motion: BoolProperty(
        name="Custom Motion", default=False, description="Set the motion here (else the preset's: Music Video moves)"
    )
    # Live state (shown in the panel, not user settings).
    running: BoolProperty(name="Running", get=_running, description="m2v is working on this scene")
    job_kind: StringProperty(default="", options={"SKIP_SAVE"})
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(name="Status", default="", options={"SKIP_SAVE"})


def directing_properties() -> dict[str, object]:
    """Directing from the timeline (``directing``): text strips as prompts, cuts from strips, music baked into keys.
    (Which of these become rows of the settings table: /work/notes/timeline-phaseB.md.)"""
    signal_labels = {"intensity": "Intensity", "onset": "Onset Strength", "beat": "Beat Pulse"}
    return {
        "use_prompt_strips": BoolProperty(
            name="Prompts from Text Strips",
            default=False,
            description="Text strips on the Prompt Channel guide the images in their span, as lyrics do",
        ),
        "prompt_channel": IntProperty(
            name="Prompt Channel",
            default=3,
            min=1,
            max=128,
            description="Channel whose text strips are prompts (and where Lyrics to Text Strips puts the lyrics)",
        ),
        "cut_channel": IntProperty(
            name="Channel",
            default=1,
            min=1,
            max=128,
            description="Channel of your footage edit: each of its strips' starts and ends becomes a cut",
        ),
        "cut_snap": BoolProperty(
            name="Snap to Beats",
            default=False,
            description="Move each new cut to the nearest beat of the last analysis (else exactly on the strip cut)",
        ),
        "bake_target": EnumProperty(
            name="Setting",
            items=[
                (ident, label, f"Keyframe {label} with the music") for ident, _, _, label in directing.bake_targets()
            ],
            description="The setting the keyframes go on",
        ),
        "bake_signal": EnumProperty(
            name="Signal",
            items=[
                (
                    s,
                    signal_labels.get(s, f"{s.title()} Band"),
                    f"The song's {signal_labels.get(s, s + ' band loudness')}",
                )
                for s in protocol.SIGNALS
            ],
            description="What of the music the keys follow (0-1 over the song)",
        ),
        "bake_min": FloatProperty(name="Min", default=0.0, description="The setting's value where the signal is 0"),
        "bake_max": FloatProperty(name="Max", default=1.0, description="The setting's value where the signal is 1"),
    }


# The table's rows become annotations before Blender registers the class (it reads them then).
M2VSceneSettings.__annotations__.update(setting_properties("scene"))
M2VSceneSettings.__annotations__.update(directing_properties())


def register() -> None:
    bpy.utils.register_class(M2VSegmentSettings)
    bpy.utils.register_class(M2VSceneSettings)
    bpy.types.Scene.m2v = PointerProperty(type=M2VSceneSettings)
    # A text strip's prompt weight: a real property (limits, slider, keyframes), shown on the strip's m2v panel.
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

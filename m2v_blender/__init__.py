"""m2v Blender add-on: song -> timeline markers -> rendered image strips in the VSE.

Runs inside Blender and never imports torch: heavy work happens in the engine
subprocess (``python -m engine``) in a separately managed environment.
Split as Blender's bundled add-ons are: properties, operators, panels, preferences.
"""

from __future__ import annotations

import contextlib

import bpy

from . import directing_ui, handoff_ops, markers, operators, panels, preferences, properties, registry

_MODULES = (properties, preferences, operators, handoff_ops, panels, directing_ui)
_KEYMAPS: list = []
#: Add Cut at Playhead. Shift+M is free in Blender's default Sequencer and Markers keymaps (M adds a marker).
ADD_CUT_KEY = {"type": "M", "value": "PRESS", "shift": True}


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # Closing or replacing the file stops any engine: no orphaned processes.
    registry.stop_all_jobs()


def _sync_tick() -> float:
    """With a window: keep each scene's segment list in step with its cut markers as the editor moves them."""
    for scene in bpy.data.scenes:
        with contextlib.suppress(AttributeError, RuntimeError):  # a scene mid-load or without m2v's settings
            markers.sync_segments(scene)
    return 0.5


def register() -> None:
    for m in _MODULES:
        m.register()
    bpy.app.handlers.load_pre.append(_on_load_pre)
    kc = bpy.context.window_manager.keyconfigs.addon if bpy.context.window_manager else None
    if kc is not None:
        km = kc.keymaps.new(name="Sequencer", space_type="SEQUENCE_EDITOR")
        _KEYMAPS.append((km, km.keymap_items.new("m2v.add_cut", **ADD_CUT_KEY)))
    if not bpy.app.background:
        bpy.app.timers.register(_sync_tick, first_interval=1.0, persistent=True)


def unregister() -> None:
    registry.stop_all_jobs()
    if bpy.app.timers.is_registered(_sync_tick):
        bpy.app.timers.unregister(_sync_tick)
    for km, kmi in _KEYMAPS:
        km.keymap_items.remove(kmi)
    _KEYMAPS.clear()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    for m in reversed(_MODULES):
        m.unregister()

"""m2v Blender add-on: song -> timeline markers -> rendered image strips in the VSE.

Runs inside Blender and never imports torch: heavy work happens in the engine
subprocess (``python -m engine``) in a separately managed environment.
Split as Blender's bundled add-ons are: properties, operators, panels, preferences.
"""

from __future__ import annotations

import bpy

from . import jobs, operators, panels, preferences, properties

_MODULES = (properties, preferences, operators, panels)


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # Closing or replacing the file stops any engine: no orphaned processes.
    jobs.stop_all_jobs()


def register() -> None:
    for m in _MODULES:
        m.register()
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    jobs.stop_all_jobs()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    for m in reversed(_MODULES):
        m.unregister()

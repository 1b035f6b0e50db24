"""Add-on preferences: where the managed engine environment and the model files live."""

from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy.props import StringProperty

from .contract import settings_table
from .setting_props import setting_properties


def _user_dir() -> Path:
    # The extension's own folder is replaced on upgrade: keep environments and models in its user folder.
    try:
        return Path(bpy.utils.extension_path_user(__package__, create=True))
    except (ValueError, AttributeError):
        return Path(bpy.utils.user_resource("DATAFILES", path="m2v", create=True))


class M2VPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    check_result: StringProperty(default="", options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        layout.label(text="The engine (PyTorch, about 5 GB) runs in its own environment, outside Blender.")
        layout.prop(self, "env_dir")
        layout.prop(self, "models_dir")
        layout.prop(self, "device")
        row = layout.row()
        row.prop(self, "render_on", expand=True)
        if self.render_on == "RAY":
            layout.prop(self, "ray_address")
        row = layout.row()
        row.operator("m2v.install_engine", icon="IMPORT")
        row.operator("m2v.fetch_models", icon="URL")
        row.operator("m2v.check_engine", icon="CHECKMARK")
        st = context.scene.m2v if context.scene else None
        if st and st.running and st.job_kind in ("install", "fetch", "check"):
            layout.label(text=st.status or "working...")
        for line in self.check_result.splitlines():
            layout.label(text=line)


# The table's preference rows (folders, the device, where to render), as Blender reads them at register time.
M2VPreferences.__annotations__.update(setting_properties("preferences"))


def prefs(context=None) -> M2VPreferences | None:
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def env_dir(context=None) -> Path:
    p = prefs(context)
    if p and p.env_dir:
        return Path(bpy.path.abspath(p.env_dir))
    return _user_dir() / "engine-env"


def models_dir(context=None) -> Path:
    if os.environ.get("M2V_MODELS"):
        return Path(os.environ["M2V_MODELS"])
    p = prefs(context)
    if p and p.models_dir:
        return Path(bpy.path.abspath(p.models_dir))
    return _user_dir() / "models"


def engine_python(context=None) -> Path:
    """``$M2V_ENGINE_PYTHON`` (scripts, render farms), else the managed environment's interpreter."""
    from .engine_client import default_python, env_python

    return Path(default_python()) if default_python() else env_python(env_dir(context))


def device(context=None) -> str:
    p = prefs(context)
    return os.environ.get("M2V_DEVICE") or (p.device if p else "auto")


def ray_args(context=None) -> list[str]:
    """The engine's ``--ray [ADDRESS]`` when the preferences say Ray cluster.

    ``$M2V_RAY`` overrides them (scripts, farms): empty is this computer, ``local`` a local Ray instance,
    anything else a cluster's address."""
    p = prefs(context)
    address = os.environ.get("M2V_RAY")
    if address is None:
        if not p or p.render_on != "RAY":
            return []
        address = p.ray_address.strip() or "local"
    address = address.strip()
    if not address:
        return []
    return settings_table.flag_words(settings_table.row("ray"), address)


def register() -> None:
    bpy.utils.register_class(M2VPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(M2VPreferences)

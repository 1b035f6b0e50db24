"""Blender properties made from the settings table's rows (``engine/settings_table.py``, ``UI``).

A row the add-on shows becomes a property on ``scene.m2v`` (or on the add-on's
preferences) with the row's label, help, default, limits (the add-on's own
where they differ) and choices.
"""

from __future__ import annotations

from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from .contract import protocol, settings_table


def _default(row, ui):
    """The add-on's default: its own, a preset's (``ui.default_preset``), or the engine's."""
    if ui.default is not None:
        return ui.default
    if ui.default_preset:
        values = {**protocol.PRESETS.get(ui.default_preset, {}), **protocol.MOTION_PRESETS.get(ui.default_preset, {})}
        return values[row.name]
    return row.default


def setting_properties(owner: str = "scene") -> dict[str, object]:
    """``{property name: bpy property}`` for every row of the settings table the add-on shows on ``owner``."""
    out = {}
    for row in settings_table.SETTINGS:
        ui = row.ui
        if ui is None or ui.owner != owner:
            continue
        default = _default(row, ui)
        common = {"name": ui.label, "description": ui.description or (row.help[:1].upper() + row.help[1:])}
        common["description"] = common["description"].replace("%(default)s", str(row.default)).replace("%%", "%")
        limits = {"min": row.lo if ui.lo is None else ui.lo, "max": row.hi if ui.hi is None else ui.hi}
        limits.update(soft_max=ui.soft_max, step=ui.step, subtype=ui.subtype, unit=ui.unit)
        limits = {k: v for k, v in limits.items() if v is not None}
        names = row.prop_names
        if row.type == "choice":
            items = [(c, *ui.items.get(c, (c.title(), ""))) for c in row.choices]
            out[names[0]] = EnumProperty(items=items, default=default, **common)
        elif row.type == "str":
            out[names[0]] = StringProperty(default=default or "", **common)
        elif row.type == "bool":
            out[names[0]] = BoolProperty(default=bool(default), **common)
        elif len(names) == 2:  # a pair shown as two fields (--size: width, height)
            make = IntProperty if row.integer else FloatProperty
            for name, part, d in zip(names, row.parts, default):
                out[name] = make(**{**common, "name": part.title()}, default=d, **limits)
        elif row.nargs == 2:
            out[names[0]] = FloatVectorProperty(size=2, default=default, **common, **limits)
        else:
            make = IntProperty if row.integer else FloatProperty
            out[names[0]] = make(default=default, **common, **limits)
    return out

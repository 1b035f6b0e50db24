"""Blender properties made from the settings table's rows (``engine/settings_table.py``, ``UI``).

A row the add-on shows becomes a property on ``scene.m2v``, on the add-on's
preferences or on each item of ``scene.m2v.segments`` (its ``UI.owner``), with
the row's label, help, default, limits (the add-on's own where they differ),
choices and update hook.
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


#: Every menu's items, for the life of the add-on's module: Blender 4.2 keeps pointers to their strings, and a string
#: made here (not a literal) freed before Blender reads it at exit crashes it.
_MENUS: list[list[tuple[str, str, str]]] = []


def _items(row, ui) -> list[tuple[str, str, str]]:
    """A choice row's menu: its choices (a preset's label and description from the table), then the add-on's own."""
    out: list[tuple[str, str, str]] = []
    _MENUS.append(out)
    for c in row.choices:
        if row.name == "preset":
            out.append((c, *settings_table.preset_item(c, protocol.PRESETS)))
        else:
            out.append((c, *ui.items.get(c, (c.replace("_", " ").title(), ""))))
    return out + [(c, label, text) for c, (label, text) in ui.extra_items.items()]


def setting_properties(owner: str = "scene", hooks: dict | None = None) -> dict[str, object]:
    """``{property name: bpy property}`` for every row of the settings table the add-on shows on ``owner``.

    ``hooks``: the update functions rows name (``UI.on_change``).
    """
    out = {}
    for row in settings_table.SETTINGS:
        ui = row.ui
        if ui is None or ui.owner != owner:
            continue
        default = _default(row, ui)
        text = ui.description or (row.help[:1].upper() + row.help[1:])
        common = {"name": ui.label, "description": text.replace("%(default)s", str(row.default)).replace("%%", "%")}
        if ui.on_change:
            common["update"] = (hooks or {})[ui.on_change]
        limits = {"min": row.lo if ui.lo is None else ui.lo, "max": row.hi if ui.hi is None else ui.hi}
        limits.update(soft_max=ui.soft_max, step=ui.step, subtype=ui.subtype, unit=ui.unit)
        limits = {k: v for k, v in limits.items() if v is not None}
        names = row.prop_names
        if row.type == "choice":
            out[names[0]] = EnumProperty(items=_items(row, ui), default=default, **common)
        elif row.type in ("str", "path"):
            extra = {"subtype": ui.subtype} if ui.subtype else {}
            out[names[0]] = StringProperty(default=default or "", **common, **extra)
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


def section_rows(section: str) -> list:
    """The rows a panel section draws, in table order."""
    return [r for r in settings_table.SETTINGS if r.ui is not None and r.ui.section == section]


def draw_section(layout, data, section: str, held: set[str]) -> None:
    """Draw a panel section's rows on ``layout``: rows sharing a ``line`` side by side, a pair's two fields on one
    line; a row whose ``shown`` conditions do not all hold (of ``held``) is left out."""
    rows = [r for r in section_rows(section) if all(c in held for c in r.ui.shown)]
    col = layout.column(align=True)
    i = 0
    while i < len(rows):
        line = [rows[i]]
        while rows[i].ui.line and i + 1 < len(rows) and rows[i + 1].ui.line == rows[i].ui.line:
            i += 1
            line.append(rows[i])
        props = [(name, r.ui.bare) for r in line for name in r.prop_names]
        target = col.row(align=True) if len(props) > 1 else col
        for name, bare in props:
            if bare:
                target.prop(data, name, text="")
            else:
                target.prop(data, name)
        i += 1

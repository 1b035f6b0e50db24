"""The engine flags the editor's settings stand for, and the preset they start from.

No bpy: ``st`` is anything with the settings' attributes (``scene.m2v`` in
Blender), so the flag building is tested without Blender. Every flag comes
from a row of the settings table (``engine/settings_table.py``): each row the
add-on shows says when its flag is passed (``UI.when``), and the flags the
add-on passes itself (files, spans, the preset) are made from their rows too
(:func:`flag`).
"""

from __future__ import annotations

from .contract import protocol, settings_table


def flag(name: str, value) -> list[str]:
    """The command-line words of setting ``name`` at ``value`` (its row's flag; nothing for an unset switch)."""
    return settings_table.flag_words(settings_table.row(name), value)


def custom_rows() -> list:
    """The rows the Custom preset lets the editor set (``UI.when`` holds ``custom``)."""
    return [r for r in settings_table.SETTINGS if r.ui is not None and "custom" in r.ui.when]


def effective(st) -> dict:
    """The values a render will use: the preset's (Auto: what the last Analyze chose), or the Custom fields."""
    if st.preset == "custom":
        return {row.name: row_value(st, row) for row in custom_rows()}
    return dict(protocol.PRESETS[preset_in_use(st)])


def preset_in_use(st) -> str:
    """The named preset a render uses (not for Custom): Auto means what the last Analyze chose."""
    return st.preset if st.preset != "auto" else (st.resolved_preset or "draft")


def row_value(st, row):
    """A row's value on ``st`` (a pair shown as two properties: both)."""
    names = row.prop_names
    if len(names) == 2:
        return tuple(getattr(st, n) for n in names)
    value = getattr(st, names[0])
    return tuple(value) if row.nargs == 2 else value


def setting_args(st, command: str, conditions: set[str], preferences: dict | None = None) -> list[str]:
    """Flags for every table row ``command`` takes that the add-on shows and whose ``when`` holds.

    ``st``: the scene's settings; ``preferences``: the values of the rows the preferences own (the device, with
    its environment override). ``conditions``: what holds now, of ``custom``, ``footage``, ``motion``, ``model``
    (``given`` is checked per value: a non-empty one).
    """
    out: list[str] = []
    for row in settings_table.for_command(command):
        if row.ui is None or "never" in row.ui.when:
            continue
        if row.ui.owner == "preferences":
            if preferences is None or row.name not in preferences:
                continue
            value = preferences[row.name]
        elif row.ui.owner == "scene":
            value = row_value(st, row)
        else:
            continue
        held = conditions | ({"given"} if value not in (None, "") else set())
        if all(w in held for w in row.ui.when):
            out += settings_table.flag_words(row, row.ui.flag_values.get(value, value))
    return out


def conditions(st, preview: bool = False, footage: bool = False) -> set[str]:
    """What holds for the scene's settings now (see :func:`setting_args`)."""
    held = {"custom"} if st.preset == "custom" else set()
    if footage:
        held.add("footage")
    if st.use_motion:
        held.add("motion")
    if not preview:
        held.add("model")
    return held


def preset_args(st, fps: float | None) -> list[str]:
    """``--preset`` (Custom: the draft preset's, every value the editor set overriding it) and ``--fps``."""
    row = settings_table.row("preset")
    out = settings_table.flag_words(row, row.ui.flag_values.get(st.preset, st.preset))
    if fps is not None:
        out += flag("fps", fps)
    return out

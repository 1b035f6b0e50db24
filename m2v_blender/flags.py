"""The editor's preset and the engine flags the editor's settings stand for.

No bpy: ``st`` is anything with the settings' attributes (``scene.m2v`` in
Blender), so the flag building is tested without Blender. The flags come from
the settings table (``engine/settings_table.py``): each row the add-on shows
says when its flag is passed (``UI.when``).
"""

from __future__ import annotations

from .contract import protocol, settings_table


def effective(st) -> dict:
    """The values a render will use: the preset's (Auto: what the last Analyze chose), or the Custom fields."""
    if st.preset == "custom":
        return {
            "granularity": st.granularity,
            "min_rate": st.min_rate,
            "max_rate": st.max_rate,
            "size": (st.width, st.height),
            "cutouts": st.cutouts,
            "cutout_method": st.cut_method,
        }
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


def setting_args(st, command: str, conditions: set[str]) -> list[str]:
    """Flags for every table row ``command`` takes that the add-on shows on the scene and whose ``when`` holds.

    ``conditions``: what holds now, of ``custom``, ``footage``, ``motion``, ``model`` (``given`` is checked
    per value: a non-empty one).
    """
    out: list[str] = []
    for row in settings_table.for_command(command):
        if row.ui is None or row.ui.owner != "scene":
            continue
        value = row_value(st, row)
        held = conditions | ({"given"} if value not in (None, "") else set())
        if all(w in held for w in row.ui.when):
            out += settings_table.flag_words(row, value)
    return out


def conditions(st, layout: bool = False, footage: bool = False) -> set[str]:
    """What holds for the scene's settings now (see :func:`setting_args`)."""
    held = {"custom"} if st.preset == "custom" else set()
    if footage:
        held.add("footage")
    if st.use_motion:
        held.add("motion")
    if not layout:
        held.add("model")
    return held


def preset_args(st, fps: float | None) -> list[str]:
    """``--preset`` (Custom: the draft preset's, every value the editor set overriding it) and ``--fps``."""
    out = ["--preset", "draft" if st.preset == "custom" else st.preset]
    if fps is not None:
        out += ["--fps", repr(float(fps))]
    return out

"""Checks on settings, made from the settings table (:mod:`engine.settings_table`).

Every number finite and in its row's range (whole where it must be), every
choice one of its row's choices, every text non-empty: a bad value is an
:class:`~engine.errors.InputError` that names the flag, wherever it enters
(a flag, a ``RenderSettings`` built in code, a pair's part).
"""

from __future__ import annotations

from engine.errors import InputError
from engine.files import check_number
from engine.settings_table import Setting, by_name, in_scope

ROWS: dict[str, Setting] = by_name()


def check_value(s: Setting, value, label: str | None = None):
    """One value of row ``s`` (one part of a pair), checked; returns it as the engine uses it."""
    label = label or s.label
    if s.type in ("int", "float"):
        return check_number(value, label, s.lo, s.hi, integer=s.integer, lo_open=s.lo_open)
    if s.type == "choice":
        if value not in s.choices:
            raise InputError(f"{label} must be one of {', '.join(s.choices)}, not {value!r}")
    elif s.type == "str":
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{label} is empty; leave it out for no {s.name.replace('_', ' ')}")
    elif s.type == "bool" and not isinstance(value, bool):
        raise InputError(f"{label} must be true or false, got {value!r}")
    return value


def check_setting(name: str, value):
    """The value of setting ``name`` (a pair: both parts), checked; ``None`` passes where the default is ``None``."""
    s = ROWS[name]
    if value is None and s.default is None:
        return None
    if s.nargs == 2:
        parts = s.parts or ("first", "second")
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise InputError(f"{s.label} takes two values, got {value!r}")
        return tuple(check_value(s, v, f"{s.label} {p}") for v, p in zip(value, parts))
    return check_value(s, value)


def check_fields(obj, scope: str = "render") -> None:
    """Every field of ``obj`` (a ``RenderSettings``) that a row of ``scope`` makes, checked."""
    for s in in_scope(scope):
        if s.fields:
            for f, part in zip(s.fields, s.parts):
                check_value(s, getattr(obj, f), f"{s.label} {part}")
        else:
            check_setting(s.name, getattr(obj, s.name))

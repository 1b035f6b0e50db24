"""Checks on settings, made from the settings table (:mod:`engine.settings_table`).

Every number finite and in its row's range (whole where it must be), every
choice one of its row's choices, every text non-empty, every pair in order
where its row says so, every row not below the row it must reach
(``at_least``): a bad value is an :class:`~engine.errors.InputError` that
names the flag (or the file and field), wherever it enters (a flag, a
settings object built in code, a plan's segment, a segment-settings entry).
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.errors import InputError
from engine.files import check_number
from engine.settings_table import Setting, by_name, in_scope

ROWS: dict[str, Setting] = by_name()


def check_value(s: Setting, value, label: str | None = None, path: str | Path | None = None):
    """One value of row ``s`` (one part of a pair), checked; returns it as the engine uses it."""
    label = label or s.label
    if s.type in ("int", "float"):
        return check_number(value, label, s.lo, s.hi, integer=s.integer, lo_open=s.lo_open, path=path)
    if s.type == "choice":
        if value not in s.choices:
            raise InputError(f"{label} must be one of {', '.join(s.choices)}, not {value!r}", path)
    elif s.type in ("str", "path"):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{label} is empty; leave it out for no {s.name.replace('_', ' ')}", path)
        if s.must_exist and not Path(value).expanduser().exists():
            raise InputError(f"{label} not found", value)
    elif s.type == "bool" and not isinstance(value, bool):
        raise InputError(f"{label} must be true or false, got {value!r}", path)
    elif s.type == "times":
        return parse_times(value, label)
    return value


def parse_times(value, label: str) -> tuple[float, ...]:
    """Song seconds: ``"12.5,40"`` (or a sequence of numbers), each finite and not negative; not none."""
    parts = value.replace(" ", "").split(",") if isinstance(value, str) else list(value)
    out = []
    for part in parts:
        if part == "":
            continue
        try:
            t = float(part)
        except (TypeError, ValueError):
            raise InputError(f"{label} takes song seconds separated by commas, not {part!r}") from None
        if not math.isfinite(t) or t < 0:
            raise InputError(f"{label} {part}: not a time in the song")
        out.append(t)
    if not out:
        raise InputError(f"{label} is empty: give the song seconds of cuts, e.g. {label} 12.5,40")
    return tuple(out)


def check_setting(name: str, value, label: str | None = None, path: str | Path | None = None):
    """The value of setting ``name`` (a pair: both parts, in order where the row says so), checked; ``None``
    passes where the default is ``None``."""
    s = ROWS[name]
    if value is None and s.default is None:
        return None
    label = label or s.label
    if s.nargs == 2:
        parts = s.parts or ("first", "second")
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise InputError(f"{label} takes two values, got {value!r}", path)
        a, b = (check_value(s, v, f"{label} {p}", path) for v, p in zip(value, parts))
        if s.increasing and b <= a:
            raise InputError(f"{label} must end after it starts, got {a} to {b}", path)
        return a, b
    return check_value(s, value, label, path)


def check_values(values: dict, scopes: tuple[str, ...]) -> dict:
    """Every field of ``values`` that a row of ``scopes`` makes, checked (and the rows' ``at_least``); returns the
    values as the engine uses them (numbers as ``int`` or ``float``, pairs as tuples)."""
    out = dict(values)
    for s in in_scope(*scopes):
        if s.fields:
            pair = check_setting(s.name, tuple(values[f] for f in s.fields))
            out.update(zip(s.fields, pair))
        elif s.name in values:
            out[s.name] = check_setting(s.name, values[s.name])
    for s in in_scope(*scopes):
        low = ROWS.get(s.at_least) if s.at_least else None
        v, w = out.get(s.name), out.get(low.name) if low is not None else None
        if v is not None and w is not None and v < w:
            raise InputError(f"{s.label} ({v}) is below {low.label} ({w})")
    return out


def check_entry(entry: dict, scope: str, label: str, path: str | Path | None = None, blank_is_none: bool = False):
    """The values of ``scope``'s rows in one entry of a file (a plan's segment, a segment-settings entry), checked
    and named ``"<label> <field>"``; a field left out takes its row's default. ``blank_is_none``: blank text
    counts as none (a segment-settings file's empty prompt)."""
    out = {}
    for s in in_scope(scope):
        v = entry.get(s.name, s.default)
        if blank_is_none and s.type == "str" and isinstance(v, str):
            v = v.strip() or None
        if v is None and s.default is None:
            out[s.name] = None
            continue
        if s.type == "str" and not isinstance(v, str):
            raise InputError(f"{label} {s.name} must be text (or null)", path)
        out[s.name] = check_value(s, v, f"{label} {s.name}", path)
    return out

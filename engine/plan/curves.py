"""Keyframed settings: a setting's value over song time, and each image's value.

A curves file (``--curves``) gives, per setting that can change over time, keys of
``[song seconds, value, interpolation towards the next key]``::

    {"kind": "m2v-curves", "version": 1,
     "curves": {"zoom": [[0.0, 0.0, "constant"], [4.0, 0.05, "linear"], [8.0, 0.1, "linear"]],
                "shift": [[0.0, [0.0, 0.0], "linear"], [12.0, [40.0, -8.0], "linear"]]}}

- The value is held before the first key and after the last (the last key's interpolation is not used).
- ``constant`` holds a key's value up to the next key; ``linear`` goes in a straight line to the next key's value.
- Keys are in strictly increasing time, inside the song (0 to its duration); values are finite and inside the
  setting's range; a setting of two numbers (``shift``) takes a pair a key.
- **Each image takes the value at its start** (its slot's start, :func:`engine.protocol.image_slots`), so all
  the steps of an image use one value.

**What the add-on sends.** Blender's F-curves (bezier, easing, elastic, modifiers...) are not re-implemented here:
the add-on evaluates each animated setting with Blender's own F-curve at every image's first timeline frame and
sends one ``constant`` key per image, at that image's start, holding that value. Evaluated at the image's start,
such a key gives exactly the value Blender gave, whatever the interpolation was. A key counts from
:data:`TIME_TOLERANCE` seconds before its time, so float rounding of an image's start never picks the key before.

Which settings can change over time is a column of the settings table (``animatable``, :func:`animatable_specs`);
the parsing functions take the set as a parameter (:class:`CurveSpec` per setting name). Standard library only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.files import check_input_document, check_number, read_json
from engine.protocol import CURVES_KIND, CURVES_VERSION, image_slots
from engine.settings_table import SETTINGS

#: How a key goes on to the next one.
INTERPOLATIONS = ("constant", "linear")
#: A key counts from this many seconds before its time (the add-on's keys sit exactly on images' starts).
TIME_TOLERANCE = 1e-6
#: Most keys one curve may hold (one per image of a long song at 240 fps is far fewer).
MAX_KEYS = 10_000_000

Value = float | tuple[float, ...]


@dataclass(frozen=True)
class CurveSpec:
    """What a curve of one setting may hold: ``width`` numbers a value (1, or 2 for a pair), in ``[lo, hi]``."""

    width: int = 1
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Curve:
    """One setting's keys: times (strictly increasing song seconds), values and interpolations."""

    name: str
    times: tuple[float, ...]
    values: tuple[Value, ...]
    modes: tuple[str, ...]

    def value_at(self, t: float) -> Value:
        """The value at song time ``t``: held before the first key and after the last, else interpolated."""
        k = bisect.bisect_right(self.times, t + TIME_TOLERANCE) - 1
        if k < 0:
            return self.values[0]
        if k >= len(self.times) - 1 or self.modes[k] == "constant":
            return self.values[k]
        t0, t1 = self.times[k], self.times[k + 1]
        f = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        a, b = self.values[k], self.values[k + 1]
        if isinstance(a, tuple):
            return tuple(x + f * (y - x) for x, y in zip(a, b))
        return a + f * (b - a)

    def values_at(self, times: Iterable[float]) -> list[Value]:
        return [self.value_at(t) for t in times]

    def constant(self) -> Value | None:
        """The one value the curve holds everywhere, or None when it changes."""
        first = self.values[0]
        return first if all(v == first for v in self.values) else None


def animatable_specs() -> dict[str, CurveSpec]:
    """What a curve of each ``animatable`` row of the settings table may hold (the only list of them)."""
    return {s.name: CurveSpec(2 if s.nargs == 2 else 1, s.lo, s.hi) for s in SETTINGS if s.animatable}


def _specs(animatable: Mapping[str, CurveSpec] | Iterable[str]) -> dict[str, CurveSpec]:
    if isinstance(animatable, Mapping):
        return dict(animatable)
    return {name: CurveSpec() for name in animatable}


def _value(v: object, name: str, spec: CurveSpec, path) -> Value:
    if spec.width == 1:
        return check_number(v, name, spec.lo, spec.hi, path=path)
    if not isinstance(v, list) or len(v) != spec.width:
        raise InputError(f"{name} must be a list of {spec.width} numbers, got {str(v)[:60]}", path)
    return tuple(check_number(x, f"{name}[{i}]", spec.lo, spec.hi, path=path) for i, x in enumerate(v))


def parse_curve(
    name: str, keys: object, spec: CurveSpec, duration: float | None = None, path: str | Path = "<curves>"
) -> Curve:
    """One setting's keys, checked.

    Raises
    ------
    InputError
        Naming the file, the curve and the key (0-based): not ``[time, value, interpolation]``, a time that is not
        a finite number, outside the song or not after the key before, a value out of the setting's range, an
        interpolation m2v does not know.
    """
    if not isinstance(keys, list) or not keys:
        raise InputError(f"curve {name!r} must be a non-empty list of [time, value, interpolation] keys", path)
    if len(keys) > MAX_KEYS:
        raise InputError(f"curve {name!r} holds {len(keys)} keys, more than {MAX_KEYS}", path)
    times, values, modes = [], [], []
    for j, key in enumerate(keys):
        where = f"curve {name!r} key {j}"
        if not isinstance(key, list) or len(key) != 3:
            raise InputError(f"{where} must be [time, value, interpolation], got {str(key)[:60]}", path)
        t = check_number(key[0], f"{where} time", path=path)
        if t < 0 or (duration is not None and t > duration):
            song = f"0-{duration:g} s" if duration is not None else "from 0 s"
            raise InputError(f"{where} at {t:g} s is outside the song ({song})", path)
        if times and not t > times[-1]:
            raise InputError(f"{where} at {t:g} s does not come after key {j - 1} ({times[-1]:g} s)", path)
        mode = key[2]
        if mode not in INTERPOLATIONS:
            raise InputError(
                f"{where} has an interpolation m2v does not know: {str(mode)[:40]!r} (one of "
                f"{', '.join(INTERPOLATIONS)}; the add-on sends Blender's own evaluation as constant keys)",
                path,
            )
        times.append(t)
        values.append(_value(key[1], f"{where} value", spec, path))
        modes.append(mode)
    return Curve(name, tuple(times), tuple(values), tuple(modes))


def parse_curves(
    doc: object,
    animatable: Mapping[str, CurveSpec] | Iterable[str],
    duration: float | None = None,
    path: str | Path = "<curves>",
) -> dict[str, Curve]:
    """The curves of a ``m2v-curves`` document, every key checked against the song's ``duration``.

    ``animatable``: the settings that can change over time (their :class:`CurveSpec`, or just their names).

    Raises
    ------
    InputError
        A wrong kind or version, no ``curves`` object, a setting that cannot change over time, a bad key.
    """
    check_input_document(doc, CURVES_KIND, CURVES_VERSION, path)
    curves = doc.get("curves")
    if not isinstance(curves, dict):
        raise InputError('no curves object ("curves": {"zoom": [[time, value, interpolation], ...], ...})', path)
    specs = _specs(animatable)
    out = {}
    for name, keys in curves.items():
        if name not in specs:
            raise InputError(
                f"curve {str(name)[:40]!r}: not a setting that can change over time (those are: "
                f"{', '.join(sorted(specs)) or 'none'})",
                path,
            )
        out[name] = parse_curve(name, keys, specs[name], duration, path)
    return out


def load_curves(
    path: str | Path, animatable: Mapping[str, CurveSpec] | Iterable[str] | None = None, duration: float | None = None
) -> dict[str, Curve]:
    """Read and check a curves file (a bounded regular file); see :func:`parse_curves` (``animatable``: the table's
    rows by default)."""
    specs = animatable_specs() if animatable is None else animatable
    return parse_curves(read_json(path, "curves file"), specs, duration, path)


def image_starts(seg: dict) -> list[float]:
    """The start of each image's slot in a plan segment (the export's arithmetic, unrounded)."""
    return [a for a, _ in image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)]


def image_values(curves: Mapping[str, Curve], plan: dict) -> dict[str, list[list[Value]]]:
    """Per setting, per segment, each image's value (the curve at the image's start)."""
    starts = [image_starts(seg) for seg in plan["segments"]]
    return {name: [c.values_at(s) for s in starts] for name, c in curves.items()}


def constant_keys(values: Sequence[tuple[float, Value]]) -> list[list]:
    """``[[time, value, "constant"], ...]``: the exchange form of values sampled at times (the add-on's)."""
    return [[float(t), list(v) if isinstance(v, tuple) else float(v), "constant"] for t, v in values]


def curves_document(curves: Mapping[str, list[list]]) -> dict:
    """A ``m2v-curves`` document of keys per setting."""
    return {"kind": CURVES_KIND, "version": CURVES_VERSION, "curves": dict(curves)}

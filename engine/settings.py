"""The settings objects, made from the settings table's rows: what travels from the parser to the step.

Each class is a frozen dataclass whose fields are the rows of its scopes
(:mod:`engine.settings_table`), in table order, with the rows' defaults; its
values are checked once, when it is made (:mod:`engine.settings_check`), so
whatever holds one holds checked values, and nothing checks them again.

- :class:`AnalysisSettings`: how a song becomes a plan (``analyze``, ``plan``);
- :class:`RenderSettings`: everything a user controls that changes the frames
  (recorded in the manifest, in the cache keys), from the parser to the step;
- :class:`JobSettings`: how a render runs (chains, Ray, resume points).

Each is made from parsed flags (:meth:`TableSettings.from_args`, the preset's
values for what was left out), from keywords (the plan and render functions
take either), or by ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from engine.errors import InputError
from engine.protocol import MOTION_OFF, MOTION_PRESETS, PRESETS
from engine.settings_check import check_values
from engine.settings_table import RENDER_KEY_ALWAYS, Setting, in_scope, preset_value, saved_names, scope_fields


def made_from_table(*scopes: str):
    """Give the decorated class one field per row of ``scopes`` (in table order, with the rows' defaults) and
    make it a frozen dataclass."""

    def make(cls):
        own = dict(cls.__dict__.get("__annotations__", {}))
        fields = {name: Any for name, _ in scope_fields(*scopes)}
        cls.__annotations__ = {**fields, **own}
        for name, default in scope_fields(*scopes):
            setattr(cls, name, default)
        cls.SCOPES = scopes
        return dataclasses.dataclass(frozen=True)(cls)

    return make


class TableSettings:
    """What every settings object does; its fields come from :func:`made_from_table`."""

    SCOPES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        checked = check_values(self.row_values(), self.SCOPES)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def row_values(self) -> dict:
        """The rows' fields and their values (not a class's own fields, such as ``RenderSettings.curves``)."""
        return {name: getattr(self, name) for name, _ in scope_fields(*self.SCOPES)}

    @classmethod
    def rows(cls) -> list[Setting]:
        return in_scope(*cls.SCOPES)

    @classmethod
    def from_values(cls, preset: str | None = None, /, **given):
        """The given values; a row left out (or ``None``) takes the named ``preset``'s value where it has one, else
        its default."""
        values = {}
        for s in cls.rows():
            v = given.pop(s.name, None)
            if v is None and s.fields:
                parts = [given.pop(f, None) for f in s.fields]
                v = None if all(p is None for p in parts) else tuple(parts)
            if v is None and s.preset and preset in PRESETS:
                v = preset_value(s, preset, PRESETS, MOTION_PRESETS, MOTION_OFF)
            if v is None:
                v = s.default
            if s.nargs == 2 and v is not None:
                v = tuple(v)
            values.update(zip(s.fields, v) if s.fields else [(s.name, v)])
        if given:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(sorted(given))}")
        return cls(**values)

    @classmethod
    def from_args(cls, args, preset: str | None = None):
        """The flags the user gave (``argparse`` namespace), the preset's values for the rest."""
        given = {s.name: getattr(args, s.name, None) for s in cls.rows() if s.flag}
        return cls.from_values(preset, **given)

    @classmethod
    def of(cls, settings=None, **values):
        """``settings`` as it is, or one made from keyword values (``preset`` among them where the scope has it)."""
        if settings is not None:
            if values:
                raise TypeError(f"give a {cls.__name__} or its values, not both")
            return settings
        return cls.from_values(values.get("preset"), **values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@made_from_table("plan", "scenes")
class AnalysisSettings(TableSettings):
    """How a song becomes a plan: the preset, rates, frame rate, intensity and the scene lengths."""

    def resolved(self, preset: str | None = None) -> AnalysisSettings:
        """With the preset's values for what is left open (``preset``: the resolved one, not ``auto``)."""
        preset = preset or self.preset
        if preset not in PRESETS:
            raise InputError(f"--preset must be one of {', '.join(PRESETS)}, not {preset!r}")
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        given["preset"] = preset
        return AnalysisSettings.from_values(preset, **given)


@made_from_table("render")
class RenderSettings(TableSettings):
    """Everything a user controls that changes the frames (recorded in the manifest and the cache keys): one
    field per ``render`` row of :mod:`engine.settings_table`, in its order (the keys depend on it), and the
    keyframed ones' curves.

    ``curves``: ``{row name: engine.plan.curves.Curve}`` of the ``animatable`` rows whose value changes over the
    song (``--curves``; see :meth:`with_curves`), else None. Each image then takes the curve's value at its start
    (:meth:`image_values`), and that value, not the flag's, enters its segment's key.
    """

    curves: dict | None = None

    def with_curves(self, curves: dict) -> RenderSettings:
        """These settings with keyframed rows (``{name: Curve}``, checked by ``engine.plan.curves``). A curve that holds
        one value everywhere is that value, as its flag would give it (the same keys and frames); the rest animate."""
        values, animated = {}, {}
        for name, curve in curves.items():
            held = curve.constant()
            if held is None:
                animated[name] = curve
            elif name in self.__dataclass_fields__:  # a segment row (prompt_weight) has no field: the curve stays
                values[name] = held
            else:
                animated[name] = curve
        return dataclasses.replace(self, **values, curves=animated or None)

    def animated(self, name: str) -> bool:
        """Whether row ``name`` changes from image to image (a curve that is not one value)."""
        return bool(self.curves) and name in self.curves

    @property
    def motion_active(self) -> bool:
        """Whether the images move (any of zoom, rotation, shift is not zero, or is keyframed)."""
        moving = self.zoom != 0.0 or self.rotate != 0.0 or tuple(self.shift) != (0.0, 0.0)
        return moving or any(self.animated(n) for n in ("zoom", "rotate", "shift"))

    @property
    def needs_encoder(self) -> bool:
        """Footage or motion turn pictures into latents: the VQGAN's encoder is loaded for them only."""
        return not self.layout and (self.footage is not None or self.motion_active)

    def saved(self) -> dict:
        """Every setting under its saved name, for the manifest (the manifest and the keys are a format); a keyframed
        row's value is each image's, in the frames' records."""
        return {_SAVED.get(k, k): v for k, v in self.row_values().items()}

    def key_fields(self) -> dict:
        """What every segment's key holds: the render-wide settings (a setting added since the keys' first format
        only where it is set, :data:`engine.settings_table.RENDER_KEY_ALWAYS`). Per-segment rows enter each segment's
        key instead (:mod:`engine.render.jobs.keys`): a changed footage strip re-renders from what it covers on, and a
        render without footage or motion keeps the keys it always had."""
        out = {}
        animated = {_SAVED.get(n, n) for n in self.curves or ()}
        for name, value in self.saved().items():
            if name in _PER_SEGMENT_SAVED or (name not in RENDER_KEY_ALWAYS and value == _DEFAULTS.get(name)):
                continue
            if name in animated:  # each image's value is in its segment's key; the flag's says nothing then
                continue
            out[name] = value
        return out

    def image_values(self, name: str, times: list[float]):
        """Row ``name``'s value for images starting at ``times`` (song seconds): its one value (``None`` for a row
        this class has no field of, a segment row), or where the row is keyframed a list of each image's own value
        (a pair's as lists)."""
        curve = (self.curves or {}).get(name)
        if curve is None:
            return getattr(self, name, None)
        return [list(v) if isinstance(v, tuple) else v for v in curve.values_at(times)]


@made_from_table("job")
class JobSettings(TableSettings):
    """How a render runs: where, in how many chains, on Ray or here, how often it saves a resume point."""

    @property
    def cache_cap_bytes(self) -> int | None:
        return None if self.cache_cap_mb is None else int(self.cache_cap_mb * 1e6)

    @property
    def ray_address(self) -> str | None:
        """``None`` for a new local Ray instance, else the cluster's address (only with ``ray`` set)."""
        return None if self.ray in (None, "local") else self.ray


def _per_segment_saved() -> set[str]:
    names = saved_names()
    return {names.get(f, f) for s in in_scope("render") if s.per_segment for f in s.field_names}


_SAVED = saved_names()
_PER_SEGMENT_SAVED = _per_segment_saved()
#: Each render field's default, under its saved name.
_DEFAULTS = {_SAVED.get(k, k): v for k, v in scope_fields("render")}

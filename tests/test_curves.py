"""Keyframed settings (``engine.plan.curves``): the curves file, evaluation, and each image's value."""

from __future__ import annotations

import json

import pytest

from engine.errors import InputError
from engine.plan.curves import (
    CurveSpec,
    constant_keys,
    curves_document,
    image_starts,
    image_values,
    load_curves,
    parse_curves,
)
from engine.protocol import image_slots

#: What the settings table's animatable column will give (phase B); here the ranges of today's rows.
ANIMATABLE = {
    "zoom": CurveSpec(1, -0.9, 10),
    "rotate": CurveSpec(1, -3600, 3600),
    "shift": CurveSpec(2, -1e5, 1e5),
    "footage_blend": CurveSpec(1, 0, 1),
}


def _doc(curves, **over):
    return {"kind": "m2v-curves", "version": 1, "curves": curves, **over}


def test_constant_and_linear_keys_held_outside():
    c = parse_curves(
        _doc({"zoom": [[1.0, 0.0, "constant"], [4.0, 0.05, "linear"], [8.0, 0.1, "linear"]]}), ANIMATABLE, 10.0
    )["zoom"]
    at = c.value_at
    assert at(0.0) == 0.0 and at(0.999) == 0.0  # held before the first key
    assert at(1.0) == 0.0 and at(3.999) == 0.0  # constant towards the next key
    assert at(4.0) == 0.05
    assert at(6.0) == pytest.approx(0.075) and at(5.0) == pytest.approx(0.0625)
    assert at(8.0) == 0.1 and at(9.99) == 0.1  # held after the last key
    assert c.constant() is None


def test_pairs_interpolate_per_component():
    c = parse_curves(_doc({"shift": [[0.0, [0.0, 10.0], "linear"], [2.0, [4.0, -10.0], "linear"]]}), ANIMATABLE)[
        "shift"
    ]
    assert c.value_at(0.5) == pytest.approx((1.0, 5.0)) and c.value_at(3.0) == (4.0, -10.0)


def test_the_add_ons_constant_keys_give_back_exactly_the_values_at_image_starts():
    """The exchange form: one constant key per image, at the image's start, holds the value exactly."""
    seg = {"start": 1.2345, "end": 7.0, "images": 37}
    starts = image_starts(seg)
    assert starts == [a for a, _ in image_slots(1.2345, 7.0, 37, digits=None)]
    # Values no linear key could give (Blender's bezier/elastic, say): arbitrary floats.
    values = [((i * 7919) % 101) / 97.0 - 0.3 for i in range(37)]
    doc = json.loads(json.dumps(curves_document({"zoom": constant_keys(list(zip(starts, values)))})))
    curve = parse_curves(doc, ANIMATABLE, 7.0)["zoom"]
    assert curve.values_at(starts) == values  # exactly, through JSON
    plan = {"segments": [{"start": 0.0, "end": 1.2345, "images": 3}, seg]}
    got = image_values({"zoom": curve}, plan)["zoom"]
    assert got[1] == values and got[0] == [values[0]] * 3  # before the first key: its value held


def test_a_start_a_hair_early_still_takes_its_key_and_a_flat_curve_is_constant():
    c = parse_curves(_doc({"zoom": [[0.0, 0.0, "constant"], [0.5, 0.2, "constant"]]}), ANIMATABLE)["zoom"]
    assert c.value_at(0.5 - 1e-9) == 0.2 and c.value_at(0.5 - 1e-3) == 0.0
    flat = parse_curves(_doc({"rotate": [[0.0, 3.0, "linear"], [5.0, 3.0, "constant"]]}), ANIMATABLE)["rotate"]
    assert flat.constant() == 3.0


def test_names_come_from_the_parameter():
    assert set(parse_curves(_doc({"zoom": [[0, 1, "linear"]]}), ["zoom"])) == {"zoom"}
    with pytest.raises(
        InputError, match=r"curve 'zoom': not a setting that can change over time \(those are: rotate\)"
    ):
        parse_curves(_doc({"zoom": [[0, 1, "linear"]]}), ["rotate"])


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"kind": "m2v-prompts", "version": 1, "curves": {}}, "not an m2v-curves document"),
        (_doc({}, version=3), "m2v-curves version 3; this version of m2v reads version 1"),
        ({"kind": "m2v-curves", "version": 1}, "no curves object"),
        (_doc({"seed": [[0, 1, "linear"]]}), "curve 'seed': not a setting that can change over time"),
        (_doc({"zoom": []}), "curve 'zoom' must be a non-empty list"),
        (_doc({"zoom": [[0, 0.1]]}), "curve 'zoom' key 0 must be [time, value, interpolation]"),
        (_doc({"zoom": [[float("nan"), 0.1, "linear"]]}), "curve 'zoom' key 0 time must be a finite number, got nan"),
        (_doc({"zoom": [[0, float("nan"), "linear"]]}), "curve 'zoom' key 0 value must be a finite number"),
        (_doc({"zoom": [[0, 0, "linear"], [12.5, 0.1, "linear"]]}), "key 1 at 12.5 s is outside the song (0-10 s)"),
        (_doc({"zoom": [[-0.5, 0, "linear"]]}), "curve 'zoom' key 0 at -0.5 s is outside the song"),
        (_doc({"zoom": [[1, 0, "linear"], [1, 0.1, "linear"]]}), "key 1 at 1 s does not come after key 0 (1 s)"),
        (_doc({"zoom": [[0, 0, "bezier"]]}), "key 0 has an interpolation m2v does not know: 'bezier'"),
        (_doc({"zoom": [[0, 0, None]]}), "key 0 has an interpolation m2v does not know: 'None'"),
        (_doc({"zoom": [[0, 20, "linear"]]}), "curve 'zoom' key 0 value must be at least -0.9 and at most 10, got 20"),
        (_doc({"shift": [[0, 3.0, "linear"]]}), "curve 'shift' key 0 value must be a list of 2 numbers"),
        (_doc({"shift": [[0, [1, "x"], "linear"]]}), "curve 'shift' key 0 value[1] must be a number"),
        (_doc({"footage_blend": [[0, True, "linear"]]}), "key 0 value must be a number, got True"),
    ],
)
def test_bad_curves_name_the_file_the_curve_and_the_key(tmp_path, doc, message):
    p = tmp_path / "curves.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_curves(p, ANIMATABLE, duration=10.0)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="curves file not found"):
        load_curves(tmp_path / "none.json", ANIMATABLE, 1.0)
    (tmp_path / "b.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(InputError, match="not a valid curves file"):
        load_curves(tmp_path / "b.json", ANIMATABLE, 1.0)

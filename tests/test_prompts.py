"""Timed prompts (``engine.plan.prompts``): the files, the plan field, and which prompt guides an image."""

from __future__ import annotations

import copy
import json

import pytest

from engine.errors import InputError
from engine.files import dumps_strict
from engine.plan.prompts import (
    PromptPart,
    apply_prompts,
    image_prompts,
    load_prompts,
    parse_prompts_doc,
    prompt_for_span,
)
from engine.plan.schema import validate_plan
from engine.protocol import image_slots


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _doc(prompts, **over):
    return {"kind": "m2v-prompts", "version": 1, "prompts": prompts, **over}


def _tiny_plan(bounds=(0.0, 2.0, 5.0), images=(4, 6), duration=6.0):
    segs = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        part = {"start": a, "end": b, "kind": "audio", "text": None}
        segs.append({"index": k, "start": a, "end": b, "steps": images[k] * 2, "images": images[k], "parts": [part]})
    song = {"path": "/x.wav", "sha256": "0" * 64, "duration": duration, "span": [bounds[0], bounds[-1]]}
    return {"version": 2, "kind": "m2v-plan", "song": song, "segments": segs, "lyrics": [], "warnings": []}


# ---------------------------------------------------------------- files


def test_srt_cues_are_prompts_at_weight_one(tmp_path):
    p = _write(
        tmp_path,
        "p.srt",
        "1\n00:00:01,000 --> 00:00:03,500\na lighthouse\nin a storm\n\n2\n00:00:02,000 --> 00:00:06,000\nneon city\n",
    )
    assert load_prompts(p) == [PromptPart(1.0, 3.5, "a lighthouse in a storm"), PromptPart(2.0, 6.0, "neon city")]


def test_lrc_lines_end_at_their_empty_tag_or_the_next_later_line(tmp_path):
    p = _write(
        tmp_path,
        "p.lrc",
        "[ti:x]\n[00:01.00]first\n[00:03.00]\n[00:04.00]second\n[00:04.00]same time\n[00:07.50]third\n[00:09.00]\n",
    )
    got = load_prompts(p)
    # An empty tag ends a line; a line without one ends where the next *later* line starts (two at 4 s both
    # run to 7.5 s); the last line ends at its empty tag.
    assert [(x.start, x.end, x.text) for x in got] == [
        (1.0, 3.0, "first"),
        (4.0, 7.5, "second"),
        (4.0, 7.5, "same time"),
        (7.5, 9.0, "third"),
    ]


def test_lrc_and_csv_without_a_last_end_name_the_line(tmp_path):
    p = _write(tmp_path, "p.lrc", "[00:01.00]first\n[00:02.00]second without end\n")
    with pytest.raises(InputError) as e:
        load_prompts(p)
    assert str(e.value).startswith(f"{p}, line 2: the last prompt ('second without end') has no end time")
    c = _write(tmp_path, "p.csv", "start,end,text\n00:01,00:02,one\n00:03,00:04,two\n")
    assert [(x.start, x.end, x.text) for x in load_prompts(c)] == [(1.0, 2.0, "one"), (3.0, 4.0, "two")]
    c2 = _write(tmp_path, "q.csv", "00:01,one\n00:03,two\n")
    with pytest.raises(InputError, match=r"q\.csv, line 2: the last prompt \('two'\) has no end time"):
        load_prompts(c2)


def test_zero_length_cue_and_reader_errors_name_the_prompts_file(tmp_path):
    p = _write(tmp_path, "p.srt", "1\n00:00:01,000 --> 00:00:01,000\nnothing long\n")
    with pytest.raises(InputError, match=r"p\.srt, line 2: the prompt ends \(1 s\) where or before it starts"):
        load_prompts(p)
    e = _write(tmp_path, "e.srt", "   \n")
    with pytest.raises(InputError, match="the prompts file is empty"):
        load_prompts(e)
    u = _write(tmp_path, "u.txt", "just some words\n")
    with pytest.raises(InputError, match=r"u\.txt: unknown prompts format"):
        load_prompts(u)
    with pytest.raises(InputError, match="prompts file not found"):
        load_prompts(tmp_path / "missing.srt")
    with pytest.raises(InputError, match="is a folder, not a prompts file"):
        load_prompts(tmp_path)


def test_json_prompts_with_weights(tmp_path):
    doc = _doc(
        [{"start": 2, "end": 4.5, "text": "  a  red   door ", "weight": 0.25}, {"start": 0, "end": 1, "text": "x"}]
    )
    p = _write(tmp_path, "p.json", json.dumps(doc))
    assert load_prompts(p) == [PromptPart(2.0, 4.5, "a red door", 0.25), PromptPart(0.0, 1.0, "x", 1.0)]


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"kind": "m2v-plan", "version": 1, "prompts": []}, "not an m2v-prompts document (kind 'm2v-plan')"),
        (_doc([], version=2), "m2v-prompts version 2; this version of m2v reads version 1"),
        ({"kind": "m2v-prompts", "version": 1}, "no prompts list"),
        (_doc([{"start": float("nan"), "end": 2, "text": "a"}]), "prompt 0 start must be a finite number, got nan"),
        (_doc([{"start": 1, "end": 2, "text": "a"}, {"start": 3, "end": 3, "text": "b"}]), "prompt 1 ends (3 s)"),
        (_doc([{"start": -1, "end": 2, "text": "a"}]), "prompt 0 start must be at least 0, got -1"),
        (
            _doc([{"start": 0, "end": 2, "text": "a", "weight": 1.5}]),
            "prompt 0 weight must be at least 0 and at most 1",
        ),
        (_doc([{"start": 0, "end": 2, "text": "a", "weight": -0.1}]), "prompt 0 weight must be at least 0"),
        (_doc([{"start": 0, "end": 2, "text": "a", "weight": "1"}]), "prompt 0 weight must be a number, got '1'"),
        (_doc([{"start": 0, "end": 2, "text": "   "}]), "prompt 0 text must be words"),
        (_doc([{"start": 0, "end": 2}]), "prompt 0 text must be words, got None"),
        (_doc([{"start": 0, "end": 2, "text": "a", "wieght": 0.5}]), "prompt 0 has an unknown field 'wieght'"),
        (_doc(["a lighthouse"]), "prompt 0 is not an object"),
        (_doc([{"start": 0, "end": float("inf"), "text": "a"}]), "prompt 0 end must be a finite number, got inf"),
    ],
)
def test_bad_json_prompts_name_the_file_and_the_prompt(tmp_path, doc, message):
    p = tmp_path / "bad.json"
    # NaN and Infinity as JSON spells them (Python's reader takes them; the checks must name them).
    p.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_prompts(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value)


def test_empty_prompt_list_is_refused(tmp_path):
    p = _write(tmp_path, "p.json", json.dumps(_doc([])))
    with pytest.raises(InputError, match="holds no prompts"):
        load_prompts(p)
    with pytest.raises(InputError, match="not a valid prompts file"):
        load_prompts(_write(tmp_path, "broken.json", "{not json"))


# ---------------------------------------------------------------- which prompt guides an image


def test_resolution_running_at_start_later_start_wins_and_ties_go_to_the_later_listed():
    long = PromptPart(0.0, 10.0, "long", 1.0)
    late = PromptPart(4.0, 6.0, "late", 0.5)
    twin = PromptPart(4.0, 6.0, "twin", 0.7)
    parts = [long, late, twin]
    assert prompt_for_span(parts, 1.0, 1.5) is long
    assert prompt_for_span(parts, 4.0, 4.5) is twin  # same start: the later listed
    assert prompt_for_span([long, twin, late], 4.0, 4.5) is late
    assert prompt_for_span(parts, 6.0, 6.5) is long  # ends are exclusive: back to the long one
    assert prompt_for_span(parts, 10.0, 10.5) is None
    # Starting inside an image but running on past it: the next image's start sees it, this image does not.
    assert prompt_for_span(parts, 3.8, 4.2) is long
    assert prompt_for_span(parts, 4.2, 4.6) is twin


def test_a_prompt_shorter_than_an_image_guides_the_image_holding_it():
    blip = PromptPart(2.1, 2.3, "blip")
    base = PromptPart(0.0, 5.0, "base")
    parts = [base, blip]
    slots = image_slots(0.0, 5.0, 10, digits=None)  # images of 0.5 s
    got = [prompt_for_span(parts, a, b) for a, b in slots]
    assert got.count(blip) == 1 and got[4] is blip  # the image of [2.0, 2.5)
    assert all(g is base for i, g in enumerate(got) if i != 4)
    # Alone, it still guides exactly one image; outside every slot start, nothing else is guided.
    got = [prompt_for_span([blip], a, b) for a, b in slots]
    assert [i for i, g in enumerate(got) if g is not None] == [4]


def test_times_compare_within_the_plans_rounding():
    # A strip starting at a frame the plan rounded to 0.1 ms still holds the image starting at that frame.
    p = PromptPart(round(40 / 29.97, 4), 3.0, "on the frame")
    a = 40 / 29.97
    assert prompt_for_span([p], a, a + 0.03) is p
    assert prompt_for_span([PromptPart(0.0, round(a, 4), "ends there")], a, a + 0.03) is None


# ---------------------------------------------------------------- the plan


def test_plan_without_prompts_is_byte_identical_and_with_them_valid():
    plan = _tiny_plan()
    before = dumps_strict(plan)
    assert apply_prompts(plan, []) == []
    assert dumps_strict(plan) == before
    warnings = apply_prompts(
        plan,
        [
            PromptPart(4.0, 9.0, "runs past the end", 0.5),
            PromptPart(1.5, 2.5, "across the cut"),
            PromptPart(7.0, 8.0, "after the end"),
        ],
    )
    assert warnings == ["the prompt 'after the end' at 7.00-8.00 s is outside the planned span (0.00-5.00 s); ignored"]
    assert plan["prompts"] == [
        {"start": 1.5, "end": 2.5, "text": "across the cut", "weight": 1.0},
        {"start": 4.0, "end": 5.0, "text": "runs past the end", "weight": 0.5},
    ]
    validate_plan(plan)
    # Every image of both segments: the prompt that holds its start (slots of 0.5 s in both segments).
    texts = [[p.text if p else None for p in seg] for seg in image_prompts(plan)]
    assert texts == [
        [None, None, None, "across the cut"],
        ["across the cut", None, None, None, "runs past the end", "runs past the end"],
    ]


@pytest.mark.parametrize(
    "prompts,message",
    [
        ("a lighthouse", "the plan's prompts must be a list"),
        ([{"start": 1, "end": 0.5, "text": "a"}], "prompt 0 end must be above 1"),
        ([{"start": 1, "end": 7, "text": "a"}], "prompt 0 end must be above 1 and at most 6.05, got 7"),
        ([{"start": float("nan"), "end": 2, "text": "a"}], "prompt 0 start must be a finite number"),
        ([{"start": 1, "end": 2, "text": ""}], "prompt 0 has no text"),
        ([{"start": 1, "end": 2, "text": "a", "weight": 2}], "prompt 0 weight must be at least 0 and at most 1"),
        ([{"start": 2, "end": 3, "text": "a"}, {"start": 1, "end": 3, "text": "b"}], "prompt 1 starts at 1.0 s"),
    ],
)
def test_plan_prompts_are_checked_where_they_enter(prompts, message):
    plan = copy.deepcopy(_tiny_plan())
    plan["prompts"] = prompts
    with pytest.raises(InputError) as e:
        validate_plan(plan, "plan.json")
    assert str(e.value).startswith("plan.json: ") and message in str(e.value)


def test_json_round_trip_of_the_plan_field_gives_the_same_parts(tmp_path):
    plan = _tiny_plan()
    parts = parse_prompts_doc(_doc([{"start": 0.5, "end": 3.25, "text": "sea", "weight": 0.8}]))
    apply_prompts(plan, parts)
    again = json.loads(dumps_strict(plan))
    assert again["prompts"] == [{"start": 0.5, "end": 3.25, "text": "sea", "weight": 0.8}]
    assert image_prompts(again) == image_prompts(plan)

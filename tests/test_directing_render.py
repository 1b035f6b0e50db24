"""Directing from the timeline, headless (issue 27): ``--prompts`` and ``--curves`` through the command line, into
real renders with the small models: which text guided each image, each image's keyframed values, what an edited
prompt or keyframe re-renders, and that nothing changes where they are not used."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.analysis.synth import demo_song
from engine.plan.curves import load_curves
from engine.plan.prompts import image_prompts, plan_prompts, prompt_for_span
from engine.protocol import image_slots
from tests.conftest import run_engine, write_song
from tests.small_models import model_args

BOUNDS = "0,2,4,6"
#: Tiny renders: 2 images a second, 32x32, 4 cutouts, the draft rates (4-16 steps a segment).
PLAN = ("--preset", "draft", "--fps", "2", "--no-estimate")
LOOK = ("--size", "32", "32", "--cutouts", "4", "--cutout-method", "crops", "--seed", "1", "--lr", "0.3")

SRT = """1
00:00:01,000 --> 00:00:03,000
a lighthouse in a storm

2
00:00:03,500 --> 00:00:05,000
neon city
"""
LRC = "[00:01.00]a lighthouse in a storm\n[00:03.00]\n[00:03.50]neon city\n[00:05.00]\n"
PROMPTS = {
    "kind": "m2v-prompts",
    "version": 1,
    "prompts": [
        {"start": 1.0, "end": 3.0, "text": "a lighthouse in a storm"},
        {"start": 3.5, "end": 5.0, "text": "neon city", "weight": 1.0},
    ],
}


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = demo_song()
    return write_song(tmp_path_factory.mktemp("directed") / "song.wav", d.y[: int(d.sr * 8)], d.sr)


def _write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def _plan(song, out: Path, *extra: str) -> dict:
    r = run_engine("plan", str(song), "--boundaries", BOUNDS, *PLAN, *extra, "-o", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def _render(plan: Path, out: Path, models: Path | None, *extra: str) -> list[dict]:
    more = ("--layout",) if models is None else (*LOOK, *model_args(models))
    r = run_engine("render", str(plan), "--out", str(out), *more, *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def _frames(out: Path) -> list[dict]:
    """The current plan's frame records, in order (segment, image)."""
    m = json.loads((out / "manifest.json").read_text())
    return [f for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prompts_files_give_the_plan_its_prompts(song, tmp_path):
    plain = _plan(song, tmp_path / "plain.json")
    plans = {
        ext: _plan(song, tmp_path / f"p_{ext}.json", "--prompts", str(_write(tmp_path / f"p.{ext}", doc)))
        for ext, doc in (("srt", SRT), ("lrc", LRC), ("json", PROMPTS))
    }
    want = [
        {"start": 1.0, "end": 3.0, "text": "a lighthouse in a storm", "weight": 1.0},
        {"start": 3.5, "end": 5.0, "text": "neon city", "weight": 1.0},
    ]
    for plan in plans.values():
        assert plan["prompts"] == want
        # The field is all a prompts file adds: the rest of the plan is the plan without it.
        assert {k: v for k, v in plan.items() if k != "prompts"} == plain
    assert "prompts" not in plain
    # The first prompt crosses the cut at 2 s: it guides the images of both segments in its span.
    guided = image_prompts(plans["json"])
    texts = [[p.text if p else None for p in seg] for seg in guided]
    assert texts[0][-1] == texts[1][0] == "a lighthouse in a storm" and texts[0][0] is None
    # analyze takes them too, clipped to what it analysed, warning about the rest.
    r = run_engine("analyze", str(song), *PLAN, "--end", "3.4", "--prompts", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    analysed = json.loads(r.stdout)
    assert [p["text"] for p in analysed["prompts"]] == ["a lighthouse in a storm"]
    assert any("neon city" in w and "outside the planned span" in w for w in analysed["warnings"])


BAD_PROMPTS = [
    ("weight.json", {**PROMPTS, "prompts": [{"start": 1, "end": 2, "text": "x", "weight": 2}]}, "prompt 0 weight"),
    (
        "nan.json",
        '{"kind": "m2v-prompts", "version": 1, "prompts": [{"start": NaN, "end": 2, "text": "x"}]}',
        "prompt 0 start must be a finite number",
    ),
    ("field.json", {**PROMPTS, "prompts": [{"start": 1, "end": 2, "text": "x", "wieght": 1}]}, "unknown field"),
    ("kind.json", {**PROMPTS, "kind": "m2v-plan"}, "kind"),
    ("open.lrc", "[00:01.00]a lighthouse\n[00:02.00]neon city\n", "no end time"),
    ("empty.srt", "", "the prompts file is empty"),
    ("what.txt", "just words\n", "unknown prompts format"),
]


@pytest.mark.parametrize("name,content,says", BAD_PROMPTS, ids=[b[0] for b in BAD_PROMPTS])
def test_a_bad_prompts_file_is_a_clear_exit_2(song, tmp_path, name, content, says):
    bad = _write(tmp_path / name, content)
    out = tmp_path / "plan.json"
    r = run_engine("plan", str(song), "--boundaries", BOUNDS, *PLAN, "--prompts", str(bad), "-o", str(out))
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in errors[0] and says in errors[0], errors[0]
    assert not out.exists()


def _curves(**curves) -> dict:
    return {"kind": "m2v-curves", "version": 1, "curves": curves}


BAD_CURVES = [
    ("outside", _curves(zoom=[[0, 0.0, "linear"], [9.5, 0.1, "linear"]]), "key 1 at 9.5 s is outside the song"),
    (
        "nan",
        '{"kind": "m2v-curves", "version": 1, "curves": {"zoom": [[0, NaN, "linear"]]}}',
        "key 0 value must be a finite number",
    ),
    ("bezier", _curves(zoom=[[0, 0.0, "bezier"]]), "interpolation m2v does not know: 'bezier'"),
    ("seed", _curves(seed=[[0, 1, "constant"]]), "'seed': not a setting that can change over time"),
    ("range", _curves(footage_blend=[[0, 1.5, "linear"]]), "value"),
    ("order", _curves(rotate=[[2, 0.0, "linear"], [1, 1.0, "linear"]]), "does not come after key 0"),
    ("pair", _curves(shift=[[0, 3.0, "linear"]]), "a list of 2 numbers"),
    ("version", {**_curves(zoom=[[0, 0.0, "linear"]]), "version": 2}, "version"),
    ("text", "zoom 0.1", "curves file"),
]


@pytest.mark.parametrize("name,content,says", BAD_CURVES, ids=[b[0] for b in BAD_CURVES])
def test_a_bad_curves_file_is_a_clear_exit_2(song, tmp_path, name, content, says):
    plan = tmp_path / "plan.json"
    _plan(song, plan)
    bad = _write(tmp_path / f"{name}.json", content)
    out = tmp_path / "frames"
    r = run_engine("render", str(plan), "--out", str(out), "--layout", "--curves", str(bad))
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in errors[0] and says in errors[0], errors[0]
    assert not out.exists()  # refused before anything is written


def test_run_takes_both_files_and_refuses_a_bad_one_leaving_nothing(song, tmp_path):
    prompts = _write(tmp_path / "p.srt", SRT)
    curves = _write(tmp_path / "c.json", _curves(style_weight=[[0, 0.2, "linear"], [6, 0.8, "linear"]]))
    out = tmp_path / "run"
    r = run_engine(
        "run", str(song), "--layout", *PLAN, "--out", str(out), "--prompts", str(prompts), "--curves", str(curves)
    )
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert [p["text"] for p in plan["prompts"]] == ["a lighthouse in a storm", "neon city"]
    guided = [f.get("prompt") for f in _frames(out / "layout")]
    want = [p.text if p else None for seg in image_prompts(plan) for p in seg]
    assert guided == want and "neon city" in guided
    # A curve key past the song's end: refused once the song's length is known, and run leaves nothing behind.
    bad = _write(tmp_path / "bad.json", _curves(zoom=[[0, 0.0, "linear"], [60.0, 0.1, "linear"]]))
    out2 = tmp_path / "run2"
    r = run_engine("run", str(song), "--layout", *PLAN, "--out", str(out2), "--curves", str(bad))
    assert r.returncode == 2 and str(bad) in r.stderr and "outside the song" in r.stderr, r.stderr[-2000:]
    assert not out2.exists() or not any(out2.iterdir())


#: The keys issue 26's code (branch arch) gave these plans and settings (tests/test_directing_render.py's
#: ``_golden_keys``, run there): a render that no text strip, keyframe or file directs keeps them, byte for byte.
GOLDEN = {
    "plain": [
        "464e7e64cce50f8bcf5dda8578f650e0309ae5088cec66d157a7b122f3e89f38",
        "74c37976872764ecd1dda9d28bf0614408aa3b2e58bfed3befc7b79e47c62497",
        "c0f879ebbcee4c2b95c8598c2fff4f6dc84ee37aea628823d3fd2912eca7e6aa",
    ],
    "flags": [
        "5f62a7f135b572be21d64f23970a00ecdbd6f5f9ced68700bb55820fe48919a8",
        "dc21af24b0b9344a2edcc41867874668a02e9c907142b611c5e5b9e9ca6e8760",
        "513d40b2843292e9bb8ab6570b4f8e97bb8299dd42bb1996885df5a2e46f2b42",
    ],
    "motion": [
        "a90509f5e918d72c093984063bc3aabd4f3701503c15f9130a6e8e94e52279bc",
        "a75300be4f8e427b31ecd9c6bce72ebfebd62e334536c2946088dc9d14a37e72",
        "e1aee897e886f1f48090365063daf78acef3adfcd757619756bde46360a0ebd2",
    ],
    "footage": [
        "3eec713eea35b9c7a4f4a3eb00c6dbe6084c8167ac270fa28922d31bbd4fa8bc",
        "e0b8fa3a477b93aac2da60ca6404a8af76214508412f98b2a1b80db0923b375e",
        "b9f472340737ecfead62966cbb5b30623c6bfd0a596ef63d3ae9f9885d863978",
    ],
}


def _golden_keys() -> dict[str, list[str]]:
    from engine.render.jobs.keys import segment_keys
    from engine.settings import RenderSettings

    segs = []
    for k, (a, b, n) in enumerate([(0.0, 1.5, 3), (1.5, 3.0, 4), (3.0, 4.0, 2)]):
        parts = [
            {"start": a, "end": (a + b) / 2, "kind": "audio", "text": None},
            {"start": (a + b) / 2, "end": b, "kind": "lyric", "text": f"line {k}"},
        ]
        segs.append(
            {"index": k, "start": a, "end": b, "steps": 2 * n, "images": n, "parts": parts,
             "prompt": "a boat" if k == 1 else None, "prompt_weight": 0.5 if k == 1 else 1.0,
             "take": 2 if k == 2 else 0}
        )  # fmt: skip
    plan = {"segments": segs}
    song = (np.sin(np.arange(16000 * 5) / 7.0) * 0.1).astype(np.float32)
    ids = {"vqgan": "v", "clip": "c", "formats": {"clip": "fp16"}}
    n = [3, 4, 2]

    def moves(k):
        return {"footage": None, "motion": [[1.0 + 0.01 * i, 0.5 * k, 0.0, 0.0] for i in range(n[k])]}

    def foot(k):
        return {"footage": [f"d{k}{i}" if i % 2 == 0 else None for i in range(n[k])], "motion": None}

    flags = RenderSettings(width=64, height=48, seed=3, style="ink", style_weight=0.7, lr=0.2)
    return {
        "plain": segment_keys(plan, song, RenderSettings(), ids),
        "flags": segment_keys(plan, song, flags, ids, starts=(0, 2)),
        "motion": segment_keys(plan, song, RenderSettings(zoom=0.1, rotate=2.0), ids, moves),
        "footage": segment_keys(
            plan, song, RenderSettings(footage=__file__, init_weight=10.0, footage_blend=0.3), ids, foot
        ),
    }


def test_undirected_keys_are_the_keys_they_were():
    assert _golden_keys() == GOLDEN


def test_prompts_and_keyframes_direct_a_render_and_an_edit_rerenders_only_what_it_changes(
    song, tmp_path, roundtrip_models
):
    plan_path = tmp_path / "plan.json"
    prompts = _write(
        tmp_path / "p.json",
        {**PROMPTS, "prompts": [PROMPTS["prompts"][0], {**PROMPTS["prompts"][1], "weight": 0.5}]},
    )
    plan = _plan(song, plan_path, "--prompts", str(prompts))
    zoom = [[0.0, 0.0, "linear"], [3.0, 0.1, "linear"], [6.0, 0.2, "linear"]]
    curves = _write(tmp_path / "c.json", _curves(zoom=zoom, style_weight=[[0.0, 0.1, "linear"], [6.0, 1.0, "linear"]]))
    out = tmp_path / "frames"
    _render(plan_path, out, roundtrip_models, "--style", "ink", "--curves", str(curves))
    frames = _frames(out)
    parts = plan_prompts(plan)
    loaded = load_curves(curves, duration=8.0)
    slots = [slot for s in plan["segments"] for slot in image_slots(s["start"], s["end"], s["images"], digits=None)]
    assert len(frames) == len(slots) == sum(s["images"] for s in plan["segments"])
    for f, (a, b) in zip(frames, slots):
        p = prompt_for_span(parts, a, b)
        # The manifest says which text guided each image (and at what weight, below 1).
        assert f.get("prompt") == (p.text if p else None)
        assert f.get("prompt_weight") == (p.weight if p and p.weight < 1 else None)
        # ... and each image's own value of every keyframed setting, the curve's at the image's start.
        assert f["animated"] == {"zoom": loaded["zoom"].value_at(a), "style_weight": loaded["style_weight"].value_at(a)}
    assert {f.get("prompt") for f in frames} == {None, "a lighthouse in a storm", "neon city"}
    before = {f["file"]: _sha(out / f["file"]) for f in frames}
    inode = {f["file"]: os.stat(out / f["file"]).st_ino for f in frames}

    # The last keyframe changes: the images from the first one whose zoom changes on are rendered again, none before.
    zoom[-1][1] = 0.4
    _write(curves, _curves(zoom=zoom, style_weight=[[0.0, 0.1, "linear"], [6.0, 1.0, "linear"]]))
    events = _render(plan_path, out, roundtrip_models, "--style", "ink", "--curves", str(curves))
    first = next(j for j, (a, _) in enumerate(slots) if a > 3.0 + 1e-6)  # zoom is the same up to 3 s
    n = [s["images"] for s in plan["segments"]]
    k = int(np.searchsorted(np.cumsum(n), first, side="right"))
    i = first - sum(n[:k])
    assert 0 < i < n[k]  # inside a segment: its leading images are kept, not only the segments before it
    rendered = [(e["segment"], e["index"]) for e in events if e["event"] == "image"]
    assert rendered[0] == (k, i) and len(rendered) == len(slots) - first
    assert [e["segment"] for e in events if e["event"] == "segment_end" and e["reused"]] == list(range(k))
    assert [e["resumed_at"] for e in events if e["event"] == "segment_start"][0] == i
    again = _frames(out)
    for f_old, f_new in zip(frames[:first], again[:first]):
        assert _sha(out / f_new["file"]) == before[f_old["file"]]  # the very same frames (hard links)
        assert os.stat(out / f_new["file"]).st_ino == inode[f_old["file"]]
    assert _sha(out / again[first]["file"]) != before[frames[first]["file"]]
    assert again[first]["animated"]["zoom"] != frames[first]["animated"]["zoom"]

    # Editing the second prompt's text: everything before its first image stays.
    prompts_doc = json.loads(prompts.read_text())
    prompts_doc["prompts"][1]["text"] = "neon town"
    _write(prompts, prompts_doc)
    plan2 = _plan(song, plan_path, "--prompts", str(prompts))
    events = _render(plan_path, out, roundtrip_models, "--style", "ink", "--curves", str(curves))
    touched = next(
        j
        for j, (a, b) in enumerate(slots)
        if (p := prompt_for_span(plan_prompts(plan2), a, b)) and p.text == "neon town"
    )
    rendered = [(e["segment"], e["index"]) for e in events if e["event"] == "image"]
    assert len(rendered) == len(slots) - touched
    assert [f.get("prompt") for f in _frames(out)][touched] == "neon town"


def test_a_curve_holding_one_value_is_its_flag_byte_for_byte(song, tmp_path, roundtrip_models):
    import io

    from engine.plan.curves import parse_curves
    from engine.progress import Progress
    from engine.render.jobs.loop import render
    from engine.settings import RenderSettings
    from tests.small_models import load_small

    plan = tmp_path / "plan.json"
    _plan(song, plan, "--prompts", str(_write(tmp_path / "p.srt", SRT)))
    look = dict(width=32, height=32, cutouts=4, cutout_method="crops", seed=1, lr=0.3)
    models = load_small(roundtrip_models)
    flag, curve = tmp_path / "flag", tmp_path / "curve"
    assert render(plan, flag, RenderSettings(zoom=0.05, **look), models, Progress(out=io.StringIO())) == 0
    held = parse_curves(
        _curves(zoom=[[0.0, 0.05, "linear"], [5.0, 0.05, "constant"]], footage_blend=[[1, 0.5, "linear"]]),
        ["zoom", "footage_blend"],
    )
    settings = RenderSettings(**look).with_curves(held)
    assert settings.curves is None and settings.zoom == 0.05  # held values are the flags' values
    assert render(plan, curve, settings, models, Progress(out=io.StringIO())) == 0
    assert (flag / "manifest.json").read_bytes() == (curve / "manifest.json").read_bytes()
    a, b = _frames(flag), _frames(curve)
    assert [f["file"] for f in a] == [f["file"] for f in b] and a
    assert all(_sha(flag / f["file"]) == _sha(curve / f["file"]) for f in a)

"""Reading plans safely: every value checked where it enters, older versions migrated.

A plan is a file a user (or a script, or a farm) may have edited: a NaN
start, a string image count or a missing song must stop the render with a
message that names the segment and the field, never a traceback, and never a
render that "succeeds" with garbage.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import InputError
from engine.files import check_number, read_json
from engine.protocol import PLAN_KIND, PLAN_VERSION
from engine.settings_check import check_entry
from engine.settings_table import INTENSITIES, segment_defaults

MAX_STEPS = 10_000_000
_SHA = re.compile(r"^[0-9a-f]{64}$")
GUIDANCE_KINDS = ("audio", "lyric")


def migrate(plan: object, path: str | Path) -> dict:
    """A version-1 plan (images with one step each, one guidance per segment) as version 2."""
    if not isinstance(plan, dict) or "version" not in plan:
        raise InputError("not an m2v plan (no version field)", path)
    if plan["version"] == PLAN_VERSION:
        if plan.get("kind") != PLAN_KIND:
            raise InputError(f"not an m2v plan (kind {plan.get('kind')!r})", path)
        return plan
    if plan["version"] != 1:
        raise InputError(f"unknown plan version {plan['version']!r} (this engine reads versions 1 and 2)", path)
    segs = plan.get("segments")
    if not isinstance(segs, list):
        raise InputError("the plan has no segments", path)
    out = []
    for k, s in enumerate(segs):
        if not isinstance(s, dict) or not isinstance(s.get("guidance"), dict):
            raise InputError(f"segment {k} lacks start, end, images or guidance", path)
        g = s["guidance"]
        part = {"start": s.get("start"), "end": s.get("end"), "kind": g.get("kind"), "text": g.get("text")}
        if "lyrics" in g:
            part["lyrics"] = g["lyrics"]
        images = s.get("images")
        rest = {k2: v for k2, v in s.items() if k2 not in ("guidance", "fps")}
        out.append({**rest, "rate": s.get("fps"), "steps": images, "images": images, "parts": [part]})
        for name, default in segment_defaults().items():
            out[-1].setdefault(name, default)
    return {**plan, "version": PLAN_VERSION, "kind": PLAN_KIND, "segments": out, "migrated_from": 1}


def validate_song(song: object, path: str | Path) -> dict:
    if not isinstance(song, dict):
        raise InputError("the plan has no song", path)
    if not isinstance(song.get("path"), str) or not song["path"]:
        raise InputError("the plan's song has no file path", path)
    if not isinstance(song.get("sha256"), str) or not _SHA.match(song["sha256"]):
        raise InputError("the plan's song has no valid sha256", path)
    check_number(song.get("duration"), "song duration", 0, None, lo_open=True, path=path)
    return song


def validate_segment(k: int, s: object, prev_end: float | None, duration: float, path) -> float:
    """Check one segment; returns its end."""
    if not isinstance(s, dict):
        raise InputError(f"segment {k} is not an object", path)
    for field in ("start", "end", "steps", "images", "parts"):
        if field not in s:
            raise InputError(f"segment {k} lacks {field}", path)
    start = check_number(s["start"], f"segment {k} start", 0, None, path=path)
    end = check_number(s["end"], f"segment {k} end", 0, duration + 0.05, path=path)
    if end <= start:
        raise InputError(f"segment {k} is empty or reversed ({start} to {end} s)", path)
    if prev_end is not None and start < prev_end - 1e-6:
        raise InputError(f"segment {k} starts at {start} s, before segment {k - 1} ends ({prev_end} s)", path)
    steps = check_number(s["steps"], f"segment {k} steps", 1, MAX_STEPS, integer=True, path=path)
    check_number(s["images"], f"segment {k} images", 1, steps, integer=True, path=path)
    check_number(s.get("intensity", 0.0), f"segment {k} intensity", 0, 1, path=path)
    check_entry(s, "segment", f"segment {k}", path)
    validate_parts(k, s["parts"], start, end, path)
    return end


def validate_parts(k: int, parts: object, start: float, end: float, path) -> None:
    if not isinstance(parts, list) or not parts:
        raise InputError(f"segment {k} has no guidance parts", path)
    at = start
    for j, p in enumerate(parts):
        name = f"segment {k} part {j}"
        if not isinstance(p, dict):
            raise InputError(f"{name} is not an object", path)
        a = check_number(p.get("start"), f"{name} start", start - 1e-6, end, path=path)
        b = check_number(p.get("end"), f"{name} end", a, end + 1e-6, lo_open=True, path=path)
        if abs(a - at) > 1e-3:
            raise InputError(f"{name} starts at {a} s; the parts must cover the segment in order", path)
        at = b
        if p.get("kind") not in GUIDANCE_KINDS:
            raise InputError(f"{name} has unknown guidance kind {p.get('kind')!r}", path)
        if p["kind"] == "lyric" and (not isinstance(p.get("text"), str) or not p["text"].strip()):
            raise InputError(f"{name} is lyric-guided but has no text", path)
    if abs(at - end) > 1e-3:
        raise InputError(f"segment {k}'s guidance parts end at {at} s, not at the segment's end ({end} s)", path)


def validate_plan(plan: dict, path: str | Path = "<plan>") -> None:
    """Check every value a render reads.

    Raises
    ------
    InputError
        Naming the segment and the field.
    """
    song = validate_song(plan.get("song"), path)
    segs = plan.get("segments")
    if not isinstance(segs, list) or not segs:
        raise InputError("the plan has no segments", path)
    prev_end = None
    for k, s in enumerate(segs):
        prev_end = validate_segment(k, s, prev_end, float(song["duration"]), path)
    validate_beats(plan, path)
    validate_prompts(plan, float(song["duration"]), path)
    levels = plan.get("analysis", {}).get("levels") if isinstance(plan.get("analysis"), dict) else None
    # Plans from before --intensity have none: they are the paper's.
    if isinstance(levels, dict) and levels.get("intensity", "paper") not in INTENSITIES:
        raise InputError(f"unknown intensity {levels['intensity']!r} (one of {', '.join(INTENSITIES)})", path)
    lyrics = plan.get("lyrics", [])
    if not isinstance(lyrics, list):
        raise InputError("the plan's lyrics must be a list", path)
    for j, ly in enumerate(lyrics):
        if not isinstance(ly, dict) or not isinstance(ly.get("text"), str):
            raise InputError(f"lyric {j} has no text", path)
        check_number(ly.get("time"), f"lyric {j} time", 0, None, path=path)


def validate_beats(plan: dict, path: str | Path) -> None:
    """``beats`` (seconds, increasing) and ``beat_strength`` (0-1, one per beat) are optional; motion reads them."""
    beats = plan.get("beats")
    if beats is None:
        return
    if not isinstance(beats, list):
        raise InputError("the plan's beats must be a list of times", path)
    prev = None
    for j, t in enumerate(beats):
        t = check_number(t, f"beat {j} time", 0, None, path=path)
        if prev is not None and t < prev:
            raise InputError(f"beat {j} at {t} s comes before beat {j - 1} ({prev} s)", path)
        prev = t
    strength = plan.get("beat_strength")
    if strength is None:
        return
    if not isinstance(strength, list) or len(strength) != len(beats):
        raise InputError("the plan's beat_strength must hold one number per beat", path)
    for j, v in enumerate(strength):
        check_number(v, f"beat {j} strength", 0, 1, path=path)


def validate_prompts(plan: dict, duration: float, path: str | Path) -> None:
    """``prompts`` (``engine.plan.prompts``) is optional: timed prompt parts sorted by start, inside the song."""
    prompts = plan.get("prompts")
    if prompts is None:
        return
    if not isinstance(prompts, list):
        raise InputError("the plan's prompts must be a list of {start, end, text, weight}", path)
    prev = None
    for j, p in enumerate(prompts):
        name = f"prompt {j}"
        if not isinstance(p, dict):
            raise InputError(f"{name} is not an object", path)
        a = check_number(p.get("start"), f"{name} start", 0, duration + 0.05, path=path)
        check_number(p.get("end"), f"{name} end", a, duration + 0.05, lo_open=True, path=path)
        if not isinstance(p.get("text"), str) or not p["text"].strip():
            raise InputError(f"{name} has no text", path)
        check_number(p.get("weight", 1.0), f"{name} weight", 0, 1, path=path)
        if prev is not None and a < prev:
            raise InputError(f"{name} starts at {a} s, before prompt {j - 1} ({prev} s): prompts are sorted", path)
        prev = a


def load_plan(path: str | Path) -> dict:
    """Read, migrate and validate a plan file.

    Raises
    ------
    InputError
        When the file is not a plan of a known version or any of its values is unusable (the message names it).
    """
    plan = read_json(path, "plan")
    plan = migrate(plan, path)
    validate_plan(plan, path)
    return plan

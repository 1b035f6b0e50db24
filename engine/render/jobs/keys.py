"""Every segment's cache key, made from the settings table's rows: what a segment's frames depend on.

Segment ``k``'s key hashes (:func:`engine.store.manifest.segment_key`) its span,
steps, images and guidance parts (with the audio they read), the values of the
``segment`` rows the plan gives it (prompt, weight, take), the render-wide
settings (``RenderSettings.key_fields``), the model files, the cutout
implementation, what the per-segment rows say about it, and the key of segment
``k - 1`` (the latent it starts from; a chain start holds its index instead).

Per-segment rows (``per_segment`` in the table) enter only the keys of the
segments they change: a row of a key group (:data:`engine.settings_table.KEY_GROUPS`)
enters, with the group's content, only where the segment uses the group (the
footage frames its images follow, by their pixels; each image's move), so a
moved footage strip re-renders from the first segment whose frames changed; a
row of no group enters a segment's key where its value is not the default, so
a new control that is not used changes no key. An animated value enters as
each image's own value (a segment row's, such as the prompt weight, where it
differs from the segment's own), and a segment whose images a timed prompt
guides (the plan's ``prompts``) holds each image's prompt: editing one text
strip or one keyframe changes the keys from the first segment whose images
it changes. No list of names is written here: the rows say it all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from engine.files import dumps_strict
from engine.plan.prompts import PromptPart, image_prompts
from engine.protocol import CUTOUT_IMPL, image_slots
from engine.render.step.guidance import audio_digest
from engine.settings import RenderSettings
from engine.settings_table import KEY_GROUPS, Setting, in_scope
from engine.store.manifest import segment_key

_CONVERT = {"int": int, "float": float}


def segment_values(seg: dict) -> dict:
    """The ``segment`` rows that enter the key, from a plan's segment (a row left out takes its default)."""
    out = {}
    for s in in_scope("segment"):
        if s.per_segment:
            v = seg.get(s.name, s.default)
            out[s.segment_key_name] = _CONVERT.get(s.type, lambda x: x)(v) if v is not None else None
    return out


def _value(settings: RenderSettings, s: Setting, times: list[float]):
    if s.fields:
        return [settings.image_values(f, times) for f in s.fields]
    return settings.image_values(s.name, times)


def per_segment_entries(settings: RenderSettings, content: dict, times: list[float]) -> dict:
    """What the per-segment render rows add to one segment's key.

    Parameters
    ----------
    settings : RenderSettings
    content : dict
        Each key group's content in this segment (:data:`KEY_GROUPS`); a group missing or ``None`` is not used.
    times : list of float
        The segment's images' start times (an animated value is each image's).
    """
    out: dict = {}
    groups: dict[str, list[Setting]] = {}
    for s in in_scope("render"):
        if s.per_segment and s.key_group is not None:
            groups.setdefault(s.key_group, []).append(s)
        elif s.per_segment:
            v = _value(settings, s, times)
            if v != s.default and v != (list(s.default) if isinstance(s.default, tuple) else s.default):
                out[s.segment_key_name] = v
        elif s.animatable:
            v = settings.image_values(s.name, times)
            if isinstance(v, list):  # keyframed: each image's value (the render-wide key holds the flag's)
                out.setdefault("animated", {})[s.segment_key_name] = v
    for group, rows in groups.items():
        c = content.get(group)
        if c is None:
            continue
        values = {s.segment_key_name: _value(settings, s, times) for s in rows if not s.key_via}
        name = KEY_GROUPS[group]
        if name is None and values:
            raise ValueError(f"key group {group!r} has values of its own: give its content a name in KEY_GROUPS")
        out[group] = {name: c, **values} if name is not None else c
    return out


def segment_animated(settings: RenderSettings, seg: dict, times: list[float]) -> dict:
    """The keyframed ``segment`` rows' values (the prompt weight): each image's, where any differs from the value the
    plan gives the segment (a curve that changes nothing there changes nothing in its key)."""
    out = {}
    for s in in_scope("segment"):
        if s.per_segment and s.animatable and settings.animated(s.name):
            values = settings.image_values(s.name, times)
            own = _CONVERT.get(s.type, lambda x: x)(seg.get(s.name, s.default))
            if any(v != own for v in values):
                out[s.segment_key_name] = values
    return out


def prompt_entries(prompts: list[PromptPart | None]) -> dict:
    """What a segment's key holds of the timed prompts guiding its images: each image's ``[text, weight]`` (``None``
    where none guides), or nothing when none guides any of them."""
    if not any(p is not None for p in prompts):
        return {}
    return {"prompts": [None if p is None else [p.text, p.weight] for p in prompts]}


def segment_keys(
    plan: dict,
    song_16k: np.ndarray,
    settings: RenderSettings,
    model_ids: dict,
    content: Callable[[int], dict] | None = None,
    starts=(0,),
) -> list[str]:
    """The chained cache key of every segment (see the module).

    ``content(k)`` is what only the frame source knows about segment ``k``: each key group's content (the
    footage frames and the moves it uses; see ``ModelSource.key_content``). ``starts`` are the latent chains'
    first segments (:mod:`engine.plan.chains`): a chain start's key holds its index instead of the previous key,
    so a moved chain start re-renders only the chains it touches.
    """
    return keys_and_image_keys(plan, song_16k, settings, model_ids, content, starts)[0]


def directed(plan: dict, settings: RenderSettings) -> bool:
    """Whether timed prompts or keyframes direct the render (then its frames also get image keys)."""
    return bool(settings.curves) or bool(plan.get("prompts"))


def keys_and_image_keys(
    plan: dict,
    song_16k: np.ndarray,
    settings: RenderSettings,
    model_ids: dict,
    content: Callable[[int], dict] | None = None,
    starts=(0,),
) -> tuple[list[str], list[list[str]] | None]:
    """Every segment's key (:func:`segment_keys`) and, for a render timed prompts or keyframes direct
    (:func:`directed`), every image's key (:func:`image_keys`); else ``None``."""
    keys, images, prev = [], [], None
    prompts, with_images = image_prompts(plan), directed(plan, settings)
    for k, seg in enumerate(plan["segments"]):
        parts = [
            [round(float(p["start"]), 4), round(float(p["end"]), 4), p["kind"], p.get("text")]
            + ([audio_digest(song_16k, p["start"], p["end"])] if p["kind"] == "audio" else [])
            for p in seg["parts"]
        ]
        payload = {
            "start": round(float(seg["start"]), 4),
            "end": round(float(seg["end"]), 4),
            "steps": int(seg["steps"]),
            "images": int(seg["images"]),
            "parts": parts,
            **segment_values(seg),
            "settings": settings.key_fields(),
            "models": model_ids,
            "cutouts": CUTOUT_IMPL,  # frames from another cutout implementation are not reused
        }
        times = [a for a, _ in image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)]
        payload.update(per_segment_entries(settings, content(k) if content is not None else {}, times))
        animated = segment_animated(settings, seg, times)
        if animated:
            payload["animated"] = {**payload.get("animated", {}), **animated}
        payload.update(prompt_entries(prompts[k]))
        if k > 0 and k in starts:
            payload["chain_start"], prev = k, None
        if with_images:
            images.append(image_keys(payload, prev, settings))
        prev = segment_key(payload, prev)
        keys.append(prev)
    return keys, (images if with_images else None)


def image_columns(payload: dict, settings: RenderSettings) -> tuple[dict, list[list]]:
    """A segment's key payload split into what holds for all its images and what is each image's own: the key
    groups' contents (the footage frames, the moves), the keyframed rows' values, the timed prompts (each a list of
    one value per image)."""
    base, cols = dict(payload), []
    animated = set(settings.curves or ())
    for group, name in KEY_GROUPS.items():
        entry = base.get(group)
        if entry is None:
            continue
        if isinstance(entry, list):  # the content alone, one value per image (the moves)
            cols.append(entry)
            base[group] = "per image"
            continue
        # A dict: one value per image under the group's name (the content's own "frames" where the content is the
        # whole entry, as the matte's is), the rest holds for every image (the matte step's version).
        entry = dict(entry)
        cols.append(entry.pop(name or "frames"))
        for s in in_scope("render"):
            if s.key_group == group and s.name in animated and s.segment_key_name in entry:
                cols.append(entry.pop(s.segment_key_name))
        base[group] = entry
    for s in in_scope("render"):
        if s.per_segment and s.key_group is None and s.name in animated and s.segment_key_name in base:
            cols.append(base.pop(s.segment_key_name))
    cols += list(base.pop("animated", {}).values())
    if "prompts" in base:
        cols.append(base.pop("prompts"))
    return base, cols


def image_keys(payload: dict, prev: str | None, settings: RenderSettings) -> list[str]:
    """Each image's key in a segment: what its frame depends on, the images before it included (the segment's
    values that hold for all its images, the key of the segment before, and the own values of this image and of
    every image before it). Two segments whose first ``j`` images have equal image keys have equal first ``j``
    frames, whatever their later images hold: a keyframe or text strip changed later in a segment keeps the
    images before it (``engine.render.jobs.job``)."""
    base, cols = image_columns(payload, settings)
    h = hashlib.sha256(dumps_strict({"base": base, "prev": prev}, indent=None).encode()).digest()
    out = []
    for i in range(int(payload["images"])):
        h = hashlib.sha256(h + dumps_strict([c[i] for c in cols], indent=None).encode()).digest()
        out.append(h.hex()[:32])
    return out

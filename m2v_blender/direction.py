"""Directing from the timeline, the arithmetic: text strips as prompt parts, lyric markers as text strips, the cut
points of a channel's strips, each image's first timeline frame, keyframed values per image, and music baked into
keys. Plain Python: no bpy, unit-testable; ``directing`` is the Blender side.

Times are song (file) seconds, frames are the scene's timeline frames, and the two meet through the song strip's
:class:`~m2v_blender.timeline.StripTiming`, as markers do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .contract import protocol
from .timeline import StripTiming

#: What joins the words of lyric lines sharing a time stamp (as the engine's guidance parts join them).
JOIN = " / "


@dataclass(frozen=True)
class StripSpan:
    """A strip as the arithmetic sees it: its visible frames ``[start, end)``, and for a text strip its words."""

    start: int
    end: int
    text: str = ""
    weight: float = 1.0
    name: str = ""


def words(text: str) -> str:
    """A text strip's words on one line (its line breaks and runs of spaces as single spaces)."""
    return " ".join(text.split())


def prompt_parts(strips: Iterable[StripSpan], timing: StripTiming, span: tuple[float, float]) -> list[dict]:
    """The prompt parts text strips stand for: ``{start, end, text, weight}`` in song seconds (0.1 ms, as plans
    keep times), clipped to the song's visible ``span``; empty strips and strips outside it left out.

    Sorted by start, then by name: where strips overlap (the Python API allows it on one channel), the one
    starting later guides, and of two starting together the one whose name sorts later (``engine.plan.prompts``).
    """
    t0, t1 = span
    out = []
    for s in sorted(strips, key=lambda s: (timing.time_at(s.start), s.name)):
        text = words(s.text)
        a, b = round(max(t0, timing.time_at(s.start)), 4), round(min(t1, timing.time_at(s.end)), 4)
        if text and b > a:
            out.append({"start": a, "end": b, "text": text, "weight": float(s.weight)})
    return out


def prompts_document(parts: list[dict]) -> dict:
    """The ``--prompts`` file of the text strips' parts (kind ``m2v-prompts``)."""
    return {"kind": protocol.PROMPTS_KIND, "version": protocol.PROMPTS_VERSION, "prompts": list(parts)}


def lyric_strip_spans(
    lyrics: Iterable[tuple[int, str]], cuts: Iterable[int], first: int, last: int
) -> list[tuple[int, int, str]]:
    """``(start, end, words)`` of the text strip each lyric marker becomes, on the timeline frames ``[first, last)``.

    A lyric guides from its marker until the next lyric or the next cut, whichever comes first (as the engine's
    guidance parts do), so a strip spans exactly that; markers on one frame become one strip, their words joined
    as the engine joins them. Markers outside ``[first, last)`` have no strip (the song is not heard there).
    """
    by_frame: dict[int, list[str]] = {}
    for frame, text in sorted(lyrics, key=lambda x: x[0]):
        if first <= frame < last and words(text):
            by_frame.setdefault(frame, []).append(words(text))
    starts = sorted(by_frame)
    cuts = sorted(set(cuts))
    out = []
    for i, f in enumerate(starts):
        ends = [last] + starts[i + 1 : i + 2] + [c for c in cuts if c > f][:1]
        out.append((f, min(ends), JOIN.join(by_frame[f])))
    return out


def strip_cut_frames(spans: Iterable[tuple[int, int]], first: int | None = None, last: int | None = None) -> list[int]:
    """The cut points of a channel's strips: every start and end, once each, strictly inside ``(first, last)``
    when given (a cut at the song's first or last frame would be no cut)."""
    frames = {int(f) for s, e in spans for f in (s, e)}
    return sorted(f for f in frames if (first is None or f > first) and (last is None or f < last))


def image_first_frames(timing: StripTiming, start: float, end: float, images: int) -> list[int]:
    """Each image's first timeline frame, by the add-on's image strips' own rule.

    A segment's strip covers frames ``frame_at(start)`` to ``frame_at(end)`` and shows image
    ``protocol.image_at(time_at(f))`` at frame ``f`` (``timeline.strip_files``); image ``i`` first shows at the
    first frame showing it or a later image. (An image whose slot is shorter than a frame may show at no frame:
    its first frame is then where the next image first shows.)
    """
    f, f1 = timing.frame_at(start), timing.frame_at(end)
    out = []
    for i in range(images):
        while f < f1 and protocol.image_at(timing.time_at(f), start, end, images) < i:
            f += 1
        out.append(f)
    return out


def segments_of_plan(plan: dict) -> list[tuple[float, float, int]]:
    """``(start, end, images)`` of each segment of a plan."""
    return [(float(s["start"]), float(s["end"]), int(s["images"])) for s in plan["segments"]]


def segments_now(
    levels: dict, frames: Sequence[int], timing: StripTiming, min_rate: float, max_rate: float
) -> list[tuple[float, float, int]]:
    """``(start, end, images)`` per segment for the cut markers as they are now, with the engine's arithmetic (the
    same as the panel's cost line: the last analysis's level curve, the rates in use, the scene's frame rate)."""
    from .timeline import boundaries_from_frames

    bounds = boundaries_from_frames(list(frames), timing, timing.visible_span())
    counts = protocol.segment_counts(levels, bounds, min_rate, max_rate, timing.fps)
    return [(a, b, c[3]) for a, b, c in zip(bounds[:-1], bounds[1:], counts)]


def image_starts(segments: Sequence[tuple[float, float, int]]) -> list[float]:
    """The start of every image's slot, in order (``protocol.image_slots``, unrounded: the engine's arithmetic)."""
    return [a for s, e, n in segments for a, _ in protocol.image_slots(s, e, n, digits=None)]


def image_frames(segments: Sequence[tuple[float, float, int]], timing: StripTiming) -> list[int]:
    """Every image's first timeline frame, in order."""
    return [f for s, e, n in segments for f in image_first_frames(timing, s, e, n)]


def curve_keys(starts: Sequence[float], values: Sequence) -> list[list]:
    """One ``constant`` key per image, at its start, holding its value: the exchange form of ``--curves`` that
    gives each image exactly the value Blender's F-curve has at the image's first frame (``engine.plan.curves``)."""
    return [
        [float(t), list(v) if isinstance(v, (tuple, list)) else float(v), "constant"] for t, v in zip(starts, values)
    ]


def curves_document(curves: dict[str, list[list]]) -> dict:
    return {"kind": protocol.CURVES_KIND, "version": protocol.CURVES_VERSION, "curves": dict(curves)}


def signal_slot_value(doc: dict, name: str, start: float, end: float) -> float:
    """A signal's mean over ``[start, end)`` (file seconds), from an ``m2v-signals`` document (the engine's
    ``engine.plan.signals.slot_value``, the same arithmetic)."""
    return protocol.mean_level(doc["signals"][name], doc["hop"], start - doc["offset"], end - doc["offset"])


def bake_keys(
    doc: dict, signal: str, segments: Sequence[tuple[float, float, int]], timing: StripTiming, lo: float, hi: float
) -> list[tuple[int, float]]:
    """``(frame, value)`` keys of a signal baked onto a setting: one per image, at its first timeline frame, the
    signal's mean over the image's slot scaled from 0-1 to ``lo``-``hi``. Images sharing a first frame (one too short
    to show) give the key of the image shown there."""
    keys: dict[int, float] = {}
    for s, e, n in segments:
        frames = image_first_frames(timing, s, e, n)
        for f, (a, b) in zip(frames, protocol.image_slots(s, e, n, digits=None)):
            keys[f] = lo + (hi - lo) * signal_slot_value(doc, signal, a, b)
    return sorted(keys.items())

"""Timed prompts: text that guides the images of a span of the song, as a lyric guides its span.

A prompt part has a start and an end (song seconds, any span, across cuts), a text and a weight: at weight 1
its text replaces the guidance the image would otherwise follow (its lyric or its audio, with the segment's
prompt mixed in); below 1 it mixes with it (the normalised weighted sum, as a segment prompt mixes). They come
from the editor's text strips (the add-on's Prompt Channel) or from a file (``--prompts``):

- ``.srt`` / ``.vtt`` cues, ``.lrc`` lines, ``.csv`` rows (the lyrics readers of :mod:`engine.analysis.lyrics`): each
  line is a prompt at weight 1, from its time to its end; a line without an end (LRC, CSV without an end column)
  ends where the next later line starts, and the last line needs one (an empty LRC time tag, an end column).
- ``.json``: ``{"kind": "m2v-prompts", "version": 1, "prompts": [{"start": 12.0, "end": 18.5, "text": "a
  lighthouse", "weight": 0.8}, ...]}`` (``weight`` optional, 1 by default).

**Which prompt guides an image** (:func:`prompt_for_span`): an image holds a slot ``[a, b)`` of song time
(:func:`engine.protocol.image_slots`). The prompts that may guide it are those running at its start ``a`` and those
lying wholly inside its slot (which no other image's start would see, so a prompt shorter than an image still
guides one). Of these, the one that starts latest wins; of prompts starting together, the one listed later. So
overlapping prompts are allowed, and where they overlap the later-starting one guides (the text strips of one
channel cannot overlap; files may). Times compare within :data:`TIME_TOLERANCE` (the plan keeps 0.1 ms).

In the plan they are the optional top-level ``"prompts"`` list (``[{"start", "end", "text", "weight"}]``, sorted by
start, clipped to the planned span): a plan without prompts has no such field and stays byte for byte what it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.analysis.lyrics import PARSERS, LyricLine, read_text, text_format
from engine.errors import InputError
from engine.files import MAX_TEXT_BYTES, check_input_document, check_input_file, check_number, read_json
from engine.protocol import PROMPTS_KIND, PROMPTS_VERSION, image_slots

#: Prompt and image times are compared within this many seconds (the plan rounds times to 0.1 ms).
TIME_TOLERANCE = 1e-4
#: The fields of a prompt in a prompts file (anything else is refused: a misspelt ``weight`` must not pass silently).
FIELDS = ("start", "end", "text", "weight")
#: Text formats of a prompts file (read by the lyrics readers) and the JSON document.
TEXT_SUFFIXES = (".srt", ".vtt", ".lrc", ".csv")


@dataclass(frozen=True)
class PromptPart:
    """One timed prompt.

    Attributes
    ----------
    start, end : float
        Song seconds (file time), ``end > start``.
    text : str
        What the images in the span should show.
    weight : float
        0-1: 1 replaces the lyric or audio guidance, less mixes with it.
    """

    start: float
    end: float
    text: str
    weight: float = 1.0

    def to_json(self) -> dict:
        return {"start": round(self.start, 4), "end": round(self.end, 4), "text": self.text, "weight": self.weight}

    def record(self) -> dict:
        """What a frame's record in the render's manifest says of the prompt that guided it (its weight below 1)."""
        return {"prompt": self.text, **({"prompt_weight": self.weight} if self.weight < 1 else {})}


def _words(text: str) -> str:
    return " ".join(text.split())


def parts_from_lines(lines: Sequence[LyricLine], path: str | Path) -> list[PromptPart]:
    """Prompt parts (weight 1) from timed lines: each from its time to its end, or else to the next later line.

    Raises
    ------
    InputError
        Naming the line that has no end (the last, without one) or ends where it starts.
    """
    out = []
    for j, ly in enumerate(lines):
        end = ly.end
        if end is None:
            end = next((x.time for x in lines[j + 1 :] if x.time > ly.time), None)
            if end is None:
                raise InputError(
                    f"the last prompt ({ly.text[:40]!r}) has no end time: give it one (in LRC an empty time tag "
                    "after it, in CSV an end column)",
                    path,
                    ly.line,
                )
        if not end > ly.time:
            raise InputError(f"the prompt ends ({end:g} s) where or before it starts ({ly.time:g} s)", path, ly.line)
        out.append(PromptPart(float(ly.time), float(end), ly.text))
    return out


def parse_prompts_doc(doc: object, path: str | Path = "<prompts>") -> list[PromptPart]:
    """Prompt parts from a ``m2v-prompts`` document, every value checked.

    Raises
    ------
    InputError
        Naming the file and the prompt (0-based) and field: a wrong kind or version, a missing list, a NaN or
        negative time, an end not after its start, an empty text, a weight outside [0, 1], an unknown field.
    """
    check_input_document(doc, PROMPTS_KIND, PROMPTS_VERSION, path)
    entries = doc.get("prompts")
    if not isinstance(entries, list):
        raise InputError('no prompts list ("prompts": [{start, end, text, weight}, ...])', path)
    out = []
    for j, e in enumerate(entries):
        name = f"prompt {j}"
        if not isinstance(e, dict):
            raise InputError(f"{name} is not an object", path)
        unknown = sorted(set(e) - set(FIELDS))
        if unknown:
            raise InputError(f"{name} has an unknown field {unknown[0]!r} (its fields: {', '.join(FIELDS)})", path)
        start = check_number(e.get("start"), f"{name} start", 0, None, path=path)
        end = check_number(e.get("end"), f"{name} end", 0, None, path=path)
        if not end > start:
            raise InputError(f"{name} ends ({end:g} s) where or before it starts ({start:g} s)", path)
        text = e.get("text")
        if not isinstance(text, str) or not _words(text):
            raise InputError(f"{name} text must be words, got {text!r}"[:120], path)
        weight = check_number(e.get("weight", 1.0), f"{name} weight", 0, 1, path=path)
        out.append(PromptPart(start, end, _words(text), weight))
    return out


def load_prompts(path: str | Path) -> list[PromptPart]:
    """Read a prompts file: SRT, WebVTT, LRC, CSV (as lyrics are read) or a ``m2v-prompts`` JSON document.

    Returns
    -------
    list of PromptPart
        In the file's order (SRT, LRC and CSV lines sorted by time, as the lyrics readers sort them).

    Raises
    ------
    InputError
        Naming the file and the line or prompt of the first problem.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".json":
        out = parse_prompts_doc(read_json(path, "prompts file", MAX_TEXT_BYTES), path)
    else:
        check_input_file(path, "prompts file", MAX_TEXT_BYTES)
        text = read_text(path, "prompts file")
        fmt = text_format(text, ext)
        if fmt is not None:
            out = parts_from_lines(PARSERS[fmt](text, path), path)
        elif text.lstrip().startswith("{"):
            out = parse_prompts_doc(read_json(path, "prompts file", MAX_TEXT_BYTES), path)
        else:
            raise InputError("unknown prompts format: use .srt, .vtt, .lrc, .csv or .json (kind m2v-prompts)", path)
    if not out:
        raise InputError("the prompts file holds no prompts", path)
    return out


def prompt_for_span(parts: Sequence[PromptPart], start: float, end: float) -> PromptPart | None:
    """The prompt that guides an image holding the slot ``[start, end)`` (song seconds), or None.

    Candidates are the prompts running at ``start`` and those lying wholly inside ``(start, end]``; the one
    starting latest wins, and of those starting together the one later in ``parts``. See the module's text.
    """
    tol = TIME_TOLERANCE
    best, best_key = None, None
    for j, p in enumerate(parts):
        running = p.start <= start + tol and p.end > start + tol
        inside = p.start > start + tol and p.end <= end + tol
        if (running or inside) and (best_key is None or (p.start, j) >= best_key):
            best, best_key = p, (p.start, j)
    return best


def plan_prompts(plan: dict) -> list[PromptPart]:
    """The plan's prompt parts (its optional ``"prompts"`` field, checked by ``engine.plan.schema``)."""
    return [
        PromptPart(float(p["start"]), float(p["end"]), p["text"], float(p.get("weight", 1.0)))
        for p in plan.get("prompts") or []
    ]


def image_prompts(plan: dict) -> list[list[PromptPart | None]]:
    """For every segment, the prompt guiding each of its images (None where no prompt does).

    Images hold the slots :func:`engine.protocol.image_slots` gives (unrounded, the export's arithmetic).
    """
    parts = plan_prompts(plan)
    out = []
    for seg in plan["segments"]:
        slots = image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)
        out.append([prompt_for_span(parts, a, b) if parts else None for a, b in slots])
    return out


def apply_prompts(plan: dict, parts: Sequence[PromptPart]) -> list[str]:
    """Put the prompt parts in the plan (``plan["prompts"]``), clipped to the planned span; returns warnings.

    Parts wholly outside the span are left out with a warning; sorting by start is stable, so prompts that
    start together keep their order (the later one guides, :func:`prompt_for_span`). Without any part inside
    the span the plan gets no ``prompts`` field.
    """
    t0, t1 = float(plan["segments"][0]["start"]), float(plan["segments"][-1]["end"])
    kept, warnings = [], []
    for p in parts:
        a, b = max(p.start, t0), min(p.end, t1)
        if round(b, 4) <= round(a, 4):
            warnings.append(
                f"the prompt {p.text[:40]!r} at {p.start:.2f}-{p.end:.2f} s is outside the planned span "
                f"({t0:.2f}-{t1:.2f} s); ignored"
            )
            continue
        kept.append(PromptPart(a, b, p.text, p.weight))
    if kept:
        plan["prompts"] = [p.to_json() for p in sorted(kept, key=lambda p: p.start)]
    return warnings

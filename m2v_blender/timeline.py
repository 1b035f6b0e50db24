"""Song time <-> scene frames, and m2v's marker names. Plain Python: no bpy, unit-testable.

A sound strip places file time 0 at ``frame_start`` plus its Sound Offset
(``sound_offset`` seconds, Blender 4.3+); trimming hides frames at either
end but never moves the song. Scene frame rates are ``fps / fps_base``
(29.97 is 30000/1001).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every marker m2v writes starts with this; re-analysis replaces only these.
PREFIX = "m2v "
SEGMENT_TAG = "S"
LYRIC_TAG = "\u266a"  # ♪
MAX_NAME = 63  # Blender's marker names hold 63 bytes

_SEGMENT = re.compile(r"^m2v S(\d+)$")
_LYRIC = re.compile(r"^m2v \u266a(\d+)(?: (.*))?$")


@dataclass(frozen=True)
class StripTiming:
    """Where a sound strip sits on the timeline."""

    frame_start: float  # the strip's start; file time 0 plays here when sound_offset is 0
    frame_final_start: float  # first visible frame
    frame_final_end: float  # frame after the last visible one
    fps: float  # scene.render.fps / scene.render.fps_base
    sound_offset: float = 0.0  # seconds the sound is delayed: file time 0 plays at frame_start + offset × fps

    # Blender plays file time t at frame ``frame_start + (t + sound_offset) × fps``: a positive Sound
    # Offset delays the song (the strip is silent until file time 0 arrives), a negative one starts it
    # early (its first -offset seconds would fall before frame_start and are not heard). Blender's audio
    # code (BKE_sound_add_scene_sound, BKE_sound_move_scene_sound) adds sound_offset to the strip's start
    # time, and a mixdown agrees: a click at file time 1.5 s in a strip at frame 101, 30 fps, is heard at
    # frame 158.0 with offset +0.4 s (not 134) and at 137.0 with -0.3 s (not 155), trimmed or not. Trims
    # (frame_final_start/end) only cut what is heard; they never move the song.

    def time_at(self, frame: float) -> float:
        """File time (seconds) heard at a frame."""
        return (frame - self.frame_start) / self.fps - self.sound_offset

    def frame_at(self, t: float) -> int:
        """Nearest frame at which file time ``t`` is heard."""
        return int(round(self.frame_start + (t + self.sound_offset) * self.fps))

    def visible_span(self, file_duration: float | None = None) -> tuple[float, float]:
        """File times of the strip's visible (untrimmed) part."""
        t0 = max(0.0, self.time_at(self.frame_final_start))
        t1 = self.time_at(self.frame_final_end)
        if file_duration is not None:
            t1 = min(t1, file_duration)
        return t0, t1


def segment_marker_name(index: int) -> str:
    return f"{PREFIX}{SEGMENT_TAG}{index + 1:02d}"


def lyric_marker_name(index: int, text: str) -> str:
    name = f"{PREFIX}{LYRIC_TAG}{index + 1:02d} {text}"
    # Names are bytes-limited: cut on a character boundary.
    raw = name.encode("utf-8")[:MAX_NAME]
    return raw.decode("utf-8", errors="ignore").rstrip()


def is_m2v_marker(name: str) -> bool:
    return name.startswith(PREFIX) and (_SEGMENT.match(name) is not None or _LYRIC.match(name) is not None)


def is_segment_marker(name: str) -> bool:
    """m2v's own cut markers (``m2v S07``)."""
    return _SEGMENT.match(name) is not None


#: The rule for what counts as a cut (shown in the panel): m2v's ``m2v S…`` markers, and any marker whose
#: name starts with the word "cut" (press M, then rename the marker to "cut", "Cut 3", "cut: drop" ...).
CUT_RULE = "Cuts: markers named \u201cm2v S\u2026\u201d, or whose name starts with \u201ccut\u201d"
_CUT_WORD = re.compile(r"^cut\b", re.IGNORECASE)


def is_cut_marker(name: str) -> bool:
    return is_segment_marker(name) or _CUT_WORD.match(name.strip()) is not None


def next_cut_name(names: list[str]) -> str:
    """A new ``m2v S..`` name that no marker has yet."""
    used = [int(m.group(1)) for n in names if (m := _SEGMENT.match(n))]
    return segment_marker_name(max(used, default=0))


def next_lyric_index(names: list[str]) -> int:
    return max((i for n in names if (i := lyric_index(n)) is not None), default=-1) + 1


def lyric_text(name: str, stored: str | None) -> str | None:
    """The words a lyric marker stands for: the name is the truth.

    The stored full text only fills in what Blender's 63-byte limit cut off,
    and only while the marker still has the name m2v gave it; a renamed
    marker means its new words (an emptied one, no guidance).
    """
    m = _LYRIC.match(name)
    if m is None:
        return None
    if stored and name == lyric_marker_name(int(m.group(1)) - 1, stored):
        return stored
    return (m.group(2) or "").strip() or None


def snap_to_beat(t: float, beats: list[float]) -> float:
    """The nearest beat within half a beat of ``t`` (``t`` itself when there is none)."""
    if len(beats) < 2:
        return t
    i = min(range(len(beats)), key=lambda j: abs(beats[j] - t))
    half = 0.5 * (beats[min(i + 1, len(beats) - 1)] - beats[max(i - 1, 0)]) / (2 if 0 < i < len(beats) - 1 else 1)
    return beats[i] if abs(beats[i] - t) <= half else t


def lyric_index(name: str) -> int | None:
    """0-based index of a lyric marker into the stored full texts, or None."""
    m = _LYRIC.match(name)
    return int(m.group(1)) - 1 if m else None


def boundaries_from_frames(frames: list[int], timing: StripTiming, span: tuple[float, float]) -> list[float]:
    """Segment boundaries (file seconds) from segment-marker frames: the span's ends plus each marker inside it."""
    t0, t1 = span
    inner = sorted({round(timing.time_at(f), 4) for f in frames})
    # A marker within half a frame of an end is that end, not a sliver segment.
    eps = 0.5 / timing.fps
    inner = [t for t in inner if t0 + eps < t < t1 - eps]
    return [round(t0, 4), *inner, round(t1, 4)]


def lyrics_csv(entries: list[tuple[float, str]]) -> str:
    """Lyrics as the engine's CSV (``MM:SS.sss,text``), sorted by time."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    for t, text in sorted(entries):
        w.writerow([f"{int(t // 60):02d}:{t % 60:06.3f}", text])
    return buf.getvalue()


def strip_files(ev: dict, timing: StripTiming, start: int, end: int) -> list[str]:
    """The image file each timeline frame ``start..end-1`` of a segment shows (from a ``segment_end`` event).

    The engine's own rule (``protocol.image_at``) decides, as in the exported video.
    """
    from .contract import protocol

    files = ev["files"]
    return [files[protocol.image_at(timing.time_at(f), ev["start"], ev["end"], len(files))] for f in range(start, end)]

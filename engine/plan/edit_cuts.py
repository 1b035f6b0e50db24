"""``plan --boundaries-from EDIT``: the cuts of an edit made in another editor, as segment boundaries (issue 29).

The cuts are the edges of the items on the edit's video track (m2v's own
track, named ``m2v``, else the first video track with a clip), from its first
clip to the track's end: a gap after a clip is a segment too (an unfinished
render's export holds its missing segments as gaps).
Edit time becomes song time through the song's own clip on an audio track
(the clip whose media is the song's file): moving the song in the editor
moves the cuts with it. Without one (an EDL holds no audio) the edit's time
0 is the song's start, and a warning says so.

Formats by extension: OpenTimelineIO (``.otio``), Final Cut Pro 7 XML
(``.xml``), CMX 3600 EDL (``.edl``, read at ``--fps``: an EDL holds no frame
rate) and Kdenlive (``.kdenlive``) through OpenTimelineIO's adapters; FCPXML
(``.fcpxml``) is read here, its rational times exactly (the adapter's reader
truncates to whole frame rates).
"""

from __future__ import annotations

import contextlib
import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

from engine.errors import InputError
from engine.files import MAX_TEXT_BYTES, check_input_file
from engine.plan.build import END_TOLERANCE

#: Edit formats read (extension -> OpenTimelineIO adapter; FCPXML is read by :func:`_fcpxml_edit`).
EDIT_FORMATS = {".otio": "otio_json", ".xml": "fcp_xml", ".fcpxml": None, ".edl": "cmx_3600", ".kdenlive": "kdenlive"}
#: m2v's video track name (``engine.store.timeline_export.VIDEO_TRACK``).
VIDEO_TRACK = "m2v"
#: Boundaries are kept to 0.1 ms, as plans keep them.
DIGITS = 4


@dataclass
class Edit:
    """What the boundaries come from: item edges in edit seconds, and where the song's time 0 plays."""

    edges: list[Fraction]
    song_zero: Fraction | None
    #: How the song's placement was found (for the warning when it was not).
    placed_by: str


def read_edit_cuts(path: str | Path, song_path: str | Path, fps: float | None = None) -> tuple[list[float], list[str]]:
    """Segment boundaries (song seconds, increasing) from an edit's cuts; returns them and warnings.

    Parameters
    ----------
    path : str or Path
        The edit: ``.otio``, ``.xml`` (FCP 7), ``.fcpxml``, ``.edl`` or ``.kdenlive``.
    song_path : str or Path
        The song; its clip in the edit (matched by file name) places the cuts on the song.
    fps : float, optional
        An EDL's frame rate (default 24); other formats carry their own.

    Raises
    ------
    InputError
        An unknown extension, a file that is not that format, an edit without a video clip.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EDIT_FORMATS:
        raise InputError(
            f"--boundaries-from: unknown edit format {suffix or '(no extension)'!r}; use one of {', '.join(EDIT_FORMATS)}",
            path,
        )
    check_input_file(path, "edit", MAX_TEXT_BYTES)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("--boundaries-from: the edit is not UTF-8 text", path) from None
    song_name = Path(song_path).name
    if suffix == ".fcpxml":
        edit = _fcpxml_edit(text, song_name, path)
    else:
        edit = _otio_edit(_read_otio(text, suffix, fps, path), song_name, path)
    warnings = []
    zero = edit.song_zero
    if zero is None:
        zero = Fraction(0)
        warnings.append(
            f"{path.name} has no clip of {song_name}: its time 0 is taken as the song's start "
            "(put the song on an audio track of the edit to place the cuts on it)"
        )
    bounds = []
    for t in edit.edges:
        b = round(float(t - zero), DIGITS)
        if not bounds and -END_TOLERANCE <= b < 0:
            b = 0.0  # the song starts within a frame after the edit's first cut (a song placed between frames)
        if not bounds or b > bounds[-1]:
            bounds.append(b)
    if len(bounds) < 2:
        raise InputError("--boundaries-from: the edit's video track holds no clip with a length", path)
    return bounds, warnings


# ---------------------------------------------------------------- through OpenTimelineIO


def _read_otio(text: str, suffix: str, fps: float | None, path: Path):
    import opentimelineio as otio

    from engine.protocol import timeline_rate

    kwargs = {}
    if suffix == ".edl":
        num, den = timeline_rate(fps if fps else 24)
        kwargs["rate"] = num / den
    try:
        # The Kdenlive adapter prints a notice on stdout (the add-on's event channel).
        with contextlib.redirect_stdout(io.StringIO()):
            got = otio.adapters.read_from_string(text, adapter_name=EDIT_FORMATS[suffix], **kwargs)
    except Exception as e:  # noqa: BLE001 - the adapters raise anything on a malformed file
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(f"--boundaries-from: cannot be read as a {suffix} edit ({why})", path) from None
    if isinstance(got, otio.schema.Timeline):
        return got
    timelines = (
        list(got.find_children(descended_from_type=otio.schema.Timeline)) if hasattr(got, "find_children") else []
    )
    if not timelines:
        raise InputError("--boundaries-from: the file holds no timeline", path)
    return timelines[0]


def _otio_edit(tl, song_name: str, path: Path) -> Edit:
    import opentimelineio as otio

    video = [t for t in tl.tracks if t.kind == otio.schema.TrackKind.Video and _clips(t)]
    if not video:
        raise InputError("--boundaries-from: the edit has no video track with a clip", path)
    track = next((t for t in video if t.name == VIDEO_TRACK), video[0])
    spans = [(track.range_of_child_at_index(i), item) for i, item in enumerate(track)]
    spans = [(r, item) for r, item in spans if not isinstance(item, otio.schema.Transition)]
    content = [k for k, (_, item) in enumerate(spans) if isinstance(item, otio.schema.Clip)]
    kept = spans[content[0] :]
    # An edge inside one m2v segment (a partly rendered segment's clip, then the gap of its missing images) is
    # no cut: m2v's exports name each item's segment.
    edges = [
        _seconds(r.start_time) for k, (r, item) in enumerate(kept) if k == 0 or not _same_segment(kept[k - 1][1], item)
    ]
    edges.append(_seconds(kept[-1][0].end_time_exclusive()))
    zero = _otio_song_zero(tl, song_name)
    return Edit(edges, zero, "song clip" if zero is not None else "none")


def _same_segment(a, b) -> bool:
    sa, sb = (dict(x.metadata.get(VIDEO_TRACK) or {}).get("segment") for x in (a, b))
    return sa is not None and sa == sb


def _clips(track) -> list:
    import opentimelineio as otio

    return [c for c in track if isinstance(c, otio.schema.Clip)]


def _seconds(t) -> Fraction:
    """A RationalTime as exact seconds (its value and rate as the file gave them)."""
    return Fraction(t.value) / Fraction(t.rate)


def _otio_song_zero(tl, song_name: str) -> Fraction | None:
    """Edit seconds at which the song's time 0 plays: from the song's clip on an audio track."""
    import opentimelineio as otio

    for track in tl.tracks:
        if track.kind != otio.schema.TrackKind.Audio:
            continue
        for i, item in enumerate(track):
            if not isinstance(item, otio.schema.Clip) or _media_name(item.media_reference) != song_name:
                continue
            at = _seconds(track.range_of_child_at_index(i).start_time)
            source = _seconds(item.source_range.start_time)
            avail = item.media_reference.available_range
            media_start = _seconds(avail.start_time) if avail is not None else Fraction(0)
            return at - (source - media_start)
    return None


def _media_name(ref) -> str | None:
    url = getattr(ref, "target_url", None)
    if not url:
        return None
    return _url_name(url)


def _url_name(url: str) -> str:
    parsed = urlparse(url)
    return os.path.basename(unquote(parsed.path if parsed.scheme in ("file", "") else url))


# ---------------------------------------------------------------- FCPXML, read here


def _fcpxml_time(text: str | None) -> Fraction:
    """FCPXML's rational seconds: ``"1001/24000s"``, ``"3600s"``, ``"0s"``."""
    if not text:
        return Fraction(0)
    body = text.strip()
    if not body.endswith("s"):
        raise ValueError(text)
    return Fraction(body[:-1])


def _fcpxml_edit(text: str, song_name: str, path: Path) -> Edit:
    """The spine's item edges and the song clip's placement, in exact rational seconds."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InputError(f"--boundaries-from: not FCPXML ({e})", path) from None
    seq = root.find(".//project/sequence")
    if seq is None:
        seq = root.find(".//sequence")
    spine = seq.find("spine") if seq is not None else None
    if spine is None:
        raise InputError("--boundaries-from: the FCPXML holds no project with a spine", path)
    try:
        tc_start = _fcpxml_time(seq.get("tcStart"))
        items = [
            (_fcpxml_time(e.get("offset")), _fcpxml_time(e.get("duration")), e.tag)
            for e in spine
            if e.tag != "transition" and e.get("duration") is not None
        ]
        assets = {a.get("id"): _url_name(a.get("src", "")) for a in root.iter("asset")}
        zero = _fcpxml_song_zero(spine, assets, song_name)
    except (ValueError, ZeroDivisionError):
        raise InputError("--boundaries-from: the FCPXML has a time that is not a number of seconds", path) from None
    content = [k for k, (_, _, tag) in enumerate(items) if tag != "gap"]
    if not content:
        raise InputError("--boundaries-from: the edit's spine holds no clip", path)
    kept = items[content[0] :]
    edges = [o - tc_start for o, _, _ in kept] + [kept[-1][0] + kept[-1][1] - tc_start]
    return Edit(edges, None if zero is None else zero - tc_start, "song clip" if zero is not None else "none")


def _fcpxml_song_zero(spine, assets: dict, song_name: str) -> Fraction | None:
    """Sequence seconds at which the song's time 0 plays, from the clip whose asset is the song."""
    timing_tags = ("clip", "asset-clip", "ref-clip", "sync-clip", "mc-clip")
    for top in spine:
        for el in top.iter():
            if assets.get(el.get("ref")) != song_name:
                continue
            # The element that times the media: itself, or the clip it sits in (FCPX nests audio in clip/gap).
            timing = el if el.tag in timing_tags else _enclosing_clip(top, el, timing_tags)
            at = _fcpxml_time(timing.get("offset"))
            if timing is not top:  # a connected clip: its offset is in its parent's source time
                at = _fcpxml_time(top.get("offset")) + at - _fcpxml_time(top.get("start"))
            return at - _fcpxml_time(timing.get("start"))
    return None


def _enclosing_clip(top, target, tags):
    """The innermost element of ``tags`` under ``top`` (or ``top``) that holds ``target``."""
    found = top
    stack = [(top, [top])]
    while stack:
        node, chain = stack.pop()
        if node is target:
            for anc in reversed(chain):
                if anc.tag in tags:
                    return anc
            return found
        stack.extend((child, [*chain, child]) for child in node)
    return found

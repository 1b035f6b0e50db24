"""``engine export --timeline``: a render as an editable timeline for another editor (issue 29).

One video track holds a clip per segment at its song time, the song is an
audio track, and markers name every cut, lyric line and segment prompt; each
clip's metadata carries the segment's key, guidance, take, seed and preset.
The format follows the output's extension (:data:`FORMATS`), written by
OpenTimelineIO and its adapters.

Timing: the timeline runs at an exact rational rate (24000/1001, not 23.976).
Song time ``t`` plays at timeline frame ``round(song_frame + t * rate)``; a
segment's clip covers the frames from its start's frame to its end's, and a
frame shows the image whose slot holds the frame's time
(:func:`engine.protocol.image_at`): the add-on's image strips follow the same
two rules, so an export from Blender lines up with its strips frame for frame.

Media: OTIO holds image sequences, so its clips reference the segment's PNGs
at their own rate (images / length). The other formats get one movie per
segment (ProRes 422 Proxy in QuickTime, PyAV), the images held for their
frames at the timeline rate, written into the segment's own folder and named
by its key, rate and frames: a second export reuses it while the segment is
unchanged, and it goes when the render drops the segment's frames.

A render still running or incomplete exports what exists: a segment's
finished images as a shorter clip, the rest a gap, and a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from engine.errors import InputError
from engine.files import (
    check_not_inputs,
    created_file,
    make_dirs,
    remove_temp_files,
    temp_name,
    write_bytes_atomic,
)
from engine.protocol import MANIFEST_FILE, image_at, timeline_rate
from engine.store.export import _read_frame, check_video_path
from engine.store.manifest import load_render

#: Output extension -> OpenTimelineIO adapter.
FORMATS = {
    ".otio": "otio_json",
    ".xml": "fcp_xml",
    ".fcpxml": "fcpx_xml",
    ".edl": "cmx_3600",
    ".kdenlive": "kdenlive",
}
#: What each format is called in messages.
FORMAT_NAMES = {
    ".otio": "OpenTimelineIO",
    ".xml": "Final Cut Pro 7 XML",
    ".fcpxml": "FCPXML",
    ".edl": "CMX 3600 EDL",
    ".kdenlive": "Kdenlive",
}
#: Formats whose clips can reference an image sequence; the others get a movie per segment.
IMAGE_SEQUENCE_FORMATS = (".otio",)
#: Formats that keep markers only on clips (the adapters drop timeline markers): they go on the video clips.
CLIP_MARKER_FORMATS = (".fcpxml", ".edl")
#: The video track's name; the boundaries reader looks for it first.
VIDEO_TRACK = "m2v"
#: Clip metadata namespace (OTIO keeps it; the XML formats get their own fields, see :func:`_format_metadata`).
META = "m2v"
TIMELINE_KIND, TIMELINE_VERSION = "m2v-timeline", 1
#: Marker colours: cuts, lyric lines, prompts (all in CMX 3600's and Kdenlive's palettes; FCPX reads red and green
#: as to-do markers, so neither is used).
CUT_COLOR, LYRIC_COLOR, PROMPT_COLOR = "BLUE", "CYAN", "MAGENTA"
#: The intermediate movies' codec: ProRes 4444, which every editor reads. Full chroma: 4:2:2 smears the colour of
#: sharp edges (text, line art) by several levels; 4444 comes back within 0.1 of a level of the PNGs. Its colour
#: matrix is the BT.601 one the conversion uses (tagged, so no editor guesses another).
MOVIE_CODEC, MOVIE_PROFILE, MOVIE_PIX_FMT = "prores_ks", "4", "yuv444p10le"
#: FFmpeg's codes for BT.601 (SMPTE 170M) and limited ("MPEG") range.
MOVIE_COLORSPACE, MOVIE_COLOR_RANGE = 6, 1
MOVIE_PREFIX = "m2v-clip-"


@dataclass(frozen=True)
class Clock:
    """Where song time falls on the timeline: ``rate`` frames a second, song time 0 at frame ``song_frame``."""

    rate: Fraction
    song_frame: Fraction = Fraction(0)

    def frame_at(self, t: float) -> int:
        """The timeline frame nearest song time ``t`` (where a cut at ``t`` lands)."""
        return round(self.song_frame + Fraction(t) * self.rate)

    def time_at(self, frame: int) -> float:
        """Song time (seconds) of a timeline frame's start."""
        return float((frame - self.song_frame) / self.rate)


@dataclass
class SegmentClip:
    """One segment on the timeline: its frames, the images they show, what the render holds of it."""

    index: int
    key: str
    start: float
    end: float
    images: int
    first_frame: int
    #: The image each of the segment's timeline frames shows, for the frames whose image exists.
    shown: list[int]
    #: Every frame the segment would cover once rendered.
    frames: int
    folder: str | None
    #: The render's records of the images that exist (the manifest entry's frames), in order.
    rendered: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.shown) == self.frames


def timeline_format(path: str | Path) -> str:
    """The extension naming ``path``'s format; an error lists the ones m2v writes."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(FORMATS)
        raise InputError(
            f"--timeline: unknown timeline format {suffix or '(no extension)'!r}; use one of {known}", path
        )
    return suffix


def parse_rate(text: str | float) -> Fraction:
    """``--fps`` as an exact rate (see :func:`engine.protocol.timeline_rate`), 1 to 240 frames a second."""
    try:
        num, den = timeline_rate(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--fps: not a frame rate: {text!r} (give 24, 25, 29.97 or 30000/1001)") from None
    rate = Fraction(num, den)
    if not 1 <= rate <= 240:
        raise InputError(f"--fps {text}: a timeline rate must be 1 to 240 frames a second")
    return rate


# ---------------------------------------------------------------- what the render holds


def load_plan_notes(plan_path: str | Path | None, render_dir: Path, segments: list[dict]) -> tuple[dict | None, list]:
    """The plan the render was made from, for its lyrics, prompts and takes.

    ``plan_path`` (``--plan``), else the ``plan.json`` beside the render folder (where ``run`` and the add-on
    keep it). A plan whose segments are not the render's is refused when named, passed over (with a
    warning) when found.
    """
    named = plan_path is not None
    path = Path(plan_path) if named else render_dir.parent / "plan.json"
    if not named and not path.is_file():
        return None, [f"no plan.json beside {render_dir}: lyrics, prompts and takes are left out (give --plan)"]
    from engine.plan.schema import load_plan

    plan = load_plan(path)
    spans = [(float(s["start"]), float(s["end"])) for s in plan["segments"]]
    if spans != [(float(s["start"]), float(s["end"])) for s in segments]:
        msg = "its segments are not the render's (the plan changed since): lyrics, prompts and takes are left out"
        if named:
            raise InputError(f"--plan: {msg.split(':')[0]}; give the plan this render was made from", path)
        return None, [f"{path}: {msg}"]
    return plan, []


def segment_clips(render_dir: Path, clock: Clock, plan: dict | None, store=None) -> tuple[dict, list[SegmentClip]]:
    """The render's header and each segment's clip: the frames it covers and the images that exist.

    ``store``: the render's record, when the caller has read it already (:func:`engine.store.manifest.load_render`).
    """
    store = store if store is not None else load_render(render_dir)
    if not store.segments:
        raise InputError("the render has no segments yet: wait for it to start, or render again", render_dir)
    header = store.header
    preset = (plan or {}).get("analysis", {}).get("preset")
    out = []
    for k, s in enumerate(store.segments):
        try:
            start, end, key, n = float(s["start"]), float(s["end"]), str(s["key"]), int(s["images"])
        except (KeyError, TypeError, ValueError):
            raise InputError("the render manifest is damaged (a segment without its times)", render_dir) from None
        e = store.entries.get(key)
        have = e.first_missing(render_dir) if e is not None and e.images == n else 0
        f0, f1 = clock.frame_at(start), clock.frame_at(end)
        shown = []
        for f in range(f0, f1):
            i = image_at(clock.time_at(f), start, end, n)
            if i >= have:
                break
            shown.append(i)
        seg = plan["segments"][k] if plan else {}
        clip = SegmentClip(
            index=k,
            key=key,
            start=start,
            end=end,
            images=n,
            first_frame=f0,
            shown=shown,
            frames=max(0, f1 - f0),
            folder=e.folder if e is not None else None,
            rendered=[e.frames[i] for i in range(have)] if have else [],
        )
        clip.info = _clip_info(clip, seg, header, preset, have)
        out.append(clip)
    return header, out


def _clip_info(clip: SegmentClip, seg: dict, header: dict, preset: str | None, have: int) -> dict:
    """What a clip's metadata says of its segment (plain JSON values)."""
    lyric = " / ".join(p["text"] for p in seg.get("parts", []) if p.get("kind") == "lyric" and p.get("text"))
    prompt = seg.get("prompt")
    guidance = "prompt" if prompt and float(seg.get("prompt_weight", 1.0)) >= 1 else ("lyric" if lyric else "audio")
    info = {
        "segment": clip.index,
        "key": clip.key,
        "start": clip.start,
        "end": clip.end,
        "images": clip.images,
        "rendered_images": have,
        "guidance": guidance if seg else None,
        "lyric": lyric or None,
        "prompt": prompt,
        "prompt_weight": seg.get("prompt_weight") if prompt else None,
        "take": int(seg.get("take", 0)) if seg else None,
        "seed": (header.get("settings") or {}).get("seed"),
        "preset": preset,
        "layout": bool((header.get("settings") or {}).get("layout")),
    }
    return info


def _describe(info: dict) -> str:
    """One line for an editor's note field: the guidance, then take, seed, preset and key."""
    words = (
        f"prompt: {info['prompt']}"
        if info["guidance"] == "prompt"
        else (f"lyric: {info['lyric']}" if info["lyric"] else "audio")
    )
    if info["prompt"] and info["guidance"] != "prompt":
        words += f" + prompt ({info['prompt_weight']:g}): {info['prompt']}"
    parts = [words] if info["guidance"] else []
    if info["take"] is not None:
        parts.append(f"take {info['take']}")
    parts += [f"seed {info['seed']}", f"preset {info['preset'] or '?'}", f"key {info['key'][:16]}"]
    return " | ".join(parts)


# ---------------------------------------------------------------- the timeline


def build_timeline(
    render_dir: str | Path,
    clock: Clock,
    start_frame: int = 0,
    plan: dict | None = None,
    media: str = "images",
    label_rate: float | None = None,
    store=None,
) -> tuple[object, list[SegmentClip], list[str]]:
    """The OTIO timeline of a render; returns it, its segments and warnings.

    ``media``: ``"images"`` (image-sequence references) or ``"movies"`` (one movie per segment, written
    now where missing: :func:`segment_movie`). ``start_frame``: the timeline's first frame (Blender's
    scene start); it moves earlier if the song's first image would come before it. ``label_rate``: the rate
    the times are labelled with (default the clock's; :func:`edl_label_rate`), the frame numbers unchanged.
    """
    import opentimelineio as otio

    render_dir = Path(render_dir)
    header, clips = segment_clips(render_dir, clock, plan, store)
    rate = float(label_rate or clock.rate)
    span0, span1 = clips[0].start, clips[-1].end
    first = clock.frame_at(span0)
    origin = min(int(start_frame), first)

    def rt(frames) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(float(frames), rate)

    song = header.get("song") or {}
    name = Path(str(song.get("path", "song"))).stem
    tl = otio.schema.Timeline(name=f"m2v {name}", global_start_time=rt(origin))
    tl.metadata[META] = {
        "kind": TIMELINE_KIND,
        "version": TIMELINE_VERSION,
        "rate": [clock.rate.numerator, clock.rate.denominator],
        "song_frame": str(clock.song_frame),
        "start_frame": origin,
        "song": song.get("path"),
        "span": [span0, span1],
        "render": str(Path(os.path.abspath(render_dir))),
    }
    video = otio.schema.Track(name=VIDEO_TRACK, kind=otio.schema.TrackKind.Video)
    if first > origin:
        video.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(rt(0), rt(first - origin))))
    for c in clips:
        if not c.frames:
            continue
        if c.shown:
            video.append(_segment_clip(c, clock, render_dir, media, rt))
        if not c.complete:  # the images still to render; its segment named, so a reader sees no cut inside it
            gap = otio.schema.Gap(source_range=otio.opentime.TimeRange(rt(0), rt(c.frames - len(c.shown))))
            gap.metadata[META] = {"segment": c.index, "key": c.key, "missing_images": c.images - len(c.rendered)}
            video.append(gap)
    tl.tracks.append(video)
    tl.tracks.append(_song_track(song, clock, first, clock.frame_at(span1), origin, rt))
    for m in _markers(clips, plan, clock, origin, rt):
        tl.tracks.markers.append(m)
    return tl, clips, _partial_warnings(clips, render_dir)


def _segment_clip(c: SegmentClip, clock: Clock, render_dir: Path, media: str, rt):
    import opentimelineio as otio

    n_frames = len(c.shown)
    if media == "images":
        # The PNGs at their own rate r: image i is media time [i, i + 1) / r from the segment's start, so the
        # clip's source starts at its first frame's time into the segment, plus image_at's own tolerance of a
        # millionth of a slot (OTIO truncates: a frame on an image's start would otherwise show the one before).
        # A clip can start no earlier than its first image: where the segment starts in the second half of a
        # frame (its clip's first frame a little before it), the images follow up to half a frame early.
        r = c.images / (c.end - c.start)
        offset = max(0.0, clock.time_at(c.first_frame) - c.start) + 1e-6 / r
        folder = (render_dir / c.folder).resolve()
        ref = otio.schema.ImageSequenceReference(
            target_url_base=folder.as_uri() + "/",
            name_prefix="frame_",
            name_suffix=".png",
            start_frame=0,
            frame_step=1,
            rate=r,
            frame_zero_padding=5,
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, r), otio.opentime.RationalTime(len(c.rendered), r)
            ),
        )
        source = otio.opentime.TimeRange(rt(offset * float(clock.rate)), rt(n_frames))
    else:
        path = segment_movie(render_dir, c, clock.rate)
        ref = otio.schema.ExternalReference(
            target_url=path.resolve().as_uri(),
            available_range=otio.opentime.TimeRange(rt(0), rt(n_frames)),
        )
        ref.name = path.name
        source = otio.opentime.TimeRange(rt(0), rt(n_frames))
    clip = otio.schema.Clip(name=f"m2v S{c.index + 1:02d}", media_reference=ref, source_range=source)
    clip.metadata[META] = dict(c.info)
    return clip


def _song_track(song: dict, clock: Clock, first: int, last: int, origin: int, rt):
    """The song over the rendered span, its source time the song's own (so an editor can extend it)."""
    import opentimelineio as otio

    track = otio.schema.Track(name="song", kind=otio.schema.TrackKind.Audio)
    path = Path(os.path.abspath(str(song.get("path", "song.wav"))))
    duration = float(song.get("duration") or 0.0)
    whole = int(duration * clock.rate)
    ref = otio.schema.ExternalReference(
        target_url=path.as_uri(),
        available_range=otio.opentime.TimeRange(rt(0), rt(max(whole, last - first))),
    )
    ref.name = path.name
    if first > origin:
        track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(rt(0), rt(first - origin))))
    # Source time of the first frame: its song time in frames (fractional when the song starts between frames).
    source = otio.opentime.TimeRange(rt(first - clock.song_frame), rt(last - first))
    clip = otio.schema.Clip(name=path.name, media_reference=ref, source_range=source)
    clip.metadata[META] = {"song": str(path), "sha256": song.get("sha256")}
    track.append(clip)
    return track


def _markers(clips: list[SegmentClip], plan: dict | None, clock: Clock, origin: int, rt) -> list:
    """Timeline markers: every cut (``m2v S03``), every lyric line (its words), every segment prompt."""
    import opentimelineio as otio

    def marker(name: str, t: float, color: str, kind: str, **meta):
        at = otio.opentime.TimeRange(rt(clock.frame_at(t) - origin), rt(0))
        return otio.schema.Marker(
            name=name, marked_range=at, color=color, metadata={META: {"kind": kind, "time": t, **meta}}
        )

    out = [
        marker(f"m2v S{c.index + 1:02d}", c.start, CUT_COLOR, "cut", segment=c.index, key=c.key)
        for c in clips
        if c.frames
    ]
    if plan is None:
        return out
    span0, span1 = clips[0].start, clips[-1].end
    for i, ly in enumerate(plan.get("lyrics", [])):
        if not ly.get("past_end") and span0 <= float(ly["time"]) < span1 and str(ly.get("text", "")).strip():
            out.append(marker(str(ly["text"]), float(ly["time"]), LYRIC_COLOR, "lyric", line=i))
    for c in clips:
        if c.info.get("prompt"):
            out.append(marker(f"prompt: {c.info['prompt']}", c.start, PROMPT_COLOR, "prompt", segment=c.index))
    out.sort(key=lambda m: m.marked_range.start_time.value)
    return out


def _partial_warnings(clips: list[SegmentClip], render_dir: Path) -> list[str]:
    missing = [c for c in clips if c.frames and not c.complete]
    if not missing:
        return []
    where = ", ".join(f"S{c.index + 1:02d}" for c in missing[:8]) + (" ..." if len(missing) > 8 else "")
    return [
        f"the render is not finished: {len(missing)} segment(s) ({where}, from {missing[0].start:.2f} s) lack images; "
        f"the timeline has gaps there (render {render_dir} again and export again to fill them)"
    ]


# ---------------------------------------------------------------- intermediate movies


def movie_name(c: SegmentClip, rate: Fraction) -> str:
    """A segment's movie: its key, the rate, and a digest of which image each of its frames shows (the song's
    placement, a partial render) and of how it is encoded (another codec writes another file)."""
    how = [c.shown, MOVIE_CODEC, MOVIE_PROFILE, MOVIE_PIX_FMT, MOVIE_COLORSPACE, MOVIE_COLOR_RANGE]
    digest = hashlib.sha256(json.dumps(how, separators=(",", ":")).encode()).hexdigest()[:10]
    return f"{MOVIE_PREFIX}{c.key[:16]}-{rate.numerator}x{rate.denominator}-{digest}.mov"


def segment_movie(render_dir: Path, c: SegmentClip, rate: Fraction) -> Path:
    """The segment's movie at the timeline rate, written once into its folder (reused while its name holds)."""
    path = render_dir / c.folder / movie_name(c, rate)
    if path.is_file() and path.stat().st_size > 0:
        return path
    import av
    import numpy as np

    pixels = {}
    remove_temp_files(path.parent, name=path.name)  # what an export killed while writing this movie left
    tmp = temp_name(path)
    try:
        with av.open(str(tmp), mode="w", format="mov") as container:
            vs = container.add_stream(MOVIE_CODEC, rate=rate)
            vs.options = {"profile": MOVIE_PROFILE}
            vs.pix_fmt = MOVIE_PIX_FMT
            vs.codec_context.colorspace = MOVIE_COLORSPACE
            vs.codec_context.color_range = MOVIE_COLOR_RANGE
            for j, i in enumerate(c.shown):
                if i not in pixels:
                    pixels.clear()  # images come in order: keep one
                    pixels[i] = _read_frame(render_dir, c.rendered[i])
                    if j == 0:
                        h, w = pixels[i].shape[:2]
                        vs.width, vs.height = w - w % 2, h - h % 2
                img = np.ascontiguousarray(pixels[i][: vs.height, : vs.width])
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = j
                for packet in vs.encode(frame):
                    container.mux(packet)
            for packet in vs.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    created_file(path)
    return path


# ---------------------------------------------------------------- writing


def export_timeline(
    render_dir: str | Path,
    output: str | Path,
    fps: str | float = 24,
    song_frame: float | str = 0,
    start_frame: int = 0,
    plan_path: str | Path | None = None,
) -> dict:
    """Write the render as a timeline in the format ``output``'s extension names.

    Returns ``output``, ``format``, ``clips``, ``gaps``, ``movies`` (written or reused) and ``warnings``.

    Raises
    ------
    InputError
        An unknown extension, an output that is one of the inputs or of the render's files, a folder
        that holds no render, a render with no image yet, a plan that is not the render's.
    """
    output, render_dir = Path(output), Path(render_dir)
    suffix = timeline_format(output)
    clock = Clock(parse_rate(fps), _song_frame(song_frame))
    if not render_dir.is_dir():
        raise InputError("not a folder: give the folder a render wrote its frames to", render_dir)
    if not (render_dir / MANIFEST_FILE).exists():
        raise InputError("no render here (no manifest.json): give the folder a render wrote its frames to", render_dir)
    store = load_render(render_dir)
    song_path = str((store.header.get("song") or {}).get("path", ""))
    check_video_path(output, render_dir, song_path, flag="--timeline")
    check_not_inputs({"--timeline": output}, {"plan": plan_path})
    plan, warnings = load_plan_notes(plan_path, render_dir, store.segments)
    media = "images" if suffix in IMAGE_SEQUENCE_FORMATS else "movies"
    label = edl_label_rate(clock.rate) if suffix == ".edl" else None
    tl, clips, more = build_timeline(render_dir, clock, start_frame, plan, media, label, store)
    warnings += more
    if not any(c.shown for c in clips):
        raise InputError("the render has no finished image yet: nothing to export", render_dir)
    if song_path and not Path(song_path).is_file():
        warnings.append(f"the song {song_path} is missing: the timeline's audio clip names it all the same")
    text = write_format(tl, suffix, Fraction(label) if label else clock.rate)
    make_dirs(output.parent)
    remove_temp_files(output.parent, name=output.name)
    existed = output.exists()
    write_bytes_atomic(output, text.encode("utf-8"))
    if not existed:
        created_file(output)
    shown = [c for c in clips if c.shown]
    return {
        "output": str(output),
        "format": FORMAT_NAMES[suffix],
        "clips": len(shown),
        "gaps": sum(1 for c in clips if c.frames and not c.complete),
        "movies": len(shown) if media == "movies" else 0,
        "warnings": warnings,
    }


def _song_frame(value: float | str) -> Fraction:
    try:
        frame = Fraction(value)
    except (ValueError, TypeError, ZeroDivisionError):
        raise InputError(f"--song-frame: not a frame number: {value!r}") from None
    if abs(frame) > 10**9:
        raise InputError(f"--song-frame {value}: too far from the timeline's start")
    return frame


def edl_label_rate(rate: Fraction) -> int | None:
    """The nominal rate an EDL's timecode counts at 29.97 or 59.94: 30 or 60, so it is non-drop-frame.

    OTIO writes drop-frame timecode at those rates by default, which its own EDL reader (and many
    conforming tools) cannot read back; non-drop timecode numbers the same frames at the nominal rate.
    """
    nominal = round(rate)
    return nominal if rate != nominal and nominal % 30 == 0 else None


def write_format(tl, suffix: str, rate: Fraction) -> str:
    """The timeline as text in a format (markers moved onto clips where the format keeps only those)."""
    import opentimelineio as otio

    if suffix in (".xml", ".fcpxml", ".edl"):
        tl = tl.deepcopy()  # the format's own fields go on a copy
        if suffix in CLIP_MARKER_FORMATS:
            markers_onto_clips(tl)
        _format_metadata(tl, suffix)
    kwargs = {}
    if suffix == ".fcpxml":
        _fcpx_rates()
    if suffix == ".edl":
        kwargs["rate"] = float(rate)
    # The Kdenlive adapter prints a notice on stdout, where the add-on reads JSON events.
    with contextlib.redirect_stdout(io.StringIO()):
        text = otio.adapters.write_to_string(tl, adapter_name=FORMATS[suffix], **kwargs)
    if suffix == ".edl":  # say so: CMX 3600's frame-code-mode line, after the title
        head, sep, rest = text.partition("\n\n")
        text = f"{head}\nFCM: NON-DROP FRAME\n\n{rest}" if sep else f"FCM: NON-DROP FRAME\n\n{text}"
    return text


def markers_onto_clips(tl) -> None:
    """Move the timeline's markers onto the video clip each falls in (in the clip's source time)."""
    import opentimelineio as otio

    video = next(t for t in tl.tracks if t.kind == otio.schema.TrackKind.Video)
    spans = [(video.range_of_child_at_index(i), item) for i, item in enumerate(video)]
    for m in list(tl.tracks.markers):
        t = m.marked_range.start_time
        for span, item in spans:
            if isinstance(item, otio.schema.Clip) and span.start_time <= t < span.end_time_exclusive():
                local = item.source_range.start_time + (t - span.start_time)
                item.markers.append(
                    otio.schema.Marker(
                        name=m.name,
                        marked_range=otio.opentime.TimeRange(local, m.marked_range.duration),
                        color=m.color,
                        metadata=m.metadata,
                    )
                )
                break
    tl.tracks.markers.clear()


def _format_metadata(tl, suffix: str) -> None:
    """The clip metadata in fields the format's editors show (FCP 7 logging info, FCPX notes, EDL comments)."""
    import opentimelineio as otio

    for clip in tl.find_clips():
        info = clip.metadata.get(META)
        if not info or "key" not in info:
            continue
        note = _describe(info)
        if suffix == ".xml":
            clip.metadata["fcp_xml"] = {
                "logginginfo": {
                    "description": note,
                    "scene": f"S{info['segment'] + 1:02d}",
                    "shottake": str(info["take"] if info["take"] is not None else ""),
                    "lognote": f"m2v key {info['key']}",
                }
            }
        elif suffix == ".fcpxml" and isinstance(clip.media_reference, otio.schema.ExternalReference):
            clip.media_reference.metadata["fcpx"] = {
                "note": note,
                "metadata": [{"com.m2v.key": info["key"]}, {"com.m2v.segment": str(info["segment"])}],
            }
        elif suffix == ".edl":
            # A reel of its own per segment (the adapter would cut every movie's name to the same "m2vclip"),
            # and comments an EDL reader keeps ("* M2..." would be read as a motion effect).
            clip.metadata["cmx_3600"] = {
                "reel": f"M2V{info['segment'] + 1:05d}",
                "comments": [f"SEGMENT KEY: {info['key']}", f"SEGMENT NOTE: {_ascii(note)}"],
            }


def _ascii(text: str) -> str:
    """EDLs are read as ASCII by many tools: other characters become ``?``."""
    return text.encode("ascii", "replace").decode("ascii")


def _fcpx_rates() -> None:
    """The FCPX adapter knows NTSC rates only as the floats 23.98 and 29.97: teach it the exact ones too."""
    import opentimelineio as otio

    # The module OTIO's plugin system loaded (its own instance, not ``otio_fcpx_xml_adapter.fcpx_xml``).
    table = otio.adapters.from_name("fcpx_xml").module().FRAMERATE_FRAMEDURATION
    for n in (24, 30, 48, 60):
        table.setdefault(n * 1000 / 1001, f"1001/{n * 1000}s")
    for n in (48,):
        table.setdefault(n, f"1/{n}s")

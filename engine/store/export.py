"""``engine export``: a finished render to an MP4 at a constant frame rate, the song muxed in.

Each generated image is held for the video frames whose start time falls in
its slot (:func:`engine.protocol.image_at`, the rule the add-on's strips
follow too), so segment boundaries land on their times to within one frame.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from engine.analysis.audio import quiet_stderr, read_native
from engine.errors import InputError
from engine.files import (
    MAX_FRAME_BYTES,
    check_input_file,
    check_not_inputs,
    check_number,
    entry_kind,
    file_sha256,
    make_dirs,
    read_regular,
    remove_temp_files,
    space_for,
    temp_name,
)
from engine.protocol import JOURNAL_FILE, LOCK_FILE, MANIFEST_FILE, image_at
from engine.store.manifest import load_render

MAX_FPS = 240.0


def frame_schedule(segments: list[dict], span: tuple[float, float], fps: float) -> list[str]:
    """Frame file for each video frame of the span (segments carry ``start``, ``end`` and ``frames``)."""
    n_frames = int(round((span[1] - span[0]) * fps))
    out = []
    k = 0
    for j in range(n_frames):
        t = span[0] + j / fps
        while k + 1 < len(segments) and t >= segments[k]["end"] - 1e-9:
            k += 1
        seg = segments[k]
        frames = seg["frames"]
        out.append(frames[image_at(t, seg["start"], seg["end"], len(frames))]["file"])
    return out


def finished_segments(render_dir: Path) -> tuple[dict, list[dict]]:
    """The render's header and segments with their frames, checked complete; an error names what is missing."""
    store = load_render(render_dir)
    if store.header.get("status") != "done" or not store.segments:
        raise InputError("the render is not finished: run engine render again to complete it", render_dir)
    out = []
    for s in store.segments:
        e = store.entries.get(s.get("key"))
        if e is None or e.status != "done" or len(e.frames) != e.images:
            raise InputError(f"segment {s.get('index')} of the render is incomplete: render again", render_dir)
        out.append(
            {"start": float(s["start"]), "end": float(s["end"]), "frames": [e.frames[i] for i in range(e.images)]}
        )
    return store.header, out


def _read_frame(render_dir: Path, rec: dict) -> np.ndarray:
    """A frame's pixels, after checking its bytes against the recorded hash."""
    from PIL import Image, UnidentifiedImageError

    path = render_dir / rec["file"]
    if entry_kind(path) is None:
        raise InputError("a frame of the render is missing: render again to restore it", path)
    # A regular file of bounded size, never a link or a pipe (a FIFO in a frame's place would hang the export).
    data = read_regular(path, "frame of the render", MAX_FRAME_BYTES, follow=False)
    if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
        raise InputError("a frame of the render was changed or damaged: render again to restore it", path)
    import io

    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except (UnidentifiedImageError, OSError):
        raise InputError("a frame of the render cannot be read as an image", path) from None


def export_mp4(render_dir: str | Path, video: str | Path, fps: float = 24.0, codec: str = "libx264") -> dict:
    """Write the MP4; return measured ``frames``, ``video_seconds`` and ``audio_seconds``.

    Raises
    ------
    InputError
        When the render is not complete or damaged, or the written lengths do not match the song span.
    """
    fps = check_number(fps, "--fps", 1, MAX_FPS)
    render_dir, video = Path(render_dir), Path(video)
    header, segs = finished_segments(render_dir)
    song_path = header["song"]["path"]
    check_video_path(video, render_dir, song_path)
    span = (segs[0]["start"], segs[-1]["end"])
    schedule = frame_schedule(segs, span, fps)
    if not schedule:
        raise InputError(
            f"the render is {span[1] - span[0]:.3f} s long: at --fps {fps:g} that is not one video frame; "
            "give a higher --fps",
            render_dir,
        )
    by_file = {f["file"]: f for s in segs for f in s["frames"]}
    first = _read_frame(render_dir, by_file[schedule[0]])
    warnings = []
    check_input_file(song_path, "song")  # before hashing it: a pipe put in its place would block the read
    if isinstance(header["song"].get("sha256"), str) and file_sha256(song_path) != header["song"]["sha256"]:
        warnings.append(f"{song_path} changed since the render was made: the video gets the file as it is now")
    audio, sr = _song_audio(song_path, span)
    with space_for(video.parent):
        make_dirs(video.parent)
    remove_temp_files(video.parent, name=video.name)  # what a killed export of this very file left
    tmp = temp_name(video)
    try:
        with space_for(video.parent):
            _encode(tmp, schedule, by_file, render_dir, first.shape, audio[:, :2], sr, fps, codec)
        measured = probe(tmp)
        _check_lengths(measured, span, fps, video)
        os.replace(tmp, video)  # the name is replaced: a link there is replaced, never written through
    finally:
        tmp.unlink(missing_ok=True)
    return {**measured, "warnings": warnings}


def check_video_path(video: Path, render_dir: Path, song_path: str, flag: str = "-o") -> None:
    """Refuse an output that is the song, or one of the render's own records or frames."""
    check_not_inputs({flag: video}, {"song": song_path, "render manifest": render_dir / MANIFEST_FILE})
    inside = Path(os.path.abspath(video))
    root = Path(os.path.abspath(render_dir))
    if root in inside.parents and (inside.parent != root or inside.name in (MANIFEST_FILE, JOURNAL_FILE, LOCK_FILE)):
        raise InputError(f"{flag} names one of the render's own files; write it elsewhere", video)


def _song_audio(song_path: str, span: tuple[float, float]) -> tuple[np.ndarray, int]:
    """The song's samples over ``span`` (all channels); an error names the song when it is gone or not audio."""
    import soundfile as sf


    check_input_file(song_path, "song")
    try:
        with quiet_stderr():
            info = sf.info(song_path)
            return sf.read(
                song_path,
                start=int(span[0] * info.samplerate),
                stop=int(span[1] * info.samplerate),
                dtype="float32",
                always_2d=True,
            )
    except Exception:  # noqa: BLE001 - not for libsndfile: the analysis's decoders, or an error naming the song
        data, sr = read_native(Path(song_path))
        return data[int(span[0] * sr) : int(span[1] * sr)], sr


def _encode(tmp, schedule, by_file, render_dir, shape, audio, sr, fps, codec) -> None:
    import av

    h, w = shape[:2]
    with av.open(str(tmp), mode="w", format="mp4") as container:
        vs = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height = w - w % 2, h - h % 2
        vs.pix_fmt = "yuv420p"
        ast = container.add_stream("aac", rate=sr, layout="stereo" if audio.shape[1] == 2 else "mono")
        current, pixels = None, None
        for j, rel in enumerate(schedule):
            if rel != current:
                current, pixels = rel, _read_frame(render_dir, by_file[rel])[: vs.height, : vs.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = j
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        planar = np.ascontiguousarray(audio.T)
        for a in range(0, planar.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, a : a + 1024]), format="fltp", layout=ast.layout.name
            )
            af.sample_rate = sr
            af.pts = a
            for packet in ast.encode(af):
                container.mux(packet)
        for packet in ast.encode():
            container.mux(packet)


def _check_lengths(measured: dict, span: tuple[float, float], fps: float, video: Path) -> None:
    want = span[1] - span[0]
    if abs(measured["video_seconds"] - want) > 1.0 / fps + 1e-3 or abs(measured["audio_seconds"] - want) > 0.1:
        raise InputError(
            f"export length check failed: video {measured['video_seconds']:.3f} s, audio "
            f"{measured['audio_seconds']:.3f} s, song span {want:.3f} s",
            video,
        )


def probe(path: str | Path) -> dict:
    """Frames and stream lengths of a video file, read back with the decoder."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        rate = v.average_rate or v.guessed_rate or v.base_rate
        vsec = frames / float(rate)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(audio=0))
        asec = samples / a.rate
    return {"frames": frames, "video_seconds": vsec, "audio_seconds": asec, "fps": float(rate)}

"""``engine export``: a finished render to an MP4 at a constant frame rate, the song muxed in.

Each generated image is held for the video frames whose start time falls in
its slot, so segment boundaries land on their times (to within one frame).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.manifest import load_manifest


def frame_schedule(segments: list[dict], span: tuple[float, float], fps: float) -> list[str]:
    """Frame file for each video frame of the span."""
    n_frames = int(round((span[1] - span[0]) * fps))
    out = []
    k = 0
    for j in range(n_frames):
        t = span[0] + j / fps
        while k + 1 < len(segments) and t >= segments[k]["end"] - 1e-9:
            k += 1
        seg = segments[k]
        frames = seg["frames"]
        slot = (seg["end"] - seg["start"]) / len(frames)
        i = min(len(frames) - 1, max(0, int((t - seg["start"]) / slot + 1e-9)))
        out.append(frames[i]["file"])
    return out


def export_mp4(render_dir: str | Path, video: str | Path, fps: float = 24.0, codec: str = "libx264") -> dict:
    """Write the MP4; return measured ``frames``, ``video_seconds`` and ``audio_seconds``.

    Raises
    ------
    InputError
        When the render is not complete, or the written lengths do not match the song span.
    """
    import av
    import soundfile as sf
    from PIL import Image

    render_dir, video = Path(render_dir), Path(video)
    manifest = load_manifest(render_dir)
    if manifest is None:
        raise InputError("no render manifest here: render first", render_dir)
    segs = manifest["segments"]
    if manifest.get("status") != "done" or not segs or any(s["status"] != "done" for s in segs):
        raise InputError("the render is not finished: run engine render again to complete it", render_dir)
    span = (float(segs[0]["start"]), float(segs[-1]["end"]))
    schedule = frame_schedule(segs, span, fps)
    first = np.asarray(Image.open(render_dir / schedule[0]).convert("RGB"))
    h, w = first.shape[:2]
    song_path = manifest["song"]["path"]
    if not Path(song_path).exists():
        raise InputError("the song file is missing", song_path)
    info = sf.info(song_path)
    audio, sr = sf.read(
        song_path,
        start=int(span[0] * info.samplerate),
        stop=int(span[1] * info.samplerate),
        dtype="float32",
        always_2d=True,
    )
    audio = audio[:, :2]
    video.parent.mkdir(parents=True, exist_ok=True)
    tmp = video.with_name(f".{video.name}.part.mp4")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w") as container:
        vs = container.add_stream(codec, rate=rate)
        vs.width, vs.height = w - w % 2, h - h % 2
        vs.pix_fmt = "yuv420p"
        ast = container.add_stream("aac", rate=sr, layout="stereo" if audio.shape[1] == 2 else "mono")
        cache: dict[str, np.ndarray] = {}
        for j, rel in enumerate(schedule):
            if rel not in cache:
                cache.clear()
                cache[rel] = np.asarray(Image.open(render_dir / rel).convert("RGB"))[: vs.height, : vs.width]
            frame = av.VideoFrame.from_ndarray(cache[rel], format="rgb24")
            frame.pts = j
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        step = 1024
        planar = np.ascontiguousarray(audio.T)
        for a in range(0, planar.shape[1], step):
            chunk = np.ascontiguousarray(planar[:, a : a + step])
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=ast.layout.name)
            af.sample_rate = sr
            af.pts = a
            for packet in ast.encode(af):
                container.mux(packet)
        for packet in ast.encode():
            container.mux(packet)
    measured = probe(tmp)
    want = span[1] - span[0]
    if abs(measured["video_seconds"] - want) > 1.0 / fps + 1e-3 or abs(measured["audio_seconds"] - want) > 0.1:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"export length check failed: video {measured['video_seconds']:.3f} s, audio "
            f"{measured['audio_seconds']:.3f} s, song span {want:.3f} s",
            video,
        )
    os.replace(tmp, video)
    return measured


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

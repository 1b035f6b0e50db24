"""A matte: where the generated picture goes, image by image, timed like the footage.

A matte is a movie, a still picture or a folder of pictures, opened and timed
exactly as footage is (:mod:`engine.render.sources.footage`: the same decoder,
the same rule for which of its frames an image follows, with its own
``--matte-offset``/``--matte-speed``/``--matte-span``: :class:`MatteTiming`). Each frame becomes one ``(height, width)`` uint8 picture at
the render size:

1. the channel: ``luma`` (Rec. 709 weights on the frame's RGB bytes: white is
   "generate here") or ``alpha`` (the frame's own alpha channel: a file without
   one is refused);
2. resized to the render size with the footage's filter (Lanczos, stretched:
   a matte of another size covers the same part of the frame);
3. ``invert``: 255 minus it;
4. ``feather``: the edge softened over about ``feather`` pixels of the render
   size (a Gaussian blur of standard deviation ``feather / 4``: from about 2 %
   to 98 % across ``feather`` pixels).

Images whose slot has no matte frame (before its start, past its end, outside
its span) have no matte: they are generated over the whole frame, as without
one. An image whose matte is all black gets no steps (:func:`is_empty`).

The matte enters the cache keys by content, as footage frames do
(:func:`matte_digests`): a moved or re-exported matte re-renders only the
images whose matte changed. No torch here: the step's side is
:mod:`engine.render.step.matte`; what is written, :mod:`engine.store.alpha`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.files import cache_dir
from engine.render.sources.footage import Footage, frame_digest, frame_digests, segment_frames, song_time
from engine.settings_check import check_setting
from engine.settings_table import MATTE_CHANNELS as CHANNELS

#: Rec. 709 luma weights (the HD video a matte usually comes with), on the 8-bit values as they are.
LUMA = (0.2126, 0.7152, 0.0722)
#: Changes when the way a matte's pixels are made changes (its digests then change too).
MATTE_VERSION = 1


@dataclass(frozen=True)
class MatteTiming:
    """Where the matte sits against the song (``--matte-offset``, ``--matte-speed``, ``--matte-span``), under the
    names footage's frame rule reads (:func:`engine.render.sources.footage.pick_frame`): one rule for both."""

    footage_offset: float = 0.0
    footage_speed: float = 1.0
    footage_span: tuple[float, float] | None = None

    @classmethod
    def of(cls, settings) -> MatteTiming:
        """The matte's timing in ``settings`` (a ``RenderSettings``)."""
        return cls(settings.matte_offset, settings.matte_speed, settings.matte_span)


def luma(rgb: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8 brightness of an ``(h, w, 3)`` (or RGBA: the RGB) uint8 picture, Rec. 709 weights."""
    y = rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def feather_sigma(feather: float) -> float:
    """The Gaussian's standard deviation (pixels) for a feather of ``feather`` pixels."""
    return feather / 4


def matte_from_pixels(
    pixels: np.ndarray, width: int, height: int, channel: str = "luma", invert: bool = False, feather: float = 0.0
) -> np.ndarray:
    """A matte frame's pixels made into the matte at the render size (see the module docstring).

    Parameters
    ----------
    pixels : ndarray
        ``(h, w, 3)`` uint8 (``luma``) or ``(h, w, 4)`` uint8 (``alpha``: the last channel; ``luma``: the first
        three).
    width, height : int
        The render size.
    channel : str
        One of :data:`CHANNELS`.
    invert : bool
        White becomes black.
    feather : float
        The soft edge's width in render pixels (0: as it is).

    Returns
    -------
    ndarray
        ``(height, width)`` uint8: 255 generates, 0 keeps the footage (or leaves the picture empty).
    """
    from PIL import Image, ImageFilter

    if channel == "alpha":
        if pixels.ndim != 3 or pixels.shape[2] != 4:
            raise ValueError("an alpha matte needs RGBA pixels")
        m = np.ascontiguousarray(pixels[..., 3])
    elif channel == "luma":
        m = luma(pixels)
    else:
        raise ValueError(f"unknown matte channel {channel!r}; expected one of {CHANNELS}")
    img = Image.fromarray(m)  # 2-D uint8: mode L
    if img.size != (width, height):
        img = img.resize((width, height), Image.LANCZOS)
    if invert:
        img = img.point(lambda v: 255 - v)
    if feather > 0:
        img = img.filter(ImageFilter.GaussianBlur(feather_sigma(feather)))
    return np.asarray(img, dtype=np.uint8)


def is_empty(matte: np.ndarray) -> bool:
    """True where the matte is all black: the image is not generated anywhere (it gets no steps)."""
    return not matte.any()


def is_full(matte: np.ndarray) -> bool:
    """True where the matte is all white: the image is generated everywhere, exactly as without a matte."""
    return bool((matte == 255).all())


class Matte:
    """An opened matte: its frames' times (as footage), a digest of what makes its pixels, and its frames.

    Parameters
    ----------
    path : str or Path
        A movie, a still picture, or a folder of pictures (needs ``fps``).
    fps : float, optional
        Frames per second of a folder of pictures (``--matte-fps``).
    channel, invert, feather
        How a frame becomes the matte (:func:`matte_from_pixels`).

    Raises
    ------
    InputError
        Naming the file (``--matte: ...``): missing, not a movie or picture, damaged, no alpha channel where
        ``channel`` is ``alpha``; or a bad ``--matte-channel``/``--matte-feather``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        channel: str = "luma",
        invert: bool = False,
        feather: float = 0.0,
    ) -> None:
        channel = check_setting("matte_channel", channel)
        feather = check_setting("matte_feather", feather)
        if fps is not None:
            fps = check_setting("matte_fps", fps)
        self.source = Footage(path, fps, flag="--matte")
        self.path, self.channel, self.invert, self.feather = self.source.path, channel, bool(invert), float(feather)
        if channel == "alpha" and not self.source.has_alpha(0):
            self.source.close()
            raise InputError(
                "--matte-channel alpha: the matte has no alpha channel (use --matte-channel luma for a black and "
                "white matte)",
                self._file(0),
            )
        self.kind, self.times, self.end = self.source.kind, self.source.times, self.source.end
        #: What the matte's pixels come from: the file(s) by content, and how they are read.
        self.digest = hashlib.sha256(
            f"matte{MATTE_VERSION}:{self.source.digest}:{channel}:{int(self.invert)}:{self.feather!r}".encode()
        ).hexdigest()

    def __len__(self) -> int:
        return len(self.times)

    def _file(self, j: int) -> Path:
        files = self.source._files
        return files[j] if files else self.path

    def pick(self, timing: MatteTiming, a: float, b: float, first: bool = False) -> int | None:
        """The matte frame an image with slot ``[a, b)`` follows, or None (no matte there): footage's rule."""
        return self.source.pick(timing, a, b, first)

    def frame(self, j: int, width: int, height: int) -> np.ndarray:
        """Matte frame ``j`` as the ``(height, width)`` uint8 matte (:func:`matte_from_pixels`)."""
        if self.channel == "alpha":
            if self.source.kind != "movie" and j > 0 and not self.source.has_alpha(j):
                raise InputError("--matte-channel alpha: this picture of the matte has no alpha channel", self._file(j))
            pixels = self.source.pixels(j, "RGBA")
        else:
            pixels = self.source.pixels(j)
        return matte_from_pixels(pixels, width, height, self.channel, self.invert, self.feather)

    def close(self) -> None:
        self.source.close()


def segment_mattes(matte: Matte, timing: MatteTiming, seg: dict) -> list[int | None]:
    """The matte frame of each image of a segment (None: no matte there), by footage's frame rule."""
    return segment_frames(matte, timing, seg)


def digest_cache_path(matte: Matte, width: int, height: int) -> Path:
    """Where the digests of this matte's frames at this size are kept (``$M2V_CACHE``/matte)."""
    return cache_dir() / "matte" / f"{matte.digest}-{width}x{height}.json"


def matte_digests(matte: Matte, frames, width: int, height: int, cache: Path | None = None) -> dict[int, str]:
    """The digest of each of ``frames`` (indices) made into the matte at the render size.

    What the cache keys hold for an image's matte: its pixels after channel, resize, invert and feather, so a
    moved, re-timed or re-exported matte re-renders only the images whose matte changed. Kept like footage's
    digests (:func:`engine.render.sources.footage.frame_digests`), by the matte's :attr:`Matte.digest`.
    """
    cache = digest_cache_path(matte, width, height) if cache is None else cache
    return frame_digests(matte, frames, width, height, cache=cache)


def blank_digest(width: int, height: int, value: int) -> str:
    """The digest a matte that is ``value`` everywhere has (:func:`matte_digests`): 0 is all black (no steps),
    255 all white (the plain step). Comparing digests finds them without decoding the matte again."""
    return frame_digest(np.full((height, width), value, np.uint8))


def matte_warnings(
    path, frames: list[list[int | None]], empty: int = 0, timing: MatteTiming | None = None, end: float = math.inf
) -> list[str]:
    """What to say once about a matte before (or after) a render, not once per image.

    Parameters
    ----------
    path
        The matte, as the user named it.
    frames : list of list
        The matte frame of every image, segment by segment (:func:`segment_mattes`).
    empty : int
        How many images the matte is all black for (they get no steps).
    timing : MatteTiming, optional
        The matte's timing, to say where it ends in song time.
    end : float
        Matte time at which its last frame stops showing (:attr:`Matte.end`).
    """
    flat = [j for seg in frames for j in seg]
    covered = sum(j is not None for j in flat)
    out = []
    if flat and covered == 0:
        out.append(
            f"the matte {path} covers none of the plan's images: check --matte-offset, --matte-speed and "
            "--matte-span; every image is generated over the whole frame"
        )
    elif covered < len(flat):
        where = ""
        if timing is not None and math.isfinite(end):
            a, b = song_time(timing, 0.0), song_time(timing, end)
            if timing.footage_span is not None:
                a, b = max(a, timing.footage_span[0]), min(b, timing.footage_span[1])
            where = f" (it shows from song time {a:.3f} s to {b:.3f} s)"
        out.append(
            f"the matte {path} covers {covered} of the {len(flat)} images{where}: the others have no matte and "
            "are generated over the whole frame"
        )
    if empty:
        out.append(f"the matte {path} is all black for {empty} image(s): they are made without steps")
    return out

"""Decoding songs into mono float arrays, with plain-words errors."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.files import check_input_file

#: Analysis sample rate: enough for onset and loudness, half the work of 44.1 kHz.
ANALYSIS_SR = 22050
#: Shortest song (or span) the analysis accepts, in seconds.
MIN_DURATION = 2.0
#: Peak below this (about -80 dBFS) counts as silence.
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class Song:
    """A decoded song (or the analysed span of it).

    Attributes
    ----------
    path : str
        The file the audio came from.
    y : np.ndarray
        Mono float32 samples at ``sr``, starting at file time ``offset``.
    sr : int
        Sample rate of ``y``.
    offset : float
        File time in seconds of ``y[0]``.
    file_duration : float
        Duration of the whole file in seconds.
    native_sr : int
        The file's own sample rate.
    channels : int
        The file's channel count.
    """

    path: str
    y: np.ndarray
    sr: int
    offset: float
    file_duration: float
    native_sr: int
    channels: int

    @property
    def duration(self) -> float:
        """Duration of ``y`` in seconds."""
        return len(self.y) / self.sr

    @property
    def end(self) -> float:
        """File time in seconds of the end of ``y``."""
        return self.offset + self.duration


@contextlib.contextmanager
def quiet_stderr():
    """Hide what C decoders print straight to the process's stderr (mpg123's resync notes, say).

    Our own message says what matters; their lines only confuse (they are not m2v's and not errors of theirs).
    """
    import os
    import sys

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def read_native(path: Path) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (wav, flac, ogg, mp3), else with librosa's fallbacks (audioread, ffmpeg)."""
    import soundfile as sf

    try:
        with quiet_stderr():
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure falls through
        first = sf_error
    try:
        import warnings

        import librosa

        with warnings.catch_warnings(), quiet_stderr():
            # librosa warns that audioread is deprecated; the error below says all that matters.
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as lr_error:  # noqa: BLE001
        raise InputError(
            f"cannot decode this file as audio: it is damaged, cut short or in a format m2v cannot read "
            f"({_short(first)}). Use wav, flac, ogg or mp3 (or install ffmpeg for m4a, aac and others).",
            path,
        ) from lr_error
    y = np.atleast_2d(np.asarray(y, dtype=np.float32)).T
    return y, int(sr)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    msg = text[0][:160] if text else type(err).__name__
    # libsndfile words every failure to open as "does not exist": misleading for a file that is right there.
    return re.sub(
        r"Error opening '.*?': File does not exist or is not a regular file \(possibly a pipe\?\)\.?",
        "the decoder could not read it",
        msg,
    )


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal; soxr when present, else polyphase filtering."""
    if sr_in == sr_out:
        return y
    try:
        import soxr

        return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)
    except ImportError:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr_in, sr_out)
        return resample_poly(y, sr_out // g, sr_in // g).astype(np.float32)


def load_song(
    path: str | Path,
    sr: int = ANALYSIS_SR,
    start: float | None = None,
    end: float | None = None,
    min_duration: float = MIN_DURATION,
) -> Song:
    """Decode a song to mono at ``sr``, optionally only the span ``[start, end)``.

    Parameters
    ----------
    path : str or Path
        Audio file.
    sr : int
        Target sample rate.
    start, end : float, optional
        File times in seconds bounding the span to keep.
    min_duration : float
        Shortest acceptable span in seconds.

    Returns
    -------
    Song

    Raises
    ------
    InputError
        When the file is missing, cannot be decoded, is empty, silent or too short.
    """

    path = check_input_file(path, "audio file")
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes)", path)
    data, native_sr = read_native(path)
    if data.size == 0 or data.shape[0] == 0:
        raise InputError("the file holds no audio samples", path)
    channels = data.shape[1]
    file_duration = data.shape[0] / native_sr
    s0 = 0.0 if start is None else max(0.0, float(start))
    s1 = file_duration if end is None else min(file_duration, float(end))
    if s1 <= s0:
        raise InputError(
            f"the requested span {s0:.2f}-{s1:.2f} s is empty (the song is {file_duration:.2f} s long)",
            path,
        )
    i0, i1 = int(round(s0 * native_sr)), int(round(s1 * native_sr))
    mono = data[i0:i1].mean(axis=1) if channels > 1 else data[i0:i1, 0]
    if not np.all(np.isfinite(mono)):
        raise InputError("the audio holds invalid (NaN or infinite) samples", path)
    span = len(mono) / native_sr
    if span < min_duration:
        raise InputError(f"too short to analyse: {span:.2f} s of audio, at least {min_duration:.1f} s needed", path)
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise InputError("the audio is silent (no sample above -80 dBFS)", path)
    if peak > 1.0:
        # Float files may hold any level; analysis only compares levels within the song, so scaling is free
        # and keeps powers finite (a 1e30 peak would overflow the mel spectrogram).
        mono = mono / peak
    y = resample(np.ascontiguousarray(mono, dtype=np.float32), native_sr, sr)
    return Song(
        path=str(path),
        y=y,
        sr=sr,
        offset=i0 / native_sr,
        file_duration=file_duration,
        native_sr=native_sr,
        channels=channels,
    )

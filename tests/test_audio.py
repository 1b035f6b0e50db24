import numpy as np
import pytest
import soundfile as sf

from engine.analysis.audio import MIN_DURATION, load_song
from engine.errors import InputError
from tests.conftest import run_engine, write_song

SR = 44100


def _tone(seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    return np.stack([mono] * channels, axis=1).astype(np.float32)


@pytest.mark.parametrize("ext,fmt", [("wav", None), ("flac", None), ("ogg", "OGG"), ("mp3", "MP3")])
def test_decodes_common_formats_to_mono_analysis_rate(tmp_path, ext, fmt):
    path = write_song(tmp_path / f"tone.{ext}", _tone(3.0), SR, **({"format": fmt} if fmt else {}))
    song = load_song(path)
    assert song.sr == 22050 and song.y.ndim == 1
    assert song.channels == 2 and song.native_sr == SR
    # mp3 encoders add padding; everything else is sample exact.
    assert abs(song.duration - 3.0) < (0.1 if ext == "mp3" else 1e-3)
    # The 440 Hz tone survives decoding and resampling.
    spec = np.abs(np.fft.rfft(song.y[:22050]))
    assert abs(np.argmax(spec) * song.sr / 22050 - 440) < 3


def test_span_is_cut_in_file_time(tmp_path):
    y = _tone(6.0, channels=1)
    y[int(2 * SR) : int(2 * SR) + 100] = 0.99  # a mark at 2.0 s
    song = load_song(write_song(tmp_path / "a.wav", y, SR), start=2.0, end=5.0)
    assert song.offset == pytest.approx(2.0) and song.end == pytest.approx(5.0, abs=1e-3)
    assert np.argmax(np.abs(song.y)) < 0.01 * song.sr


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not audio at all\n" * 50), "cannot decode"),
        (lambda p: sf.write(p, np.zeros((SR * 5, 1), np.float32), SR), "silent"),
        (lambda p: sf.write(p, _tone(MIN_DURATION / 2), SR), "too short"),
        (lambda p: sf.write(p, np.zeros((0, 1), np.float32), SR), "no audio"),
    ],
    ids=["missing", "empty", "garbage", "silent", "short", "no-samples"],
)
def test_bad_input_names_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad song.wav"
    make(path)
    with pytest.raises(InputError) as e:
        load_song(path)
    assert str(path) in str(e.value) and reason in str(e.value)
    # The command line turns it into exit code 2 with the same words.
    proc = run_engine("analyze", str(path))
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and reason in proc.stderr
    assert "Traceback" not in proc.stderr

import mir_eval
import numpy as np
import pytest

from engine.beats import track_beats
from engine.features import compute_features
from engine.synth import Section, synth_song


def _track(song):
    feats = compute_features(song.y, song.sr)
    bt = track_beats(feats.onset, feats.frame_rate)
    return bt, feats.frames_to_time(bt.frames)


def _f(song, est):
    return mir_eval.beat.f_measure(mir_eval.beat.trim_beats(song.beats), mir_eval.beat.trim_beats(est))


@pytest.mark.parametrize(
    "bpm,pattern",
    [(76, "rock"), (100, "sparse"), (124, "four"), (150, "rock"), (176, "metal"), (188, "metal"), (182, "rock")],
)
def test_beats_match_the_click_track(bpm, pattern):
    song = synth_song([Section(bars=14, bpm=bpm, pattern=pattern, timbre="bright", gain=0.7)], seed=bpm, lead_in=1.0)
    bt, est = _track(song)
    assert _f(song, est) >= 0.9, (bt.tempo, bt.hypotheses)
    assert bt.tempo == pytest.approx(bpm, rel=0.03)


def test_fast_song_is_not_halved_where_librosa_halves_it():
    import librosa

    song = synth_song(
        [Section(8, 184, "rock", "soft", 0.5), Section(16, 184, "metal", "bright", 0.9)], seed=5, lead_in=0.5
    )
    bt, est = _track(song)
    assert bt.tempo == pytest.approx(184, rel=0.03)
    _, lib = librosa.beat.beat_track(y=song.y, sr=song.sr, units="time")
    # The point of our tracker: librosa's prior pulls this to ~92 bpm.
    assert _f(song, est) >= 0.95 > _f(song, lib) + 0.2


def test_tempo_change_between_sections_stays_locked():
    song = synth_song(
        [
            Section(8, 110, "rock", "soft", 0.5),
            Section(8, 126, "four", "bright", 0.9),
            Section(8, 118, "rock", "organ", 0.7),
        ],
        seed=3,
        lead_in=1.0,
    )
    _, est = _track(song)
    assert _f(song, est) >= 0.9


def test_silence_before_and_after_gets_no_beats():
    song = synth_song([Section(8, 120, "rock", "bright", 0.7)], seed=1, lead_in=6.0)
    y = np.concatenate([song.y, np.zeros(6 * song.sr, np.float32)])
    feats = compute_features(y, song.sr)
    t = feats.frames_to_time(track_beats(feats.onset, feats.frame_rate).frames)
    assert t[0] > 6.0 - 0.1 and t[-1] < song.beats[-1] + 0.6


def test_deterministic():
    song = synth_song([Section(8, 133, "rock", "bright", 0.7)], seed=9)
    a, b = _track(song)[0], _track(song)[0]
    assert np.array_equal(a.frames, b.frames) and a.tempo == b.tempo

"""Song time <-> frames and marker names: the add-on's pure helpers (no Blender needed)."""

import pytest

from m2v_blender.timeline import (
    StripTiming,
    boundaries_from_frames,
    is_m2v_marker,
    lyric_index,
    lyric_marker_name,
    lyrics_csv,
    segment_marker_name,
)


def test_2997_fps_offset_and_trimmed_strip():
    fps = 30 / 1.001
    t = StripTiming(frame_start=101, frame_final_start=149, frame_final_end=580, fps=fps)
    assert t.time_at(101) == 0.0
    assert t.visible_span() == pytest.approx((48 / fps, 479 / fps))
    for sec in (0.0, 1.0, 17.63, 60.0):
        f = t.frame_at(sec)
        assert abs(t.time_at(f) - sec) <= 0.5 / fps
    assert t.visible_span(file_duration=10.0)[1] == 10.0


@pytest.mark.parametrize("offset", [0.4, -0.3, 1.25])
def test_sound_offset_round_trip_and_sign(offset):
    fps = 30 / 1.001
    t = StripTiming(frame_start=101, frame_final_start=121, frame_final_end=700, fps=fps, sound_offset=offset)
    for sec in (0.0, 0.5, 1.5, 17.63, 60.0):
        assert abs(t.time_at(t.frame_at(sec)) - sec) <= 0.5 / fps
    # Blender delays the song by the offset (measured by mixdown, see tests/test_sound_offset.py):
    # file time 0 plays at frame_start + offset * fps.
    assert t.time_at(101 + offset * fps) == pytest.approx(0.0)
    assert t.frame_at(1.5) == round(101 + (1.5 + offset) * fps)
    assert t.visible_span()[0] == pytest.approx(max(0.0, 20 / fps - offset))


def test_sound_offset_matches_blender_measurements():
    # A click at file time 1.5 s, strip at frame 101, 30 fps: Blender's mixdown has it at frame 158.0
    # with Sound Offset +0.4 s and at 137.0 with -0.3 s, trimmed or not.
    for offset, frame in ((0.4, 158), (-0.3, 137)):
        for trim in (0, 20):
            t = StripTiming(
                frame_start=101, frame_final_start=101 + trim, frame_final_end=200, fps=30.0, sound_offset=offset
            )
            assert t.frame_at(1.5) == frame


def test_boundaries_from_markers_keep_span_ends_and_drop_slivers():
    t = StripTiming(frame_start=0, frame_final_start=24, frame_final_end=240, fps=24.0)
    span = t.visible_span()
    assert boundaries_from_frames([120, 48, 48, 24, 240, 500], t, span) == [1.0, 2.0, 5.0, 10.0]
    # The markers are the truth: even a one-frame segment stays.
    assert boundaries_from_frames([239], t, span) == [1.0, 9.9583, 10.0]


def test_marker_names_are_recognised_and_only_ours():
    assert is_m2v_marker(segment_marker_name(2)) and segment_marker_name(2) == "m2v S03"
    long = lyric_marker_name(0, "ñandú " * 30)
    assert len(long.encode()) <= 63 and is_m2v_marker(long) and lyric_index(long) == 0
    for theirs in ("intro", "m2v", "m2v notes", "S01", "m2v S1x"):
        assert not is_m2v_marker(theirs)


def test_lyrics_csv_round_trips_through_the_engine_parser(tmp_path):
    from engine.analysis.lyrics import load_lyrics

    p = tmp_path / "l.csv"
    p.write_text(lyrics_csv([(65.4321, "second, with comma"), (3.2, "first")]), encoding="utf-8")
    got = load_lyrics(p)
    assert [(round(x.time, 3), x.text) for x in got] == [(3.2, "first"), (65.432, "second, with comma")]

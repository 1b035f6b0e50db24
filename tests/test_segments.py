import mir_eval
import numpy as np

from engine.analysis.beats import beat_grid, track_beats
from engine.analysis.features import compute_features
from engine.analysis.segments import segment_bounds
from engine.analysis.synth import Section, synth_song


def _analyse(song, **kw):
    feats = compute_features(song.y, song.sr)
    bt = track_beats(feats.onset, feats.frame_rate)
    grid = feats.frames_to_time(beat_grid(bt.frames, feats.n_frames))
    return segment_bounds(feats, bt.frames, song.duration, **kw), grid


def test_scene_boundaries_land_within_a_beat_of_each_section_change(sectioned_song):
    bounds, beats = _analyse(sectioned_song, granularity="scenes", target_length=8.0)
    spb = 60.0 / 112
    for change in sectioned_song.boundaries[1:-1]:
        assert np.min(np.abs(bounds - change)) <= spb, (change, bounds)
    # Boundaries sit on beats (the tracked beats, extended through the drumless outro).
    for b in bounds[1:-1]:
        assert np.min(np.abs(beats - b)) < 1e-9


def _hr3f(ref, est):
    ri = np.stack([ref[:-1], ref[1:]], 1)
    ei = np.stack([est[:-1], est[1:]], 1)
    return mir_eval.segment.detection(ri, ei, window=3, trim=True)[2]


def test_scenes_beat_a_uniform_grid_with_the_same_count():
    scores, grid_scores = [], []
    for seed, (bpm, bars) in enumerate([(96, (4, 8, 6, 8, 4)), (128, (8, 4, 8, 8, 6)), (140, (6, 10, 6, 12, 8))]):
        kinds = [
            ("sparse", "soft", 0.3),
            ("rock", "organ", 0.6),
            ("metal", "bright", 1.0),
            ("none", "soft", 0.3),
            ("four", "bright", 0.8),
        ]
        secs = [Section(b, bpm, *kinds[i % len(kinds)], chords=(50 + 3 * i, 53 + 2 * i)) for i, b in enumerate(bars)]
        song = synth_song(secs, seed=seed)
        ref = np.unique(np.concatenate([[0.0], song.boundaries, [song.duration]]))
        est, _ = _analyse(song, granularity="scenes", min_length=3.0, target_length=10.0)
        grid = np.linspace(0, song.duration, len(est))
        scores.append(_hr3f(ref, est))
        grid_scores.append(_hr3f(ref, grid))
    assert np.mean(scores) > np.mean(grid_scores) + 0.2, (scores, grid_scores)


def test_lengths_control_scene_count_and_minimum(sectioned_song):
    short, _ = _analyse(sectioned_song, granularity="scenes", min_length=2.0, target_length=4.0)
    long, _ = _analyse(sectioned_song, granularity="scenes", min_length=2.0, target_length=12.0)
    assert len(short) > len(long) >= 3
    assert np.min(np.diff(short)) >= 2.0 - 1e-9
    assert short[0] == 0.0 and short[-1] == sectioned_song.duration


def test_beat_granularity_gives_one_segment_per_beat(sectioned_song):
    bounds, beats = _analyse(sectioned_song, granularity="beats")
    lengths = np.diff(bounds)[1:-1]
    assert abs(np.median(lengths) - 60.0 / 112) < 0.03
    assert len(bounds) - 2 >= len(beats) - 2

import json

import numpy as np
import pytest

from engine.errors import InputError
from engine.files import write_json_atomic
from engine.lyrics import LyricLine
from engine.plan import PLAN_VERSION, analyze, assign_guidance, load_plan, plan_from_boundaries


def _lrc(tmp_path, entries, name="l.lrc"):
    p = tmp_path / name
    p.write_text("".join(f"[{int(t // 60):02d}:{t % 60:05.2f}]{w}\n" for t, w in entries), encoding="utf-8")
    return p


def test_plan_shape_and_coverage(sectioned_wav, sectioned_song, tmp_path):
    lrc = _lrc(tmp_path, [(20.0, "first words"), (40.0, "second words"), (400.0, "after the end")])
    plan = analyze(sectioned_wav, lyrics_path=lrc)
    assert plan["version"] == PLAN_VERSION
    assert set(plan) >= {"version", "song", "segments", "lyrics", "analysis", "beats"}
    segs = plan["segments"]
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(sectioned_song.duration, abs=1e-3)
    for a, b in zip(segs, segs[1:]):
        assert a["end"] == b["start"]
    for s in segs:
        assert {"start", "end", "intensity", "fps", "images", "guidance"} <= set(s)
        assert 0.0 <= s["intensity"] <= 1.0 and 2.0 <= s["fps"] <= 8.0
        assert s["images"] == max(1, round(s["fps"] * (s["end"] - s["start"])))
    assert max(s["intensity"] for s in segs) - min(s["intensity"] for s in segs) > 0.6
    assert len(plan["song"]["sha256"]) == 64
    # Lines past the song's end are reported, not silently dropped.
    assert plan["lyrics"][-1]["past_end"] is True
    assert any("after the end" in w and "past the song's end" in w for w in plan["warnings"])


def test_louder_sections_get_higher_rates(tmp_path):
    from engine.synth import Section, synth_song
    from tests.conftest import write_song

    gains = [0.3, 0.9, 0.15, 0.6]
    song = synth_song([Section(4, 120, "rock", "organ", g) for g in gains], seed=4)
    path = write_song(tmp_path / "loud.wav", song.y, song.sr)
    plan = plan_from_boundaries(path, list(song.boundaries[:-1]) + [song.duration])
    fps = [s["fps"] for s in plan["segments"]]
    assert list(np.argsort(fps)) == list(np.argsort(gains))
    assert fps[1] >= 7.0 and fps[2] <= 3.0


def test_guidance_rule_lyric_inside_span_else_audio(sectioned_wav, tmp_path):
    bounds = [0.0, 10.0, 20.0, 30.0, 40.0]
    lrc = _lrc(tmp_path, [(12.0, "in two"), (15.0, "also in two"), (33.0, "in four"), (19.9, "pickup")])
    plan = plan_from_boundaries(sectioned_wav, bounds, lyrics_path=lrc)
    g = [s["guidance"] for s in plan["segments"]]
    assert g[0] == {"kind": "audio", "text": None}
    assert g[1]["kind"] == "lyric" and g[1]["text"] == "in two"
    assert [plan["lyrics"][i]["text"] for i in g[1]["lyrics"]] == ["in two", "also in two"]
    # 19.9 s is within LYRIC_LEAD of the boundary at 20 s: it belongs to segment 3.
    assert g[2]["kind"] == "lyric" and g[2]["text"] == "pickup"
    assert g[3]["text"] == "in four"


def test_assign_guidance_last_segment_includes_its_end():
    lyr = [LyricLine(time=10.0, text="end", line=1)]
    assert assign_guidance([0.0, 5.0], [5.0, 10.0], lyr)[1]["text"] == "end"


def test_moving_one_boundary_changes_only_its_neighbours(sectioned_wav):
    bounds = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    a = plan_from_boundaries(sectioned_wav, bounds)["segments"]
    moved = bounds.copy()
    moved[3] = 16.5
    b = plan_from_boundaries(sectioned_wav, moved)["segments"]
    same = [k for k in range(len(a)) if a[k] == b[k]]
    assert same == [0, 1, 4, 5]


def test_plan_from_boundaries_keeps_exact_spans_and_agrees_with_analysis(sectioned_wav):
    plan = analyze(sectioned_wav)
    bounds = [s["start"] for s in plan["segments"]] + [plan["segments"][-1]["end"]]
    again = plan_from_boundaries(sectioned_wav, bounds)
    assert [(s["start"], s["end"]) for s in again["segments"]] == [(s["start"], s["end"]) for s in plan["segments"]]
    for a, b in zip(plan["segments"], again["segments"]):
        assert a["fps"] == pytest.approx(b["fps"], abs=0.1)
    moved = bounds.copy()
    moved[2] += 1.3
    spans = [(s["start"], s["end"]) for s in plan_from_boundaries(sectioned_wav, moved)["segments"]]
    assert spans[1][1] == pytest.approx(moved[2]) and spans[2][0] == pytest.approx(moved[2])


@pytest.mark.parametrize(
    "bounds,words",
    [
        ([0.0], "at least two"),
        ([0.0, 5.0, 5.0], "increase strictly"),
        ([0.0, 9.0, 4.0], "increase strictly"),
        ([-1.0, 4.0], "not negative"),
        ([0.0, 9999.0], "past the song's end"),
    ],
)
def test_bad_boundaries(sectioned_wav, bounds, words):
    with pytest.raises(InputError, match=words):
        plan_from_boundaries(sectioned_wav, bounds)


def test_bad_parameters(sectioned_wav):
    with pytest.raises(InputError, match="min-fps"):
        analyze(sectioned_wav, min_fps=5, max_fps=2)
    with pytest.raises(InputError, match="granularity"):
        analyze(sectioned_wav, granularity="bars")


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda p: p.update(version=99), "unknown plan version 99"),
        (lambda p: p["segments"][1].update(start=p["segments"][0]["start"]), "before segment 0 ends"),
        (lambda p: p["segments"][0].update(end=p["segments"][0]["start"]), "empty or reversed"),
        (lambda p: p["segments"][0]["guidance"].update(kind="video"), "unknown guidance kind"),
        (lambda p: p.pop("version"), "no version"),
    ],
)
def test_bad_plans_fail_cleanly(sectioned_wav, tmp_path, mutate, words):
    plan = plan_from_boundaries(sectioned_wav, [0.0, 5.0, 10.0])
    path = tmp_path / "plan.json"
    write_json_atomic(plan, path)
    assert load_plan(path)["segments"] == plan["segments"]
    mutate(plan)
    write_json_atomic(plan, path)
    with pytest.raises(InputError, match=words):
        load_plan(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not a valid JSON plan"):
        load_plan(path)


def test_real_song_plan(fantasma):
    plan = analyze(fantasma / "song.mp3", lyrics_path=fantasma / "lyrics.lrc")
    segs = plan["segments"]
    dur = plan["song"]["duration"]
    assert 3.0 <= dur / len(segs) <= 16.0
    assert min(s["end"] - s["start"] for s in segs) >= 3.0 - 1e-6
    # Every lyric inside the song guides the segment its time stamp falls in (or just before).
    for i, ly in enumerate(plan["lyrics"]):
        t = ly["time"]
        just_after = [s for s in segs if t < s["start"] <= t + 0.25]
        seg = just_after[0] if just_after else next(s for s in segs if s["start"] <= t < s["end"])
        assert seg["guidance"]["kind"] == "lyric" and i in seg["guidance"]["lyrics"]
    # Beats agree with librosa's on this mid-tempo song (librosa is fine here; it fails on fast songs).
    import librosa
    import mir_eval

    y, sr = librosa.load(fantasma / "song.mp3")
    _, lib = librosa.beat.beat_track(y=y, sr=sr, units="time")
    assert mir_eval.beat.f_measure(lib, np.array(plan["beats"])) >= 0.85
    json.dumps(plan)

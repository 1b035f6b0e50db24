"""``--intensity authors``: the authors' per-segment intensity and step count, against a port of their code.

The reference below is written from the authors' ``generate.py`` (joeljang/music2video) with librosa, as they
run it: the song at 16 kHz, ``librosa.beat.beat_track`` boundaries (audio before the first beat skipped, the
last segment to the end), the mel power averaged over the bands and min-max normalised over the song, each
segment's maximum of it, ``int(length x (10 + 110 x max))`` iterations. m2v computes its curve with its own
numpy STFT; nothing of the engine is used for the reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import InputError
from engine.plan.build import analyze, load_plan, plan_from_boundaries
from engine.protocol import segment_counts
from tests.conftest import run_engine, write_song

SR = 16000
HOP = 512


def _authors_curve(path) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    audio, sr = librosa.load(str(path), sr=SR)
    spec = librosa.feature.melspectrogram(y=audio, sr=sr, n_mels=128, fmax=8000, hop_length=HOP)
    specm = np.mean(spec, axis=0)
    return audio, (specm - np.min(specm)) / np.ptp(specm)


def authors_iterations(path, bounds: list[float] | None = None) -> tuple[list[float], list[float], list[int]]:
    """The authors' boundaries (seconds), per-segment maxima and iterations; on ``bounds`` when given."""
    import librosa

    audio, specm = _authors_curve(path)
    if bounds is None:
        _, beats = librosa.beat.beat_track(y=audio, sr=SR)
        cuts = [int(b) * HOP for b in beats]  # their ``beats * 512``: sample indices
    else:
        cuts = [int(round(t * SR)) for t in bounds[:-1]]
    maxima, iterations, starts = [], [], []
    for i in range(len(cuts) - 1 if bounds is None else len(cuts)):
        last = i == len(cuts) - 1 or (bounds is None and i == len(cuts) - 2)
        if not last:
            length = cuts[i + 1] - cuts[i]
            volume = specm[cuts[i] // HOP : cuts[i + 1] // HOP]
        else:
            length = len(audio) - cuts[i]
            volume = specm[cuts[i] // HOP :]
        length = length / SR
        maxima.append(float(np.max(volume)))
        iterations.append(int(length * (10 + 110 * maxima[-1])))
        starts.append(cuts[i] / SR)
    return starts + [len(audio) / SR], maxima, iterations


def _check_same_boundaries(path, bounds, maxima, iterations, plan) -> None:
    got = [s["intensity"] for s in plan["segments"]]
    assert len(got) == len(maxima)
    # Same curve (m2v's STFT against librosa's): every segment's intensity agrees to the plan's 4 decimals.
    assert np.max(np.abs(np.array(got) - np.array(maxima))) < 2e-3
    total, theirs = plan["totals"]["steps"], sum(iterations)
    assert abs(total - theirs) <= 0.02 * theirs, (total, theirs)
    # The add-on's re-costing from the stored curve gives the plan's own counts.
    lv = plan["analysis"]["levels"]
    b = [s["start"] for s in plan["segments"]] + [plan["segments"][-1]["end"]]
    counts = segment_counts(lv, b, plan["analysis"]["min_rate"], plan["analysis"]["max_rate"], 24.0)
    assert [c[2] for c in counts] == [s["steps"] for s in plan["segments"]]


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    from engine.analysis.synth import Section, synth_song

    song = synth_song(
        [
            Section(bars=4, bpm=96, pattern="sparse", timbre="soft", gain=0.15),
            Section(bars=6, bpm=96, pattern="rock", timbre="organ", gain=0.6),
            Section(bars=4, bpm=96, pattern="metal", timbre="bright", gain=1.0),
        ],
        seed=5,
        lead_in=0.4,
    )
    return write_song(tmp_path_factory.mktemp("int") / "song.wav", song.y, song.sr)


@pytest.mark.parametrize("which", ["synth", "fantasma"])
def test_authors_intensity_on_librosa_beats_matches_their_formula(which, synth_file, request):
    path = synth_file if which == "synth" else request.getfixturevalue("fantasma") / "song.mp3"
    bounds, maxima, iterations = authors_iterations(path)
    authors = plan_from_boundaries(path, bounds, preset="paper", intensity="authors")
    _check_same_boundaries(path, bounds, maxima, iterations, authors)
    paper = plan_from_boundaries(path, bounds, preset="paper")
    assert "intensity" not in paper["analysis"]["levels"]  # a paper plan is what it always was
    assert paper["totals"]["steps"] != authors["totals"]["steps"]


def test_authors_intensity_on_m2v_boundaries(fantasma, tmp_path):
    plan = analyze(fantasma / "song.mp3", preset="paper", intensity="authors")
    bounds = [s["start"] for s in plan["segments"]] + [plan["segments"][-1]["end"]]
    _, maxima, iterations = authors_iterations(fantasma / "song.mp3", bounds)
    _check_same_boundaries(fantasma / "song.mp3", bounds, maxima, iterations, plan)
    # The plan records its intensity, reads back, and a render accepts it.
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan), encoding="utf-8")
    assert load_plan(p)["analysis"]["levels"]["intensity"] == "authors"


def test_intensity_flag_on_the_command_line(synth_file, tmp_path):
    out = tmp_path / "a.json"
    r = run_engine(
        "analyze", str(synth_file), "--preset", "paper", "--intensity", "authors", "--no-estimate", "-o", str(out)
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert plan["analysis"]["levels"]["intensity"] == "authors"
    moved = [s["start"] for s in plan["segments"]][:4] + [plan["segments"][3]["end"]]
    r = run_engine(
        "plan",
        str(synth_file),
        "--boundaries",
        ",".join(map(str, moved)),
        "--intensity",
        "authors",
        "--preset",
        "paper",
        "--no-estimate",
        "-o",
        str(tmp_path / "p.json"),
    )
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    # The curve is the whole song's: the same segments get the same intensities in a plan of a part of it.
    assert [s["intensity"] for s in again["segments"]] == [s["intensity"] for s in plan["segments"][:4]]
    r = run_engine("analyze", str(synth_file), "--intensity", "loudest", "--no-estimate")
    assert r.returncode == 2 and "--intensity" in r.stderr and "Traceback" not in r.stderr


def test_a_plan_with_an_unknown_intensity_is_refused(tmp_path, synth_file):
    plan = plan_from_boundaries(synth_file, [0.0, 2.0, 4.0], preset="paper")
    plan["analysis"]["levels"]["intensity"] = "loudest"
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan), encoding="utf-8")
    with pytest.raises(InputError, match="unknown intensity 'loudest'"):
        load_plan(p)

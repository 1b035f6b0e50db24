"""A re-exported footage movie re-renders only from the first segment whose footage frames changed.

Segments are keyed by the pixels of the footage frames they use (at the render size), not by the movie
file's hash; the per-frame digests are kept by the file's hash, so an unchanged movie decodes nothing.
"""

from __future__ import annotations

import json

import pytest

from engine.analysis.synth import Section, synth_song
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.progress import Collect
from engine.render.jobs.loop import render
from engine.render.sources.footage import Footage, digest_cache_path
from tests.conftest import write_song
from tests.footage_media import write_movie
from tests.small_models import load_small, small_settings

#: The re-export changes the movie from this frame on (2.0 s at 29.97 fps).
CHANGED_FROM = 60


@pytest.fixture(scope="module")
def plan4(tmp_path_factory):
    d = tmp_path_factory.mktemp("edits")
    s = synth_song([Section(2, 120, "rock", "soft", 0.5)], seed=4)
    wav = write_song(d / "song.wav", s.y, s.sr)
    p = plan_from_boundaries(wav, [0.0, 0.75, 1.5, 2.25, 3.0], preset="draft", min_rate=4, max_rate=8, fps=4)
    write_json_atomic(p, d / "plan.json")
    return d / "plan.json", p


def _segments(out):
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return [(s["key"], m["cache"][s["key"]]["frames"]) for s in m["segments"]]


def test_reexported_movie_rerenders_from_the_first_changed_frame(plan4, roundtrip_models, tmp_path, monkeypatch):
    monkeypatch.setenv("M2V_CACHE", str(tmp_path / "cache"))
    plan_path, p = plan4
    movie = tmp_path / "live.mp4"
    write_movie(movie, 120)
    models = load_small(roundtrip_models)
    settings = small_settings(footage=str(movie), footage_blend=0.3, init_weight=10.0)
    out = tmp_path / "render"
    assert render(plan_path, out, settings, models, Collect()) == 0
    before = _segments(out)
    pictures = [[(out / f["file"]).read_bytes() for f in frames] for _, frames in before]
    # Which segments use a frame the re-export changes, from what the render recorded per image.
    uses_changed = [any(f["footage"] >= CHANGED_FROM for f in frames if "footage" in f) for _, frames in before]
    first = uses_changed.index(True)
    assert first > 0 and all(uses_changed[first:])  # the test's premise: earlier segments, then changed ones

    write_movie(movie, 120, regraded_from=CHANGED_FROM)  # re-exported in place: a new file hash
    again = Collect()
    assert render(plan_path, out, settings, models, again) == 0
    reused = [e["reused"] for e in again.events if e["event"] == "segment_end"]
    assert reused == [not changed for changed in uses_changed]
    after = _segments(out)
    for k, (key, frames) in enumerate(after):
        assert (key == before[k][0]) == (k < first)
        if k < first:  # byte-identical frames, not re-rendered
            assert [(out / f["file"]).read_bytes() for f in frames] == pictures[k]


def test_an_unchanged_movie_decodes_nothing_for_its_keys(plan4, small_models, tmp_path, monkeypatch):
    from engine.analysis.audio import load_song
    from engine.models.factory import pick_device
    from engine.render.jobs.keys import segment_keys
    from engine.render.sources.model import ModelSource

    monkeypatch.setenv("M2V_CACHE", str(tmp_path / "cache"))
    _, p = plan4
    movie = tmp_path / "live.mp4"
    write_movie(movie, 120)
    song = load_song(p["song"]["path"], sr=16000, min_duration=0.0).y
    settings = small_settings(footage=str(movie))
    models = load_small(small_models)

    def keys():
        src = ModelSource(p, settings, models, song, pick_device("cpu"))
        try:
            return segment_keys(p, song, settings, src.ids(), src.key_content)
        finally:
            src.close()

    decoded = []
    real = Footage.frame
    monkeypatch.setattr(Footage, "frame", lambda self, j, w, h: decoded.append(j) or real(self, j, w, h))
    first = keys()
    assert decoded and sorted(decoded) == sorted(set(decoded))  # each used frame decoded once
    assert digest_cache_path(Footage(movie), 32, 32).is_file()
    decoded.clear()
    assert keys() == first and decoded == []
    # A damaged cache is not trusted: the digests are decoded again, the keys stay.
    digest_cache_path(Footage(movie), 32, 32).write_text("{not json", encoding="utf-8")
    assert keys() == first and decoded

"""The music as curves (``engine.plan.signals``, ``engine signals``): what Bake Music to F-Curve reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.plan.signals import signals_document, slot_value
from engine.settings_table import SIGNALS
from tests.conftest import run_engine


@pytest.fixture(scope="module")
def doc(sectioned_wav):
    return signals_document(sectioned_wav)


def _times(doc):
    return doc["offset"] + np.arange(len(doc["signals"]["intensity"])) * doc["hop"]


def _section_mean(doc, name, a, b):
    t = _times(doc)
    v = np.array(doc["signals"][name])
    return float(v[(t >= a) & (t < b)].mean())


def test_every_signal_is_0_to_1_per_analysis_frame(doc):
    assert doc["kind"] == "m2v-signals" and doc["version"] == 1 and list(doc["signals"]) == list(SIGNALS)
    n = len(doc["signals"]["intensity"])
    for name in SIGNALS:
        v = np.array(doc["signals"][name])
        assert len(v) == n and v.min() >= 0.0 and v.max() <= 1.0 and v.max() > 0.5, name


def test_signals_follow_the_song(doc, sectioned_song):
    b = sectioned_song.boundaries  # the four sections: quiet sparse, rock, loud metal, drumless
    sec = [(b[i], b[i + 1]) for i in range(len(b) - 1)]
    loud = {name: [_section_mean(doc, name, a, z) for a, z in sec] for name in SIGNALS}
    # The metal section is the loudest and the brightest, well above the quiet opening.
    assert np.argmax(loud["intensity"]) == 2 and loud["intensity"][2] > loud["intensity"][0] + 0.4
    assert np.argmax(loud["high"]) == 2
    # The drumless last section has (next to) no beat pulse and little onset strength next to the drums.
    assert loud["onset"][3] < 0.5 * loud["onset"][2]
    # Beat pulse: high at the true beats of the drummed sections.
    t = _times(doc)
    pulse = np.array(doc["signals"]["beat"])
    beats = [x for x in sectioned_song.beats if sec[1][0] + 1 < x < sec[2][1] - 1]
    period = float(np.median(np.diff(beats)))
    at = [pulse[np.argmin(np.abs(t - x))] for x in beats]
    between = [pulse[np.argmin(np.abs(t - (x + period / 2)))] for x in beats]
    # Half a beat after each beat the pulse has decayed by exp(-half a beat / 0.15 s): no beat found off the grid.
    assert np.median(at) > 0.3
    assert np.median(between) == pytest.approx(np.median(at) * np.exp(-period / 2 / 0.15), abs=0.05)


def test_slot_value_is_the_mean_over_the_slot(doc):
    v = np.array(doc["signals"]["onset"])
    h = doc["hop"]
    # Frames 100..139 exactly: the slot [100 h, 140 h).
    assert slot_value(doc, "onset", 100 * h, 140 * h) == pytest.approx(v[100:140].mean())


def test_span_and_command(sectioned_wav, tmp_path):
    out = tmp_path / "sig.json"
    proc = run_engine("signals", str(sectioned_wav), "--start", "3", "--end", "9", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["offset"] == pytest.approx(3.0) and len(got["signals"]["beat"]) == pytest.approx(6 / got["hop"], abs=2)
    # Bad input: exit 2, one error line naming it, nothing written.
    proc = run_engine("signals", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nope.wav" in proc.stderr and not (tmp_path / "x.json").exists()
    proc = run_engine("signals", str(sectioned_wav), "-o", str(sectioned_wav))
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert run_engine("signals", str(sectioned_wav), "--start", "nan").returncode == 2

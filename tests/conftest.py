"""Shared fixtures: songs the tests synthesise with known structure, and the real song in ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.analysis.synth import Section, synth_song

REPO = Path(__file__).resolve().parents[1]
# The engine's cache (device calibration) in a folder of this test session, never the user's own.
os.environ.setdefault("M2V_CACHE", tempfile.mkdtemp(prefix="m2v-test-cache-"))
SHARED = REPO.parent / "shared"
FANTASMA = SHARED / "data" / "songs" / "fantasma"


def write_song(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    return path


@pytest.fixture(scope="session")
def sectioned_song():
    """Four sections changing pattern, timbre and loudness at known bar lines (112 bpm)."""
    return synth_song(
        [
            Section(bars=6, bpm=112, pattern="sparse", timbre="soft", gain=0.2),
            Section(bars=8, bpm=112, pattern="rock", timbre="organ", gain=0.5, chords=(57, 53, 48, 55)),
            Section(bars=8, bpm=112, pattern="metal", timbre="bright", gain=1.0, chords=(52, 55, 57, 59)),
            Section(bars=6, bpm=112, pattern="none", timbre="soft", gain=0.35, chords=(50, 53)),
        ],
        seed=11,
        lead_in=0.3,
    )


@pytest.fixture(scope="session")
def sectioned_wav(sectioned_song, tmp_path_factory):
    return write_song(tmp_path_factory.mktemp("songs") / "sections.wav", sectioned_song.y, sectioned_song.sr)


@pytest.fixture(scope="session")
def fantasma():
    if not (FANTASMA / "song.mp3").exists():
        pytest.skip("the real song in ../shared/data/songs/fantasma is not here")
    return FANTASMA


def run_engine(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m engine`` in a fresh process, as the add-on and users do."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def small_models(tmp_path_factory):
    """Small random-weight models in the official file shapes (see tests/small_models.py)."""
    from tests.small_models import write_all

    return write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def roundtrip_models(tmp_path_factory):
    """The small models with a VQGAN whose encoder inverts its decoder (footage and motion tests)."""
    from tests.small_models import write_all

    return write_all(tmp_path_factory.mktemp("rt_models"), roundtrip=True)

"""A render killed at any instant resumes bit for bit, with no temporary files left.

The engine is SIGKILLed (no clean-up) at each of its write points — a frame
written but not renamed, renamed but not journaled, a journal line torn in
half, a resume point half-saved, the manifest mid-rewrite — and at random
instants; after each kill the next render picks up from what is on disk. The
frames at the end must equal an uninterrupted render's, byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from engine.analysis.synth import Section, synth_song
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.protocol import JOURNAL_FILE, TEMP_SUFFIX
from tests.conftest import REPO, write_song
from tests.small_models import render_cmd


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    s = synth_song([Section(4, 120, "rock", "soft", 0.4), Section(4, 120, "metal", "bright", 0.9)], seed=3)
    wav = write_song(d / "song.wav", s.y, s.sr)
    lrc = d / "song.lrc"
    lrc.write_text("[00:03.10]a paper boat on a river\n", encoding="utf-8")
    # Two images a second of two steps each: 16 images.
    plan = plan_from_boundaries(
        wav, [0.0, 2.5, 5.0, 8.0], preset="draft", lyrics_path=lrc, min_rate=4, max_rate=4, fps=2
    )
    path = d / "plan.json"
    write_json_atomic(plan, path)
    return path


def _cmd(plan_path, out, small_models, every="0"):
    return render_cmd(plan_path, out, small_models, "--snapshot-every", every, cutouts=4, seed=7)


def _run(plan_path, out, small_models, fault=None, every="0"):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("M2V_FAULT", None)
    if fault:
        env["M2V_FAULT"] = fault
    return subprocess.run(
        _cmd(plan_path, out, small_models, every), capture_output=True, text=True, env=env, timeout=300
    )


def _frames(out):
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "done"
    files = [f for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]
    return [(f["file"].split("/", 1)[1], (out / f["file"]).read_bytes()) for f in files]


def _leftovers(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob(f"*{TEMP_SUFFIX}"))


@pytest.fixture(scope="module")
def reference(plan_path, small_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "out"
    proc = _run(plan_path, out, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    frames = _frames(out)
    assert len({data for _, data in frames}) > len(frames) // 2  # frames differ, so a wrong resume would show
    return frames


# Each write point, and which pass of it to die at: early passes, so every run leaves work for the next
# (16 images in all); the manifest's 1st write is at the start, its 2nd at the very end.
POINTS = [
    "frame.written:2",
    "frame.renamed:2",
    "journal.torn:3",
    "journal.appended:3",
    "snapshot.written:2",
    "snapshot.renamed:2",
    "manifest.written:1",
    "manifest.renamed:2",
]


def test_sigkill_at_every_write_point_resumes_bit_for_bit(plan_path, small_models, reference, tmp_path):
    out = tmp_path / "out"
    for fault in POINTS:
        proc = _run(plan_path, out, small_models, fault=fault)
        assert proc.returncode == -signal.SIGKILL, (fault, proc.returncode, proc.stderr[-2000:])
        if ".written" in fault:  # killed between writing a temporary file and renaming it
            assert _leftovers(out), fault
    proc = _run(plan_path, out, small_models)
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == reference
    assert _leftovers(out) == []
    assert not (out / JOURNAL_FILE).exists()  # folded into the manifest at the end


def test_sigkill_at_random_instants_resumes_bit_for_bit(plan_path, small_models, reference, tmp_path):
    out = tmp_path / "out"
    rng = random.Random(20261125)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("M2V_FAULT", None)
    kills = 0
    for _ in range(6):
        # Snapshots every 0.2 s: some kills land before any, so the resume re-runs images from an earlier one.
        proc = subprocess.Popen(
            _cmd(plan_path, out, small_models, every="0.2"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        line = proc.stdout.readline()  # the "start" event: models are loaded, the render is under way
        if b'"start"' in line:
            time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 4
    proc = subprocess.run(_cmd(plan_path, out, small_models), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == reference
    assert _leftovers(out) == []


def test_resume_points_ahead_of_the_frames_are_never_used(plan_path, small_models, reference, tmp_path):
    """The original bug: a saved state one step ahead of the recorded frames. Here many are ahead."""
    out = tmp_path / "out"
    assert _run(plan_path, out, small_models).returncode == 0  # a resume point after every image
    m = json.loads((out / "manifest.json").read_text())
    last = m["cache"][m["segments"][-1]["key"]]["frames"]
    for f in last[1:]:
        (out / f["file"]).unlink()  # frames lost, resume points kept
    states = list((out / "state").glob("*.pt"))
    assert len(states) >= 2
    proc = _run(plan_path, out, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == reference


def test_damaged_and_hostile_resume_points(plan_path, small_models, reference, tmp_path):
    out = tmp_path / "out"
    assert _run(plan_path, out, small_models, fault="frame.renamed:9").returncode == -signal.SIGKILL
    states = sorted((out / "state").glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    assert len(states) >= 3
    for p in states[1:]:
        p.write_bytes(p.read_bytes()[:100])  # truncated by a full disk, say: all but the oldest
    proc = _run(plan_path, out, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    assert "damaged resume point, skipped" in proc.stderr
    assert any(p.name in proc.stderr for p in states[1:]) and states[0].name not in proc.stderr
    assert _frames(out) == reference
    # A crafted pickle where a resume point belongs: refused by name, nothing executed.
    evil = out / "state" / (json.loads((out / "manifest.json").read_text())["segments"][0]["key"] + "-00001.pt")
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil.write_bytes(pickle.dumps({"z": Boom(), "opt": {}}, protocol=4))
    m = json.loads((out / "manifest.json").read_text())
    (out / m["cache"][m["segments"][0]["key"]]["frames"][1]["file"]).unlink()
    proc = _run(plan_path, out, small_models)
    assert proc.returncode == 2 and "references posix.system, which m2v will not load" in proc.stderr
    assert evil.name in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "pwned").exists()

"""Bad input, as a hostile user or a broken disk gives it: exit 2, a message naming the file or flag and the
problem, no traceback, nothing left under the final output names — and never garbage with exit 0."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from engine.analysis.synth import Section, synth_song
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from tests.conftest import REPO, run_engine, write_song
from tests.small_models import model_args


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    s = synth_song([Section(3, 120, "rock", "soft", 0.5)], seed=9)
    return write_song(d / "song.wav", s.y, s.sr)


@pytest.fixture(scope="module")
def layout_render(song, tmp_path_factory):
    """A finished layout render (its frames and manifest get damaged by the tests, on copies)."""
    d = tmp_path_factory.mktemp("lay")
    plan = plan_from_boundaries(song, [0.0, 2.0, 6.0], preset="draft")
    write_json_atomic(plan, d / "plan.json")
    proc = run_engine("render", str(d / "plan.json"), "--out", str(d / "r"), "--layout", "--size", "32", "32")
    assert proc.returncode == 0, proc.stderr
    return d


def _fails(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


def test_output_paths_that_cannot_be_written(song, tmp_path):
    folder, a_file = tmp_path / "a folder", tmp_path / "a file"
    folder.mkdir()
    a_file.write_text("x")
    _fails(run_engine("analyze", str(song), "-o", str(folder), "--no-estimate"), "-o names a folder", str(folder))
    _fails(run_engine("analyze", str(song), "-o", str(a_file / "p.json"), "--no-estimate"), "is a file", str(a_file))
    _fails(run_engine("analyze", str(song), "--plot", str(folder), "--no-estimate"), "--plot names a folder")
    _fails(run_engine("plan", str(song), "--boundaries", "0,2", "-o", str(folder)), "-o names a folder")
    _fails(run_engine("render", str(tmp_path / "p.json"), "--out", str(a_file), "--layout"), "--out is a file")
    _fails(run_engine("render", str(tmp_path / "p.json"), "--out", str(a_file / "x"), "--layout"), "--out is under")
    _fails(run_engine("run", str(song), "--out", str(a_file), "--layout"), "--out is a file")
    assert a_file.read_text() == "x" and list(folder.iterdir()) == []


def test_export_refuses_a_bad_output_before_encoding(layout_render, tmp_path):
    folder = tmp_path / "v.mp4"
    folder.mkdir()
    _fails(run_engine("export", str(layout_render / "r"), "-o", str(folder)), "-o names a folder")


@pytest.mark.parametrize("fps", ["0", "-5", "nan", "inf", "1e6"])
def test_export_fps_must_be_sane(layout_render, tmp_path, fps):
    _fails(run_engine("export", str(layout_render / "r"), "-o", str(tmp_path / "v.mp4"), "--fps", fps), "--fps")
    assert not (tmp_path / "v.mp4").exists()


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_export_of_a_damaged_render(layout_render, tmp_path):
    r = _copy(layout_render / "r", tmp_path / "r1")
    m = json.loads((r / "manifest.json").read_text())
    frames = m["cache"][m["segments"][1]["key"]]["frames"]
    (r / frames[0]["file"]).unlink()
    _fails(run_engine("export", str(r), "-o", str(tmp_path / "a.mp4")), "a frame of the render is missing", "frame_")
    r = _copy(layout_render / "r", tmp_path / "r2")
    (r / frames[1]["file"]).write_bytes(b"\x89PNG not really")
    _fails(run_engine("export", str(r), "-o", str(tmp_path / "b.mp4")), "changed or damaged", frames[1]["file"])
    r = _copy(layout_render / "r", tmp_path / "r3")
    (r / "manifest.json").write_text('{"version": 2, "kind": "m2v-render", "cache": ')
    _fails(run_engine("export", str(r), "-o", str(tmp_path / "c.mp4")), "manifest is damaged", "manifest.json")
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*m2v-tmp"))


@pytest.mark.parametrize(
    "args,words",
    [
        (["--seed", str(2**64)], "--seed must be"),
        (["--seed", "-1"], "--seed must be"),
        (["--style-weight", "nan"], "--style-weight must be a finite number"),
        (["--style-weight", "inf"], "--style-weight must be a finite number"),
        (["--l1-weight", "nan"], "--l1-weight must be a finite number"),
        (["--lr", "0"], "--lr must be above 0"),
        (["--size", "8", "8"], "--size must be at least 16"),
        (["--size", "32.5", "32"], "not a whole number"),
        (["--cutouts", "0"], "--cutouts must be at least 1"),
    ],
)
def test_render_flags_are_checked(layout_render, tmp_path, args, words):
    _fails(
        run_engine("render", str(layout_render / "plan.json"), "--out", str(tmp_path / "o"), "--layout", *args), words
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args,words",
    [
        (["--end", "nan"], "--end must be a finite number"),
        (["--start", "-3"], "--start must be at least 0"),
        (["--min-rate", "nan"], "--min-rate must be a finite number"),
        (["--max-rate", "0"], "--max-rate must be above 0"),
        (["--min-rate", "9", "--max-rate", "3"], "--max-rate (3.0) is below --min-rate (9.0)"),
        (["--fps", "0"], "--fps must be"),
        (["--min-length", "inf"], "--min-length must be a finite number"),
        (["--target-length", "1", "--min-length", "2"], "--target-length (1.0) is below --min-length (2.0)"),
    ],
)
def test_analysis_flags_are_checked(song, tmp_path, args, words):
    _fails(run_engine("analyze", str(song), "-o", str(tmp_path / "p.json"), "--no-estimate", *args), words)
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    "name,text,words",
    [
        ("nan.lrc", "[offset:nan]\n[00:01.00]words\n", "bad offset tag"),
        ("inf.lrc", "[offset:1e400]\n[00:01.00]words\n", "bad offset tag"),
        ("nan.csv", "time,lyrics\nnan,words\n", "a finite number of seconds"),
        ("inf.csv", "start_time,end_time,lyrics_line\ninf,3,words\n", "a finite number of seconds"),
    ],
)
def test_lyrics_numbers_are_checked(song, tmp_path, name, text, words):
    lyr = tmp_path / name
    lyr.write_text(text, encoding="utf-8")
    _fails(
        run_engine("analyze", str(song), "--lyrics", str(lyr), "-o", str(tmp_path / "p.json"), "--no-estimate"),
        words,
        name,
    )


def test_lyrics_path_that_is_a_folder(song, tmp_path):
    _fails(
        run_engine("plan", str(song), "--boundaries", "0,2", "--lyrics", str(tmp_path)),
        "is a folder, not a lyrics file",
    )


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file permissions do not bind root")
def test_unreadable_lyrics(song, tmp_path):
    lyr = tmp_path / "secret.lrc"
    lyr.write_text("[00:01.00]hi\n")
    lyr.chmod(0)
    _fails(run_engine("plan", str(song), "--boundaries", "0,2", "--lyrics", str(lyr)), "cannot read", "secret.lrc")


def test_models_without_an_action():
    _fails(run_engine("models"), "models needs an action")


def test_corrupt_and_truncated_mp3_say_what_is_wrong(tmp_path, fantasma):
    data = (fantasma / "song.mp3").read_bytes()
    bad = tmp_path / "corrupt.mp3"
    bad.write_bytes(data[:3000] + bytes(np.random.default_rng(1).integers(0, 256, 60000, dtype=np.uint8)))
    proc = run_engine("analyze", str(bad), "-o", str(tmp_path / "p.json"), "--no-estimate")
    _fails(proc, "cannot decode this file as audio", "corrupt.mp3")
    assert "does not exist" not in proc.stderr and "Note:" not in proc.stderr  # no decoder noise, no false claim
    short = tmp_path / "short.mp3"
    short.write_bytes(data[:60_000])  # about 3 s survive
    proc = run_engine("analyze", str(short), "-o", str(tmp_path / "q.json"), "--no-estimate")
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr


def test_huge_amplitude_song_gives_a_sane_plan(tmp_path):
    s = synth_song([Section(3, 120, "rock", "soft", 0.5)], seed=2)
    loud = write_song(tmp_path / "loud.wav", (s.y * 1e30).astype(np.float32), s.sr, subtype="FLOAT")
    proc = run_engine("analyze", str(loud), "-o", str(tmp_path / "p.json"), "--no-estimate", "--preset", "draft")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "p.json").read_text())
    for seg in plan["segments"]:
        assert 1 <= seg["images"] <= seg["steps"] < 10_000 and 0 <= seg["intensity"] <= 1


def _plan_file(song, tmp_path, mutate):
    plan = plan_from_boundaries(song, [0.0, 2.0, 6.0], preset="draft")
    mutate(plan)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan), encoding="utf-8")  # json.dumps writes NaN, as a hand edit might
    return path


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda p: p.pop("song"), "the plan has no song"),
        (lambda p: p["song"].update(path=None), "no file path"),
        (lambda p: p["segments"][0].update(images="3"), "segment 0 images must be a number"),
        (lambda p: p["segments"][1]["parts"][0].update(text=7, kind="lyric"), "lyric-guided but has no text"),
        (lambda p: p["segments"][0].update(start=math.nan), "segment 0 start must be a finite number"),
        (lambda p: p["segments"][1].update(end=math.inf), "segment 1 end must be a finite number"),
        (lambda p: p["segments"][0].update(images=1.5), "segment 0 images must be a whole number"),
        (lambda p: p["lyrics"].append({"time": 1, "text": None}), "lyric 0 has no text"),
    ],
)
def test_bad_plans_through_the_command_line(song, tmp_path, mutate, words):
    path = _plan_file(song, tmp_path, mutate)
    _fails(run_engine("render", str(path), "--out", str(tmp_path / "o"), "--layout"), words, "p.json")
    assert not (tmp_path / "o").exists()


def test_size_is_rounded_to_the_models_blocks_and_said(song, tmp_path, small_models):
    plan = plan_from_boundaries(song, [0.0, 2.0], preset="draft", min_rate=1, max_rate=1)
    write_json_atomic(plan, tmp_path / "p.json")
    proc = run_engine(
        "render",
        str(tmp_path / "p.json"),
        "--out",
        str(tmp_path / "o"),
        "--size",
        "17",
        "19",
        *model_args(small_models),
    )
    assert proc.returncode == 0, proc.stderr
    assert "--size 17x19 rounded to 16x18" in proc.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert (m["settings"]["width"], m["settings"]["height"]) == (16, 18)
    from PIL import Image

    frame = m["cache"][m["segments"][0]["key"]]["frames"][0]["file"]
    assert Image.open(tmp_path / "o" / frame).size == (16, 18)


def test_sigterm_right_after_done_keeps_exit_0(layout_render, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "engine", "render", str(layout_render / "plan.json"), "--out", str(tmp_path / "o")]
    proc = subprocess.Popen(
        cmd + ["--layout", "--size", "32", "32"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    for line in proc.stdout:
        if b'"event": "done"' in line:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644

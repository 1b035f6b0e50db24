import json

import numpy as np

from tests.conftest import run_engine


def test_help_lists_commands():
    proc = run_engine("--help")
    assert proc.returncode == 0
    for cmd in ("analyze", "plan", "run"):
        assert cmd in proc.stdout
    assert run_engine().returncode == 2


def test_analyze_writes_plan_and_plot(sectioned_wav, tmp_path):
    lrc = tmp_path / "words.srt"
    lrc.write_text("1\n00:00:05,000 --> 00:00:07,000\nhello there\n", encoding="utf-8")
    out, png = tmp_path / "plan.json", tmp_path / "plot.png"
    proc = run_engine(
        "analyze",
        str(sectioned_wav),
        "--lyrics",
        str(lrc),
        "-o",
        str(out),
        "--plot",
        str(png),
        "--granularity",
        "beats",
        "--preset",
        "draft",
        "--min-rate",
        "1",
        "--max-rate",
        "4",
        "--no-estimate",
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(out.read_text())
    assert plan["analysis"]["granularity"] == "beats"
    assert np.median([s["end"] - s["start"] for s in plan["segments"]]) < 0.7
    assert any(p["text"] == "hello there" for s in plan["segments"] for p in s["parts"])
    assert all(1 <= s["rate"] <= 4 for s in plan["segments"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert img.shape[1] > 1000 and img.std() > 10  # a real drawing, not a blank canvas


def test_plan_command_and_bad_lyrics_exit_2(sectioned_wav, tmp_path):
    out = tmp_path / "p.json"
    proc = run_engine("plan", str(sectioned_wav), "--boundaries", "0,4.5,12.25", "-o", str(out), "--no-estimate")
    assert proc.returncode == 0, proc.stderr
    assert [(s["start"], s["end"]) for s in json.loads(out.read_text())["segments"]] == [(0.0, 4.5), (4.5, 12.25)]
    bad = tmp_path / "bad.lrc"
    bad.write_text("[00:01.00]fine\n[00:xx.00]broken\n", encoding="utf-8")
    proc = run_engine("plan", str(sectioned_wav), "--boundaries", "0,4", "--lyrics", str(bad))
    assert proc.returncode == 2 and f"{bad}, line 2" in proc.stderr
    proc = run_engine("plan", str(sectioned_wav), "--boundaries", "0,abc")
    assert proc.returncode == 2 and "boundaries must be numbers" in proc.stderr


def test_main_job_layout_runs_offline_on_the_synthesised_demo(tmp_path):
    proc = run_engine("run", "--out", str(tmp_path / "out"), "--layout", "--size", "64", "48")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert (tmp_path / "out" / "plan.png").stat().st_size > 10_000
    assert sum(p["kind"] == "lyric" for s in plan["segments"] for p in s["parts"]) >= 3
    assert 95 < plan["analysis"]["tempo_bpm"] < 105  # the demo is synthesised at 100 bpm
    from engine.store.export import probe

    m = probe(tmp_path / "out" / "layout.mp4")
    assert abs(m["video_seconds"] - plan["song"]["duration"]) < 0.05


def test_main_job_without_weights_says_what_to_do(tmp_path):
    proc = run_engine("run", "--out", str(tmp_path / "out"), "--models", str(tmp_path / "none"), "--no-fetch")
    assert proc.returncode == 2
    assert "is missing" in proc.stderr and "models fetch" in proc.stderr and "--layout" in proc.stderr
    assert not (tmp_path / "out").exists()  # found before anything is written (issue 23: refused, nothing made)


def test_main_job_end_to_end_with_models(tmp_path, small_models):
    from tests.small_models import model_args

    proc = run_engine(
        "run", "--out", str(tmp_path / "out"), "--size", "32", "32", *model_args(small_models), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from engine.store.export import probe

    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    m = probe(tmp_path / "out" / "video.mp4")
    assert m["frames"] == round(plan["song"]["duration"] * 24)

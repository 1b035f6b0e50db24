"""A third hostile sweep (issue 31): nothing written or deleted outside the output folder, no hang, no silent wrong
result, Ray's exit codes and leftovers, clear errors instead of tracebacks, the offline newcomer.

Real FIFOs (``os.mkfifo``), symbolic links, a small full tmpfs (mounted here as root; skipped where mounting is not
permitted) and one local Ray instance for the module (``ray.init(num_cpus=2)``) asked for more workers and CPUs
than it has. Renders run torch with one thread (as each Ray worker does) so frames compare byte for byte.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.analysis.lyrics import load_lyrics, parse_csv
from engine.analysis.synth import Section, synth_song
from engine.errors import InputError
from engine.files import FolderLock, read_cache_file, read_regular, write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.protocol import LOCK_FILE, RAY_LOG_FILE, TEMP_SUFFIX
from tests.conftest import REPO, write_song
from tests.small_models import model_args, render_cmd

BOUNDS = [0.0, 1.5, 3.0, 4.5, 6.0, 8.0]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    env.pop("M2V_FAULT", None)
    return env


def engine(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env or _env(), timeout=timeout
    )


def refused(proc, *words) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for w in words:
        assert w in proc.stderr, (w, proc.stderr[-2000:])


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _frames(out: Path) -> list[tuple[str, bytes]]:
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "done"
    files = [f["file"] for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]
    return [(f, (out / f).read_bytes()) for f in files]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    s = synth_song([Section(4, 120, "rock", "soft", 0.3), Section(4, 120, "metal", "bright", 0.9)], seed=5)
    wav = write_song(d / "song.wav", s.y, s.sr)
    lrc = d / "song.lrc"
    lrc.write_text("[00:03.10]a glass lighthouse\n", encoding="utf-8")
    plan = plan_from_boundaries(wav, BOUNDS, preset="draft", lyrics_path=lrc, min_rate=4, max_rate=4, fps=2)
    write_json_atomic(plan, d / "plan.json")
    return d / "plan.json"


def _render(plan_path, out, small_models, *extra, every="0", env=None, timeout=600):
    cmd = render_cmd(plan_path, out, small_models, "--snapshot-every", every, *extra, cutouts=4, seed=3)
    return subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=timeout)


def _layout(plan_path, out, *extra, env=None):
    return engine("render", str(plan_path), "--out", str(out), "--layout", "--size", "32", "32", *extra, env=env)


@pytest.fixture(scope="module")
def three_chains(plan_path, small_models, tmp_path_factory):
    """The song in three chains, rendered here, one after another (what every Ray render must equal)."""
    out = tmp_path_factory.mktemp("three") / "out"
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6", every="1000")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def layout_render(plan_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("layout") / "r"
    proc = _layout(plan_path, out)
    assert proc.returncode == 0, proc.stderr
    return out


# ---------------------------------------------------------------- 1. nothing outside the output folder


def test_records_naming_other_folders_are_ignored_and_never_deleted(plan_path, layout_render, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(layout_render, out)
    victims = {}
    for name in ("victim_rel", "victim_abs", "victim_journal", "seg_9999_0123456789"):
        v = tmp_path / name
        v.mkdir()
        (v / "precious.txt").write_text("the user's\n")
        victims[name] = v
    m = json.loads((out / "manifest.json").read_text())
    own_stale = next(iter(m["cache"].values()))["folder"]
    key = "ab" * 32
    for i, folder in enumerate(["../victim_rel", str(victims["victim_abs"]), "../seg_9999_0123456789"]):
        k = f"{i:02x}" + key[2:]
        m["cache"][k] = {"segment": 1, "folder": folder, "images": 1, "status": "done", "used": 0,
                         "frames": [{"index": 0, "file": f"{folder}/frame_00000.png", "bytes": 5}]}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "frames.jsonl").write_text(
        json.dumps({"begin": {"key": "cd" * 32, "segment": 2, "folder": "../victim_journal", "images": 1}}) + "\n"
    )
    # Another cut: the old segments are stale, and with no room kept for them (--cache-cap-mb 0) pruned.
    other = tmp_path / "plan2.json"
    plan = json.loads(plan_path.read_text())
    write_json_atomic(plan_from_boundaries(plan["song"]["path"], [0.0, 2.0, 8.0], preset="draft"), other)
    proc = _layout(other, out, "--cache-cap-mb", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("ignored a record of segment folder") == 4, proc.stderr
    for v in victims.values():
        assert (v / "precious.txt").read_text() == "the user's\n", v
    assert not (out / own_stale).exists()  # m2v's own stale folder did go: the prune really ran
    # A frame record naming a file outside, in an entry of m2v's own name: never read, the frame made again here.
    m = json.loads((out / "manifest.json").read_text())
    rec = m["cache"][m["segments"][0]["key"]]["frames"][0]
    own_file, rec["file"] = out / rec["file"], "../victim_rel/precious.txt"
    (out / "manifest.json").write_text(json.dumps(m))
    own_file.unlink()
    proc = _layout(other, out)
    assert proc.returncode == 0, proc.stderr
    assert "ignored frame records" in proc.stderr and own_file.is_file()
    assert [e["reused"] for e in _events(proc.stdout) if e["event"] == "segment_end"] == [False, True]
    assert (victims["victim_rel"] / "precious.txt").read_text() == "the user's\n"


def test_outputs_are_never_written_through_links(plan_path, layout_render, tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's own file\n")
    # run: its event log (a name its record lists as its own) replaced by a link to the user's file.
    song = json.loads(plan_path.read_text())["song"]["path"]
    run_out = tmp_path / "run"
    run_out.mkdir()
    names = ["plan.json", "plan.png", "render-events.jsonl", "layout", "layout.mp4"]
    (run_out / ".m2v-run.json").write_text(json.dumps({"kind": "m2v-run-files", "version": 1, "files": names}))
    (run_out / "render-events.jsonl").symlink_to(mine)
    proc = engine("run", song, "--out", str(run_out), "--layout", "--size", "32", "32", "--no-estimate")
    refused(proc, "render-events.jsonl", "symbolic link")
    assert not (run_out / "plan.json").exists() and (run_out / "render-events.jsonl").is_symlink()
    # render: the journal, the manifest, a segment folder, the resume points' folder as links.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    m = json.loads((layout_render / "manifest.json").read_text())
    seg = m["cache"][m["segments"][0]["key"]]["folder"]
    for name, target in [("frames.jsonl", mine), ("manifest.json", mine), (seg, elsewhere), ("state", elsewhere)]:
        out = tmp_path / f"r_{name}"
        shutil.copytree(layout_render, out)
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(target)
        before = _tree(out)
        refused(_layout(plan_path, out), name)
        assert _tree(out) == before and (out / name).is_symlink()
    assert mine.read_text() == "the user's own file\n" and list(elsewhere.iterdir()) == []
    # A -o the user names as a link: the name is replaced by the plan, the file it pointed at is untouched.
    link = tmp_path / "plan_link.json"
    link.symlink_to(mine)
    proc = engine("plan", song, "--boundaries", "0,4,8", "-o", str(link), "--no-estimate")
    assert proc.returncode == 0, proc.stderr
    assert not link.is_symlink() and json.loads(link.read_text())["kind"] == "m2v-plan"
    assert mine.read_text() == "the user's own file\n"


def test_lock_named_entries_that_are_not_m2vs_are_refused_and_left_alone(plan_path, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    lock = folder / LOCK_FILE
    target = tmp_path / "outside" / "created-through-the-link"
    target.parent.mkdir()
    kinds = {
        "dangling link": lambda: lock.symlink_to(target),
        "folder": lambda: lock.mkdir(),
        "fifo": lambda: os.mkfifo(lock),
        "hard link": lambda: os.link(tmp_path / "outside" / "other", lock),
    }
    (tmp_path / "outside" / "other").write_text("x")
    for what, make in kinds.items():
        make()
        with pytest.raises(InputError, match="is not m2v's lock file"), FolderLock(folder, LOCK_FILE):
            pass
        assert os.path.lexists(lock), what
        assert not target.exists(), what
        if lock.is_dir() and not lock.is_symlink():
            lock.rmdir()
        else:
            lock.unlink()
    # A render refuses the folder the same way, at once, the link still there and nothing made through it.
    out = tmp_path / "r"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(target)
    refused(_layout(plan_path, out), LOCK_FILE, "symbolic link")
    assert (out / LOCK_FILE).is_symlink() and not target.exists() and sorted(os.listdir(out)) == [LOCK_FILE]
    # A lock file a killed render left (a plain file) is taken over, and removed at the end.
    (out / LOCK_FILE).unlink()
    (out / LOCK_FILE).write_text("")
    proc = _layout(plan_path, out)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.lexists(out / LOCK_FILE)


def test_every_output_name_is_checked_before_any_work(plan_path, layout_render, tmp_path):
    song = json.loads(plan_path.read_text())["song"]["path"]
    for name, make, layout in [
        ("video.mp4", Path.mkdir, False),
        ("layout.mp4", Path.mkdir, True),
        ("plan.png", os.mkfifo, True),
        ("layout", Path.touch, True),
    ]:
        out = tmp_path / f"run_{name}"
        out.mkdir()
        make(out / name)
        t0 = time.monotonic()
        flags = ["--layout", "--size", "32", "32"] if layout else ["--models", str(tmp_path / "none"), "--no-fetch"]
        proc = engine("run", song, "--out", str(out), "--no-estimate", *flags, timeout=120)
        refused(proc, name)
        assert sorted(os.listdir(out)) == [name], name  # nothing analysed, written or locked
        assert time.monotonic() - t0 < 60
    for name, make in [("manifest.json", Path.mkdir), ("frames.jsonl", os.mkfifo), ("state", Path.touch)]:
        out = tmp_path / f"render_{name}"
        out.mkdir()
        make(out / name)
        refused(_layout(plan_path, out), name)
        assert sorted(os.listdir(out)) == [name]


# ---------------------------------------------------------------- 2. no hang


def _within(seconds: float, fn, *args):
    """``fn(*args)`` in a thread that must end within ``seconds`` (a FIFO read would block it for ever)."""
    box = {}

    def call():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} blocked"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_reads_never_block_nor_run_without_bound(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        _within(5, read_regular, fifo, "lyrics file", 1 << 20)
    with pytest.raises(InputError, match="not a regular file"):
        _within(5, read_regular, "/dev/zero", "render manifest", 1 << 20)
    link = tmp_path / "link"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="symbolic link"):
        _within(5, read_regular, link, "render journal", 1 << 20, False)
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(3 << 20)  # sparse: a size, no bytes
    with pytest.raises(InputError, match="more than"):
        read_regular(big, "cache file", 1 << 20)
    assert _within(5, read_cache_file, fifo) is None and read_cache_file(link) is None
    (tmp_path / "ok").write_bytes(b"abc")
    assert read_regular(tmp_path / "ok", "x", 3) == b"abc"
    # A lyrics FIFO, and a resume point's FIFO, through the loaders.
    lrc = tmp_path / "words.lrc"
    os.mkfifo(lrc)
    with pytest.raises(InputError, match="not a regular file"):
        _within(5, load_lyrics, lrc)
    from engine.store.snapshots import list_snapshots

    state = tmp_path / "state"
    state.mkdir()
    os.mkfifo(state / (("ab" * 32) + "-00001.pt"))
    (state / (("cd" * 32) + "-00002.pt")).symlink_to(big)
    (state / (("ef" * 32) + "-00003.pt")).write_bytes(b"x")
    assert [s.images for s in list_snapshots(state)] == [3]


def test_cache_files_that_are_not_files_are_ignored(tmp_path, monkeypatch):
    from engine.render.sources import footage
    from engine.render.step import estimate

    picture = tmp_path / "still.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 40)).save(picture)
    still = footage.Footage(picture)
    cache = tmp_path / "digests.json"
    os.mkfifo(cache)
    digests = _within(10, footage.frame_digests, still, [0], 8, 8, cache)
    assert list(digests) == [0] and cache.is_file()  # the FIFO's name now holds the cache, read and rewritten
    cache.unlink()
    cache.symlink_to("/dev/zero")
    assert list(_within(10, footage.frame_digests, still, [0], 8, 8, cache)) == [0]

    measured = []
    fake = {"version": estimate.CALIBRATION_VERSION, "device": "cpu", "decode_s_per_mpix": 1.0}
    fake.update(clip_s_per_cutout=0.01, step_overhead_s=0.02, image_s=0.0)

    def calibrate(device):
        measured.append(device)
        return dict(fake)

    monkeypatch.setattr(estimate, "calibrate", calibrate)
    import torch

    cpu = torch.device("cpu")
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("M2V_CACHE", str(folder))
    cal = folder / "calibration.json"
    os.mkfifo(cal)
    assert _within(20, estimate.cached_calibration, cpu)["decode_s_per_mpix"] == 1.0 and len(measured) == 1
    cal.unlink()
    cal.symlink_to("/dev/zero")
    _within(20, estimate.cached_calibration, cpu)
    assert len(measured) == 2 and not cal.is_symlink()  # measured again, and the link replaced by the cache
    assert _within(20, estimate.cached_calibration, cpu) and len(measured) == 2  # now cached
    key = next(iter(json.loads(cal.read_text())))
    for poison in [math.nan, "fast", 1e308, -1.0, None]:
        doc = json.loads(cal.read_text())
        if poison is None:
            del doc[key]["clip_s_per_cutout"]
        else:
            doc[key]["decode_s_per_mpix"] = poison
        cal.write_text(json.dumps(doc))  # NaN written as JSON's NaN: Python reads it back
        n = len(measured)
        got = estimate.cached_calibration(cpu)
        assert len(measured) == n + 1 and got["decode_s_per_mpix"] == 1.0, poison
        assert estimate.valid_calibration(json.loads(cal.read_text())[key])
    # A cache "folder" that is a file: no cache, a warning, the estimate goes on.
    shaped = tmp_path / "cache-file"
    shaped.write_text("not a folder")
    monkeypatch.setenv("M2V_CACHE", str(shaped))
    warned = []
    assert estimate.cached_calibration(cpu, warn=warned.append)["decode_s_per_mpix"] == 1.0
    assert len(warned) == 1 and str(shaped) in warned[0] and shaped.read_text() == "not a folder"


def test_fifos_in_a_render_folder_never_hang(plan_path, small_models, layout_render, tmp_path):
    # export: a FIFO in place of a frame.
    out = tmp_path / "r"
    shutil.copytree(layout_render, out)
    m = json.loads((out / "manifest.json").read_text())
    frame = out / m["cache"][m["segments"][1]["key"]]["frames"][0]["file"]
    frame.unlink()
    os.mkfifo(frame)
    refused(engine("export", str(out), "-o", str(tmp_path / "v.mp4"), timeout=120), frame.name, "not a regular file")
    assert not (tmp_path / "v.mp4").exists()
    # models check: a FIFO as the pins record and as a model file.
    models = tmp_path / "models"
    models.mkdir()
    os.mkfifo(models / "pins.json")
    os.mkfifo(models / "Wav2CLIP.pt")
    proc = engine("models", "check", "--models", str(models), "--json", timeout=120)
    assert proc.returncode == 2 and "Wav2CLIP.pt" in proc.stderr and "Traceback" not in proc.stderr
    # A local resume past a FIFO in place of a resume point.
    out = tmp_path / "model"
    proc = _render(plan_path, out, small_models)
    assert proc.returncode == 0, proc.stderr
    reference = _frames(out)
    m = json.loads((out / "manifest.json").read_text())
    last = m["segments"][-1]["key"]
    for f in m["cache"][last]["frames"][1:]:
        (out / f["file"]).unlink()
    for p in (out / "state").glob(f"{last}-*.pt"):
        p.unlink()
    os.mkfifo(out / "state" / f"{last}-00002.pt")
    proc = _render(plan_path, out, small_models, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == reference


# ---------------------------------------------------------------- 3. no silent wrong result


def test_csv_lyrics_are_rows_and_the_extension_decides_the_format(tmp_path):
    with pytest.raises(InputError, match=r"line 2: an unbalanced quote"):
        parse_csv('0:01,hello\n0:02,"world\n0:03,lost\n0:04,lost too\n', "x.csv")
    with pytest.raises(InputError, match=r"line 1: an unbalanced quote"):
        parse_csv('0:01,"hello\n0:02,"world"\n', "x.csv")
    with pytest.raises(InputError, match=r"line 3: a quoted cell runs from line 3 to line 4"):
        parse_csv('time,text\n0:01,ok\n0:02,"two\nlines"\n', "x.csv")
    rows = parse_csv('time,text\n0:01,"a, b"\n\n0:05,"say ""hi"""\n0:06,it\'s "fine"\n', "x.csv")
    assert [(ly.line, ly.text) for ly in rows] == [(2, "a, b"), (4, 'say "hi"'), (5, 'it\'s "fine"')]
    csv_arrow = tmp_path / "arrows.csv"
    csv_arrow.write_text("0:01,here --> there\n0:03,[00:05] not a tag\n", encoding="utf-8")
    assert [ly.text for ly in load_lyrics(csv_arrow)] == ["here --> there", "[00:05] not a tag"]
    srt = tmp_path / "cues.txt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n", encoding="utf-8")
    assert [ly.text for ly in load_lyrics(srt)] == ["hello"]
    bad = tmp_path / "bad.csv"
    bad.write_text('0:01,hello\n0:02,"world\n0:03,lost\n', encoding="utf-8")
    song = tmp_path / "song.wav"
    s = synth_song([Section(3, 120, "rock", "soft", 0.5)], seed=4)
    write_song(song, s.y, s.sr)
    refused(engine("plan", str(song), "--boundaries", "0,3", "--lyrics", str(bad), "--no-estimate"), "bad.csv, line 2")
    close = tmp_path / "close.csv"
    close.write_text("time,text\n1.0,hello there\n1.00004,second line\n", encoding="utf-8")
    proc = engine("plan", str(song), "--boundaries", "0,3", "--lyrics", str(close), "--no-estimate")
    refused(proc, "close.csv, line 3", "40 µs after line 2", "1 ms apart")
    assert "plan could not be rendered" not in proc.stderr


# ---------------------------------------------------------------- 4. Ray: feasibility, exits, leftovers, logs


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    ray = pytest.importorskip("ray")
    tmp = tmp_path_factory.mktemp("ray-tmp")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)  # the workers' temporary folders: checked empty after each render
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        os.environ.pop("TMPDIR") if old is None else os.environ.__setitem__("TMPDIR", old)
    try:
        yield ray.get_runtime_context().gcs_address, tmp
    finally:
        ray.shutdown()


def _ray_lines(stderr: str) -> list[str]:
    """Lines on the terminal that are Ray's own, not m2v's."""
    own = ("render settings:", "warning:", "error:", "stopped:", "interrupted")
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(own)]


def test_ray_asked_for_more_than_the_cluster_has(plan_path, small_models, three_chains, ray_address, tmp_path):
    address, tmp = ray_address
    env = _env(TMPDIR=str(tmp))
    out = tmp_path / "cpus"
    t0 = time.monotonic()
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6", "--ray", address, "--ray-cpus", "4", env=env)
    refused(proc, "--ray-cpus 4", "largest has 2")
    assert time.monotonic() - t0 < 240 and not out.exists()
    out = tmp_path / "workers"
    flags = ("--chain-at", "3,6", "--ray", address, "--ray-workers", "5")
    proc = _render(plan_path, out, small_models, *flags, every="1000", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "--ray-workers 5: the Ray cluster holds 2 worker(s)" in proc.stderr
    assert _frames(out) == _frames(three_chains)
    ev = _events(proc.stdout)
    assert next(e for e in ev if e["event"] == "ray_start")["workers"] == 2
    assert [p.name for p in tmp.iterdir() if p.name.startswith("m2v-chain-")] == []
    assert (out / RAY_LOG_FILE).is_file() and _ray_lines(proc.stderr) == [], proc.stderr


def test_ray_addresses_that_answer_nothing_fail_at_once(plan_path, small_models, tmp_path):
    pytest.importorskip("ray")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        for address, words in [
            ("127.0.0.1:1", "cannot reach a Ray cluster there"),
            (f"127.0.0.1:{silent.getsockname()[1]}", "no Ray server answered"),
            ("", "no address given"),
            ("ray://nowhere", "not an address"),
        ]:
            out = tmp_path / "out"
            t0 = time.monotonic()
            proc = _render(plan_path, out, small_models, "--chains", "2", "--ray", address, timeout=120)
            refused(proc, words)
            assert time.monotonic() - t0 < 90 and not out.exists()
            ev = _events(proc.stdout)
            assert ev[-1]["event"] == "error" and "\n" not in ev[-1]["message"]
    finally:
        silent.close()


def test_ray_resume_points_refused_or_skipped_name_the_users_file(
    plan_path, small_models, three_chains, ray_address, tmp_path
):
    address, tmp = ray_address
    out = tmp_path / "out"
    shutil.copytree(three_chains, out)
    m = json.loads((out / "manifest.json").read_text())
    last = m["segments"][4]["key"]  # the third chain's only segment
    shutil.rmtree(out / m["cache"][last]["folder"])
    for p in (out / "state").glob(f"{last}-*.pt"):
        p.unlink()

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (out / "state").mkdir(exist_ok=True)
    evil = out / "state" / f"{last}-00000.pt"
    evil.write_bytes(pickle.dumps({"z": Boom(), "opt": {}}, protocol=4))
    flags = ("--chain-at", "3,6", "--ray", address, "--ray-workers", "1")
    proc = _render(plan_path, out, small_models, *flags, env=_env(TMPDIR=str(tmp)))
    refused(proc, str(evil), "which m2v will not load")
    assert "m2v-chain-" not in proc.stderr and not (tmp_path / "pwned").exists()
    evil.unlink()
    os.mkfifo(out / "state" / f"{last}-00001.pt")  # a pipe under a resume point's name: skipped, not read
    proc = _render(plan_path, out, small_models, *flags, env=_env(TMPDIR=str(tmp)), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == _frames(three_chains)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("m2v-chain-")] == []


def _descendants(pid: int) -> list[tuple[int, str]]:
    rows = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout.splitlines()
    kids: dict[int, list] = {}
    for row in rows:
        p, pp, args = (row.split(None, 2) + [""])[:3]
        kids.setdefault(int(pp), []).append((int(p), args))
    out, todo = [], [pid]
    while todo:
        for p, args in kids.get(todo.pop(), []):
            out.append((p, args))
            todo.append(p)
    return out


def test_sigterm_while_ray_starts_stops_as_at_any_other_moment(plan_path, small_models, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    cmd = render_cmd(plan_path, out, small_models, "--chain-at", "3,6", "--ray", cutouts=4, seed=3)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    t0 = time.monotonic()
    while not (out / RAY_LOG_FILE).exists() and time.monotonic() - t0 < 300:
        time.sleep(0.05)  # the log opens just before Ray starts its local instance
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr and _events(stdout)[-1]["event"] == "cancelled"
    assert not out.exists()  # the folder as it was found: there was none


def test_ray_dying_under_a_render_ends_it_cleanly(plan_path, small_models, three_chains, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    cmd = render_cmd(
        plan_path, out, small_models, "--chain-at", "3,6", "--ray", "--snapshot-every", "0", cutouts=4, seed=3
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    killed, events = None, []
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "image" and killed is None:
            # Its own local Ray instance's dashboard agent (Ray fate-shares it with the node): a process of this render.
            agent = [p for p, args in _descendants(proc.pid) if args.startswith("ray::DashboardAgent")]
            if agent:
                os.kill(agent[0], signal.SIGKILL)
                killed = agent[0]
    stderr = proc.stderr.read()
    proc.wait(timeout=300)
    assert killed is not None
    assert proc.returncode == 1, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    # Seen by the driver (its own error), or, when Ray ended the process first, by its guardian process.
    said = ("Ray stopped under the render", "the render's process ended before the render did")
    assert len(errors) == 1 and any(w in errors[0] for w in said), stderr[-3000:]
    assert "Traceback" not in stderr and events[-1]["event"] == "error"
    assert not os.path.lexists(out / LOCK_FILE) and json.loads((out / "manifest.json").read_text())
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == _frames(three_chains)


# ---------------------------------------------------------------- 5. a clear error, not a traceback


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 400 kB tmpfs, mounted for the test (root only) and unmounted after it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount in this container)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    st = os.statvfs(disk)
    filler = disk / "filler"
    free = st.f_bavail * st.f_frsize + (filler.stat().st_size if filler.exists() else 0)
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_is_a_clear_error_and_resume_stays_exact(plan_path, small_models, layout_render, tiny_disk):
    reference_dir = tiny_disk.parent / "reference"
    proc = _render(plan_path, reference_dir, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    out = tiny_disk / "r"
    need = sum(p.stat().st_blocks * 512 for p in reference_dir.rglob("*") if p.is_file())
    assert need < 300_000, need  # the disk holds the whole render when it is empty
    filler = _fill(tiny_disk, need // 2)  # room for part of the render
    proc = _render(plan_path, out, small_models, every="1000")
    refused(proc, "no space left on the device for", str(out))
    assert _events(proc.stdout)[-1]["event"] == "error"
    if (out / "manifest.json").exists():
        json.loads((out / "manifest.json").read_text())  # readable
    assert not list(out.rglob(f"*{TEMP_SUFFIX}")) if out.exists() else True
    filler.unlink()
    proc = _render(plan_path, out, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == _frames(reference_dir)
    shutil.rmtree(out)
    # run, analyze -o and export on the full disk: exit 2 naming the folder, nothing left behind.
    song = json.loads(plan_path.read_text())["song"]["path"]
    filler = _fill(tiny_disk, 20_000)
    proc = engine("run", song, "--out", str(tiny_disk / "run"), "--layout", "--size", "32", "32", "--no-estimate")
    refused(proc, "no space left on the device for", str(tiny_disk / "run"))
    proc = engine(
        "analyze",
        song,
        "--no-estimate",
        "-o",
        str(tiny_disk / "a" / "p.json"),
        "--plot",
        str(tiny_disk / "a" / "p.png"),
    )
    refused(proc, "no space left on the device for", str(tiny_disk / "a"))
    filler = _fill(tiny_disk, 2_000)
    proc = engine("export", str(layout_render), "-o", str(tiny_disk / "v.mp4"))
    refused(proc, "no space left on the device for", str(tiny_disk))
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_short_pure_tones_plan_without_an_error(tmp_path):
    sr = 22050
    for d in (0.2, 0.35, 0.5, 0.7, 0.85, 1.0):
        t = np.arange(int(sr * d)) / sr
        path = tmp_path / f"tone_{d}.wav"
        sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), sr)
        plan = plan_from_boundaries(path, [0.0, d], preset="draft")
        assert plan["segments"][0]["end"] == pytest.approx(d, abs=1e-3)
    proc = engine("plan", str(path), "--boundaries", "0,1", "--no-estimate", "-o", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr


def test_render_flag_errors_are_one_error_line_and_an_event(plan_path, tmp_path):
    for flags, words in [
        (("--lr", "abc"), "argument --lr: not a number: 'abc'"),
        (("--size", "32"), "--size"),
        (("--ray-workers", "0"), "--ray-workers"),
    ]:
        proc = engine("render", str(plan_path), "--out", str(tmp_path / "o"), *flags)
        refused(proc, words)
        ev = _events(proc.stdout)
        assert len(ev) == 1 and ev[0]["event"] == "error" and ev[0]["code"] == 2 and words in ev[0]["message"]
    proc = engine("--events", "analyze")
    refused(proc, "required: song")
    assert _events(proc.stdout)[0]["event"] == "error"
    proc = engine("analyze")
    refused(proc, "required: song")
    assert proc.stdout == ""


def test_ray_messages_are_reduced_to_one_line():
    from engine.render.jobs.ray_setup import check_address_flag, one_line, plan_workers

    advice = "Could not connect.\n\nThis can happen when:\n  (1) the head died\n  (2) a firewall\n"
    assert one_line(advice) == "Could not connect."
    assert "\n" not in one_line("x" * 1000) and len(one_line("x" * 1000)) == 300
    with pytest.raises(InputError, match="no address given"):
        check_address_flag("  ")
    assert check_address_flag(None) is None and check_address_flag("auto") == "auto"

    class FakeRay:
        def nodes(self):
            return [{"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": True, "Resources": {"CPU": 2.0}},
                    {"Alive": False, "Resources": {"CPU": 64.0}}]  # fmt: skip

    with pytest.raises(InputError, match="--ray-cpus 8: no node of the Ray cluster has 8 CPUs .its largest has 4"):
        plan_workers(FakeRay(), None, 8, False, 5)
    res, device, n, warnings = plan_workers(FakeRay(), 9, 2, False, 5)
    assert (res, device, n) == ({"num_cpus": 2}, "cpu", 3) and "--ray-workers 9" in warnings[0]
    assert plan_workers(FakeRay(), None, 3, False, 5)[2] == 1 and plan_workers(FakeRay(), None, 1, False, 2)[2] == 2


# ---------------------------------------------------------------- 6. the offline newcomer


def test_run_without_models_shows_the_plan_and_its_cost_first(tmp_path):
    out = tmp_path / "out"
    proc = engine("run", "--out", str(out), "--models", str(tmp_path / "no-models"), "--no-fetch", "--device", "cpu")
    refused(proc, "model file", "is missing")
    assert "demo_song.wav:" in proc.stdout and "segments" in proc.stdout and "images" in proc.stdout
    err = proc.stderr
    assert "steps," in err and " on CPU" in err and err.index(" on CPU") < err.index("error:")
    assert not out.exists() and not (tmp_path / "no-models").exists()
    assert model_args  # the small models' flags stay the way to render here (tests/small_models.py)


def test_after_ray_died_its_threads_print_to_the_log_and_stdout_stays_events(tmp_path, capfd):
    """Ray's listener threads print ("(raylet) The node ... marked dead") until the process ends: once Ray died
    under a render those lines go to ray.log, while the main thread's (the error event) still reach stdout."""
    import threading
    import types

    from engine.render.jobs.ray_setup import RayLog

    progress = types.SimpleNamespace(out=None, err=sys.stderr)
    stdout_before, stderr_before = sys.stdout, sys.stderr
    log = RayLog(tmp_path / "ray.log", progress)
    try:
        with log:
            log.keep = True  # as the Ray render sets it when Ray died
        t = threading.Thread(target=lambda: print("(raylet) The node with node id: x has been marked dead"))
        t.start()
        t.join()
        print('{"event": "error"}')
        sys.stdout.flush()
    finally:
        sys.stdout, sys.stderr = stdout_before, stderr_before
    out = capfd.readouterr().out
    assert out.splitlines() == ['{"event": "error"}']
    assert "marked dead" in (tmp_path / "ray.log").read_text()

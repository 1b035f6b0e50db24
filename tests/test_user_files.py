"""The user's files are never touched by a failed command or by an output that names them, every hostile input is
a clean exit 2, and a refused command leaves nothing behind (issue 23; issue 20's refused render)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.analysis.lyrics import load_lyrics
from engine.analysis.synth import Section, synth_song
from engine.files import FolderLock, remove_temp_files, write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.protocol import LOCK_FILE, TEMP_SUFFIX
from tests.conftest import REPO, run_engine, write_song
from tests.small_models import model_args


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder): what 'as it was' means."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
        if not p.is_fifo()
    }


def refused(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("song")
    s = synth_song([Section(3, 120, "rock", "soft", 0.5)], seed=4)
    return write_song(d / "song.wav", s.y, s.sr)


@pytest.fixture(scope="module")
def render(song, tmp_path_factory):
    """A finished layout render of the song's first 6 s (copied by tests that change it)."""
    d = tmp_path_factory.mktemp("render")
    write_json_atomic(plan_from_boundaries(song, [0.0, 2.0, 6.0], preset="draft"), d / "plan.json")
    proc = run_engine("render", str(d / "plan.json"), "--out", str(d / "r"), "--layout", "--size", "32", "32")
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture()
def user_folder(tmp_path):
    """A folder of the user's own files under the names m2v's commands write."""
    d = tmp_path / "mine"
    d.mkdir()
    for name in ("plan.json", "plan.png", "layout.mp4", "render-events.jsonl", "video.mp4"):
        (d / name).write_bytes(f"the user's own {name}\n".encode())
    return d


# ---------------------------------------------------------------- 1. outputs that name an input or a user's file


def test_outputs_never_overwrite_an_input(song, render, tmp_path):
    lrc = tmp_path / "words.lrc"
    lrc.write_text("[00:00.50]hello\n", encoding="utf-8")
    before = song.read_bytes(), lrc.read_bytes()
    refused(run_engine("analyze", str(song), "-o", str(song), "--no-estimate"), "-o names the song")
    refused(run_engine("analyze", str(song), "--lyrics", str(lrc), "-o", str(lrc), "--no-estimate"), "lyrics file")
    refused(run_engine("analyze", str(song), "--plot", str(song), "--no-estimate"), "--plot names the song")
    refused(
        run_engine("analyze", str(song), "-o", str(tmp_path / "x.png"), "--plot", str(tmp_path / "x.png")),
        "name the same file",
    )
    link = tmp_path / "link.wav"
    os.link(song, link)  # a hard link is the same file under another name
    refused(run_engine("plan", str(song), "--boundaries", "0,2", "-o", str(link), "--no-estimate"), "-o names the song")
    r = render / "r"
    manifest = (r / "manifest.json").read_bytes()
    refused(run_engine("export", str(r), "-o", str(song)), "-o names the song")
    refused(run_engine("export", str(r), "-o", str(r / "manifest.json")), "render manifest")
    refused(run_engine("export", str(r), "-o", str(r / "frames.jsonl")), "render's own files")
    assert (song.read_bytes(), lrc.read_bytes()) == before
    assert (r / "manifest.json").read_bytes() == manifest
    assert not (tmp_path / "x.png").exists()


def test_run_leaves_the_users_files_alone(song, user_folder):
    before = snapshot(user_folder)
    for name in ("plan.json", "plan.png", "layout.mp4", "render-events.jsonl"):
        others = [n for n in before if n != name]
        for n in others:
            (user_folder / n).rename(user_folder.parent / n)  # only `name` is in the way this time
        proc = run_engine("run", str(song), "--out", str(user_folder), "--layout", "--size", "32", "32")
        refused(proc, name, "m2v did not write")
        for n in others:
            (user_folder.parent / n).rename(user_folder / n)
    assert snapshot(user_folder) == before


def test_run_takes_the_folder_lock_before_writing(song, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with FolderLock(out, LOCK_FILE):  # another run holds the folder
        held = snapshot(out)
        proc = run_engine("run", str(song), "--out", str(out), "--layout", "--size", "32", "32")
        refused(proc, "another m2v render")
        assert snapshot(out) == held
    assert list(out.iterdir()) == []  # the lock leaves no file behind once released


def test_run_reruns_into_its_own_folder(song, tmp_path):
    out = tmp_path / "o"
    args = ("run", str(song), "--out", str(out), "--layout", "--size", "32", "32")
    first = run_engine(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads((out / ".m2v-run.json").read_text())["files"]
    again = run_engine(*args)
    assert again.returncode == 0, again.stderr
    assert not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------- 2. a refused command creates nothing


def test_refused_commands_create_no_folder(song, tmp_path):
    bad_lrc = tmp_path / "bad.lrc"
    bad_lrc.write_text("no time tags here\n", encoding="utf-8")
    refused(run_engine("analyze", str(song), "--lyrics", str(bad_lrc), "-o", str(tmp_path / "a/b/plan.json")))
    refused(run_engine("analyze", str(song), "--lyrics", str(bad_lrc), "--plot", str(tmp_path / "c/d/p.png")))
    refused(run_engine("run", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "e/f"), "--layout"))
    refused(run_engine("run", str(song), "--lyrics", str(bad_lrc), "--out", str(tmp_path / "g"), "--layout"))
    refused(run_engine("export", str(tmp_path), "-o", str(tmp_path / "h/v.mp4")), "no render here")
    refused(run_engine("models", "fetch", "--only", "NOPE.bin", "--models", str(tmp_path / "m")), "NOPE.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.lrc"]


def test_refused_render_leaves_no_trace(render, tmp_path):
    other = tmp_path / "other-tool"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"kind": "another-tool", "version": 7}))
    (other / "frames.jsonl").write_text("theirs\n")
    before = snapshot(other)
    refused(run_engine("render", str(render / "plan.json"), "--out", str(other), "--layout"), "manifest")
    assert snapshot(other) == before  # no .m2v-lock, nothing else
    journal_only = tmp_path / "journal-only"
    journal_only.mkdir()
    (journal_only / "frames.jsonl").write_text("a line of someone else's\n")
    before = snapshot(journal_only)
    refused(run_engine("render", str(render / "plan.json"), "--out", str(journal_only), "--layout"), "did not write")
    assert snapshot(journal_only) == before


def corrupt_movie(path: Path) -> Path:
    """A movie whose container and packets read fine and whose frames do not decode."""
    from tests.footage_media import write_movie

    write_movie(path, 48)
    data = bytearray(path.read_bytes())
    mdat = data.find(b"mdat")
    for i in range(mdat + 8, len(data) - 2048, 7):
        data[i] = (data[i] * 31 + 17) % 256
    path.write_bytes(bytes(data))
    return path


def test_footage_damaged_mid_render_is_the_users_error(song, render, small_models, tmp_path):
    movie = corrupt_movie(tmp_path / "damaged.mp4")
    out = tmp_path / "new" / "out"
    proc = run_engine(
        "render",
        str(render / "plan.json"),
        "--out",
        str(out),
        "--footage",
        str(movie),
        "--size",
        "16",
        "16",
        "--cutouts",
        "2",
        *model_args(small_models),
    )
    refused(proc, str(movie))
    assert not (tmp_path / "new").exists()  # nothing rendered: the folders it made are gone again


# ---------------------------------------------------------------- 3. every input a bounded regular file


def test_pipes_devices_and_absurd_files_are_refused(song, tmp_path):
    fifo = tmp_path / "pipe.lrc"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    refused(run_engine("analyze", str(song), "--lyrics", str(fifo), "--no-estimate", timeout=60), "not a regular file")
    refused(run_engine("analyze", str(song), "--lyrics", "/dev/zero", "--no-estimate", timeout=60), "not a regular")
    refused(run_engine("render", str(fifo), "--out", str(tmp_path / "o"), "--layout", timeout=60), "not a regular")
    seg = tmp_path / "seg.json"
    os.mkfifo(seg)
    refused(run_engine("plan", str(song), "--boundaries", "0,2", "--segment-settings", str(seg), timeout=60), str(seg))
    refused(run_engine("analyze", str(fifo), "--no-estimate", timeout=60), "not a regular file")
    assert time.monotonic() - t0 < 60
    big = tmp_path / "big.csv"
    big.write_text("00:01," + "x" * 200_000 + "\n")
    refused(run_engine("analyze", str(song), "--lyrics", str(big), "--no-estimate"), str(big), "line 1", "field")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 50_000 + "]" * 50_000)
    refused(run_engine("render", str(deep), "--out", str(tmp_path / "o"), "--layout"), str(deep), "nested too deep")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"kind": "m2v-segment-settings", "version": 1, "segments": [{"start": 0}]})[:-3])
    huge.write_text(huge.read_text() + ', "take": ' + "9" * 400 + "}]}")
    refused(
        run_engine("plan", str(song), "--boundaries", "0,2", "--segment-settings", str(huge), "--no-estimate"),
        "entry 0 take",
        "out of range",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "deep.json", "huge.json", "pipe.lrc", "seg.json"]


# ---------------------------------------------------------------- 4. errors found late


def test_bomb_picture_as_footage(render, small_models, tmp_path):
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 megapixels, a few kB on disk
    assert bomb.stat().st_size < 1_000_000
    proc = run_engine(
        "render",
        str(render / "plan.json"),
        "--out",
        str(tmp_path / "o"),
        "--footage",
        str(bomb),
        *model_args(small_models),
    )
    refused(proc, str(bomb), "too large")
    assert not (tmp_path / "o").exists()


def test_song_replaced_before_export(song, render, tmp_path):
    import shutil

    copy = tmp_path / "song.wav"
    shutil.copy(song, copy)
    write_json_atomic(plan_from_boundaries(copy, [0.0, 2.0, 6.0], preset="draft"), tmp_path / "plan.json")
    r = tmp_path / "r"
    assert (
        run_engine("render", str(tmp_path / "plan.json"), "--out", str(r), "--layout", "--size", "32", "32").returncode
        == 0
    )
    import soundfile as sf

    y, sr = sf.read(copy)
    sf.write(copy, y * 0.5, sr)  # the song changed (still audio): exported, with a warning naming it
    proc = run_engine("export", str(r), "-o", str(tmp_path / "v.mp4"))
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and str(copy) in proc.stderr and "changed since the render" in proc.stderr
    copy.write_text("this is not audio any more\n")
    refused(run_engine("export", str(r), "-o", str(tmp_path / "w.mp4")), str(copy))
    copy.unlink()
    os.mkfifo(copy)  # a pipe in the song's place: refused, not read (which would block)
    refused(run_engine("export", str(r), "-o", str(tmp_path / "w.mp4"), timeout=120), str(copy), "not a regular file")
    assert not (tmp_path / "w.mp4").exists()
    assert not list(tmp_path.glob(f".*{TEMP_SUFFIX}"))


def test_export_too_short_for_the_frame_rate(song, tmp_path):
    write_json_atomic(plan_from_boundaries(song, [0.0, 0.3], preset="draft"), tmp_path / "plan.json")
    r = tmp_path / "r"
    assert (
        run_engine("render", str(tmp_path / "plan.json"), "--out", str(r), "--layout", "--size", "32", "32").returncode
        == 0
    )
    refused(run_engine("export", str(r), "-o", str(tmp_path / "v.mp4"), "--fps", "1"), "not one video frame")
    assert not (tmp_path / "v.mp4").exists()


def test_plot_names_are_checked_before_anything_is_written(song, tmp_path):
    refused(
        run_engine(
            "analyze", str(song), "-o", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.xyz"), "--no-estimate"
        ),
        "--plot",
        ".xyz",
    )
    assert list(tmp_path.iterdir()) == []
    proc = run_engine("plan", str(song), "--boundaries", "0,2", "--plot", str(tmp_path / "plot"), "--no-estimate")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plot").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # exactly the name given, a PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot"]


# ---------------------------------------------------------------- 5. signals at any moment


def _engine(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "engine", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


def test_sigterm_while_starting_is_a_clean_exit(song, tmp_path):
    codes = []
    # From the first line of engine/__main__.py on (the interpreter's own start-up, before it, is not ours). The
    # whole command takes about half a second now that it imports no torch: the last try waits for its first line
    # (the preset it chose, printed when the imports are done) and stops it during the analysis.
    for i, delay in enumerate((0.25, 0.5, None)):
        new = tmp_path / f"new{i}"
        proc = _engine("analyze", str(song), "-o", str(new / "p.json"), "--no-estimate")
        if delay is None:
            proc.stderr.readline()
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)
        assert "Traceback" not in err
        codes.append(proc.returncode)
        if proc.returncode == 130:
            assert not new.exists()
    assert 130 in codes


def test_an_interrupt_a_library_saw_does_not_change_the_exit_code(tmp_path):
    # A KeyboardInterrupt that leaves code run through PyRun_* (Cython modules run such code while they are
    # imported) leaves CPython's "unhandled KeyboardInterrupt" mark set even when the engine catches it later or
    # the library swallows it, and a `python -m` run then ends in a self-kill by SIGINT (-2) whatever sys.exit
    # was given. PyRun_SimpleString leaves the same mark, deterministically.
    (tmp_path / "late_exit.py").write_text(
        "import ctypes, sys\n"
        "ctypes.pythonapi.PyRun_SimpleString(b'raise KeyboardInterrupt')\n"
        "from engine.stopping import quiet_exit\n"
        "print('last words', flush=False)\n"
        "quiet_exit(int(sys.argv[2])) if sys.argv[1] == 'quiet' else sys.exit(int(sys.argv[2]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]))

    def run(how: str, code: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "late_exit", how, str(code)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert "KeyboardInterrupt" in proc.stderr  # the library saw the interrupt
        assert proc.stdout == "last words\n"  # buffered output is flushed, not lost
        return proc

    # The premise: plain sys.exit is turned into the self-kill.
    assert run("plain", 0).returncode == -signal.SIGINT
    for code in (130, 0, 2, 3):
        assert run("quiet", code).returncode == code


def test_a_stop_signal_during_an_import_waits_for_the_import(tmp_path):
    # A KeyboardInterrupt raised inside an import can reach C++ that cannot pass it on (torch's pybind11 set-up:
    # the process then dies by SIGABRT, seen when analyze imported torch). The engine's handler lets the import
    # finish and interrupts right after it.
    (tmp_path / "slow_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.3)  # the signal arrives while this module is still being imported\n"
        "print('import finished', flush=True)\n"
    )
    (tmp_path / "stop_in_import.py").write_text(
        "import sys, time\n"
        "from engine.stopping import interrupt_outside_imports, on_stop_signals, quiet_exit\n"
        "if sys.argv[1] == 'engine':\n"
        "    on_stop_signals(interrupt_outside_imports)\n"
        "else:\n"
        "    on_stop_signals(lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt))  # a plain raising handler\n"
        "try:\n"
        "    import slow_import\n"
        "    time.sleep(5)\n"
        "    code = 0\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    code = 130\n"
        "quiet_exit(code)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]))

    def run(handler: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "stop_in_import", handler]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)

    plain = run("plain")  # the premise: a plain handler breaks into the import
    assert (plain.returncode, plain.stdout) == (130, "interrupted\n"), plain.stderr
    ours = run("engine")
    assert (ours.returncode, ours.stdout) == (130, "import finished\ninterrupted\n"), ours.stderr
    # A command that ends right after its last import, before the signal comes again, still stops as asked.
    (tmp_path / "short_command.py").write_text(
        "import engine.cli.commands as c\n"
        "def command(argv):\n"
        "    import slow_import\n"
        "    return 0\n"
        "c._main = command\n"
        "print('exit', c.main([]), flush=True)\n"
    )
    short = subprocess.run([sys.executable, "-m", "short_command"], capture_output=True, text=True, env=env, timeout=60)
    assert short.stdout == "import finished\nexit 130\n", short.stderr


def test_sigterm_during_export_leaves_nothing(song, tmp_path):
    write_json_atomic(plan_from_boundaries(song, [0.0, 6.0], preset="draft"), tmp_path / "plan.json")
    r = tmp_path / "r"
    assert (
        run_engine(
            "render", str(tmp_path / "plan.json"), "--out", str(r), "--layout", "--size", "512", "512"
        ).returncode
        == 0
    )
    out = tmp_path / "v"
    proc = _engine("export", str(r), "-o", str(out / "v.mp4"), "--fps", "240")
    deadline = time.monotonic() + 60
    while not list(out.glob(f".*{TEMP_SUFFIX}")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    if proc.returncode == 130:
        assert not out.exists()  # no temp file, and the folder it made is gone too
    else:
        assert sorted(p.name for p in out.iterdir()) == ["v.mp4"]


# ---------------------------------------------------------------- 6. silent wrong results


def test_lyrics_without_a_song_and_plans_render_would_refuse(song, tmp_path):
    refused(
        run_engine("run", "--lyrics", str(tmp_path / "missing.lrc"), "--out", str(tmp_path / "o"), "--layout"),
        "--lyrics",
    )
    refused(run_engine("plan", str(song), "--boundaries", "0,0.00001,2", "--no-estimate"), "--boundaries")
    assert list(tmp_path.iterdir()) == []


def test_lyrics_files_read_per_line_and_refused_alike(tmp_path):
    srt = tmp_path / "tight.srt"
    srt.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nhello\n2\n00:00:03,000 --> 00:00:04,000\nworld\n"
        "00:00:05,000 --> 00:00:06,000\nthird\n"
    )
    assert [(ly.time, ly.text, ly.end) for ly in load_lyrics(srt)] == [
        (1.0, "hello", 2.0),
        (3.0, "world", 4.0),
        (5.0, "third", 6.0),
    ]
    from engine.errors import InputError

    for text, words in (
        ("00:75,words\n", "seconds must be below 60"),
        ("start_time,end_time,lyrics_line\n5,3,x\n", "ends"),
    ):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=words):
            load_lyrics(bad)
    for enc in ("utf-16", "utf-16-le", "utf-16-be"):
        lrc = tmp_path / f"{enc}.lrc"
        lrc.write_bytes("[00:01.00]héllo\n[00:02.50]wörld\n".encode(enc))
        assert [(ly.time, ly.text) for ly in load_lyrics(lrc)] == [(1.0, "héllo"), (2.5, "wörld")]


def test_many_lyrics_outside_the_song_are_summarised(song, tmp_path):
    lrc = tmp_path / "long.lrc"
    lrc.write_text("".join(f"[{m:02d}:{s:02d}.00]line {m} {s}\n" for m in range(1, 101) for s in range(0, 60, 3)))
    proc = run_engine("analyze", str(song), "--lyrics", str(lrc), "--no-estimate")
    assert proc.returncode == 0, proc.stderr
    assert 3 <= proc.stderr.count("warning:") <= 12, proc.stderr.count("warning:")
    assert "1990 more lyric lines" in proc.stderr


def test_only_m2v_own_temp_files_are_cleared(tmp_path):
    mine = tmp_path / ".plan.json.0123abcd.m2v-tmp"
    users = [
        tmp_path / ".notes.m2v-tmp",
        tmp_path / ".x.ZZZZZZZZ.m2v-tmp",
        tmp_path / ".plan.json.0123abcd.m2v-tmp.bak",
    ]
    for p in [mine, *users]:
        p.write_text("x")
    assert remove_temp_files(tmp_path) == 1
    assert not mine.exists() and all(p.exists() for p in users)


def test_no_float_for_a_huge_integer():
    from engine.errors import InputError
    from engine.files import check_number

    with pytest.raises(InputError, match="take is out of range"):
        check_number(10**400, "take", 0, 10, integer=True)
    assert check_number(np.int64(3).item(), "take", 0, 10, integer=True) == 3

"""The writer thread: frames encoded in parallel are still written, journaled and announced in order.

Frames in flight are bounded (the render thread waits: back-pressure), a
segment end's calls never wait for a frame slot, and an encoder's error
reaches the render thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest

from engine.progress import Collect
from engine.protocol import JOURNAL_FILE
from engine.store import writer as writer_mod
from engine.store.manifest import RenderStore
from engine.store.writer import ImageWriter

KEY = "a" * 64


def _store(tmp_path) -> RenderStore:
    store = RenderStore(tmp_path, {"status": "running"}, {}, 1)
    store.begin(0, KEY, 100)
    return store


def _frame(w: ImageWriter, store: RenderStore, i: int, rgb: np.ndarray) -> None:
    record = {"index": i, "file": f"{store.entries[KEY].folder}/frame_{i:05d}.png"}
    w.image(
        KEY,
        0,
        record,
        rgb,
        {"segment": 0, "index": i, "done": i + 1, "total": 100, "file": record["file"], "eta_s": 0.0},
    )


def _hold_encoder(monkeypatch) -> threading.Event:
    """Make every encode wait until the returned event is set."""
    gate = threading.Event()
    real = writer_mod.encode_image

    def held(rgb):
        gate.wait(10)
        return real(rgb)

    monkeypatch.setattr(writer_mod, "encode_image", held)
    return gate


def test_parallel_encoders_write_in_order(tmp_path, monkeypatch):
    real = writer_mod.encode_image

    def uneven(rgb):
        time.sleep(0.02 if int(rgb[0, 0, 0]) % 3 == 0 else 0.0)  # early frames finish last
        return real(rgb)

    monkeypatch.setattr(writer_mod, "encode_image", uneven)
    store, progress = _store(tmp_path), Collect()
    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(12)]
    with ImageWriter(store, progress, tmp_path / "state", maxsize=4, encoders=3) as w:
        for i, rgb in enumerate(frames):
            _frame(w, store, i, rgb)
    store.close()
    assert [e["index"] for e in progress.events if e["event"] == "image"] == list(range(12))
    lines = [json.loads(x) for x in (tmp_path / JOURNAL_FILE).read_text().splitlines()]
    assert [x["frame"]["index"] for x in lines if "frame" in x] == list(range(12))
    for i in range(12):
        rec = store.entries[KEY].frames[i]
        data = (tmp_path / rec["file"]).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["bytes"] == len(data)
    assert w.image_bytes == sum(store.entries[KEY].frames[i]["bytes"] for i in range(12))


def test_frames_in_flight_are_bounded_and_calls_never_wait(tmp_path, monkeypatch):
    gate = _hold_encoder(monkeypatch)
    store, progress = _store(tmp_path), Collect()
    rgb = np.zeros((8, 8, 3), np.uint8)
    with ImageWriter(store, progress, tmp_path / "state", maxsize=2, encoders=1) as w:
        _frame(w, store, 0, rgb)
        _frame(w, store, 1, rgb)
        for _ in range(20):  # a segment end's calls take no frame slot
            w.emit("warning", message="no wait")
        third = threading.Thread(target=_frame, args=(w, store, 2, rgb))
        third.start()
        third.join(0.3)
        assert third.is_alive()  # back-pressure: two frames are in flight
        gate.set()
        third.join(10)
        assert not third.is_alive()
    assert [e["index"] for e in progress.events if e["event"] == "image"] == [0, 1, 2]


def test_an_encoder_error_reaches_the_render_thread(tmp_path, monkeypatch):
    def broken(rgb):
        raise OSError("disk on fire")

    monkeypatch.setattr(writer_mod, "encode_image", broken)
    store = _store(tmp_path)
    w = ImageWriter(store, Collect(), tmp_path / "state", maxsize=2, encoders=2)
    with pytest.raises(OSError, match="disk on fire"), w:
        for i in range(10):  # never blocks: a dead writer keeps draining and freeing slots
            _frame(w, store, i, np.zeros((8, 8, 3), np.uint8))
            time.sleep(0.01)
    store.close()
    assert not (tmp_path / JOURNAL_FILE).exists() or "frame" not in (tmp_path / JOURNAL_FILE).read_text()


def test_a_writer_error_while_the_render_thread_waits_stops_it_at_once(tmp_path, monkeypatch):
    gate = _hold_encoder(monkeypatch)
    submitted = []
    store = _store(tmp_path)

    def full_disk(key, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "add_image", full_disk)
    w = ImageWriter(store, Collect(), tmp_path / "state", maxsize=1, encoders=1)
    real_submit = w._pool.submit
    monkeypatch.setattr(w._pool, "submit", lambda *a: submitted.append(1) or real_submit(*a))
    rgb = np.zeros((8, 8, 3), np.uint8)
    outcome = []

    def render_thread():
        try:
            _frame(w, store, 0, rgb)
            _frame(w, store, 1, rgb)  # blocks on the one slot until the writer fails frame 0
        except OSError as e:
            outcome.append(e)

    w.__enter__()
    t = threading.Thread(target=render_thread)
    t.start()
    t.join(0.3)
    assert t.is_alive()  # waiting for the slot
    gate.set()
    t.join(10)
    assert not t.is_alive()
    with pytest.raises(OSError):
        w.close()
    assert len(outcome) == 1 and outcome[0].errno == 28
    assert len(submitted) == 1  # frame 1 was never encoded: the error was raised as the slot came free
    assert not (tmp_path / JOURNAL_FILE).exists() or "frame" not in (tmp_path / JOURNAL_FILE).read_text()


def test_a_call_after_frames_sees_them_journaled_when_encoders_finish_out_of_order(tmp_path, monkeypatch):
    real = writer_mod.encode_image

    def late_first(rgb):
        time.sleep(0.05 if int(rgb[0, 0, 0]) == 0 else 0.0)
        return real(rgb)

    monkeypatch.setattr(writer_mod, "encode_image", late_first)
    store, progress = _store(tmp_path), Collect()
    seen = []
    with ImageWriter(store, progress, tmp_path / "state", maxsize=4, encoders=3) as w:
        for i in range(3):
            _frame(w, store, i, np.full((8, 8, 3), i, np.uint8))
        w.call(lambda: seen.append(sorted(store.entries[KEY].frames)))
        w.emit("warning", message="segment 0 done")
    store.close()
    assert seen == [[0, 1, 2]]
    events = [e["event"] for e in progress.events]
    assert events == ["image", "image", "image", "warning"]

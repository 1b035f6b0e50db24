"""The add-on <-> engine contract, without Blender: what the add-on reads is what the engine writes.

Two halves: a static read of the add-on's sources (every event name it
branches on and every field it takes from that event must be declared in
``engine/protocol.py``), and a live run of the engine whose every event must
carry the declared fields and feed the add-on's pure helpers exactly as the
exporter reads them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from engine import protocol
from tests.conftest import REPO, run_engine

ADDON = REPO / "m2v_blender"


def _is_event_name(node: ast.expr) -> bool:
    """``kind`` (the handlers' local) or ``ev["event"]``."""
    if isinstance(node, ast.Name):
        return node.id == "kind"
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ev"
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == "event"
    )


def _event_name(test: ast.expr, consts: dict[str, str]) -> str | None:
    """``kind == "image"``, ``ev["event"] == protocol.CLIENT_EXIT and ...`` -> the event's name."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        test = test.values[0]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    if not _is_event_name(test.left):
        return None
    right = test.comparators[0]
    if isinstance(right, ast.Constant) and isinstance(right.value, str):
        return right.value
    if isinstance(right, ast.Attribute) and isinstance(right.value, ast.Name) and right.value.id == "protocol":
        return consts.get(right.attr)
    return None


def _fields(node: ast.AST, var: str) -> set[str]:
    """Fields read from ``var`` (``var["x"]``, ``var.get("x")``) anywhere under ``node``."""
    out = set()
    for n in ast.walk(node):
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)
            and n.value.id == var
            and isinstance(n.slice, ast.Constant)
        ):
            out.add(n.slice.value)
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "get"
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == var
            and n.args
            and isinstance(n.args[0], ast.Constant)
        ):
            out.add(n.args[0].value)
    return out


def addon_reads() -> dict[str, set[str]]:
    """Event name -> fields the add-on reads from it, following ``ev`` into the add-on's own functions."""
    consts = {k: v for k, v in vars(protocol).items() if k.startswith("CLIENT_") and isinstance(v, str)}
    funcs: dict[str, ast.FunctionDef] = {}
    trees = []
    for path in ADDON.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        trees.append(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.FunctionDef):
                funcs[n.name] = n
    reads: dict[str, set[str]] = {}
    for tree in trees:
        for n in ast.walk(tree):
            if not isinstance(n, ast.If):
                continue
            name = _event_name(n.test, consts)
            if name is None:
                continue
            got = reads.setdefault(name, set())
            for stmt in n.body:
                got |= _fields(stmt, "ev")
                for call in ast.walk(stmt):
                    if isinstance(call, ast.Call) and any(isinstance(a, ast.Name) and a.id == "ev" for a in call.args):
                        fn = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
                        if fn in funcs:
                            f = funcs[fn]
                            got |= _fields(f, "ev")
                            for inner in ast.walk(f):  # one level further (place_segment -> strip_files)
                                if isinstance(inner, ast.Call) and any(
                                    isinstance(a, ast.Name) and a.id == "ev" for a in inner.args
                                ):
                                    g = getattr(inner.func, "attr", getattr(inner.func, "id", None))
                                    if g in funcs:
                                        got |= _fields(funcs[g], "ev")
    return reads


def test_every_event_and_field_the_addon_reads_is_in_the_protocol():
    reads = addon_reads()
    client = {protocol.CLIENT_EXIT: {"code"}, protocol.CLIENT_OUTPUT: {"text"}}
    assert {"start", "image", "segment_end", "info", protocol.CLIENT_EXIT} <= set(reads)
    for name, fields in reads.items():
        declared = client.get(name, set(protocol.EVENTS.get(name, ())))
        assert name in client or name in protocol.EVENTS, (
            f"the add-on waits for an event the engine never sends: {name}"
        )
        assert fields - {"event"} <= declared, (name, fields - declared)
    # What the strips are built from: the segment's span, its folder, its files.
    assert {"start", "end", "dir", "files", "key", "segment"} <= reads["segment_end"]


def test_a_renamed_field_is_caught(monkeypatch):
    """The check above would fail if the engine renamed a field the add-on reads (it is not vacuous)."""
    fields = tuple(f if f != "files" else "frames" for f in protocol.EVENTS["segment_end"])
    monkeypatch.setitem(protocol.EVENTS, "segment_end", fields)
    with pytest.raises(AssertionError):
        test_every_event_and_field_the_addon_reads_is_in_the_protocol()


def test_engine_events_carry_the_declared_fields_and_feed_the_addon(tmp_path, sectioned_wav):
    from engine.store.export import frame_schedule
    from m2v_blender.timeline import StripTiming, strip_files

    plan = tmp_path / "plan.json"
    proc = run_engine("--events", "plan", str(sectioned_wav), "--boundaries", "0,3.2,7.92,12", "-o", str(plan))
    assert proc.returncode == 0, proc.stderr
    planned = [protocol.check_event(json.loads(line)) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in planned] == ["estimate", "planned"] and planned[1]["output"] == str(plan)
    assert planned[0]["steps"] == planned[1]["steps"] and planned[0]["seconds"] > 0
    doc = json.loads(plan.read_text())
    protocol.check_document(doc, protocol.PLAN_KIND, protocol.PLAN_VERSION)
    out = tmp_path / "lay"
    proc = run_engine("render", str(plan), "--out", str(out), "--layout", "--size", "32", "32")
    assert proc.returncode == 0, proc.stderr
    events = [protocol.check_event(json.loads(line)) for line in proc.stdout.splitlines()]
    ends = [e for e in events if e["event"] == "segment_end"]
    assert [e["segment"] for e in ends] == [0, 1, 2]
    # A 25 fps timeline whose frame 0 is song time 0 (cuts on frames, as markers are): the add-on's strip
    # frames show what the video shows.
    timing = StripTiming(frame_start=0, frame_final_start=0, frame_final_end=300, fps=25.0)
    segs = [{"start": e["start"], "end": e["end"], "frames": [{"file": f} for f in e["files"]]} for e in ends]
    video = frame_schedule(segs, (0.0, 12.0), 25.0)
    strips = [f for e in ends for f in strip_files(e, timing, timing.frame_at(e["start"]), timing.frame_at(e["end"]))]
    assert strips == video
    for e in ends:
        assert Path(e["dir"]).is_dir() and all((Path(e["dir"]) / f).is_file() for f in e["files"])
        assert len(e["slots"]) == len(e["files"]) and e["slots"][0][0] == e["start"]


def test_errors_reach_the_addon_as_one_event(tmp_path):
    proc = run_engine("--events", "plan", str(tmp_path / "missing.wav"), "--boundaries", "0,4")
    assert proc.returncode == protocol.EXIT_INPUT
    events = [protocol.check_event(json.loads(line)) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error"] and "missing.wav" in events[0]["message"]
    assert events[0]["code"] == protocol.EXIT_INPUT
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr


def test_documents_are_checked_for_kind_and_version():
    with pytest.raises(ValueError, match="version 1; this version of m2v reads version"):
        protocol.check_document({"kind": protocol.MANIFEST_KIND, "version": 1}, protocol.MANIFEST_KIND, 2)
    with pytest.raises(ValueError, match="not an m2v-plan document"):
        protocol.check_document({"kind": "m2v-render", "version": 2}, protocol.PLAN_KIND, protocol.PLAN_VERSION)

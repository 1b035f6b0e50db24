"""Latent chains (engine.plan.chains) rendered here and on a local Ray instance (engine.render.jobs.ray_render).

One Ray instance for the module (``ray.init(num_cpus=2)``, a few seconds to start), shut down at the end;
the engine's command-line renders join it by its address. Frames are compared byte for byte; every
render runs torch with one thread, as each Ray worker does (``--ray-cpus 1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from engine.analysis.synth import Section, synth_song
from engine.errors import InputError
from engine.files import write_json_atomic
from engine.plan.build import plan_from_boundaries
from engine.plan.chains import chain_starts, cut_change, strongest_cuts
from tests.conftest import REPO, write_song
from tests.small_models import render_cmd

BOUNDS = [0.0, 1.5, 3.0, 4.5, 6.0, 8.0]


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("chains")
    s = synth_song([Section(4, 120, "rock", "soft", 0.3), Section(4, 120, "metal", "bright", 0.9)], seed=5)
    wav = write_song(d / "song.wav", s.y, s.sr)
    lrc = d / "song.lrc"
    lrc.write_text("[00:03.10]a glass lighthouse\n", encoding="utf-8")
    plan = plan_from_boundaries(wav, BOUNDS, preset="draft", lyrics_path=lrc, min_rate=4, max_rate=4, fps=2)
    path = d / "plan.json"
    write_json_atomic(plan, path)
    return path


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    env.pop("M2V_FAULT", None)
    return env


def _cmd(plan_path, out, small_models, *extra, every="0"):
    return render_cmd(plan_path, out, small_models, "--snapshot-every", every, *extra, cutouts=4, seed=3)


def _render(plan_path, out, small_models, *extra, every="0", env=None):
    return subprocess.run(
        _cmd(plan_path, out, small_models, *extra, every=every),
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=600,
    )


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _frames(out):
    m = _manifest(out)
    assert m["status"] == "done"
    files = [f for s in m["segments"] for f in m["cache"][s["key"]]["frames"]]
    return [(f["file"], (out / f["file"]).read_bytes()) for f in files]


def _events(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def today(plan_path, small_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("today") / "out"
    proc = _render(plan_path, out, small_models, every="1000")
    assert proc.returncode == 0, proc.stderr
    return _frames(out), _manifest(out)


@pytest.fixture(scope="module")
def three_chains(plan_path, small_models, tmp_path_factory):
    """The song in three chains, rendered here, one after another."""
    out = tmp_path_factory.mktemp("three") / "out"
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6", every="1000")
    assert proc.returncode == 0, proc.stderr
    return _frames(out), _manifest(out)


# ---------------------------------------------------------------- choosing the chains


def test_strongest_cuts_follow_the_change_in_the_plan(plan_path):
    from engine.plan.build import load_plan

    plan = load_plan(plan_path)
    change = cut_change(plan)
    assert len(change) == len(plan["segments"]) - 1
    starts = strongest_cuts(plan, 3)
    assert starts[0] == 0 and len(starts) == 3
    chosen = [change[k - 1] for k in starts[1:]]
    others = [c for k, c in enumerate(change, 1) if k not in starts]
    assert min(chosen) >= max(others)
    assert strongest_cuts(plan, 2) == [0, 1 + change.index(max(change))]
    assert chain_starts(plan, chains=1) == [0]
    assert chain_starts(plan, chain_at=[6.0, 3.0]) == [0, 2, 4]
    with pytest.raises(InputError, match="--chain-at 2.9 is not a cut"):
        chain_starts(plan, chain_at=[2.9])
    with pytest.raises(InputError, match="--chain-at 0 is not a cut"):
        chain_starts(plan, chain_at=[0.0])
    with pytest.raises(InputError, match="at most 5 chains"):
        chain_starts(plan, chains=6)
    plan["segments"][3]["new_chain"] = True
    assert chain_starts(plan) == [0, 3]


def test_bad_chain_flags_exit_2_naming_the_value(plan_path, small_models, tmp_path):
    for extra, words in [
        (("--chain-at", "2.9"), "--chain-at 2.9 is not a cut"),
        (("--chain-at", "3,x"), "--chain-at takes song seconds"),
        (("--chain-at", "nan"), "--chain-at nan"),
        (("--chains", "0"), "--chains"),
        (("--chains", "2", "--chain-at", "3"), "give one of them"),
    ]:
        proc = _render(plan_path, tmp_path / "out", small_models, *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, (extra, proc.stderr)


# ---------------------------------------------------------------- chains here


def test_one_chain_is_todays_render(plan_path, small_models, today, tmp_path):
    out = tmp_path / "out"
    proc = _render(plan_path, out, small_models, "--chains", "1", every="1000")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == today[0]
    assert [s["key"] for s in _manifest(out)["segments"]] == [s["key"] for s in today[1]["segments"]]


def test_chains_start_afresh_and_a_moved_start_rerenders_only_its_chains(
    plan_path, small_models, today, three_chains, tmp_path
):
    frames, m = three_chains
    keys, old = [s["key"] for s in m["segments"]], [s["key"] for s in today[1]["segments"]]
    assert keys[:2] == old[:2] and keys[2] != old[2]  # the first chain is today's render
    assert frames[: len(_seg_frames(m, 2, before=True))] == today[0][: len(_seg_frames(m, 2, before=True))]
    assert frames != today[0]
    assert m["chains"] == [0.0, 3.0, 6.0]
    # Moving the second chain start from 3 s to 4.5 s: the first chain keeps its frames, the last its too.
    out = tmp_path / "out"
    for f, data in frames:  # start from the three-chain folder
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        (out / f).write_bytes(data)
    (out / "manifest.json").write_text(json.dumps(m))
    proc = _render(plan_path, out, small_models, "--chain-at", "4.5,6")
    assert proc.returncode == 0, proc.stderr
    ev = [e for e in _events(proc.stdout) if e["event"] == "segment_end"]
    assert [e["segment"] for e in ev if e["reused"]] == [0, 1, 4]
    moved = [s["key"] for s in _manifest(out)["segments"]]
    assert moved[:2] == keys[:2] and moved[4] == keys[4] and moved[2:4] != keys[2:4]


def _seg_frames(m, k, before=False):
    segs = m["segments"][:k] if before else [m["segments"][k]]
    return [f for s in segs for f in m["cache"][s["key"]]["frames"]]


# ---------------------------------------------------------------- chains on Ray


def test_ray_render_equals_the_local_chains(plan_path, small_models, three_chains, ray_address, tmp_path):
    out = tmp_path / "out"
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6", "--ray", ray_address, "--ray-workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == three_chains[0]
    ev = _events(proc.stdout)
    names = [e["event"] for e in ev]
    assert names[0] == "start" and names[-1] == "done" and "ray_start" in names
    assert sorted(e["chain"] for e in ev if e["event"] == "chain_end") == [0, 2, 4]
    assert len({e["pid"] for e in ev if e["event"] == "chain_start"}) == 2
    assert [e["done"] for e in ev if e["event"] == "image"] == list(range(1, len(three_chains[0]) + 1))


def test_a_killed_worker_has_its_chain_retried(plan_path, small_models, three_chains, ray_address, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cmd(plan_path, out, small_models, "--chain-at", "3,6", "--ray", ray_address, "--ray-workers", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    seen, killed = [], None
    for line in proc.stdout:
        ev = json.loads(line)
        seen.append(ev)
        if ev["event"] == "chain_start" and ev["chain"] == 2 and killed is None:
            pid = ev["pid"]
        if ev["event"] == "image" and ev["segment"] == 2 and ev["index"] == 1 and killed is None:
            os.kill(pid, signal.SIGKILL)  # the worker, mid-chain (a Ray worker process this module started)
            killed = pid
    proc.wait(timeout=300)
    assert proc.returncode == 0, proc.stderr.read()
    assert killed is not None
    retry = [e for e in seen if e["event"] == "chain_retry"]
    assert retry and retry[0]["chain"] == 2
    assert _frames(out) == three_chains[0]
    pids = [e["pid"] for e in seen if e["event"] == "chain_start" and e["chain"] == 2]
    assert pids[0] == killed and len(pids) == 2 and pids[1] != killed  # the restarted worker took it up


@pytest.mark.parametrize("again", [("--ray",), ()], ids=["ray", "local"])
def test_sigterm_to_the_driver_cancels_and_the_same_command_completes(
    plan_path, small_models, three_chains, ray_address, tmp_path, again
):
    out = tmp_path / "out"
    ray_flags = ("--ray", ray_address, "--ray-workers", "2")
    proc = subprocess.Popen(
        _cmd(plan_path, out, small_models, "--chain-at", "3,6", *ray_flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "image" and ev["done"] >= 4:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    proc.wait(timeout=300)
    assert proc.returncode == 3, proc.stderr.read()
    assert _events(rest)[-1]["event"] == "cancelled"
    assert _manifest(out)["status"] == "cancelled"
    flags = ray_flags if again else ()
    proc = _render(plan_path, out, small_models, "--chain-at", "3,6", *flags)
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == three_chains[0]


def test_ray_without_ray_exits_2_and_says_how_to_add_it(plan_path, small_models, tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no ray here (test shim)')\n")
    env = _env()
    env["PYTHONPATH"] = f"{shim.parent}{os.pathsep}{REPO}"
    t0 = time.monotonic()
    proc = _render(plan_path, tmp_path / "out", small_models, "--chains", "2", "--ray", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "install/setup.py --env ENV --ray" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert time.monotonic() - t0 < 60


def test_new_chain_marks_in_segment_settings_and_plans(plan_path, tmp_path):
    from engine.plan.build import load_plan
    from engine.plan.schema import validate_plan
    from engine.plan.segment_settings import apply_segment_settings, load_segment_settings

    doc = {"kind": "m2v-segment-settings", "version": 1, "segments": [{"start": 4.5, "new_chain": True}]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    plan = load_plan(plan_path)
    assert apply_segment_settings(plan, load_segment_settings(path)) == []
    assert [s.get("new_chain", False) for s in plan["segments"]] == [False, False, False, True, False]
    assert chain_starts(plan) == [0, 3]
    doc["segments"][0]["new_chain"] = "yes"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="entry 0 new_chain must be true or false"):
        load_segment_settings(path)
    plan["segments"][2]["new_chain"] = 1
    with pytest.raises(InputError, match="segment 2 new_chain must be true or false"):
        validate_plan(plan, plan_path)

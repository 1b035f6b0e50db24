"""Hand-off to other editors (issue 29): ``export --timeline`` read back by OpenTimelineIO and its adapters,
MLT's ``melt`` playing the Kdenlive export, ``plan --boundaries-from`` equal to ``--boundaries``, bad inputs,
a render killed half-way. Layout renders (no models): seconds each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.analysis.synth import Section, synth_song
from engine.protocol import image_at
from tests.conftest import REPO, run_engine, write_song

otio = pytest.importorskip("opentimelineio")

RATES = {"23.976": Fraction(24000, 1001), "25": Fraction(25), "29.97": Fraction(30000, 1001)}
#: Cuts nowhere near a frame at any of the rates (the rounding is part of what is checked).
BOUNDS = [0.0, 1.3, 2.71, 4.2, 5.555, 7.9]
LYRICS = "[00:00.40]a red balloon\n[00:02.00]over the sea\n[00:04.90]and the lighthouse, far away\n"
SIZE = ("128", "72")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("handoff_song")
    s = synth_song([Section(4, 120, "rock", "soft", 0.4), Section(4, 120, "metal", "bright", 0.9)], seed=1)
    wav = write_song(d / "song.wav", s.y, s.sr)
    lrc = d / "song.lrc"
    lrc.write_text(LYRICS, encoding="utf-8")
    settings = d / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "kind": "m2v-segment-settings",
                "version": 1,
                "segments": [{"start": 2.71, "prompt": "a paper boat", "take": 3}, {"start": 5.555, "take": 1}],
            }
        ),
        encoding="utf-8",
    )
    return wav, lrc, settings


def _plan_args(song, bounds, fps: str) -> list[str]:
    wav, lrc, settings = song
    b = ",".join(f"{x:.4f}" for x in bounds)
    return [str(wav), "--boundaries", b, "--lyrics", str(lrc), "--segment-settings", str(settings)] + _rate_args(fps)


def _rate_args(fps: str) -> list[str]:
    return ["--preset", "draft", "--min-rate", "2", "--max-rate", "30", "--fps", fps, "--no-estimate"]


def _render(folder: Path, song, bounds, fps: str = "24", env: dict | None = None) -> dict:
    """A plan (``folder/plan.json``) and its layout render (``folder/render``)."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = run_engine("plan", *_plan_args(song, bounds, fps), "-o", str(folder / "plan.json"))
    assert proc.returncode == 0, proc.stderr
    cmd = [sys.executable, "-m", "engine", "render", str(folder / "plan.json"), "--out", str(folder / "render")]
    cmd += ["--layout", "--size", *SIZE]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env or _env(), timeout=300)
    if env is None:
        assert proc.returncode == 0, proc.stderr
    return {"plan": json.loads((folder / "plan.json").read_text()), "out": folder / "render", "dir": folder}


def _env(**more) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("M2V_FAULT", None)
    return {**env, **more}


@pytest.fixture(scope="module")
def rendered(song, tmp_path_factory):
    return _render(tmp_path_factory.mktemp("handoff") / "a", song, BOUNDS)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _frames(rate: Fraction, t: float, song_frame: Fraction = Fraction(0)) -> int:
    """The timeline frame nearest song time ``t`` (where a cut at ``t`` lands)."""
    return round(song_frame + Fraction(t) * rate)


def _time(rate: Fraction, f: int, song_frame: Fraction = Fraction(0)) -> float:
    return float((f - song_frame) / rate)


def _export(render: dict, name: str, fps: str, *extra: str):
    from engine.store.timeline_export import export_timeline

    out = render["dir"] / name
    kw = dict(zip(("song_frame", "start_frame"), extra)) if extra else {}
    return out, export_timeline(render["out"], out, fps, **kw)


def _video(tl):
    return next(t for t in tl.tracks if t.kind == otio.schema.TrackKind.Video)


def _clip_spans(track) -> list[tuple[int, int]]:
    """(first frame, frames) of every clip on a track, at the track's rate."""
    out = []
    for i, item in enumerate(track):
        if isinstance(item, otio.schema.Clip):
            r = track.range_of_child_at_index(i)
            out.append((r.start_time.value, r.duration.value))
    return out


def _expected_spans(plan: dict, rate: Fraction) -> list[tuple[int, int]]:
    out = []
    for s in plan["segments"]:
        a, b = _frames(rate, s["start"]), _frames(rate, s["end"])
        out.append((a, b - a))
    return out


# ---------------------------------------------------------------- OpenTimelineIO, read back by itself


@pytest.mark.parametrize("name", sorted(RATES))
def test_otio_round_trip_is_frame_exact_with_markers_and_metadata(rendered, name):
    rate = RATES[name]
    plan, out = rendered["plan"], rendered["out"]
    if name == "29.97":  # one rate through the command line, as users run it
        path = rendered["dir"] / "cli.otio"
        proc = run_engine("export", str(out), "--timeline", str(path), "--fps", "30000/1001")
        assert proc.returncode == 0, proc.stderr
        assert "OpenTimelineIO, 5 clips, 0 gaps" in proc.stdout
    else:
        path, _ = _export(rendered, f"t{name}.otio", name)
    tl = otio.adapters.read_from_file(str(path))
    video = _video(tl)
    assert video.name == "m2v" and all(isinstance(c, otio.schema.Clip) for c in video)
    assert tl.global_start_time.value == 0 and tl.global_start_time.rate == float(rate)
    # Every clip's range: the frames of its segment at the timeline rate, exactly (no drift at 23.976/29.97).
    spans = _clip_spans(video)
    assert spans == _expected_spans(plan, rate)
    assert all(float(v).is_integer() for s in spans for v in s)
    assert video.range_of_child_at_index(0).start_time.rate == float(rate)
    man = _manifest(out)
    settings = man["settings"]
    for seg, m_seg, clip in zip(plan["segments"], man["segments"], video):
        info = clip.metadata["m2v"]
        lyric = " / ".join(p["text"] for p in seg["parts"] if p["kind"] == "lyric")
        assert info["key"] == m_seg["key"] and info["take"] == seg["take"] and info["prompt"] == seg["prompt"]
        assert info["lyric"] == (lyric or None) and info["seed"] == settings["seed"] == 0
        assert info["preset"] == plan["analysis"]["preset"] == "draft"
        # The image sequence is the segment's PNGs at their own rate ...
        ref = clip.media_reference
        assert isinstance(ref, otio.schema.ImageSequenceReference)
        assert ref.rate == pytest.approx(seg["images"] / (seg["end"] - seg["start"]), rel=1e-12)
        frames = man["cache"][m_seg["key"]]["frames"]
        assert [ref.target_url_for_image_number(i) for i in range(seg["images"])] == [
            (out / f["file"]).resolve().as_uri() for f in frames
        ]
        # ... and each timeline frame shows the image whose slot holds its time (OTIO's own arithmetic). A
        # clip can start no earlier than its first image: when its segment starts in the second half of a
        # frame, the images may follow that much early.
        first, n = clip.range_in_parent().start_time.value, clip.range_in_parent().duration.value
        early = max(0.0, seg["start"] - _time(rate, int(first)))
        for j in range(int(n)):
            t = clip.source_range.start_time + otio.opentime.RationalTime(j, float(rate))
            got = ref.frame_for_time(t)
            want = image_at(_time(rate, int(first) + j), seg["start"], seg["end"], seg["images"])
            late = image_at(_time(rate, int(first) + j) + early, seg["start"], seg["end"], seg["images"])
            assert got in (want, late), (clip.name, j, got, want)
    # Markers: every cut (named as the add-on names them), every lyric line (its words), the prompt.
    marks = {(m.name, m.marked_range.start_time.value) for m in tl.tracks.markers}
    cuts = {(f"m2v S{k + 1:02d}", _frames(rate, s["start"])) for k, s in enumerate(plan["segments"])}
    lyrics = {(ly["text"], _frames(rate, ly["time"])) for ly in plan["lyrics"]}
    assert len(lyrics) == 3 and cuts | lyrics | {("prompt: a paper boat", _frames(rate, 2.71))} == marks
    kinds = {m.name: m.metadata["m2v"]["kind"] for m in tl.tracks.markers}
    assert kinds["over the sea"] == "lyric" and kinds["m2v S03"] == "cut"
    # The song on its own track over the rendered span, its source time the song's own.
    (song_clip,) = [c for t in tl.tracks if t.kind == "Audio" for c in t]
    assert song_clip.media_reference.target_url == Path(plan["song"]["path"]).resolve().as_uri()
    assert _clip_spans(next(t for t in tl.tracks if t.kind == "Audio")) == [
        (0, _frames(rate, BOUNDS[-1]) - _frames(rate, 0.0))
    ]
    assert list(tl.metadata["m2v"]["rate"]) == [rate.numerator, rate.denominator]


def test_otio_images_change_on_the_frame_their_slot_starts(song, tmp_path):
    """25 images a second on a 25 fps timeline, cuts on frames: every frame starts exactly on an image's slot,
    where OTIO's truncating arithmetic would show the image before without image_at's tolerance."""
    wav, lrc, _ = song
    d = tmp_path / "g"
    d.mkdir()
    proc = run_engine(
        "plan", str(wav), "--boundaries", "0,0.56,1.24,2.32", "--preset", "draft", "--min-rate", "26",
        "--max-rate", "30", "--fps", "25", "--no-estimate", "-o", str(d / "plan.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((d / "plan.json").read_text())
    assert [s["images"] for s in plan["segments"]] == [14, 17, 27]  # one image a frame
    proc = run_engine("render", str(d / "plan.json"), "--out", str(d / "render"), "--layout", "--size", *SIZE)
    assert proc.returncode == 0, proc.stderr
    path, _ = _export({"dir": d, "out": d / "render"}, "g.otio", "25")
    video = _video(otio.adapters.read_from_file(str(path)))
    for seg, clip in zip(plan["segments"], video):
        first, n = clip.range_in_parent().start_time.value, clip.range_in_parent().duration.value
        got = [
            clip.media_reference.frame_for_time(clip.source_range.start_time + otio.opentime.RationalTime(j, 25))
            for j in range(int(n))
        ]
        assert got == list(range(seg["images"])) and first == round(seg["start"] * 25)


# ---------------------------------------------------------------- FCP 7 XML, FCPXML, EDL, Kdenlive


def _read(path: Path, rate: Fraction | None = None):
    kw = {"rate": float(rate)} if path.suffix == ".edl" else {}
    got = otio.adapters.read_from_file(str(path), **kw)
    return got if isinstance(got, otio.schema.Timeline) else next(iter(got))


@pytest.mark.parametrize("name", ["25", "29.97"])
def test_fcp_xml_edl_and_kdenlive_read_back_with_the_same_cuts(rendered, name):
    rate = RATES[name]
    plan, out = rendered["plan"], rendered["out"]
    want = _expected_spans(plan, rate)
    keys = [s["key"] for s in _manifest(out)["segments"]]
    for suffix in (".xml", ".edl", ".kdenlive"):
        path, res = _export(rendered, f"t{name}{suffix}", name)
        assert res["clips"] == 5 and res["movies"] == 5 and not res["warnings"]
        tl = _read(path, rate)
        video = _video(tl)
        assert _clip_spans(video) == want, suffix
        movies = [
            Path(c.media_reference.target_url.replace("file://", "")) for c in video if isinstance(c, otio.schema.Clip)
        ]
        assert all(m.is_file() and m.parent.parent == out.resolve() for m in movies), suffix
        assert [m.name.split("-")[2] for m in movies] == [k[:16] for k in keys]  # named by key
        if suffix == ".xml":  # timeline markers and the logging fields Premiere shows
            marks = {(m.name, m.marked_range.start_time.value) for m in tl.tracks.markers}
            assert ("over the sea", _frames(rate, 2.0)) in marks and ("m2v S04", _frames(rate, 4.2)) in marks
            log = video[2].metadata["fcp_xml"]["logginginfo"]
            assert log["lognote"] == f"m2v key {keys[2]}" and log["shottake"] == "3"
            assert "prompt: a paper boat" in log["description"]
        if suffix == ".edl":  # markers become LOC lines on the clip they fall in; the key a comment
            locs = [
                (m.name, c.range_in_parent().start_time.value + m.marked_range.start_time.value)
                for c in video
                for m in c.markers
            ]
            assert ("OVER THE SEA", _frames(rate, 2.0)) in locs and ("M2V S02", _frames(rate, 1.3)) in locs
            assert f"SEGMENT KEY: {keys[1]}" in video[1].metadata["cmx_3600"]["comments"]
            assert [c.metadata["cmx_3600"]["reel"] for c in video] == [f"M2V{k:05d}" for k in range(1, 6)]
        if suffix == ".kdenlive":  # guides
            marks = {(m.name, m.marked_range.start_time.value) for m in tl.tracks.markers}
            assert ("and the lighthouse, far away", _frames(rate, 4.9)) in marks
    # Each movie holds the segment's images at the timeline rate, one per frame, as the image strips show them.
    seg = plan["segments"][1]
    frames = _manifest(out)["cache"][keys[1]]["frames"]
    import av

    with av.open(str(movies[1])) as c:
        got = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
        assert c.streams.video[0].average_rate == rate
    first = _frames(rate, seg["start"])
    assert len(got) == want[1][1]
    for j, pixels in enumerate(got):
        i = image_at(_time(rate, first + j), seg["start"], seg["end"], seg["images"])
        png = np.asarray(Image.open(out / frames[i]["file"]).convert("RGB")).astype(float)
        others = [k for k in range(seg["images"]) if k != i]
        err = np.abs(pixels - png).mean()
        assert err < 1.0 and all(
            err < np.abs(pixels - np.asarray(Image.open(out / frames[k]["file"]).convert("RGB"))).mean()
            for k in others[:3]
        )


def test_fcpxml_read_back_with_the_same_cuts(rendered):
    """The FCPX adapter writes exact rational times; its reader truncates to whole frame rates and rounds
    float products down (25 fps: 253 frames read as 252), so it reads cuts right at 24 and 30 fps only;
    m2v's own reader (``--boundaries-from``) reads the rational times exactly at every rate."""
    from engine.plan.edit_cuts import _fcpxml_edit

    plan = rendered["plan"]
    for name, rate in [("24", Fraction(24)), ("30", Fraction(30))]:
        path, res = _export(rendered, f"t{name}.fcpxml", name)
        tl = _read(path)
        assert _clip_spans(_video(tl)) == _expected_spans(plan, rate)
        marks = [(m.name, m.marked_range.start_time.value) for m in _video(tl)[1].markers]
        assert ("m2v S02", 0) in marks
        assert _video(tl)[0].media_reference.metadata["fcpx"]["note"].startswith("lyric: a red balloon | take 0")
    for name, rate in RATES.items():
        path, _ = _export(rendered, f"t{name}.fcpxml", name)
        edit = _fcpxml_edit(path.read_text(encoding="utf-8"), "song.wav", path)
        assert edit.edges == [Fraction(_frames(rate, b)) / rate for b in BOUNDS]
        assert edit.song_zero == 0
        head = path.read_text(encoding="utf-8")
        assert f'frameDuration="{rate.denominator}/{rate.numerator}s"' in head


# ---------------------------------------------------------------- movies: written once, reused by key


def test_segment_movies_are_written_once_and_reused_while_the_key_holds(rendered):
    out = rendered["out"]
    _, first = _export(rendered, "m1.xml", "25")
    movies = sorted(out.glob("seg_*/m2v-clip-*-25x1-*.mov"))
    assert len(movies) == 5 and first["movies"] == 5
    stamp = {m: (m.stat().st_ino, m.stat().st_mtime_ns) for m in movies}
    _export(rendered, "m2.fcpxml", "25")
    _export(rendered, "m3.edl", "25")
    assert {m: (m.stat().st_ino, m.stat().st_mtime_ns) for m in movies} == stamp
    assert sorted(out.glob("seg_*/m2v-clip-*-25x1-*.mov")) == movies
    # Another placement of the song on the timeline shows other images on some frames: other movies.
    _export(rendered, "m4.xml", "25", 0.5, 0)
    assert len(list(out.glob("seg_*/m2v-clip-*-25x1-*.mov"))) > 5


# ---------------------------------------------------------------- a render killed half-way


def _recorded(out: Path) -> dict[str, int]:
    """Images on record per segment key (the manifest's cache and the journal a killed render left)."""
    have = {k: len(e["frames"]) for k, e in _manifest(out)["cache"].items()}
    journal = out / "frames.jsonl"
    for line in journal.read_text().splitlines() if journal.exists() else []:
        rec = json.loads(line)
        if "frame" in rec:
            have[rec["key"]] = max(have.get(rec["key"], 0), rec["frame"]["index"] + 1)
    return have


def test_a_partial_render_exports_what_exists_with_gaps_and_a_warning(song, tmp_path):
    r = _render(tmp_path / "p", song, BOUNDS, env=_env(M2V_FAULT="journal.appended:15"))
    man = _manifest(r["out"])
    assert man["status"] == "running"  # SIGKILLed after its 15th journal line
    plan, rate = r["plan"], RATES["25"]
    have = [min(_recorded(r["out"]).get(s["key"], 0), s["images"]) for s in man["segments"]]
    images = [s["images"] for s in plan["segments"]]
    assert have[0] == images[0] and 0 < have[1] < images[1] and have[2:] == [0] * 3  # done, partial, missing
    out = tmp_path / "partial.otio"
    proc = run_engine("--events", "export", str(r["out"]), "--timeline", str(out), "--fps", "25")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["warning", "exported"]
    assert "not finished" in events[0]["message"] and "warning: the render is not finished" in proc.stderr
    assert events[1]["clips"] == 2 and events[1]["gaps"] == 4
    tl = otio.adapters.read_from_file(str(out))
    video = _video(tl)
    assert [type(i).__name__ for i in video] == ["Clip", "Clip", "Gap", "Gap", "Gap", "Gap"]
    # Segment 1's clip: the frames whose image exists; then gaps over the rest, to the song span's end.
    spans = _expected_spans(plan, rate)
    seg = plan["segments"][1]
    shown = [
        f
        for f in range(spans[1][0], spans[1][0] + spans[1][1])
        if image_at(_time(rate, f), seg["start"], seg["end"], seg["images"]) < have[1]
    ]
    assert 0 < len(shown) < spans[1][1] and shown[0] == spans[1][0]
    assert _clip_spans(video) == [spans[0], (spans[1][0], len(shown))]
    assert video.range_of_child_at_index(2).duration.value == spans[1][1] - len(shown)
    assert video.range_of_child_at_index(5).end_time_exclusive().value == _frames(rate, BOUNDS[-1])
    assert video[1].media_reference.available_range.duration.value == have[1]
    # The movie formats too: only finished images go into the movies.
    xml = tmp_path / "partial.xml"
    proc = run_engine("export", str(r["out"]), "--timeline", str(xml), "--fps", "25")
    assert proc.returncode == 0 and "2 clips, 4 gaps" in proc.stdout, proc.stderr
    assert _clip_spans(_video(_read(xml))) == _clip_spans(video)
    # Gaps are segments too: the cuts read back are the plan's, at the timeline's frames.
    proc = run_engine("plan", str(song[0]), "--boundaries-from", str(out), *_rate_args("24"))
    assert proc.returncode == 0, proc.stderr
    got = [s["start"] for s in json.loads(proc.stdout)["segments"]]
    assert got == [round(_frames(rate, b) / 25, 4) for b in BOUNDS[:-1]]


# ---------------------------------------------------------------- bad inputs


def _refused(proc, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(rendered, song, tmp_path):
    out, plan_path, wav = rendered["out"], rendered["dir"] / "plan.json", song[0]
    target = tmp_path / "o" / "edit.otio"
    (tmp_path / "empty").mkdir()
    # Not a render: an empty folder, a missing one, a file.
    _refused(run_engine("export", str(tmp_path / "empty"), "--timeline", str(target)), "no render here")
    _refused(run_engine("export", str(tmp_path / "nope"), "--timeline", str(target)), "not a folder")
    _refused(run_engine("export", str(wav), "--timeline", str(target)), "not a folder")
    # An unknown extension, before anything is read.
    _refused(run_engine("export", str(out), "--timeline", str(tmp_path / "o" / "edit.mov")), "unknown timeline format")
    # Outputs naming an input: the song, the manifest, the plan (as links), a segment's folder.
    os.link(wav, tmp_path / "song-link.otio")
    _refused(run_engine("export", str(out), "--timeline", str(tmp_path / "song-link.otio")), "names the song")
    (tmp_path / "manifest.xml").symlink_to(out / "manifest.json")
    _refused(run_engine("export", str(out), "--timeline", str(tmp_path / "manifest.xml")), "render manifest")
    os.link(plan_path, tmp_path / "plan-link.edl")
    _refused(
        run_engine("export", str(out), "--timeline", str(tmp_path / "plan-link.edl"), "--plan", str(plan_path)),
        "names the plan",
    )
    seg = next(out.glob("seg_0000_*"))
    _refused(run_engine("export", str(out), "--timeline", str(seg / "x.otio")), "one of the render's own files")
    # A plan that is not the render's, a bad rate, timeline flags with -o.
    other = tmp_path / "other.json"
    proc = run_engine("plan", *_plan_args(song, [0.0, 2.0, 4.0], "24"), "-o", str(other))
    assert proc.returncode == 0, proc.stderr
    _refused(run_engine("export", str(out), "--timeline", str(target), "--plan", str(other)), "not the render's")
    for bad in ("0", "abc", "1/0", "nan", "500"):
        _refused(run_engine("export", str(out), "--timeline", str(target), "--fps", bad), "--fps")
    _refused(run_engine("export", str(out), "-o", str(tmp_path / "v.mp4"), "--song-frame", "3"), "--timeline")
    assert not (tmp_path / "o").exists() and not (tmp_path / "v.mp4").exists()
    # --boundaries-from: an unknown format, a file that is not that format, no video clip, cuts past the song,
    # the edit named as the output, both sources of cuts.
    plan_out = tmp_path / "p.json"

    def plan_from(edit, *more):
        return run_engine(
            "plan", str(wav), "--boundaries-from", str(edit), *_rate_args("24"), "-o", str(plan_out), *more
        )

    (tmp_path / "cuts.txt").write_text("0,1,2\n")
    _refused(plan_from(tmp_path / "cuts.txt"), "unknown edit format")
    (tmp_path / "junk.otio").write_text("{not json")
    _refused(plan_from(tmp_path / "junk.otio"), "cannot be read as a .otio edit")
    (tmp_path / "junk.xml").write_text("<html><body>hello</body></html>")
    _refused(plan_from(tmp_path / "junk.xml"), "cannot be read as a .xml edit")
    (tmp_path / "junk.fcpxml").write_text("<fcpxml version='1.8'><resources/></fcpxml>")
    _refused(plan_from(tmp_path / "junk.fcpxml"), "no project with a spine")
    empty = otio.schema.Timeline(name="empty")
    empty.tracks.append(otio.schema.Track(kind=otio.schema.TrackKind.Video))
    otio.adapters.write_to_file(empty, str(tmp_path / "empty.otio"))
    _refused(plan_from(tmp_path / "empty.otio"), "no video track with a clip")
    long = otio.schema.Timeline(name="long")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    rt = otio.opentime.RationalTime
    track.append(otio.schema.Clip(name="a", source_range=otio.opentime.TimeRange(rt(0, 25), rt(25 * 60, 25))))
    long.tracks.append(track)
    otio.adapters.write_to_file(long, str(tmp_path / "long.otio"))
    _refused(plan_from(tmp_path / "long.otio"), "the edit's cuts do not fit the song", "past the song's end")
    _refused(plan_from(tmp_path / "long.otio", "--plot", str(tmp_path / "long.otio")), "names the edit")
    proc = run_engine("plan", str(wav), "--boundaries", "0,1", "--boundaries-from", str(tmp_path / "long.otio"))
    assert proc.returncode == 2 and "not allowed with" in proc.stderr
    assert not plan_out.exists()


# ---------------------------------------------------------------- back in: --boundaries-from


def test_boundaries_from_every_format_equals_the_same_boundaries(song, tmp_path):
    """Cuts on the 23.976 frame grid (to 0.1 ms, as the add-on passes them) come back exactly, the song
    placed anywhere on the timeline (its clip places the cuts; an EDL has none: time 0 is the song's)."""
    rate = RATES["23.976"]
    bounds = [round(float(f / rate), 4) for f in (0, 31, 65, 100, 133, 188)]
    fps = repr(float(rate))
    r = _render(tmp_path / "b", song, bounds, fps)
    original = r["plan"]
    assert [s["start"] for s in original["segments"]] == bounds[:-1]
    for suffix in (".otio", ".xml", ".fcpxml", ".edl", ".kdenlive"):
        for song_frame, start_frame in ((0, 0), (1037, 1001)):
            if suffix == ".edl" and song_frame:
                continue
            path, _ = _export(r, f"b{song_frame}{suffix}", "24000/1001", song_frame, start_frame)
            proc = run_engine(
                "plan", *_plan_args(song, bounds, fps)[:1], "--boundaries-from", str(path),
                *_plan_args(song, bounds, fps)[3:],
            )  # fmt: skip
            assert proc.returncode == 0, (suffix, proc.stderr)
            assert json.loads(proc.stdout) == original, (suffix, song_frame)
            assert ("time 0 is taken as the song's start" in proc.stderr) == (suffix == ".edl")


# ---------------------------------------------------------------- a real external reader: MLT's melt


MELT_PROFILES = {"25": "atsc_1080p_25", "23.976": "atsc_1080p_2398"}


@pytest.mark.skipif(shutil.which("melt") is None, reason="melt (MLT) is not installed: install/setup.py --dev adds it")
@pytest.mark.parametrize("name", sorted(MELT_PROFILES))
def test_melt_plays_the_kdenlive_export_frame_for_frame(rendered, name, tmp_path):
    """MLT (Kdenlive's engine) decodes the segment movies and plays the timeline; every frame it renders is
    the image the timeline should show then. melt needs the timeline's profile named: it reads the file's
    clock times before the profile the file holds (without it, at 25 fps)."""
    from engine.store.timeline_export import Clock, parse_rate, segment_clips

    rate = RATES[name]
    path, _ = _export(rendered, f"melt{name}.kdenlive", name)
    out = rendered["out"]
    _, clips = segment_clips(out, Clock(parse_rate(name)), None)
    expect = [c.rendered[i]["file"] for c in clips for i in c.shown]
    assert len(expect) == _frames(rate, BOUNDS[-1])
    frames = tmp_path / "melt"
    frames.mkdir()
    cmd = ["melt", "-profile", MELT_PROFILES[name], str(path), f"out={len(expect) - 1}"]
    cmd += ["-consumer", f"avformat:{frames}/f_%05d.png", "vcodec=png", f"width={SIZE[0]}", f"height={SIZE[1]}"]
    proc = subprocess.run(cmd + ["real_time=-1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = sorted(frames.glob("f_*.png"))
    assert len(got) == len(expect)
    images = {f: np.asarray(Image.open(out / f).convert("RGB")).astype(float) for f in set(expect)}
    for k, (png, want) in enumerate(zip(got, expect)):
        pixels = np.asarray(Image.open(png).convert("RGB")).astype(float)
        nearest = min(images, key=lambda f: ((pixels - images[f]) ** 2).mean())
        assert nearest == want, (k, nearest, want)

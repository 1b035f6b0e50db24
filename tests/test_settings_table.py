"""The settings table: one row is a setting everywhere (flag, parsing, checks, RenderSettings, add-on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from engine.settings_table import SETTINGS, per_segment_fields, render_fields
from tests.conftest import REPO
from tests.test_addon import blender, blender_python, built  # noqa: F401 - fixtures

ROW = (
    'Setting("test_knob", "--test-knob", "float", 0.25, lo=0, hi=1, help="a knob a test added", '
    'ui=UI("Test Knob", hi=0.5, when=("model",)))'
)

ENGINE = f"""
import contextlib, io, json
import engine.settings_table as t
from engine.settings_table import UI, Setting
t.SETTINGS = t.SETTINGS + ({ROW},)
from engine.cli.commands import main
from engine.cli.parser import build_parser
from engine.errors import InputError
from engine.settings import RenderSettings

parser = build_parser()
text = io.StringIO()
with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
    parser.parse_args(["render", "--help"])
s = RenderSettings.from_args(parser.parse_args(["render", "p.json", "--out", "o", "--layout", "--test-knob", "0.5"]), "draft")
try:
    RenderSettings(test_knob=2.0)
    error = None
except InputError as e:
    error = str(e)
with contextlib.redirect_stderr(io.StringIO()):
    code = main(["render", "p.json", "--out", "o", "--test-knob", "7"])
print(json.dumps({{"help": "--test-knob" in text.getvalue(), "value": s.test_knob, "default": RenderSettings().test_knob,
                  "error": error, "code": code, "recorded": s.saved().get("test_knob")}}))
"""


def test_a_new_row_is_a_flag_a_check_and_a_render_setting():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", ENGINE], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["help"] and got["value"] == 0.5 and got["default"] == 0.25 and got["recorded"] == 0.5
    assert got["error"] == "--test-knob must be at least 0 and at most 1, got 2.0"
    assert got["code"] == 2


def test_table_keeps_the_recorded_settings_and_their_order():
    # The cache keys hash the settings in this order under these names: a reorder or rename re-renders everything.
    from engine.settings import RenderSettings

    names = list(RenderSettings().saved())
    assert names[:6] == ["width", "height", "cutouts", "cut_method", "cut_pow", "lr"]
    # One field that is not a row: the keyframed rows' curves (their per-image values enter the keys instead).
    assert [n for n, _ in render_fields()] + ["curves"] == list(RenderSettings().__dataclass_fields__)
    assert "footage" in per_segment_fields() and "shift" in per_segment_fields() and "seed" not in per_segment_fields()


def test_cut_method_is_an_alias_of_cutout_method():
    from engine.cli.parser import build_parser

    p = build_parser()
    old = p.parse_args(["render", "p.json", "--out", "o", "--cut-method", "crops"])
    new = p.parse_args(["render", "p.json", "--out", "o", "--cutout-method", "crops"])
    assert old.cutout_method == new.cutout_method == "crops"


def test_presets_and_choices_agree():
    from engine.protocol import PRESETS
    from engine.settings_table import PRESET_CHOICES

    assert set(PRESET_CHOICES) == {"auto", *PRESETS}
    for row in SETTINGS:
        if row.preset == "look":
            assert all(row.name in p for p in PRESETS.values()), row.name
        assert not row.choices or row.default in (None, *row.choices), row.name


def test_a_new_row_is_an_addon_property_and_flag(tmp_path):
    pytest.importorskip("bpy")
    from tests.test_addon import blender

    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, str(REPO / "install" / "build_extension.py"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    zip_path = next(out.glob("m2v-*.zip"))
    script = f"""
        import importlib.util
        import bpy
        spec = importlib.util.spec_from_file_location("m2v_engine_settings_table", {str(REPO / "engine" / "settings_table.py")!r})
        t = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = t
        spec.loader.exec_module(t)
        UI, Setting = t.UI, t.Setting
        t.SETTINGS = t.SETTINGS + ({ROW},)
        name = install({str(zip_path)!r})
        st = bpy.context.scene.m2v
        rna = st.bl_rna.properties["test_knob"]
        flags = sys.modules[name + ".flags"]
        emit(default=st.test_knob, hi=rna.hard_max, label=rna.name,
             model=flags.setting_args(st, "render", {{"model"}}), layout=flags.setting_args(st, "render", set()),
             analyze=flags.setting_args(st, "analyze", {{"model"}}))
    """
    (got,) = blender(textwrap.dedent(script), tmp_path)
    assert got["default"] == 0.25 and got["hi"] == 0.5 and got["label"] == "Test Knob"
    assert got["model"][-2:] == ["--test-knob", "0.25"]
    assert "--test-knob" not in got["layout"] and "--test-knob" not in got["analyze"]


def test_rows_carry_optional_values_job_and_analysis_settings(monkeypatch, capsys):
    # The shapes other settings take: an optional-value flag (like --ray [ADDRESS]), an analysis choice (like
    # --intensity) limited to the commands that cut (scenes: analyze and run).
    import engine.settings_table as t
    from engine.cli.parser import build_parser

    rows = (
        t.Setting("cluster", "--cluster", "str", None, nargs="?", const="auto", scopes=("job",), help="a cluster"),
        t.Setting("loudness", "--loudness", "choice", "mean", choices=("mean", "peak"), scopes=("scenes",)),
    )
    monkeypatch.setattr(t, "SETTINGS", t.SETTINGS + rows)
    p = build_parser()
    assert p.parse_args(["render", "p.json", "--out", "o", "--cluster"]).cluster == "auto"
    assert p.parse_args(["render", "p.json", "--out", "o", "--cluster", "host:6379"]).cluster == "host:6379"
    assert p.parse_args(["render", "p.json", "--out", "o"]).cluster is None
    assert p.parse_args(["analyze", "s.wav", "--loudness", "peak"]).loudness == "peak"
    assert p.parse_args(["run", "--loudness", "peak", "--cluster"]).cluster == "auto"
    # The real rows of those shapes: --ray's address is optional, --intensity reaches plan too.
    assert p.parse_args(["render", "p.json", "--out", "o", "--ray"]).ray == "local"
    assert p.parse_args(["plan", "s.wav", "--boundaries", "0,1", "--intensity", "authors"]).intensity == "authors"
    with pytest.raises(SystemExit):  # analyze and run only
        p.parse_args(["plan", "s.wav", "--boundaries", "0,1", "--loudness", "peak"])
    assert "unrecognized arguments: --loudness" in capsys.readouterr().err


# ---------------------------------------------------------------- scopes beyond render flags (issue 26)

KEYS = """
import json
import numpy as np
import engine.settings_table as t
from engine.settings_table import Setting
t.SETTINGS = t.SETTINGS + ({row},)
from engine.render.jobs.keys import segment_keys
from engine.settings import RenderSettings

segs = [{{"start": a, "end": a + 1.0, "steps": 2, "images": 2,
          "parts": [{{"start": a, "end": a + 1.0, "kind": "lyric", "text": "words"}}]}} for a in (0.0, 1.0, 2.0)]
plan = {{"segments": segs}}
song = np.zeros(16000 * 4, dtype=np.float32)
out = {{}}
for value in {values}:
    settings = RenderSettings(**({{}} if value is None else {{"test_grain": value}}))
    out[repr(value)] = segment_keys(plan, song, settings, {{"m": "x"}})
print(json.dumps(out))
"""


def _keys_with_row(row: str, values: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = KEYS.format(row=row, values=values)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _old_keys() -> list[str]:
    import numpy as np

    from engine.render.jobs.keys import segment_keys
    from engine.settings import RenderSettings

    segs = [
        {
            "start": a,
            "end": a + 1.0,
            "steps": 2,
            "images": 2,
            "parts": [{"start": a, "end": a + 1.0, "kind": "lyric", "text": "words"}],
        }
        for a in (0.0, 1.0, 2.0)
    ]
    return segment_keys({"segments": segs}, np.zeros(16000 * 4, dtype=np.float32), RenderSettings(), {"m": "x"})


def test_a_new_per_segment_row_changes_every_segment_key_when_set():
    # A render row marked per segment, added in a fresh process: no list of names anywhere else.
    row = 'Setting("test_grain", "--test-grain", "float", 0.0, lo=0, hi=1, per_segment=True)'
    got = _keys_with_row(row, "[None, 0.0, 0.5, 0.75]")
    old = _old_keys()
    assert got["None"] == got["0.0"] == old  # not used: the keys it always had
    assert all(a != b for a, b in zip(got["0.5"], old))  # every segment's key
    assert all(a != b for a, b in zip(got["0.75"], got["0.5"]))
    assert len(set(got["0.5"])) == 3


def test_a_new_render_row_changes_the_keys_only_where_it_is_set():
    # The render-wide key: the settings it always held at any value; a row added since only where it is set.
    got = _keys_with_row('Setting("test_grain", "--test-grain", "float", 0.0, lo=0, hi=1)', "[None, 0.0, 0.5]")
    assert got["None"] == got["0.0"] == _old_keys()
    assert all(a != b for a, b in zip(got["0.5"], got["0.0"]))


def test_a_new_per_segment_row_of_a_key_group_enters_with_the_group_only():
    # A footage row that is not used changes no key: the group is in a key only where footage covers a segment.
    row = 'Setting("test_grain", "--test-grain", "float", 0.0, lo=0, hi=1, per_segment=True, key_group="footage")'
    got = _keys_with_row(row, "[None, 0.5]")
    assert got["None"] == got["0.5"] == _old_keys()


def test_animated_values_enter_the_keys_through_the_rows(monkeypatch):
    # Issue 27's hook: an animatable row whose value differs image by image enters each segment's key as each
    # image's value (here zoom moves each image by its own value; style weight, render-wide, per image too).
    import numpy as np

    from engine.render.jobs.keys import per_segment_entries
    from engine.settings import RenderSettings
    from engine.settings_table import SETTINGS

    animatable = {s.name for s in SETTINGS if s.animatable}
    assert {"zoom", "rotate", "shift", "footage_blend", "init_weight", "style_weight"} <= animatable
    s = RenderSettings(zoom=0.1)
    times = [0.0, 0.5]
    assert per_segment_entries(s, {}, times) == {}  # motion is a content group: its content is the moves
    monkeypatch.setattr(
        RenderSettings,
        "image_values",
        lambda self, name, t: [0.1, 0.2] if name == "style_weight" else getattr(self, name),
    )
    assert per_segment_entries(s, {}, times) == {"animated": {"style_weight": [0.1, 0.2]}}
    assert np.allclose([0.1, 0.2], per_segment_entries(s, {}, times)["animated"]["style_weight"])


def test_segment_rows_make_the_plan_the_file_checks_and_the_keys():
    from engine.errors import InputError
    from engine.plan.schema import validate_segment
    from engine.plan.segment_settings import apply_segment_settings
    from engine.render.jobs.keys import segment_values
    from engine.settings_check import check_entry
    from engine.settings_table import in_scope, segment_defaults

    assert [s.name for s in in_scope("segment")] == ["prompt", "prompt_weight", "take", "new_chain"]
    assert segment_defaults() == {"prompt": None, "prompt_weight": 1.0, "take": 0}
    # The key holds exactly what it held before the rows existed, in that order.
    seg = {"prompt": "a boat", "prompt_weight": 0.5, "take": 2, "new_chain": True}
    assert list(segment_values(seg).items()) == [("prompt", "a boat"), ("prompt_weight", 0.5), ("take", 2)]
    entry = check_entry({"prompt": "  a boat ", "take": 1}, "segment", "entry 0", blank_is_none=True)
    assert entry == {"prompt": "a boat", "prompt_weight": 1.0, "take": 1, "new_chain": False}
    with pytest.raises(InputError, match="entry 3 take must be at least 0"):
        check_entry({"take": -1}, "segment", "entry 3")
    plan = {"segments": [{"start": 0.0, **segment_defaults()}, {"start": 1.0, **segment_defaults()}]}
    assert apply_segment_settings(plan, [{"start": 1.0, **entry, "new_chain": True}]) == []
    assert plan["segments"][1] == {"start": 1.0, "prompt": "a boat", "prompt_weight": 1.0, "take": 1, "new_chain": True}
    with pytest.raises(InputError, match="segment 0 prompt_weight must be at least 0 and at most 1, got 2"):
        validate_segment(
            0, {"start": 0, "end": 1, "steps": 1, "images": 1, "parts": [], "prompt_weight": 2}, None, 9, "p"
        )


def test_analysis_and_job_rows_are_the_signatures_settings():
    from engine.cli.parser import build_parser
    from engine.errors import InputError
    from engine.settings import AnalysisSettings, JobSettings, RenderSettings

    p = build_parser()
    args = p.parse_args(["plan", "s.wav", "--boundaries", "0,1", "--min-rate", "3", "--intensity", "authors"])
    a = AnalysisSettings.from_args(args).replace(preset="draft").resolved()
    assert (a.min_rate, a.max_rate, a.intensity, a.granularity) == (3.0, 8.0, "authors", "scenes")
    with pytest.raises(InputError, match=r"--max-rate \(2.0\) is below --min-rate \(5.0\)"):
        AnalysisSettings(min_rate=5, max_rate=2)
    job = JobSettings.from_args(p.parse_args(["render", "p.json", "--out", "o", "--chain-at", "3,6", "--ray"]))
    assert job.chain_at == (3.0, 6.0) and job.ray == "local" and job.ray_address is None
    with pytest.raises(InputError, match="--chain-at takes song seconds"):
        JobSettings(chain_at="3,x")
    with pytest.raises(InputError, match="--footage-span must end after it starts"):
        RenderSettings(footage_span=(2.0, 1.0))
    # One object from the parser to the step: frozen, checked once, its values as the step uses them.
    s = RenderSettings.from_args(p.parse_args(["render", "p.json", "--out", "o", "--zoom", "0.2"]), "musicvideo")
    assert (s.zoom, s.rotate, s.motion_active) == (0.2, 2.0, True)
    with pytest.raises(AttributeError):
        s.zoom = 0.3


def test_the_addons_flags_come_from_the_rows():
    # The flags the add-on passes itself (files, spans, the preset) are rows too: no literal flag in the add-on.
    import re

    from tests.conftest import REPO as root

    for path in (root / "m2v_blender").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        flags = re.findall(r"""["'](--?[a-z][a-z-]*)["']""", text)
        # The interpreter's -m is no setting; Install Engine runs install/setup.py with that script's own flags.
        allowed = {"-m"} | ({"--env", "--device"} if path.name == "operators.py" else set())
        assert set(flags) <= allowed, (path.name, flags)


def test_the_panel_draws_the_tables_sections(built, tmp_path, blender_python):  # noqa: F811
    # What the main panel draws in each state, recorded through a stand-in layout in real Blender: the Custom
    # fields, the scene lengths, the footage and motion rows are the table's sections, shown as their rows say.
    zip_path = next(built.glob("m2v-*.zip"))
    script = f"""
        import types
        import bpy
        name = install({str(zip_path)!r})
        panels = sys.modules[name + ".panels"]
        class Layout:
            def __init__(self, drawn): self.drawn = drawn
            def __getattr__(self, attr): return lambda *a, **k: self
            def prop(self, data, prop, **k): self.drawn.append(prop); return self
            def prop_search(self, data, prop, *a, **k): self.drawn.append(prop); return self
            def operator(self, *a, **k): return types.SimpleNamespace()
        scene = bpy.context.scene
        scene.sequence_editor_create()
        st = scene.m2v
        for state in ("draft", "custom", "custom beats", "footage motion"):
            st.preset = "custom" if state.startswith("custom") else "draft"
            if state == "custom beats":
                st.granularity = "beats"
            st.footage_strip, st.use_motion = ("x", True) if state == "footage motion" else ("", False)
            drawn = []
            panels.SEQUENCER_PT_m2v.draw(types.SimpleNamespace(layout=Layout(drawn)), bpy.context)
            emit(state=state, drawn=drawn)
    """
    got = {r["state"]: r["drawn"] for r in blender(textwrap.dedent(script), tmp_path, blender_python)}
    custom = ["min_rate", "max_rate", "granularity", "width", "height", "cutouts", "cutout_method"]
    assert not set(custom) & set(got["draft"]) and all(n in got["custom"] for n in custom)
    assert got["draft"].index("intensity") < got["draft"].index("min_length")  # the draft preset cuts at scenes
    assert "min_length" not in got["custom beats"] and "target_length" not in got["custom beats"]
    footage, motion = ["footage_blend", "init_weight", "init_space"], ["zoom", "rotate", "shift", "motion_drive"]
    assert not set(footage + motion) & set(got["draft"])
    assert all(n in got["footage motion"] for n in footage + motion)
    assert {"seed", "precision", "style", "output_dir", "channel", "blend_type", "opacity"} <= set(got["draft"])

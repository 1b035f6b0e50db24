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

ROW = (
    'Setting("test_knob", "--test-knob", "float", 0.25, lo=0, hi=1, help="a knob a test added", '
    'ui=UI("Test Knob", hi=0.5, when=("model",)))'
)

ENGINE = f"""
import contextlib, io, json
import engine.settings_table as t
from engine.settings_table import UI, Setting
t.SETTINGS = t.SETTINGS + ({ROW},)
from engine.cli.commands import main, settings_from_args
from engine.cli.parser import build_parser
from engine.errors import InputError
from engine.render.jobs.loop import RenderSettings

parser = build_parser()
text = io.StringIO()
with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
    parser.parse_args(["render", "--help"])
s = settings_from_args(parser.parse_args(["render", "p.json", "--out", "o", "--layout", "--test-knob", "0.5"]), "draft")
try:
    RenderSettings(test_knob=2.0).validate()
    error = None
except InputError as e:
    error = str(e)
with contextlib.redirect_stderr(io.StringIO()):
    code = main(["render", "p.json", "--out", "o", "--test-knob", "7"])
print(json.dumps({{"help": "--test-knob" in text.getvalue(), "value": s.test_knob, "default": RenderSettings().test_knob,
                  "error": error, "code": code, "recorded": s.record().get("test_knob")}}))
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
    from engine.render.jobs.loop import RenderSettings

    names = list(RenderSettings().record())
    assert names[:6] == ["width", "height", "cutouts", "cut_method", "cut_pow", "lr"]
    assert [n for n, _ in render_fields()] == list(RenderSettings().__dataclass_fields__)
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
        [sys.executable, str(REPO / "install" / "build_extension.py"), "--out", str(out)], capture_output=True, text=True
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
        presets = sys.modules[name + ".flags"]
        emit(default=st.test_knob, hi=rna.hard_max, label=rna.name,
             model=presets.setting_args(st, "render", {{"model"}}), layout=presets.setting_args(st, "render", set()),
             analyze=presets.setting_args(st, "analyze", {{"model"}}))
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

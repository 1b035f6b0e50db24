"""The engine's layers are the README's: every import (function-local ones too) goes down the stated order, never
into another package's private names; the torch-free commands import no torch."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.analysis.synth import Section, synth_song
from tests.conftest import REPO, write_song

ENGINE = REPO / "engine"
#: Libraries that load torch (or are torch): the torch-free layers and commands never import them.
HEAVY = ("torch", "torchvision", "kornia", "open_clip", "taming", "ray")


def stated_layers() -> list[str]:
    """The layer order as the README states it: ``Layer order: root → analysis → ...`` (packages, dotted)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Layer order[^:]*:\s*(.+?)\.\s", text)
    assert m, "the README states no layer order"
    return [name.strip(" `*.") for name in m.group(1).split("→")]


def layer_of(module: str, layers: list[str]) -> int:
    """The index of the layer ``module`` (dotted, under ``engine``) belongs to: its longest stated package."""
    rest = module.split(".")[1:]
    best = 0  # root: a module directly in engine/
    for i, name in enumerate(layers):
        parts = name.split(".")
        inside = name != "root" and rest[: len(parts)] == parts and len(rest) > len(parts)
        if inside and (best == 0 or len(parts) > len(layers[best].split("."))):
            best = i
    return best


def package_of(module: str) -> str:
    return module.rsplit(".", 1)[0]


def engine_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every import in a file, at any depth: ``(line, module, names imported from it)``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def test_every_import_goes_down_the_readmes_layer_order():
    layers = stated_layers()
    assert layers[0] == "root" and layers[-1] == "cli", layers
    modules = engine_modules()
    stated = {name for name in layers if name != "root"}
    folders = {".".join(p.parent.relative_to(ENGINE).parts) for p in modules.values() if p.name != "__init__.py"}
    assert folders - {""} <= stated, f"packages the README's order leaves out: {sorted(folders - {''} - stated)}"
    bad = []
    for mod, path in modules.items():
        me = layer_of(mod, layers)
        for line, target, names in imports(path):
            if not target.startswith("engine"):
                continue
            # "from engine.render import step" names a module: its own layer counts.
            for t in {f"{target}.{n}" if f"{target}.{n}" in modules else target for n in names or [""]}:
                there = layer_of(t, layers)
                if there > me:
                    bad.append(f"{path.relative_to(REPO)}:{line} ({layers[me]}) imports {t} ({layers[there]})")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and package_of(target) != package_of(mod):
                bad.append(f"{path.relative_to(REPO)}:{line} imports private {', '.join(private)} of {target}")
    assert not bad, "\n".join(bad)


def test_torch_free_layers_and_sides():
    bad = []
    for mod, path in engine_modules().items():
        for line, target, _ in imports(path):
            top = target.split(".")[0]
            if top == "bpy" or (mod.split(".")[1] in ("analysis", "plan") and top in HEAVY):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    for path in sorted((REPO / "m2v_blender").rglob("*.py")):
        for line, target, _ in imports(path):
            if target.split(".")[0] in (*HEAVY, "engine", "numpy"):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_a_layer_test_that_would_fail(tmp_path):
    # The checks above must be able to fail: an import up the order is caught.
    layers = stated_layers()
    assert layer_of("engine.plan.build", layers) < layer_of("engine.render.jobs.loop", layers)
    assert layer_of("engine.settings", layers) == 0 and layer_of("engine.cli.commands", layers) == len(layers) - 1
    assert layer_of("engine.render.step.optimize", layers) < layer_of("engine.render.sources.model", layers)
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from engine.render.jobs.loop import render\n")
    ((line, target, names),) = imports(bad)
    assert layer_of(target, layers) > layer_of("engine.plan.build", layers) and line == 2


PROBE = """
import contextlib, io, json, sys
from engine.cli.commands import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main({argv!r})
print(json.dumps({{"code": code, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})}}))
"""


def _modules_after(argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = PROBE.format(argv=argv, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("layers")
    s = synth_song([Section(4, 120, "rock", "soft", 0.5), Section(4, 120, "metal", "bright", 0.9)], seed=8)
    return write_song(d / "song.wav", s.y, s.sr)


def test_analyze_and_a_layout_render_import_no_torch(song, tmp_path):
    from engine.models.device import gpu_driver

    plan = tmp_path / "plan.json"
    got = _modules_after(["analyze", str(song), "--device", "cpu", "--no-estimate", "-o", str(plan)])
    assert got == {"code": 0, "heavy": []}
    got = _modules_after(["render", str(plan), "--out", str(tmp_path / "r"), "--layout", "--size", "32", "32"])
    assert got == {"code": 0, "heavy": []}
    assert (tmp_path / "r" / "manifest.json").exists()
    if not gpu_driver():  # no GPU driver here: --preset auto learns it without torch
        got = _modules_after(["plan", str(song), "--boundaries", "0,2,4", "--no-estimate", "-o", str(plan)])
        assert got == {"code": 0, "heavy": []}

"""The two halves must stay apart: Blender's process never loads torch, the engine never loads bpy."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_addon_never_imports_torch():
    assert not _imports("m2v_blender") & {"torch", "torchvision", "open_clip", "taming", "librosa"}


def test_engine_never_imports_bpy():
    assert not _imports("engine") & {"bpy", "bl_ui", "addon_utils"}

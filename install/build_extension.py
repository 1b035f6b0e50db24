#!/usr/bin/env python3
"""Build the installable Blender extension zip and a static extension repository index.

    python install/build_extension.py [--out dist] [--blender-ext PATH]

The zip carries the add-on (``m2v_blender/`` as the package root), the
``engine/`` sources the subprocess runs and ``install/`` (the Install Engine
button runs ``install/setup.py``). Building, validating and indexing use
Blender's own extension tool (``blender_ext.py``, shipped with Blender and
with the ``bpy`` module). Users add ``dist/`` (served over HTTP) as a remote
repository and get updates from its ``index.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_blender_ext() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: Blender's extension tool not found: install bpy, or pass --blender-ext PATH")
    base = Path(list(spec.submodule_search_locations)[0])
    hits = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not hits:
        raise SystemExit(f"error: blender_ext.py not found under {base}")
    return hits[-1]


def stage(into: Path) -> Path:
    src = into / "m2v"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "m2v_blender", src, ignore=ignore)
    shutil.copytree(ROOT / "engine", src / "engine", ignore=ignore)
    (src / "install").mkdir()
    for f in (ROOT / "install").glob("*.txt"):
        shutil.copy2(f, src / "install" / f.name)
    shutil.copy2(ROOT / "install" / "setup.py", src / "install" / "setup.py")
    shutil.copy2(ROOT / "blender_manifest.toml", src / "blender_manifest.toml")
    shutil.copy2(ROOT / "README.md", src / "README.md")
    return src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"), help="output folder (zip + index.json)")
    ap.add_argument("--blender-ext", help="path to Blender's blender_ext.py")
    args = ap.parse_args(argv)
    tool = Path(args.blender_ext) if args.blender_ext else find_blender_ext()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = stage(Path(tmp))
        subprocess.run([sys.executable, str(tool), "validate", str(src)], check=True)
        subprocess.run(
            [sys.executable, str(tool), "build", "--source-dir", str(src), "--output-dir", str(out)], check=True
        )
    zips = sorted(out.glob("m2v-*.zip"))
    subprocess.run([sys.executable, str(tool), "server-generate", "--repo-dir", str(out)], check=True)
    print(f"built {zips[-1]} and {out / 'index.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

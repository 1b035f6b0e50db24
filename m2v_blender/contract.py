"""The engine's contract (``engine/protocol.py``), loaded from the engine sources this add-on ships.

Exit codes, event names and fields, document kinds and versions, the
time-to-image rule and the loudness-to-steps rule are defined once, in the
engine; the add-on reads that same file (it is standard-library only), so the
two sides cannot drift apart. The settings table (every flag, its range and the
add-on's property) is loaded the same way. No torch, no bpy.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .errors import M2VError


def engine_root() -> Path:
    """Folder holding the ``engine`` package: inside the installed extension, or the source tree."""
    here = Path(__file__).resolve().parent
    for cand in (here, here.parent):
        if (cand / "engine" / "__main__.py").exists():
            return cand
    raise M2VError("the m2v engine sources are missing from the add-on; reinstall the extension")


def _load(stem: str):
    """``engine/<stem>.py`` as the module ``m2v_engine_<stem>`` (standard library only, no package)."""
    name = f"m2v_engine_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    path = engine_root() / "engine" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


protocol = _load("protocol")
#: The settings table (``engine/settings_table.py``): the add-on's properties and flags come from its rows.
settings_table = _load("settings_table")


def read_document(path: Path, kind: str, version: int) -> dict:
    """A JSON document the engine wrote, checked for its kind and version."""
    import json

    from .outputs import read_text_regular

    try:
        doc = json.loads(read_text_regular(Path(path)))
        return protocol.check_document(doc, kind, version)
    except (OSError, ValueError) as e:
        raise M2VError(f"{path}: {e}") from None

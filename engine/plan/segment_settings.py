"""Per-segment prompts and takes an editor (or a script) sets: a small versioned JSON file applied to a plan.

``{"kind": "m2v-segment-settings", "version": 1, "segments": [{"start": 12.48,
"prompt": "a lighthouse", "prompt_weight": 0.6, "take": 2, "new_chain": false}, ...]}``

Entries are matched to the plan's segments by start time (song seconds), so
they stay with their segment when other cuts move. A prompt replaces the
segment's lyric or audio guidance at weight 1 and mixes with it below; a
take changes only that segment's random draws; ``new_chain`` starts a latent chain there (engine.plan.chains).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError
from engine.files import check_number, read_json
from engine.protocol import SEGMENT_SETTINGS_KIND, SEGMENT_SETTINGS_VERSION, check_document

#: How far (seconds) an entry's start may be from a segment's start and still belong to it.
MATCH_TOLERANCE = 0.02


def load_segment_settings(path: str | Path) -> list[dict]:
    """Read and check a segment-settings file; every value is validated and named in errors."""
    doc = read_json(path, "segment-settings file")
    try:
        check_document(doc, SEGMENT_SETTINGS_KIND, SEGMENT_SETTINGS_VERSION)
    except ValueError as e:
        raise InputError(str(e), path) from None
    entries = doc.get("segments")
    if not isinstance(entries, list):
        raise InputError("no segments list", path)
    out = []
    for j, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"entry {j} is not an object", path)
        prompt = e.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"entry {j} prompt must be text", path)
        out.append(
            {
                "start": check_number(e.get("start"), f"entry {j} start", 0, path=path),
                "prompt": prompt.strip() or None if isinstance(prompt, str) else None,
                "prompt_weight": check_number(e.get("prompt_weight", 1.0), f"entry {j} prompt_weight", 0, 1, path=path),
                "take": check_number(e.get("take", 0), f"entry {j} take", 0, 1_000_000, integer=True, path=path),
                "new_chain": _flag(e.get("new_chain", False), f"entry {j} new_chain", path),
            }
        )
    return out


def _flag(value: object, name: str, path) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false", path)
    return value


def apply_segment_settings(plan: dict, entries: list[dict]) -> list[str]:
    """Set ``prompt``, ``prompt_weight``, ``take`` and ``new_chain`` on the plan's segments; returns warnings for
    unmatched entries."""
    segs = plan["segments"]
    warnings = []
    for e in entries:
        k = min(range(len(segs)), key=lambda i: abs(segs[i]["start"] - e["start"]))
        if abs(segs[k]["start"] - e["start"]) > MATCH_TOLERANCE:
            warnings.append(f"segment settings for {e['start']:.3f} s match no segment start; ignored")
            continue
        segs[k].update(prompt=e["prompt"], prompt_weight=e["prompt_weight"], take=e["take"])
        if e["new_chain"] and k > 0:  # only where set: a plan without chains stays as it was
            segs[k]["new_chain"] = True
    return warnings

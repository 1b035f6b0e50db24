"""Per-segment settings an editor (or a script) sets: a small versioned JSON file applied to a plan.

``{"kind": "m2v-segment-settings", "version": 1, "segments": [{"start": 12.48,
"prompt": "a lighthouse", "prompt_weight": 0.6, "take": 2, "new_chain": false}, ...]}``

Entries are matched to the plan's segments by start time (song seconds), so
they stay with their segment when other cuts move. Their fields are the
settings table's ``segment`` rows (checked as their rows say): a prompt
replaces the segment's lyric or audio guidance at weight 1 and mixes with it
below; a take changes only that segment's random draws; ``new_chain`` starts a
latent chain there (engine.plan.chains).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError
from engine.files import check_input_document, check_number, read_json
from engine.protocol import SEGMENT_MATCH_S, SEGMENT_SETTINGS_KIND, SEGMENT_SETTINGS_VERSION
from engine.settings_check import check_entry
from engine.settings_table import in_scope, segment_defaults

_DEFAULTS = {s.name: s.default for s in in_scope("segment")}


def load_segment_settings(path: str | Path) -> list[dict]:
    """Read and check a segment-settings file; every value is validated and named in errors."""
    doc = read_json(path, "segment-settings file")
    check_input_document(doc, SEGMENT_SETTINGS_KIND, SEGMENT_SETTINGS_VERSION, path)
    entries = doc.get("segments")
    if not isinstance(entries, list):
        raise InputError("no segments list", path)
    out = []
    for j, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"entry {j} is not an object", path)
        start = check_number(e.get("start"), f"entry {j} start", 0, path=path)
        out.append({"start": start, **check_entry(e, "segment", f"entry {j}", path, blank_is_none=True)})
    return out


def apply_segment_settings(plan: dict, entries: list[dict]) -> list[str]:
    """Set the ``segment`` rows' values (prompt, weight, take, new chain) on the plan's segments; returns warnings
    for unmatched entries."""
    segs = plan["segments"]
    warnings = []
    for e in entries:
        k = min(range(len(segs)), key=lambda i: abs(segs[i]["start"] - e["start"]))
        if abs(segs[k]["start"] - e["start"]) > SEGMENT_MATCH_S:
            warnings.append(f"segment settings for {e['start']:.3f} s match no segment start; ignored")
            continue
        for name, value in e.items():
            if name == "start":
                continue
            if name in segment_defaults():
                segs[k][name] = value
            elif value != _DEFAULTS[name] and (name != "new_chain" or k > 0):
                segs[k][name] = value  # only where set: a plan without it stays as it was
    return warnings

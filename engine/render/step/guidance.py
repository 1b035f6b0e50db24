"""Guidance targets in CLIP space (paper 3.2 and 3.3).

Each guidance part of a segment is guided by its lyric's CLIP text
embedding where one is sung, else by the Wav2CLIP embedding of its own
audio; a segment prompt set by the editor replaces it or mixes with it.
With time consistency (eq. 2) a part's target is the normalised sum of the
previous part's vector and its own, across segment boundaries and across
each lyric switch inside a segment. Vectors are computed once, and only for
parts that are rendered or replayed.
"""

from __future__ import annotations

import numpy as np

from engine.protocol import AUDIO_RATE as SAMPLE_RATE


class Guidance:
    """Target vectors per guidance part ``(segment, part)`` of a plan."""

    def __init__(self, plan: dict, clip, audio_model, song_16k: np.ndarray, device) -> None:
        self.plan, self.clip, self.audio_model, self.song, self.device = plan, clip, audio_model, song_16k, device
        self.cache: dict[tuple[int, int], object] = {}
        self._targets: dict[tuple[int, int, bool], object] = {}
        self._text: dict[str, object] = {}

    def text(self, text: str):
        """Unit CLIP embedding of a text prompt (cached)."""
        if text not in self._text:
            self._text[text] = self.clip.embed_text([text])[0].to(self.device)
        return self._text[text]

    def audio(self, start: float, end: float):
        """Unit Wav2CLIP embedding of the song between two times (one clip a call, as the authors embed segments)."""
        import torch

        from engine.models.wav2clip import embed_audio

        a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        wav = torch.from_numpy(np.ascontiguousarray(self.song[a:b])).float()[None]
        return torch.nn.functional.normalize(embed_audio(self.audio_model, wav)[0], dim=-1).to(self.device)

    def raw(self, k: int, p: int):
        """The part's own vector: lyric or audio, with the segment's prompt mixed in."""
        import torch

        if (k, p) not in self.cache:
            seg = self.plan["segments"][k]
            part = seg["parts"][p]
            v = self.text(part["text"]) if part["kind"] == "lyric" else self.audio(part["start"], part["end"])
            prompt, w = seg.get("prompt"), float(seg.get("prompt_weight", 1.0))
            if prompt and w >= 1.0:
                v = self.text(prompt)
            elif prompt and w > 0.0:
                v = torch.nn.functional.normalize((1.0 - w) * v + w * self.text(prompt), dim=-1)
            self.cache[(k, p)] = v
        return self.cache[(k, p)]

    def previous(self, k: int, p: int) -> tuple[int, int] | None:
        if p > 0:
            return k, p - 1
        if k > 0:
            return k - 1, len(self.plan["segments"][k - 1]["parts"]) - 1
        return None

    def target(self, k: int, p: int, average: bool):
        """The vector a part's steps pull towards (eq. 2 when ``average``)."""
        import torch

        key = (k, p, average)
        if key not in self._targets:  # every step of the part asks: average once, not once a step
            cur = self.raw(k, p)
            prev = self.previous(k, p) if average else None
            self._targets[key] = cur if prev is None else torch.nn.functional.normalize(self.raw(*prev) + cur, dim=-1)
        return self._targets[key]


def audio_digest(song_16k: np.ndarray, start: float, end: float) -> str:
    """SHA-256 of the samples an audio part reads (part of its segment's cache key)."""
    import hashlib

    a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
    return hashlib.sha256(np.ascontiguousarray(song_16k[a:b]).tobytes()).hexdigest()

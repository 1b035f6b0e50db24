"""Guidance targets in CLIP space (paper 3.2 and 3.3).

A segment is guided by its lyric's CLIP text embedding where one is sung,
else by the Wav2CLIP embedding of its own audio; with time consistency
(eq. 2) the target is the normalised sum of the previous and the current
segment's vectors. Vectors are computed once, and only for segments that
are rendered or replayed.
"""

from __future__ import annotations

import numpy as np

from engine.wav2clip import SAMPLE_RATE


class Guidance:
    """Target vectors per segment of a plan."""

    def __init__(self, plan: dict, clip, audio_model, song_16k: np.ndarray, device) -> None:
        self.plan, self.clip, self.audio_model, self.song, self.device = plan, clip, audio_model, song_16k, device
        self.cache: dict[int, object] = {}
        self._text: dict[str, object] = {}

    def text(self, text: str):
        """Unit CLIP embedding of a text prompt (cached)."""
        if text not in self._text:
            self._text[text] = self.clip.embed_text([text])[0].to(self.device)
        return self._text[text]

    def audio(self, start: float, end: float):
        """Unit Wav2CLIP embedding of the song between two times (one clip a call, as the authors embed segments)."""
        import torch

        from engine.wav2clip import embed_audio

        a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        wav = torch.from_numpy(np.ascontiguousarray(self.song[a:b])).float()[None]
        return torch.nn.functional.normalize(embed_audio(self.audio_model, wav)[0], dim=-1).to(self.device)

    def raw(self, k: int):
        if k not in self.cache:
            seg = self.plan["segments"][k]
            g = seg["guidance"]
            self.cache[k] = self.text(g["text"]) if g["kind"] == "lyric" else self.audio(seg["start"], seg["end"])
        return self.cache[k]

    def target(self, k: int, average: bool):
        import torch

        cur = self.raw(k)
        if average and k > 0:
            return torch.nn.functional.normalize(self.raw(k - 1) + cur, dim=-1)
        return cur


def audio_digest(song_16k: np.ndarray, start: float, end: float) -> str:
    """SHA-256 of the samples a segment's audio guidance reads (part of its cache key)."""
    import hashlib

    a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
    return hashlib.sha256(np.ascontiguousarray(song_16k[a:b]).tobytes()).hexdigest()

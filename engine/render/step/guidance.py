"""Guidance targets in CLIP space (paper 3.2 and 3.3).

Each guidance part of a segment is guided by its lyric's CLIP text
embedding where one is sung, else by the Wav2CLIP embedding of its own
audio; a segment prompt set by the editor replaces it or mixes with it, and
a timed prompt (a text strip, ``--prompts``) replaces or mixes with that for
the images in its span.
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
        self.cache: dict[tuple[int, int, float], object] = {}
        self._targets: dict[tuple, object] = {}
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

    def mix(self, v, text: str, weight: float):
        """``v`` with a text prompt at ``weight``: the text's vector at 1 (or more), ``v`` at 0, else the normalised
        weighted sum (as a segment prompt and a timed prompt mix)."""
        import torch

        if weight >= 1.0:
            return self.text(text)
        if weight > 0.0:
            return torch.nn.functional.normalize((1.0 - weight) * v + weight * self.text(text), dim=-1)
        return v

    def raw(self, k: int, p: int, weight: float | None = None):
        """The part's own vector: lyric or audio, with the segment's prompt mixed in at ``weight`` (an image's own,
        where the prompt weight is keyframed; else the segment's)."""
        seg = self.plan["segments"][k]
        w = float(seg.get("prompt_weight", 1.0)) if weight is None else float(weight)
        if (k, p, w) not in self.cache:
            part = seg["parts"][p]
            v = self.text(part["text"]) if part["kind"] == "lyric" else self.audio(part["start"], part["end"])
            prompt = seg.get("prompt")
            self.cache[(k, p, w)] = self.mix(v, prompt, w) if prompt else v
        return self.cache[(k, p, w)]

    def guided(self, k: int, p: int, prompt=None, weight: float | None = None):
        """What guides an image in part ``p`` of segment ``k``: the part's own vector (:meth:`raw`), with the timed
        prompt that guides the image (``engine.plan.prompts.PromptPart``, or None) mixed in at its weight."""
        v = self.raw(k, p, weight)
        return v if prompt is None else self.mix(v, prompt.text, prompt.weight)

    def previous(self, k: int, p: int) -> tuple[int, int] | None:
        if p > 0:
            return k, p - 1
        if k > 0:
            return k - 1, len(self.plan["segments"][k - 1]["parts"]) - 1
        return None

    def target(self, k: int, p: int, average: bool, prompt=None, weight: float | None = None):
        """The vector a part's steps pull towards (eq. 2 when ``average``), for an image guided by ``prompt`` (a timed
        prompt, or None) with the segment prompt at ``weight`` (None: the segment's). Eq. 2 averages with the
        previous part's vector under the same prompt and weight, so a timed prompt at weight 1 is the image's whole
        target."""
        import torch

        key = (k, p, average, prompt, weight)
        if key not in self._targets:  # every step of the part asks: average once, not once a step
            cur = self.guided(k, p, prompt, weight)
            prev = self.previous(k, p) if average else None
            self._targets[key] = (
                cur if prev is None else torch.nn.functional.normalize(self.guided(*prev, prompt, weight) + cur, dim=-1)
            )
        return self._targets[key]


def audio_digest(song_16k: np.ndarray, start: float, end: float) -> str:
    """SHA-256 of the samples an audio part reads (part of its segment's cache key)."""
    import hashlib

    a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
    return hashlib.sha256(np.ascontiguousarray(song_16k[a:b]).tobytes()).hexdigest()

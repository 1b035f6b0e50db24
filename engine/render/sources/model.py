"""Images optimised with the models, one latent through the plan (the other source is
:class:`engine.render.sources.cards.CardSource`, the layout preview's title cards).

Both give ``make_image(k, i) -> (rgb, loss)`` for image ``i`` of segment
``k``. The model source also carries the latent through the video: it can
``seek`` to any position by loading the nearest resume point on the chain of
segment keys and re-running the images after it.

The model source looks one image ahead (``lookahead``): an image is the
latent after its own steps, and the first forward pass of the next image's
first step decodes exactly that latent, so ``make_image`` returns the
*previous* image and a render never pays for a decode of its own per image
(only :meth:`ModelSource.decode`, before a jump or at the end).

Footage and motion change the latent *before* an image's first step (the
previous image moved and re-encoded, the footage frame blended in), so that
first forward pass no longer sees the previous image. For those images the
source decodes the previous latent itself, before changing it, and returns
that: the same pixels, one decoder pass (which motion needs anyway, to move
the picture).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.plan.chains import chain_of
from engine.plan.prompts import image_prompts
from engine.plan.schedule import image_steps
from engine.protocol import image_slots
from engine.render.sources.footage import Footage, frame_digests, segment_frames
from engine.render.sources.matte import (
    Matte,
    MatteTiming,
    blank_digest,
    is_empty,
    matte_digests,
    matte_warnings,
    segment_mattes,
)
from engine.render.sources.motion import segment_motion, warp
from engine.render.step.guidance import Guidance
from engine.render.step.optimize import InitPull, Optimizer, sub_seed, to_rgb
from engine.store.alpha import composite, rgba_frame
from engine.store.snapshots import latest_on_chain, list_snapshots, load_snapshot


class ModelSource:
    """Images optimised with the models; one latent through the whole plan."""

    stateful = True
    lookahead = True

    def __init__(self, plan: dict, settings, models, song_16k: np.ndarray, device) -> None:

        self.plan, self.settings, self.models = plan, settings, models
        self.optimizer = Optimizer(models.vqgan, models.clip, settings, device)
        self.guidance = Guidance(plan, models.clip, models.audio, song_16k, device)
        self.images = [int(s["images"]) for s in plan["segments"]]
        #: The timed prompt guiding each image (engine.plan.prompts), per segment; None where none does.
        self.prompts = image_prompts(plan)
        #: First segments of the latent chains (engine.plan.chains): each starts from its own initial latent.
        self.starts: list[int] = [0]
        self.pos: tuple[int, int] | None = None
        self._schedules: dict[int, list[list[int]]] = {}
        #: Each (setting, segment)'s value: one value, or a list of each image's where the setting is keyframed.
        self._values: dict[tuple[str, int], object] = {}
        self.footage = None
        if settings.footage is not None:
            self.footage = Footage(settings.footage, settings.footage_fps)
        if settings.needs_encoder:
            models.vqgan.require_encoder()  # fails here, before the render starts, if the file has none
        self._frames: dict[int, list] = {}
        self._digests: dict[int, str] | None = None
        self._moves: dict[int, list] = {}
        self._encoded: tuple | None = None  # (frame index, picture, latent) of the last footage frame encoded
        self.matte = None
        if settings.matte is not None:
            self.matte = Matte(
                settings.matte, settings.matte_fps, settings.matte_channel, settings.matte_invert, settings.matte_feather
            )
        self._matte_frames: dict[int, list] = {}
        self._matte_digests: dict[int, str] | None = None
        self._pictures: dict[tuple[str, int], np.ndarray] = {}  # the last few matte and footage frames, by index

    def ids(self) -> dict:
        # The formats the step really runs in: ``--precision mixed`` means other formats on another device (and
        # meant CLIP-only bf16 on a CPU before the decoder joined it), and frames made in other formats are not
        # reused, nor is a partial segment resumed in them. With Ray the formats are this machine's (the keys are
        # made here); the workers' devices are chosen later.
        return {**self.models.ids(), "formats": self.optimizer.precision.formats()}

    def close(self) -> None:
        if self.footage is not None:
            self.footage.close()
        if self.matte is not None:
            self.matte.close()

    # ------------------------------------------------------------ footage and motion

    def warnings(self) -> list[str]:
        """What the user should know before the render: footage that covers nothing, motion with no beats."""
        out = []
        if self.footage is not None and not any(
            j is not None for k in range(len(self.images)) for j in self.footage_frames(k)
        ):
            out.append(
                f"the footage {self.settings.footage} covers none of the plan's images: check --footage-offset, "
                "--footage-speed and --footage-span"
            )
        s = self.settings
        if s.motion_active and s.motion_drive == "music" and s.zoom != 0 and not self.plan.get("beats"):
            out.append("the plan has no beats (an older m2v made it): no zoom pulses; plan it again to get them")
        if self.matte is not None:
            frames = [self.matte_frames(k) for k in range(len(self.images))]
            black = blank_digest(s.width, s.height, 0)
            digests = self.matte_digests()
            empty = sum(j is not None and digests[j] == black for seg in frames for j in seg)
            out += matte_warnings(s.matte, frames, empty, MatteTiming.of(s), self.matte.end)
        return out

    def footage_frames(self, k: int) -> list:
        """The footage frame each image of segment ``k`` follows (None: none)."""
        if self.footage is None:
            return [None] * self.images[k]
        if k not in self._frames:
            self._frames[k] = segment_frames(self.footage, self.settings, self.plan["segments"][k])
        return self._frames[k]

    def matte_frames(self, k: int) -> list:
        """The matte frame each image of segment ``k`` follows (None: no matte there), by footage's frame rule."""
        if self.matte is None:
            return [None] * self.images[k]
        if k not in self._matte_frames:
            self._matte_frames[k] = segment_mattes(self.matte, MatteTiming.of(self.settings), self.plan["segments"][k])
        return self._matte_frames[k]

    def matte_digests(self) -> dict[int, str]:
        """The digest of every matte frame the plan uses, made into the matte at the render size (one decode pass,
        then kept in the cache folder by the matte's content: :func:`engine.render.sources.matte.matte_digests`)."""
        if self._matte_digests is None:
            used = {j for k in range(len(self.images)) for j in self.matte_frames(k) if j is not None}
            self._matte_digests = matte_digests(self.matte, used, self.settings.width, self.settings.height)
        return self._matte_digests

    def _matte_key(self, k: int) -> dict | None:
        """Segment ``k``'s matte in its key: each image's processed matte by its digest (None where it has none or
        the matte is all white there: the plain step and the plain pixels), and the version of the step inside a
        matte; None where no image of the segment has a matte that is not all white."""
        from engine.render.step.matte import BOX_PAD, STEP_VERSION  # torch: only with a matte

        s = self.settings
        white = blank_digest(s.width, s.height, 255)
        digests = self.matte_digests() if self.matte is not None else {}
        frames = [None if j is None or digests[j] == white else digests[j] for j in self.matte_frames(k)]
        if all(d is None for d in frames):
            return None
        return {"frames": frames, "step": {"version": STEP_VERSION, "pad": BOX_PAD}}

    def moves(self, k: int) -> list:
        """How each image of segment ``k`` moves the previous one."""
        if k not in self._moves:
            self._moves[k] = segment_motion(self.plan, k, self.settings)
        return self._moves[k]

    def footage_digests(self) -> dict[int, str]:
        """The pixel digest of every footage frame the plan uses, at the render size (``engine.render.sources.footage``)."""
        if self._digests is None:

            used = {j for k in range(len(self.images)) for j in self.footage_frames(k) if j is not None}
            self._digests = frame_digests(self.footage, used, self.settings.width, self.settings.height)
        return self._digests

    def key_content(self, k: int) -> dict:
        """What segment ``k`` uses of each key group (:data:`engine.settings_table.KEY_GROUPS`), for its cache key
        (:mod:`engine.render.jobs.keys`): the footage frames its images follow, by their pixels at the render size
        (a re-exported movie re-renders only where its frames changed), each image's move, and each image's matte
        by its pixels (:meth:`_matte_key`); ``None`` where it uses none."""
        frames = self.footage_frames(k)
        footage = None
        if any(j is not None for j in frames):
            digests = self.footage_digests()
            footage = [None if j is None else digests[j] for j in frames]
        motion = [m.key() for m in self.moves(k)] if self.settings.motion_active else None
        matte = self._matte_key(k) if self.matte is not None else None
        return {"footage": footage, "motion": motion, "matte": matte}

    def value(self, name: str, k: int, i: int):
        """Setting ``name``'s value at image ``i`` of segment ``k`` (an animated setting's own value there)."""
        if (name, k) not in self._values:  # asked per image and per use: the segment's values are worked out once
            seg = self.plan["segments"][k]
            slots = image_slots(float(seg["start"]), float(seg["end"]), int(seg["images"]), digits=None)
            self._values[name, k] = self.settings.image_values(name, [a for a, _ in slots])
        v = self._values[name, k]
        return v[i] if isinstance(v, list) else v

    def image_info(self, k: int, i: int) -> dict:
        """What the manifest records about image ``i`` beyond its file: the footage and matte frames it followed, the
        timed prompt that guided it, and its own value of each keyframed setting."""
        j, m = self.footage_frames(k)[i], self.matte_frames(k)[i]
        info = {**({} if j is None else {"footage": j}), **({} if m is None else {"matte": m})}
        if self.prompts[k][i] is not None:
            info.update(self.prompts[k][i].record())
        if self.settings.curves:
            info["animated"] = {name: self.value(name, k, i) for name in self.settings.curves}
        return info

    def _picture(self, kind: str, j: int) -> np.ndarray:
        """Matte frame ``j`` (``(H, W)``) or footage frame ``j`` (``(H, W, 3)``) at the render size; the last few
        are kept (neighbouring images often follow one frame, and :meth:`finish` comes an image later)."""
        key = (kind, j)
        if key not in self._pictures:
            s = self.settings
            src = self.matte if kind == "matte" else self.footage
            if len(self._pictures) >= 6:
                self._pictures.pop(next(iter(self._pictures)))
            self._pictures[key] = src.frame(j, s.width, s.height)
        return self._pictures[key]

    def image_matte(self, k: int, i: int) -> np.ndarray | None:
        """Image ``i`` of segment ``k``'s matte at the render size, or None where it has none."""
        j = self.matte_frames(k)[i]
        return None if j is None else self._picture("matte", j)

    def backdrop(self, k: int, i: int) -> np.ndarray | None:
        """What shows outside image ``i``'s matte: the footage frame it follows at the render size, or None
        (black)."""
        j = self.footage_frames(k)[i]
        return None if j is None else self._picture("footage", j)

    def finish(self, k: int, i: int, rgb: np.ndarray) -> np.ndarray:
        """What is written for image ``i`` of segment ``k``, from its pixels: as they are without a matte; with
        one, the matte as straight alpha over RGB that is the footage frame (or black) where the matte is 0
        (``--alpha matte``, :func:`engine.store.alpha.rgba_frame`; an image without a matte is opaque), or that
        laid over the footage frame (or black): opaque pixels, the footage outside the matte."""
        if self.matte is None:
            return rgb
        m = self.image_matte(k, i)
        if self.settings.alpha != "matte":
            return rgb if m is None else composite(rgba_frame(rgb, m, self.backdrop(k, i)), self.backdrop(k, i))
        if m is None:
            m = np.full(rgb.shape[:2], 255, np.uint8)
        return rgba_frame(rgb, m, self.backdrop(k, i))

    def _footage_latent(self, j: int):
        """Footage frame ``j`` at the render size: the picture (``(1, 3, H, W)`` in [0, 1]) and its encoding."""
        import torch

        if self._encoded is None or self._encoded[0] != j:
            s, dev = self.settings, self.optimizer.device
            rgb = self.footage.frame(j, s.width, s.height)
            picture = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255).to(dev)
            self._encoded = (j, picture, self.models.vqgan.encode(picture))
        return self._encoded[1], self._encoded[2]

    def _before_steps(self, k: int, i: int):
        """Move the previous image and bring in the footage frame; returns ``(previous image or None, pull)``.

        Motion: the previous image, moved, is encoded back into the latent (VQGAN-CLIP's zoom video).
        Footage: the latent becomes ``blend x latent + (1 - blend) x encoding`` of the image's footage frame
        (the encoding alone at a chain's very first image, where there is no previous image), and the
        steps are pulled towards the frame. Adam's moments carry on: see the README.
        """

        first = i == 0 and k in self.starts  # a chain's very first image: no previous image
        move = None if first or not self.settings.motion_active else self.moves(k)[i]
        j = self.footage_frames(k)[i]
        if (move is None or move.identity) and j is None:
            return None, None
        s, opt = self.settings, self.optimizer
        prev = opt.decode()
        z = opt.z.detach()
        if move is not None and not move.identity:

            z = self.models.vqgan.encode(warp(prev.float(), move))
        pull = None
        if j is not None:
            picture, z_init = self._footage_latent(j)
            blend = 0.0 if first else self.value("footage_blend", k, i)
            z = z_init if blend == 0 else blend * z + (1 - blend) * z_init
            weight = self.value("init_weight", k, i)
            pull = InitPull(z_init if s.init_space == "latent" else picture, weight, s.init_space)
        opt.set_latent(z)
        return prev, pull

    # ------------------------------------------------------------ positions

    def norm(self, k: int, i: int) -> tuple[int, int]:
        """A segment's end is the next segment's start (within a chain: a chain start begins afresh)."""
        nxt = k + 1 < len(self.images) and k + 1 not in self.starts
        return (k + 1, 0) if i >= self.images[k] and nxt else (k, i)

    def at(self, k: int, i: int) -> bool:
        """True when the latent is where it is after ``i`` images of segment ``k``."""
        return self.pos is not None and self.norm(*self.pos) == self.norm(k, i)

    def _positions(self, frm: tuple[int, int], to: tuple[int, int]):
        k, i = frm
        while (k, i) < to:
            if i >= self.images[k]:
                k, i = k + 1, 0
                continue
            yield k, i
            i += 1

    def seek(self, k: int, i: int, keys: list[str], state_dir: Path, warn) -> int:
        """Put the latent where it is after ``i`` images of segment ``k``; returns how many images were re-run."""

        target = self.norm(k, i)
        if self.at(*target):
            return 0
        c = chain_of(self.starts, target[0])
        start = (c, 0)
        snaps = list_snapshots(state_dir)
        self.optimizer.reset(int(self.plan["segments"][c].get("take", 0)), c)
        while True:
            found = latest_on_chain(snaps, keys, *target, first=c)
            if found is None:
                break
            j, snap = found
            state = load_snapshot(snap.path)
            if state is not None and self.optimizer.load(state):
                start = self.norm(j, snap.images)
                break
            warn(f"{snap.path}: damaged resume point, skipped (the images after an earlier one are re-run)")
            snaps.remove(snap)
        n = 0
        for pos in self._positions(start, target):
            self.make_image(*pos)
            n += 1
        self.pos = target
        return n

    # ------------------------------------------------------------ images

    def schedule(self, k: int) -> list[list[int]]:
        if k not in self._schedules:

            self._schedules[k] = image_steps(self.plan["segments"][k])
        return self._schedules[k]

    def targets(self, k: int, i: int, p: int) -> list:
        s = self.settings
        weight = self.value("prompt_weight", k, i) if s.animated("prompt_weight") else None
        out = [(self.guidance.target(k, p, s.prompt_average, self.prompts[k][i], weight), 1.0)]
        if s.style:
            out.append((self.guidance.text(s.style), self.value("style_weight", k, i)))
        return out

    def make_image(self, k: int, i: int) -> tuple[np.ndarray, float | None]:
        """Run image ``i`` of segment ``k``'s steps; returns the image *before* them (the previous image) and the loss
        (None: an image without steps, its matte all black)."""

        s, opt = self.settings, self.optimizer
        take = int(self.plan["segments"][k].get("take", 0))
        m = self.image_matte(k, i)
        if m is not None and is_empty(m):
            # Not generated anywhere: no steps. The latent still takes the motion and the footage (the next image
            # starts from them); the previous image gets its own decode, as no step's forward pass decodes it.
            before, _ = self._before_steps(k, i)
            prev = before if before is not None else opt.decode()
            self.pos = (k, i + 1)
            return to_rgb(prev), None
        before, pull = self._before_steps(k, i)
        matte = None
        if m is not None:
            from engine.render.step.matte import step_matte  # torch: only with a matte

            matte = step_matte(m, self.models.vqgan.factor, opt.device, self.backdrop(k, i))
        # Eq. 1 anchors to where the image starts: the previous image, moved and blended as above.
        anchor = opt.z.detach().clone() if s.l1_weight > 0 else None
        first = None
        parts = self.schedule(k)[i]
        seeds = [sub_seed(s.seed, k, *([f"take{take}"] if take else []), i, step) for step in range(len(parts))]
        draws = opt.image_draws(seeds)  # every step's cutout draws, made before the steps
        for step, p in enumerate(parts):
            draw = draws[step] if draws is not None else None
            out, loss = opt.step(self.targets(k, i, p), seeds[step], anchor, pull, draw, matte)
            if first is None:
                first = out
        self.pos = (k, i + 1)
        return to_rgb(before if before is not None else first), float(loss)

    def decode(self) -> np.ndarray:
        """The current image (the latent after the last image run)."""

        return to_rgb(self.optimizer.decode())

    def state(self) -> dict:
        return self.optimizer.state()


def fit_size(settings, factor: int, warn):
    """Round the frame size down to the VQGAN's block size, saying so (a 17x17 request makes 16x16 frames)."""
    w, h = (
        max(factor, settings.width - settings.width % factor),
        max(factor, settings.height - settings.height % factor),
    )
    if (w, h) != (settings.width, settings.height):
        warn(
            f"--size {settings.width}x{settings.height} rounded to {w}x{h}: the VQGAN works in blocks of {factor} pixels"
        )
        settings = replace(settings, width=w, height=h)
    return settings

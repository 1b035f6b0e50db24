"""The authors' ``latest`` augments for a whole batch at once: static shapes, no host work inside a step.

The same augments, settings and parameter distributions as the kornia pipeline the authors ran
(:func:`engine.render.step.cutouts.augmentations`: kornia 0.9's ``RandomAffine``, ``RandomPerspective``, ``ColorJiggle``,
``RandomErasing``, each with p = 0.7), rebuilt as a few batched tensor ops:

- every cutout goes through every augment; a cutout an augment skips gets that augment's identity
  (``torch.where`` on a per-cutout mask) instead of leaving the batch, so no shape depends on a draw;
- the parameters of all the steps of an image are drawn in one vectorised call (:func:`latest_draws`) from the
  step seeds, before the steps, on the CPU; the warp matrices and the erasing boxes are made there too, so a
  step only reads tensors that are already on the device (no ``.item()``, no host sync, no host branching
  unless the caller allows it for the colour order, see :func:`jiggle`).

Each op equals kornia's for the same parameters to float rounding (``tests/test_cutouts.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from engine.protocol import CUTOUT_IMPL  # noqa: F401 - this module is what the name in the cache keys names

#: The authors' default augment list (``-aug Af Pe Ji Er``), applied in this order.
AUGMENTS = ("Af", "Pe", "Ji", "Er")
#: The probability with which each augment is applied (the authors' p for all four).
P = 0.7
DEGREES, SHEAR = 15.0, 5.0  # RandomAffine(degrees=15, translate=0.1, shear=5)
# kornia reads the scalar ``translate=0.1`` as the range (0, 0.1) = (x, y) maxima: no horizontal shift and a
# vertical one up to 10% (measured on kornia 0.9; tests/test_augment.py holds us to its distributions).
TRANSLATE = (0.0, 0.1)
DISTORTION = 0.7  # RandomPerspective(distortion_scale=0.7)
BRIGHTNESS = CONTRAST = SATURATION = HUE = 0.1  # ColorJiggle(0.1, 0.1, 0.1, 0.1)
ERASE_SCALE, ERASE_RATIO = (0.1, 0.4), (0.3, 1 / 0.3)  # RandomErasing(scale, ratio, same_on_batch=True)
#: The colour steps, by kornia's indices into (brightness, contrast, saturation, hue).
BRIGHT, CONTR, SATUR, HUEI = range(4)


def joint_seed(seeds: Sequence[int]) -> int:
    """One 63-bit seed from a run of step seeds (the draws of those steps come from it)."""
    digest = hashlib.sha256(("latest:" + ":".join(map(str, seeds))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def latest_params(seeds: Sequence[int], n: int, size: int, noise: float = 0.1, p: float = P) -> dict:
    """The raw random parameters of ``len(seeds)`` steps, in kornia's terms, drawn in one vectorised call.

    Returns float64 (int64 ``order``, bool masks) CPU tensors with a leading ``(S,)`` step axis: ``aff_on``,
    ``angle``, ``translations`` (pixels), ``shear_x`` (``(S, n)``, ``(S, n, 2)``); ``per_on``, ``start``, ``end``
    (``(S, n, 4, 2)`` corners); ``jig_on``, ``jig`` (``(S, n, 4)``), ``order`` (``(S, 4)``); ``erase_on``,
    ``xs``, ``ys``, ``widths``, ``heights`` (``(S,)``: one box per step, ``same_on_batch``); ``facs`` (``(S, n)``).
    """
    s = len(seeds)
    g = torch.Generator().manual_seed(joint_seed(seeds))

    def u(lo, hi, *shape):  # float64: the matrices are built from these exactly, then rounded once
        return torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    # Always drawn in this order, whatever augments a render uses, so one augment's draws never shift another's.
    out = {"aff_on": u(0, 1, s, n) < p, "angle": u(-DEGREES, DEGREES, s, n)}
    tx, ty = TRANSLATE
    out["translations"] = torch.stack([u(-tx, tx, s, n), u(-ty, ty, s, n)], -1) * size
    out["shear_x"] = u(-SHEAR, SHEAR, s, n)
    out["per_on"] = u(0, 1, s, n) < p
    out["start"], out["end"] = perspective_points(u(0, 1, s, n, 4, 2), size)
    out["jig_on"] = u(0, 1, s, n) < p
    out["jig"] = torch.stack(
        [u(1 - BRIGHTNESS, 1 + BRIGHTNESS, s, n), u(1 - CONTRAST, 1 + CONTRAST, s, n),
         u(1 - SATURATION, 1 + SATURATION, s, n), u(-HUE, HUE, s, n)], -1
    )  # fmt: skip
    out["order"] = torch.rand(s, 4, generator=g).argsort(-1)  # a uniform random permutation per step, as randperm(4)
    out["erase_on"] = u(0, 1, s) < p
    box = erase_box(u(*ERASE_SCALE, s), u(ERASE_RATIO[0], 1, s), u(1, ERASE_RATIO[1], s), u(0, 1, s), u(0, 1, s),
                    u(0, 1, s), size)  # fmt: skip
    out["xs"], out["ys"], out["widths"], out["heights"] = box
    out["facs"] = u(0, noise, s, n)
    return out


def latest_draws(
    seeds: Sequence[int], n: int, size: int, noise: float = 0.1, device="cpu", p: float = P
) -> dict[str, torch.Tensor]:
    """Everything ``len(seeds)`` steps of ``latest`` cutouts draw, ready for a step: one vectorised call.

    Parameters
    ----------
    seeds : sequence of int
        The steps' seeds; the same seeds give the same draws (bit for bit on the CPU).
    n, size : int
        Cutouts per step and their side.
    noise : float
        Noise scales are drawn from U(0, ``noise``); 0 draws no noise.
    device : str or torch.device
        Where the draws go (the noise itself is drawn there, by a generator seeded from ``seeds``).
    p : float
        Probability of each augment.

    Returns
    -------
    dict
        Tensors with a leading ``(S,)`` step axis: ``aff``/``per`` (``(S, n, 3, 3)`` normalised source-from-
        destination warps, identity where skipped) and ``aff_on``/``per_on`` (``(S, n, 1, 1, 1)`` bool);
        ``jig`` (``(S, n, 4, 1, 1)``: brightness, contrast, saturation, hue factors), ``jig_on``, ``order``
        (``(S, 4)`` int64, the colour steps' order; ``order_host`` the same as a list of tuples); ``erase``
        (``(S, 1, 1, size, size)`` bool, the box where it fires); ``facs`` (``(S, n, 1, 1, 1)``) and ``eps``
        (``(S, n, 3, size, size)``) when ``noise``.
    """
    prm = latest_params(seeds, n, size, noise, p)
    s = len(seeds)
    eye = torch.eye(3, dtype=torch.float64)
    aff = affine_matrix(prm["angle"].flatten(), prm["translations"].flatten(0, 1), prm["shear_x"].flatten(), size)
    per = homography(prm["end"].flatten(0, 1), prm["start"].flatten(0, 1))  # destination to source directly
    on = {k: prm[f"{k}_on"][..., None, None, None] for k in ("aff", "per", "jig")}
    out = {
        "aff": torch.where(on["aff"][..., 0], normalised(torch.linalg.inv(aff), size).view(s, n, 3, 3), eye),
        "per": torch.where(on["per"][..., 0], normalised(per, size).view(s, n, 3, 3), eye),
        "jig": prm["jig"][..., None, None],
        "order": prm["order"],
        "erase": (
            erase_mask(prm["xs"], prm["ys"], prm["widths"], prm["heights"], size) & prm["erase_on"][:, None, None]
        )[:, None, None],
        **{f"{k}_on": v for k, v in on.items()},
    }
    if noise:
        out["facs"] = prm["facs"][..., None, None, None]
    out = {k: (v.float() if v.is_floating_point() else v).to(device, non_blocking=True) for k, v in out.items()}
    out["order_host"] = [tuple(r) for r in prm["order"].tolist()]  # read here, on the host, never inside a step
    if noise:
        dev = torch.device(device)
        gd = torch.Generator(device=dev).manual_seed(joint_seed(seeds) ^ 1)
        out["eps"] = torch.randn(s, n, 3, size, size, generator=gd, device=dev)
    return out


class ImageDraws:
    """The draws of an image's steps, ``draws[i] -> (draws, j)``: made :data:`CHUNK` steps at a time, each chunk
    in one :func:`latest_draws` call from its steps' seeds (the chunks bound the memory the noise takes)."""

    CHUNK = 8

    def __init__(self, seeds: Sequence[int], n: int, size: int, noise: float, device) -> None:
        self.seeds, self.n, self.size, self.noise, self.device = list(seeds), n, size, noise, device
        self._chunk, self._draws = -1, None

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> tuple[dict, int]:
        c = i // self.CHUNK
        if c != self._chunk:
            seeds = self.seeds[c * self.CHUNK : (c + 1) * self.CHUNK]
            self._draws, self._chunk = latest_draws(seeds, self.n, self.size, self.noise, self.device), c
        return self._draws, i - c * self.CHUNK


# ---------------------------------------------------------------- geometry


def affine_matrix(angle, translations, shear_x, size: int) -> torch.Tensor:
    """kornia's ``RandomAffine`` matrix (pixels, destination from source) for its drawn parameters.

    ``angle`` and ``shear_x`` in degrees, ``(B,)``; ``translations`` in pixels, ``(B, 2)``; no scaling, no y shear
    (the authors' settings). As ``kornia.geometry.get_affine_matrix2d``: a rotation by ``-angle`` about the centre,
    the translation, then the shear about the centre.
    """
    c = (size / 2 - 0.5) * torch.ones_like(angle)
    a = torch.deg2rad(-angle)
    al, be = torch.cos(a), torch.sin(a)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack(
        [al, be, (1 - al) * c - be * c + translations[:, 0], -be, al, be * c + (1 - al) * c + translations[:, 1],
         zero, zero, one], -1
    ).view(-1, 3, 3)  # fmt: skip
    t = torch.tan(torch.deg2rad(shear_x))
    shear = torch.stack([one, -t, t * c, zero, one, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rot @ shear


def perspective_points(rand: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """kornia's ``RandomPerspective`` corners (``basic`` sampling) from its ``(..., 4, 2)`` uniform draws."""
    e = size - 1 if size > 1 else 1
    start = torch.tensor([[0, 0], [e, 0], [e, e], [0, e]], dtype=rand.dtype).expand(rand.shape)
    factor = DISTORTION * (size if size > 1 else 0) / 2
    sign = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=rand.dtype)
    return start, start + factor * rand * sign


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The ``(B, 3, 3)`` homography taking the 4 points ``src`` to ``dst`` (``(B, 4, 2)``), by an 8x8 solve."""
    x, y, u_, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]
    z, o = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, o, z, z, z, -u_ * x, -u_ * y], -1)
    rows_v = torch.stack([z, z, z, x, y, o, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)
    h = torch.linalg.solve(a, torch.cat([u_, v], 1))
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)


def normalised(m: torch.Tensor, size: int) -> torch.Tensor:
    """A pixel-space matrix in grid_sample's coordinates (``align_corners=False``: -1 and 1 on the outer edges)."""
    n = torch.tensor([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]], dtype=m.dtype)
    return n @ m @ torch.linalg.inv(n)


def warp(batch: torch.Tensor, src_from_dst: torch.Tensor) -> torch.Tensor:
    """Bilinear warp of ``(n, C, H, W)`` by ``(n, 3, 3)`` normalised source-from-destination matrices, zero padding.

    The grid is built as kornia's ``warp_perspective`` builds it; for an affine matrix the division is by an exact 1.
    """
    _, _, h, w = batch.shape
    m = src_from_dst.to(batch.dtype)[:, :, :, None, None]
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=batch.device, dtype=batch.dtype)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=batch.device, dtype=batch.dtype)[:, None]
    den = m[:, 2, 0] * xs + m[:, 2, 1] * ys + m[:, 2, 2]
    gx = (m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]) / den
    gy = (m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]) / den
    return F.grid_sample(batch, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------- colour


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """``x.clamp(0, 1)`` with an identity gradient on the closed range (kornia's ``_clamp_unit_range``)."""
    c = x.clamp(0.0, 1.0)
    return torch.where(c == x, x, c)


def brightness(x, f):
    return (x + (f - 1)).clamp(0.0, 1.0)


def contrast(x, f):
    return (x * f).clamp(0.0, 1.0)


def saturation(x, f):
    """kornia's float32 ``adjust_saturation``: HSV saturation scaled, written in RGB."""
    mx, mn = x.amax(-3, keepdim=True), x.amin(-3, keepdim=True)
    delta = mx - mn
    sat = (delta / torch.where(mx == 0, torch.ones_like(mx), mx + 1e-8) * f).clamp(0, 1)
    adj = mx * sat
    return (x - mn) * (adj / torch.where(delta == 0, torch.ones_like(delta), delta)) + (mx - adj)


def hue(x, f):
    """kornia's ``adjust_hue`` by ``f`` turns: RGB to HSV, the hue rotated, back."""
    mx, mn = x.amax(-3), x.amin(-3)
    dc = mx - mn
    s = dc / torch.where(mx == 0, torch.ones_like(mx), mx + 1e-8)
    dc = torch.where(dc == 0, torch.ones_like(dc), dc)
    rc, gc, bc = torch.unbind(mx.unsqueeze(-3) - x, dim=-3)
    r, g, b = torch.unbind(x, dim=-3)
    h = torch.where((r >= g) & (r >= b), bc - gc, torch.where(g >= b, (rc - bc) + 2.0 * dc, (gc - rc) + 4.0 * dc))
    h = 2.0 * math.pi * ((h / dc / 6.0) % 1.0)
    h = h.masked_fill(h >= 2.0 * math.pi, 0.0)
    h = torch.remainder(h + f[..., 0, :, :] * (2 * math.pi), 2 * math.pi)
    h = h.masked_fill(h >= 2 * math.pi, 0.0) / (2 * math.pi)
    v = mx
    hi = torch.floor(h * 6) % 6
    fr = ((h * 6) % 6) - hi
    pp, q, t = v * (1.0 - s), v * (1.0 - fr * s), v * (1.0 - (1.0 - fr) * s)
    hi = hi.long().clamp(0, 5)
    m0, m1, m2, m3, m4 = (hi == k for k in range(5))
    r = torch.where(m0, v, torch.where(m1, q, torch.where(m2, pp, torch.where(m3, pp, torch.where(m4, t, v)))))
    g = torch.where(m0, t, torch.where(m1, v, torch.where(m2, v, torch.where(m3, q, torch.where(m4, pp, pp)))))
    b = torch.where(m0, pp, torch.where(m1, pp, torch.where(m2, t, torch.where(m3, v, torch.where(m4, v, q)))))
    return torch.stack((r, g, b), dim=-3)


STEPS = (brightness, contrast, saturation, hue)


def jiggle(x: torch.Tensor, factors: torch.Tensor, order) -> torch.Tensor:
    """kornia's ``ColorJiggle`` on every cutout of ``x`` (``(n, 3, H, W)``).

    ``factors`` is ``(n, 4, 1, 1)``: brightness, contrast, saturation, hue (turns). ``order`` is the colour steps'
    order: a tuple of ints runs the four steps (the eager path: the order is read on the host when the draws are
    made, never from the device); a ``(4,)`` tensor computes all four at each position and selects on the device
    (the captured path: one graph serves every order, at the price of sixteen steps instead of four).
    """
    x = clamp_unit(x)
    fs = [factors[:, k : k + 1] for k in range(4)]
    if isinstance(order, tuple):
        for k in order:
            x = STEPS[k](x, fs[k])
        return clamp_unit(x)
    for r in range(4):
        o = order[r]
        outs = [step(x, f) for step, f in zip(STEPS, fs)]
        x = torch.where(o == 0, outs[0], torch.where(o == 1, outs[1], torch.where(o == 2, outs[2], outs[3])))
    return clamp_unit(x)


# ---------------------------------------------------------------- erasing


def erase_box(scale, r1, r2, pick, xr, yr, size: int) -> tuple:
    """kornia's ``RandomErasing`` box from its draws: area share, the two aspect ratio draws and the pick between
    them, and the position draws. Returns ``(xs, ys, widths, heights)`` (float, whole pixels)."""
    area = scale * size * size
    ratio = torch.where(pick.round().bool(), r1, r2)
    hs = torch.round((area * ratio) ** 0.5).clamp(1.0, size)
    ws = torch.round((area / ratio) ** 0.5).clamp(1.0, size)
    xs = (xr * (size - ws + 1)).floor()
    ys = (yr * (size - hs + 1)).floor()
    return xs, ys, ws.floor(), hs.floor()


def erase_mask(xs, ys, ws, hs, size: int) -> torch.Tensor:
    """``(B, size, size)`` bool: the boxes ``[x, x + w) x [y, y + h)``."""
    i = torch.arange(size, dtype=xs.dtype)
    col = (i >= xs[:, None]) & (i < (xs + ws)[:, None])
    row = (i >= ys[:, None]) & (i < (ys + hs)[:, None])
    return row[:, :, None] & col[:, None, :]


# ---------------------------------------------------------------- the cutouts


def step_draws(draws: dict, i: int) -> dict:
    """Step ``i``'s slice of :func:`latest_draws` (views: no copy), with the colour order also as host ints."""
    out = {k: v[i] for k, v in draws.items() if k != "order_host"}
    out["order_host"] = draws["order_host"][i] if "order_host" in draws else None
    return out


def augment_batch(batch: torch.Tensor, d: dict, augments: tuple[str, ...] = AUGMENTS, static: bool = False):
    """The ``latest`` augments of one step on ``batch`` (``(n, 3, size, size)``), from its draws ``d``.

    ``static`` selects the colour order on the device (for a captured step) instead of on the host.
    """
    for code in augments:
        if code == "Af":
            batch = torch.where(d["aff_on"], warp(batch, d["aff"]), batch)
        elif code == "Pe":
            batch = torch.where(d["per_on"], warp(batch, d["per"]), batch)
        elif code == "Ji":
            order = d["order"] if static or d.get("order_host") is None else d["order_host"]
            batch = torch.where(d["jig_on"], jiggle(batch, d["jig"], order), batch)
        elif code == "Er":
            batch = batch.masked_fill(d["erase"], 0.0)
        else:
            raise ValueError(f"unknown augments [{code!r}]; expected codes from {AUGMENTS}")
    if "facs" in d:
        batch = batch + d["facs"] * d["eps"]
    return batch

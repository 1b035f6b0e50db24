"""engine.render.step.augment: the batched ``latest`` augments against kornia's (same ops, same distributions, no host work)."""

from __future__ import annotations

import kornia.augmentation as K
import kornia.enhance as KE
import pytest
import torch
from scipy.stats import ks_2samp

from engine.render.step import augment as A
from engine.render.step.cutouts import latest_batched, make_cutouts, pool_whole

SIZE, N = 48, 8


def _batch(n=N, size=SIZE, seed=0, grad=False):
    # A smooth image plus fine detail: bilinear sampling errors show on both, and values reach 0 and 1.
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(n, 3, 6, 6, generator=g), size, mode="bilinear")
    x = (1.2 * smooth + 0.2 * torch.rand(n, 3, size, size, generator=g) - 0.1).clamp(0, 1)
    return x.requires_grad_(grad)


def _kornia_and_ours(aug, ours_fn, size=SIZE):
    """kornia's output and ours for the same drawn parameters, and both gradients for the same weights.

    kornia runs in float64 (its float32 rounding alone reaches ~1e-5 at a warp's sharp edges). Ours runs in
    float32 at 48 px; at CLIP's 224 px in float64 too, since there a float32 sampling grid is off by ~1e-5 px
    in any implementation, which the step from the image to the zero padding turns into ~3e-5.
    """
    ours_dtype = torch.float32 if size <= 64 else torch.float64
    torch.manual_seed(3)
    prm = aug.forward_parameters(torch.Size((N, 3, size, size)))
    prm64 = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in prm.items()}
    w = torch.rand(N, 3, size, size, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    outs = []
    for fn, dtype in ((lambda x: aug(x, params=prm64), torch.float64), (lambda x: ours_fn(x, prm), ours_dtype)):
        x = _batch(size=size).to(dtype).requires_grad_(True)
        y = fn(x)
        (y * w.to(dtype)).sum().backward()
        outs.append((y.detach().float(), x.grad.float()))
    return outs


@pytest.mark.parametrize("size", [SIZE, 224])
def test_affine_equals_kornia_for_the_same_parameters(size):
    aug = K.RandomAffine(degrees=15, translate=0.1, shear=5, p=1.0, padding_mode="zeros", keepdim=True)

    def ours(x, prm):
        m = A.affine_matrix(prm["angle"].double(), prm["translations"].double(), prm["shear_x"].double(), size)
        return A.warp(x, A.normalised(torch.linalg.inv(m), size))

    (ky, kg), (oy, og) = _kornia_and_ours(aug, ours, size)
    assert (ky - _batch(size=size)).abs().max() > 0.1  # it moved the image
    torch.testing.assert_close(oy, ky, rtol=0, atol=1e-5)
    torch.testing.assert_close(og, kg, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [SIZE, 224])
def test_perspective_equals_kornia_for_the_same_parameters(size):
    aug = K.RandomPerspective(distortion_scale=0.7, p=1.0)

    def ours(x, prm):
        h = A.homography(prm["end_points"].double(), prm["start_points"].double())
        return A.warp(x, A.normalised(h, size))

    (ky, kg), (oy, og) = _kornia_and_ours(aug, ours, size)
    torch.testing.assert_close(oy, ky, rtol=0, atol=1e-5)
    torch.testing.assert_close(og, kg, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("ours", "theirs", "factor"),
    [
        (A.brightness, lambda x, f: KE.adjust_brightness(x, f - 1), 1.08),
        (A.contrast, KE.adjust_contrast, 0.93),
        (A.saturation, KE.adjust_saturation, 1.07),
        (A.hue, lambda x, f: KE.adjust_hue(x, f * 2 * torch.pi), -0.07),
    ],
)
def test_each_colour_step_equals_kornia(ours, theirs, factor):
    f = torch.full((N, 1, 1, 1), factor) * torch.linspace(0.9, 1.1, N)[:, None, None, None] ** (factor > 0)
    ys, gs = [], []
    for fn in (ours, theirs):
        x = _batch(grad=True)
        y = fn(x, f)
        y.pow(2).sum().backward()
        ys.append(y.detach())
        gs.append(x.grad)
    assert (ys[0] - _batch()).abs().max() > 0.01
    torch.testing.assert_close(ys[0], ys[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(gs[0], gs[1], rtol=0, atol=1e-5)


def test_jiggle_equals_kornia_for_the_same_parameters_in_both_order_modes():
    aug = K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=1.0)

    def factors(prm):
        keys = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
        return torch.stack([prm[k] for k in keys], -1)[..., None, None]

    def ours(x, prm):
        return A.jiggle(x, factors(prm), tuple(prm["order"].tolist()))

    (ky, kg), (oy, og) = _kornia_and_ours(aug, ours)
    torch.testing.assert_close(oy, ky, rtol=0, atol=1e-5)
    torch.testing.assert_close(og, kg, rtol=0, atol=1e-5)
    # The device-side order (a captured step) computes exactly what the host order does.
    torch.manual_seed(3)
    prm = aug.forward_parameters(torch.Size((N, 3, SIZE, SIZE)))
    x = _batch()
    assert torch.equal(A.jiggle(x, factors(prm), prm["order"]), A.jiggle(x, factors(prm), tuple(prm["order"].tolist())))


def test_erasing_equals_kornia_for_the_same_parameters():
    aug = K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=1.0)

    def ours(x, prm):
        mask = A.erase_mask(prm["xs"][:1], prm["ys"][:1], prm["widths"][:1], prm["heights"][:1], SIZE)
        return x.masked_fill(mask[:, None], 0.0)

    (ky, kg), (oy, og) = _kornia_and_ours(aug, ours)
    assert (ky == 0).float().mean() > 0.05
    assert torch.equal(oy, ky) and torch.equal(og, kg)


def _kornia_params(aug, calls, n, size):
    torch.manual_seed(0)
    out = [aug.forward_parameters(torch.Size((n, 3, size, size))) for _ in range(calls)]
    return {
        k: torch.cat([o[k].reshape(n, -1).float() for o in out])
        for k in out[0]
        if torch.is_tensor(out[0][k]) and out[0][k].shape[:1] == (n,)
    }


def _ks(a, b):
    return ks_2samp(a.flatten().numpy(), b.flatten().numpy()).pvalue


def test_draws_follow_kornias_distributions():
    calls, n, size = 150, 16, 224
    ours = A.latest_params(list(range(calls)), n, size)
    flat = {k: v.reshape(calls * n, -1).float() for k, v in ours.items() if v.dim() > 1 and k != "order"}
    pairs = {
        K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7): [
            ("angle", "angle"), ("translations", "translations"), ("shear_x", "shear_x"), ("aff_on", "batch_prob")
        ],
        K.RandomPerspective(distortion_scale=0.7, p=0.7): [("end", "end_points"), ("per_on", "batch_prob")],
        K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7): [("jig_on", "batch_prob")],
    }  # fmt: skip
    for aug, keys in pairs.items():
        theirs = _kornia_params(aug, calls, n, size)
        for mine, their in keys:
            a, b = flat[mine], theirs[their]
            if a.shape[-1] > 1 and a.dim() > 1:  # per coordinate
                for j in range(a.shape[-1]):
                    assert _ks(a[:, j], b[:, j]) > 1e-3, (mine, j)
            else:
                assert _ks(a, b) > 1e-3, mine
    theirs = _kornia_params(K.ColorJiggle(0.1, 0.1, 0.1, 0.1, p=0.7), calls, n, size)
    keys = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
    for j, key in enumerate(keys):
        assert _ks(ours["jig"][..., j], theirs[key]) > 1e-3, key
    # The order: every colour step first in about a quarter of the steps, as randperm(4).
    first = torch.bincount(ours["order"][:, 0], minlength=4).float() / calls
    assert (first - 0.25).abs().max() < 0.12, first
    # Erasing: one box a step; its sides and corner spread as kornia's.
    theirs = _kornia_params(
        K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7), calls, 1, size
    )
    for mine, their in (
        ("widths", "widths"),
        ("heights", "heights"),
        ("xs", "xs"),
        ("ys", "ys"),
        ("erase_on", "batch_prob"),
    ):
        assert _ks(ours[mine], theirs[their]) > 1e-3, mine
    # Noise scales: U(0, 0.1).
    assert _ks(ours["facs"], torch.rand(calls * n, generator=torch.Generator().manual_seed(1)) * 0.1) > 1e-3
    # And the checks can fail: another distribution is told apart.
    assert _ks(flat["angle"], theirs["xs"]) < 1e-6


def test_skipped_cutouts_get_the_identity_and_shapes_never_depend_on_draws():
    img = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    d = A.latest_draws(list(range(4)), 16, 32, noise=0)
    plain = pool_whole(img, 32).expand(16, -1, -1, -1)
    for i in range(4):
        cuts = latest_batched(img, 16, 32, d, i, augments=("Af", "Pe"))
        assert cuts.shape == (16, 3, 32, 32)
        skipped = ~(d["aff_on"][i] | d["per_on"][i]).flatten()
        assert skipped.any() and torch.equal(cuts[skipped], plain[skipped])
        assert not torch.equal(cuts[~skipped], plain[~skipped])


def test_one_call_for_many_steps_equals_the_per_step_slices_and_the_static_order():
    img = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    d = A.latest_draws([5, 6, 7], 6, 32)
    for i in range(3):
        host = latest_batched(img, 6, 32, d, i)
        assert torch.equal(host, latest_batched(img, 6, 32, d, i, static=True))
    # The draws are a function of the seeds: the same seeds again give the same tensors.
    again = A.latest_draws([5, 6, 7], 6, 32)
    assert all(torch.equal(d[k], again[k]) for k in d if torch.is_tensor(d[k]))
    assert not torch.equal(d["aff"], A.latest_draws([5, 6, 8], 6, 32)["aff"])


def test_a_step_makes_no_host_sync():
    # Every draw is made before the step; a step over CPU draws runs no .item()/.tolist() on its tensors.
    img = torch.rand(1, 3, 40, 40, requires_grad=True)
    d = A.latest_draws([1], 8, 32)
    calls = []
    orig = torch.Tensor.item, torch.Tensor.tolist
    try:
        torch.Tensor.item = lambda self: calls.append("item") or orig[0](self)
        torch.Tensor.tolist = lambda self: calls.append("tolist") or orig[1](self)
        latest_batched(img, 8, 32, d, 0, static=True).sum().backward()
    finally:
        torch.Tensor.item, torch.Tensor.tolist = orig
    assert calls == []


def test_batched_is_the_default_and_kornia_stays_selectable():
    img = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    d = A.latest_draws([11], 6, 32, 0.1, img.device)
    assert torch.equal(make_cutouts(img, 6, 32, 11), latest_batched(img, 6, 32, d, 0))
    assert not torch.equal(make_cutouts(img, 6, 32, 11), make_cutouts(img, 6, 32, 11, impl="kornia"))
    with pytest.raises(ValueError, match="implementation"):
        make_cutouts(img, 6, 32, 11, impl="other")

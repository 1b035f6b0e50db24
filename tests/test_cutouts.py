"""engine.render.step.cutouts: seeded draws, the authors' ``latest`` cutouts, exact crop resampling, gradients."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from engine.render.step.cutouts import AUGMENTS, CUTOUT_METHODS, augmentations, crop_draws, make_cutouts, resample_crops
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))


def _image(h, w, seed=0, grad=False):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)).requires_grad_(grad)


def _plain_crops(image, sizes, ox, oy, size):
    """Each crop sliced out and resampled on its own: average pooling down, bilinear up."""
    cuts = []
    for s, x, y in zip(sizes.tolist(), ox.tolist(), oy.tolist()):
        crop = image[..., y : y + s, x : x + s]
        if s >= size:
            cuts.append(F.adaptive_avg_pool2d(crop, size))
        else:
            cuts.append(F.interpolate(crop, (size, size), mode="bilinear", align_corners=False))
    return torch.cat(cuts)


@pytest.mark.parametrize("method", CUTOUT_METHODS)
def test_a_seed_fixes_the_cutouts_and_leaves_the_global_generator_alone(method):
    img = _image(40, 56)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = make_cutouts(img, 6, 32, seed=7, method=method)
    b = make_cutouts(img, 6, 32, seed=7, method=method)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, make_cutouts(img, 6, 32, seed=8, method=method))
    # Different cutouts of one call differ too (they are not one draw repeated).
    assert not torch.equal(a[0], a[1])


def test_cutouts_are_bit_identical_in_another_process():
    code = (
        "import hashlib, torch\nfrom engine.render.step.cutouts import make_cutouts\n"
        "img = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))\n"
        "for m in ('latest', 'crops'):\n"
        "    print(hashlib.sha256(make_cutouts(img, 6, 32, seed=11, method=m).numpy().tobytes()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    img = _image(40, 56)
    here = [
        hashlib.sha256(make_cutouts(img, 6, 32, seed=11, method=m).numpy().tobytes()).hexdigest() for m in CUTOUT_METHODS
    ]
    assert out.split() == here


def test_latest_without_augments_or_noise_is_the_pooled_whole_image():
    img = _image(50, 70)
    cuts = make_cutouts(img, 5, 32, seed=3, augments=(), noise=0)
    pooled = (F.adaptive_avg_pool2d(img, 32) + F.adaptive_max_pool2d(img, 32)) / 2
    assert cuts.shape == (5, 3, 32, 32)
    assert torch.equal(cuts, pooled.expand(5, -1, -1, -1))


def test_latest_noise_scale_per_cutout_is_within_the_limit():
    img = _image(48, 48)
    plain = make_cutouts(img, 64, 32, seed=5, augments=(), noise=0)
    noisy = make_cutouts(img, 64, 32, seed=5, augments=(), noise=0.1)
    sd = (noisy - plain).flatten(1).std(1)
    assert sd.max() < 0.1 * 1.05 and sd.min() >= 0
    # Uniform on [0, 0.1]: the mean scale is near 0.05, and the scales spread over the range.
    assert abs(sd.mean().item() - 0.05) < 0.012
    assert sd.max() - sd.min() > 0.06


@pytest.mark.parametrize("code", ["Af", "Pe", "Ji"])
def test_each_augment_fires_on_about_70_percent_of_cutouts(code):
    img = _image(48, 40)
    base = make_cutouts(img, 32, 32, seed=0, augments=(), noise=0)
    changed = []
    for seed in range(20):
        cuts = make_cutouts(img, 32, 32, seed=seed, augments=(code,), noise=0)
        changed += [not torch.equal(c, b) for c, b in zip(cuts, base)]
    frac = sum(changed) / len(changed)  # 640 cutouts: binomial sd 0.018
    assert abs(frac - 0.7) < 0.07, frac


def test_erasing_fires_on_about_70_percent_of_calls_with_one_box_for_the_whole_batch():
    img = _image(24, 24)
    base = make_cutouts(img, 3, 16, seed=0, augments=(), noise=0)
    fired = 0
    for seed in range(200):
        cuts = make_cutouts(img, 3, 16, seed=seed, augments=("Er",), noise=0)
        erased = cuts != base
        if erased.any():
            fired += 1
            assert torch.equal(erased[0], erased[1]) and torch.equal(erased[0], erased[2])  # same_on_batch
            assert (cuts[erased] == 0).all()
            area = erased[0, 0].float().mean().item()
            assert 0.05 < area < 0.45  # scale (0.1, 0.4) of the cutout, up to rounding to whole pixels
    assert abs(fired / 200 - 0.7) < 0.1, fired


def test_latest_equals_the_port_of_the_authors_make_cutouts_bit_for_bit():
    from reference_step import MakeCutouts

    for h, w, n, size, seed in [(64, 64, 8, 32, 0), (45, 70, 5, 24, 1), (20, 13, 4, 32, 99)]:
        img = _image(h, w, seed)
        ours = make_cutouts(img, n, size, seed, impl="kornia")
        theirs = MakeCutouts(size, n)(img, seed)
        assert torch.equal(ours, theirs)


def test_latest_gradient_matches_the_port():
    from reference_step import MakeCutouts

    weights = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grads = []
    for cut in (lambda im: make_cutouts(im, 6, 32, seed=4, impl="kornia"), lambda im: MakeCutouts(32, 6)(im, 4)):
        img = _image(40, 52, grad=True)
        (cut(img) * weights).sum().backward()
        grads.append(img.grad)
    assert grads[0].abs().sum() > 0 and torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_the_augment_pipeline_is_built_once():
    assert augmentations() is augmentations()
    assert augmentations(AUGMENTS) is augmentations()
    assert [type(m).__name__ for m in augmentations()] == [
        "RandomAffine",
        "RandomPerspective",
        "ColorJiggle",
        "RandomErasing",
    ]


@pytest.mark.parametrize(("h", "w", "size"), [(97, 130, 32), (64, 64, 32), (33, 90, 32), (20, 27, 32), (9, 9, 16)])
def test_crops_match_each_crop_resampled_on_its_own(h, w, size):
    img = _image(h, w, seed=h)
    sizes, ox, oy, flips, facs, eps = crop_draws(h, w, 12, size, seed=h)
    ref = _plain_crops(img, sizes, ox, oy, size)
    torch.testing.assert_close(resample_crops(img, sizes, ox, oy, size), ref, rtol=0, atol=1e-5)
    # make_cutouts adds the flips and the noise of the same draws.
    ref = torch.where(flips[:, None, None, None], ref.flip(-1), ref) + facs * eps
    torch.testing.assert_close(make_cutouts(img, 12, size, seed=h, method="crops"), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("h", "w", "size"), [(97, 130, 32), (20, 27, 32)])
def test_crop_gradients_match_each_crop_resampled_on_its_own(h, w, size):
    sizes, ox, oy, *_ = crop_draws(h, w, 8, size, seed=2)
    weights = torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(3))
    grads = []
    for resample in (resample_crops, _plain_crops):
        img = _image(h, w, grad=True)
        (resample(img, sizes, ox, oy, size) * weights).sum().backward()
        grads.append(img.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("h", "w", "size"), [(97, 130, 32), (20, 27, 32)])
def test_crops_have_no_half_pixel_shift(h, w, size):
    # On a horizontal ramp, value = column index, a crop's cutout averages to its columns' mean exactly:
    # the resampling is centred on the crop. A half-pixel shift moves the average by 0.5.
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 3, h, w).contiguous()
    sizes, ox, oy, *_ = crop_draws(h, w, 16, size, seed=1)
    means = resample_crops(ramp, sizes, ox, oy, size).mean((1, 2, 3))
    torch.testing.assert_close(means, ox + (sizes - 1) / 2, rtol=0, atol=1e-4, check_dtype=False)
    # The check is sensitive: the old resampling (roi_align without alignment) is off by half a pixel.
    from torchvision.ops import roi_align

    boxes = torch.stack([torch.zeros(16), ox, oy, ox + sizes, oy + sizes], 1).float()
    old = roi_align(ramp, boxes, output_size=size, sampling_ratio=2, aligned=False).mean((1, 2, 3))
    assert ((old - (ox + (sizes - 1) / 2)).abs() > 0.2).all()
    # And shifting the image by one pixel moves the cutouts' values by exactly one.
    moved = resample_crops(ramp + 1, sizes, ox, oy, size)
    torch.testing.assert_close(moved - 1, resample_crops(ramp, sizes, ox, oy, size), rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", CUTOUT_METHODS)
@pytest.mark.parametrize(("h", "w"), [(30, 70), (70, 30), (12, 20)])
def test_non_square_and_small_images_give_full_size_differentiable_cutouts(method, h, w):
    img = _image(h, w, grad=True)
    cuts = make_cutouts(img, 4, 32, seed=0, method=method)
    assert cuts.shape == (4, 3, 32, 32) and torch.isfinite(cuts).all()
    cuts.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0 and torch.isfinite(img.grad).all()


def test_crop_sizes_span_the_input_size_to_the_short_side():
    sizes, ox, oy, *_ = crop_draws(300, 200, 500, 64, seed=0)
    assert sizes.min() >= 64 and sizes.max() <= 200 and sizes.max() > 180 and sizes.min() < 70
    assert (ox >= 0).all() and (ox + sizes <= 200).all() and (oy >= 0).all() and (oy + sizes <= 300).all()
    small, *_ = crop_draws(300, 200, 500, 64, seed=0, cutout_pow=3.0)
    assert small.float().mean() < sizes.float().mean()


def test_unknown_method_or_augment_is_refused():
    with pytest.raises(ValueError, match="cutout method"):
        make_cutouts(_image(8, 8), 2, 8, seed=0, method="original")
    with pytest.raises(ValueError, match="augments"):
        make_cutouts(_image(8, 8), 2, 8, seed=0, augments=("Xx",))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", CUTOUT_METHODS)
def test_the_same_draws_on_the_gpu_and_its_generator_untouched(method):
    img = _image(64, 80)
    torch.cuda.manual_seed(5)
    state = torch.cuda.get_rng_state()
    # The batched latest cutouts draw their noise on the image's device: compared without noise.
    noise = 0.0 if method == "latest" else 0.1
    gpu = make_cutouts(img.cuda(), 8, 32, seed=3, method=method, noise=noise)
    assert gpu.device.type == "cuda"
    assert torch.equal(torch.cuda.get_rng_state(), state)
    cpu = make_cutouts(img, 8, 32, seed=3, method=method, noise=noise)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)

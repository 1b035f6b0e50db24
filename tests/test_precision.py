"""--precision (engine.render.step.precision) and the captured step (engine.render.step.graph): formats per device, loss parity."""

from __future__ import annotations

import pytest
import torch

from engine.render.step.precision import PRECISIONS, cpu_has_bf16, step_precision
from tests.small_models import load_small, small_settings

CUDA = torch.cuda.is_available()


def _cpuinfo_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    return "avx512_bf16" in text or "amx_bf16" in text


def test_bf16_units_are_detected_once():
    assert cpu_has_bf16() == (_cpuinfo_bf16() or "AMX" in torch.backends.cpu.get_cpu_capability())
    assert cpu_has_bf16.cache_info().currsize == 1


def test_what_each_precision_means_per_device():
    for dev in ("cpu", "cuda", "mps"):
        fp32 = step_precision("fp32", dev)
        assert (fp32.clip_dtype, fp32.decoder_dtype, fp32.tf32) == (None, None, False)
    cuda = step_precision("mixed", "cuda")
    assert cuda.clip_dtype == torch.float16 and cuda.tf32 and cuda.decoder_dtype is None
    cpu = step_precision("mixed", "cpu")
    bf16 = torch.bfloat16 if cpu_has_bf16() else None
    assert cpu.clip_dtype == bf16 and cpu.decoder_dtype == bf16 and not cpu.tf32
    mps = step_precision("mixed", "mps")
    assert (mps.clip_dtype, mps.decoder_dtype, mps.tf32) == (None, None, False)
    assert PRECISIONS == ("mixed", "fp32")
    with pytest.raises(ValueError, match="precision"):
        step_precision("fp16", "cpu")


def test_tf32_is_on_only_inside_the_step_and_restored():
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn
    before = m.allow_tf32, c.allow_tf32
    m.allow_tf32 = c.allow_tf32 = False
    try:
        with step_precision("mixed", "cuda").matmuls():
            assert m.allow_tf32 and c.allow_tf32
        assert not m.allow_tf32 and not c.allow_tf32
        with step_precision("fp32", "cuda").matmuls():
            assert not m.allow_tf32
    finally:
        m.allow_tf32, c.allow_tf32 = before


def test_a_bad_precision_is_refused_naming_the_flag():
    from engine.errors import InputError

    with pytest.raises(InputError, match="--precision"):
        small_settings(precision="half")  # checked when made


def _losses(models, precision, steps, device="cpu", capture=True):
    from engine.render.step.optimize import Optimizer

    s = small_settings(width=32, height=32, cutouts=8, lr=0.2, cutout_method="latest", precision=precision)
    opt = Optimizer(models.vqgan, models.clip, s, torch.device(device))
    if not capture:
        opt.graphs = None
    opt.reset()
    target = models.clip.embed_text(["a red balloon over the sea"])[0]
    draws = opt.image_draws(list(range(steps)))
    return [float(opt.step([(target, 1.0)], i, draw=draws[i])[1]) for i in range(steps)]


@pytest.mark.skipif(not cpu_has_bf16(), reason="mixed is float32 on a CPU without bf16 units")
def test_mixed_follows_fp32_over_100_steps_on_the_cpu(small_models):
    models = load_small(small_models)
    fp32, mixed = _losses(models, "fp32", 100), _losses(models, "mixed", 100)
    assert fp32 != mixed  # bf16 really ran
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert abs(mean(mixed) - mean(fp32)) / mean(fp32) < 0.03, (mean(mixed), mean(fp32))
    assert abs(mean(mixed[-20:]) - mean(fp32[-20:])) / mean(fp32[-20:]) < 0.05
    assert fp32[-1] < fp32[0] and mixed[-1] < mixed[0]  # both optimise
    # Deterministic on the CPU (the first 8 steps share one draw call, as in the 100-step run).
    assert _losses(models, "mixed", 8) == mixed[:8]


@pytest.mark.skipif(not cpu_has_bf16(), reason="mixed is float32 on a CPU without bf16 units")
def test_the_decoder_runs_in_bf16_under_mixed_on_the_cpu(small_models):
    vq = load_small(small_models).vqgan
    z = torch.randn(vq.latent_shape(32, 32), generator=torch.Generator().manual_seed(3))
    other = torch.randn(z.shape, generator=torch.Generator().manual_seed(4))
    with step_precision("fp32", "cpu").decoder():
        fp32, fp32_other = vq(z), vq(other)
    with step_precision("mixed", "cpu").decoder():
        mixed = vq(z)
    assert mixed.dtype == torch.bfloat16  # the decoder's convolutions really ran in bf16
    gap = (fp32 - mixed.float()).abs().mean()
    # The same picture to within a few levels of 255 (random weights; the official decoder: 0.9 on average):
    # an order of magnitude closer than another latent's picture.
    assert 0 < gap < 0.02 and gap < (fp32 - fp32_other).abs().mean() / 8, (gap, (fp32 - fp32_other).abs().mean())


def test_the_step_s_real_formats_enter_the_cache_keys(small_models, monkeypatch):
    # The same --precision means other formats on another device, or in another engine version (the decoder
    # joined CLIP in bf16 on the CPU): frames made in other formats must not be reused or resumed.
    import engine.render.step.precision as P
    from engine.models.factory import pick_device
    from engine.render.sources.model import ModelSource

    models = load_small(small_models)
    plan = {"segments": [{"images": 1, "start": 0.0, "end": 1.0, "parts": []}]}
    song = __import__("numpy").zeros(16000, dtype="float32")

    def ids(precision):
        src = ModelSource(plan, small_settings(precision=precision), models, song, pick_device("cpu"))
        return src.ids()

    mixed, fp32 = ids("mixed"), ids("fp32")
    assert {k: v for k, v in mixed.items() if k != "formats"} == models.ids()
    assert fp32["formats"] == {"precision": "fp32", "clip": "fp32", "decoder": "fp32", "tf32": False}
    if cpu_has_bf16():
        assert mixed["formats"]["decoder"] == "bfloat16"
        monkeypatch.setattr(P, "CPU_DECODER_BF16", False)
        assert ids("mixed")["formats"] != mixed["formats"]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_captured_step_follows_the_eager_step_on_cuda(small_models, precision):
    models = load_small(small_models, "cuda")
    eager = _losses(models, precision, 20, "cuda", capture=False)
    captured = _losses(models, precision, 20, "cuda", capture=True)
    # Same function, same draws: equal up to the order kernels are picked in (not bit for bit).
    assert max(abs(a - b) for a, b in zip(eager, captured)) < 1e-3 * max(eager)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_capture_leaves_the_latent_and_adam_where_they_were(small_models):
    from engine.render.step.optimize import Optimizer

    models = load_small(small_models, "cuda")
    s = small_settings(cutout_method="latest")
    opt = Optimizer(models.vqgan, models.clip, s, torch.device("cuda"))
    opt.reset()
    z0 = opt.z.detach().clone()
    target = models.clip.embed_text(["a violet forest"])[0]
    opt.step([(target, 1.0)], 0)
    assert opt.graphs.graphs and opt.graphs.failed is None
    # One step moved the latent once: Adam's first step moves each entry by at most lr.
    assert (opt.z.detach() - z0).abs().max() <= s.lr * 1.01
    assert int(opt.opt.state[opt.z]["step"]) == 1


def test_a_calibration_timed_in_other_formats_is_timed_again(tmp_path, monkeypatch):
    # The time estimate's calibration is kept per device; the formats `mixed` runs in are part of its key.
    import engine.render.step.estimate as E
    import engine.render.step.precision as P

    monkeypatch.setenv("M2V_CACHE", str(tmp_path))
    timed = []
    measured = {"version": E.CALIBRATION_VERSION, "device": "cpu", "decode_s_per_mpix": 1.0, "clip_s_per_cutout": 0.1}
    measured.update(step_overhead_s=0.1, image_s=0.0)  # a whole calibration: an entry that fails its check is re-timed
    monkeypatch.setattr(E, "calibrate", lambda device: timed.append(device) or dict(measured))
    cpu = torch.device("cpu")
    E.cached_calibration(cpu)
    E.cached_calibration(cpu)
    assert len(timed) == 1  # kept
    monkeypatch.setattr(P, "CPU_DECODER_BF16", not P.CPU_DECODER_BF16)
    E.cached_calibration(cpu)
    assert len(timed) == (2 if cpu_has_bf16() else 1)

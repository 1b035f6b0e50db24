import numpy as np
import pytest
import torch

from engine.errors import InputError
from tests.small_models import write_clip, write_vqgan


def test_lightning_checkpoint_loads_without_lightning(small_models):
    import importlib.util

    from engine.models.vqgan import load_vqgan

    assert importlib.util.find_spec("pytorch_lightning") is None
    model = load_vqgan(small_models / "vqgan" / "model.yaml", small_models / "vqgan" / "last.ckpt")
    g = torch.Generator().manual_seed(0)
    z = model.random_latent(32, 32, g)
    img = model(z)
    assert img.shape == (1, 3, 32, 32) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert float(img.std()) > 0.01


def test_vqgan_weights_come_from_the_file(tmp_path, small_models):
    from engine.models.checkpoints import load_torch_file
    from engine.models.vqgan import load_vqgan

    sd = load_torch_file(small_models / "vqgan" / "last.ckpt")["state_dict"]
    model = load_vqgan(small_models / "vqgan" / "model.yaml", small_models / "vqgan" / "last.ckpt")
    assert torch.equal(model.decoder.conv_in.weight, sd["decoder.conv_in.weight"])
    assert torch.equal(model.codebook, sd["quantize.embedding.weight"])


def test_transformer_checkpoint_autoencoder_under_first_stage_model(tmp_path):
    from engine.models.vqgan import load_vqgan

    cfg, ckpt = write_vqgan(tmp_path / "t", mode="transformer")
    model = load_vqgan(cfg, ckpt)
    assert model.cfg.prefix == "first_stage_model."


@pytest.mark.parametrize(
    "mode,words",
    [
        ("wrong-shape", "wrong shape decoder.conv_in.weight"),
        ("missing-key", "missing decoder.conv_out.bias"),
        ("evil", "references evil.Payload"),
        ("runner", "which m2v will not load"),
    ],
)
def test_tampered_checkpoints_fail_cleanly(tmp_path, mode, words, capfd):
    from engine.models.vqgan import load_vqgan

    cfg, ckpt = write_vqgan(tmp_path / mode, mode=mode)
    with pytest.raises(InputError) as e:
        load_vqgan(cfg, ckpt)
    assert str(ckpt) in str(e.value) and words in str(e.value)
    assert "this must never run" not in capfd.readouterr().out


def test_bad_configs(tmp_path):
    from engine.models.vqgan import load_config

    html = tmp_path / "model.yaml"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(InputError, match="HTML page"):
        load_config(html)
    kl = tmp_path / "kl.yaml"
    kl.write_text("model:\n  target: ldm.models.autoencoder.AutoencoderKL\n  params: {}\n")
    with pytest.raises(InputError, match="unsupported VQGAN type"):
        load_config(kl)


def test_gumbel_config_uses_embed_codebook(tmp_path):
    from engine.models.vqgan import parse_config

    cfg = parse_config(
        {
            "model": {
                "target": "taming.models.vqgan.GumbelVQ",
                "params": {
                    "n_embed": 8192,
                    "embed_dim": 256,
                    "kl_weight": 1e-8,
                    "ddconfig": {
                        "double_z": False,
                        "z_channels": 256,
                        "resolution": 256,
                        "in_channels": 3,
                        "out_ch": 3,
                        "ch": 128,
                        "ch_mult": [1, 1, 2, 4],
                        "num_res_blocks": 2,
                        "attn_resolutions": [32],
                        "dropout": 0.0,
                    },
                },
            }
        }
    )
    assert cfg.kind == "gumbel" and cfg.factor == 8


def test_clip_loads_from_safetensors_with_strict_keys(tmp_path, small_models):
    from safetensors.torch import load_file, save_file

    from engine.models.clip_guide import load_clip

    cfg, weights = small_models / "clip" / "m2v-tiny-clip.json", small_models / "clip" / "tiny_clip.safetensors"
    clip = load_clip(str(cfg), weights)
    sd = load_file(str(weights))
    assert torch.equal(clip.model.visual.conv1.weight, sd["visual.conv1.weight"])
    t = clip.embed_text(["a red balloon", "a red balloon", "the sea"])
    assert torch.allclose(t[0], t[1]) and not torch.allclose(t[0], t[2])
    sd["visual.conv1.weight"] = sd["visual.conv1.weight"][:, :, :4].contiguous()
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad))
    with pytest.raises(InputError, match="wrong shape visual.conv1.weight"):
        load_clip(str(cfg), bad)


def test_quickgelu_trap_is_avoided(tmp_path):
    from engine.models.clip_guide import resolve_model_name

    assert resolve_model_name("ViT-B-32", tmp_path / "open_clip_vit_b32_openai.safetensors") == "ViT-B-32-quickgelu"
    assert resolve_model_name("ViT-B-32", tmp_path / "laion2b.safetensors") == "ViT-B-32"


def _reference_log_spec(x: np.ndarray) -> np.ndarray:
    """Wav2CLIP's front end written out in numpy: centred reflect-padded periodic-Hann power STFT."""
    n_fft, hop = 512, 353
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    out = []
    for row in x:
        p = np.pad(row, n_fft // 2, mode="reflect")
        frames = [p[i : i + n_fft] * win for i in range(0, len(p) - n_fft + 1, hop)]
        out.append((np.abs(np.fft.rfft(frames, axis=1)) ** 2).T)
    s = np.log(np.stack(out) + 1e-7)
    return (s - s.mean()) / (s.std(ddof=1) + 1e-9)


def test_wav2clip_front_end_matches_the_original_computation(small_models):
    from engine.models.wav2clip import load_wav2clip

    model = load_wav2clip(small_models / "Wav2CLIP.pt")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16000)).astype(np.float32) * np.array([[0.1], [1.0]], np.float32)
    spec = model.audio_encoder.spectrogram(torch.from_numpy(x).unsqueeze(1))
    s = torch.log(spec + 1e-7)
    ours = ((s - s.mean()) / (s.std() + 1e-9)).squeeze(1).numpy()
    assert ours.shape == (2, 257, 1 + 16000 // 353)
    np.testing.assert_allclose(ours, _reference_log_spec(x.astype(np.float64)), atol=2e-3)
    # Batch-wide standardisation: a clip's embedding depends on its batch companions, as in the original.
    with torch.no_grad():
        alone = model(torch.from_numpy(x[:1]))
        together = model(torch.from_numpy(x))[:1]
    assert not torch.allclose(alone, together)


def test_wav2clip_strict_keys(tmp_path, small_models):
    from engine.models.wav2clip import load_wav2clip

    sd = torch.load(small_models / "Wav2CLIP.pt", weights_only=True)
    assert sum(k.startswith("audio_encoder.") for k in sd) == 121
    assert sum(k.startswith("audio_transform.") for k in sd) == 4
    del sd["audio_encoder.layer3.1.bn2.running_var"]
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    with pytest.raises(InputError, match="missing audio_encoder.layer3.1.bn2.running_var"):
        load_wav2clip(bad)


def test_small_clip_file_is_rebuilt_deterministically(tmp_path):
    _, a = write_clip(tmp_path / "a", seed=3)
    _, b = write_clip(tmp_path / "b", seed=3)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_audio_embedding_follows_its_model_to_the_gpu(small_models):
    # The song stays on the CPU; a Wav2CLIP moved to the GPU with the other models must still embed it
    # (found on a lent H200: torch.stft refused a CPU signal with a CUDA window).
    from engine.models.wav2clip import embed_audio
    from tests.small_models import load_small

    audio = load_small(small_models).audio
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32))
    on_cpu = embed_audio(audio, wav)
    on_gpu = embed_audio(audio.cuda(), wav)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-3)

"""The official model architectures as data: the VQGAN f16/16384 config and CLIP's name, and random-weight copies.

The cost model (:mod:`engine.render.step.estimate`) and the benchmarks time a step on these: the timing does not
depend on the weights, so no model file is needed.
"""

from __future__ import annotations

#: The official VQGAN (ImageNet f16/16384), as its ``model.yaml`` says.
OFFICIAL_VQGAN = {
    "model": {
        "target": "taming.models.vqgan.VQModel",
        "params": {
            "embed_dim": 256,
            "n_embed": 16384,
            "ddconfig": {
                "double_z": False,
                "z_channels": 256,
                "resolution": 256,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 1, 2, 2, 4],
                "num_res_blocks": 2,
                "attn_resolutions": [16],
                "dropout": 0.0,
            },
        },
    }
}
OFFICIAL_CLIP = "ViT-B-32-quickgelu"


def official_models(device):
    """The official architectures with random weights (for timing only)."""
    import logging

    import open_clip
    import torch

    from engine.models.clip_guide import ClipGuide
    from engine.models.vqgan import VQGAN, parse_config, use_fused_activation

    use_fused_activation(True)
    torch.manual_seed(0)
    vq = VQGAN(parse_config(OFFICIAL_VQGAN)).eval().requires_grad_(False)
    vq.codebook.normal_()
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(OFFICIAL_CLIP, pretrained=None).eval().requires_grad_(False)
    finally:
        logging.getLogger().setLevel(level)
    clip = ClipGuide(model, open_clip.get_tokenizer(OFFICIAL_CLIP), OFFICIAL_CLIP)
    return vq.to(device), clip.to(device)

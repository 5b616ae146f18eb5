"""made-with-clay/Clay as the Hub serves it, at toy size, for the Clay family's tests.

The repo holds a model card and the authors' Lightning checkpoint in its v1.5 folder, no
config.json. The checkpoint keeps their layout: `state_dict` with the encoder under
`model.encoder.` beside decoder, teacher and projection tensors, and Lightning's own plain
entries; tensors and plain values only, as `torch.load(weights_only=True)` reads them.
"""

from __future__ import annotations

import torch
from hub_repos import torch_save_bytes

CLAY_REPO = "made-with-clay/Clay"
CLAY_CHECKPOINT = "v1.5/clay-v1.5.ckpt"


def tiny_clay_checkpoint(seed: int = 0) -> dict[str, object]:
    """The checkpoint at the authors' `tiny` size (dim 192, depth 6, 4 heads of 48, MLP ratio 2,
    patch 8; the wavelength network at its fixed size), seeded, so a test sees its values used."""
    from cegate_cli.backbone.clay import AUTHORS_SIZES, ClayEncoder, authors_state_dict

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = ClayEncoder(AUTHORS_SIZES["tiny"])  # torch's own initialisation, seeded
    state = {}
    for key, tensor in authors_state_dict(encoder).items():
        if not tensor.any():  # the class token, kernel and bias tokens and biases start at zero: not in a trained model
            tensor = torch.randn(tensor.shape, generator=generator) * 0.02
        state["model.encoder." + key] = tensor.detach().clone()
    state.update(
        {
            "model.decoder.mask_patch": torch.zeros(16),
            "model.decoder.transformer.layers.0.0.to_qkv.weight": torch.randn(48, 16, generator=generator),
            "model.teacher.cls_token": torch.zeros(1, 1, 32),
            "model.proj.weight": torch.randn(32, 192, generator=generator),
        }
    )
    return {
        "epoch": 0,
        "global_step": 10,
        "pytorch-lightning_version": "2.4.0",
        "hyper_parameters": {"model_size": "tiny", "mask_ratio": 0.7, "patch_size": 8, "dolls": [16, 32, 64]},
        "state_dict": state,
    }


def tiny_clay_repo(seed: int = 0) -> dict[str, bytes]:
    """The repo's files: .gitattributes, README.md and v1.5/clay-v1.5.ckpt."""
    return {
        ".gitattributes": b"*.ckpt filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"---\nlicense: apache-2.0\n---\n# Clay Foundation Model\n",
        CLAY_CHECKPOINT: torch_save_bytes(tiny_clay_checkpoint(seed)),
    }

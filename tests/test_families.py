"""A third backbone family through the one attach mechanism: a timm EVA-style ViT with separate
q/k/v projections and rotary positions (the layout of EVA-02 and DINOv3-style models), built
offline with random weights. The toolbox is an identity on it at insertion, LoRA merges exactly,
and `adapt`, `evaluate` run on it from a local backbone folder like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from cegate_cli.backbone.vit import Backbone
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.errors import InputError
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.pipelines.inference import MapOptions, evaluate_run
from cegate_cli.run import read_manifest
from cegate_cli.toolbox import LoRAQV, attach_toolbox
from cegate_cli.toolbox.lora.layer import attach_lora

EVA_ARCH = "eva02_tiny_patch14_224"
EVA_ARGS = dict(embed_dim=32, depth=3, num_heads=2, img_size=32, patch_size=8, in_chans=3, qkv_fused=False)


def eva(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(EVA_ARCH, pretrained=False, num_classes=0, dynamic_img_size=True, **EVA_ARGS).eval()


def perturb(toolbox, seed: int = 0, std: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in toolbox:
            for parameter in module.own_parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def test_toolbox_on_separate_qkv_with_rotary_positions_is_an_identity_until_trained() -> None:
    backbone = Backbone(eva())
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = backbone(images)
        reference = backbone.vit.forward_features(images)  # timm's own forward, for the last level
        toolbox = attach_toolbox(backbone)
        assert len(toolbox.keys()) == 9 and toolbox.active_keys == toolbox.keys()
        inserted = backbone(images)
    grid = backbone.tokens_to_map(backbone.vit.norm(torch.zeros_like(reference)), backbone.embed(images)[1]).shape
    assert plain[-1].shape == grid == (2, 32, 4, 6)
    for a, b in zip(plain, inserted):
        assert (a - b).abs().max().item() <= 1e-6
    attention = backbone.vit.blocks[1].attn
    assert isinstance(attention.q_proj, LoRAQV) and attention.v_proj is attention.q_proj.value_projection
    perturb(toolbox)
    with torch.no_grad():
        moved = backbone(images)
    assert (moved[-1] - plain[-1]).abs().max().item() > 1e-3  # the modules do act once trained


def test_lora_on_separate_projections_merges_and_unmerges_exactly() -> None:
    torch.manual_seed(0)
    attention = torch.nn.Module()
    attention.q, attention.k, attention.v = (torch.nn.Linear(12, 12) for _ in range(3))
    original = {name: getattr(attention, name).weight.detach().clone() for name in ("q", "v")}
    lora = attach_lora(attention, layer=2, rank=3, alpha=6.0)
    with torch.no_grad():
        for parameter in lora.own_parameters():
            parameter.normal_(0, 0.1)
    x = torch.randn(5, 12)
    unmerged = (attention.q(x), attention.k(x), attention.v(x))
    expected_q = x @ (original["q"] + lora.lora_B_q @ lora.lora_A_q * 2.0).t() + lora.base_layer["q"].bias
    assert torch.allclose(unmerged[0], expected_q, atol=1e-6)
    lora.merge()
    merged = (attention.q(x), attention.k(x), attention.v(x))
    for a, b in zip(unmerged, merged):
        assert torch.allclose(a, b, atol=1e-5)
    lora.unmerge()
    assert torch.allclose(lora.base_layer["q"].weight, original["q"], atol=1e-6)
    assert torch.allclose(lora.base_layer["v"].weight, original["v"], atol=1e-6)
    # The toolbox's parameter names are the same as for a fused qkv: saved runs read alike.
    assert sorted(n for n, _ in lora.named_parameters() if not n.startswith("base_layer.")) == ["lora_A_q", "lora_A_v", "lora_B_q", "lora_B_v"]


def test_attention_without_supported_projections_names_the_layouts() -> None:
    attention = torch.nn.Module()
    attention.to_qkv = torch.nn.Linear(4, 12)
    with pytest.raises(InputError, match=r"block 5: LoRA supports attention with a fused Linear `qkv`.*`q_proj`"):
        attach_lora(attention, layer=5, rank=2, alpha=4.0)


@pytest.mark.slow
def test_adapt_and_evaluate_on_an_eva_backbone_folder(tmp_path: Path) -> None:
    folder = tmp_path / "eva-backbone"
    folder.mkdir()
    model = eva(seed=4)
    config = {"architecture": EVA_ARCH, "model_args": EVA_ARGS, "band_names": ["red", "green", "blue"]}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    demo = make_demo_dataset(tmp_path / "demo", n_source=3, n_target=1, size=64, seed=2)
    train = TrainConfig(steps=4, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, fisher_samples=2, select="3", seed=1)
    result = adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "run", backbone=str(folder), train=train))
    manifest = read_manifest(tmp_path / "run")
    assert result.outcome.completed and manifest.status == "complete"
    assert manifest.backbone.architecture == EVA_ARCH
    assert len(manifest.final_selection) == 3
    report, _ = evaluate_run(tmp_path / "run", demo.source_dir, options=MapOptions(tile=64, overlap=16, device="cpu"))
    assert len(report.per_file) == 3 and not report.failed and report.matrix.total > 0  # every scene mapped by the EVA run

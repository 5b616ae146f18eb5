"""The prompt kind (deep visual prompt tuning): an exact identity on every family until its gate
moves, VPT-deep's arithmetic once it has, one attention pass that gives the two-pass output and
gate gradient on every family (and the fallback for attention it does not know), without
gradient the same output from a pass over the image's keys alone and log-sum-exps, prompts
without rotary positions on Eva, gradient to the gate at once and to the prompts once the gate
is off zero, Fisher scores, its size option, and outside the default toolbox."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import pytest
import torch
from small_models import small_vit
from test_families import eva
from test_galileo_backbone import galileo
from test_galileo_backbone import images as galileo_images
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn
from typer.testing import CliRunner

from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.backbone.clay import ClayConfig, ClayEncoder, Conditions
from cegate_cli.backbone.clay_backbone import ClayBackbone
from cegate_cli.backbone.clay_bands import choose_platform
from cegate_cli.backbone.prithvi_tl import PrithviTLViT
from cegate_cli.backbone.tiny import TINY_BANDS, build_tiny_vit
from cegate_cli.backbone.vit import Backbone
from cegate_cli.cli import app
from cegate_cli.errors import InputError
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import Toolbox, ToolboxConfig, attach_toolbox
from cegate_cli.toolbox.fisher import empirical_fisher
from cegate_cli.toolbox.kinds import default_kind_names, kind_spec
from cegate_cli.toolbox.prompt import layer as prompt_layer
from cegate_cli.toolbox.prompt.attention import attention_access
from cegate_cli.toolbox.prompt.layer import VisualPrompt

EVERY_KIND = ("lora", "adapter", "earth", "prompt")


def images(channels: int, size: tuple[int, int] = (32, 48), seed: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, *size, generator=torch.Generator().manual_seed(seed))


def prompts_of(toolbox: Toolbox) -> list[VisualPrompt]:
    return [module for module in toolbox if isinstance(module, VisualPrompt)]


def clay() -> ClayBackbone:
    torch.manual_seed(0)
    encoder = ClayEncoder(ClayConfig(dim=32, depth=2, heads=2, dim_head=16, patch_size=8, wave_dim=16, kernel_tokens=8, wave_feedforward=32))
    bands = ("B2", "B3", "B4", "B8")
    return ClayBackbone(encoder, bands, choose_platform(bands, 10.0), Conditions(10.0, (0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8)))


def prithvi_tl() -> Backbone:
    torch.manual_seed(0)
    vit = PrithviTLViT(
        ("time", "location"),
        True,
        img_size=32,
        patch_size=8,
        in_chans=6,
        embed_dim=32,
        depth=2,
        num_heads=2,
        dynamic_img_size=True,
        num_classes=0,
        global_pool="",
    )
    return Backbone(vit)


@contextlib.contextmanager
def with_coordinates(backbone: BlockBackbone) -> Iterator[None]:
    """Prithvi TL: a date and place for each image, as the encoder adds them to the tokens."""
    with backbone.vit.coordinates(torch.tensor([[[2020.0, 245.0]], [[2021.0, 12.0]]]), torch.tensor([[47.1, 8.5], [-3.0, 120.0]])):
        yield


# name -> (an untouched backbone with its inputs and the context it runs in)
FAMILIES: dict[str, Callable[[], tuple[BlockBackbone, torch.Tensor, Callable[[BlockBackbone], contextlib.AbstractContextManager]]]] = {
    "vit-class-token": lambda: (Backbone(small_vit()), images(3), lambda b: contextlib.nullcontext()),
    "vit-registers": lambda: (Backbone(small_vit(reg_tokens=4)), images(3), lambda b: contextlib.nullcontext()),
    "vit-no-prefix": lambda: (Backbone(small_vit(class_token=False, global_pool="avg")), images(3), lambda b: contextlib.nullcontext()),
    "eva-rotary": lambda: (Backbone(eva()), images(3), lambda b: contextlib.nullcontext()),
    "prithvi-tl": lambda: (prithvi_tl(), images(6), with_coordinates),
    "clay": lambda: (clay(), images(4), lambda b: contextlib.nullcontext()),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_kind_is_an_identity_until_its_gate_moves(family: str) -> None:
    backbone, x, context = FAMILIES[family]()
    backbone.eval()
    with torch.no_grad(), context(backbone):
        before = backbone(x)
        toolbox = attach_toolbox(backbone, ToolboxConfig(kinds=EVERY_KIND, prompt_tokens=5))
        after = backbone(x)
        assert len(prompts_of(toolbox)) == backbone.depth and toolbox.active_keys == toolbox.keys()
        for a, b in zip(before, after):
            assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-6
        for prompt in prompts_of(toolbox):
            prompt.gate.fill_(0.5)
        moved = backbone(x)
    assert (moved[-1] - before[-1]).abs().max().item() > 1e-3  # the comparison is not vacuous


def test_on_galileo_nano_whose_attention_logits_run_into_the_thousands() -> None:
    """Galileo's channel-group tokens, no prefix token, and the real nano weights: a gate inside
    attention (a logit bias) would let the prompts in even at a weight of 1e-12 here."""
    built = galileo(kinds=EVERY_KIND)
    backbone, toolbox = built.model.backbone.eval(), built.toolbox
    x = galileo_images()
    with torch.no_grad():
        toolbox.set_active([])
        plain = backbone(x)
        toolbox.activate_all()
        inserted = backbone(x)
        for prompt in prompts_of(toolbox):
            prompt.gate.fill_(0.5)
        moved = backbone(x)
    assert len(prompts_of(toolbox)) == backbone.depth and all(p.num_prefix_tokens == 0 for p in prompts_of(toolbox))
    for a, b in zip(plain, inserted):
        assert (a - b).abs().max().item() <= 1e-6
    assert (moved[-1] - plain[-1]).abs().max().item() > 1e-3


def test_at_gate_one_a_block_is_vpt_deep_and_zero_prompts_are_no_identity() -> None:
    """VPT-deep: the block over (class, prompts, patches), the prompts' outputs dropped. The
    module learns the prompts as attention reads them, after the block's norm."""
    vit = small_vit().eval()
    block = vit.blocks[1]
    tokens = torch.randn(2, 1 + 12, 32, generator=torch.Generator().manual_seed(4))
    raw_prompts = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain = block(tokens)
        expected = block(torch.cat((tokens[:, :1], raw_prompts.expand(2, -1, -1), tokens[:, 1:]), dim=1))
        expected = torch.cat((expected[:, :1], expected[:, 4:]), dim=1)
        prompt = VisualPrompt(block.attn, layer=1, dim=32, tokens=3, num_prefix_tokens=1)
        block.attn = prompt
        prompt.prompts.copy_(block.norm1(raw_prompts))
        prompt.gate.fill_(1.0)
        assert (block(tokens) - expected).abs().max().item() <= 1e-5
        prompt.prompts.zero_()  # zero-valued prompts still take attention weight
        assert (block(tokens) - plain).abs().max().item() > 1e-3
        prompt.active = False
        assert torch.equal(block(tokens), plain)


def test_on_eva_the_prompts_get_no_rotary_position() -> None:
    """timm leaves its prefix tokens unrotated: with the prompts counted as prefix tokens and the
    patches' own rotary embedding, attention must give what the module gives."""
    backbone = Backbone(eva()).eval()
    toolbox = attach_toolbox(backbone, ToolboxConfig(kinds=("prompt",), prompt_tokens=4))
    x = images(3)
    with torch.no_grad():
        tokens, layout = backbone.embed(x)
        block = backbone.vit.blocks[0]
        prompt = toolbox.modules[("prompt", 0)]
        prompt.gate.fill_(1.0)
        attention = prompt.base_layer
        normed = block.norm1(tokens)
        got = prompt(normed, **layout.block_kwargs)
        prefix = backbone.num_prefix_tokens
        sequence = torch.cat((normed[:, :prefix], prompt.prompts.expand(2, -1, -1), normed[:, prefix:]), dim=1)
        attention.num_prefix_tokens += 4
        try:
            expected = attention(sequence, **layout.block_kwargs)
        finally:
            attention.num_prefix_tokens -= 4
    expected = torch.cat((expected[:, :prefix], expected[:, prefix + 4 :]), dim=1)
    assert (got - expected).abs().max().item() <= 1e-5


def with_toolbox(family: str) -> tuple[BlockBackbone, Toolbox, torch.Tensor, contextlib.AbstractContextManager]:
    """A family's backbone with every kind in each block, the LoRA, adapter and Earth-Adapter
    updates moved off zero, and the prompt gates at 0."""
    if family == "galileo-nano":
        built = galileo(kinds=EVERY_KIND)
        backbone, toolbox, x, context = built.model.backbone, built.toolbox, galileo_images(), contextlib.nullcontext()
    else:
        backbone, x, make_context = FAMILIES[family]()
        toolbox, context = attach_toolbox(backbone, ToolboxConfig(kinds=EVERY_KIND, prompt_tokens=5)), make_context(backbone)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in toolbox:
            if not isinstance(module, VisualPrompt):
                for parameter in module.own_parameters():
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return backbone.eval(), toolbox, x, context


def attention_calls(backbone: BlockBackbone, toolbox: Toolbox, x: torch.Tensor, context) -> list[tuple[VisualPrompt, torch.Tensor, dict]]:
    """Each prompt module with the input and keyword arguments its block gives it."""
    calls: list[tuple[VisualPrompt, torch.Tensor, dict]] = []
    hooks = [
        prompt.register_forward_hook(lambda module, args, kwargs, out: calls.append((module, args[0], kwargs)), with_kwargs=True)
        for prompt in prompts_of(toolbox)
    ]
    try:
        with torch.no_grad(), context:
            backbone(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == backbone.depth
    return calls


@pytest.mark.parametrize("family", [*sorted(FAMILIES), "galileo-nano"])
def test_one_attention_pass_gives_the_two_pass_output_and_the_gates_gradient(family: str) -> None:
    """Every family the kind supports takes the one-pass path; its output for a gate off zero, the
    prompts' gradient there, and the output's derivative by the gate at zero (what Fisher scores)
    are the two-pass ones."""
    backbone, toolbox, x, context = with_toolbox(family)
    for prompt, tokens, kwargs in attention_calls(backbone, toolbox, x, context):
        assert attention_access(prompt.base_layer, kwargs) is not None
        with torch.no_grad():
            prompt.gate.fill_(0.7)
            assert (prompt(tokens, **kwargs) - prompt.two_pass(tokens, kwargs)).abs().max().item() <= 1e-5
        weights = torch.randn(prompt(tokens, **kwargs).shape, generator=torch.Generator().manual_seed(prompt.layer))
        one, two = [torch.autograd.grad((out * weights).sum(), prompt.prompts)[0] for out in (prompt(tokens, **kwargs), prompt.two_pass(tokens, kwargs))]
        assert (one - two).abs().max().item() <= 1e-5 * max(1.0, two.abs().max().item())
        with torch.no_grad():
            prompt.gate.zero_()
        one, two = gate_derivative(prompt(tokens, **kwargs), prompt.gate), gate_derivative(prompt.two_pass(tokens, kwargs), prompt.gate)
        assert two.abs().max().item() > 0 and (one - two).abs().max().item() <= 1e-5


def gate_derivative(out: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """d out / d gate, element by element: the gradient by the gate for a cotangent v is linear in
    v, and its own gradient by v is the derivative."""
    cotangent = torch.zeros_like(out, requires_grad=True)
    (by_gate,) = torch.autograd.grad(out, gate, cotangent, create_graph=True)
    return torch.autograd.grad(by_gate, cotangent)[0]


@pytest.mark.parametrize("log_sum_exp", [True, False], ids=["log-sum-exp", "marked-pass"])
def test_prompts_that_take_all_of_the_attention_leave_no_trace_of_underflow(log_sum_exp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt logits so far above the image tokens' that x's share of the attention mass
    underflows: attention over x alone then needs its own pass, and the output stays the
    two-pass one (without gradient: with the log-sum-exp op and, where it is missing, the marks)."""
    if not log_sum_exp:
        monkeypatch.setattr(prompt_layer, "CPU_ATTENTION_WITH_LSE", None)
    vit = small_vit().eval()
    attention = vit.blocks[0].attn
    prompt = VisualPrompt(attention, layer=0, dim=32, tokens=3, num_prefix_tokens=1)
    tokens = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        prompt.gate.fill_(0.3)
        prompt.prompts.copy_(tokens[:1, 1:4] * 1e4)
        heads = attention_access(attention, {}).heads(attention, tokens, prompt.prompts, {})  # type: ignore[union-attr]
        lead = (heads.q @ heads.prompt_k.transpose(-2, -1)).amax(-1) - (heads.q @ heads.k.transpose(-2, -1)).amax(-1)
        assert lead.max().item() * heads.q.shape[-1] ** -0.5 > 200  # exp underflows at some 100 nats
        one, two = prompt(tokens), prompt.two_pass(tokens, {})
    assert torch.isfinite(one).all() and (one - two).abs().max().item() <= 1e-5 * max(1.0, two.abs().max().item())


@pytest.fixture
def lse_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of the fused CPU attention with log-sum-exp (this torch has it)."""
    op = prompt_layer.CPU_ATTENTION_WITH_LSE
    if op is None:
        pytest.skip("this torch has no fused CPU attention that returns its log-sum-exp")
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return op(*args, **kwargs)

    monkeypatch.setattr(prompt_layer, "CPU_ATTENTION_WITH_LSE", counted)
    return calls


def marked_pass(prompt: VisualPrompt, tokens: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The module's output from the marked pass, as where the log-sum-exp op is missing."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prompt_layer, "CPU_ATTENTION_WITH_LSE", None)
        return prompt(tokens, **kwargs)


def as_double(prompt: VisualPrompt, tokens: torch.Tensor, kwargs: dict) -> tuple[VisualPrompt, torch.Tensor, dict]:
    double = {name: value.double() if isinstance(value, torch.Tensor) and value.is_floating_point() else value for name, value in kwargs.items()}
    return copy.deepcopy(prompt).double(), tokens.double(), double


def prompt_share(prompt: VisualPrompt, tokens: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The prompts' share of each query's attention mass, per head."""
    access = attention_access(prompt.base_layer, kwargs)
    heads = access.heads(prompt.base_layer, tokens, prompt.prompts, kwargs)  # type: ignore[union-attr]
    scale = heads.q.shape[-1] ** -0.5
    of_x = torch.logsumexp(heads.q @ heads.k.transpose(-2, -1) * scale, dim=-1)
    of_prompts = torch.logsumexp(heads.q @ heads.prompt_k.transpose(-2, -1) * scale, dim=-1)
    return torch.sigmoid(of_prompts - of_x)


def check_without_gradient(prompt: VisualPrompt, tokens: torch.Tensor, kwargs: dict, lse_calls: list[int], family: str) -> None:
    """The log-sum-exp path, taken once per call, against the marked pass and the two passes:
    in float32 to 1e-6 of the output's size (the two passes on galileo-nano to 1e-5: its logits
    run into the thousands, and the two passes differ from either one-pass path by their float32
    rounding), in float64 to 1e-10."""
    with torch.no_grad():
        taken = len(lse_calls)
        new = prompt(tokens, **kwargs)
        assert len(lse_calls) == taken + 1
        marked, two = marked_pass(prompt, tokens, kwargs), prompt.two_pass(tokens, kwargs)
        size = max(1.0, two.abs().max().item())
        assert (new - marked).abs().max().item() <= 1e-6 * size
        assert (new - two).abs().max().item() <= (1e-5 if family == "galileo-nano" else 1e-6) * size
        double, tokens64, kwargs64 = as_double(prompt, tokens, kwargs)
        new, marked, two = double(tokens64, **kwargs64), marked_pass(double, tokens64, kwargs64), double.two_pass(tokens64, kwargs64)
        assert new.dtype == torch.float64
        assert (new - two).abs().max().item() <= 1e-10 * size and (new - marked).abs().max().item() <= 1e-10 * size


@pytest.mark.parametrize("family", [*sorted(FAMILIES), "galileo-nano"])
def test_without_gradient_one_pass_over_the_image_keys_gives_the_same_output(family: str, lse_calls: list[int]) -> None:
    """Inference on CPU: attention over x alone from the fused kernel at the heads' own width,
    the prompts weighed in by log-sum-exps; at gate 0 still the attention's own output, exactly."""
    backbone, toolbox, x, context = with_toolbox(family)
    for prompt, tokens, kwargs in attention_calls(backbone, toolbox, x, context):
        with torch.no_grad():
            assert prompt.gate.item() == 0
            taken = len(lse_calls)
            assert torch.equal(prompt(tokens, **kwargs), prompt.base_layer(tokens, **kwargs)) and len(lse_calls) == taken
            for gate in (0.7, -1.5):
                prompt.gate.fill_(gate)
                check_without_gradient(prompt, tokens, kwargs, lse_calls, family)


@pytest.mark.parametrize(("family", "loudness"), [("galileo-nano", 10.0), ("vit-class-token", 1000.0)])
def test_without_gradient_prompts_that_take_most_of_the_attention(family: str, loudness: float, lse_calls: list[int]) -> None:
    """Prompts made of the block's own tokens, scaled until they take nearly all of the attention
    mass: the prompts' share near 1 (x's near 0) is still the marked pass's and the two passes'."""
    backbone, toolbox, x, context = with_toolbox(family)
    for prompt, tokens, kwargs in attention_calls(backbone, toolbox, x, context):
        with torch.no_grad():
            prompt.prompts.copy_(tokens[:1, -prompt.tokens :] * loudness)
            assert prompt_share(prompt, tokens, kwargs).median().item() > 0.99
            prompt.gate.fill_(0.7)
            check_without_gradient(prompt, tokens, kwargs, lse_calls, family)


def test_training_keeps_the_marked_pass_and_inference_takes_the_log_sum_exp(lse_calls: list[int]) -> None:
    """The fused kernel's log-sum-exp has no gradient: with gradient enabled (training, or eval
    with gradient) the module runs the marked pass; under no_grad and inference_mode the other."""
    built = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(kinds=("prompt",), prompt_tokens=4), "linear", seed=0)
    model, toolbox = built.model, built.toolbox
    with torch.no_grad():
        for prompt in prompts_of(toolbox):
            prompt.gate.fill_(0.5)
    x = images(len(TINY_BANDS))
    model.train()
    _loss(model, x).backward()
    model.eval()
    with_gradient = model(x)
    assert lse_calls == [] and with_gradient.requires_grad
    assert all(prompt.prompts.grad.abs().max().item() > 0 for prompt in prompts_of(toolbox))
    with torch.no_grad():
        without = model(x)
    assert len(lse_calls) == len(prompts_of(toolbox))
    with torch.inference_mode():
        inferred = model(x)
    assert len(lse_calls) == 2 * len(prompts_of(toolbox))
    size = max(1.0, with_gradient.abs().max().item())
    assert (without - with_gradient).abs().max().item() <= 1e-5 * size and torch.equal(without, inferred)


def test_timm_scale_norm_is_mixed_after_the_norm_as_two_passes_mix() -> None:
    """timm's `scale_norm` puts a LayerNorm between the merged heads and the projection: the gate
    must mix the normed outputs, as the two-pass path does, not the heads before the norm."""
    attention = TimmAttention(32, num_heads=2, qkv_bias=True, scale_norm=True, norm_layer=nn.LayerNorm).eval()
    with torch.no_grad():
        for parameter in attention.norm.parameters():
            parameter.normal_(generator=torch.Generator().manual_seed(3))
    assert not isinstance(attention.norm, nn.Identity)
    prompt = VisualPrompt(attention, layer=0, dim=32, tokens=3, num_prefix_tokens=1)
    tokens = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        prompt.gate.fill_(0.6)
        one, two = prompt(tokens), prompt.two_pass(tokens, {})
    assert (one - two).abs().max().item() <= 1e-5 * max(1.0, two.abs().max().item())


def test_an_attention_class_without_an_entry_is_called_twice_as_a_black_box() -> None:
    class OwnAttention(TimmAttention):
        """A subclass may compute differently: it gets no entry of its parent's."""

    vit = small_vit().eval()
    own = OwnAttention(32, num_heads=2, qkv_bias=True)
    own.load_state_dict(vit.blocks[1].attn.state_dict())
    prompt = VisualPrompt(own, layer=1, dim=32, tokens=3, num_prefix_tokens=1)
    tokens = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(9))
    assert attention_access(own, {}) is None and attention_access(vit.blocks[1].attn, {}) is not None
    assert attention_access(vit.blocks[1].attn, {"is_causal": True}) is None  # a keyword the entry does not know
    with torch.no_grad():
        prompt.gate.fill_(0.5)
        expected = VisualPrompt(vit.blocks[1].attn, layer=1, dim=32, tokens=3, num_prefix_tokens=1)
        expected.load_state_dict(prompt.state_dict())
        assert (prompt(tokens) - expected(tokens)).abs().max().item() <= 1e-5


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).logsumexp(dim=1).mean()


def test_the_gate_gets_gradient_at_once_and_the_prompts_once_it_has_moved() -> None:
    built = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(kinds=("prompt",), prompt_tokens=4), "linear", seed=0)
    model, toolbox = built.model.train(), built.toolbox
    x = images(len(TINY_BANDS))
    _loss(model, x).backward()
    for prompt in prompts_of(toolbox):
        assert prompt.gate.grad is not None and prompt.gate.grad.abs().item() > 0
        assert prompt.prompts.grad is None or prompt.prompts.grad.abs().max().item() == 0  # multiplied by the gate's 0
    initial = [prompt.prompts.detach().clone() for prompt in prompts_of(toolbox)]
    optimizer = torch.optim.AdamW(toolbox.trainable_parameters(), lr=5e-3)
    for _ in range(3):
        optimizer.zero_grad()
        _loss(model, x).backward()
        optimizer.step()
    for prompt, start in zip(prompts_of(toolbox), initial):
        assert prompt.gate.item() != 0
        assert prompt.prompts.grad.abs().max().item() > 0 and not torch.equal(prompt.prompts.detach(), start)
    # A bypassed module neither acts nor receives gradient.
    optimizer.zero_grad(set_to_none=True)
    toolbox.set_active([])
    _loss(model, x).backward()
    assert all(p.grad is None for prompt in prompts_of(toolbox) for p in prompt.own_parameters())


def test_fisher_scores_every_prompt_module_by_its_gate() -> None:
    built = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(kinds=("lora", "prompt")), "linear", seed=0)
    generator = torch.Generator().manual_seed(0)
    samples = [(images(len(TINY_BANDS), seed=seed)[0], torch.randint(0, 3, (32, 48), generator=generator)) for seed in range(2)]
    scores = empirical_fisher(built.model, built.toolbox, samples, nn.functional.cross_entropy)
    depth = built.toolbox.backbone.depth
    assert all(scores.raw[("prompt", layer)] > 0 for layer in range(depth))
    assert [p.shape for p in built.toolbox.scored_parameters(("prompt", 0))] == [torch.Size([1, 10, 96]), torch.Size([])]


def test_tokens_option_weights_names_and_the_default_toolbox() -> None:
    assert "prompt" not in default_kind_names() and not kind_spec("prompt").default
    assert ToolboxConfig().kinds == ("lora", "adapter", "earth")
    config = ToolboxConfig(kinds=("prompt",), prompt_tokens=7)
    assert config.to_dict()["prompt_tokens"] == 7 and ToolboxConfig.from_dict(config.to_dict()) == config
    assert ToolboxConfig().prompt_tokens == 10
    for bad in (0, 5000):
        with pytest.raises(InputError, match=f"--prompt-tokens {bad}: must be from 1 to"):
            ToolboxConfig(prompt_tokens=bad).check()
    backbone = Backbone(small_vit())
    toolbox = attach_toolbox(backbone, config)
    assert toolbox.parameter_count(("prompt", 2)) == 7 * 32 + 1
    assert sorted(toolbox.state_dict_of([("prompt", 2)])) == ["toolbox.prompt.2.gate", "toolbox.prompt.2.prompts"]
    assert backbone.vit.blocks[2].attn is toolbox.modules[("prompt", 2)]


def test_a_block_without_attention_is_one_clear_error() -> None:
    backbone = Backbone(small_vit())
    del backbone.vit.blocks[0].attn
    backbone.vit.blocks[0].mixer = nn.Identity()
    with pytest.raises(InputError, match=r"block 0 \(Block\) has no attention module `attn`.*leave prompt out of --modules"):
        attach_toolbox(backbone, ToolboxConfig(kinds=("prompt",)))


def test_the_command_line_lists_the_option_and_the_kind() -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["adapt", "--print-config"])
    assert printed.exit_code == 0 and "prompt-tokens: 10" in printed.output
    shown = runner.invoke(app, ["adapt", "--help"], env={"COLUMNS": "250"})
    assert "--prompt-tokens" in shown.output and "lora, adapter, earth, prompt" in shown.output

"""Pretrain the embedded `tiny` backbone on generated multi-domain scenes.

    python tools/pretrain_tiny.py --out cegate_cli/weights/tiny.safetensors --seed 0

Why this exists: `cegate demo`, the tests and the benchmarks must run offline, so the package
ships a small ViT. With random weights its features say nothing about the image; this script
gives it features that were learnt, from data anyone can regenerate, in minutes on a CPU.

What it is (and the shipped `tiny.json` repeats it): a 0.7 M-parameter ViT pretrained on
*synthetic* scenes from `cegate_cli.data.synthetic`, not a foundation model. The recipe:

- Data: many domains, each a randomly drawn `DomainStyle` (pixel size, per-band gain and offset,
  per-class "season" shifts of the spectra, blur, sensor noise) applied to scenes drawn by
  `render_scene`. Scene seeds come from their own `SeedSequence` namespace, and no domain uses the
  demo's target style (`STYLES["target"]`) or the demo's scene seeds, so the demo's held-out
  target domain is never seen; the style *ranges* are wide enough to contain shifts of that
  size, which is the point.
- Normalisation as the product does it: per-band mean/std over each domain's scenes (a folder's
  statistics). A share of crops is normalised with *another* domain's statistics, as when a model
  fitted on one folder predicts another.
- Losses: masked-autoencoder reconstruction (75 % of patch tokens hidden, a 2-block decoder
  predicts the normalised pixels of the hidden patches) plus a supervised segmentation loss on the
  synthetic class maps through a throwaway linear head on the four feature levels `cegate` uses.
  Only the ViT is saved; decoder and head are discarded.

Reproducible from `--seed` on the same torch build and thread count (floating-point sums depend
on both); the run's facts (recipe, data, losses, sha256) go to a JSON file beside the weights.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from cegate_cli.backbone.hub import file_sha256
from cegate_cli.backbone.tiny import TINY_ARCHITECTURE, TINY_BANDS, tiny_vit_args
from cegate_cli.backbone.vit import evenly_spaced_layers
from cegate_cli.data.synthetic import DEMO_CLASSES, MASK_NODATA, NODATA, DomainStyle, render_scene
from cegate_cli.errors import InputError
from cegate_cli.infra.atomic import atomic_path, write_json_atomic

FORMAT = "cegate-tiny-pretrain/1"
SCENE_NAMESPACE = 0x7E1A  # scene seeds: SeedSequence([seed, SCENE_NAMESPACE, domain, scene]); the demo uses [seed, group, i]
HELDOUT_DOMAIN_OFFSET = 1_000_000  # held-out domains get their own indexes, so no scene is shared with training
NUM_CLASSES = DEMO_CLASSES.num_classes


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the weights; written to the JSON record."""

    seed: int = 0
    steps: int = 1200
    batch_size: int = 32
    """Crops per step at the base crop size; larger crops get fewer, so every step sees about the same number of tokens."""
    crop_sizes: tuple[int, ...] = (64, 64, 96, 128)
    """Cycled step by step: the position embedding learns grids larger than its native 8 x 8."""
    domains: int = 48
    scenes_per_domain: int = 4
    scene_size: int = 192
    heldout_domains: int = 4
    mask_ratio: float = 0.75
    decoder_dim: int = 64
    decoder_depth: int = 2
    supervised_weight: float = 1.0
    mismatch_prob: float = 0.3
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    threads: int = 2

    def check(self) -> None:
        patch = int(tiny_vit_args()["patch_size"])  # type: ignore[arg-type]
        if self.steps < 1 or self.batch_size < 1 or self.domains < 1 or self.scenes_per_domain < 1:
            raise InputError("--steps, --batch-size, --domains and --scenes-per-domain must be at least 1")
        if not 0.0 < self.mask_ratio < 1.0:
            raise InputError(f"--mask-ratio {self.mask_ratio} must be between 0 and 1 (exclusive), e.g. 0.75")
        bad = [c for c in self.crop_sizes if c % patch or c < patch or c > self.scene_size]
        if bad:
            raise InputError(f"--crop-sizes {bad} must be multiples of the patch size {patch} no larger than --scene-size {self.scene_size}")


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleRanges:
    """Ranges the domain styles are drawn from (wide: several sensors, seasons and resolutions)."""

    pixel_size: tuple[float, float] = (6.0, 30.0)  # metres, log-uniform
    gain: tuple[float, float] = (0.7, 1.35)  # per band, log-uniform
    offset: tuple[float, float] = (-150.0, 500.0)  # per band, reflectance x 10000
    blur_sigma: tuple[float, float] = (0.3, 1.8)  # pixels; 40 % of domains are not blurred
    noise: tuple[float, float] = (10.0, 250.0)  # extra std, log-uniform, on top of the renderer's own
    season_std: tuple[tuple[float, float, float, float], ...] = (
        (40.0, 40.0, 40.0, 60.0),  # water
        (40.0, 90.0, 120.0, 500.0),  # vegetation: green-up and senescence move NIR most
        (40.0, 40.0, 40.0, 40.0),  # built-up
        (60.0, 80.0, 100.0, 200.0),  # bare soil: moisture
    )


def random_style(rng: np.random.Generator, ranges: StyleRanges = StyleRanges()) -> DomainStyle:
    """A domain style drawn from `ranges`; `texture` and `crs` are not varied (the renderer fixes them)."""

    def log_uniform(bounds: tuple[float, float], size: int | None = None) -> np.ndarray:
        return np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]), size=size))

    season = tuple(tuple(float(v) for v in rng.normal(0.0, std)) for std in ranges.season_std)
    return DomainStyle(
        pixel_size=float(log_uniform(ranges.pixel_size)),
        gain=tuple(float(g) for g in log_uniform(ranges.gain, 4)),  # type: ignore[arg-type]
        offset=tuple(float(o) for o in rng.uniform(*ranges.offset, size=4)),  # type: ignore[arg-type]
        blur_px=0.0 if rng.random() < 0.4 else float(rng.uniform(*ranges.blur_sigma)),
        noise=float(log_uniform(ranges.noise)),
        texture=1.0,
        crs="EPSG:32633",
        season=season,  # type: ignore[arg-type]
    )


def render_styled(size: int, style: DomainStyle, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A source-rendered scene at the style's pixel size, then the style's radiometry on top.

    `render_scene` renders the two demo styles only, so the style's season shifts, gain and offset,
    blur and noise are applied here, in that order as the renderer does (its own 60-unit noise and
    full-strength texture stay). Returns (4, H, W) float32 raw values (0 = nodata) and (H, W) uint8
    labels (255 = nodata).
    """
    pixels, labels = render_scene((size, size), "source", seed, pixel_size=style.pixel_size)
    valid = pixels[0] != NODATA
    image = pixels.astype(np.float32)
    season = np.asarray(style.season, np.float32)  # (classes, bands)
    classes = np.where(valid, labels, 0)
    image += season[classes].transpose(2, 0, 1)
    image = image * np.asarray(style.gain, np.float32)[:, None, None] + np.asarray(style.offset, np.float32)[:, None, None]
    image = _gaussian_blur(image, style.blur_px)
    rng = np.random.default_rng(seed)
    image += rng.normal(0.0, style.noise, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image), 1, 10000)
    image[:, ~valid] = NODATA
    return image.astype(np.float32), labels


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = taps / taps.sum()
    x = torch.from_numpy(image)[:, None]  # (bands, 1, H, W): every band blurred alike
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1))
    return x[:, 0].numpy()


@dataclass
class Domain:
    style: DomainStyle
    images: np.ndarray  # (scenes, 4, S, S) float32 raw
    labels: np.ndarray  # (scenes, S, S) uint8
    mean: np.ndarray  # (4,) over valid pixels of the domain: the "folder statistics"
    std: np.ndarray


def build_domains(config: PretrainConfig, first: int, count: int) -> list[Domain]:
    """`count` domains with indexes first .. first+count-1, each from its own seed stream."""
    domains = []
    for index in range(first, first + count):
        style_rng = np.random.default_rng(np.random.SeedSequence([config.seed, SCENE_NAMESPACE, index, 0]))
        style = random_style(style_rng)
        rendered = [render_styled(config.scene_size, style, _scene_seed(config.seed, index, scene)) for scene in range(config.scenes_per_domain)]
        images = np.stack([r[0] for r in rendered])
        labels = np.stack([r[1] for r in rendered])
        valid = images[:, 0] != NODATA
        values = images.transpose(1, 0, 2, 3)[:, valid].astype(np.float64)  # (4, n valid)
        std = np.maximum(values.std(axis=1), 1.0)
        domains.append(Domain(style, images, labels, values.mean(axis=1).astype(np.float32), std.astype(np.float32)))
    return domains


def _scene_seed(seed: int, domain: int, scene: int) -> int:
    return int(np.random.SeedSequence([seed, SCENE_NAMESPACE, domain, scene + 1]).generate_state(1)[0])


def sample_batch(domains: Sequence[Domain], rng: np.random.Generator, count: int, crop: int, mismatch_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised crops (count, 4, crop, crop) with 0 at nodata, and labels (count, crop, crop) int64."""
    images = np.zeros((count, 4, crop, crop), np.float32)
    labels = np.full((count, crop, crop), MASK_NODATA, np.int64)
    for i in range(count):
        d = domains[int(rng.integers(len(domains)))]
        scene = int(rng.integers(d.images.shape[0]))
        size = d.images.shape[-1]
        row, col = (int(v) for v in rng.integers(0, size - crop + 1, size=2))
        stats = domains[int(rng.integers(len(domains)))] if rng.random() < mismatch_prob else d
        raw = d.images[scene, :, row : row + crop, col : col + crop]
        lab = d.labels[scene, row : row + crop, col : col + crop]
        valid = raw[0] != NODATA
        norm = np.where(valid[None], (raw - stats.mean[:, None, None]) / stats.std[:, None, None], 0.0)
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        norm, lab = np.rot90(norm, k, axes=(-2, -1)), np.rot90(lab, k)
        if flip:
            norm, lab = norm[..., ::-1], lab[..., ::-1]
        images[i] = norm
        labels[i] = lab
    return torch.from_numpy(images), torch.from_numpy(labels)


# -- model ------------------------------------------------------------------------------------


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (grid_h * grid_w, dim) for the MAE decoder, any grid size."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32), torch.arange(grid[1], dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        angle = coord[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1)


class PretrainHeads(nn.Module):
    """What is trained beside the ViT and thrown away afterwards: the MAE decoder and a linear seg head."""

    def __init__(self, vit: VisionTransformer, config: PretrainConfig) -> None:
        super().__init__()
        dim = int(vit.embed_dim)
        self.patch = int(vit.patch_embed.patch_size[0])
        channels = int(vit.patch_embed.proj.in_channels)
        self.levels = evenly_spaced_layers(len(vit.blocks))
        self.decoder_embed = nn.Linear(dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder_blocks = nn.ModuleList(Block(config.decoder_dim, num_heads=4, mlp_ratio=4.0, qkv_bias=True) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(config.decoder_dim)
        self.decoder_pred = nn.Linear(config.decoder_dim, self.patch * self.patch * channels)
        self.level_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in self.levels)
        self.seg = nn.Linear(dim * len(self.levels), self.patch * self.patch * NUM_CLASSES)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch*patch*C), tokens in row-major grid order like the ViT's."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    b = tokens.shape[0]
    x = tokens.reshape(b, grid[0], grid[1], patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, grid[0] * patch, grid[1] * patch)


def embed(vit: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Patch tokens with positions, class token first: the start of timm's own forward."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))


def mae_loss(vit: VisionTransformer, heads: PretrainHeads, images: torch.Tensor, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Reconstruction error of the hidden patches, over patches without nodata."""
    b, _, h, w = images.shape
    grid = (h // heads.patch, w // heads.patch)
    tokens = embed(vit, images)
    prefix = vit.num_prefix_tokens
    patches = tokens[:, prefix:]
    n = patches.shape[1]
    keep = max(1, int(round(n * (1 - mask_ratio))))
    order = torch.rand(b, n, generator=generator).argsort(dim=1)
    kept = order[:, :keep]
    visible = torch.gather(patches, 1, kept[..., None].expand(-1, -1, patches.shape[-1]))
    x = torch.cat((tokens[:, :prefix], visible), dim=1)
    x = vit.norm(vit.blocks(x))
    x = heads.decoder_embed(x)
    full = heads.mask_token.expand(b, n, -1).clone()
    full.scatter_(1, kept[..., None].expand(-1, -1, full.shape[-1]), x[:, prefix:])
    y = torch.cat((x[:, :prefix], full + sincos_2d(grid, full.shape[-1])[None]), dim=1)
    for block in heads.decoder_blocks:
        y = block(y)
    prediction = heads.decoder_pred(heads.decoder_norm(y))[:, prefix:]
    target = patchify(images, heads.patch)
    hidden = torch.ones(b, n, dtype=torch.bool)
    hidden.scatter_(1, kept, False)
    valid_patch = patchify((images != 0).any(dim=1, keepdim=True).float(), heads.patch).min(dim=-1).values > 0
    weight = (hidden & valid_patch).float()
    per_patch = (prediction - target).pow(2).mean(dim=-1)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


def segmentation_logits(vit: VisionTransformer, heads: PretrainHeads, images: torch.Tensor) -> torch.Tensor:
    """Per-pixel logits from a linear map of the normalised feature levels (every token predicts its patch)."""
    _, _, h, w = images.shape
    grid = (h // heads.patch, w // heads.patch)
    x = embed(vit, images)
    levels = []
    for index, block in enumerate(vit.blocks):
        x = block(x)
        if index in heads.levels:
            levels.append(heads.level_norms[len(levels)](x[:, vit.num_prefix_tokens :]))
        if index >= max(heads.levels):
            break
    logits = heads.seg(torch.cat(levels, dim=-1))
    return unpatchify(logits, heads.patch, grid, NUM_CLASSES)


def seg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if not bool((labels != MASK_NODATA).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=MASK_NODATA)


# -- training ---------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    vit: VisionTransformer
    losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _lr(config: PretrainConfig, step: int) -> float:
    warmup = max(1, int(config.warmup_fraction * config.steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer(vit: VisionTransformer, heads: PretrainHeads, config: PretrainConfig) -> torch.optim.AdamW:
    named = [(f"vit.{n}", p) for n, p in vit.named_parameters()] + [(f"heads.{n}", p) for n, p in heads.named_parameters()]
    no_decay = ("pos_embed", "cls_token", "mask_token")
    decay = [p for n, p in named if p.ndim >= 2 and not n.endswith(no_decay)]
    rest = [p for n, p in named if not (p.ndim >= 2 and not n.endswith(no_decay))]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )


def pretrain(config: PretrainConfig, log: Callable[[str], None] | None = None, log_every: int = 50) -> PretrainResult:
    """Train from a seeded random init; deterministic for a config on one torch build and thread count."""
    config.check()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _pretrain(config, log or (lambda _text: None), log_every)
    finally:
        torch.set_num_threads(threads)


def _pretrain(config: PretrainConfig, say: Callable[[str], None], log_every: int) -> PretrainResult:
    started = time.perf_counter()
    train_domains = build_domains(config, 0, config.domains)
    heldout = build_domains(config, HELDOUT_DOMAIN_OFFSET, config.heldout_domains) if config.heldout_domains else []
    say(f"rendered {len(train_domains)} domains x {config.scenes_per_domain} scenes in {time.perf_counter() - started:.1f} s")

    rng_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        vit = VisionTransformer(**tiny_vit_args())  # type: ignore[arg-type]
        heads = PretrainHeads(vit, config)
    finally:
        torch.random.set_rng_state(rng_state)
    optimizer = _optimizer(vit, heads, config)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    base = config.crop_sizes[0]
    history: list[dict[str, float]] = []
    recent: list[tuple[float, float]] = []
    vit.train()
    heads.train()
    for step in range(config.steps):
        crop = config.crop_sizes[step % len(config.crop_sizes)]
        count = max(1, round(config.batch_size * (base / crop) ** 2))
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, step, 1]))
        images, labels = sample_batch(train_domains, rng, count, crop, config.mismatch_prob)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        reconstruction = mae_loss(vit, heads, images, config.mask_ratio, generator)
        supervised = seg_loss(segmentation_logits(vit, heads, images), labels)
        loss = reconstruction + config.supervised_weight * supervised
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        recent.append((float(reconstruction.detach()), float(supervised.detach())))
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            mae_mean = float(np.mean([r[0] for r in recent]))
            seg_mean = float(np.mean([r[1] for r in recent]))
            history.append({"step": step + 1, "mae": round(mae_mean, 5), "seg_ce": round(seg_mean, 5)})
            say(f"step {step + 1}/{config.steps}  mae {mae_mean:.4f}  seg {seg_mean:.4f}  {time.perf_counter() - started:.0f} s")
            recent = []
    losses = {"train_mae": history[-1]["mae"], "train_seg_ce": history[-1]["seg_ce"]}
    if heldout:
        losses.update(evaluate(vit, heads, heldout, config))
    vit.eval()
    return PretrainResult(vit, losses, history, time.perf_counter() - started)


@torch.no_grad()
def evaluate(vit: VisionTransformer, heads: PretrainHeads, domains: Sequence[Domain], config: PretrainConfig) -> dict[str, float]:
    """Losses on fixed crops of held-out domains (their own statistics), plus the throwaway head's mIoU."""
    vit.eval()
    heads.eval()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    crop = config.crop_sizes[0]
    images, labels = sample_batch(domains, rng, 64, crop, 0.0)
    generator = torch.Generator().manual_seed(config.seed)
    reconstruction = float(mae_loss(vit, heads, images, config.mask_ratio, generator))
    logits = segmentation_logits(vit, heads, images)
    supervised = float(seg_loss(logits, labels))
    prediction = logits.max(dim=1).indices
    labeled = labels != MASK_NODATA
    ious = []
    for c in range(NUM_CLASSES):
        truth, guess = (labels == c) & labeled, (prediction == c) & labeled
        union = int((truth | guess).sum())
        if union:
            ious.append(int((truth & guess).sum()) / union)
    return {
        "heldout_mae": round(reconstruction, 5),
        "heldout_seg_ce": round(supervised, 5),
        "heldout_linear_miou": round(float(np.mean(ious)), 4),
    }


# -- files ------------------------------------------------------------------------------------


def save_weights(vit: VisionTransformer, path: Path) -> None:
    """The ViT alone, timm key names, strict-loadable into `VisionTransformer(**tiny_vit_args())`."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous().clone() for name, tensor in vit.state_dict().items()}
    with atomic_path(path) as tmp:
        # One metadata key only: safetensors writes metadata from a hash map whose order changes from
        # run to run, and the same weights must give the same bytes (and sha256).
        save_file(state, str(tmp), metadata={"format": FORMAT})


def record(config: PretrainConfig, result: PretrainResult, weights: Path, argv: Sequence[str]) -> dict[str, object]:
    """What the JSON beside the weights says: what this is, how it was made, how it ended."""
    import timm

    ranges = StyleRanges()
    return {
        "format": FORMAT,
        "what": (
            "A small ViT (0.7 M parameters) pretrained on synthetic scenes generated by cegate_cli.data.synthetic. "
            "It is NOT a foundation model: it has never seen real imagery. It exists so `cegate demo`, the tests "
            "and the benchmarks run offline on features that were learnt."
        ),
        "architecture": TINY_ARCHITECTURE,
        "vit_args": tiny_vit_args(),
        "bands": list(TINY_BANDS),
        "weights_file": weights.name,
        "sha256": file_sha256(weights),
        "bytes": weights.stat().st_size,
        "parameters": sum(p.numel() for p in result.vit.parameters()),
        "seed": config.seed,
        "steps": config.steps,
        "recipe": {
            "objectives": [
                f"masked autoencoder: {config.mask_ratio:.0%} of patch tokens hidden, a {config.decoder_depth}-block "
                f"decoder (dim {config.decoder_dim}) reconstructs the normalised pixels of hidden patches (MSE)",
                f"supervised: per-pixel cross-entropy on the synthetic class maps ({', '.join(c.name for c in DEMO_CLASSES.classes)}) "
                f"through a linear head on LayerNorm'd blocks {list(evenly_spaced_layers(int(tiny_vit_args()['depth'])))}, "  # type: ignore[arg-type]
                f"weight {config.supervised_weight}",
            ],
            "discarded": "MAE decoder and linear head; only the ViT is saved",
            "optimizer": f"AdamW betas (0.9, 0.95), lr {config.lr} with {config.warmup_fraction:.0%} warm-up and cosine decay, "
            f"weight decay {config.weight_decay}, grad clip {config.grad_clip}",
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        },
        "data": {
            "generator": "cegate_cli.data.synthetic.render_scene (domain 'source' layout and spectra) + a random DomainStyle per domain",
            "domains": config.domains,
            "scenes_per_domain": config.scenes_per_domain,
            "scene_size": config.scene_size,
            "style_ranges": asdict(ranges),
            "normalisation": "per-band mean/std over each domain's valid pixels; "
            f"{config.mismatch_prob:.0%} of crops normalised with another domain's statistics",
            "augmentation": "random crops, 90-degree rotations, flips",
            "not_used": "the demo's target style (STYLES['target']) and the demo's scene seeds: scene seeds come from "
            f"SeedSequence([seed, {SCENE_NAMESPACE:#x}, domain, scene]), the demo's from SeedSequence([seed, group, index])",
        },
        "final_losses": result.losses,
        "loss_history": result.history,
        "command": "python tools/pretrain_tiny.py " + " ".join(argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(result.seconds, 1),
        "threads": config.threads,
        "software": {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__},
        "machine": _cpu_name(),
        "environment": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: Sequence[str]) -> tuple[Path, PretrainConfig, int]:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(prog="python tools/pretrain_tiny.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors); the record goes beside it as .json")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--crop-sizes", default=",".join(map(str, defaults.crop_sizes)), help="comma-separated, cycled per step")
    parser.add_argument("--domains", type=int, default=defaults.domains)
    parser.add_argument("--scenes-per-domain", type=int, default=defaults.scenes_per_domain)
    parser.add_argument("--scene-size", type=int, default=defaults.scene_size)
    parser.add_argument("--heldout-domains", type=int, default=defaults.heldout_domains)
    parser.add_argument("--mask-ratio", type=float, default=defaults.mask_ratio)
    parser.add_argument("--supervised-weight", type=float, default=defaults.supervised_weight)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args(list(argv))
    if args.out.suffix != ".safetensors":
        raise InputError(f"--out {args.out}: the weights file must end in .safetensors")
    try:
        crops = tuple(int(c) for c in args.crop_sizes.split(","))
    except ValueError:
        raise InputError(f"--crop-sizes {args.crop_sizes!r}: give whole numbers separated by commas, e.g. 64,96") from None
    config = PretrainConfig(
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        crop_sizes=crops,
        domains=args.domains,
        scenes_per_domain=args.scenes_per_domain,
        scene_size=args.scene_size,
        heldout_domains=args.heldout_domains,
        mask_ratio=args.mask_ratio,
        supervised_weight=args.supervised_weight,
        lr=args.lr,
        threads=args.threads,
    )
    config.check()
    return args.out, config, max(1, args.log_every)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        out, config, log_every = parse_args(argv)
        result = pretrain(config, log=lambda text: print(text, file=sys.stderr, flush=True), log_every=log_every)
    except InputError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    save_weights(result.vit, out)
    write_json_atomic(out.with_suffix(".json"), record(config, result, out, argv))
    print(f"wrote {out} and {out.with_suffix('.json')}: {result.losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

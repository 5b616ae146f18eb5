"""Target class prototypes: move the head's class boundaries to where the target's classes lie.

On another region a class's features still cluster, but often away from where the source head
draws its boundary (dark vegetation read as water). Without labels the clusters can be found
(SHOT, Liang et al. 2020): class centroids of the target's features, each feature weighted by the
model's probability for the class, then refined by a few rounds of nearest-centroid assignment
(cosine). A nearest-centroid classifier is linear in the features (-|x - c|^2 = 2 c.x - |c|^2 -
|x|^2, the last term the same for every class), so it folds into the head's final 1x1 classifier,
which every head ends in (model/decoder.py): the run's class scores become a blend of the source
classifier and the target's centroids, and predict needs nothing new.

The features are the classifier's input on fixed target crops, read in the units predict reads
the target with; nodata pixels are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cegate_cli.data.crops import CropSampler
from cegate_cli.data.stats import BandStats
from cegate_cli.model.decoder import CLASS_BIAS
from cegate_cli.train.guard import class_shares

CLASS_WEIGHT = "classifier.weight"
ROUNDS = 2
"""Nearest-centroid rounds after the probability-weighted centroids (SHOT uses one or two)."""
TILE = 512
"""Side of the target tiles the features are read on: predict's default tile, so each feature sees
the context it will see when the map is made."""
TILES = 32
"""At most this many tiles, spread over the target's scenes on a fixed grid."""
POSITIONS_PER_TILE = 1024
"""Feature positions drawn from each tile: enough for stable centroids, few enough that the
features of every tile fit in memory whatever the head's resolution."""
PROTOTYPE_SEED_OFFSET = 15_485_863
MIN_PIXELS = 16
"""A class the model gives less probability mass than this many feature vectors, or that ends with
fewer assigned, keeps the source classifier's row: its centroid would be noise."""


@dataclass(frozen=True)
class PrototypeFit:
    """The blended classifier and what it changed, as run.json records it."""

    weight: torch.Tensor
    """(K, C, 1, 1) the classifier's new weight."""
    bias: torch.Tensor
    """(K,) its new bias."""
    source_shares: tuple[float, ...]
    """Class shares of the target's feature positions under the source classifier..."""
    blended_shares: tuple[float, ...]
    """...and under the blended one."""
    agreement: float
    """Share of positions both give the same class."""
    vectors: int
    fitted_classes: tuple[int, ...]
    """Classes that got a centroid (the others keep the source row)."""

    def sentence(self, class_names: Sequence[str]) -> str:
        """One line for the log: what the blend changed on the target's map."""
        moved = [
            f"{name} {before:.0%} -> {after:.0%}"
            for name, before, after in zip(class_names, self.source_shares, self.blended_shares)
            if abs(after - before) >= 0.01
        ]
        change = f" ({', '.join(moved)})" if moved else ""
        return f"the head now leans towards the target's class centroids: {1 - self.agreement:.0%} of the target's pixels change class{change}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_shares": [round(s, 4) for s in self.source_shares],
            "blended_shares": [round(s, 4) for s in self.blended_shares],
            "agreement": round(self.agreement, 4),
            "vectors": self.vectors,
            "fitted_classes": list(self.fitted_classes),
        }


def prototype_tiles(images: Sequence[Path], band_indexes: Sequence[tuple[int, ...]], stats: BandStats, ignore_index: int, seed: int) -> Iterator[Any]:
    """Fixed tiles of the target `images`, normalised with `stats`, in batches of four, read as
    they are needed."""
    sampler = CropSampler(images, band_indexes, stats, TILE, ignore_index, augment=False)
    try:
        windows = sampler.fixed_windows(TILES, seed)
        for i in range(0, len(windows), 4):
            yield sampler.read(windows[i : i + 4])
    finally:
        sampler.close()


@torch.no_grad()
def classifier_inputs(
    model: torch.nn.Module, batches: Iterable[Any], run: Callable[[torch.Tensor], torch.Tensor], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head classifier's input features (N, C) and class scores (N, K) at up to
    `POSITIONS_PER_TILE` valid positions of each tile of `batches` (each with `.images` and
    `.valid`), drawn by `seed`; `run` calls the model."""
    classifier = model.decoder.classifier
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = classifier.register_forward_hook(lambda _m, args, out: captured.append((args[0].detach(), out.detach())))
    generator = torch.Generator().manual_seed(seed)
    features, scores = [], []
    try:
        for batch in batches:
            captured.clear()
            run(batch.images)
            x, logits = (t.float().cpu() for t in captured[-1])
            valid = F.interpolate(batch.valid[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0].bool()
            for tile in range(x.shape[0]):
                where = torch.nonzero(valid[tile].flatten()).flatten()
                where = where[torch.randperm(where.numel(), generator=generator)[:POSITIONS_PER_TILE]]
                features.append(x[tile].flatten(1)[:, where].T)
                scores.append(logits[tile].flatten(1)[:, where].T)
    finally:
        handle.remove()
    return torch.cat(features), torch.cat(scores)


def fit_prototypes(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, scores: torch.Tensor, blend: float) -> PrototypeFit:
    """The classifier (`weight` (K, C, 1, 1), `bias` (K,)) blended with the target's centroids:
    `(1 - blend)` of the source's class scores plus `blend` of the nearest-centroid scores,
    scaled to the same spread."""
    features, scores = features.double(), scores.double()
    k = scores.shape[1]
    probabilities = torch.softmax(scores, dim=1)
    centroids = (probabilities.T @ features) / probabilities.sum(0).clamp_min(1e-12)[:, None]
    present = probabilities.sum(0) >= MIN_PIXELS  # a class the model hardly gives the target gets no centroid
    counts = torch.zeros(k, dtype=torch.long)
    for _ in range(ROUNDS):
        similarity = F.normalize(features, dim=1) @ F.normalize(centroids, dim=1).T
        assigned = similarity.masked_fill(~present, -torch.inf).argmax(1)
        counts = torch.bincount(assigned, minlength=k)
        onehot = F.one_hot(assigned, k).double()
        moved = (onehot.T @ features) / counts.clamp_min(1)[:, None].double()
        centroids = torch.where((counts > 0)[:, None], moved, centroids)
    fitted = counts >= MIN_PIXELS
    centroid_weight, centroid_bias = 2 * centroids, -(centroids**2).sum(1)
    centroid_scores = features @ centroid_weight.T + centroid_bias
    scale = float(scores.std(1).mean() / centroid_scores.std(1).mean().clamp_min(1e-12))
    row_blend = torch.where(fitted, blend, 0.0).double()[:, None]
    source_weight = weight.double()[:, :, 0, 0]
    new_weight = (1 - row_blend) * source_weight + row_blend * scale * centroid_weight
    new_bias = (1 - row_blend[:, 0]) * bias.double() + row_blend[:, 0] * scale * centroid_bias
    before = scores.argmax(1)
    after = (features @ new_weight.T + new_bias).argmax(1)
    return PrototypeFit(
        weight=new_weight[:, :, None, None].to(weight.dtype),
        bias=new_bias.to(bias.dtype),
        source_shares=class_shares(before, torch.ones_like(before, dtype=torch.bool), k),
        blended_shares=class_shares(after, torch.ones_like(after, dtype=torch.bool), k),
        agreement=float((before == after).double().mean()),
        vectors=int(features.shape[0]),
        fitted_classes=tuple(int(i) for i in torch.nonzero(fitted).flatten()),
    )


def with_prototypes(tensors: dict[str, torch.Tensor], fit: PrototypeFit, prefix: str) -> dict[str, torch.Tensor]:
    """A run's tensors with the head's classifier replaced by the blended one."""
    changed = dict(tensors)
    changed[f"{prefix}{CLASS_WEIGHT}"] = fit.weight.to(tensors[f"{prefix}{CLASS_WEIGHT}"].dtype)
    changed[f"{prefix}{CLASS_BIAS}"] = fit.bias.to(tensors[f"{prefix}{CLASS_BIAS}"].dtype)
    return changed

"""Whether the labels give each class enough to learn from, told before training starts.

A class labeled on a few hundred pixels of one image cannot be learned, whatever the loss does:
the run trains for minutes and the map still has no water. Users should hear that before the
minutes are spent, with what to do (label more of it, or merge or drop the class). The measure
is deliberately simple: the class's share of the labeled pixels and how many images hold it.
On the NAIP benchmark tiles (docs/benchmarks-real.md) the rarest class, water, is 1.4% of the
labeled pixels, in 41 of 172 images, and is learned (IoU 0.55 with Fisher selection at 300
steps), so the thresholds sit well below that: under 0.2% of the pixels, or in a single image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cegate_cli.data.classes import ClassTable

MIN_SHARE = 0.002
"""A class under this share of the labeled pixels is flagged as too rare to be learned."""
MIN_IMAGES = 2
"""A class in fewer images than this is flagged: one image is also one place, one light, one date."""


@dataclass(frozen=True)
class ClassCoverage:
    """How much of one class the labels hold."""

    class_id: int
    name: str
    pixels: int
    share: float
    images: int


def class_coverage(table: ClassTable, label_counts: Mapping[int, int], label_images: Mapping[int, int]) -> list[ClassCoverage]:
    """Each class of `table`: its labeled pixels, their share of all labeled pixels, and the
    number of images holding it (the ignore index is not a class and counts for nothing)."""
    labeled = sum(n for value, n in label_counts.items() if value != table.ignore_index)
    return [
        ClassCoverage(c.id, c.name, int(label_counts.get(c.id, 0)), label_counts.get(c.id, 0) / labeled if labeled else 0.0, int(label_images.get(c.id, 0)))
        for c in table.classes
    ]


def coverage_warnings(coverage: list[ClassCoverage], total_images: int) -> list[str]:
    """One line per class too rare to be learned, saying what it has and what would help."""
    lines = []
    for c in coverage:
        if c.pixels == 0:
            lines.append(f"class {c.name!r} (id {c.class_id}) has no labeled pixels: it cannot be learned; label some of it, or remove it from classes.yaml")
        elif c.share < MIN_SHARE or (c.images < MIN_IMAGES and total_images >= MIN_IMAGES):
            lines.append(
                f"class {c.name!r} (id {c.class_id}) is {100 * c.share:.2f}% of the labeled pixels ({c.pixels:,} px in {c.images} of "
                f"{total_images} images): too little to learn it reliably; label more of it in more images, "
                "or merge it into a neighbouring class"
            )
    return lines

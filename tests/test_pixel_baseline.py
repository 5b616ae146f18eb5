"""The per-pixel Gaussian baseline of benchmarks/bench_real.py (benchmarks/pixel_baseline.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pixel_baseline import GaussianPixelClassifier  # noqa: E402


def _two_gaussians(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 around (0, 0), class 1 around (10, 10), unit-ish and differently shaped spreads."""
    a = rng.normal([0.0, 0.0], [1.0, 0.5], size=(n, 2))
    b = rng.normal([10.0, 10.0], [0.5, 1.5], size=(n, 2))
    return np.concatenate([a, b]), np.repeat([0, 1], n)


def test_separates_two_well_separated_gaussians() -> None:
    rng = np.random.default_rng(0)
    x, y = _two_gaussians(rng, 500)
    model = GaussianPixelClassifier.fit(x, y, num_classes=2)
    fresh_x, fresh_y = _two_gaussians(rng, 500)
    assert (model.predict(fresh_x) == fresh_y).mean() > 0.999
    np.testing.assert_allclose(model.means, [[0, 0], [10, 10]], atol=0.2)


def test_prior_decides_between_identical_classes() -> None:
    """Two classes with the same distribution: the more frequent one must win everywhere."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3))
    y = (np.arange(4000) % 4 == 0).astype(np.int64)  # class 1 is a quarter of the pixels
    model = GaussianPixelClassifier.fit(x, y, num_classes=2)
    assert (model.predict(rng.normal(size=(1000, 3)) * 0.1) == 0).all()


def test_class_without_pixels_is_never_predicted() -> None:
    rng = np.random.default_rng(2)
    x, y = _two_gaussians(rng, 200)
    model = GaussianPixelClassifier.fit(x, y, num_classes=3)  # class 2 absent from training
    assert set(np.unique(model.predict(rng.normal(5.0, 20.0, size=(2000, 2))))) <= {0, 1}
    assert model.parameter_count == 2 * (2 + 3 + 1)

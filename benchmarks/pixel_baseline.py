"""A per-pixel Gaussian (quadratic discriminant) classifier: the no-deep-learning floor.

The real-imagery benchmark (benchmarks/bench_real.py) needs a row that says how far the band
values of a single pixel go on their own, with no spatial context and no pretrained features:
if cegate's rows do not clearly beat it, the backbone and its modules add nothing the spectra
did not already give. One full-covariance Gaussian per class plus the class prior is the classic
remote-sensing "maximum likelihood" classifier, fitted in closed form (no tuning, no iterations),
so the row is cheap, deterministic given its pixel sample and hard to get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-3
"""Added to each class covariance, times the mean per-band variance of all pixels: uint8 bands make
near-singular covariances for small, uniform classes (water), and a singular one would give that
class an unbounded likelihood."""


@dataclass(frozen=True)
class GaussianPixelClassifier:
    """argmax_k [log prior_k + log N(x | mean_k, cov_k)] over the classes seen in training."""

    means: np.ndarray
    """(K, d) per-class mean band values."""
    precisions: np.ndarray
    """(K, d, d) inverses of the (ridged) per-class covariances."""
    offsets: np.ndarray
    """(K,) log prior - 0.5 log det(cov); -inf for a class with too few training pixels."""

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int, ridge: float = RIDGE) -> GaussianPixelClassifier:
        """Fit from (n, d) band values and (n,) class ids in 0..num_classes-1 (no ignore values).

        A class with fewer than d + 1 pixels has no usable covariance and is never predicted:
        guessing its shape would be an invented number, and such a class is rare by definition.
        """
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"features must be (n, d) and labels (n,), got {x.shape} and {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels must lie in 0..{num_classes - 1}")
        d = x.shape[1]
        floor = ridge * float(np.mean(np.var(x, axis=0))) if x.size else ridge
        means = np.zeros((num_classes, d))
        precisions = np.tile(np.eye(d), (num_classes, 1, 1))
        offsets = np.full(num_classes, -np.inf)
        counts = np.bincount(y, minlength=num_classes)
        for k in np.flatnonzero(counts > d):
            own = x[y == k]
            means[k] = own.mean(axis=0)
            cov = np.cov(own, rowvar=False).reshape(d, d) + floor * np.eye(d)
            precisions[k] = np.linalg.inv(cov)
            offsets[k] = np.log(counts[k] / counts.sum()) - 0.5 * np.linalg.slogdet(cov)[1]
        return cls(means, precisions, offsets)

    def log_scores(self, features: np.ndarray) -> np.ndarray:
        """(n, K) unnormalised log posteriors (the shared -d/2 log 2 pi is left out)."""
        x = np.asarray(features, dtype=np.float64)
        centred = x[:, None, :] - self.means[None]  # (n, K, d)
        mahalanobis = np.einsum("nkd,kde,nke->nk", centred, self.precisions, centred)
        return self.offsets[None] - 0.5 * mahalanobis

    def predict(self, features: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """(n,) class ids, computed `chunk` pixels at a time to bound memory on large scenes."""
        x = np.asarray(features)
        out = np.empty(x.shape[0], dtype=np.int64)
        for start in range(0, x.shape[0], chunk):
            out[start : start + chunk] = np.argmax(self.log_scores(x[start : start + chunk]), axis=1)
        return out

    @property
    def parameter_count(self) -> int:
        """Fitted numbers of the classes in use: means, covariance triangles and priors."""
        used = int(np.isfinite(self.offsets).sum())
        d = self.means.shape[1]
        return used * (d + d * (d + 1) // 2 + 1)

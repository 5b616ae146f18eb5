"""The student's strong view in self-training: geometry, band jitter, noise and blur.

The teacher labels a weak view; the student must give the same answer on a harder one. The
blur and jitter also imitate the differences between sensors (optics, radiometry), which is the
shift being adapted to. Works on normalised tensors; labels and weights follow the geometry, and
invalid pixels stay exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StrongAugment:
    geometry: bool = True
    gain: float = 0.3
    offset: float = 0.3
    noise: float = 0.1
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.5)

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        weight: torch.Tensor,
        valid: torch.Tensor,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W), (B, H, W) x 3 -> the same, augmented per crop from `rng`."""
        out_images, out_labels, out_weight, out_valid = [], [], [], []
        channels = images.shape[1]
        for i in range(images.shape[0]):
            image, label, w, v = images[i], labels[i], weight[i], valid[i]
            if self.geometry:
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                image, label, w, v = (_geometry(t, k, flip) for t in (image, label, w, v))
            gain = torch.from_numpy(rng.uniform(1 - self.gain, 1 + self.gain, channels).astype(np.float32)).to(image.device)
            offset = torch.from_numpy(rng.uniform(-self.offset, self.offset, channels).astype(np.float32)).to(image.device)
            image = image * gain[:, None, None] + offset[:, None, None]
            if rng.random() < self.blur_probability:
                image = gaussian_blur(image, float(rng.uniform(*self.blur_sigma)))
            if self.noise > 0:
                noise = rng.standard_normal(image.shape).astype(np.float32) * self.noise
                image = image + torch.from_numpy(noise).to(image.device)
            out_images.append(torch.where(v[None], image, torch.zeros((), device=image.device)))
            out_labels.append(label)
            out_weight.append(w)
            out_valid.append(v)
        return torch.stack(out_images), torch.stack(out_labels), torch.stack(out_weight), torch.stack(out_valid)


def _geometry(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    t = torch.rot90(t, k, dims=(-2, -1))
    return torch.flip(t, dims=(-1,)) if flip else t


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) -> blurred with a separable Gaussian (reflect padding)."""
    radius = max(1, int(np.ceil(2 * sigma)))
    radius = min(radius, image.shape[-1] - 1, image.shape[-2] - 1)
    if radius < 1:
        return image
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    taps = taps / taps.sum()
    c = image.shape[0]
    batch = image[None]
    batch = F.conv2d(F.pad(batch, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    batch = F.conv2d(F.pad(batch, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return batch[0]

"""Differentiable augmentation (DiffAugment; Zhao et al. 2020, "Differentiable Augmentation
for Data-Efficient GAN Training") for a discriminator trained on few images.

The discriminator sees every image, real or generated, through the same kind of random
transforms, in its own step and in the generator's; the transforms are torch ops, so the
generator's gradient flows back through them. Each call draws fresh randomness per image.
The policies follow the paper's reference code:

- `color`: brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the per-pixel channel
  mean) and contrast (x U(0.5, 1.5) around the image mean);
- `translation`: a shift of up to 1/8 of the image side in each direction, zero padded;
- `cutout`: a square of half the image side set to zero at a random centre.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F



def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One U(low, high) factor per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * (high - low) + low


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + _uniform(x, -0.5, 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        # The mean over one channel is the pixel itself, so (x - mean) * s + mean == x:
        # skipping it changes nothing but the random draws it would waste.
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _uniform(x, 0.0, 2.0) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Each image shifted by up to ratio x its size (rows and columns independently);
    what comes in from outside is zero."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    # Gather from a copy padded by max shift: output (i, j) reads input (i - dy, j - dx).
    padded = F.pad(x, [sx, sx, sy, sy])
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - dy + sy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - dx + sx).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """A (ratio x size)^2 square of each image set to zero, centred anywhere on it (so
    near an edge part of the square falls outside)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2
    cols = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)
    return x * (~inside).to(x.dtype).unsqueeze(1)


# The names are raydl.gen.experiment.AUGMENT_POLICIES (torch-free, checked when a file loads).
POLICIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """x (N, C, H, W) through every transform of the policies, in order, with fresh
    randomness per image; x itself when the policy is empty."""
    for name in policy:
        for transform in POLICIES[name]:
            x = transform(x)
    return x

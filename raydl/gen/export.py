"""A generative checkpoint as an exportable module: noise -> images.

The graph takes standard normal noise (N, latent) (and, for a conditional GAN, int64
class labels (N,)) and gives images (N, C, H, W) with
pixels in [0, 1], exactly as `raydl sample` draws them: a GAN's tanh output mapped from
[-1, 1], a VAE decoder's sigmoid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydl.export import Exportable
from raydl.gen.models import ConvVAE, cycled_labels
from raydl.gen.trainer import load_generator
from raydl.errors import ConfigError


class Sampler(nn.Module):
    """Noise [and class labels, for a conditional GAN] -> [0, 1] images, by a GAN
    generator or a VAE decoder."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.net, ConvVAE):
            return torch.sigmoid(self.net.decode(z))
        return (self.net(z, labels) + 1) / 2


def exportable(directory: Path, cfg: Any) -> Exportable:
    """The generator (GAN) or decoder (VAE) of an epoch checkpoint (registry entry point)."""
    if cfg.kind == "vae" and not cfg.model.variational:
        raise ConfigError(f"{directory}: a plain autoencoder has no prior to sample from, so "
                          "no noise -> image graph; train with model.variational: true")
    _, net = load_generator(directory)
    noise = torch.randn(3, cfg.model.latent, generator=torch.Generator().manual_seed(0))
    labels = cycled_labels(3, getattr(net, "classes", 0))  # a VAE decoder has none
    if labels is not None:  # int64 class indices beside the noise, one per image
        return Exportable(Sampler(net).eval(), (noise, labels), ("noise", "label"),
                          ("image",), dynamic_axes=((0,), (0,)), what=f"conditional {cfg.kind} sampler")
    return Exportable(Sampler(net).eval(), (noise,), ("noise",), ("image",),
                      what=f"{cfg.kind} sampler")

"""DCGAN (Radford et al. 2016) and a convolutional VAE (Kingma & Welling 2014).

DCGAN: the generator is transposed convolutions with BatchNorm and ReLU and a tanh
output; the discriminator is strided convolutions with LeakyReLU(0.2) and no BatchNorm
on its input layer; all weights start from N(0, 0.02) (BatchNorm scales from N(1, 0.02)).
Sizes: 28, 32 or 64-pixel square images with 1 or 3 channels.

Class-conditional (`classes` > 0): the generator takes the class as a one-hot code beside
z (Mirza & Osindero 2014); the discriminator is a projection discriminator (Miyato &
Koyama 2018): its logit gains the inner product of a learned class embedding with its
pooled features, so it judges "a real image of this class", not only "a real image".
"""

from __future__ import annotations

import torch
from torch import nn

from raydl.gen.experiment import SIZES


def _plan(size: int) -> tuple[int, list[int]]:
    """(start resolution, upsampling kernel sizes) that reach `size` by doubling."""
    if size == 28:
        return 7, [4, 4]  # 7 -> 14 -> 28
    if size == 32:
        return 4, [4, 4, 4]  # 4 -> 8 -> 16 -> 32
    if size == 64:
        return 4, [4, 4, 4, 4]
    raise ValueError(f"image size {size}: allowed {', '.join(map(str, SIZES))}")


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, latent) [and class labels (B,) when conditional] -> images (B, C, size, size)
    in [-1, 1]."""

    def __init__(self, latent: int, channels: int, size: int, width: int = 64, classes: int = 0) -> None:
        super().__init__()
        start, kernels = _plan(size)
        widths = [width * 2 ** (len(kernels) - 1 - i) for i in range(len(kernels))]
        self.project = nn.Sequential(
            nn.ConvTranspose2d(latent + classes, widths[0], start, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            last = i == len(kernels) - 1
            out = channels if last else widths[i + 1]
            layers.append(nn.ConvTranspose2d(widths[i], out, k, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(True)]
        self.body = nn.Sequential(*layers)
        self.latent, self.classes = latent, classes
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes:
            if labels is None:
                raise ValueError("a class-conditional generator needs the labels of the images to draw")
            z = torch.cat([z, nn.functional.one_hot(labels, self.classes).to(z.dtype)], dim=1)
        # z.shape[0], not len(z): a traced (TorchScript) generator keeps any batch size
        return self.body(self.project(z.view(z.shape[0], -1, 1, 1)))


def cycled_labels(n: int, classes: int) -> torch.Tensor | None:
    """0, 1, ..., classes - 1, 0, 1, ... (n of them): what a conditional generator is asked
    to draw for grids, scores, `raydl sample` and export examples, every class equally;
    None when unconditional."""
    return torch.arange(n) % classes if classes else None


class Discriminator(nn.Module):
    """images [and their class labels, when conditional] -> one logit each (real vs
    generated)."""

    def __init__(self, channels: int, size: int, width: int = 64, norm: str = "batch",
                 classes: int = 0) -> None:
        super().__init__()
        _, kernels = _plan(size)
        layers: list[nn.Module] = []
        c = channels
        spectral = norm == "spectral"
        for i in range(len(kernels)):
            out = width * 2**i
            layers.append(nn.Conv2d(c, out, 4, 2, 1, bias=i == 0 or spectral))
            if i > 0 and not spectral:  # no BatchNorm on the input layer (the paper's rule)
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, True))
            c = out
        self.body = nn.Sequential(*layers)
        final = size // 2 ** len(kernels)
        self.head = nn.Conv2d(c, 1, final, 1, 0)
        self.embed = nn.Embedding(classes, c) if classes else None  # the projection's class vectors
        self.apply(dcgan_init)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral:  # Miyato et al. 2018: every layer 1-Lipschitz, no BatchNorm
            for module in [*self.body, self.head, self.embed]:
                if isinstance(module, (nn.Conv2d, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        logit = self.head(h).view(-1)
        if self.embed is None:
            return logit
        if labels is None:
            raise ValueError("a projection discriminator needs the labels of the images it judges")
        return logit + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)


class ConvVAE(nn.Module):
    """Convolutional encoder -> (mu, log variance) -> z = mu + sigma * eps -> decoder.

    With `variational=False` it is a plain (or, fed noisy inputs, denoising) autoencoder."""

    def __init__(self, channels: int, size: int, latent: int = 16, width: int = 32,
                 variational: bool = True) -> None:
        super().__init__()
        self.variational, self.latent = variational, latent
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.ReLU(True), nn.Flatten(),
        )
        side = size // 4
        features = width * 2 * side * side
        self.to_stats = nn.Linear(features, latent * (2 if variational else 1))
        self.from_z = nn.Sequential(nn.Linear(latent, features), nn.ReLU(True))
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (width * 2, side, side)),
            nn.ConvTranspose2d(width * 2, width, 4, 2, 1), nn.ReLU(True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # logits of pixel intensities
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        stats = self.to_stats(self.encoder(x))
        if not self.variational:
            return stats, None
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_z(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.encode(x)
        if logvar is None or not self.training:
            z = mu
        else:  # the reparameterization trick: the noise is an input, gradients reach mu, sigma
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def vae_loss(
    logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | None,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, KL) per image: Bernoulli cross-entropy on [0, 1] pixels plus
    beta * KL(N(mu, sigma^2) || N(0, 1)) = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2)."""
    recon = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(target)
    if logvar is None:
        kl = torch.zeros((), device=logits.device)
    else:
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(target)
    return recon + beta * kl, recon, kl

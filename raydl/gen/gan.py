"""The GAN updates (Goodfellow et al. 2014; DCGAN, Radford et al. 2016), as functions
over the two networks, correct whether or not they are wrapped in DDP.

Discriminator step:  max_D  E log D(x) + E log(1 - D(G(z)))
    real and generated images go through D as two batches (BatchNorm sees all-real or
    all-generated batches, as in the DCGAN reference code); G runs without gradients.
    One backward through D's DDP wrapper: each D parameter's hook fires once with the
    sum of both terms, so gradients are all-reduced exactly once.
Generator step:  non-saturating  min_G -E log D(G(z))   (the paper's practical choice)
                 or minimax      min_G  E log(1 - D(G(z)))
    D's parameters are frozen and D is called *unwrapped*, so D's DDP reducer is not
    involved (no all-reduce of D gradients that nobody applies, no stale D gradients
    left behind); G's gradients are all-reduced by G's own DDP wrapper.
Class-conditional networks (raydl.gen.models) take the labels beside z and the images:
real images with their own classes, generated ones with the classes G was asked for.
Options: one-sided label smoothing, instance noise (Gaussian noise on every image D
sees, real or generated: on small datasets it keeps D from winning on pixel detail), and
DiffAugment (raydl.gen.diffaugment: random differentiable transforms of every image D
sees, in both steps, so D cannot memorize a small training set and G still gets exact
gradients). Each worker draws its own augmentations and noise; the all-reduce only ever
averages gradients, so the replicas stay identical.

`GeneratorAverage` keeps an exponential moving average of G's weights (Yazici et al. 2019,
"The Unusual Effectiveness of Averaging in GAN Training"): it is updated from G's weights
after each G step, which are the same on every worker, so the average is too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.optim.swa_utils import AveragedModel

from raydl.gen.diffaugment import diff_augment
from raydl.nn import guarded_step


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class GANLossConfig:
    label_smoothing: float = 0.0  # one-sided: real targets are 1 - s (Salimans et al. 2016)
    non_saturating: bool = True
    instance_noise: float = 0.0  # std of Gaussian noise on every image D sees (Sonderby et al. 2016)
    augment: tuple[str, ...] = ()  # DiffAugment policies on every image D sees


Labels = tuple[torch.Tensor | None, torch.Tensor | None]


def _call(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """net(x), or net(x, labels) for a class-conditional network (a DDP wrapper passes
    both arguments on)."""
    return net(x) if labels is None else net(x, labels)


def _view(x: torch.Tensor, cfg: GANLossConfig) -> torch.Tensor:
    """What D sees of an image: augmented and noised the same way (with fresh randomness
    per call) for real and generated ones."""
    x = diff_augment(x, cfg.augment)
    if cfg.instance_noise > 0:
        x = x + cfg.instance_noise * torch.randn_like(x)
    return x


def discriminator_step(
    d: nn.Module, g: nn.Module, real: torch.Tensor, z: torch.Tensor,
    optimizer: torch.optim.Optimizer, loss_cfg: GANLossConfig,
    labels: Labels = (None, None),
) -> dict[str, float]:
    """One D update on a real batch and G(z); returns its loss and mean D outputs, and
    `nonfinite` 1.0 (the update not applied) when D's gradient is NaN/inf. `labels`:
    (the real images' classes, the classes G draws) for class-conditional networks."""
    real_y, fake_y = labels
    with torch.no_grad():
        fake = _call(unwrap(g), z, fake_y)
    real_logits = _call(d, _view(real, loss_cfg), real_y)
    fake_logits = _call(d, _view(fake, loss_cfg), fake_y)
    real_target = torch.full_like(real_logits, 1.0 - loss_cfg.label_smoothing)
    loss = bce(real_logits, real_target) + bce(fake_logits, torch.zeros_like(fake_logits))
    d_real = torch.sigmoid(real_logits.detach()).mean()
    d_fake = torch.sigmoid(fake_logits.detach()).mean()
    (d_loss, _, d_real_v, d_fake_v), stepped = guarded_step(
        optimizer, list(d.parameters()), loss, extra=(d_real, d_fake)
    )
    return {"d_loss": d_loss, "d_real": d_real_v, "d_fake": d_fake_v, "nonfinite": float(not stepped)}


def generator_step(
    g: nn.Module, d: nn.Module, z: torch.Tensor, optimizer: torch.optim.Optimizer,
    loss_cfg: GANLossConfig, labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """One G update through a frozen, unwrapped D; `nonfinite` 1.0 when G's gradient is
    NaN/inf (the update is then not applied). `labels`: the classes G draws (conditional)."""
    critic = unwrap(d)
    for p in critic.parameters():
        p.requires_grad_(False)
    try:
        logits = _call(critic, _view(_call(g, z, labels), loss_cfg), labels)
        if loss_cfg.non_saturating:
            loss = bce(logits, torch.ones_like(logits))
        else:  # minimize log(1 - D(G(z))) = -BCE(logits, 0)
            loss = -bce(logits, torch.zeros_like(logits))
        (g_loss, _), stepped = guarded_step(optimizer, list(g.parameters()), loss)
    finally:
        for p in critic.parameters():
            p.requires_grad_(True)
    return {"g_loss": g_loss, "nonfinite": float(not stepped)}


class GeneratorAverage:
    """An exponential moving average of a generator's weights (torch's AveragedModel):
    w_avg <- d * w_avg + (1 - d) * w after each G step, d = min(decay, (1 + n) / (10 + n))
    after n updates (the warm-up of TensorFlow's ExponentialMovingAverage), so the random
    initial weights do not linger in the average for thousands of steps. BatchNorm's
    running statistics are copied from G, not averaged."""

    def __init__(self, g: nn.Module, decay: float) -> None:
        def average(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
            d = min(decay, (1 + float(n)) / (10 + float(n)))
            torch._foreach_lerp_(averaged, current, 1 - d)

        self.net = AveragedModel(unwrap(g), multi_avg_fn=average)
        self.net.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged generator (a plain Generator)."""
        return self.net.module

    def update(self, g: nn.Module) -> None:
        self.net.update_parameters(unwrap(g))

    def state(self) -> dict[str, Any]:
        """The averaged weights (what `raydl sample` loads) and the update count."""
        return {"generator_ema": self.module.state_dict(), "ema_updates": int(self.net.n_averaged)}

    def load(self, saved: dict[str, Any]) -> None:
        self.module.load_state_dict(saved["generator_ema"])
        self.net.n_averaged.fill_(int(saved["ema_updates"]))

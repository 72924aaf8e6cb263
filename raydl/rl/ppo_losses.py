"""PPO's pieces as pure torch functions (Schulman et al. 2017), plus its minibatch order.

Conventions follow SB3's PPO (and CleanRL's ppo.py where they agree), so rl-zoo
hyperparameters mean the same here: the value loss is a plain mean squared error (the
caller weighs it with vf_coef), `clip_range_vf` clips the new value around the old one,
advantages are normalized per minibatch with the unbiased std.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SurrogateResult:
    """The clipped surrogate loss (differentiable) and two diagnostics (detached)."""

    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of samples with |ratio - 1| > clip_range
    approx_kl: torch.Tensor  # estimate of KL(old || new)


def clipped_surrogate(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> SurrogateResult:
    """PPO-Clip's policy loss over a minibatch:

        rho = exp(log pi(a|s) - log pi_old(a|s))
        loss = -mean( min(rho A, clip(rho, 1 - eps, 1 + eps) A) )
        clip_fraction = mean( |rho - 1| > eps )
        approx_kl = mean( (rho - 1) - log rho )

    approx_kl is the unbiased, always non-negative estimator of KL(pi_old || pi) that SB3
    and CleanRL use for `target_kl` (Schulman's "k3"). `old_log_probs` and `advantages`
    are constants: no gradient flows into them."""
    log_ratio = new_log_probs - old_log_probs.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * adv
    loss = -torch.min(unclipped, clipped).mean()
    with torch.no_grad():
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
    return SurrogateResult(loss, clip_fraction, approx_kl)


def ppo_value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range_vf: float | None = None,
) -> torch.Tensor:
    """Mean squared error of the critic, optionally clipped around the old values
    (SB3's `clip_range_vf`; note it is in the units of the value, not relative):

        V' = V                                          if clip_range_vf is None
        V' = V_old + clip(V - V_old, -c, c)             otherwise
        loss = mean( (R - V')^2 )

    No 0.5 factor: the caller weighs the loss with vf_coef, as SB3 does."""
    if clip_range_vf is not None:
        if old_values is None:
            raise ValueError("value clipping needs the old values")
        old = old_values.detach()
        values = old + torch.clamp(values - old, -clip_range_vf, clip_range_vf)
    return torch.mean(torch.square(returns.detach() - values))


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean A) / (std A + eps) with the unbiased std, per minibatch as SB3/CleanRL do.
    A minibatch of one sample is returned as is (its std is undefined), as SB3 skips it."""
    if advantages.numel() <= 1:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def kl_exceeded(approx_kl: float | torch.Tensor, target_kl: float | None) -> bool:
    """Whether to stop this update's epochs early: approx_kl > 1.5 target_kl, checked
    after each minibatch as SB3 does (its 1.5 margin; CleanRL checks target_kl itself, per
    epoch). None: never stop."""
    return target_kl is not None and float(approx_kl) > 1.5 * target_kl


Generator = torch.Generator | np.random.Generator


def _permutation(n: int, generator: Generator) -> torch.Tensor:
    if isinstance(generator, np.random.Generator):
        return torch.from_numpy(generator.permutation(n).astype(np.int64))
    return torch.randperm(n, generator=generator)


def epoch_minibatches(
    batch_size: int, minibatches: int, generator: Generator
) -> list[torch.Tensor]:
    """One epoch: a fresh permutation of range(batch_size) cut into `minibatches` index
    tensors (CPU, int64) whose sizes differ by at most one, so every sample is used once
    per epoch even when batch_size is not a multiple of minibatches."""
    if not 1 <= minibatches <= batch_size:
        raise ValueError(f"minibatches must be in 1..{batch_size} (the batch size), "
                         f"got {minibatches}")
    return list(torch.tensor_split(_permutation(batch_size, generator), minibatches))


def ppo_minibatches(
    batch_size: int, epochs: int, minibatches: int, generator: Generator
) -> Iterator[tuple[int, torch.Tensor]]:
    """(epoch, indices) for `epochs` x `minibatches` passes over a flat batch; the learner
    may stop early (target_kl) by leaving the loop, which draws no further permutations."""
    for epoch in range(epochs):
        for indices in epoch_minibatches(batch_size, minibatches, generator):
            yield epoch, indices

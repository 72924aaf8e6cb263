"""DQN losses as pure functions of tensors (hand-checkable, no Ray, no envs)."""

from __future__ import annotations

import torch

from raydl.nn import elementwise_loss


def td_target(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
    double_q: bool = False,
) -> torch.Tensor:
    """y = r + gamma^k (1 - terminated) Q'(s', a*).

    DQN: a* = argmax_a Q'(s', a) (the target net picks and evaluates).
    Double DQN (van Hasselt et al. 2016): a* = argmax_a Q(s', a) (the online net picks,
    the target net evaluates), which removes most of DQN's overestimation.
    """
    if double_q:
        if next_q_online is None:
            raise ValueError("double_q needs next_q_online")
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_v = next_q_target.gather(1, best).squeeze(1)
    else:
        next_v = next_q_target.max(dim=1).values
    return rewards + discounts * (1.0 - terminated) * next_v


def q_loss(
    q_values: torch.Tensor,
    actions: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    loss: str = "huber",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted regression of Q(s, a) onto the TD targets.

    Returns (scalar loss, per-sample TD errors for replay priorities)."""
    q_taken = q_values.gather(1, actions.unsqueeze(1)).squeeze(1)
    td_errors = targets - q_taken
    per_sample = elementwise_loss(loss, q_taken, targets)
    return (weights * per_sample).mean(), td_errors.detach()

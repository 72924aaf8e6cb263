"""RL losses as pure functions of tensors (hand-checkable, no Ray, no envs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raydl.nn import elementwise_loss
from raydl.rl.distributions import Categorical, Distribution


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


@dataclass
class DQNLoss:
    """A DQN minibatch's loss and what the learner needs besides it (as Acme's losses
    return their extras): per-sample TD errors for replay priorities, the mean Q."""

    loss: torch.Tensor  # scalar, importance-weighted
    td_errors: torch.Tensor  # (B,), detached
    q_mean: torch.Tensor  # scalar, detached


def dqn_loss(
    q_net: nn.Module,
    target_net: nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    double_q: bool,
    loss: str = "huber",
    amp: bool = False,
) -> DQNLoss:
    """The forward passes and the loss of one replay minibatch (fields as the replay
    buffers give them: obs, action, reward, next_obs, terminated, discount, weights).

    With `amp` the forward passes run in bfloat16 autocast (no loss scaling needed); the
    TD targets and the loss are computed in float32 either way."""
    obs, next_obs = batch["obs"], batch["next_obs"]
    with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=amp):
        with torch.no_grad():
            next_q_target = target_net(next_obs).float()
        if double_q:
            # One forward over [obs; next_obs] is cheaper than two small ones.
            both = q_net(torch.cat([obs, next_obs])).float()
            q_values, next_q_online = both[: len(obs)], both[len(obs) :].detach()
        else:
            q_values, next_q_online = q_net(obs).float(), None
    targets = td_target(batch["reward"], batch["discount"], batch["terminated"],
                        next_q_target, next_q_online, double_q)
    value, td_errors = q_loss(q_values, batch["action"], targets, batch["weights"], loss)
    return DQNLoss(value, td_errors, q_values.detach().mean())


# ----------------------------------------------------------------------------- policy gradient
# Rollout arrays are time-major, shaped (T, N): T steps of N envs. `terminated[t]` is a true
# end of the episode (no future value); `ended[t]` is terminated or truncated (a time
# limit: the episode stops but its future value is V(final obs), given in next_values[t]).
# next_values[t] = V(s_{t+1}) of the real next state (the final obs when ended[t]).


def discounted_returns(
    rewards: torch.Tensor, ended: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Whole-episode (Monte Carlo) returns G_t = r_t + gamma G_{t+1}, restarting at each
    episode end, with no bootstrap (REINFORCE)."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running * (1.0 - ended[t])
        returns[t] = running
    return returns


def nstep_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    ended: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """A3C's returns (Mnih et al. 2016): each step sums the rewards to the end of the
    rollout and bootstraps with V of the state there, R_t = r_t + gamma R_{t+1}; at an
    episode end the trace restarts (terminated: nothing after; truncated: V(final obs))."""
    returns = torch.zeros_like(rewards)
    following = next_values[-1]
    for t in range(len(rewards) - 1, -1, -1):
        future = torch.where(ended[t].bool(), next_values[t], following)
        following = rewards[t] + gamma * (1.0 - terminated[t]) * future
        returns[t] = following
    return returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    ended: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016); returns (advantages,
    value targets = advantages + values).

    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
    A_t = delta_t + gamma lam (1 - ended_t) A_{t+1}
    lam = 1 gives the n-step advantages above; lam = 0 the one-step TD error."""
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1.0 - ended[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def policy_gradient_loss(
    logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """-E[log pi(a|s) A]: advantages are constants (no gradient flows into the critic)."""
    log_probs = torch.log_softmax(logits, dim=-1).gather(1, actions.unsqueeze(1)).squeeze(1)
    return -(log_probs * advantages.detach()).mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Mean squared error of V(s) against its targets (SB3's convention: no 1/2; the
    weight is `vf_coef`)."""
    return (returns.detach() - values).pow(2).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the categorical policies: the exploration bonus."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1).mean()


def actor_critic_loss(
    policy: torch.Tensor | Distribution,
    values: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """policy loss + vf_coef * value loss - ent_coef * entropy, and its parts.

    `policy`: the action distribution of the batch (raydl.rl.distributions), or the
    logits of a categorical one; `actions` are its raw actions."""
    dist = Categorical(policy) if isinstance(policy, torch.Tensor) else policy
    pg = -(dist.log_prob(actions) * advantages.detach()).mean()
    vf = value_loss(values, returns)
    ent = dist.entropy().mean()
    total = pg + vf_coef * vf - ent_coef * ent
    parts = {"pg_loss": float(pg.detach()), "value_loss": float(vf.detach()),
             "entropy": float(ent.detach())}
    return total, parts

"""The pure parts of SAC (Haarnoja et al. 2018) and TD3 (Fujimoto et al. 2018): critic
targets, smoothed target actions and the actor and temperature losses, over tensors.

Replay stores n-step-folded transitions (reward = discounted n-step sum, discount =
gamma^k), so every target is  y = reward + discount * (1 - terminated) * V(next_obs):

    SAC    V(s') = min_i Q'_i(s', a') - alpha log pi(a' | s'),   a' ~ pi(. | s')
    TD3    V(s') = min_i Q'_i(s', a'),   a' = clip(mu'(s') + clip(eps, -c, c), -1, 1)
    DDPG   V(s') = Q'(s', mu'(s'))       (TD3 with one critic, no smoothing, no delay)
"""

from __future__ import annotations

import torch


def bellman_target(reward: torch.Tensor, discount: torch.Tensor, terminated: torch.Tensor,
                   next_value: torch.Tensor) -> torch.Tensor:
    """y = reward + discount * (1 - terminated) * next_value, all (B,)."""
    return reward + discount * (1.0 - terminated) * next_value


def soft_next_value(next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor | float
                    ) -> torch.Tensor:
    """SAC's V(s') from the target critics' (n, B) values at a' ~ pi and log pi(a'|s')."""
    return next_q.min(dim=0).values - alpha * next_log_prob


def smoothed_actions(target_actions: torch.Tensor, noise_std: float, noise_clip: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """TD3's target policy smoothing: mu'(s') + clip(N(0, std), -clip, clip), kept in
    [-1, 1]; noise_std 0 gives mu'(s') itself (DDPG)."""
    if noise_std == 0:
        return target_actions
    noise = torch.randn(target_actions.shape, generator=generator, device=target_actions.device)
    noise = (noise * noise_std).clamp(-noise_clip, noise_clip)
    return (target_actions + noise).clamp(-1.0, 1.0)


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """scale * sum_i mean_b w_b (Q_i(s_b, a_b) - y_b)^2 over the (n, B) critic values, and
    each sample's mean |TD error| over the critics (the priorities of prioritized replay).
    SB3 weighs SAC's loss by 0.5 and TD3's by 1."""
    errors = q - target.unsqueeze(0)
    squared = errors.pow(2) if weights is None else errors.pow(2) * weights.unsqueeze(0)
    return scale * squared.mean(dim=1).sum(), errors.detach().abs().mean(dim=0)


def sac_actor_loss(q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float
                   ) -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi reparameterized; q_pi (n, B)."""
    return (alpha * log_prob - q_pi.min(dim=0).values).mean()


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """-E[log alpha (log pi(a|s) + target entropy)]: alpha grows while the policy's
    entropy (-E log pi) is below the target and shrinks while it is above."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def deterministic_actor_loss(q1_pi: torch.Tensor) -> torch.Tensor:
    """-E[Q_1(s, mu(s))] (TD3 and DDPG follow the first critic)."""
    return -q1_pi.mean()

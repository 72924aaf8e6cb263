"""Soft Actor-Critic (Haarnoja et al. 2018, with automatic entropy tuning) on Ray env runners.

One update, in SB3's order (raydl.rl.offpolicy_losses holds the pure parts):

    a, log pi(a|s) ~ actor(s)                       (reparameterized)
    alpha step:   -E[log alpha (log pi(a|s) + target entropy)]   (when alpha is tuned)
    critic step:  y = r + gamma^k (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')),
                  a' ~ actor(s');  loss 0.5 sum_i E[(Q_i(s, a_replay) - y)^2]
    actor step:   E[alpha log pi(a|s) - min_i Q_i(s, a)]   (the critics just updated)
    targets:      Q'_i <- tau Q_i + (1 - tau) Q'_i

The replay, runners, replay ratio and resume are DQN's (raydl.rl.offpolicy.ReplayLoop);
runners act with samples of the policy (uniform actions before `learning_starts`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from raydl.envs.spec import EnvSpec
from raydl.rl.actions import action_spec
from raydl.rl.continuous import SquashedGaussianActor
from raydl.rl.continuous_experiment import SACConfig, SACExperiment
from raydl.rl.continuous_learner import ContinuousLearner
from raydl.rl.offpolicy import frozen, lerp_params
from raydl.rl.offpolicy_losses import (
    alpha_loss, bellman_target, critic_loss, sac_actor_loss, soft_next_value,
)


class Temperature(nn.Module):
    """SAC's entropy weight alpha, learned as log alpha (a module: it checkpoints)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()


class SAC(ContinuousLearner):
    """The SAC learner; see the module's doc."""

    update_metrics = ("critic_loss", "actor_loss", "q_mean", "alpha", "alpha_loss", "entropy")

    def __init__(self, cfg: SACExperiment, env: EnvSpec | None = None) -> None:
        super().__init__(cfg, env)
        algo = cfg.algo
        size = action_spec(self.env.action_space).size
        self.target_entropy = float(-size if algo.target_entropy is None else algo.target_entropy)
        self.temperature = Temperature(algo.alpha if algo.alpha is not None else algo.alpha_init)
        self.temperature.to(self.device)
        self.alpha_opt = (self.optimizer(self.temperature.parameters())
                          if algo.alpha is None else None)

    @staticmethod
    def build_actor(env: EnvSpec, algo: SACConfig) -> SquashedGaussianActor:
        return SquashedGaussianActor(env.obs_shape, action_spec(env.action_space), algo.hidden,
                                     algo.activation)

    def _modules(self) -> dict[str, Any]:
        modules = {**super()._modules(), "temperature": self.temperature}
        if self.alpha_opt is not None:
            modules["alpha_opt"] = self.alpha_opt
        return modules

    def _update(self) -> dict[str, float] | None:
        batch, indices = self._batch()
        obs = batch["obs"]
        actions, log_prob = self.actor.sample(obs)
        alpha = self.temperature()
        row = {"alpha": float(alpha), "entropy": float(-log_prob.detach().mean())}
        if self.alpha_opt is not None:
            loss = alpha_loss(self.temperature.log_alpha, log_prob, self.target_entropy)
            a_value = self._step(self.alpha_opt, [self.temperature.log_alpha], loss, "alpha_loss")
            if a_value is None:
                return None
            row["alpha_loss"] = a_value
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(batch["next_obs"])
            next_value = soft_next_value(self.critic_target(batch["next_obs"], next_actions),
                                         next_log_prob, alpha)
            target = bellman_target(batch["reward"], batch["discount"], batch["terminated"],
                                    next_value)
        q = self.critic(obs, batch["action"])
        c_loss, td_errors = critic_loss(q, target, batch["weights"], scale=0.5)
        c_value = self._step(self.critic_opt, self.critic_params, c_loss, "critic_loss")
        if c_value is None:
            return None
        with frozen(self.critic_params):
            a_value = self._step(self.actor_opt, self.actor_params,
                                 sac_actor_loss(self.critic(obs, actions), log_prob, alpha),
                                 "actor_loss")
        if a_value is None:
            return None
        lerp_params(self.critic_target_params, self.critic_params, self.cfg.algo.tau)
        self.buffer.update_priorities(indices, td_errors.cpu().numpy())
        self.book.updates += 1
        return {**row, "critic_loss": c_value, "actor_loss": a_value,
                "q_mean": float(q.detach().mean())}

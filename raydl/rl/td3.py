"""TD3 (Fujimoto et al. 2018) on Ray env runners; DDPG (Lillicrap et al. 2016) is TD3 with
`twin_critics: false`, `target_policy_noise: 0` and `policy_delay: 1`.

One update (raydl.rl.offpolicy_losses holds the pure parts):

    critic step:  a' = clip(mu'(s') + clip(N(0, target_policy_noise), -c, c), -1, 1)
                  y = r + gamma^k (1 - d) min_i Q'_i(s', a');  loss sum_i E[(Q_i(s, a) - y)^2]
    every `policy_delay` critic updates:
        actor step:  -E[Q_1(s, mu(s))]
        targets:     Q'_i <- tau Q_i + (1 - tau) Q'_i,  mu' <- tau mu + (1 - tau) mu'

Runners act with mu(s) plus Gaussian or Ornstein-Uhlenbeck noise (`action_noise`,
`noise_std`), uniform actions before `learning_starts`. The replay, runners, replay
ratio and resume are DQN's (raydl.rl.offpolicy.ReplayLoop).
"""

from __future__ import annotations

from typing import Any

import torch

from raydl.envs.spec import EnvSpec
from raydl.rl.actions import action_spec
from raydl.rl.continuous import DeterministicActor
from raydl.rl.continuous_experiment import TD3Config, TD3Experiment
from raydl.rl.continuous_learner import ContinuousLearner
from raydl.rl.offpolicy import frozen, lerp_params
from raydl.rl.offpolicy_losses import (
    bellman_target, critic_loss, deterministic_actor_loss, smoothed_actions,
)


class TD3(ContinuousLearner):
    """The TD3 / DDPG learner; see the module's doc."""

    update_metrics = ("critic_loss", "actor_loss", "q_mean")

    def __init__(self, cfg: TD3Experiment, env: EnvSpec | None = None) -> None:
        self.runner_noise = (cfg.algo.action_noise, cfg.algo.noise_std)
        self.n_critics = 2 if cfg.algo.twin_critics else 1
        super().__init__(cfg, env)
        self.actor_target = self.policy_fn().to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.actor_target.requires_grad_(False)
        self.actor_target_params = list(self.actor_target.parameters())

    @staticmethod
    def build_actor(env: EnvSpec, algo: TD3Config) -> DeterministicActor:
        return DeterministicActor(env.obs_shape, action_spec(env.action_space), algo.hidden,
                                  algo.activation)

    def _modules(self) -> dict[str, Any]:
        return {**super()._modules(), "actor_target": self.actor_target}

    def _update(self) -> dict[str, float] | None:
        algo = self.cfg.algo
        batch, indices = self._batch()
        obs = batch["obs"]
        with torch.no_grad():
            next_actions = smoothed_actions(self.actor_target(batch["next_obs"]),
                                            algo.target_policy_noise, algo.target_noise_clip)
            next_value = self.critic_target(batch["next_obs"], next_actions).min(dim=0).values
            target = bellman_target(batch["reward"], batch["discount"], batch["terminated"],
                                    next_value)
        q = self.critic(obs, batch["action"])
        c_loss, td_errors = critic_loss(q, target, batch["weights"])
        c_value = self._step(self.critic_opt, self.critic_params, c_loss, "critic_loss")
        if c_value is None:
            return None
        self.buffer.update_priorities(indices, td_errors.cpu().numpy())
        self.book.updates += 1
        row = {"critic_loss": c_value, "q_mean": float(q.detach().mean())}
        if self.book.updates % algo.policy_delay == 0:  # the delayed actor and targets
            with frozen(self.critic_params):
                a_loss = deterministic_actor_loss(self.critic.q1(obs, self.actor(obs)))
                a_value = self._step(self.actor_opt, self.actor_params, a_loss, "actor_loss")
            if a_value is None:
                return row
            lerp_params(self.critic_target_params + self.actor_target_params,
                        self.critic_params + self.actor_params, algo.tau)
            row["actor_loss"] = a_value
        return row

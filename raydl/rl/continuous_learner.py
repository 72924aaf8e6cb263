"""What SAC and TD3 share around their update rules: an actor, critics and their
targets, the ReplayLoop (DQN's replay, runners, counters and replay ratio), warm-up
requests, one guarded optimizer step, checkpoints, and the policy evaluation plays.

A subclass builds its actor (`build_actor`), says which modules and optimizers make its
state (`_modules`), and implements `_update() -> metrics of one update`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.envs.spec import EnvSpec
from raydl.errors import matching_checkpoint
from raydl.nn import guarded_step, make_optimizer, nonfinite_error
from raydl.rl import learner
from raydl.rl.actions import action_spec
from raydl.rl.continuous import ContinuousActor, QCritics
from raydl.rl.continuous_experiment import check_continuous
from raydl.rl.offpolicy import ReplayLoop
from raydl.rl.runners.env_runner import SampleRequest


class ContinuousLearner(ABC):
    """The learner of an off-policy continuous-control kind and its runners; `step()`
    runs one iteration and returns its metrics."""

    runner_noise: tuple[str, float] = ("none", 0.0)  # the runners' exploration noise
    n_critics = 2

    def __init__(self, cfg: Any, env: EnvSpec | None = None) -> None:
        self.cfg, self.env = cfg, env or check_continuous(cfg)
        self.device, self.policy_fn = learner.prepare_learner(cfg, self.env, type(self).build_actor)
        self.actor = self.policy_fn().to(self.device)
        self.critic = self.build_critics(self.n_critics)
        self.critic_target = self.build_critics(self.n_critics)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        # Parameter lists kept once: every update steps and syncs them (walking the
        # modules each time cost ~1 ms of a ~10 ms update).
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        self.critic_target_params = list(self.critic_target.parameters())
        self.actor_opt = self.optimizer(self.actor_params)
        self.critic_opt = self.optimizer(self.critic_params)
        noise, std = self.runner_noise
        self.loop = ReplayLoop(cfg, self.env, self.policy_fn, learner_policy=self.actor,
                               on_cpu=self.device.type == "cpu", weights=self.actor.state_dict,
                               runner_kwargs={"noise": noise, "noise_std": std})
        self.book, self.buffer, self.runners = self.loop.book, self.loop.buffer, self.loop.runners

    @staticmethod
    @abstractmethod
    def build_actor(env: EnvSpec, algo: Any) -> ContinuousActor:
        """The actor the learner trains and the runners act with."""

    def build_critics(self, n: int) -> QCritics:
        algo = self.cfg.algo
        return QCritics(self.env.obs_shape, action_spec(self.env.action_space).size, algo.hidden,
                        algo.activation, n).to(self.device)

    def optimizer(self, params: Any) -> torch.optim.Optimizer:
        return make_optimizer("adam", params, self.cfg.algo.lr, eps=self.cfg.algo.adam_eps)

    @property
    def iteration(self) -> int:
        return self.book.iteration

    # ------------------------------------------------------------------ learning
    def _request(self, runner: int) -> SampleRequest:
        """Uniformly random actions until learning starts (epsilon 1), the actor after."""
        random = self.book.env_steps < self.cfg.algo.learning_starts
        return SampleRequest(self.cfg.runners.rollout_length, 1.0 if random else 0.0)

    def _batch(self) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """A replay minibatch on the learner's device, and its buffer indices."""
        b = self.buffer.sample(self.cfg.algo.batch_size, beta=self.loop.per_beta())
        return {k: torch.as_tensor(v).to(self.device, non_blocking=True)
                for k, v in b.items() if k != "indices"}, b["indices"]

    def _step(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
              loss: torch.Tensor, name: str) -> float | None:
        """Backward and step `optimizer` on `loss`; the loss, or None when it or its
        gradient was not finite and `nonfinite: skip` dropped the rest of this update."""
        values, stepped = guarded_step(optimizer, params, loss, self.cfg.algo.grad_clip)
        if stepped:
            return values[0]
        if self.cfg.algo.nonfinite == "stop":
            raise nonfinite_error(self.cfg.kind, f"iteration {self.book.iteration + 1}, learner "
                                  f"update {self.book.updates + 1}",
                                  {name: values[0], "grad_norm": values[1]}, "algo.nonfinite")
        self.book.nonfinite_skipped += 1
        return None

    @abstractmethod
    def _update(self) -> dict[str, float] | None:
        """One update on a replay minibatch: its metrics, or None when it was skipped."""

    def _learn(self, rows: list[dict[str, float]]) -> None:
        for _ in self.loop.owed():
            done = self._update()
            if done is not None:
                rows.append(done)

    def step(self) -> dict[str, Any]:
        """One training iteration; returns its metrics (each update's, averaged)."""
        rows: list[dict[str, float]] = []
        metrics, _ = self.loop.iterate(self._request, lambda: self._learn(rows))
        for key in self.update_metrics:
            seen = [r[key] for r in rows if key in r]
            metrics[key] = float(np.mean(seen)) if seen else None
        return metrics

    update_metrics: tuple[str, ...] = ("critic_loss", "actor_loss", "q_mean")

    # ------------------------------------------------------------------ state
    def _modules(self) -> dict[str, Any]:
        """Every module and optimizer whose state_dict a checkpoint holds, by name."""
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                "actor_opt": self.actor_opt, "critic_opt": self.critic_opt}

    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.rl.learner)."""
        learner.save_checkpoint(
            directory, self.cfg, {k: m.state_dict() for k, m in self._modules().items()},
            self.loop.state_dict(), arrays=self.buffer.state_dict(),
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`: networks, optimizers, replay and counters
        continue exactly; the envs start fresh episodes."""
        tensors, state, arrays = learner.read_checkpoint(directory, arrays=True)
        with matching_checkpoint(directory):
            for key, module in self._modules().items():
                module.load_state_dict(tensors[key])
            self.loop.load_state_dict(state, arrays)
        self.loop.restore_runners(state)

    def runner_infos(self) -> list[dict[str, Any]]:
        return self.runners.infos()

    def policy_network(self) -> tuple[str, torch.nn.Module]:
        """The actor (greedy: its deterministic action) and its key in model.pt."""
        return "actor", self.actor

    @classmethod
    def load_policy(cls, directory: Path, cfg: Any, env: EnvSpec) -> torch.nn.Module:
        """The actor of a checkpoint (used by `raydl eval` and export)."""
        return learner.load_policy(directory, cls.build_actor(env, cfg.algo), "actor")

    def close(self) -> None:
        self.runners.close()

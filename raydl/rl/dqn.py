"""DQN and Double DQN (Mnih et al. 2015; van Hasselt et al. 2016) with Ray env runners.

The replay buffer, the runners, the counters and the replay ratio are the
`ReplayLoop` SAC and TD3 share (raydl.rl.offpolicy); DQN adds epsilon-greedy requests and
its update: minibatch -> TD target -> Huber loss -> gradient step, and every
`target_update` env steps target <- tau * online + (1 - tau) * target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl.envs.spec import EnvSpec
from raydl.errors import matching_checkpoint
from raydl.nn import finite_values, make_optimizer, nonfinite_error
from raydl.rl import learner
from raydl.rl.losses import dqn_loss
from raydl.rl.networks import QNetwork
from raydl.rl.experiment import DQNConfig, DQNExperiment, check_dqn
from raydl.rl.offpolicy import ReplayLoop, polyak
from raydl.rl.runners.env_runner import SampleRequest
from raydl.rl.schedules import LinearSchedule, apex_epsilons


def build_q_network(env: EnvSpec, algo: DQNConfig) -> QNetwork:
    """MLP for vector observations, Nature CNN (+ `hidden` layers) for images."""
    return QNetwork(env.obs_shape, env.num_actions, algo.hidden, algo.activation, algo.dueling)


class DQN:
    """The DQN learner and its runners; `step()` runs one iteration and returns metrics.
    `env` is what the check step found (it is run here when not given)."""

    def __init__(self, cfg: DQNExperiment, env: EnvSpec | None = None) -> None:
        self.cfg, self.env = cfg, env or check_dqn(cfg)  # the check step's env spec
        self.device, self.policy_fn = learner.prepare_learner(cfg, self.env, build_q_network)
        algo = cfg.algo
        self.q = self.policy_fn().to(self.device)
        self.target = self.policy_fn().to(self.device)
        self.target.load_state_dict(self.q.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = make_optimizer(
            algo.optimizer, self.q.parameters(), algo.lr, momentum=algo.momentum, eps=algo.adam_eps
        )
        self.epsilon = LinearSchedule(algo.epsilon_start, algo.epsilon_end, algo.epsilon_steps)
        self.runner_epsilons = apex_epsilons(
            max(cfg.runners.num, 1), algo.apex_base, algo.apex_alpha
        )
        self.last_target_update = 0
        self.loop = ReplayLoop(cfg, self.env, self.policy_fn, learner_policy=self.q,
                               on_cpu=self.device.type == "cpu", weights=self.q.state_dict)
        self.book, self.buffer, self.runners = self.loop.book, self.loop.buffer, self.loop.runners

    @property
    def iteration(self) -> int:
        return self.book.iteration

    # ------------------------------------------------------------------ learning
    def _request(self, runner: int) -> SampleRequest:
        return SampleRequest(self.cfg.runners.rollout_length, self._epsilon_for(runner))

    def _epsilon_for(self, runner: int) -> float:
        """Exploration rate of runner `runner` (-1: the driver's) now: the schedule, or
        its Ape-X constant (during warm-up, before learning starts, every runner acts at
        random)."""
        if not self.cfg.algo.apex_epsilons:
            return self.epsilon(self.book.env_steps)
        if self.book.env_steps < self.cfg.algo.learning_starts:
            return 1.0
        return self.runner_epsilons[max(runner, 0)]

    def _update(self) -> tuple[float, float] | None:
        """One gradient step on a replay minibatch: (loss, mean Q), or None when the loss
        or gradient was not finite and `nonfinite: skip` dropped the step."""
        algo = self.cfg.algo
        b = self.buffer.sample(algo.batch_size, beta=self.loop.per_beta())
        batch = {k: torch.as_tensor(v).to(self.device, non_blocking=True)
                 for k, v in b.items() if k != "indices"}
        out = dqn_loss(self.q, self.target, batch, double_q=algo.double_q, loss=algo.loss,
                       amp=algo.amp)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        checked = [out.loss, out.q_mean]
        if algo.grad_clip > 0:
            # The norm is checked too: backward can overflow where the loss did not.
            checked.append(
                torch.nn.utils.clip_grad_norm_(self.q.parameters(), algo.grad_clip, foreach=True)
            )
        # The one device sync of an update, before the step: a NaN must not reach the
        # weights (nor the priorities of prioritized replay).
        values, finite = finite_values(*checked)
        if not finite:
            if algo.nonfinite == "stop":
                names = ["loss", "q_mean", "grad_norm"][: len(values)]
                raise nonfinite_error(
                    "dqn", f"iteration {self.book.iteration + 1}, learner update "
                    f"{self.book.updates + 1}", dict(zip(names, values)), "algo.nonfinite",
                )
            self.book.nonfinite_skipped += 1
            return None
        self.optimizer.step()
        self.buffer.update_priorities(b["indices"], out.td_errors.cpu().numpy())
        self.book.updates += 1
        return values[0], values[1]


    def _learn(self, losses: list[float], qs: list[float]) -> None:
        for _ in self.loop.owed():
            done = self._update()
            if done is not None:
                losses.append(done[0])
                qs.append(done[1])
        if self.book.env_steps - self.last_target_update >= self.cfg.algo.target_update:
            polyak(self.target, self.q, self.cfg.algo.tau)
            self.last_target_update = self.book.env_steps

    def step(self) -> dict[str, Any]:
        """One training iteration; returns its metrics."""
        losses: list[float] = []
        qs: list[float] = []
        metrics, _ = self.loop.iterate(self._request, lambda: self._learn(losses, qs))
        metrics.update({
            "loss": float(np.mean(losses)) if losses else None,
            "q_mean": float(np.mean(qs)) if qs else None,
            "epsilon": float(np.mean([self._epsilon_for(i)
                                      for i in range(len(self.runner_epsilons))])),
        })
        return metrics

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.rl.learner)."""
        learner.save_checkpoint(
            directory, self.cfg,
            {"q": self.q.state_dict(), "target": self.target.state_dict(),
             "optimizer": self.optimizer.state_dict()},
            {**self.loop.state_dict(), "last_target_update": self.last_target_update},
            arrays=self.buffer.state_dict(),
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`; the envs start fresh episodes (their internal
        state is not checkpointable in general), everything else continues exactly."""
        tensors, state, arrays = learner.read_checkpoint(directory, arrays=True)
        with matching_checkpoint(directory):
            self.q.load_state_dict(tensors["q"])
            self.target.load_state_dict(tensors["target"])
            self.optimizer.load_state_dict(tensors["optimizer"])
            self.loop.load_state_dict(state, arrays)
            self.last_target_update = state["last_target_update"]
        self.loop.restore_runners(state)

    def runner_infos(self) -> list[dict[str, Any]]:
        """Where each runner lives (pid, Ray node id, cluster address)."""
        return self.runners.infos()

    def policy_network(self) -> tuple[str, torch.nn.Module]:
        """The greedy network and its key in model.pt (what evaluation plays with)."""
        return "q", self.q

    @staticmethod
    def load_policy(directory: Path, cfg: DQNExperiment, env: EnvSpec) -> torch.nn.Module:
        """The greedy Q-network of a checkpoint (used by `raydl eval`)."""
        return learner.load_policy(directory, build_q_network(env, cfg.algo), "q")

    def close(self) -> None:
        self.runners.close()

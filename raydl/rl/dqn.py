"""DQN and Double DQN (Mnih et al. 2015; van Hasselt et al. 2016) with Ray env runners.

One iteration of `DQN.step()`:

    repeat until `steps_per_iteration` new env steps have arrived:
        take the next finished sample batch (from any runner, `ray.wait`)
        store its transitions in replay; owe `replay_ratio` updates per env step
        hand that runner fresh weights (every `sync_weights_every` requests) and re-send it
        do the owed updates: minibatch -> TD target -> Huber loss -> gradient step
        every `target_update` env steps: target <- tau * online + (1 - tau) * target

Runners never wait for the learner except through their own single in-flight request,
so a slow runner never stalls the others, and the replay ratio holds for any number of
runners.
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
from raydl.rl.learner import Book
from raydl.rl.losses import dqn_loss
from raydl.rl.networks import QNetwork
from raydl.rl.experiment import DQNConfig, DQNExperiment, check_dqn
from raydl.rl.replay import make_replay
from raydl.rl.runners import make_runners
from raydl.rl.runners.env_runner import EnvRunner, SampleRequest, SampleResult
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
        self.buffer = make_replay(
            self.env, algo.buffer_size, cfg.seed + 1, prioritized=algo.prioritized,
            alpha=algo.per_alpha, n_step=algo.n_step, gamma=algo.gamma,
        )
        self.epsilon = LinearSchedule(algo.epsilon_start, algo.epsilon_end, algo.epsilon_steps)
        self.runner_epsilons = apex_epsilons(
            max(cfg.runners.num, 1), algo.apex_base, algo.apex_alpha
        )
        # Everything needed to continue exactly is in these and the objects above.
        self.book = Book()
        self.updates_owed = 0.0
        self.last_target_update = 0
        self.runners = make_runners(
            cfg.runners, EnvRunner,
            dict(env=self.env, num_envs=cfg.runners.envs_per_runner, policy_fn=self.policy_fn,
                 seed=cfg.seed, n_step=algo.n_step, gamma=algo.gamma),
            learner_policy=self.q, on_cpu=self.device.type == "cpu",
            weights=self.q.state_dict, version=lambda: self.book.updates,
        )

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

    def _ingest(self, result: SampleResult) -> None:
        self.buffer.add(result.transitions, result.runner)
        before = self.book.env_steps
        self.book.ingest(result)
        # Owe updates only for the steps past learning_starts: updates = ratio * (steps - starts).
        counted = self.book.env_steps - max(before, self.cfg.algo.learning_starts)
        if counted > 0:
            self.updates_owed += counted * self.cfg.algo.replay_ratio

    def _per_beta(self) -> float:
        algo = self.cfg.algo
        horizon = max(self.cfg.stop.env_steps, 1)
        return min(1.0, algo.per_beta + (1.0 - algo.per_beta) * self.book.env_steps / horizon)

    def _update(self) -> tuple[float, float] | None:
        """One gradient step on a replay minibatch: (loss, mean Q), or None when the loss
        or gradient was not finite and `nonfinite: skip` dropped the step."""
        algo = self.cfg.algo
        b = self.buffer.sample(algo.batch_size, beta=self._per_beta())
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

    def _sync_target(self) -> None:
        tau = self.cfg.algo.tau
        if tau >= 1.0:
            self.target.load_state_dict(self.q.state_dict())
            return
        with torch.no_grad():
            for t, s in zip(self.target.parameters(), self.q.parameters()):
                t.lerp_(s, tau)

    def _learn(self, losses: list[float], qs: list[float]) -> None:
        while self.updates_owed >= 1.0 and len(self.buffer) >= self.cfg.algo.batch_size:
            done = self._update()
            if done is not None:
                losses.append(done[0])
                qs.append(done[1])
            self.updates_owed -= 1.0
        if self.book.env_steps - self.last_target_update >= self.cfg.algo.target_update:
            self._sync_target()
            self.last_target_update = self.book.env_steps

    def step(self) -> dict[str, Any]:
        """One training iteration; returns its metrics."""
        clock, goal = self.book.start_iteration(self.cfg.algo.steps_per_iteration)
        losses: list[float] = []
        qs: list[float] = []
        staleness: list[int] = []
        self.runners.start(self._request)
        while self.book.env_steps < goal:
            # The driver's own runner never samples past the goal: exact step counts.
            result = self.runners.next(max_env_steps=goal - self.book.env_steps)
            staleness.append(self.book.updates - result.weights_version)
            self._ingest(result)
            # Re-send before learning, so a runner actor samples while the learner trains.
            self.runners.submit(max(result.runner, 0), self._request(result.runner))
            self._learn(losses, qs)
        metrics = self.book.finish_iteration(clock, self.runners.total_restarts)
        metrics.update({
            "loss": float(np.mean(losses)) if losses else None,
            "q_mean": float(np.mean(qs)) if qs else None,
            "epsilon": float(np.mean([self._epsilon_for(i)
                                      for i in range(len(self.runner_epsilons))])),
            "buffer_size": len(self.buffer),
            "weights_staleness_mean": float(np.mean(staleness)) if staleness else None,
        })
        return metrics

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.rl.learner)."""
        learner.save_checkpoint(
            directory, self.cfg,
            {"q": self.q.state_dict(), "target": self.target.state_dict(),
             "optimizer": self.optimizer.state_dict()},
            {**self.book.state_dict(), "updates_owed": self.updates_owed,
             "last_target_update": self.last_target_update,
             "buffer_rng": self.buffer.rng.bit_generator.state,
             "runners": self.runners.states(), "runner_restarts": self.runners.restart_state()},
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
            self.buffer.load_state_dict(arrays)
            self.book.load_state_dict(state)
            self.updates_owed = state["updates_owed"]
            self.last_target_update = state["last_target_update"]
            self.buffer.rng.bit_generator.state = state["buffer_rng"]
        self.runners.restore(self.book.generation, state["runners"], state.get("runner_restarts"))

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

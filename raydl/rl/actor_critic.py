"""A3C, A2C and REINFORCE with a learned baseline (Mnih et al. 2016; Williams 1992).

Workers (`ACWorker`, Ray actors) roll out the policy and return loss gradients; the
learner here owns the one shared model and its optimizer. One flag, one branch:

    asynchronous (A3C):  take whichever worker's gradient arrives first (`ray.wait`),
                         apply it at once, send that worker fresh weights and its next
                         request; the other workers keep going on older weights
                         (staleness = learner updates between their weights and the step).
    synchronous (A2C):   wait for every worker, average their gradients (weighted by
                         samples, so it is the gradient of the mean loss over the union of
                         rollouts), take one step, send everyone the new weights.

REINFORCE is the synchronous path with whole-episode Monte Carlo returns and V(s) as the
baseline (`returns: episode`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl.envs.spec import EnvSpec
from raydl.errors import matching_checkpoint
from raydl.nn import make_optimizer, nonfinite_error
from raydl.rl import learner
from raydl.rl.actions import action_spec
from raydl.rl.learner import Book
from raydl.rl.experiment import ActorCriticExperiment, PolicyNetConfig, check_actor_critic
from raydl.rl.networks import ActorCritic
from raydl.rl.runners import make_runners
from raydl.rl.runners.ac_worker import (
    ACWorker,
    GradientRequest,
    GradientResult,
    assign_gradients,
    flat_weights,
)


def build_actor_critic(env: EnvSpec, algo: PolicyNetConfig) -> ActorCritic:
    actions = action_spec(env.action_space, algo.squash, env.env_id)
    return ActorCritic(env.obs_shape, actions, algo.hidden, algo.activation,
                       algo.shared_trunk, algo.log_std_init)


class ActorCriticAlgorithm:
    """The actor-critic learner and its workers; `step()` runs one iteration and returns
    its metrics. `env`: the check step's env spec (the step is run here when not given)."""

    def __init__(self, cfg: ActorCriticExperiment, env: EnvSpec | None = None) -> None:
        self.cfg, self.env = cfg, env or check_actor_critic(cfg)  # the check step's env spec
        self.device, self.policy_fn = learner.prepare_learner(cfg, self.env, build_actor_critic)
        self.net = self.policy_fn().to(self.device)
        self.params = list(self.net.parameters())
        algo = cfg.algo
        self.optimizer = make_optimizer(
            algo.optimizer, self.params, algo.lr, momentum=algo.momentum, eps=algo.adam_eps,
        )
        self.book = Book()
        self.runners = make_runners(
            cfg.runners, ACWorker,
            dict(env=self.env, num_envs=cfg.runners.envs_per_runner, policy_fn=self.policy_fn,
                 seed=cfg.seed, returns=algo.returns, gamma=algo.gamma,
                 gae_lambda=algo.gae_lambda, vf_coef=algo.vf_coef, ent_coef=algo.ent_coef,
                 normalize_advantage=algo.normalize_advantage),
            learner_policy=self.net, on_cpu=self.device.type == "cpu",
            weights=lambda: flat_weights(self.params), version=lambda: self.book.updates,
            # A3C: fresh weights go to one worker each time, inline with its request.
            inline_weights=algo.asynchronous,
        )

    @property
    def iteration(self) -> int:
        return self.book.iteration

    # ------------------------------------------------------------------ learning
    def _apply(self, results: list[GradientResult], stats: dict[str, list[float]]) -> None:
        """One optimizer step on the (sample-weighted mean) gradient of `results`; none
        when that gradient is not finite (`nonfinite: skip`; the rollouts still count), or
        when no rollout kept a sample (every env paid a NaN/inf reward)."""
        learned = [r for r in results if r.samples > 0]
        if not learned:
            for r in results:
                self.book.ingest(r)
            return
        results_all, results = results, learned
        total = sum(r.samples for r in results)
        if len(results) == 1:
            grads = results[0].grads
        else:
            grads = sum(r.grads * (r.samples / total) for r in results)
        # The gradient arrives as a NumPy vector: checking it costs no device sync.
        finite = bool(np.isfinite(grads).all())
        if not finite and self.cfg.algo.nonfinite == "stop":
            losses = {k: float(np.mean([r.stats[k] for r in results]))
                      for k in ("pg_loss", "value_loss")}
            raise nonfinite_error(self.cfg.kind, f"iteration {self.book.iteration + 1}, learner "
                                  f"update {self.book.updates + 1}", losses, "algo.nonfinite")
        if finite:
            assign_gradients(self.params, grads)
            if self.cfg.algo.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(
                    self.params, self.cfg.algo.grad_clip, foreach=True
                )
                stats["grad_norm"].append(float(norm))
            self.optimizer.step()
            self.book.updates += 1
        else:
            self.book.nonfinite_skipped += 1
        for r in results_all:
            self.book.ingest(r)
            for key, value in r.stats.items():
                if finite:  # a skipped update's NaN losses would poison the means
                    stats[key].append(value)
            stats[f"worker{max(r.runner, 0)}_env_steps"].append(r.env_steps)

    def step(self) -> dict[str, Any]:
        """One training iteration (>= steps_per_iteration env steps); its metrics."""
        clock, goal = self.book.start_iteration(self.cfg.algo.steps_per_iteration)
        request = GradientRequest(self.cfg.runners.rollout_length)
        stats: dict[str, list[float]] = defaultdict(list)
        self.runners.start(lambda _: request)
        while self.book.env_steps < goal:
            # A3C takes whichever gradient arrives first and applies it at once; the
            # other workers keep going on older weights. A2C waits for every worker.
            results = [self.runners.next()] if self.cfg.algo.asynchronous else self.runners.all()
            stats["staleness"] += [self.book.updates - r.weights_version for r in results]
            self._apply(results, stats)
            for r in results:  # fresh weights ride with each worker's next request
                self.runners.submit(max(r.runner, 0), request)
        elapsed = time.perf_counter() - clock.started
        metrics = self.book.finish_iteration(clock, self.runners.total_restarts)
        for key in ("pg_loss", "value_loss", "entropy", "grad_norm"):
            metrics[key] = float(np.mean(stats[key])) if stats[key] else None
        metrics["staleness_mean"] = float(np.mean(stats["staleness"]))
        metrics["staleness_max"] = int(np.max(stats["staleness"]))
        for i in range(self.runners.count):
            steps = float(np.sum(stats[f"worker{i}_env_steps"]))
            metrics[f"worker{i}_env_steps_per_s"] = steps / elapsed if elapsed > 0 else None
        return metrics

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.rl.learner)."""
        learner.save_checkpoint(
            directory, self.cfg,
            {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()},
            {**self.book.state_dict(), "runners": self.runners.states(),
             "runner_restarts": self.runners.restart_state()},
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`; envs start fresh episodes with new seeds."""
        tensors, state, _ = learner.read_checkpoint(directory)
        with matching_checkpoint(directory):
            self.net.load_state_dict(tensors["net"])
            self.optimizer.load_state_dict(tensors["optimizer"])
            self.book.load_state_dict(state)
        self.runners.restore(self.book.generation, state["runners"], state.get("runner_restarts"))

    def runner_infos(self) -> list[dict[str, Any]]:
        return self.runners.infos()

    def policy_network(self) -> tuple[str, torch.nn.Module]:
        """The policy network (its `greedy`: the mode of its action distribution) and its
        key in model.pt."""
        return "net", self.net

    @staticmethod
    def load_policy(directory: Path, cfg: ActorCriticExperiment, env: EnvSpec) -> torch.nn.Module:
        """The policy of a checkpoint; eval acts with its `greedy` (the distribution's
        mode: the most probable action, the mean action of a Gaussian)."""
        return learner.load_policy(directory, build_actor_critic(env, cfg.algo), "net")

    def close(self) -> None:
        self.runners.close()

"""PPO (Schulman et al. 2017) on the actor-critic family's workers.

One iteration of `PPO.step()`:

    repeat until `steps_per_iteration` new env steps have arrived:
        every runner's rollout: `rollout_length` steps of its envs, with the actions'
        log-probs and values under the policy that acted (ACWorker, RolloutRequest)
        merge the runners' observation / return statistics (exactly: raydl.rl.normalize)
        GAE on each rollout (truncations bootstrap from V(final obs), as A2C's)
        `epochs` x `minibatches` of: clipped surrogate + vf_coef * value loss
            - ent_coef * entropy, advantages standardized per minibatch, global-norm
            clipping; stop the epochs once a minibatch's approximate KL passes
            1.5 x target_kl (SB3's rule)
        fresh weights and statistics to every runner with its next request

Synchronous by default: the next rollouts start after the update, so every batch is
acted by the newest policy and the first minibatch's importance ratio is exactly 1.
`asynchronous: true` re-sends the requests before the update: the runners roll out
while the learner trains, acting one policy behind (`staleness_mean`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl import checkpoint as ckpt
from raydl.envs.spec import EnvSpec
from raydl.errors import matching_checkpoint
from raydl.nn import make_optimizer, nonfinite_error
from raydl.rl import learner
from raydl.rl.actor_critic import build_actor_critic
from raydl.rl.experiment import PPOExperiment, check_ppo
from raydl.rl.learner import Book
from raydl.rl.losses import gae
from raydl.rl.normalize import PRIOR_COUNT, NormStats, RunningMeanStd, merge_deltas
from raydl.rl.policy import NormalizedPolicy
from raydl.rl.ppo_losses import clipped_surrogate, kl_exceeded, normalize_advantages, ppo_minibatches, ppo_value_loss
from raydl.rl.runners import make_runners
from raydl.rl.runners.ac_worker import ACWorker, RolloutRequest, RolloutResult
from raydl.rl.schedules import LinearSchedule

Batch = dict[str, torch.Tensor]


class PPO:
    """The PPO learner and its runners; `step()` runs one iteration and returns metrics.
    `env`: the check step's env spec (the step is run here when not given)."""

    def __init__(self, cfg: PPOExperiment, env: EnvSpec | None = None) -> None:
        self.cfg, self.env = cfg, env or check_ppo(cfg)
        algo = cfg.algo
        self.device, self.policy_fn = learner.prepare_learner(cfg, self.env, build_actor_critic)
        self.net = self.policy_fn().to(self.device)
        self.params = list(self.net.parameters())
        self.optimizer = make_optimizer(algo.optimizer, self.params, algo.lr,
                                        momentum=algo.momentum, eps=algo.adam_eps)
        horizon = cfg.stop.env_steps
        self.lr = LinearSchedule(algo.lr, 0.0 if algo.lr_schedule == "linear" else algo.lr, horizon)
        self.clip = LinearSchedule(algo.clip_range, 0.0 if algo.clip_schedule == "linear"
                                   else algo.clip_range, horizon)
        self.norm = NormStats(
            obs=RunningMeanStd.empty(self.env.obs_shape, PRIOR_COUNT) if algo.normalize_obs else None,
            ret=RunningMeanStd.empty((), PRIOR_COUNT) if algo.normalize_reward else None,
        )
        self.shuffle = torch.Generator().manual_seed(cfg.seed)  # minibatch permutations
        self.book = Book()
        self.runners = make_runners(
            cfg.runners, ACWorker,
            dict(env=self.env, num_envs=cfg.runners.envs_per_runner, policy_fn=self.policy_fn,
                 seed=cfg.seed, returns="gae", gamma=algo.gamma, gae_lambda=algo.gae_lambda,
                 normalize_obs=algo.normalize_obs, normalize_reward=algo.normalize_reward,
                 clip_obs=algo.clip_obs, clip_reward=algo.clip_reward, keep_values=True),
            learner_policy=self.net, on_cpu=self.device.type == "cpu",
            weights=self.net.state_dict, version=lambda: self.book.updates,
        )

    @property
    def iteration(self) -> int:
        return self.book.iteration

    def _request(self) -> RolloutRequest:
        return RolloutRequest(self.cfg.runners.rollout_length, self.norm)

    # ------------------------------------------------------------------ learning
    def step(self) -> dict[str, Any]:
        """One training iteration (>= steps_per_iteration env steps); its metrics."""
        clock, goal = self.book.start_iteration(self.cfg.algo.steps_per_iteration)
        stats: dict[str, list[float]] = defaultdict(list)
        self.runners.start(lambda _: self._request())
        while self.book.env_steps < goal:
            results: list[RolloutResult] = self.runners.all()
            stats["staleness"] += [self.book.updates - r.weights_version for r in results]
            for r in results:
                self.book.ingest(r)
            self.norm = merge_deltas(self.norm, [r.norm for r in results])
            if self.cfg.algo.asynchronous:  # act on while the learner trains
                self._send_all(results)
            self._update(self._batch(results), stats)
            if not self.cfg.algo.asynchronous:
                self._send_all(results)
        metrics = self.book.finish_iteration(clock, self.runners.total_restarts)
        for key in ("pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                    "grad_norm", "explained_variance", "epochs", "first_ratio_error"):
            metrics[key] = float(np.mean(stats[key])) if stats[key] else None
        metrics["lr"] = self.lr(self.book.env_steps)
        metrics["clip_range"] = self.clip(self.book.env_steps)
        metrics["staleness_mean"] = float(np.mean(stats["staleness"]))
        return metrics

    def _send_all(self, results: list[RolloutResult]) -> None:
        for r in results:  # fresh weights ride with each runner's next request
            self.runners.submit(max(r.runner, 0), self._request())

    def _batch(self, results: list[RolloutResult]) -> Batch:
        """The runners' rollouts as one flat batch of valid samples, with GAE advantages
        and value targets computed per rollout."""
        parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        algo = self.cfg.algo
        masked = any("mask" in r.batch for r in results)
        for r in results:
            b = {k: torch.tensor(v) for k, v in r.batch.items()}  # copies: Ray's arrays are read-only
            advantages, returns = gae(b["reward"], b["value"], b["next_value"], b["terminated"],
                                      b["ended"], algo.gamma, algo.gae_lambda)
            valid = b["valid"].reshape(-1)
            columns = {"obs": b["obs"], "action": b["action"], "log_prob": b["log_prob"],
                       "value": b["value"], "advantage": advantages, "return": returns}
            if masked:  # a rollout in which the env gave no mask allows every action
                columns["mask"] = b.get("mask", torch.ones((*b["valid"].shape, self.net.actions.size),
                                                           dtype=torch.bool))
            for key, value in columns.items():
                parts[key].append(value.flatten(0, 1)[valid])
        return {k: torch.cat(v).to(self.device) for k, v in parts.items()}

    def _minibatches(self, batch: Batch) -> Iterator[tuple[int, Batch]]:
        """(epoch, minibatch) for `epochs` x `minibatches` passes over `batch`, advantages
        standardized per minibatch. With one minibatch per epoch, every epoch is the whole
        batch, whose order a mean loss does not see: no permutation, no copies, and its
        advantages standardized once (rl-zoo's CartPole settings update this way)."""
        algo, n = self.cfg.algo, len(batch["action"])
        count = min(algo.minibatches, n)
        if count == 1:
            if algo.normalize_advantage:
                batch = {**batch, "advantage": normalize_advantages(batch["advantage"])}
            for epoch in range(algo.epochs):
                yield epoch, batch
            return
        for epoch, idx in ppo_minibatches(n, algo.epochs, count, self.shuffle):
            minibatch = {k: v[idx] for k, v in batch.items()}
            if algo.normalize_advantage:
                minibatch["advantage"] = normalize_advantages(minibatch["advantage"])
            yield epoch, minibatch

    def _update(self, batch: Batch, stats: dict[str, list[float]]) -> None:
        """`epochs` x `minibatches` gradient steps on one batch (see the module's doc)."""
        algo = self.cfg.algo
        if len(batch["action"]) == 0:  # every env of every rollout paid a NaN/inf
            return
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(self.book.env_steps)
        clip = self.clip(self.book.env_steps)
        epochs_done, first = 0, True
        for epoch, mb in self._minibatches(batch):
            epochs_done = epoch + 1
            dist, values = self.net.distribution_and_value(mb["obs"], mb.get("mask"))
            log_prob = dist.log_prob(mb["action"])
            surrogate = clipped_surrogate(log_prob, mb["log_prob"], mb["advantage"], clip)
            if first:  # the batch was acted by these very weights (synchronous PPO)
                ratio = (log_prob.detach() - mb["log_prob"]).exp()
                stats["first_ratio_error"].append(float((ratio - 1).abs().max()))
                first = False
            if kl_exceeded(surrogate.approx_kl, algo.target_kl):  # a float only when asked
                break
            vf = ppo_value_loss(values, mb["return"], mb["value"], algo.clip_range_vf)
            loss = surrogate.loss + algo.vf_coef * vf
            with torch.set_grad_enabled(algo.ent_coef > 0):  # no bonus: a statistic only
                ent = dist.entropy().mean()
            if algo.ent_coef > 0:
                loss = loss - algo.ent_coef * ent
            if self._step(loss, stats):
                stats["pg_loss"].append(float(surrogate.loss.detach()))
                stats["value_loss"].append(float(vf.detach()))
                stats["entropy"].append(float(ent.detach()))
                stats["approx_kl"].append(float(surrogate.approx_kl))
                stats["clip_fraction"].append(float(surrogate.clip_fraction))
        stats["epochs"].append(epochs_done)
        stats["explained_variance"].append(explained_variance(batch["value"], batch["return"]))

    def _step(self, loss: torch.Tensor, stats: dict[str, list[float]]) -> bool:
        """One optimizer step on `loss`; False when it or its gradient was not finite and
        `nonfinite: skip` dropped it."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(
            self.params, self.cfg.algo.grad_clip if self.cfg.algo.grad_clip > 0 else float("inf"),
            foreach=True))
        if not (math.isfinite(float(loss.detach())) and math.isfinite(norm)):
            if self.cfg.algo.nonfinite == "stop":
                raise nonfinite_error("ppo", f"iteration {self.book.iteration + 1}, learner "
                                      f"update {self.book.updates + 1}", {"loss": float(loss)},
                                      "algo.nonfinite")
            self.book.nonfinite_skipped += 1
            return False
        self.optimizer.step()
        self.book.updates += 1
        stats["grad_norm"].append(norm)
        return True

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory` (see raydl.rl.learner)."""
        learner.save_checkpoint(
            directory, self.cfg,
            {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
             "shuffle": self.shuffle.get_state()},
            {**self.book.state_dict(), "runners": self.runners.states(),
             "runner_restarts": self.runners.restart_state(), "norm": self.norm.state_dict()},
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`; envs start fresh episodes with new seeds."""
        tensors, state, _ = learner.read_checkpoint(directory)
        with matching_checkpoint(directory):
            self.net.load_state_dict(tensors["net"])
            self.optimizer.load_state_dict(tensors["optimizer"])
            self.shuffle.set_state(tensors["shuffle"])
            self.book.load_state_dict(state)
            self.norm = NormStats.from_state_dict(state["norm"])
        self.runners.restore(self.book.generation, state["runners"], state.get("runner_restarts"))

    def runner_infos(self) -> list[dict[str, Any]]:
        return self.runners.infos()

    def policy_network(self) -> tuple[str, torch.nn.Module]:
        """The policy with the observation normalization of now (what evaluation plays;
        it shares the learner's network)."""
        algo = self.cfg.algo
        policy = NormalizedPolicy(self.net, self.env.obs_shape, algo.clip_obs, algo.normalize_obs)
        return "policy", policy.to(self.device).set_stats(self.norm.obs)

    @staticmethod
    def load_policy(directory: Path, cfg: PPOExperiment, env: EnvSpec) -> torch.nn.Module:
        """The policy of a checkpoint with its observation normalization folded in: a
        training checkpoint's "net" and the statistics in its state.json, or a best
        checkpoint's whole "policy"."""
        algo = cfg.algo
        policy = NormalizedPolicy(build_actor_critic(env, algo), env.obs_shape, algo.clip_obs,
                                  algo.normalize_obs)
        saved = ckpt.load_torch(directory / learner.MODEL_FILE)
        with matching_checkpoint(directory / learner.MODEL_FILE):
            if "policy" in saved:
                policy.load_state_dict(saved["policy"])
            else:
                policy.net.load_state_dict(saved["net"])
                state = ckpt.load_json(directory / ckpt.COMPLETE_MARKER)
                policy.set_stats(NormStats.from_state_dict(state["norm"]).obs)
        return policy.eval()

    def close(self) -> None:
        self.runners.close()


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target] (SB3's diagnostic; nan for a constant target)."""
    var = float(target.var())
    return float("nan") if var == 0 else 1.0 - float((target - predicted).var()) / var

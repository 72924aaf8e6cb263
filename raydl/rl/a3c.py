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

import functools
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from raydl import checkpoint as ckpt
from raydl.config import (
    AtariConfig,
    CheckpointConfig,
    ConfigError,
    LogConfig,
    RunnersConfig,
    StopConfig,
    dump_yaml,
    param,
    section,
)
from raydl.envs import check_env_id, make_env
from raydl.nn import Activation, Nonfinite, Optimizer, make_optimizer, nonfinite_error
from raydl.rl.ac_worker import ACWorker, assign_gradients, flat_weights
from raydl.rl.networks import ActorCritic
from raydl.rl.runner import Runners, report_env_errors, surface_errors
from raydl.seeding import seed_everything

EPISODE_WINDOW = 100
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "a3c": {"asynchronous": True, "returns": "nstep"},
    "a2c": {"asynchronous": False, "returns": "nstep"},
    "reinforce": {"asynchronous": False, "returns": "episode"},
}


@dataclass
class ActorCriticConfig:
    """Hyperparameters of A3C / A2C / REINFORCE (defaults: SB3's A2C)."""

    asynchronous: bool | None = param(
        None, "apply each worker's gradient as it arrives (A3C); default by kind"
    )
    returns: Literal["nstep", "gae", "episode"] | None = param(
        None, "advantage estimate: n-step (rollout_length), GAE(lambda) or whole-episode "
        "Monte Carlo; default by kind (a3c/a2c: nstep, reinforce: episode)"
    )
    gamma: float = param(0.99, "discount factor", ge=0, le=1)
    gae_lambda: float = param(0.95, "GAE lambda (returns: gae)", ge=0, le=1)
    lr: float = param(7e-4, "learning rate", gt=0)
    optimizer: Optimizer = param("rmsprop", "optimizer")
    adam_eps: float = param(1e-5, "epsilon of RMSprop / Adam", gt=0)
    momentum: float = param(0.0, "momentum (sgd, rmsprop)", ge=0, lt=1)
    hidden: list[int] = param(default_factory=lambda: [64, 64], help="trunk hidden sizes", ge=1)
    activation: Activation = param("tanh", "trunk activation")
    shared_trunk: bool = param(
        True, "policy and value share the hidden layers (false: separate MLPs, as SB3)"
    )
    vf_coef: float = param(0.5, "weight of the value loss", ge=0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", ge=0)
    normalize_advantage: bool = param(False, "standardize advantages per rollout")
    grad_clip: float = param(0.5, "max global gradient norm (0: no clipping)", ge=0)
    steps_per_iteration: int = param(2_000, "env steps per training iteration", ge=1)
    learner_threads: int = param(1, "torch threads of the learner (0: torch's default)", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", "learner device (auto: cuda when present); workers compute on CPU"
    )
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that update "
        "(counted in nonfinite_skipped)"
    )


@dataclass
class ActorCriticExperiment:
    """An A3C / A2C / REINFORCE experiment file."""

    kind: Literal["a3c", "a2c", "reinforce"] = param("a3c", "registry key")
    env: str = param("CartPole-v1", "gymnasium environment id")
    seed: int = param(0, "base seed; worker r and env i derive distinct seeds from it", ge=0)
    stop: StopConfig = section(StopConfig, "when to stop")
    algo: ActorCriticConfig = section(ActorCriticConfig, "algorithm hyperparameters")
    runners: RunnersConfig = section(RunnersConfig, "worker actors (rollout_length = n steps)")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpointing")
    log: LogConfig = section(LogConfig, "outputs")
    atari: AtariConfig = section(AtariConfig, "Atari preprocessing (ALE/* envs)")

    def validate(self) -> None:
        algo = self.algo
        defaults = KIND_DEFAULTS[self.kind]
        if algo.asynchronous is None:
            algo.asynchronous = defaults["asynchronous"]
        if algo.returns is None:
            algo.returns = defaults["returns"]
        if self.kind == "a2c" and algo.asynchronous:
            raise ConfigError(
                "algo.asynchronous: true is A3C; use kind: a3c, or allowed for a2c: false"
            )
        if self.runners.sync_weights_every != 1:
            raise ConfigError(
                f"runners.sync_weights_every: {self.runners.sync_weights_every}: actor-critic "
                "workers get the learner's weights with every request; allowed: 1"
            )
        if self.kind == "reinforce" and algo.returns != "episode":
            raise ConfigError(
                f"algo.returns: {algo.returns!r}: REINFORCE learns from whole-episode "
                "returns; allowed: 'episode' (or use kind a2c/a3c)"
            )
        if algo.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("algo.device: 'cuda' but no CUDA device is visible; allowed: auto, cpu")
        check_env_id(self.env)
        probe = make_env(self.env, atari=self.atari)
        space = probe.action_space
        probe.close()
        if not hasattr(space, "n"):
            raise ConfigError(
                f"env: {self.env} has a {type(space).__name__} action space; "
                f"{self.kind} here needs a Discrete one"
            )


def build_actor_critic(
    obs_shape: tuple[int, ...], num_actions: int, algo: ActorCriticConfig
) -> ActorCritic:
    return ActorCritic(obs_shape, num_actions, algo.hidden, algo.activation, algo.shared_trunk)


def _spaces(cfg: ActorCriticExperiment) -> tuple[tuple[int, ...], int]:
    probe = make_env(cfg.env, atari=cfg.atari)
    obs_shape = tuple(probe.observation_space.shape)  # type: ignore[arg-type]
    num_actions = int(probe.action_space.n)  # type: ignore[attr-defined]
    probe.close()
    return obs_shape, num_actions


class ActorCriticAlgorithm:
    """The learner and its workers; `step()` runs one iteration and returns metrics."""

    def __init__(self, cfg: ActorCriticExperiment, generation: int = 0) -> None:
        self.cfg = cfg
        algo = cfg.algo
        seed_everything(cfg.seed)
        if algo.learner_threads:
            torch.set_num_threads(algo.learner_threads)
        obs_shape, num_actions = _spaces(cfg)
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if algo.device == "auto"
            else algo.device
        )
        self.policy_fn = functools.partial(build_actor_critic, obs_shape, num_actions, algo)
        self.net = self.policy_fn().to(self.device)
        self.params = list(self.net.parameters())
        self.optimizer = make_optimizer(
            algo.optimizer, self.params, algo.lr, momentum=algo.momentum,
            eps=algo.adam_eps,
        )
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0
        self.iteration = 0
        self.env_errors = 0  # env failures the workers recovered from
        self.nonfinite_skipped = 0  # updates skipped for a NaN/inf gradient (nonfinite: skip)
        self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque[int] = deque(maxlen=EPISODE_WINDOW)
        self.generation = generation
        self._start_workers()

    def _start_workers(self) -> None:
        cfg, algo = self.cfg, self.cfg.algo
        kwargs: dict[str, Any] = dict(
            env_id=cfg.env, num_envs=cfg.runners.envs_per_runner, policy_fn=self.policy_fn,
            seed=cfg.seed, returns=algo.returns, gamma=algo.gamma, gae_lambda=algo.gae_lambda,
            vf_coef=algo.vf_coef, ent_coef=algo.ent_coef,
            normalize_advantage=algo.normalize_advantage, generation=self.generation,
            atari=cfg.atari,
        )
        self.runners = Runners(
            cfg.runners, ACWorker, kwargs, self.net if self.device.type == "cpu" else None,
            flat_weights(self.params), self.updates,
        )
        self.local: ACWorker | None = self.runners.local
        self.pool = self.runners.pool

    # ------------------------------------------------------------------ learning
    def _apply(self, results: list[dict[str, Any]], stats: dict[str, list[float]]) -> None:
        """One optimizer step on the (sample-weighted mean) gradient of `results`; none
        when that gradient is not finite (`nonfinite: skip`; the rollouts still count)."""
        total = sum(r["samples"] for r in results)
        if len(results) == 1:
            grads = results[0]["grads"]
        else:
            grads = sum(r["grads"] * (r["samples"] / total) for r in results)
        # The gradient arrives as a NumPy vector: checking it costs no device sync.
        finite = bool(np.isfinite(grads).all())
        if not finite and self.cfg.algo.nonfinite == "stop":
            losses = {k: float(np.mean([r["stats"][k] for r in results]))
                      for k in ("pg_loss", "value_loss")}
            raise nonfinite_error(self.cfg.kind, f"iteration {self.iteration + 1}, learner "
                                  f"update {self.updates + 1}", losses, "algo.nonfinite")
        if finite:
            assign_gradients(self.params, grads)
            if self.cfg.algo.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(
                    self.params, self.cfg.algo.grad_clip, foreach=True
                )
                stats["grad_norm"].append(float(norm))
            self.optimizer.step()
            self.updates += 1
        else:
            self.nonfinite_skipped += 1
        for r in results:
            self.env_errors += report_env_errors(r["env_errors"])
            self.env_steps += r["env_steps"]
            for ret, length in r["episodes"]:
                self.returns.append(ret)
                self.lengths.append(length)
                self.episodes += 1
            for key, value in r["stats"].items():
                if finite:  # a skipped update's NaN losses would poison the means
                    stats[key].append(value)
            stats[f"worker{max(r['runner'], 0)}_env_steps"].append(r["env_steps"])

    def _weights_ref(self) -> Any:
        assert self.pool is not None
        return self.pool.weights_ref(lambda: flat_weights(self.params), self.updates)

    def step(self) -> dict[str, Any]:
        """One training iteration (>= steps_per_iteration env steps); its metrics."""
        start = time.perf_counter()
        start_steps = self.env_steps
        per_iter = self.cfg.algo.steps_per_iteration
        goal = (self.env_steps // per_iter + 1) * per_iter
        n = self.cfg.runners.rollout_length
        stats: dict[str, list[float]] = {
            "pg_loss": [], "value_loss": [], "entropy": [], "grad_norm": [], "staleness": [],
        }
        for i in range(max(self.cfg.runners.num, 1)):
            stats[f"worker{i}_env_steps"] = []
        if self.pool is not None:
            self.pool.start("compute_gradients", lambda index: (n,))
        while self.env_steps < goal:
            if self.local is not None:
                if self.local.policy is not self.net:  # learner on GPU: refresh the CPU copy
                    self.local.set_weights(self.net.state_dict(), self.updates)
                self._apply([self.local.compute_gradients(n)], stats)
                stats["staleness"].append(0)
            elif self.cfg.algo.asynchronous:
                assert self.pool is not None
                result = surface_errors(self.pool.next_result)
                stats["staleness"].append(self.updates - result["weights_version"])
                self._apply([result], stats)
                # Fresh weights to this worker only; the others finish what they started.
                # A small vector goes inline with the request (no object-store round
                # trip); only this worker needs this version.
                self.pool.submit(
                    result["runner"], "compute_gradients", n, flat_weights(self.params), self.updates
                )
            else:
                assert self.pool is not None
                results = surface_errors(self.pool.all_results)
                stats["staleness"] += [self.updates - r["weights_version"] for r in results]
                self._apply(results, stats)
                for index in range(len(results)):
                    self.pool.submit(index, "compute_gradients", n, self._weights_ref(), self.updates)
        self.iteration += 1
        elapsed = time.perf_counter() - start
        metrics: dict[str, Any] = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "episode_return_mean": float(np.mean(self.returns)) if self.returns else None,
            "episode_len_mean": float(np.mean(self.lengths)) if self.lengths else None,
            "learner_updates": self.updates,
            "env_errors": self.env_errors,  # cumulative, like episodes
            "nonfinite_skipped": self.nonfinite_skipped,  # cumulative
            "env_steps_per_s": (self.env_steps - start_steps) / elapsed if elapsed > 0 else None,
            # cumulative over the run (resumes included): worker actors that died and were replaced
            "runner_restarts": self.pool.total_restarts if self.pool is not None else 0,
        }
        for key in ("pg_loss", "value_loss", "entropy", "grad_norm"):
            metrics[key] = float(np.mean(stats[key])) if stats[key] else None
        metrics["staleness_mean"] = float(np.mean(stats["staleness"]))
        metrics["staleness_max"] = int(np.max(stats["staleness"]))
        for key, values in stats.items():
            if key.startswith("worker"):
                metrics[key + "_per_s"] = float(np.sum(values)) / elapsed if elapsed > 0 else None
        return metrics

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """Write the whole training state into `directory`."""
        ckpt.save_torch(
            {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
             "torch_rng": torch.get_rng_state()},
            directory / "model.pt",
        )
        dump_yaml(self.cfg, directory / "config.yaml")
        workers = self.runners.states()
        ckpt.save_json(
            {
                "iteration": self.iteration, "env_steps": self.env_steps,
                "episodes": self.episodes, "updates": self.updates,
                "returns": list(self.returns), "lengths": list(self.lengths),
                "generation": self.generation, "workers": workers,
                "env_errors": self.env_errors, "nonfinite_skipped": self.nonfinite_skipped,
                "runner_restarts": self.pool.restart_state() if self.pool is not None else None,
            },
            directory / ckpt.COMPLETE_MARKER,
        )

    def restore(self, directory: Path) -> None:
        """Load a state written by `save`; envs start fresh episodes with new seeds."""
        model = ckpt.load_torch(directory / "model.pt")
        state = ckpt.load_json(directory / ckpt.COMPLETE_MARKER)
        try:
            self.net.load_state_dict(model["net"])
            self.optimizer.load_state_dict(model["optimizer"])
            torch.set_rng_state(model["torch_rng"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ckpt.CheckpointError(
                f"{directory}: checkpoint does not match this experiment: {first}"
            ) from None
        for key in ("iteration", "env_steps", "episodes", "updates"):
            setattr(self, key, state[key])
        self.env_errors = state.get("env_errors", 0)  # absent in older checkpoints
        self.nonfinite_skipped = state.get("nonfinite_skipped", 0)
        self.returns = deque(state["returns"], maxlen=EPISODE_WINDOW)
        self.lengths = deque(state["lengths"], maxlen=EPISODE_WINDOW)
        self.generation = state["generation"] + 1
        if self.pool is not None:  # before the reset: replaced workers keep their own seeds
            self.pool.load_restart_state(state.get("runner_restarts"))
        self.runners.restore(self.generation, state["workers"], flat_weights(self.params), self.updates)

    def runner_infos(self) -> list[dict[str, Any]]:
        return self.runners.infos()

    @staticmethod
    def load_policy(directory: Path, cfg: ActorCriticExperiment) -> torch.nn.Module:
        """The policy of a checkpoint; its forward gives action logits (eval takes the
        argmax: the most probable action)."""
        obs_shape, num_actions = _spaces(cfg)
        net = build_actor_critic(obs_shape, num_actions, cfg.algo)
        model = ckpt.load_torch(directory / "model.pt")
        try:
            net.load_state_dict(model["net"])
        except (KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ckpt.CheckpointError(f"{directory / 'model.pt'}: does not match config: {first}")
        return net.eval()

    def close(self) -> None:
        self.runners.close()

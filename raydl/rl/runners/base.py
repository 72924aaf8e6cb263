"""What every runner shares: a vector env that survives a crashing env, its RNG as
checkpoint state, where it lives, and the typed result every request returns.

A runner is a plain class (EnvRunner samples transitions for DQN, ACWorker returns
actor-critic gradients). The driver uses one directly (`runners.num: 0`); for N parallel
runners each is wrapped with `ray.remote` at the call site (raydl.rl.runners.actors), so
the sampling code is the same in both cases and testable without Ray. Either way a
request is one call, `run(request, weights, version)`.
"""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.envs.atari import is_atari
from raydl.envs.spec import EnvSpec
from raydl.errors import TrainingError, first_line
from raydl.profile import mark
from raydl.seeding import env_seeds, runner_seed


@dataclass
class RunnerResult:
    """Bookkeeping every runner result carries back to the learner."""

    episodes: list[tuple[float, int]]  # (raw return, length) of the episodes that ended
    env_steps: int
    runner: int  # runner index (-1: the driver's own runner)
    weights_version: int  # learner version of the weights that acted
    sample_time_s: float
    env_errors: list[str]  # env failures recovered from, one line each
    # transitions (or rollouts) the runner dropped for a NaN/inf reward or observation;
    # episodes with a non-finite return are left out of `episodes` (and the return window)
    nonfinite_dropped: int


def training_signals(
    rewards: np.ndarray,
    terminated: np.ndarray,
    info: dict[str, Any],
    clip_rewards: bool,
    life_loss_terminal: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """What the learner sees: clipped rewards and life-loss terminals on Atari (the env
    itself keeps reporting raw scores and whole games, which is what metrics show)."""
    learn_rewards = np.sign(rewards).astype(np.float32) if clip_rewards else rewards
    learn_terminal = terminated
    if life_loss_terminal:
        learn_terminal = terminated | np.asarray(info.get("life_lost", False), bool)
    return learn_rewards, learn_terminal


def runner_info(runner_index: int) -> dict[str, Any]:
    """Where a runner lives: its index, pid, and Ray node id / cluster when inside Ray."""
    info: dict[str, Any] = {"runner": runner_index, "pid": os.getpid()}
    ray = sys.modules.get("ray")  # a driver-only run never imports Ray (~1 s)
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        info["node_id"] = context.get_node_id()
        info["gcs_address"] = context.gcs_address
    return info


class EpisodeTracker:
    """Raw return and length of the episode running in each env of a vector env."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, np.int64)

    def update(self, rewards: np.ndarray, ended: np.ndarray) -> list[tuple[float, int]]:
        """Add one step; return (return, length) of the episodes that just ended."""
        self.returns += rewards
        self.lengths += 1
        finished = []
        for e in np.flatnonzero(ended):
            finished.append((float(self.returns[e]), int(self.lengths[e])))
            self.returns[e] = 0.0
            self.lengths[e] = 0
        return finished


class RunnerBase(ABC):
    """A vector env of `env`, a policy copy and an RNG; the env is recreated when it
    raises (a crashing custom env).

    A failed `step`/`reset` closes the vector env, builds a fresh one and resets it with
    new seeds; the subclass drops whatever belonged to the open episodes. `max_env_errors`
    failures with no successful step in between stop the run with a TrainingError.
    Subclasses implement `serve(request)` and `set_weights(weights, version)`."""

    def __init__(
        self, env: EnvSpec, num_envs: int, policy_fn: Callable[[], nn.Module], *, seed: int,
        runner_index: int = -1, torch_threads: int | None = 1, max_env_errors: int = 5,
    ) -> None:
        mark(f"runner {runner_index}: constructor starts")
        if torch_threads:
            # A tiny policy forward is slower with several threads, and N runners on a
            # few cores would fight over them.
            torch.set_num_threads(torch_threads)
        self.env, self.num_envs = env, num_envs
        self.runner_index, self.seed = runner_index, seed
        self.envs = env.make_vector(num_envs)
        preprocessing = env.atari if is_atari(env.env_id) else None
        self.clip_rewards = bool(preprocessing and preprocessing.clip_rewards)
        self.life_loss_terminal = bool(preprocessing and preprocessing.terminal_on_life_loss)
        self.max_env_errors = max_env_errors
        self.errors_in_a_row = 0
        self.env_error_log: list[str] = []  # recovered errors not yet handed to the learner
        self.policy = policy_fn()
        self.rng = np.random.default_rng(runner_seed(seed, runner_index))
        self.weights_version = -1
        self.served = 0
        self.tracker = EpisodeTracker(num_envs)
        # Episodes start lazily, in the next request: an env that fails in reset then
        # fails inside a request, whose error reaches the learner (a failing actor
        # constructor would only kill the actor).
        self.obs: np.ndarray | None = None
        self.reset_info: dict[str, Any] = {}  # of the last reset (action masks live there)
        self.pending_seeds: list[int] | None = None
        mark(f"runner {runner_index}: constructed")

    # -- requests -----------------------------------------------------------------------
    def run(self, request: Any, weights: Any = None, version: int = -1) -> RunnerResult:
        """Serve one request, loading the learner's `weights` first when given."""
        if weights is not None:
            self.set_weights(weights, version)
        result = self.serve(request)
        self.served += 1
        if self.served == 1:
            mark(f"runner {self.runner_index}: first request served")
        return result

    @abstractmethod
    def serve(self, request: Any) -> RunnerResult:
        """Carry out one request of this runner class's own type."""

    @abstractmethod
    def set_weights(self, weights: Any, version: int) -> None:
        """Load the learner's weights (in this runner class's format) of `version`."""

    def share_policy(self, policy: nn.Module) -> None:
        """Act with the learner's own network (in-process runner: nothing to copy)."""
        self.policy = policy

    def reset(self, generation: int) -> None:
        """Start fresh episodes with the env seeds of `generation` (0 for a new run, +1
        per resume, so a resumed run never replays the episodes it already saw); the envs
        are reset at the start of the next request."""
        self.obs = None
        self.pending_seeds = env_seeds(self.seed, self.runner_index, self.num_envs, generation)

    def _result(
        self, episodes: list[tuple[float, int]], env_steps: int, started: float,
        nonfinite_dropped: int = 0,
    ) -> dict[str, Any]:
        """The RunnerResult fields of a finished request (started: time.perf_counter()).
        An episode whose return is not finite (an env paid a NaN or inf reward) has no
        place in the return window: it is left out, so the window stays a number."""
        return dict(episodes=[(r, n) for r, n in episodes if np.isfinite(r)], env_steps=env_steps,
                    runner=self.runner_index, weights_version=self.weights_version,
                    sample_time_s=time.perf_counter() - started,
                    env_errors=self._take_env_errors(), nonfinite_dropped=nonfinite_dropped)

    # -- env failures -------------------------------------------------------------------
    def _env_failed(self, phase: str, exc: Exception) -> None:
        """Count a failure of the env in `phase` and replace the vector env with a fresh
        one, or raise TrainingError on the `max_env_errors`-th failure in a row."""
        while True:
            self.errors_in_a_row += 1
            what = first_line(exc)
            if self.errors_in_a_row >= self.max_env_errors:
                raise TrainingError(f"env {self.env.env_id}: {self.errors_in_a_row} failures "
                                    f"in a row in {phase}: {what}")
            where = f"runner {self.runner_index}" if self.runner_index >= 0 else "driver"
            self.env_error_log.append(
                f"env {self.env.env_id} ({where}) raised in {phase}: {what}; open episodes "
                f"dropped, env recreated ({self.errors_in_a_row}/{self.max_env_errors} in a row)"
            )
            try:
                self.envs.close()
            except Exception:  # a broken env may not close cleanly; it is discarded anyway
                pass
            try:
                self.envs = self.env.make_vector(self.num_envs)
                return
            except Exception as again:  # the env's constructor fails too: one more failure
                phase, exc = "make", again

    def _reset_envs(self, seeds: list[int] | None) -> np.ndarray:
        """`envs.reset(seed=seeds)`, recreating the env (with fresh seeds) when it raises."""
        while True:
            try:
                obs, self.reset_info = self.envs.reset(seed=seeds)  # info: action masks
                return obs
            except Exception as exc:
                self._env_failed("reset", exc)
                seeds = self._fresh_seeds()

    def _step_envs(self, actions: np.ndarray) -> tuple[Any, ...] | None:
        """`envs.step(actions)`, or None when it raised: then the env was recreated (not
        yet reset) and the caller drops the open episodes and resets."""
        try:
            out = self.envs.step(actions)
        except Exception as exc:
            self._env_failed("step", exc)
            return None
        self.errors_in_a_row = 0
        return out

    def _fresh_seeds(self) -> list[int]:
        """Seeds for a recreated env, from the runner's RNG: reproducible, and never the
        seeds whose episodes just failed."""
        return [int(s) for s in self.rng.integers(0, 2**31 - 1, size=self.num_envs)]

    def _take_env_errors(self) -> list[str]:
        messages, self.env_error_log = self.env_error_log, []
        return messages

    # -- state --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The runner's RNG (JSON-ready); envs restart on restore."""
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def info(self) -> dict[str, Any]:
        return runner_info(self.runner_index)

    def close(self) -> None:
        try:
            self.envs.close()
        except Exception:  # a broken user env must not hide the error that ended the run
            pass

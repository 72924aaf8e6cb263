"""EnvRunner: a vector env plus a copy of the policy, sampling epsilon-greedy transitions.

A plain class. The driver uses it directly (`runners.num: 0`); for N parallel samplers it
is wrapped with `ray.remote` at the call site (see `RunnerPool`), so the sampling code is
the same in both cases and testable without Ray.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.config import AtariConfig, RunnersConfig
from raydl.envs import make_vector_env
from raydl.envs.atari import is_atari
from raydl.rl.buffer import Batch, NStepAccumulator
from raydl.seeding import env_seeds, runner_seed

# Per-step arrays of a frame-mode sample, each shaped (steps, num_envs, ...).
FRAME_FIELDS = ("action", "reward", "next_frame", "terminated", "ended")


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
    import ray

    if ray.is_initialized():
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


class RunnerBase:
    """What every runner class shares: its RNG as checkpoint state, where it lives, and
    closing its vector env. Subclasses set `rng`, `envs` and `runner_index`."""

    rng: np.random.Generator
    envs: Any
    runner_index: int

    def _setup_envs(
        self, env_id: str, num_envs: int, atari: AtariConfig | None, runner_index: int,
        torch_threads: int | None,
    ) -> None:
        """The vector env and the Atari training signals (the env itself reports raw
        scores and whole games)."""
        if torch_threads:
            # A tiny policy forward is slower with several threads, and N runners on a
            # few cores would fight over them.
            torch.set_num_threads(torch_threads)
        self.runner_index = runner_index
        self.envs = make_vector_env(env_id, num_envs, atari)
        self.clip_rewards = bool(atari and is_atari(env_id) and atari.clip_rewards)
        self.life_loss_terminal = bool(atari and is_atari(env_id) and atari.terminal_on_life_loss)
        self.num_envs = num_envs

    def get_state(self) -> dict[str, Any]:
        """The runner's RNG (JSON-ready); envs restart on restore."""
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def info(self) -> dict[str, Any]:
        return runner_info(self.runner_index)

    def close(self) -> None:
        self.envs.close()


class Runners:
    """The runners of one learner: a single in-process runner (`runners.num: 0`) or a
    `RunnerPool` of Ray actors; the bookkeeping both algorithms need either way."""

    def __init__(
        self,
        cfg: RunnersConfig,
        runner_cls: type,
        kwargs: dict[str, Any],
        shared_policy: nn.Module | None,
        weights: Any,
        version: int,
    ) -> None:
        self.local: Any = None
        self.pool: Any = None
        if cfg.num == 0:
            self.local = runner_cls(**kwargs, torch_threads=None)
            if shared_policy is not None:
                self.local.share_policy(shared_policy)  # same process, same device: no copies
        else:
            from raydl.rl.runner_pool import RunnerPool

            self.pool = RunnerPool(cfg, lambda index: {**kwargs, "runner_index": index}, runner_cls)
            self.pool.broadcast_weights(weights, version)

    def states(self) -> list[dict[str, Any]]:
        return [self.local.get_state()] if self.local is not None else self.pool.get_states()

    def restore(self, generation: int, states: list[dict[str, Any]], weights: Any, version: int) -> None:
        """Fresh episodes with the seeds of `generation`, saved RNGs, current weights."""
        if self.local is not None:
            self.local.reset(generation)
            self.local.set_state(states[0])
        else:
            self.pool.reset(generation, states)
            self.pool.broadcast_weights(weights, version)

    def infos(self) -> list[dict[str, Any]]:
        return [self.local.info()] if self.local is not None else self.pool.infos()

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        if self.pool is not None:
            self.pool.close()


class EnvRunner(RunnerBase):
    """Steps `num_envs` copies of an env with an epsilon-greedy copy of the Q-network."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        policy_fn: Callable[[], nn.Module],
        *,
        seed: int,
        runner_index: int = -1,
        n_step: int = 1,
        gamma: float = 0.99,
        generation: int = 0,
        torch_threads: int | None = 1,
        atari: AtariConfig | None = None,
        frames: bool = False,
    ) -> None:
        self._setup_envs(env_id, num_envs, atari, runner_index, torch_threads)
        # frames=True: emit single frames for a FrameReplayBuffer instead of transitions.
        self.frames = frames
        self.num_actions = int(self.envs.single_action_space.n)  # type: ignore[attr-defined]
        self.policy = policy_fn()
        self.policy.eval()
        self.images = len(self.envs.single_observation_space.shape or ()) == 3
        if self.images:
            # NHWC convolutions are ~12% faster than NCHW on CPU for the Nature CNN.
            self.policy.to(memory_format=torch.channels_last)
        self.rng = np.random.default_rng(runner_seed(seed, runner_index))
        self.nstep = NStepAccumulator(n_step, gamma, num_envs)
        self.seed = seed
        self.weights_version = -1
        self.reset(generation)

    def reset(self, generation: int) -> None:
        """Start fresh episodes with the env seeds of `generation` (0 for a new run, +1
        per resume, so a resumed run never replays the episodes it already saw)."""
        self.obs, _ = self.envs.reset(
            seed=env_seeds(self.seed, self.runner_index, self.num_envs, generation)
        )
        self.nstep.reset()
        self.tracker = EpisodeTracker(self.num_envs)
        # Episodes begun since the last sample, for the frame buffer: (env, first frame).
        self.starts = [(e, self.obs[e][-1]) for e in range(self.num_envs)]

    # -- policy -------------------------------------------------------------------------
    def set_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Load the learner's weights (tagged with the learner's version number)."""
        self.policy.load_state_dict(state_dict)
        self.weights_version = version

    def share_policy(self, policy: nn.Module) -> None:
        """Act with the learner's own network (in-process runner: nothing to copy)."""
        self.policy = policy

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations."""
        n = len(obs)
        random_actions = self.rng.integers(0, self.num_actions, size=n)
        if epsilon >= 1.0:
            return random_actions  # warm-up: no need to run the network
        x = torch.as_tensor(obs)
        if self.images:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            greedy = self.policy(x).argmax(dim=1).numpy()
        explore = self.rng.random(n) < epsilon
        return np.where(explore, random_actions, greedy)

    # -- sampling -----------------------------------------------------------------------
    def sample(self, num_steps: int, epsilon: float) -> dict[str, Any]:
        """Step every env `num_steps` times; returns the (n-step) transitions, the
        episodes that ended, and bookkeeping for the learner."""
        start = time.perf_counter()
        batches: list[Batch] = []
        episodes: list[tuple[float, int]] = []
        steps: dict[str, list[np.ndarray]] = {k: [] for k in FRAME_FIELDS}
        starts, self.starts = self.starts, []
        restarts: list[tuple[int, int, np.ndarray]] = []
        for t in range(num_steps):
            obs = self.obs
            actions = self.act(obs, epsilon)
            next_obs, rewards, terminated, truncated, info = self.envs.step(actions)
            ended = terminated | truncated
            real_next = next_obs
            if ended.any():
                real_next = next_obs.copy()
                for e in np.flatnonzero(ended):
                    real_next[e] = info["final_obs"][e]
            learn_rewards, learn_terminal = training_signals(
                rewards, terminated, info, self.clip_rewards, self.life_loss_terminal
            )
            if self.frames:
                steps["action"].append(actions)
                steps["reward"].append(np.asarray(learn_rewards, np.float32))
                steps["next_frame"].append(real_next[:, -1])
                steps["terminated"].append(learn_terminal)
                steps["ended"].append(learn_terminal | truncated)
                restarts += [(t, int(e), next_obs[e][-1]) for e in np.flatnonzero(ended)]
            else:
                batches.append(
                    self.nstep.push(
                        obs, actions, learn_rewards, real_next, learn_terminal, truncated
                    )
                )
            episodes += self.tracker.update(rewards, ended)
            self.obs = next_obs
        if self.frames:
            transitions: dict[str, Any] = {
                "starts": starts,
                "restarts": restarts,
                **{k: np.stack(v) for k, v in steps.items()},  # (T, num_envs, ...)
            }
        else:
            transitions = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        return {
            "transitions": transitions,
            "episodes": episodes,
            "env_steps": num_steps * self.num_envs,
            "runner": self.runner_index,
            "weights_version": self.weights_version,
            "sample_time_s": time.perf_counter() - start,
        }


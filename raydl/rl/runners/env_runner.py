"""EnvRunner: a vector env plus a copy of the learner's acting network, sampling
transitions for replay (n-step folded here, or single frames for the frame replay):
epsilon-greedy with DQN's Q-network, or, in a Box action space, the actor of SAC / TD3
(a sample of SAC's policy; TD3's action plus exploration noise) with uniformly random
actions while epsilon is 1 (before learning starts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from raydl.envs.spec import EnvSpec
from raydl.rl.actions import action_spec
from raydl.rl.continuous import make_noise, to_bounds
from raydl.rl.replay import Batch, FrameSample, NStepAccumulator, action_layout
from raydl.rl.runners.base import EpisodeTracker, RunnerBase, RunnerResult, training_signals


@dataclass(frozen=True)
class SampleRequest:
    """Step every env `num_steps` times, exploring with probability `epsilon`."""

    num_steps: int
    epsilon: float


@dataclass
class SampleResult(RunnerResult):
    """n-step transitions (field -> array, leading dim = transitions), or the steps of a
    frame-stack env as single frames for the frame replay."""

    transitions: Batch | FrameSample


def finite_transitions(batch: Batch) -> tuple[Batch, int]:
    """`batch` without the transitions holding a NaN or inf (a reward, an observation),
    and how many were dropped. Checked after the n-step sums, so every n-step return a
    bad reward reached is dropped with it. One bad transition in replay would be sampled
    again and again: under `nonfinite: skip` most later updates were skipped."""
    finite = np.ones(len(batch["reward"]), dtype=bool)
    for key, value in batch.items():
        if np.issubdtype(value.dtype, np.floating):
            finite &= np.isfinite(value.reshape(len(value), -1)).all(axis=1)
    dropped = int((~finite).sum())
    return (batch if not dropped else {k: v[finite] for k, v in batch.items()}), dropped


@dataclass
class _Collected:
    """What one sample gathers before it is packed into its result."""

    batches: list[Batch] = field(default_factory=list)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    starts: list[tuple[int, np.ndarray]] = field(default_factory=list)
    restarts: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    def transitions(self) -> Batch:
        return {k: np.concatenate([b[k] for b in self.batches]) for k in self.batches[0]}

    def frame_sample(self) -> FrameSample:
        arrays = {k: np.stack(v) for k, v in self.frames.items()}  # (T, num_envs, ...)
        return FrameSample(starts=self.starts, restarts=self.restarts, **arrays)


class EnvRunner(RunnerBase):
    """Steps `num_envs` copies of an env with an epsilon-greedy copy of the Q-network.

    Frame-stack envs (`env.obs_kind == "frames"`) emit single frames for the frame
    replay, which folds n steps itself; every other env emits n-step transitions."""

    def __init__(
        self, env: EnvSpec, num_envs: int, policy_fn: Callable[[], nn.Module], *, seed: int,
        runner_index: int = -1, n_step: int = 1, gamma: float = 0.99, generation: int = 0,
        torch_threads: int | None = 1, max_env_errors: int = 5, noise: str = "none",
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(env, num_envs, policy_fn, seed=seed, runner_index=runner_index,
                         torch_threads=torch_threads, max_env_errors=max_env_errors)
        self.frames = env.obs_kind == "frames"
        self.policy.eval()
        if env.pixels:
            # NHWC convolutions are ~12% faster than NCHW on CPU for the Nature CNN.
            self.policy.to(memory_format=torch.channels_last)
        # A Box action space: the actor acts in [-1, 1], scaled into the bounds at the env.
        self.box = action_spec(env.action_space) if isinstance(env.action_space, spaces.Box) else None
        self.noise = (make_noise(noise, noise_std, num_envs, self.box.size)
                      if self.box is not None else None)
        self.nstep = NStepAccumulator(1 if self.frames else n_step, gamma, num_envs,
                                      action_layout(env.action_space)[1])
        self.reset(generation)

    def _start_episodes(self, seeds: list[int] | None) -> list[tuple[int, np.ndarray]]:
        """Reset every env (recreating it if it fails there) and forget the open episodes:
        their returns and their n-step windows. Returns (env, first frame) of each."""
        self.obs = self._reset_envs(seeds)
        self.nstep.reset()
        if self.noise is not None:
            self.noise.reset(np.arange(self.num_envs))
        self.tracker = EpisodeTracker(self.num_envs)
        return [(e, self.obs[e][-1]) for e in range(self.num_envs)]

    # -- policy -------------------------------------------------------------------------
    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Load the learner's state dict (tagged with the learner's version number)."""
        self.policy.load_state_dict(weights)
        self.weights_version = version

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations; in a Box, actions in
        [-1, 1] (see the module's doc)."""
        n = len(obs)
        if self.box is not None:
            return self._act_continuous(obs, epsilon)
        random_actions = self.rng.integers(0, self.env.num_actions, size=n)
        if epsilon >= 1.0:
            return random_actions  # warm-up: no need to run the network
        x = torch.as_tensor(obs)
        if self.env.pixels:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            greedy = self.policy(x).argmax(dim=1).numpy()
        explore = self.rng.random(n) < epsilon
        return np.where(explore, random_actions, greedy)

    def _act_continuous(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Uniform actions in [-1, 1] while epsilon is 1; else the actor's exploring
        actions plus the exploration noise, clipped to [-1, 1]."""
        assert self.box is not None
        if epsilon >= 1.0:
            return self.rng.uniform(-1.0, 1.0, (len(obs), self.box.size)).astype(np.float32)
        with torch.inference_mode():
            actions = self.policy.explore(torch.as_tensor(obs), self.rng)  # type: ignore[operator]
        if self.noise is not None:
            actions = actions + self.noise.sample(self.rng)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env takes: Box actions scaled from [-1, 1] into its bounds."""
        return actions if self.box is None else to_bounds(actions, self.box)

    # -- sampling -----------------------------------------------------------------------
    def serve(self, request: SampleRequest) -> SampleResult:
        return self.sample(request.num_steps, request.epsilon)

    def sample(self, num_steps: int, epsilon: float) -> SampleResult:
        """Step every env `num_steps` times; returns the (n-step) transitions, the
        episodes that ended, and bookkeeping for the learner."""
        started = time.perf_counter()
        collected = _Collected()
        if self.obs is None:  # new episodes since reset(generation)
            collected.starts = self._start_episodes(self.pending_seeds)
        episodes: list[tuple[float, int]] = []
        t = 0
        while t < num_steps:
            obs = self.obs
            assert obs is not None
            actions = self.act(obs, epsilon)
            stepped = self._step_envs(self.env_actions(actions))
            if stepped is None:
                self._restart_after_crash(collected, t)
                continue
            episodes += self._record(collected, t, obs, actions, stepped)
            t += 1
        if self.frames:
            transitions, dropped = collected.frame_sample(), 0
        else:
            transitions, dropped = finite_transitions(collected.transitions())
        return SampleResult(transitions=transitions,
                            **self._result(episodes, num_steps * self.num_envs, started, dropped))

    def _restart_after_crash(self, collected: _Collected, t: int) -> None:
        """The env raised at step t and was recreated: its open episodes are dropped
        (never reported, n-step windows cleared); the transitions already emitted are
        whole and stay. Step t is taken again in the new episodes."""
        new = self._start_episodes(self._fresh_seeds())
        if t == 0:
            collected.starts += new
        else:  # the frame replay starts them after step t - 1 (overriding its restarts)
            collected.restarts += [(t - 1, e, frame) for e, frame in new]

    def _record(
        self, collected: _Collected, t: int, obs: np.ndarray, actions: np.ndarray,
        stepped: tuple[Any, ...],
    ) -> list[tuple[float, int]]:
        """Store step t (its transitions or frames); returns the episodes it ended."""
        next_obs, rewards, terminated, truncated, info = stepped
        ended = terminated | truncated
        if self.noise is not None and ended.any():
            self.noise.reset(np.flatnonzero(ended))  # OU noise starts again with the episode
        real_next = next_obs
        if ended.any():  # the final observation, not the reset one that replaced it
            real_next = next_obs.copy()
            for e in np.flatnonzero(ended):
                real_next[e] = info["final_obs"][e]
        learn_rewards, learn_terminal = training_signals(
            rewards, terminated, info, self.clip_rewards, self.life_loss_terminal
        )
        if self.frames:
            steps = collected.frames
            for key, value in (("action", actions),
                               ("reward", np.asarray(learn_rewards, np.float32)),
                               ("next_frame", real_next[:, -1]), ("terminated", learn_terminal),
                               ("ended", learn_terminal | truncated)):
                steps.setdefault(key, []).append(value)
            collected.restarts += [(t, int(e), next_obs[e][-1]) for e in np.flatnonzero(ended)]
        else:
            collected.batches.append(self.nstep.push(
                obs, actions, learn_rewards, real_next, learn_terminal, truncated))
        self.obs = next_obs
        return self.tracker.update(rewards, ended)

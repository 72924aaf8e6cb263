"""EnvRunner: a vector env plus a copy of the policy, sampling epsilon-greedy transitions.

A plain class. The driver uses it directly (`runners.num: 0`); for N parallel samplers it
is wrapped with `ray.remote` at the call site (see `RunnerPool`), so the sampling code is
the same in both cases and testable without Ray.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from raydl.config import AtariConfig, RunnersConfig, TrainingError
from raydl.envs import make_vector_env
from raydl.envs.atari import is_atari
from raydl.rl.buffer import Batch, NStepAccumulator
from raydl.seeding import env_seeds, runner_seed

# Per-step arrays of a frame-mode sample, each shaped (steps, num_envs, ...).
FRAME_FIELDS = ("action", "reward", "next_frame", "terminated", "ended")

log = logging.getLogger("raydl")
T = TypeVar("T")


def first_line(exc: BaseException) -> str:
    """`ExcType: first line of its message` (just the type when the message is empty)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def surface_errors(call: Callable[[], T]) -> T:
    """`call()` (a pool method that gets runner results), with a TrainingError raised in
    a runner actor re-raised as itself: Ray wraps it in a RayTaskError whose text is the
    whole remote traceback, and the user should see its one line."""
    from ray.exceptions import RayTaskError

    try:
        return call()
    except RayTaskError as exc:
        if isinstance(exc.cause, TrainingError):
            raise TrainingError(str(exc.cause)) from None
        raise


def report_env_errors(messages: list[str]) -> int:
    """Log (driver side, one line each) the env errors a runner recovered from; returns
    how many there were. Runners only collect the messages: an actor's own log does not
    reach the terminal (`log_to_driver=False`)."""
    for message in messages:
        log.warning("raydl: warning: %s", message)
    return len(messages)


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
    its vector env, which it recreates when the env raises (a crashing custom env).

    A failed `step`/`reset` closes the vector env, builds a fresh one and resets it with
    new seeds; the subclass drops whatever belonged to the open episodes. `max_env_errors`
    failures with no successful step in between stop the run with a TrainingError.
    Subclasses set `rng`, `seed` and call `_setup_envs`."""

    rng: np.random.Generator
    envs: Any
    runner_index: int
    seed: int

    def _setup_envs(
        self, env_id: str, num_envs: int, atari: AtariConfig | None, runner_index: int,
        torch_threads: int | None, max_env_errors: int = 5,
    ) -> None:
        """The vector env and the Atari training signals (the env itself reports raw
        scores and whole games)."""
        if torch_threads:
            # A tiny policy forward is slower with several threads, and N runners on a
            # few cores would fight over them.
            torch.set_num_threads(torch_threads)
        self.runner_index = runner_index
        self.env_id, self.atari = env_id, atari
        self.envs = make_vector_env(env_id, num_envs, atari)
        self.clip_rewards = bool(atari and is_atari(env_id) and atari.clip_rewards)
        self.life_loss_terminal = bool(atari and is_atari(env_id) and atari.terminal_on_life_loss)
        self.num_envs = num_envs
        self.max_env_errors = max_env_errors
        self.errors_in_a_row = 0
        self.env_error_log: list[str] = []  # recovered errors not yet handed to the learner
        # Episodes start lazily, in the next sample: an env that fails in reset then fails
        # inside a request, whose error reaches the learner (a failing actor constructor
        # would only kill the actor).
        self.obs: np.ndarray | None = None
        self.pending_seeds: list[int] | None = None

    def reset(self, generation: int) -> None:
        """Start fresh episodes with the env seeds of `generation` (0 for a new run, +1
        per resume, so a resumed run never replays the episodes it already saw); the envs
        are reset at the start of the next request."""
        self.obs = None
        self.pending_seeds = env_seeds(self.seed, self.runner_index, self.num_envs, generation)

    # -- env failures -------------------------------------------------------------------
    def _env_failed(self, phase: str, exc: Exception) -> None:
        """Count a failure of the env in `phase` and replace the vector env with a fresh
        one, or raise TrainingError on the `max_env_errors`-th failure in a row."""
        while True:
            self.errors_in_a_row += 1
            what = first_line(exc)
            if self.errors_in_a_row >= self.max_env_errors:
                raise TrainingError(f"env {self.env_id}: {self.errors_in_a_row} failures in a "
                                    f"row in {phase}: {what}")
            where = f"runner {self.runner_index}" if self.runner_index >= 0 else "driver"
            self.env_error_log.append(
                f"env {self.env_id} ({where}) raised in {phase}: {what}; open episodes "
                f"dropped, env recreated ({self.errors_in_a_row}/{self.max_env_errors} in a row)"
            )
            try:
                self.envs.close()
            except Exception:  # a broken env may not close cleanly; it is discarded anyway
                pass
            try:
                self.envs = make_vector_env(self.env_id, self.num_envs, self.atari)
                return
            except Exception as again:  # the env's constructor fails too: one more failure
                phase, exc = "make", again

    def _reset_envs(self, seeds: list[int] | None) -> np.ndarray:
        """`envs.reset(seed=seeds)`, recreating the env (with fresh seeds) when it raises."""
        while True:
            try:
                obs, _ = self.envs.reset(seed=seeds)
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
        kwargs = {**kwargs, "max_env_errors": cfg.max_env_errors}
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
            import ray

            # A request that failed (another runner's copy of the error that ended the
            # run) is printed by Ray as an "Unhandled error" traceback when its reference
            # is dropped unread; one cut short by killing its actor is not. So: kill the
            # actors, then read whatever finished before the kill landed.
            refs = list(self.pool.in_flight)
            self.pool.close()
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=5.0) if refs else ([], [])
            for ref in done:
                try:
                    ray.get(ref)
                except Exception:  # the run is over; its own error was already raised
                    pass


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
        max_env_errors: int = 5,
    ) -> None:
        self._setup_envs(env_id, num_envs, atari, runner_index, torch_threads, max_env_errors)
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
        self.tracker = EpisodeTracker(num_envs)
        # Episodes begun since the last sample, for the frame buffer: (env, first frame).
        self.starts: list[tuple[int, np.ndarray]] = []
        self.reset(generation)

    def _start_episodes(self, seeds: list[int] | None) -> list[tuple[int, np.ndarray]]:
        """Reset every env (recreating it if it fails there) and forget the open episodes:
        their returns and their n-step windows. Returns (env, first frame) of each."""
        self.obs = self._reset_envs(seeds)
        self.nstep.reset()
        self.tracker = EpisodeTracker(self.num_envs)
        return [(e, self.obs[e][-1]) for e in range(self.num_envs)]

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
        if self.obs is None:  # new episodes since reset(generation)
            starts = self._start_episodes(self.pending_seeds)
        restarts: list[tuple[int, int, np.ndarray]] = []
        t = 0
        while t < num_steps:
            obs = self.obs
            assert obs is not None
            actions = self.act(obs, epsilon)
            stepped = self._step_envs(actions)
            if stepped is None:
                # The env raised and was recreated: its open episodes are dropped (never
                # reported, n-step windows cleared); the transitions already emitted are
                # whole and stay. Step t is taken again in the new episodes.
                new = self._start_episodes(self._fresh_seeds())
                if t == 0:
                    starts += new
                else:  # the frame buffer starts them after step t - 1 (overriding its restarts)
                    restarts += [(t - 1, e, frame) for e, frame in new]
                continue
            next_obs, rewards, terminated, truncated, info = stepped
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
            t += 1
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
            "env_errors": self._take_env_errors(),
        }


"""What every RL learner keeps the same way, held by each algorithm (composition, not a
base class): the counters and the 100-episode window (`Book`), the learner's device, the
checkpoint files around the algorithm's own tensors, and loading a checkpoint's policy.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl import checkpoint as ckpt
from raydl.config import dump_yaml
from raydl.envs.spec import EnvSpec
from raydl.errors import CheckpointError, matching_checkpoint
from raydl.rl.runners.base import RunnerResult
from raydl.seeding import global_rng_state, seed_everything, set_global_rng_state

EPISODE_WINDOW = 100  # "mean return" = mean over the last 100 training episodes
MODEL_FILE, BUFFER_FILE = "model.pt", "buffer.npz"
log = logging.getLogger("raydl")


def learner_device(choice: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU; or the device named."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def prepare_learner(
    cfg: Any, env: EnvSpec, build: Callable[[EnvSpec, Any], nn.Module],
) -> tuple[torch.device, Callable[[], nn.Module]]:
    """Seed every global generator (so network init is reproducible) and set the
    learner's torch threads (`algo.learner_threads`, 0: torch's default); returns the
    learner's device and the function that builds the policy network (`build(env,
    cfg.algo)`), which the runners call too."""
    seed_everything(cfg.seed)
    if cfg.algo.learner_threads:
        torch.set_num_threads(cfg.algo.learner_threads)
    return learner_device(cfg.algo.device), functools.partial(build, env, cfg.algo)


@dataclass
class IterationClock:
    """When an iteration began, and at which env step."""

    started: float
    env_steps: int


class Book:
    """The counters every RL learner keeps, the window of the last 100 training episodes,
    the metrics they give, and their part of a checkpoint."""

    def __init__(self, generation: int = 0) -> None:
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0  # learner updates: the weights' version number
        self.iteration = 0
        self.env_errors = 0  # env failures the runners recovered from
        self.nonfinite_skipped = 0  # updates skipped for a NaN/inf (nonfinite: skip)
        self.nonfinite_dropped = 0  # transitions / rollouts the runners dropped for a NaN/inf
        self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque[int] = deque(maxlen=EPISODE_WINDOW)
        self.generation = generation  # +1 per resume: new env seeds

    def ingest(self, result: RunnerResult) -> None:
        """Count a runner result's env steps, finished episodes and recovered env errors
        (logged here, one line each: an actor's own log does not reach the terminal)."""
        self.env_steps += result.env_steps
        for message in result.env_errors:
            log.warning("raydl: warning: %s", message)
        self.env_errors += len(result.env_errors)
        self.nonfinite_dropped += result.nonfinite_dropped
        for ret, length in result.episodes:
            self.returns.append(ret)
            self.lengths.append(length)
            self.episodes += 1

    def start_iteration(self, steps_per_iteration: int) -> tuple[IterationClock, int]:
        """The clock of a new iteration and its env-step goal: an absolute multiple of
        `steps_per_iteration`, so iterations do not drift when chunks overshoot."""
        goal = (self.env_steps // steps_per_iteration + 1) * steps_per_iteration
        return IterationClock(time.perf_counter(), self.env_steps), goal

    def finish_iteration(self, clock: IterationClock, runner_restarts: int) -> dict[str, Any]:
        """Count the iteration; the metrics every RL kind reports for it."""
        self.iteration += 1
        elapsed = time.perf_counter() - clock.started
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "episode_return_mean": float(np.mean(self.returns)) if self.returns else None,
            "episode_len_mean": float(np.mean(self.lengths)) if self.lengths else None,
            "learner_updates": self.updates,
            "env_errors": self.env_errors,  # cumulative, like episodes
            "nonfinite_skipped": self.nonfinite_skipped,  # cumulative
            "nonfinite_dropped": self.nonfinite_dropped,  # cumulative
            # cumulative over the run (resumes included): actors that died and were replaced
            "runner_restarts": runner_restarts,
            "env_steps_per_s": (
                (self.env_steps - clock.env_steps) / elapsed if elapsed > 0 else None
            ),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "env_steps": self.env_steps, "episodes": self.episodes,
            "updates": self.updates, "env_errors": self.env_errors,
            "nonfinite_skipped": self.nonfinite_skipped, "nonfinite_dropped": self.nonfinite_dropped,
            "returns": list(self.returns),
            "lengths": list(self.lengths), "generation": self.generation,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Counters as saved; the generation moves on, so the resumed run's envs get new
        seeds and never replay old episodes."""
        for key in ("iteration", "env_steps", "episodes", "updates", "env_errors",
                    "nonfinite_skipped"):
            setattr(self, key, int(state[key]))
        self.nonfinite_dropped = int(state.get("nonfinite_dropped", 0))  # absent in older checkpoints
        self.returns = deque(state["returns"], maxlen=EPISODE_WINDOW)
        self.lengths = deque(state["lengths"], maxlen=EPISODE_WINDOW)
        self.generation = int(state["generation"]) + 1


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    directory: Path, cfg: Any, tensors: dict[str, Any], state: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """An RL checkpoint: the algorithm's tensors (model.pt), replay arrays (buffer.npz),
    the resolved config, and state.json (its counters, every global RNG), written last:
    its presence is what makes the directory a checkpoint."""
    ckpt.save_torch(tensors, directory / MODEL_FILE)
    if arrays is not None:
        ckpt.save_arrays(arrays, directory / BUFFER_FILE)
        # the buffer as it is in memory now: a restore checks the file against it
        state = {**state, "buffer_sha256": ckpt.arrays_digest(arrays)}
    dump_yaml(cfg, directory / "config.yaml")
    ckpt.save_json({**state, "rng": global_rng_state()}, directory / ckpt.COMPLETE_MARKER)


def read_checkpoint(
    directory: Path, arrays: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(tensors, state, replay arrays) of a checkpoint written by `save_checkpoint`; the
    global RNGs are set back to what they were. Every file is read before anything is
    changed, so a broken file is one line and leaves the learner as it was."""
    tensors = ckpt.load_torch(directory / MODEL_FILE)
    buffer = ckpt.load_arrays(directory / BUFFER_FILE) if arrays else {}
    state = ckpt.load_json(directory / ckpt.COMPLETE_MARKER)
    recorded = state.get("buffer_sha256")  # absent in checkpoints of older versions
    if arrays and recorded is not None and ckpt.arrays_digest(buffer) != recorded:
        raise CheckpointError(f"{directory / BUFFER_FILE}: does not hold the replay buffer this "
                              "checkpoint saved (its digest differs: a changed or damaged file)")
    with matching_checkpoint(directory):
        set_global_rng_state(state["rng"])
    return tensors, state, buffer


def load_policy(directory: Path, net: nn.Module, key: str) -> nn.Module:
    """`net` with the weights saved under `key` in a checkpoint's model.pt, for eval."""
    saved = ckpt.load_torch(directory / MODEL_FILE)
    with matching_checkpoint(directory / MODEL_FILE):
        net.load_state_dict(saved[key])
    return net.eval()

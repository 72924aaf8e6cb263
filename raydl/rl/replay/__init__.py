"""Experience replay behind one interface: `add(transitions, source)`, `sample(batch,
beta)`, `update_priorities(indices, td_errors)`, `state_dict()` / `load_state_dict()`.

Three buffers: uniform and prioritized rings of n-step-folded transitions (folded by the
runner that sampled them, `nstep.NStepAccumulator`), and the frame replay for Atari
frame stacks, which stores each frame once and folds n steps when it samples.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from gymnasium import spaces

from raydl.envs.spec import EnvSpec
from raydl.rl.replay.frames import FrameReplayBuffer, FrameSample
from raydl.rl.replay.nstep import NStepAccumulator
from raydl.rl.replay.prioritized import PrioritizedReplayBuffer
from raydl.rl.replay.uniform import Batch, ReplayBuffer

__all__ = ["Batch", "FrameReplayBuffer", "FrameSample", "NStepAccumulator",
           "PrioritizedReplayBuffer", "Replay", "ReplayBuffer", "action_layout", "make_replay"]


class Replay(Protocol):
    """What a learner needs of a replay buffer."""

    rng: np.random.Generator

    def __len__(self) -> int: ...
    def add(self, transitions: Any, source: int = 0) -> Any: ...
    def sample(self, batch_size: int, beta: float = 1.0) -> Batch: ...
    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_replay(
    env: EnvSpec, capacity: int, seed: int, *, prioritized: bool = False, alpha: float = 0.6,
    n_step: int = 1, gamma: float = 0.99,
) -> Replay:
    """The buffer for `env`'s observations: frame replay for frame stacks (it folds the n
    steps itself), else a uniform or prioritized ring. A Box action space stores float32
    action vectors (the policy's actions scaled to [-1, 1]), any other integer indices."""
    if env.obs_kind == "frames":
        return FrameReplayBuffer(capacity, env.obs_shape[1:], env.obs_shape[0], seed, n_step, gamma)
    shape, dtype = action_layout(env.action_space)
    if prioritized:
        return PrioritizedReplayBuffer(capacity, env.obs_shape, env.obs_dtype, seed, alpha,
                                       action_shape=shape, action_dtype=dtype)
    return ReplayBuffer(capacity, env.obs_shape, env.obs_dtype, seed, shape, dtype)


def action_layout(space: spaces.Space[Any]) -> tuple[tuple[int, ...], type]:
    """(shape, dtype) of one stored action: a flat float32 vector for Box, else an int64."""
    if isinstance(space, spaces.Box):
        return (int(np.prod(space.shape)),), np.float32
    return (), np.int64


"""Uniform experience replay: a numpy ring buffer of n-step-folded transitions.

Transitions are stored already folded to n steps: (obs, action, reward = sum of the
discounted rewards, next_obs = observation n steps later, terminated, discount = gamma^k
with k <= n the steps actually taken). The TD target then needs no knowledge of n:
``y = reward + discount * (1 - terminated) * V(next_obs)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

# Field name -> dtype for the scalar per-transition fields; obs/next_obs use the env's
# dtype, actions theirs (int64 indices for Discrete, float32 vectors for Box).
_SCALARS = {
    "reward": np.float32,
    "terminated": np.float32,
    "discount": np.float32,
}


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions with uniform sampling."""

    def __init__(
        self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: Any, seed: int = 0,
        action_shape: tuple[int, ...] = (), action_dtype: Any = np.int64,
    ) -> None:
        self.capacity = capacity
        self.obs_shape = tuple(obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.data: Batch = {
            "obs": np.zeros((capacity, *self.obs_shape), self.obs_dtype),
            "next_obs": np.zeros((capacity, *self.obs_shape), self.obs_dtype),
            "action": np.zeros((capacity, *action_shape), action_dtype),
        }
        for name, dtype in _SCALARS.items():
            self.data[name] = np.zeros(capacity, dtype)
        self.pos = 0  # next slot to write
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch, source: int = 0) -> np.ndarray:
        """Append a batch of transitions (leading dim B); returns the slots written.
        `source` (the runner that sampled them) matters only to the frame replay."""
        n = len(batch["action"])
        if n == 0:
            return np.zeros(0, np.int64)
        if n > self.capacity:  # only the newest `capacity` would survive anyway
            batch = {k: v[-self.capacity :] for k, v in batch.items()}
            n = self.capacity
        idx = (self.pos + np.arange(n)) % self.capacity
        for name, arr in self.data.items():
            arr[idx] = batch[name]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return idx

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """A uniform batch; `weights` are all 1 (the importance weights of uniform replay)."""
        idx = self.rng.integers(0, self.size, size=batch_size)
        out = {name: arr[idx] for name, arr in self.data.items()}
        out["indices"] = idx
        out["weights"] = np.ones(batch_size, np.float32)
        return out

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform replay has no priorities; present so learners need no branch."""

    def state_dict(self) -> dict[str, Any]:
        """Arrays (only the filled part) and counters; numpy only, no pickle needed."""
        state: dict[str, Any] = {name: arr[: self.size] for name, arr in self.data.items()}
        state["_counters"] = np.array([self.pos, self.size, self.capacity], np.int64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pos, size, capacity = (int(x) for x in state["_counters"])
        if capacity != self.capacity:
            raise ValueError(
                f"replay buffer capacity in checkpoint is {capacity}, config says "
                f"{self.capacity}"
            )
        for name, arr in self.data.items():
            arr[:size] = state[name]
        self.pos, self.size = pos, size

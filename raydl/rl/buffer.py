"""Experience replay: a uniform numpy ring buffer, a prioritized variant, n-step folding.

Transitions are stored already folded to n steps: (obs, action, reward = sum of the
discounted rewards, next_obs = observation n steps later, terminated, discount = gamma^k
with k <= n the steps actually taken). The TD target then needs no knowledge of n:
``y = reward + discount * (1 - terminated) * V(next_obs)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

# Field name -> dtype for the scalar per-transition fields; obs/next_obs use the env's dtype.
_SCALARS = {
    "action": np.int64,
    "reward": np.float32,
    "terminated": np.float32,
    "discount": np.float32,
}


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions with uniform sampling."""

    def __init__(
        self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: Any, seed: int = 0
    ) -> None:
        self.capacity = capacity
        self.obs_shape = tuple(obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.data: Batch = {
            "obs": np.zeros((capacity, *self.obs_shape), self.obs_dtype),
            "next_obs": np.zeros((capacity, *self.obs_shape), self.obs_dtype),
        }
        for name, dtype in _SCALARS.items():
            self.data[name] = np.zeros(capacity, dtype)
        self.pos = 0  # next slot to write
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch) -> np.ndarray:
        """Append a batch of transitions (leading dim B); returns the slots written."""
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


class SumTree:
    """Binary tree of priorities: O(log N) proportional sampling and batched updates."""

    def __init__(self, capacity: int) -> None:
        self.leaves = 1
        while self.leaves < capacity:
            self.leaves *= 2
        # float64: a float32 tree drifts once millions of updates have been summed up.
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def priorities(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[self.leaves + idx]

    def update(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        nodes = np.asarray(idx, np.int64) + self.leaves
        self.tree[nodes] = priorities
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            # Recomputing parents from both children is exact even with duplicate indices.
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index where the prefix sum of priorities passes each value."""
        values = np.array(values, np.float64)
        nodes = np.ones(len(values), np.int64)
        while nodes[0] < self.leaves:
            left = self.tree[2 * nodes]
            go_right = values > left
            values = np.where(go_right, values - left, values)
            nodes = 2 * nodes + go_right
        return nodes - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): P(i) ~ p_i^alpha, with
    importance weights (N P(i))^-beta normalised by their maximum."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any,
        seed: int = 0,
        alpha: float = 0.6,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(capacity, obs_shape, obs_dtype, seed)
        self.alpha = alpha
        self.eps = eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0  # new transitions are replayed at least once soon

    def add(self, batch: Batch) -> np.ndarray:
        idx = super().add(batch)
        if len(idx):
            self.tree.update(idx, np.full(len(idx), self.max_priority**self.alpha))
        return idx

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        total = self.tree.total
        # Stratified: one draw from each of batch_size equal slices of the total mass.
        bounds = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        idx = np.minimum(self.tree.find(bounds), self.size - 1)
        probs = self.tree.priorities(idx) / total
        min_prob = self.tree.priorities(np.arange(self.size)).min() / total
        weights = (probs / min_prob) ** (-beta)
        out = {name: arr[idx] for name, arr in self.data.items()}
        out["indices"] = idx
        out["weights"] = weights.astype(np.float32)
        return out

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices, priorities**self.alpha)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_priorities"] = self.tree.priorities(np.arange(self.size))
        state["_max_priority"] = np.array(self.max_priority, np.float64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree.update(np.arange(self.size), state["_priorities"])
        self.max_priority = float(state["_max_priority"])


class NStepAccumulator:
    """Folds each env's stream of 1-step transitions into n-step transitions.

    An episode end flushes the window with shorter horizons, so no transition spans two
    episodes; a truncated (time-limit) end is not terminal, so it still bootstraps.
    """

    def __init__(self, n: int, gamma: float, num_envs: int) -> None:
        self.n = n
        self.gamma = gamma
        self.windows: list[deque[tuple[np.ndarray, int, float]]] = [
            deque() for _ in range(num_envs)
        ]

    def reset(self) -> None:
        """Forget partial windows (the envs were reset)."""
        for window in self.windows:
            window.clear()

    def _fold(self, window: deque, start: int) -> tuple[float, float]:
        ret, disc = 0.0, 1.0
        for _, _, r in list(window)[start:]:
            ret += disc * r
            disc *= self.gamma
        return ret, disc

    def push(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> Batch:
        """Add one vector-env step (next_obs holds the final obs of envs that ended);
        returns the transitions completed by it."""
        if self.n == 1:
            return {
                "obs": obs,
                "action": np.asarray(actions, np.int64),
                "reward": np.asarray(rewards, np.float32),
                "next_obs": next_obs,
                "terminated": np.asarray(terminated, np.float32),
                "discount": np.full(len(actions), self.gamma, np.float32),
            }
        out: dict[str, list[Any]] = {k: [] for k in ("obs", "action", "reward", "next_obs",
                                                      "terminated", "discount")}
        for e, window in enumerate(self.windows):
            window.append((obs[e], int(actions[e]), float(rewards[e])))
            ended = bool(terminated[e] or truncated[e])
            starts = range(len(window)) if ended else ([0] if len(window) == self.n else [])
            for start in starts:
                ret, disc = self._fold(window, start)
                out["obs"].append(window[start][0])
                out["action"].append(window[start][1])
                out["reward"].append(ret)
                out["next_obs"].append(next_obs[e])
                out["terminated"].append(float(terminated[e]) if ended else 0.0)
                out["discount"].append(disc)
            if ended:
                window.clear()
            elif starts:
                window.popleft()
        return {
            "obs": np.array(out["obs"], obs.dtype).reshape(-1, *obs.shape[1:]),
            "action": np.array(out["action"], np.int64),
            "reward": np.array(out["reward"], np.float32),
            "next_obs": np.array(out["next_obs"], next_obs.dtype).reshape(-1, *obs.shape[1:]),
            "terminated": np.array(out["terminated"], np.float32),
            "discount": np.array(out["discount"], np.float32),
        }


def concat(batches: list[Batch]) -> Batch:
    """Concatenate transition batches field by field."""
    if len(batches) == 1:
        return batches[0]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

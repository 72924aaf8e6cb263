"""Proportional prioritized replay (Schaul et al. 2016) over the uniform ring buffer."""

from __future__ import annotations

from typing import Any

import numpy as np

from raydl.rl.replay.uniform import Batch, ReplayBuffer


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
        action_shape: tuple[int, ...] = (),
        action_dtype: Any = np.int64,
    ) -> None:
        super().__init__(capacity, obs_shape, obs_dtype, seed, action_shape, action_dtype)
        self.alpha = alpha
        self.eps = eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0  # new transitions are replayed at least once soon

    def add(self, batch: Batch, source: int = 0) -> np.ndarray:
        idx = super().add(batch, source)
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

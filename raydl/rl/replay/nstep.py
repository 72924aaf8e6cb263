"""N-step folding of each env's 1-step transitions, done where they are sampled."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from raydl.rl.replay.uniform import Batch


class NStepAccumulator:
    """Folds each env's stream of 1-step transitions into n-step transitions.

    An episode end flushes the window with shorter horizons, so no transition spans two
    episodes; a truncated (time-limit) end is not terminal, so it still bootstraps.
    """

    def __init__(self, n: int, gamma: float, num_envs: int, action_dtype: Any = np.int64) -> None:
        self.n = n
        self.gamma = gamma
        self.action_dtype = np.dtype(action_dtype)  # int64 indices, or float32 Box vectors
        self.windows: list[deque[tuple[np.ndarray, Any, float]]] = [
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
        actions = np.asarray(actions)
        if self.n == 1:
            return {
                "obs": obs,
                "action": np.asarray(actions, self.action_dtype),
                "reward": np.asarray(rewards, np.float32),
                "next_obs": next_obs,
                "terminated": np.asarray(terminated, np.float32),
                "discount": np.full(len(actions), self.gamma, np.float32),
            }
        out: dict[str, list[Any]] = {k: [] for k in ("obs", "action", "reward", "next_obs",
                                                      "terminated", "discount")}
        for e, window in enumerate(self.windows):
            window.append((obs[e], actions[e], float(rewards[e])))
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
            "action": np.array(out["action"], self.action_dtype).reshape(-1, *actions.shape[1:]),
            "reward": np.array(out["reward"], np.float32),
            "next_obs": np.array(out["next_obs"], next_obs.dtype).reshape(-1, *obs.shape[1:]),
            "terminated": np.array(out["terminated"], np.float32),
            "discount": np.array(out["discount"], np.float32),
        }

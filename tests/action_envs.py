"""Toy environments with each action space the actor-critic kinds take, and with action
masks in both forms, for the action-space tests.

Experiments name them as users name their own envs, `tests.action_envs:ENV_ID`;
importing this module registers them. Episodes are 20 steps; the observation is a
float32 vector of the step index and the current mask (zeros where there is none).
Rewards make a wrong action visible in the return: a masked action costs -100 (a legal
one earns 1), so a masked env's every episode returns exactly 20 when no masked action
is ever taken; a Box action outside the bounds costs -100 too.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

NVEC = (3, 4)  # MultiDiscrete sizes
KINDS = ("discrete", "box", "box_unbounded", "multi_discrete", "multi_binary",
         "discrete_mask_info", "discrete_mask_obs", "multi_discrete_mask_info",
         "multi_discrete_mask_obs")


class ActionEnv(gym.Env):
    """An env whose action space is `kind` (see KINDS): discrete (5 actions), box (2-D in
    [-2, 1]), box_unbounded, multi_discrete (NVEC), multi_binary (3 bits); a `_mask_info`
    kind gives `action_mask` in info (MultiDiscrete: a tuple of per-dimension masks, as
    gymnasium's MultiDiscrete.sample takes them), a `_mask_obs` kind as a Dict observation
    {observation, action_mask}. Masks are random each step, from the env's seeded RNG."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, kind: str = "discrete", render_mode: str | None = None) -> None:
        self.kind, self.render_mode = kind, render_mode
        base = kind.split("_mask")[0]
        self.action_space = {
            "discrete": spaces.Discrete(5),
            "box": spaces.Box(-2.0, 1.0, (2,), np.float32),
            "box_unbounded": spaces.Box(-np.inf, np.inf, (2,), np.float32),
            "multi_discrete": spaces.MultiDiscrete(NVEC),
            "multi_binary": spaces.MultiBinary(3),
        }[base]
        self.mask_size = {"discrete": 5, "multi_discrete": sum(NVEC)}.get(base, 0)
        vector = spaces.Box(-np.inf, np.inf, (1 + max(self.mask_size, 1),), np.float32)
        self.observation_space = vector if not kind.endswith("_obs") else spaces.Dict(
            {"observation": vector, "action_mask": spaces.MultiBinary(self.mask_size)})
        self.t, self.mask = 0, np.ones(self.mask_size, np.int8)

    def _new_mask(self) -> None:
        if "_mask" not in self.kind:
            return
        parts = [5] if self.kind.startswith("discrete") else list(NVEC)
        masks = []
        for n in parts:  # random, with at least one legal action per dimension
            m = (self.np_random.random(n) < 0.4).astype(np.int8)
            m[self.np_random.integers(n)] = 1
            masks.append(m)
        self.mask = np.concatenate(masks)

    def _out(self) -> tuple[Any, dict[str, Any]]:
        vector = np.concatenate([[self.t], self.mask if self.mask_size else [0.0]]).astype(np.float32)
        if self.kind.endswith("_obs"):
            return {"observation": vector, "action_mask": self.mask.copy()}, {}
        if self.kind.endswith("_info"):
            if self.kind.startswith("multi"):
                return vector, {"action_mask": tuple(np.split(self.mask.copy(), [NVEC[0]]))}
            return vector, {"action_mask": self.mask.copy()}
        return vector, {}

    def _reward(self, action: Any) -> float:
        if "_mask" not in self.kind:
            if self.kind == "box" and not self.action_space.contains(np.asarray(action, np.float32)):
                return -100.0
            return 1.0
        if self.kind.startswith("discrete"):
            legal = bool(self.mask[int(action)])
        else:
            a = np.asarray(action)
            legal = bool(self.mask[a[0]]) and bool(self.mask[NVEC[0] + a[1]])
        return 1.0 if legal else -100.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self._new_mask()
        return self._out()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        reward = self._reward(action)
        self.t += 1
        self._new_mask()
        obs, info = self._out()
        return obs, reward, False, self.t >= 20, info

    def render(self) -> np.ndarray:
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[:, : self.t % 16] = 255
        return frame


for _kind in KINDS:
    _id = f"raydl_test/Action-{_kind}-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=ActionEnv, kwargs={"kind": _kind})

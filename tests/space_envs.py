"""Toy environments with the observation spaces gymnasium allows, for the env-spec tests.

Experiments name them as users name their own envs, `tests.space_envs:ENV_ID`; importing
this module registers them. Every env has 2 actions, reward 1 for action 1, and
episodes of 20 steps; its observation encodes the step index so a test can check what
the learner saw.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SpaceEnv(gym.Env):
    """An env whose observation space is `kind`: image_hwc, image_chw, dict, tuple,
    multi_discrete, multi_binary, box2d (a rank-2 Box), graph or text."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, kind: str = "image_hwc", render_mode: str | None = None) -> None:
        self.kind, self.render_mode = kind, render_mode
        self.action_space = spaces.Discrete(2)
        self.observation_space = {
            "image_hwc": spaces.Box(0, 255, (40, 48, 3), np.uint8),
            "image_chw": spaces.Box(0, 255, (3, 40, 48), np.uint8),
            "dict": spaces.Dict({"pos": spaces.Discrete(20), "vel": spaces.Box(-1, 1, (2,))}),
            "tuple": spaces.Tuple((spaces.Discrete(20), spaces.MultiBinary(3))),
            "multi_discrete": spaces.MultiDiscrete([20, 4]),
            "multi_binary": spaces.MultiBinary(6),
            "box2d": spaces.Box(-1.0, 1.0, (3, 2), np.float64),
            "graph": spaces.Graph(spaces.Box(0, 1, (2,)), None),
            "text": spaces.Text(8),
        }[kind]
        self.t = 0

    def _obs(self) -> Any:
        t = self.t
        if self.kind == "image_hwc":
            image = np.zeros((40, 48, 3), np.uint8)
            image[:, :, 0], image[:, :, 1], image[0, 0, 2] = t, 100 + t, 200
            return image
        if self.kind == "image_chw":
            image = np.zeros((3, 40, 48), np.uint8)
            image[0], image[1] = t, 100 + t
            return image
        if self.kind == "dict":
            return {"pos": t, "vel": np.array([t / 20, 0.0], np.float32)}
        if self.kind == "tuple":
            return (t, np.array([t % 2, 0, 1], np.int8))
        if self.kind == "multi_discrete":
            return np.array([t, t % 4], np.int64)
        if self.kind == "multi_binary":
            return np.array([(t >> i) & 1 for i in range(6)], np.int8)
        if self.kind == "box2d":
            return np.full((3, 2), t / 20)
        return self.observation_space.sample()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), float(action), False, self.t >= 20, {}


for _kind in ("image_hwc", "image_chw", "dict", "tuple", "multi_discrete", "multi_binary",
              "box2d", "graph", "text"):
    _id = f"raydl_test/Space-{_kind}-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=SpaceEnv, kwargs={"kind": _kind})

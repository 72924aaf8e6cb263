"""Environments that fail on purpose, for the fault-tolerance tests.

Experiments name them the way users name their own envs, `tests.faulty_envs:ENV_ID`:
importing this module registers them (the driver and every Ray actor import it by name;
pytest runs from the repository root, which Ray puts on its workers' import path).

Every env here is a CartPole-sized toy (4 floats, 2 actions, reward 1 per step) whose
episodes last exactly `episode_len` steps, so episode accounting is exact: any reported
episode must have length and return `episode_len`. The observation carries the step
index within the episode (obs[1]), so a test can check that no transition spans two
episodes or an env crash. Failures count steps per env *instance* (since it was made),
which makes them deterministic and lets a recreated env run again.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


class FaultyEnv(gym.Env):
    """A fixed-length toy episode that can raise in step/reset or pay a NaN reward.

    crash_every: the N-th `step` call of this instance raises RuntimeError (0: never).
    crash_in_reset: every `reset` raises RuntimeError.
    nan_every: the N-th, 2N-th, ... step of this instance pays a NaN reward (0: never).
    pixels: observations are (4, 8, 8) uint8 frame stacks (for frame-mode replay), each
            frame filled with the step index, instead of 4 floats.
    float64_obs: observations are float64 arrays in a float32 space (gymnasium's env
            checker refuses that; raydl's own loop would cast them).
    hang_at: the N-th `step` of this instance sleeps for an hour, once per arming: only
            while HANG_ARMED exists, which the hanging process removes (so the env that
            replaces it runs on). A test arms it with `arm_hang()`.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        episode_len: int = 10,
        crash_every: int = 0,
        crash_in_reset: bool = False,
        nan_every: int = 0,
        pixels: bool = False,
        hang_at: int = 0,
        float64_obs: bool = False,
        render_mode: str | None = None,
    ) -> None:
        self.hang_at = hang_at
        self.float64_obs = float64_obs
        self.render_mode = render_mode
        self.episode_len = episode_len
        self.crash_every = crash_every
        self.crash_in_reset = crash_in_reset
        self.nan_every = nan_every
        self.pixels = pixels
        self.action_space = gym.spaces.Discrete(2)
        if pixels:
            self.observation_space = gym.spaces.Box(0, 255, (4, 8, 8), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.instance_steps = 0  # step calls since this instance was made
        self.t = 0
        self.x = 0.0

    def _obs(self) -> np.ndarray:
        if self.pixels:
            # Frame k of the stack shows step t - 3 + k (clipped at the episode start).
            frames = [np.full((8, 8), max(self.t - 3 + k, 0), np.uint8) for k in range(4)]
            return np.stack(frames)
        dtype = np.float64 if self.float64_obs else np.float32  # float64: outside its float32 space
        return np.array([self.x, float(self.t), 0.0, 0.0], dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self.crash_in_reset:
            raise RuntimeError("AlwaysCrash: reset failed on purpose")
        self.t = 0
        self.x = float(self.np_random.uniform(-0.05, 0.05))
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.instance_steps += 1
        if self.hang_at and self.instance_steps == self.hang_at:
            try:
                HANG_ARMED.unlink()  # one process wins; it hangs, the others run on
            except FileNotFoundError:
                pass
            else:
                time.sleep(3600)
        if self.crash_every and self.instance_steps % self.crash_every == 0:
            raise RuntimeError(f"CrashEvery: step {self.instance_steps} failed on purpose")
        self.t += 1
        self.x += 0.1 if action == 1 else -0.1
        reward = 1.0
        if self.nan_every and self.instance_steps % self.nan_every == 0:
            reward = float("nan")
        return self._obs(), reward, self.t >= self.episode_len, False, {}


HANG_ARMED = Path(tempfile.gettempdir()) / f"raydl-test-hang-{os.getuid()}.armed"


def arm_hang() -> None:
    """The next HangOnce env to reach its step `hang_at` hangs (in whichever process)."""
    HANG_ARMED.touch()


ENTRY = f"{__name__}:FaultyEnv"
ENVS: dict[str, dict[str, Any]] = {
    "raydl_test/CrashEvery-v0": {"crash_every": 25},
    "raydl_test/CrashEveryPixels-v0": {"crash_every": 25, "pixels": True},
    "raydl_test/AlwaysCrash-v0": {"crash_in_reset": True},
    "raydl_test/NanReward-v0": {"nan_every": 50},
    "raydl_test/HangOnce-v0": {"hang_at": 30},
    "raydl_test/Float64Obs-v0": {"float64_obs": True},
}
for env_id, kwargs in ENVS.items():
    if env_id not in gym.registry:  # importing twice (driver, then a test) registers once
        # The passive checker would warn (on stderr) about the NaN reward on purpose.
        gym.register(env_id, entry_point=ENTRY, kwargs=kwargs, disable_env_checker=True)

"""Atari with DeepMind preprocessing (Mnih et al. 2015), built from gymnasium's wrappers.

The env an agent sees: no-op reset (up to 30), frame skip 4 with a max over the last two
frames, 84x84 grayscale uint8, FIRE pressed where the game needs it to start, and a
4-frame stack. Two training signals are left to the learner instead of being baked into
the env, so that episode statistics stay the raw game score of whole games, which is
the number papers compare:

- life loss: `info["life_lost"]` is True on the step a life is lost; the learner treats
  that transition as terminal, but the game goes on (no reset);
- reward clipping: the learner clips rewards to their sign; the env returns raw scores.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

_REGISTERED = False


def register_ale() -> None:
    """Register the ALE/* ids with gymnasium (ale-py ships the ROMs)."""
    global _REGISTERED
    if not _REGISTERED:
        import ale_py

        import cv2

        # One OpenCV thread per process: frame resizing is tiny, and N env processes on
        # N cores each spawning a thread pool only oversubscribe the CPUs.
        cv2.setNumThreads(1)
        # Only errors from the emulator: no banner on every env creation.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        gym.register_envs(ale_py)
        _REGISTERED = True


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


class FireOnReset(gym.Wrapper):
    """Press FIRE after a reset and after each lost life, for games that wait for it
    (Breakout would otherwise stall, and an untrained agent would learn nothing)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        self.fire = meanings.index("FIRE")

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self.fire)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("life_lost") and not (terminated or truncated):
            obs, extra, terminated, truncated, more = self.env.step(self.fire)
            reward = float(reward) + float(extra)
            info = {**more, "life_lost": True}
        return obs, reward, terminated, truncated, info


class LifeLossSignal(gym.Wrapper):
    """Adds info["life_lost"]: True on the step the game's life counter drops."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()  # type: ignore[attr-defined]
        return obs, {**info, "life_lost": False}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()  # type: ignore[attr-defined]
        lost = 0 < lives < self.lives
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "life_lost": lost}


def make_atari(
    env_id: str,
    *,
    sticky_actions: float = 0.25,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    render_mode: str | None = None,
) -> gym.Env:
    """One preprocessed Atari env: observations are uint8 (frame_stack, 84, 84)."""
    register_ale()
    env = gym.make(
        env_id,
        frameskip=1,  # AtariPreprocessing skips frames itself, with max-pooling
        repeat_action_probability=sticky_actions,
        full_action_space=False,
        render_mode=render_mode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = LifeLossSignal(env)
    if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
        env = FireOnReset(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def clip_reward(rewards: np.ndarray) -> np.ndarray:
    """DQN's reward clipping: only the sign of the score change is learned from."""
    return np.sign(rewards).astype(np.float32)

"""Environment construction: gymnasium ids, validated before any work starts."""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from raydl.config import ConfigError


def check_env_id(env_id: str) -> None:
    """Raise a one-line ConfigError if gymnasium does not know `env_id`."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"env: unknown environment id {env_id!r}{hint}")


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """One environment, as gymnasium registers it."""
    check_env_id(env_id)
    return gym.make(env_id, render_mode=render_mode, **kwargs)


def make_vector_env(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` copies stepped in this process. Same-step autoreset: an env that ends
    is reset within the same `step`, and its last observation is in info['final_obs'],
    which is exactly what a replay buffer needs."""
    check_env_id(env_id)
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **kwargs,
    )

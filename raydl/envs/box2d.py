"""Box2D envs (LunarLander, BipedalWalker, CarRacing) need an optional package.

gymnasium's own error for a missing Box2D suggests building box2d-py from source with
swig; raydl's `box2d` extra installs the prebuilt `box2d` wheel instead, so the error
names that."""

from __future__ import annotations

import importlib.util

import gymnasium as gym

from raydl.errors import ConfigError

_BOX2D_ENTRY = "gymnasium.envs.box2d."


def is_box2d(env_id: str) -> bool:
    """Whether gymnasium's registered `env_id` is one of its Box2D envs."""
    spec = gym.registry.get(env_id)
    return spec is not None and str(spec.entry_point).startswith(_BOX2D_ENTRY)


def require_box2d(env_id: str) -> None:
    """One-line ConfigError if `env_id` (a registered id) is a Box2D env and the Box2D
    module is not installed; nothing otherwise (a cheap look-up, no import)."""
    if is_box2d(env_id) and importlib.util.find_spec("Box2D") is None:
        raise ConfigError(f"env: {env_id} needs the box2d package; pip install 'raydl[box2d]'")

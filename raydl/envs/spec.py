"""The env spec: an environment's spaces, probed once, and how its observations are fed.

`probe_env` builds the env once (in the check step, before any work) and decides how
every observation space reaches a network, with gymnasium's own wrappers:

    Box, rank 1                 a float32 vector (cast when the env gives another dtype)
    Box, rank 3, uint8, >= 36px an image: channels first (HWC is transposed), Nature CNN
    ALE/* ids                   the preprocessed frame stack (uint8, frame replay)
    any other Box, Discrete,    gymnasium's flattening (one-hot for discrete parts) to a
    MultiBinary, MultiDiscrete, float32 vector
    Tuple, Dict (of those)
    Text, Graph, Sequence       refused in one line: nothing fixed-size to learn from
    Dict {observation,          an action-masked env: `observation` as above reaches the
          action_mask}          network; the mask moves to info['action_mask'] (the other
                                way envs give one), where the policy takes it

The spec travels to the algorithm, to every runner actor and to `load_policy`, so the
env is not probed again, and every place builds the env the same way (`spec.make`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from raydl.config import AtariConfig
from raydl.envs import make_env
from raydl.envs.atari import is_atari
from raydl.errors import ConfigError, first_line, message_line

ObsKind = Literal["vector", "image", "frames"]
Transform = Literal["none", "float32", "flatten", "chw"]
# The Nature CNN's three valid convolutions need at least 36 pixels on each side.
MIN_IMAGE_SIDE = 36
_UNTAKEN = (spaces.Text, spaces.Graph, spaces.Sequence)
OBSERVATION, ACTION_MASK = "observation", "action_mask"
TAKEN = "Box, Discrete, MultiBinary, MultiDiscrete, and Tuple or Dict of those"


@dataclass(frozen=True)
class EnvSpec:
    """An env's spaces and what its observations look like to the learner."""

    env_id: str
    observation_space: gym.Space[Any]  # as the env gives it
    action_space: gym.Space[Any]
    obs_kind: ObsKind
    obs_shape: tuple[int, ...]  # what networks and replay buffers see
    obs_dtype: str
    transform: Transform
    atari: AtariConfig | None = None  # the preprocessing of ALE/* ids (None for others)
    mask_in_obs: bool = False  # a Dict {observation, action_mask} observation space

    @property
    def policy_observation_space(self) -> gym.Space[Any]:
        """The observation the policy sees before adaptation (without the action mask)."""
        if self.mask_in_obs:
            return self.observation_space[OBSERVATION]  # type: ignore[index]
        return self.observation_space

    @property
    def num_actions(self) -> int:
        """Actions of a Discrete action space."""
        return int(self.action_space.n)  # type: ignore[attr-defined]

    @property
    def pixels(self) -> bool:
        """Observations go through a CNN (images and frame stacks)."""
        return self.obs_kind != "vector"

    def make(self, render_mode: str | None = None) -> gym.Env[Any, Any]:
        """One env, its observations adapted to `obs_shape` / `obs_dtype`."""
        env = make_env(self.env_id, render_mode, self.atari)
        return adapt(MaskToInfo(env) if self.mask_in_obs else env, self.transform)

    def make_vector(self, num_envs: int) -> gym.vector.VectorEnv[Any, Any, Any]:
        """`num_envs` copies stepped in this process. Same-step autoreset: an env that
        ends is reset within the same `step`, and its last observation is in
        info['final_obs'], which is exactly what a replay buffer needs."""
        return gym.vector.SyncVectorEnv(
            [self.make for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
        )

    def require_discrete_actions(self, who: str) -> None:
        if not isinstance(self.action_space, spaces.Discrete):
            raise ConfigError(
                f"env: {self.env_id} has a {type(self.action_space).__name__} action space; "
                f"{who} needs a Discrete one"
            )


def probe_env(env_id: str, atari: AtariConfig | None = None) -> EnvSpec:
    """Build the env once and read its spaces; one-line ConfigError for an env that
    cannot be made or an observation space raydl does not take."""
    try:
        env = make_env(env_id, atari=atari)
    except ConfigError:
        raise
    except Exception as exc:  # a missing extra (box2d), a broken custom env constructor
        raise ConfigError(f"env: cannot make {env_id!r}: {type(exc).__name__}: "
                          f"{message_line(exc)}") from None
    try:
        obs_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    masked = is_masked_observation(obs_space)
    seen = obs_space[OBSERVATION] if masked else obs_space  # type: ignore[index]
    kind, transform = observation_plan(seen, frames=is_atari(env_id), env_id=env_id)
    adapted = adapted_space(seen, transform)
    return EnvSpec(env_id, obs_space, action_space, kind, tuple(adapted.shape),
                   str(adapted.dtype), transform,
                   (atari or AtariConfig()) if is_atari(env_id) else None, masked)


def is_masked_observation(space: gym.Space[Any]) -> bool:
    """A Dict observation of exactly `observation` and `action_mask`: an action-masked
    env (as PettingZoo's classic games give them)."""
    return isinstance(space, spaces.Dict) and set(space.spaces) == {OBSERVATION, ACTION_MASK}


class MaskToInfo(gym.Wrapper[Any, Any, Any, Any]):
    """obs {observation, action_mask} -> obs = observation, info['action_mask'] = the
    mask: both ways an env gives masks reach the policy the same way."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space[OBSERVATION]  # type: ignore[index]

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs[OBSERVATION], {**info, ACTION_MASK: obs[ACTION_MASK]}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs[OBSERVATION], reward, terminated, truncated, {**info, ACTION_MASK: obs[ACTION_MASK]}


def observation_plan(
    space: gym.Space[Any], frames: bool = False, env_id: str = "env",
) -> tuple[ObsKind, Transform]:
    """How observations of `space` reach a network (see the module's table)."""
    if _contains(space, _UNTAKEN):
        raise ConfigError(
            f"env: {env_id} has a {_describe(space)} observation space, which raydl does not "
            f"take (nothing fixed-size to learn from); allowed: {TAKEN}"
        )
    if isinstance(space, spaces.Box):
        shape = space.shape
        if frames:
            return "frames", "none"
        if len(shape) == 1:
            return "vector", "none" if space.dtype == np.float32 else "float32"
        if len(shape) == 3 and space.dtype == np.uint8:
            channels_last = shape[2] < shape[0]
            side = min(shape[:2]) if channels_last else min(shape[1:])
            if side >= MIN_IMAGE_SIDE:
                return "image", "chw" if channels_last else "none"
    flat = spaces.flatten_space(space)
    if not isinstance(flat, spaces.Box):  # a container of something unflattenable
        raise ConfigError(f"env: {env_id} has a {_describe(space)} observation space that "
                          f"does not flatten to a vector; allowed: {TAKEN}")
    return "vector", "flatten"


def adapted_space(space: gym.Space[Any], transform: Transform) -> spaces.Box:
    """The observation space the learner sees after `transform`."""
    if transform == "chw":
        assert isinstance(space, spaces.Box)
        return spaces.Box(np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)),
                          dtype=space.dtype)  # type: ignore[arg-type]
    if transform in ("float32", "flatten"):
        flat = spaces.flatten_space(space)
        assert isinstance(flat, spaces.Box)
        return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32),
                          dtype=np.float32)
    assert isinstance(space, spaces.Box)
    return space


def adapt(env: gym.Env[Any, Any], transform: Transform) -> gym.Env[Any, Any]:
    """`env` with gymnasium's wrappers applying `transform` to its observations."""
    if transform in ("flatten", "float32"):
        # gymnasium's DtypeObservation would derive the float32 space from float64 bounds
        # (a warning per env); the adapted space is made here from float32 bounds instead.
        space = adapted_space(env.observation_space, transform)
        inner = gym.wrappers.FlattenObservation(env) if transform == "flatten" else env
        return gym.wrappers.TransformObservation(inner, _as_float32, space)
    if transform == "chw":
        return gym.wrappers.TransformObservation(
            env, _channels_first, adapted_space(env.observation_space, "chw"))
    return env


def _as_float32(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs, np.float32)


def _channels_first(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)))


def _contains(space: gym.Space[Any], kinds: tuple[type, ...]) -> bool:
    if isinstance(space, kinds):
        return True
    if isinstance(space, spaces.Tuple):
        return any(_contains(s, kinds) for s in space.spaces)
    if isinstance(space, spaces.Dict):
        return any(_contains(s, kinds) for s in space.spaces.values())
    if isinstance(space, spaces.OneOf):
        return any(_contains(s, kinds) for s in space.spaces)
    return False


def _describe(space: gym.Space[Any]) -> str:
    text = str(space)
    return text if len(text) <= 80 else type(space).__name__


def env_checker_problems(env_id: str) -> list[str]:
    """gymnasium's own env checker (`gymnasium.utils.env_checker.check_env`) on a fresh
    copy of a user's env, for `raydl check`: each of its warnings as one line; a failed
    check is a ConfigError naming it."""
    import re
    import warnings

    from gymnasium.utils.env_checker import check_env

    env = make_env(env_id)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check_env(env.unwrapped, skip_render_check=True)
            except Exception as exc:  # noqa: BLE001 - the checker's finding, as one line
                raise ConfigError(f"env: {env_id} fails gymnasium's env checker: {first_line(exc)}") from None
    finally:
        env.close()
    plain = (re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)).strip() for w in caught)
    return list(dict.fromkeys(text.removeprefix("WARN: ") for text in plain if text))

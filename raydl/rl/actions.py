"""How a policy acts in an action space, as plain data (NumPy and gymnasium only, so the
check step can use it without torch): the head's width, raw -> env actions, random
actions, action masks. The distributions over raw actions are in raydl.rl.distributions.

    Discrete        categorical        head: logits (n)
    Box             gaussian           head: mean (d); a learned log std beside it
    MultiDiscrete   multi_categorical  head: logits (sum n_i), one categorical per dim
    MultiBinary     bernoulli          head: logits (d)

Raw actions are what the policy samples (Box: the unclipped Gaussian sample, or the
pre-tanh one when squashed); env actions are what the env takes (clipped or scaled into
the bounds, categoricals offset by the space's `start`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from raydl.errors import ConfigError

Kind = Literal["categorical", "gaussian", "multi_categorical", "bernoulli"]
TAKEN = "Discrete, Box, MultiDiscrete, MultiBinary"


@dataclass(frozen=True)
class ActionSpec:
    """How a policy acts in one action space: the head's width, which distribution
    (`kind`), raw -> env actions, random actions and masks. Plain data: it travels to
    Ray actors with the network."""

    kind: Kind
    size: int  # the policy head's width (logits, or the Gaussian mean)
    shape: tuple[int, ...]  # one env action's shape
    nvec: tuple[int, ...] = ()  # categorical sizes (Discrete: (n,))
    start: tuple[int, ...] = ()  # their `start` offsets
    low: tuple[float, ...] = ()  # Box bounds, flattened
    high: tuple[float, ...] = ()
    squash: bool = False
    dtype: str = "int64"  # the env action's dtype

    @property
    def maskable(self) -> bool:
        return self.kind in ("categorical", "multi_categorical")

    def to_env(self, raw: np.ndarray) -> np.ndarray:
        """Raw actions (B, ...) -> env actions: Box clipped to the bounds (or squashed and
        scaled into them), categoricals offset by `start`, reshaped to the space."""
        batch = raw.shape[0]
        if self.kind == "gaussian":
            low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
            if self.squash:
                action = low + (np.tanh(raw) + 1.0) * 0.5 * (high - low)
            else:
                action = np.clip(raw, low, high)
            return action.astype(self.dtype).reshape(batch, *self.shape)
        if self.kind == "bernoulli":
            return raw.astype(self.dtype).reshape(batch, *self.shape)
        action = raw + np.asarray(self.start, np.int64)
        return action.astype(self.dtype).reshape(batch, *self.shape)

    def random(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> Any:
        """One uniformly random env action from `rng` (epsilon in evaluation); masked
        actions are never chosen."""
        if self.kind == "categorical":
            if mask is None:  # as before masks existed: same draws, same evaluations
                return int(rng.integers(self.nvec[0])) + self.start[0]
            return int(rng.choice(np.flatnonzero(mask))) + self.start[0]
        if self.kind == "multi_categorical":
            parts = np.split(np.ones(self.size, bool) if mask is None else np.asarray(mask, bool),
                             np.cumsum(self.nvec)[:-1])
            raw = np.array([[rng.choice(np.flatnonzero(p)) for p in parts]])
            return self.to_env(raw)[0]
        if self.kind == "bernoulli":
            return self.to_env(rng.integers(0, 2, size=(1, self.size)))[0]
        low, high = np.asarray(self.low), np.asarray(self.high)
        if self.squash or np.isfinite(low).all() and np.isfinite(high).all():
            return self.to_env(rng.uniform(low, high, size=(1, self.size)).astype(np.float32))[0]
        return self.to_env(rng.standard_normal((1, self.size)).astype(np.float32))[0]

    def flat_mask(self, mask: Any, batch: int) -> np.ndarray | None:
        """An env's `action_mask` (B, n) / (B, sum n_i), or a tuple of per-dimension
        masks, as a (B, size) bool array; None for spaces without masks."""
        if mask is None or not self.maskable:
            return None
        if isinstance(mask, (tuple, list)):
            mask = np.concatenate([np.asarray(m).reshape(batch, -1) for m in mask], axis=1)
        elif isinstance(mask, np.ndarray) and mask.dtype == object:
            # a vector env's info holds each env's tuple of per-dimension masks as an object
            mask = np.stack([np.concatenate([np.asarray(p).ravel() for p in
                                             (m if isinstance(m, (tuple, list)) else [m])])
                             for m in mask])
        flat = np.asarray(mask).reshape(batch, -1).astype(bool)
        if flat.shape[1] != self.size:
            raise ValueError(f"action_mask has {flat.shape[1]} entries per state; the "
                             f"action space needs {self.size}")
        return flat


def action_spec(space: spaces.Space[Any], squash: bool = False, env_id: str = "env") -> ActionSpec:
    """The ActionSpec of `space`; one-line ConfigError for a space the actor-critic
    family does not take."""
    if squash and not isinstance(space, spaces.Box):
        raise ConfigError(f"algo.squash: true is for Box action spaces, {env_id} has a "
                          f"{type(space).__name__} one; allowed: false")
    if isinstance(space, spaces.Discrete):
        return ActionSpec("categorical", int(space.n), (), (int(space.n),), (int(space.start),))
    if isinstance(space, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.asarray(space.nvec).ravel())
        start = tuple(int(s) for s in np.asarray(space.start).ravel())
        return ActionSpec("multi_categorical", sum(nvec), tuple(space.shape), nvec, start,
                          dtype=str(space.dtype))
    if isinstance(space, spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return ActionSpec("bernoulli", size, tuple(space.shape), dtype=str(space.dtype))
    if isinstance(space, spaces.Box):
        low, high = space.low.astype(np.float64).ravel(), space.high.astype(np.float64).ravel()
        if squash and not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(f"algo.squash: true needs finite action bounds and {env_id}'s "
                              f"Box has infinite ones; allowed: false (then actions are "
                              f"the unclipped Gaussian samples there)")
        return ActionSpec("gaussian", len(low), tuple(space.shape), low=tuple(low),
                          high=tuple(high), squash=squash, dtype=str(space.dtype))
    raise ConfigError(f"env: {env_id} has a {type(space).__name__} action space; the "
                      f"actor-critic kinds take {TAKEN}")

"""Observation normalization and reward scaling, shared exactly by many runners.

Semantics are SB3's `VecNormalize` (stable-baselines3 2.x), so hyperparameters tuned
there (rl-baselines3-zoo's `normalize: true`) carry over:

- observations: update the running mean/var from the *raw* batch, then normalize with
  the updated statistics: clip((obs - mean) / sqrt(var + epsilon), -clip, clip);
- rewards: keep a per-env discounted return R <- gamma R + r, update a running variance
  of R, divide the reward by sqrt(var(R) + epsilon) (no centering), clip, and reset R to 0
  where an episode ended (terminated or truncated).

Statistics start as SB3's do: mean 0, var 1 and a pseudo-count `prior_count` (1e-4),
which keeps the first normalization finite.

Many runners, one set of statistics: each runner normalizes with its *view* (the merged
statistics the learner sent last, plus what the runner has seen since) and keeps a
*delta* (the statistics of only what it has seen since it last handed one over). The
learner merges every runner's delta into its own statistics with Chan et al.'s exact
parallel formula and sends the result back with the weights; so after a sync every
runner holds the statistics of all data seen by all runners, as if one process had seen
the concatenation. No Ray in here: plain numpy, float64.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PRIOR_COUNT = 1e-4  # SB3 RunningMeanStd's epsilon: a pseudo-count of mean 0, var 1
EPSILON = 1e-8  # SB3 VecNormalize's: keeps the divisor of a constant feature off zero


@dataclass
class RunningMeanStd:
    """Count, mean and (population) variance of a stream of arrays, float64.

    The empty statistics (count 0) are mean 0, var 1; merging data into them gives the
    data's own statistics exactly."""

    mean: np.ndarray
    var: np.ndarray
    count: float = 0.0

    @classmethod
    def empty(cls, shape: tuple[int, ...] = (), count: float = 0.0) -> RunningMeanStd:
        """Mean 0, var 1 with pseudo-count `count` (0: no data; PRIOR_COUNT: SB3's start)."""
        return cls(np.zeros(shape, np.float64), np.ones(shape, np.float64), float(count))

    @classmethod
    def of(cls, batch: np.ndarray) -> RunningMeanStd:
        """The statistics of `batch` along its first axis (np.mean, np.var)."""
        data = np.asarray(batch, np.float64)
        return cls(data.mean(axis=0), data.var(axis=0), float(data.shape[0]))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def update(self, batch: np.ndarray) -> None:
        """Add `batch` (samples along axis 0)."""
        if len(batch):
            self.merge(RunningMeanStd.of(batch))

    def merge(self, other: RunningMeanStd) -> None:
        """Add the data summarized by `other` (Chan, Golub & LeVeque 1979):

            n = n_a + n_b,  d = mean_b - mean_a
            mean = mean_a + d n_b / n
            M2 = var_a n_a + var_b n_b + d^2 n_a n_b / n,  var = M2 / n
        """
        if other.count <= 0:
            return
        if other.shape != self.shape:
            raise ValueError(f"cannot merge statistics of shape {other.shape} into {self.shape}")
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = (self.var * self.count + other.var * other.count
              + np.square(delta) * (self.count * other.count / total))
        self.mean, self.var, self.count = mean, m2 / total, total

    def copy(self) -> RunningMeanStd:
        return RunningMeanStd(self.mean.copy(), self.var.copy(), self.count)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready; Python's float repr round-trips float64 exactly."""
        return {"shape": list(self.shape), "mean": self.mean.tolist(),
                "var": self.var.tolist(), "count": self.count}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunningMeanStd:
        shape = tuple(int(s) for s in state["shape"])
        return cls(np.asarray(state["mean"], np.float64).reshape(shape),
                   np.asarray(state["var"], np.float64).reshape(shape), float(state["count"]))


def merged(base: RunningMeanStd, deltas: Iterable[RunningMeanStd]) -> RunningMeanStd:
    """`base` with every delta merged in (a new object; the learner's sync step)."""
    out = base.copy()
    for delta in deltas:
        out.merge(delta)
    return out


class SharedStats:
    """One runner's share of statistics kept by many: the view it normalizes with
    (last merged statistics + its own data since) and the delta it has not handed over."""

    def __init__(self, shape: tuple[int, ...] = (), prior_count: float = PRIOR_COUNT) -> None:
        self.view = RunningMeanStd.empty(shape, prior_count)
        self.delta = RunningMeanStd.empty(shape)

    def update(self, batch: np.ndarray) -> None:
        new = RunningMeanStd.of(batch)
        self.view.merge(new)
        self.delta.merge(new)

    def take_delta(self) -> RunningMeanStd:
        """The statistics of the data seen since the last call; starts a new delta."""
        out, self.delta = self.delta, RunningMeanStd.empty(self.view.shape)
        return out

    def sync(self, merged_stats: RunningMeanStd) -> None:
        """Adopt the learner's merged statistics. Data seen after the last take_delta
        (an asynchronous runner keeps sampling) stays in the view and in the delta, so
        nothing is counted twice or lost."""
        self.view = merged(merged_stats, [self.delta])


@dataclass
class ObsNormalizer:
    """clip((obs - mean) / sqrt(var + epsilon), -clip, clip) as float32 (SB3 VecNormalize)."""

    shape: tuple[int, ...]
    clip: float = 10.0
    epsilon: float = EPSILON
    prior_count: float = PRIOR_COUNT
    stats: SharedStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = SharedStats(tuple(self.shape), self.prior_count)

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        """Training: update from the raw batch `obs` (envs along axis 0), then normalize."""
        if update:
            self.stats.update(obs)
        return self.normalize(obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Normalize without updating (eval, final observations of truncated episodes)."""
        view = self.stats.view
        out = (np.asarray(obs, np.float64) - view.mean) / np.sqrt(view.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"clip": self.clip, "epsilon": self.epsilon, "stats": self.stats.view.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore merged statistics (a checkpoint, or eval); any unsent delta is dropped."""
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])
        self.stats.view = RunningMeanStd.from_state_dict(state["stats"])
        self.stats.delta = RunningMeanStd.empty(self.stats.view.shape)


@dataclass
class RewardScaler:
    """reward / sqrt(var(R) + epsilon), clipped, with R the per-env discounted return
    (SB3 VecNormalize's norm_reward): R <- gamma R + r; update var(R); scale; R <- 0 at ends."""

    num_envs: int
    gamma: float
    clip: float = 10.0
    epsilon: float = EPSILON
    prior_count: float = PRIOR_COUNT
    stats: SharedStats = field(init=False)
    returns: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.stats = SharedStats((), self.prior_count)
        self.returns = np.zeros(self.num_envs, np.float64)

    def __call__(self, rewards: np.ndarray, ended: np.ndarray, update: bool = True) -> np.ndarray:
        """Scaled rewards (float32) for one vector step; `ended` = terminated | truncated."""
        if update:
            self.returns = self.returns * self.gamma + np.asarray(rewards, np.float64)
            self.stats.update(self.returns)
        out = self.scale(rewards)
        self.returns[np.asarray(ended, bool)] = 0.0
        return out

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        """Scale without touching the returns or the statistics."""
        out = np.asarray(rewards, np.float64) / np.sqrt(self.stats.view.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """The statistics, not the per-env running returns: those belong to live episodes,
        which a restored run starts afresh (as SB3 resets them on load)."""
        return {"gamma": self.gamma, "clip": self.clip, "epsilon": self.epsilon,
                "stats": self.stats.view.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gamma, self.clip = float(state["gamma"]), float(state["clip"])
        self.epsilon = float(state["epsilon"])
        self.stats.view = RunningMeanStd.from_state_dict(state["stats"])
        self.stats.delta = RunningMeanStd.empty(())
        self.returns = np.zeros(self.num_envs, np.float64)


@dataclass
class NormStats:
    """Observation and return statistics (None for what is off): a runner's deltas with
    its samples, the learner's merged totals sent back with the weights and checkpointed."""

    obs: RunningMeanStd | None = None
    ret: RunningMeanStd | None = None

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready, for the learner's checkpoint."""
        return {"obs": None if self.obs is None else self.obs.state_dict(),
                "ret": None if self.ret is None else self.ret.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> NormStats:
        return cls(*(None if state.get(k) is None else RunningMeanStd.from_state_dict(state[k])
                     for k in ("obs", "ret")))


def take_deltas(obs: ObsNormalizer | None, rewards: RewardScaler | None) -> NormStats:
    """A runner's deltas since its last hand-over."""
    return NormStats(None if obs is None else obs.stats.take_delta(),
                     None if rewards is None else rewards.stats.take_delta())


def merge_deltas(total: NormStats, deltas: Iterable[NormStats]) -> NormStats:
    """The learner's side: `total` (its merged statistics) with every runner's delta."""
    deltas = list(deltas)
    obs = [d.obs for d in deltas if d.obs is not None]
    ret = [d.ret for d in deltas if d.ret is not None]
    return NormStats(None if total.obs is None else merged(total.obs, obs),
                     None if total.ret is None else merged(total.ret, ret))


def sync(obs: ObsNormalizer | None, rewards: RewardScaler | None, total: NormStats) -> None:
    """A runner adopts the learner's merged statistics (sent with the new weights)."""
    if obs is not None and total.obs is not None:
        obs.stats.sync(total.obs)
    if rewards is not None and total.ret is not None:
        rewards.stats.sync(total.ret)

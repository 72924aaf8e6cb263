"""Action distributions of the actor-critic family, one small class per action space.

    Discrete        Categorical       logits (B, n), optional mask (B, n)
    Box             DiagGaussian      mean (B, d) and a learned state-independent log std;
                                      optionally tanh-squashed into the bounds
    MultiDiscrete   MultiCategorical  logits (B, sum n_i), one categorical per dimension,
                                      optional mask (B, sum n_i)
    MultiBinary     Bernoulli         logits (B, d)

Each distribution gives `sample(rng)` (NumPy, driven by the runner's RNG so a run is
reproducible and the RNG state stays a JSON-ready dict), `log_prob(raw) -> (B,)`,
`entropy() -> (B,)` and `mode()` (the greedy action). Actions are *raw* actions, as the
policy samples them (for Box: the unclipped Gaussian sample, or the pre-tanh one when
squashed); `ActionSpec.to_env` (or `mode_to_env` in torch) turns them into what the env takes (clipped or scaled to
the bounds, `start` added). Rollouts keep raw actions: their log-probs are exact.

`make_distribution(spec, params, log_std, mask)` builds one from a policy head's output,
for the `ActionSpec` of the env's action space (raydl.rl.actions).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from raydl.rl.actions import ActionSpec
_LOG_2PI = math.log(2 * math.pi)


class Distribution(Protocol):
    """What every action distribution gives (B: the batch)."""

    def sample(self, rng: np.random.Generator) -> np.ndarray: ...
    def log_prob(self, actions: torch.Tensor) -> torch.Tensor: ...
    def entropy(self) -> torch.Tensor: ...
    def mode(self) -> torch.Tensor: ...


def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with masked actions at the lowest float: probability 0, and (torch.where)
    no gradient into them. Not -inf: 0 * -inf would make the entropy NaN."""
    if mask is None:
        return logits
    return torch.where(mask.bool(), logits, torch.finfo(logits.dtype).min)


def _gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sample of softmax(logits) along the last axis by the Gumbel-max trick."""
    gumbel = -np.log(-np.log(rng.random(logits.shape)))
    return np.argmax(logits + gumbel, axis=-1)


class Categorical:
    """One categorical per row; masked actions are never sampled nor the mode."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if mask is not None and not bool(mask.bool().any(dim=-1).all()):
            raise ValueError("action_mask: a state with every action masked")
        self.mask = None if mask is None else mask.bool()
        self.logits = _masked(logits, mask)
        self._log_probs: torch.Tensor | None = None

    def _normalized(self) -> torch.Tensor:
        """log softmax(logits), computed once for log_prob and entropy (PPO takes both).
        One computed under no_grad from trainable logits is not kept: a later call with
        gradients must not get a detached copy."""
        if self._log_probs is not None:
            return self._log_probs
        log_probs = torch.log_softmax(self.logits, dim=-1)
        if torch.is_grad_enabled() or not self.logits.requires_grad:
            self._log_probs = log_probs
        return log_probs

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return _gumbel_argmax(self.logits.detach().double().cpu().numpy(), rng)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self._normalized().gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        log_probs = self._normalized()
        terms = log_probs.exp() * log_probs
        if self.mask is not None:  # exactly 0 for masked actions, whatever the float says
            terms = torch.where(self.mask, terms, 0.0)
        return -terms.sum(dim=-1)

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(dim=-1)


class MultiCategorical:
    """Independent categoricals, one per dimension of sizes `nvec` (flat logits)."""

    def __init__(self, logits: torch.Tensor, nvec: list[int],
                 mask: torch.Tensor | None = None) -> None:
        logit_parts = torch.split(logits, nvec, dim=-1)
        mask_parts = torch.split(mask, nvec, dim=-1) if mask is not None else [None] * len(nvec)
        self.parts = [Categorical(lg, m) for lg, m in zip(logit_parts, mask_parts)]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.stack([p.sample(rng) for p in self.parts], axis=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(actions[..., i]) for i, p in enumerate(self.parts))  # type: ignore[return-value]

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)  # type: ignore[return-value]

    def mode(self) -> torch.Tensor:
        return torch.stack([p.mode() for p in self.parts], dim=-1)


class Bernoulli:
    """Independent Bernoulli bits, p = sigmoid(logits); the mode is p > 0.5."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        p = torch.sigmoid(self.logits.detach().double()).cpu().numpy()
        return (rng.random(p.shape) < p).astype(np.int8)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        # log p = -softplus(-l), log (1 - p) = -softplus(l): stable for large |l|
        x = actions.to(self.logits.dtype)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            self.logits, x, reduction="none")
        return -nll.sum(dim=-1)

    def entropy(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            self.logits, p, reduction="none")  # = H(p) per bit
        return nll.sum(dim=-1)

    def mode(self) -> torch.Tensor:
        return (self.logits > 0).to(torch.int8)


class DiagGaussian:
    """N(mean, diag(exp(log_std)^2)). With `squash` the action is tanh(u) of a Gaussian
    u (then scaled to the bounds by `ActionSpec.to_env`); raw actions are u, and
    log pi(a) = log N(u) - sum log(1 - tanh(u)^2) (the tanh's log-det; the constant
    affine scaling to the bounds is left out: it has no gradient)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, squash: bool = False) -> None:
        self.mean, self.log_std, self.squash = mean, log_std.expand_as(mean), squash

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        mean = self.mean.detach().double().cpu().numpy()
        std = np.exp(self.log_std.detach().double().cpu().numpy())
        return (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        u = actions.to(self.mean.dtype)
        z = (u - self.mean) * torch.exp(-self.log_std)
        log_prob = (-0.5 * z.pow(2) - self.log_std - 0.5 * _LOG_2PI).sum(dim=-1)
        if self.squash:
            # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
            log_det = 2.0 * (math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))
            log_prob = log_prob - log_det.sum(dim=-1)
        return log_prob

    def entropy(self) -> torch.Tensor:
        """The Gaussian's entropy, sum(log_std) + d/2 (1 + log 2 pi). Squashed, that of
        the pre-tanh u: the squashed one has no closed form and is at most this."""
        return (self.log_std + 0.5 * (1.0 + _LOG_2PI)).sum(dim=-1)

    def mode(self) -> torch.Tensor:
        return self.mean


def make_distribution(spec: ActionSpec, params: torch.Tensor, log_std: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> Distribution:
    """The distribution of `spec`'s raw actions given a policy head's output (B, size);
    `mask` (B, size) bool, for Discrete / MultiDiscrete only."""
    if mask is not None and not spec.maskable:
        raise ValueError(f"action masks are for Discrete / MultiDiscrete, not {spec.kind}")
    if spec.kind == "categorical":
        return Categorical(params, mask)
    if spec.kind == "multi_categorical":
        return MultiCategorical(params, list(spec.nvec), mask)
    if spec.kind == "bernoulli":
        return Bernoulli(params)
    assert log_std is not None
    return DiagGaussian(params, log_std, spec.squash)


def mode_to_env(spec: ActionSpec, mode: torch.Tensor) -> torch.Tensor:
    """`ActionSpec.to_env` in torch, for greedy actions (exportable: no NumPy)."""
    if spec.kind == "gaussian":
        low = torch.tensor(spec.low, dtype=mode.dtype)
        high = torch.tensor(spec.high, dtype=mode.dtype)
        if spec.squash:
            action = low + (torch.tanh(mode) + 1.0) * 0.5 * (high - low)
        else:
            action = torch.minimum(torch.maximum(mode, low), high)
        return action.reshape(mode.shape[0], *spec.shape)
    if spec.kind == "bernoulli":
        return mode.reshape(mode.shape[0], *spec.shape)
    if spec.kind == "categorical":
        return mode + spec.start[0]
    return (mode + torch.tensor(spec.start)).reshape(mode.shape[0], *spec.shape)

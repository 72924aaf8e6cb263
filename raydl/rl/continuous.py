"""Networks and exploration noise of the off-policy continuous-control kinds (SAC, TD3).

Actors act in [-1, 1]^d, the space replay stores and critics see; `to_bounds` scales an
action into the env's Box when it is taken (SB3's scale_action / unscale_action):

    env action = low + (a + 1) / 2 * (high - low)

    SquashedGaussianActor   SAC: a = tanh(u), u ~ N(mu(s), sigma(s)); log-prob with the
                            tanh correction; greedy: tanh(mu(s))
    DeterministicActor      TD3 / DDPG: a = tanh(f(s)); exploration noise added by the
                            runner (GaussianNoise or OUNoise), clipped to [-1, 1]
    QCritics                n independent Q(s, a) MLPs (twin critics: n = 2)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from raydl.nn import mlp
from raydl.rl.actions import ActionSpec
from raydl.rl.networks import make_encoder

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's and SpinningUp's clamp of SAC's log std


def to_bounds(actions: np.ndarray, spec: ActionSpec) -> np.ndarray:
    """Actions in [-1, 1] (B, d) -> env actions in the Box (B, *shape)."""
    low, high = np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32)
    scaled = low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
    return scaled.astype(spec.dtype).reshape(len(actions), *spec.shape)


def to_bounds_torch(actions: torch.Tensor, spec: ActionSpec) -> torch.Tensor:
    """`to_bounds` in torch (greedy actions, exportable)."""
    low = torch.tensor(spec.low, dtype=actions.dtype).to(actions.device)
    high = torch.tensor(spec.high, dtype=actions.dtype).to(actions.device)
    return (low + (actions + 1.0) * 0.5 * (high - low)).reshape(actions.shape[0], *spec.shape)


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) of a pre-tanh sample u ~ N(mean, exp(log_std)), summed over the
    action's dims: log N(u) - sum log(1 - tanh(u)^2), the correction written as
    2 (log 2 - u - softplus(-2u)), which stays finite where tanh(u) rounds to +-1."""
    normal = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    correction = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (normal - correction).sum(-1)


class ContinuousActor(nn.Module):
    """An actor over a Box: forward(obs) is its deterministic action in [-1, 1]."""

    actions: ActionSpec

    def greedy(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy env action of each observation, in the Box's bounds."""
        return to_bounds_torch(self(obs), self.actions)

    def explore(self, obs: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """Actions in [-1, 1] to explore with (before the runner's noise, if any)."""
        with torch.no_grad():
            return self(obs).numpy()


class SquashedGaussianActor(ContinuousActor):
    """SAC's actor: a tanh-squashed diagonal Gaussian with state-dependent log std."""

    def __init__(self, obs_shape: int | tuple[int, ...], actions: ActionSpec, hidden: list[int],
                 activation: str = "relu") -> None:
        super().__init__()
        self.actions = actions
        self.encoder, in_features = make_encoder(obs_shape)
        self.trunk, width = mlp(in_features, hidden, activation)
        self.mean = nn.Linear(width, actions.size)
        self.log_std = nn.Linear(width, actions.size)

    def params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log std clamped to [LOG_STD_MIN, LOG_STD_MAX]) of the pre-tanh Gaussian."""
        features = self.trunk(self.encoder(obs.float()))
        return self.mean(features), self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.params(obs)[0])

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a = tanh(u), log pi(a | s)) with u reparameterized: gradients flow through a."""
        mean, log_std = self.params(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)

    def explore(self, obs: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        """A sample of the policy drawn from the runner's NumPy RNG (reproducible)."""
        with torch.no_grad():
            mean, log_std = (t.numpy() for t in self.params(obs))
        u = mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(np.float32)
        return np.tanh(u)


class DeterministicActor(ContinuousActor):
    """TD3's / DDPG's actor: a = tanh(f(s))."""

    def __init__(self, obs_shape: int | tuple[int, ...], actions: ActionSpec, hidden: list[int],
                 activation: str = "relu") -> None:
        super().__init__()
        self.actions = actions
        self.encoder, in_features = make_encoder(obs_shape)
        trunk, width = mlp(in_features, hidden, activation)
        self.net = nn.Sequential(trunk, nn.Linear(width, actions.size), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(obs.float()))


class QCritics(nn.Module):
    """`n` independent critics Q_i(s, a), each an MLP over [s, a]; forward -> (n, B)."""

    def __init__(self, obs_shape: int | tuple[int, ...], action_size: int, hidden: list[int],
                 activation: str = "relu", n: int = 2) -> None:
        super().__init__()
        self.encoder, in_features = make_encoder(obs_shape)
        self.critics = nn.ModuleList()
        for _ in range(n):
            trunk, width = mlp(in_features + action_size, hidden, activation)
            self.critics.append(nn.Sequential(trunk, nn.Linear(width, 1)))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs.float()), actions], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.critics])

    def q1(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The first critic alone (B,): what TD3's actor follows, at half the cost."""
        return self.critics[0](torch.cat([self.encoder(obs.float()), actions], dim=-1)).squeeze(-1)


class GaussianNoise:
    """N(0, sigma) per action dim, independent across steps."""

    def __init__(self, sigma: float, num_envs: int, size: int) -> None:
        self.sigma, self.shape = sigma, (num_envs, size)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return (self.sigma * rng.standard_normal(self.shape)).astype(np.float32)

    def reset(self, envs: np.ndarray) -> None:
        """Nothing carries over between steps."""


class OUNoise(GaussianNoise):
    """Ornstein-Uhlenbeck noise per env (DDPG's; SB3's OrnsteinUhlenbeckActionNoise):
    x <- x + theta (0 - x) dt + sigma sqrt(dt) N(0, 1), reset to 0 when an episode ends."""

    def __init__(self, sigma: float, num_envs: int, size: int, theta: float = 0.15,
                 dt: float = 1e-2) -> None:
        super().__init__(sigma, num_envs, size)
        self.theta, self.dt = theta, dt
        self.state = np.zeros(self.shape, np.float32)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        step = -self.theta * self.state * self.dt + self.sigma * math.sqrt(self.dt) * rng.standard_normal(self.shape)
        self.state = (self.state + step).astype(np.float32)
        return self.state.copy()

    def reset(self, envs: np.ndarray) -> None:
        self.state[envs] = 0.0


def make_noise(kind: str, sigma: float, num_envs: int, size: int) -> GaussianNoise | None:
    """The runner's exploration noise: `normal`, `ou` or `none`."""
    if kind == "none" or sigma == 0:
        return None
    return OUNoise(sigma, num_envs, size) if kind == "ou" else GaussianNoise(sigma, num_envs, size)

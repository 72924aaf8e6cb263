"""The policy as evaluation and export see it: the network with the learner's observation
normalization folded in, so a saved, evaluated or exported policy normalizes exactly as
the runners did while training (raydl.rl.normalize.ObsNormalizer.normalize)."""

from __future__ import annotations

import torch
from torch import nn

from raydl.rl.actions import ActionSpec
from raydl.rl.continuous import ContinuousActor
from raydl.rl.distributions import Distribution
from raydl.rl.networks import ActorCritic
from raydl.rl.normalize import EPSILON, RunningMeanStd


class NormalizedPolicy(nn.Module):
    """`net(clip((obs - mean) / sqrt(var + eps)))`, in float64 as the runners compute it;
    with `normalize` false, `net(obs)`. The statistics are buffers: they travel with the
    weights in a state dict (a checkpoint, an eval actor's copy)."""

    def __init__(self, net: ActorCritic, obs_shape: tuple[int, ...], clip: float,
                 normalize: bool) -> None:
        super().__init__()
        self.net, self.clip, self.normalize = net, clip, normalize
        self.register_buffer("obs_mean", torch.zeros(obs_shape, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(obs_shape, dtype=torch.float64))

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return obs
        scaled = (obs.to(torch.float64) - self.obs_mean) / torch.sqrt(self.obs_var + EPSILON)
        return scaled.clamp(-self.clip, self.clip).to(torch.float32)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalized(obs))

    # what evaluation and export ask of an actor-critic network, on raw observations
    @property
    def actions(self) -> ActionSpec:
        return self.net.actions

    def distribution(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> Distribution:
        return self.net.distribution(params, mask)

    def greedy(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.greedy(self.normalized(obs), mask)

    def set_stats(self, stats: RunningMeanStd | None) -> NormalizedPolicy:
        """Normalize with `stats` from now on (None: leave the buffers as they are)."""
        if stats is not None:
            self.obs_mean.copy_(torch.as_tensor(stats.mean, dtype=torch.float64))
            self.obs_var.copy_(torch.as_tensor(stats.var, dtype=torch.float64))
        return self


def is_policy(net: object) -> bool:
    """Whether `net` acts through its own `greedy(obs, mask)` and has `actions` (an
    actor-critic policy, or SAC's / TD3's actor); a Q-network acts by its argmax."""
    return is_actor_critic(net) or isinstance(net, ContinuousActor)


def is_actor_critic(net: object) -> bool:
    """Whether `net` is a stochastic actor-critic policy (greedy: its distribution's
    mode), bare or with its observation normalization."""
    return isinstance(net, (ActorCritic, NormalizedPolicy))

"""Q-networks: an MLP trunk for vector observations, with an optional dueling head."""

from __future__ import annotations

import torch
from torch import nn

from raydl.nn import mlp


class QNetwork(nn.Module):
    """Q(s, .) for discrete actions.

    Dueling (Wang et al. 2016): Q = V(s) + A(s, a) - mean_a A(s, a); subtracting the mean
    makes V and A identifiable.
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden: list[int],
        activation: str = "relu",
        dueling: bool = False,
    ) -> None:
        super().__init__()
        self.trunk, width = mlp(obs_dim, hidden, activation)
        self.dueling = dueling
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.trunk(obs.float())
        adv = self.advantage(features)
        if self.value is None:
            return adv
        return self.value(features) + adv - adv.mean(dim=1, keepdim=True)

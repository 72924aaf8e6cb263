"""Q-networks: an MLP trunk for vector observations, the Nature-DQN CNN for stacked
frames, with an optional dueling head."""

from __future__ import annotations

import torch
from torch import nn

from raydl.nn import mlp


class NatureCNN(nn.Module):
    """The convolutional torso of Mnih et al. 2015: uint8 (C, 84, 84) -> 3136 features.

    Frames stay uint8 until here (4x less memory and transfer than float32); scaling to
    [0, 1] is the first operation of the forward pass."""

    def __init__(self, channels: int, height: int = 84, width: int = 84) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_features = int(self.net(torch.zeros(1, channels, height, width)).shape[1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.float() / 255.0)


class QNetwork(nn.Module):
    """Q(s, .) for discrete actions.

    `obs_shape` an int (or 1-D shape): MLP over the vector. A (C, H, W) shape: Nature CNN,
    then `hidden` fully connected layers (the paper uses [512]).
    Dueling (Wang et al. 2016): Q = V(s) + A(s, a) - mean_a A(s, a); subtracting the mean
    makes V and A identifiable.
    """

    def __init__(
        self,
        obs_shape: int | tuple[int, ...],
        num_actions: int,
        hidden: list[int],
        activation: str = "relu",
        dueling: bool = False,
    ) -> None:
        super().__init__()
        shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        if len(shape) == 3:
            self.encoder: nn.Module = NatureCNN(*shape)
            in_features = self.encoder.out_features  # type: ignore[assignment]
        elif len(shape) == 1:
            self.encoder = nn.Flatten()
            in_features = shape[0]
        else:
            raise ValueError(f"observations of shape {shape}: expected (N,) or (C, H, W)")
        self.trunk, width = mlp(in_features, hidden, activation)
        self.dueling = dueling
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.trunk(self.encoder(obs.float() if obs.dim() == 2 else obs))
        adv = self.advantage(features)
        if self.value is None:
            return adv
        return self.value(features) + adv - adv.mean(dim=1, keepdim=True)

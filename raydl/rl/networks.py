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


def make_encoder(obs_shape: int | tuple[int, ...]) -> tuple[nn.Module, int]:
    """The observation encoder and its output width: Nature CNN for (C, H, W) frame
    stacks, a pass-through for vectors."""
    shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
    if len(shape) == 3:
        cnn = NatureCNN(*shape)
        return cnn, cnn.out_features
    if len(shape) == 1:
        return nn.Flatten(), shape[0]
    raise ValueError(f"observations of shape {shape}: expected (N,) or (C, H, W)")


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
        self.encoder, in_features = make_encoder(obs_shape)
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


class ActorCritic(nn.Module):
    """A trunk with a policy head (action logits) and a value head V(s).

    `shared=True` (A3C's network): one trunk feeds both heads. `shared=False`: the
    encoder is shared (a CNN on pixels, nothing on vectors) but policy and value get
    their own hidden layers, like SB3's MlpPolicy; on small control tasks this keeps the
    value loss from swamping the policy gradient in the shared layers.
    `forward` returns the logits, so greedy evaluation (argmax) treats it like a
    Q-network. Orthogonal initialisation with small policy-head gains (as in OpenAI
    Baselines and SB3) starts from a near-uniform policy, which A2C is sensitive to.
    """

    def __init__(
        self,
        obs_shape: int | tuple[int, ...],
        num_actions: int,
        hidden: list[int],
        activation: str = "tanh",
        shared: bool = True,
    ) -> None:
        super().__init__()
        self.encoder, in_features = make_encoder(obs_shape)
        self.trunk, width = mlp(in_features, hidden, activation)
        self.value_trunk = None if shared else mlp(in_features, hidden, activation)[0]
        self.policy = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.orthogonal_(module.weight, gain=2**0.5)
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.orthogonal_(self.value.weight, gain=1.0)

    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs.float() if obs.dim() == 2 else obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(self.trunk(self._encode(obs)))

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads over one encoder pass: (logits (B, A), values (B,))."""
        encoded = self._encode(obs)
        features = self.trunk(encoded)
        value_features = features if self.value_trunk is None else self.value_trunk(encoded)
        return self.policy(features), self.value(value_features).squeeze(-1)

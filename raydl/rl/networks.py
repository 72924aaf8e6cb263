"""Q-networks: an MLP trunk for vector observations, the Nature-DQN CNN for stacked
frames, with an optional dueling head."""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch import nn

from raydl.nn import mlp
from raydl.rl.actions import ActionSpec, action_spec
from raydl.rl.distributions import Distribution, make_distribution, mode_to_env


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
    """A trunk with a policy head and a value head V(s).

    `actions`: the ActionSpec of the env's action space (raydl.rl.distributions), or an
    int n for Discrete(n). The policy head gives its distribution's parameters (logits,
    or the Gaussian mean; a Gaussian's log std is a learned state-independent vector).
    `shared=True` (A3C's network): one trunk feeds both heads. `shared=False`: the
    encoder is shared (a CNN on pixels, nothing on vectors) but policy and value get
    their own hidden layers, like SB3's MlpPolicy; on small control tasks this keeps the
    value loss from swamping the policy gradient in the shared layers.
    `forward` returns the head's output (for Discrete the logits, so greedy evaluation
    of a Discrete policy is their argmax, as for a Q-network). Orthogonal initialisation
    with small policy-head gains (as in OpenAI Baselines and SB3) starts from a
    near-uniform policy, which A2C is sensitive to.
    """

    def __init__(
        self,
        obs_shape: int | tuple[int, ...],
        actions: int | ActionSpec,
        hidden: list[int],
        activation: str = "tanh",
        shared: bool = True,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.actions = actions if isinstance(actions, ActionSpec) else action_spec(
            spaces.Discrete(actions))
        self.encoder, in_features = make_encoder(obs_shape)
        self.trunk, width = mlp(in_features, hidden, activation)
        self.value_trunk = None if shared else mlp(in_features, hidden, activation)[0]
        self.policy = nn.Linear(width, self.actions.size)
        self.value = nn.Linear(width, 1)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.orthogonal_(module.weight, gain=2**0.5)
                nn.init.zeros_(module.bias)
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.orthogonal_(self.value.weight, gain=1.0)
        # Registered last, and only for Gaussians: Discrete nets keep their parameter
        # order (and flat weight vectors) as before.
        self.log_std = (nn.Parameter(torch.full((self.actions.size,), float(log_std_init)))
                        if self.actions.kind == "gaussian" else None)

    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs.float() if obs.dim() == 2 else obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(self.trunk(self._encode(obs)))

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads over one encoder pass: (head output (B, size), values (B,))."""
        encoded = self._encode(obs)
        features = self.trunk(encoded)
        value_features = features if self.value_trunk is None else self.value_trunk(encoded)
        return self.policy(features), self.value(value_features).squeeze(-1)

    def distribution(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> Distribution:
        """The action distribution of a head output (B, size); `mask` (B, size) bool."""
        return make_distribution(self.actions, params, self.log_std, mask)

    def distribution_and_value(
        self, obs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[Distribution, torch.Tensor]:
        """pi(.|s) (masked actions get probability 0) and V(s) (B,), one encoder pass."""
        params, values = self.logits_and_value(obs)
        return self.distribution(params, mask), values

    def greedy(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy env action of each observation: the distribution's mode (the mean
        action of a Gaussian, clipped or squashed into the bounds)."""
        return mode_to_env(self.actions, self.distribution(self(obs), mask).mode())

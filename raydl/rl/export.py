"""The greedy policy of an RL checkpoint as an exportable module, and the same policy
played from its ONNX file (`raydl eval --onnx`).

The exported graph takes the observation exactly as the env returns it (batched): the
env spec's adaptation (a float32 cast, channels-first, gymnasium's flattening with
one-hot discrete parts) and the network's own scaling (uint8 frames / 255) are inside
it. On Atari that observation is the preprocessed uint8 frame stack the raydl env gives
(DeepMind wrappers: frame skip, 84x84 grey, 4 frames), which stays outside: it keeps
state across steps. Outputs: the Q-values (dqn) or the policy head's output (actor-critic
kinds: logits, or a Gaussian's mean) and the greedy action: the argmax (Discrete), the
per-dimension argmax (MultiDiscrete), p > 0.5 (MultiBinary), the mean action clipped or
squashed into the bounds (Box). Action masks are not inputs of the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from raydl import registry
from raydl.envs.spec import EnvSpec
from raydl.errors import ConfigError
from raydl.export import Exportable, load_onnx, run_onnx
from raydl.rl.distributions import mode_to_env
from raydl.rl.networks import QNetwork
from raydl.rl.continuous import ContinuousActor, to_bounds_torch
from raydl.rl.policy import is_actor_critic, is_policy

INPUT = "obs"
OUTPUT_ACTION = "action"
_RAW_TAKEN = "Box, Discrete, MultiBinary, MultiDiscrete"
_ONNX_TYPES = {"float32": "float", "float64": "double"}  # onnxruntime's names where numpy's differ


class RawObservation(nn.Module):
    """What `EnvSpec.adapt` does to one observation, done on a batch inside the graph."""

    def __init__(self, space: spaces.Space[Any], transform: str) -> None:
        super().__init__()
        self.transform = transform
        self.kind = type(space).__name__
        sizes: list[int] = []
        starts: list[int] = []
        if isinstance(space, spaces.Discrete):
            sizes, starts = [int(space.n)], [int(space.start)]
        elif isinstance(space, spaces.MultiDiscrete):
            sizes = [int(n) for n in np.asarray(space.nvec).ravel()]
            starts = [int(s) for s in np.asarray(space.start).ravel()]
        self.sizes = sizes
        # offsets of each part's one-hot, as gymnasium's flatten concatenates them
        self.register_buffer("starts", torch.tensor(starts, dtype=torch.int64), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.transform == "chw":
            return obs.permute(0, 3, 1, 2)
        if self.transform == "float32":
            return obs.to(torch.float32)
        if self.transform == "none":
            return obs
        if self.sizes:  # Discrete / MultiDiscrete: one-hot per part (comparison, not
            # one_hot, so that every exporter and TorchScript take it)
            parts = obs.reshape(obs.shape[0], -1) - self.starts
            hots = [(parts[:, i:i + 1] == torch.arange(n)).to(torch.float32)
                    for i, n in enumerate(self.sizes)]
            return torch.cat(hots, dim=1)
        return obs.reshape(obs.shape[0], -1).to(torch.float32)  # Box, MultiBinary


class GreedyPolicy(nn.Module):
    """Raw observations -> (action values or logits, greedy action)."""

    def __init__(self, net: nn.Module, space: spaces.Space[Any], transform: str) -> None:
        super().__init__()
        self.adapt = RawObservation(space, transform)
        self.net = net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.net(self.adapt(obs))
        if isinstance(self.net, ContinuousActor):  # values: its action in [-1, 1]
            return values, to_bounds_torch(values, self.net.actions)
        if is_actor_critic(self.net):
            return values, mode_to_env(self.net.actions, self.net.distribution(values).mode())
        return values, values.argmax(dim=1)


def raw_input(space: spaces.Space[Any], env_id: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) of one observation as the env returns it, for the graph's input."""
    if isinstance(space, spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, (spaces.Box, spaces.MultiBinary, spaces.MultiDiscrete)):
        return tuple(space.shape), np.dtype(space.dtype)
    raise ConfigError(f"export: {env_id} has a {type(space).__name__} observation space; an "
                      f"exported policy takes one array: allowed: {_RAW_TAKEN}")


def batch(observations: list[Any], space: spaces.Space[Any], env_id: str) -> np.ndarray:
    """Observations as the env gave them, stacked into the graph's input."""
    _, dtype = raw_input(space, env_id)
    return np.stack([np.asarray(o, dtype=dtype) for o in observations])


def exportable(directory: Path, cfg: Any) -> Exportable:
    """The greedy policy of an RL checkpoint, raw observations in (registry entry point)."""
    env = registry.check(cfg)
    space = env.policy_observation_space
    shape, dtype = raw_input(space, env.env_id)
    net = registry.algorithm_class(cfg.kind).load_policy(directory, cfg, env)
    policy = GreedyPolicy(net, space, env.transform).eval()
    rng = np.random.default_rng(0)
    example = batch([space.sample() for _ in range(3)], space, env.env_id)
    if np.issubdtype(dtype, np.floating):  # unbounded Box samples can be huge: keep it small
        example = rng.standard_normal((3, *shape)).astype(dtype)
    values = "q_values" if isinstance(net, QNetwork) else "logits"
    if is_policy(net) and net.actions.kind == "gaussian":
        values = "mean"
    return Exportable(policy, (torch.from_numpy(example),), (INPUT,), (values, OUTPUT_ACTION),
                      what=f"{env.env_id} greedy policy")


def onnx_policy(path: Path, env: EnvSpec) -> Callable[[np.ndarray], Any]:
    """The greedy action of an exported policy for one raw observation, by onnxruntime;
    a one-line error when the file does not take this env's observations."""
    session = load_onnx(path)
    inputs = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    shape, dtype = raw_input(env.policy_observation_space, env.env_id)
    if len(inputs) != 1 or OUTPUT_ACTION not in names:
        raise ConfigError(f"{path}: not a raydl policy (expects one input and an "
                          f"'{OUTPUT_ACTION}' output, has inputs {[i.name for i in inputs]}, "
                          f"outputs {names})")
    fixed = tuple(inputs[0].shape[1:])  # after the batch axis; ints, or names if dynamic
    wanted = f"tensor({_ONNX_TYPES.get(dtype.name, dtype.name)})"
    if len(fixed) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(fixed, shape)) \
            or inputs[0].type != wanted:
        raise ConfigError(f"{path}: takes {inputs[0].type} observations of shape {fixed}; "
                          f"{env.env_id} gives {wanted} of shape {shape}")
    action_index = names.index(OUTPUT_ACTION)
    name = inputs[0].name

    def act(obs: np.ndarray) -> Any:
        feed = np.asarray(obs, dtype=dtype)[None]
        action = np.asarray(run_onnx(session, [name], [feed])[action_index][0])
        return int(action) if action.ndim == 0 else action

    return act


def raw_env_spec(env: EnvSpec) -> EnvSpec:
    """`env` as the env itself gives observations: an exported policy adapts them."""
    return dataclasses.replace(env, transform="none")

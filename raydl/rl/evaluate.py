"""Greedy evaluation of a trained policy: whole episodes, raw returns, optional GIF / MP4."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl import registry
from raydl.envs.atari import is_atari
from raydl.envs.spec import EnvSpec
from raydl.errors import ConfigError
from raydl.rl.actions import ActionSpec, action_spec
from raydl.rl.policy import is_policy
from raydl.video import write_video

# Eval seeds live far from training seeds so evaluation never replays training episodes.
EVAL_SEED_OFFSET = 1_000_000_007


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    gif: Path | None = None
    video: Path | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))


Policy = torch.nn.Module | Callable[[np.ndarray], Any]  # a network, or obs -> greedy action
Act = Callable[[np.ndarray, "np.ndarray | None"], Any]  # (obs, action mask) -> env action


def greedy_action(net: Policy, obs: np.ndarray, mask: np.ndarray | None = None) -> Any:
    """`net`'s greedy env action for one observation: the mode of an actor-critic's
    distribution (masked actions excluded; a Gaussian's mean, clipped or squashed into
    the bounds), the argmax of a Q-network, or what an exported policy answers (its graph
    has no mask input)."""
    if not isinstance(net, torch.nn.Module):  # an exported policy (raydl eval --onnx)
        return net(obs)
    with torch.no_grad():
        batch = torch.as_tensor(obs)[None]
        if is_policy(net):
            action = net.greedy(batch, None if mask is None else torch.as_tensor(mask)[None])[0]
            return int(action) if action.dim() == 0 else action.numpy()
        return int(net(batch).argmax(dim=1).item())


def epsilon_greedy(
    net: Policy, actions: ActionSpec, epsilon: float, rng: np.random.Generator
) -> Act:
    """(obs, mask) -> `net`'s greedy action, or with probability `epsilon` a random one
    of the action space drawn from `rng` (never a masked one)."""
    def act(obs: np.ndarray, mask: np.ndarray | None = None) -> Any:
        if epsilon > 0 and rng.random() < epsilon:
            return actions.random(rng, mask)
        return greedy_action(net, obs, mask)

    return act


def eval_epsilon(env_id: str, epsilon: float | None) -> float:
    """The random-action rate of an evaluation: as asked, else 0.05 on Atari (as the DQN
    papers evaluate) and 0 elsewhere."""
    if epsilon is not None:
        return epsilon
    return 0.05 if is_atari(env_id) else 0.0


def play(
    spec: EnvSpec, act: Callable[[np.ndarray, dict[str, Any]], Any], episodes: int, seed: int,
    record_frames: int = 0,
) -> tuple[list[float], list[int], list[np.ndarray]]:
    """Play `episodes` whole episodes (whole games on Atari, raw scores) on the eval seeds
    of `seed`: (returns, lengths, up to `record_frames` rendered frames of the first)."""
    env = spec.make(render_mode="rgb_array" if record_frames else None)
    returns, lengths = [], []
    frames: list[np.ndarray] = []
    try:
        for episode in range(episodes):
            obs, info = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            record = episode == 0 and record_frames > 0
            if record:
                frames.append(env.render())  # type: ignore[arg-type]
            total, steps, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(act(obs, info))
                total += float(reward)
                steps += 1
                done = terminated or truncated
                if record and len(frames) < record_frames:
                    frames.append(env.render())  # type: ignore[arg-type]
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return returns, lengths, frames


def play_greedy(
    spec: EnvSpec, net: Policy, episodes: int, seed: int, epsilon: float,
    record_frames: int = 0,
) -> tuple[list[float], list[int], list[np.ndarray]]:
    """`play` with `net`'s greedy actions, a random one with probability `epsilon` (drawn
    from the eval seeds' own RNG: the same evaluation gives the same returns anywhere)."""
    rng = np.random.default_rng(seed + EVAL_SEED_OFFSET)
    actions = net.actions if is_policy(net) else action_spec(spec.action_space)
    act = epsilon_greedy(net, actions, epsilon, rng)
    mask_of = partial(_mask_of, actions)
    return play(spec, lambda obs, info: act(obs, mask_of(info)), episodes, seed, record_frames)


def _mask_of(actions: ActionSpec, info: dict[str, Any]) -> np.ndarray | None:
    """One env's action mask from its info, flat (size,) bool, or None."""
    flat = actions.flat_mask(info.get("action_mask"), 1)
    return None if flat is None else flat[0]


def evaluate(
    spec: EnvSpec,
    net: Policy,
    episodes: int,
    *,
    seed: int = 0,
    epsilon: float = 0.0,
    gif: Path | None = None,
    video: Path | None = None,
    fps: int = 30,
    max_frames: int = 2_000,
) -> EvalResult:
    """Play `episodes` episodes with `net`'s greedy actions (a random one with probability
    `epsilon`); the first one is recorded to `gif` and / or `video` (MP4) if given."""
    recording = bool(gif or video)
    returns, lengths, frames = play_greedy(spec, net, episodes, seed, epsilon,
                                           max_frames if recording else 0)
    for path in (gif, video):
        if path is not None and frames:
            write_video(frames, path, fps)
    return EvalResult(returns, lengths, gif if frames else None, video if frames else None)


def eval_command(cfg: Any, directories: list[Path], options: registry.EvalOptions) -> None:
    """`raydl eval` of an RL checkpoint: play episodes with its greedy policy."""
    if len(directories) > 1:
        raise ConfigError("eval: RL checkpoints are evaluated one at a time")
    epsilon = eval_epsilon(cfg.env, options.epsilon)
    spec = registry.check(cfg)
    net: Policy
    if options.onnx is not None:  # the exported graph adapts the env's own observations
        from raydl.rl.export import onnx_policy, raw_env_spec

        net, spec = onnx_policy(options.onnx, spec), raw_env_spec(spec)
        print(f"raydl eval: the greedy policy of {options.onnx}, by onnxruntime")
    else:
        net = registry.algorithm_class(cfg.kind).load_policy(directories[0], cfg, spec)
    result = evaluate(spec, net, options.episodes, seed=options.seed, epsilon=epsilon,
                      gif=options.gif, video=options.video)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i + 1}: return {ret:.1f}, length {length}")
    print(
        f"raydl eval: {cfg.env}, {len(result.returns)} episodes, return mean "
        f"{result.mean:.1f} (min {min(result.returns):.1f}, max {max(result.returns):.1f})"
        + (f"; gif in {result.gif}" if result.gif else "")
        + (f"; video in {result.video}" if result.video else "")
    )

"""Greedy evaluation of a trained policy: whole episodes, raw returns, optional GIF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydl import registry
from raydl.envs.atari import is_atari
from raydl.envs.spec import EnvSpec
from raydl.errors import ConfigError

# Eval seeds live far from training seeds so evaluation never replays training episodes.
EVAL_SEED_OFFSET = 1_000_000_007


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    gif: Path | None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))


Policy = torch.nn.Module | Callable[[np.ndarray], int]  # a network, or obs -> greedy action


def epsilon_greedy(
    net: Policy, num_actions: int, epsilon: float, rng: np.random.Generator
) -> Callable[[np.ndarray], int]:
    def act(obs: np.ndarray) -> int:
        if epsilon > 0 and rng.random() < epsilon:
            return int(rng.integers(num_actions))
        if not isinstance(net, torch.nn.Module):  # an exported policy (raydl eval --onnx)
            return net(obs)
        with torch.no_grad():
            return int(net(torch.as_tensor(obs)[None]).argmax(dim=1).item())

    return act


def evaluate(
    spec: EnvSpec,
    net: Policy,
    episodes: int,
    *,
    seed: int = 0,
    epsilon: float = 0.0,
    gif: Path | None = None,
    gif_fps: int = 30,
    max_gif_frames: int = 2_000,
) -> EvalResult:
    """Play `episodes` whole episodes (whole games on Atari, raw scores); the first one
    is recorded to `gif` if given."""
    env = spec.make(render_mode="rgb_array" if gif else None)
    rng = np.random.default_rng(seed + EVAL_SEED_OFFSET)
    act = epsilon_greedy(net, spec.num_actions, epsilon, rng)
    returns, lengths = [], []
    frames: list[np.ndarray] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        record = gif is not None and episode == 0
        total, steps, done = 0.0, 0, False
        while not done:
            if record and len(frames) < max_gif_frames:
                frames.append(env.render())  # type: ignore[arg-type]
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
    env.close()
    if gif is not None and frames:
        write_gif(frames, gif, gif_fps)
    return EvalResult(returns, lengths, gif if frames else None)


def write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """An animated GIF, written to a temporary name first."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    tmp = path.with_name(path.name + ".tmp")
    images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:],
        duration=max(1, int(1000 / fps)), loop=0,
    )
    tmp.replace(path)


def eval_command(cfg: Any, directories: list[Path], options: registry.EvalOptions) -> None:
    """`raydl eval` of an RL checkpoint: play episodes with its greedy policy."""
    if len(directories) > 1:
        raise ConfigError("eval: RL checkpoints are evaluated one at a time")
    epsilon = options.epsilon
    if epsilon is None:  # the DQN papers evaluate Atari with 5% random actions
        epsilon = 0.05 if is_atari(cfg.env) else 0.0
    spec = registry.check(cfg)
    net: Policy
    if options.onnx is not None:  # the exported graph adapts the env's own observations
        from raydl.rl.export import onnx_policy, raw_env_spec

        net, spec = onnx_policy(options.onnx, spec), raw_env_spec(spec)
        print(f"raydl eval: the greedy policy of {options.onnx}, by onnxruntime")
    else:
        net = registry.algorithm_class(cfg.kind).load_policy(directories[0], cfg, spec)
    result = evaluate(spec, net, options.episodes, seed=options.seed, epsilon=epsilon,
                      gif=options.gif)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i + 1}: return {ret:.1f}, length {length}")
    print(
        f"raydl eval: {cfg.env}, {len(result.returns)} episodes, return mean "
        f"{result.mean:.1f} (min {min(result.returns):.1f}, max {max(result.returns):.1f})"
        + (f"; gif in {result.gif}" if result.gif else "")
    )

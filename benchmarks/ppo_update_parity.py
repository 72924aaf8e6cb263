"""raydl's PPO update against SB3's on one fixed batch: the same rule, or not?

`benchmarks/ppo.py --task cartpole` leaves raydl needing more env steps to solve than SB3
on some seeds. The two sides' env seeds and action samplers differ, so a handful of seeds
cannot tell chance from a difference in the learning rule. This script takes the chance
out: it builds raydl's `ppo_cartpole` learner and SB3's PPO with rl-zoo's CartPole
settings (one 256-sample minibatch, 20 epochs, clip 0.2, Adam 1e-3 eps 1e-5, grad norm
0.5, vf_coef 0.5, no entropy bonus), copies raydl's initial weights into SB3's policy,
gives both one identical batch (observations, actions, old log-probs and values,
advantages, returns) and runs one update on each: raydl's `PPO._update`, SB3's
`PPO.train`. It prints the largest weight difference per layer after the 20 epochs and
both sides' loss statistics. It also compares the advantages of one rollout with
terminations and time-limit truncations: raydl's `gae` (a truncation bootstraps from the
value of the final observation) against SB3's `compute_returns_and_advantage` (which adds
gamma V(final) to the reward of a truncated step, as its `collect_rollouts` does). Equal rules leave differences at float rounding (~1e-7);
a different rule (advantage normalization, clipping, loss weights, gradient clipping,
optimizer) moves the weights apart by orders of magnitude more.

Command (needs the bench extra: pip install stable-baselines3==2.9.2):

    python benchmarks/ppo_update_parity.py
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

N = 256  # rl-zoo's CartPole batch: 8 envs x 32 steps, one minibatch


def layer_pairs(net: Any, policy: Any) -> list[tuple[str, torch.nn.Linear, torch.nn.Linear]]:
    """(name, raydl layer, SB3 layer) for every Linear of the two separate 64x64 MLPs."""
    ext = policy.mlp_extractor
    return [("pi hidden 1", net.trunk[0], ext.policy_net[0]), ("pi hidden 2", net.trunk[2], ext.policy_net[2]),
            ("vf hidden 1", net.value_trunk[0], ext.value_net[0]),
            ("vf hidden 2", net.value_trunk[2], ext.value_net[2]),
            ("pi head", net.policy, policy.action_net), ("vf head", net.value, policy.value_net)]


def fixed_batch(net: Any, seed: int) -> dict[str, torch.Tensor]:
    """CartPole-like observations, actions drawn uniformly, the old log-probs and values of
    `net` (so the first ratio is 1), standard normal advantages, returns = A + V."""
    rng = np.random.default_rng(seed)
    obs = torch.tensor(rng.normal(size=(N, 4)) * [1.0, 1.0, 0.1, 1.0], dtype=torch.float32)
    action = torch.tensor(rng.integers(0, 2, N))
    with torch.no_grad():
        dist, values = net.distribution_and_value(obs)
        log_prob = dist.log_prob(action)
    advantage = torch.tensor(rng.normal(size=N), dtype=torch.float32)
    return {"obs": obs, "action": action, "log_prob": log_prob, "value": values,
            "advantage": advantage, "return": advantage + values}


def sb3_update(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """SB3's `train()` on `batch`, written into its rollout buffer as one env x N steps."""
    from stable_baselines3.common.logger import configure

    buf = model.rollout_buffer
    buf.buffer_size, buf.n_envs = N, 1
    buf.reset()
    buf.observations[:] = batch["obs"].numpy()[:, None, :]
    buf.actions[:] = batch["action"].numpy()[:, None, None]
    for key, column in (("value", "values"), ("log_prob", "log_probs"),
                        ("advantage", "advantages"), ("return", "returns")):
        getattr(buf, column)[:] = batch[key].numpy()[:, None]
    buf.full = True
    model._current_progress_remaining = 1.0  # lr 1e-3, clip 0.2: the schedules' start
    model.set_logger(configure(None, []))
    model.train()
    return {k.removeprefix("train/"): float(v) for k, v in model.logger.name_to_value.items()}


def gae_difference(seed: int, steps: int = 32, envs: int = 8) -> float:
    """Largest |A_raydl - A_sb3| over one random rollout with terminations and truncations."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import RolloutBuffer

    from raydl.rl.losses import gae

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(steps + 1, envs)).astype(np.float32)  # V(s_0..s_T)
    final_values = rng.normal(size=(steps, envs)).astype(np.float32)  # V(final obs) if truncated
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    terminated = rng.random((steps, envs)) < 0.05
    truncated = ~terminated & (rng.random((steps, envs)) < 0.05)
    ended = terminated | truncated
    next_values = np.where(truncated, final_values, values[1:])
    ours, _ = gae(*(torch.tensor(a, dtype=torch.float32) for a in (
        rewards, values[:-1], next_values, terminated, ended)), 0.98, 0.8)
    buf = RolloutBuffer(steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), "cpu",
                        gae_lambda=0.8, gamma=0.98, n_envs=envs)
    starts = np.ones(envs, np.float32)
    for t in range(steps):  # SB3's collect_rollouts: a timeout's reward gets gamma V(final)
        reward = rewards[t] + 0.98 * final_values[t] * truncated[t]
        buf.add(np.zeros((envs, 1)), np.zeros((envs, 1)), reward, starts,
                torch.tensor(values[t]), torch.zeros(envs))
        starts = ended[t].astype(np.float32)
    buf.compute_returns_and_advantage(torch.tensor(values[-1]), starts)
    return float(np.abs(ours.numpy() - buf.advantages).max())


def main() -> None:
    from stable_baselines3 import PPO as SB3PPO

    from raydl.config import load_experiment
    from raydl.rl.ppo import PPO

    torch.manual_seed(0)
    ours = PPO(load_experiment("ppo_cartpole"))
    theirs = SB3PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=N, gae_lambda=0.8,
                    gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=1e-3, clip_range=0.2,
                    seed=0, device="cpu")
    pairs = layer_pairs(ours.net, theirs.policy)
    with torch.no_grad():
        for _, mine, sb3 in pairs:
            sb3.weight.copy_(mine.weight)
            sb3.bias.copy_(mine.bias)
    start = {name: mine.weight.detach().clone() for name, mine, _ in pairs}
    batch = fixed_batch(ours.net, seed=1)
    stats: dict[str, list[float]] = defaultdict(list)
    ours._update(batch, stats)
    sb3_stats = sb3_update(theirs, batch)
    ours.close()
    print(f"{'layer':<13}{'max |W_raydl - W_sb3|':>23}{'max |W moved|':>15}")
    for name, mine, sb3 in pairs:
        with torch.no_grad():
            diff = float((mine.weight - sb3.weight).abs().max())
            moved = float((mine.weight - start[name]).abs().max())
        print(f"{name:<13}{diff:>23.2e}{moved:>15.2e}")
    print("\nafter 20 epochs      raydl        SB3")
    for ours_key, sb3_key in (("pg_loss", "policy_gradient_loss"), ("value_loss", "value_loss"),
                              ("clip_fraction", "clip_fraction"), ("entropy", "entropy_loss")):
        mine_v = float(np.mean(stats[ours_key]))
        sb3_v = -sb3_stats[sb3_key] if sb3_key == "entropy_loss" else sb3_stats[sb3_key]
        print(f"{ours_key:<16}{mine_v:>11.6f}{sb3_v:>11.6f}")
    print(f"\nGAE, 32 steps x 8 envs with terminations and truncations: "
          f"max |A_raydl - A_sb3| = {gae_difference(seed=2):.2e}")


if __name__ == "__main__":
    main()

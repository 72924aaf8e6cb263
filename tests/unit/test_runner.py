import functools

import numpy as np
import torch

from raydl.envs.spec import probe_env
from raydl.rl.networks import QNetwork
from raydl.rl.runners.env_runner import EnvRunner
from raydl.seeding import env_seeds, runner_seed

POLICY = functools.partial(QNetwork, 4, 2, [16])


def _runner(index: int, seed: int = 0, n_step: int = 1) -> EnvRunner:
    return EnvRunner(probe_env("CartPole-v1"), 3, POLICY, seed=seed, runner_index=index, n_step=n_step)


def test_sample_shapes_counts_and_episodes() -> None:
    runner = _runner(0)
    out = runner.sample(200, epsilon=1.0)
    t = out.transitions
    assert out.env_steps == 600
    assert t["obs"].shape == (600, 4) and t["next_obs"].shape == (600, 4)
    assert t["obs"].dtype == np.float32 and t["action"].dtype == np.int64
    assert set(np.unique(t["action"])) == {0, 1}
    # random play ends CartPole episodes within ~20 steps: many complete episodes
    assert len(out.episodes) > 10
    assert t["terminated"].sum() == len(out.episodes)  # no truncation at 500 here
    ret, length = out.episodes[0]
    assert ret == length  # CartPole pays 1 per step


def test_terminal_transitions_carry_final_obs_not_reset_obs() -> None:
    runner = _runner(0)
    t = runner.sample(100, epsilon=1.0).transitions
    ends = t["terminated"] == 1
    # CartPole terminates when the pole angle leaves +-0.2095 rad or x leaves +-2.4:
    # a reset obs is near 0 on every coordinate, the real final obs is not.
    final = t["next_obs"][ends]
    assert np.all((np.abs(final[:, 2]) > 0.2) | (np.abs(final[:, 0]) > 2.4))


def test_seeds_are_distinct_per_runner_and_reproducible() -> None:
    a = _runner(0).sample(20, epsilon=1.0).transitions
    b = _runner(0).sample(20, epsilon=1.0).transitions
    c = _runner(1).sample(20, epsilon=1.0).transitions
    np.testing.assert_array_equal(a["obs"], b["obs"])
    np.testing.assert_array_equal(a["action"], b["action"])
    assert not np.array_equal(a["obs"], c["obs"])
    assert runner_seed(0, 0) != runner_seed(0, 1) != runner_seed(0, -1)
    seeds = env_seeds(0, 0, 4) + env_seeds(0, 1, 4) + env_seeds(0, 0, 4, generation=1)
    assert len(set(seeds)) == 12


def test_greedy_actions_follow_the_network() -> None:
    runner = _runner(0)
    net = runner.policy
    for p in net.parameters():
        p.data.zero_()
    net.advantage.bias.data = torch.tensor([0.0, 1.0])
    out = runner.sample(10, epsilon=0.0)
    assert np.all(out.transitions["action"] == 1)

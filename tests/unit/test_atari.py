"""Real ALE environments (ale-py ships the ROMs) with DeepMind preprocessing."""

import numpy as np

from raydl.envs.atari import clip_reward, make_atari
from raydl.rl.replay import FrameReplayBuffer


def test_pong_observations_are_uint8_stacks() -> None:
    env = make_atari("ALE/Pong-v5", sticky_actions=0.0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert info["life_lost"] is False
    assert env.action_space.n == 6  # minimal action set
    env.close()


def test_breakout_fires_on_reset_and_signals_life_loss() -> None:
    env = make_atari("ALE/Breakout-v5", sticky_actions=0.0, noop_max=0)
    env.reset(seed=1)
    ale = env.unwrapped.ale
    assert ale.lives() == 5
    lost, steps, done = 0, 0, False
    while not done and steps < 5_000:
        _, _, terminated, truncated, info = env.step(0)  # NOOP: the ball is missed
        lost += bool(info["life_lost"])
        done = terminated or truncated
        steps += 1
    # each lost life relaunches the ball (FIRE), so NOOP play loses all 5 and ends
    assert done and lost >= 4
    env.close()


def test_frame_buffer_rebuilds_the_envs_own_stacks() -> None:
    env = make_atari("ALE/Pong-v5", sticky_actions=0.0)
    buf = FrameReplayBuffer(1_000, (84, 84), stack=4, seed=0)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    buf.start_episode(0, obs[-1])
    seen = [obs]
    for _ in range(300):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(6)))
        buf.add_step(0, 0, float(reward), obs[-1], bool(terminated), bool(terminated or truncated))
        seen.append(obs)
    stacks = buf._stacks(np.arange(len(seen)))
    for g, expected in enumerate(seen):
        np.testing.assert_array_equal(stacks[g], expected)
    env.close()


def test_reward_clipping_keeps_the_sign() -> None:
    assert clip_reward(np.array([-3.0, 0.0, 0.5, 7.0])).tolist() == [-1.0, 0.0, 1.0, 1.0]

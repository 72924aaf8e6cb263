import numpy as np
import pytest

from raydl.rl.replay import NStepAccumulator, PrioritizedReplayBuffer, ReplayBuffer
from raydl.rl.replay.prioritized import SumTree


def _batch(start: int, n: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    return {
        "obs": np.stack([ids, ids], 1).astype(np.float32),
        "next_obs": np.stack([ids + 1, ids + 1], 1).astype(np.float32),
        "action": ids % 2,
        "reward": ids.astype(np.float32),
        "terminated": np.zeros(n, np.float32),
        "discount": np.full(n, 0.99, np.float32),
    }


def test_ring_buffer_wraps_around_and_keeps_newest() -> None:
    buf = ReplayBuffer(5, (2,), np.float32, seed=0)
    buf.add(_batch(0, 3))
    assert len(buf) == 3 and buf.pos == 3
    buf.add(_batch(3, 4))  # 7 transitions into 5 slots: 0 and 1 are overwritten
    assert len(buf) == 5 and buf.pos == 2
    assert sorted(buf.data["reward"].tolist()) == [2, 3, 4, 5, 6]
    assert buf.data["reward"][0] == 5 and buf.data["reward"][1] == 6


def test_uniform_sample_returns_consistent_transitions() -> None:
    buf = ReplayBuffer(100, (2,), np.float32, seed=1)
    buf.add(_batch(0, 10))
    s = buf.sample(256)
    assert s["obs"].shape == (256, 2)
    assert np.all(s["next_obs"][:, 0] == s["obs"][:, 0] + 1)  # rows stay aligned
    assert np.all(s["reward"] == s["obs"][:, 0])
    assert set(s["reward"].astype(int)) == set(range(10))  # all stored items reachable
    assert np.all(s["weights"] == 1)


def test_buffer_state_round_trip_is_exact() -> None:
    buf = ReplayBuffer(8, (2,), np.float32, seed=2)
    buf.add(_batch(0, 11))
    other = ReplayBuffer(8, (2,), np.float32, seed=3)
    other.load_state_dict(buf.state_dict())
    assert (other.pos, other.size) == (buf.pos, buf.size)
    for key in buf.data:
        np.testing.assert_array_equal(other.data[key], buf.data[key])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(9, (2,), np.float32).load_state_dict(buf.state_dict())


def test_sum_tree_sums_and_finds() -> None:
    tree = SumTree(5)
    tree.update(np.array([0, 1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 0.0, 4.0]))
    assert tree.total == 10.0
    # prefix sums: [0,1) -> 0, [1,3) -> 1, [3,6) -> 2, [6,10) -> 4 (3 has zero mass)
    found = tree.find(np.array([0.5, 1.5, 2.99, 3.5, 6.5, 9.99]))
    assert found.tolist() == [0, 1, 1, 2, 4, 4]
    tree.update(np.array([4, 4]), np.array([1.0, 1.0]))  # duplicates are fine
    assert tree.total == 7.0


def test_prioritized_sampling_follows_priorities() -> None:
    buf = PrioritizedReplayBuffer(4, (2,), np.float32, seed=0, alpha=1.0)
    buf.add(_batch(0, 4))
    buf.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 7.0]) - buf.eps)
    counts = np.zeros(4)
    for _ in range(200):
        s = buf.sample(10, beta=1.0)
        np.add.at(counts, s["indices"], 1)
    share = counts / counts.sum()
    assert abs(share[3] - 0.7) < 0.05 and abs(share[0] - 0.1) < 0.05
    s = buf.sample(64, beta=1.0)
    # weight ~ 1/P normalised by the max: rare items weigh 1, the frequent one 1/7
    assert np.allclose(s["weights"][s["indices"] == 3], 1 / 7, rtol=1e-4)
    assert np.allclose(s["weights"][s["indices"] != 3], 1.0, rtol=1e-4)


def test_prioritized_new_items_get_max_priority_and_state_round_trips() -> None:
    buf = PrioritizedReplayBuffer(8, (2,), np.float32, seed=0, alpha=0.5)
    buf.add(_batch(0, 2))
    buf.update_priorities(np.array([0, 1]), np.array([3.0, 0.5]))
    buf.add(_batch(2, 1))
    assert np.isclose(buf.tree.priorities(np.array([2]))[0], (3.0 + buf.eps) ** 0.5)
    other = PrioritizedReplayBuffer(8, (2,), np.float32, seed=0, alpha=0.5)
    other.load_state_dict(buf.state_dict())
    assert np.isclose(other.tree.total, buf.tree.total)
    assert other.max_priority == buf.max_priority


def _push(acc: NStepAccumulator, t: int, reward: float, term: bool = False,
          trunc: bool = False) -> dict[str, np.ndarray]:
    obs = np.array([[float(t)]], np.float32)
    return acc.push(obs, np.array([t % 2]), np.array([reward]), obs + 1,
                    np.array([term]), np.array([trunc]))


def test_nstep_folds_rewards_and_flushes_at_termination() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_envs=1)
    assert len(_push(acc, 0, 1.0)["action"]) == 0
    assert len(_push(acc, 1, 2.0)["action"]) == 0
    out = _push(acc, 2, 4.0)  # window full: emits the transition that started at t=0
    assert out["obs"][:, 0].tolist() == [0.0]
    assert out["reward"].tolist() == [1.0 + 0.5 * 2.0 + 0.25 * 4.0]
    assert out["next_obs"][:, 0].tolist() == [3.0]  # obs after step t=2
    assert out["discount"].tolist() == [0.125] and out["terminated"].tolist() == [0.0]
    out = _push(acc, 3, 8.0, term=True)  # episode ends: starts 1, 2, 3 are flushed
    assert out["obs"][:, 0].tolist() == [1.0, 2.0, 3.0]
    assert out["reward"].tolist() == [2.0 + 0.5 * 4.0 + 0.25 * 8.0, 4.0 + 0.5 * 8.0, 8.0]
    assert out["discount"].tolist() == [0.125, 0.25, 0.5]
    assert out["terminated"].tolist() == [1.0, 1.0, 1.0]
    assert np.all(out["next_obs"][:, 0] == 4.0)
    # the next episode starts with an empty window: nothing spans the boundary
    assert len(_push(acc, 10, 1.0)["action"]) == 0


def test_nstep_truncation_bootstraps() -> None:
    acc = NStepAccumulator(n=2, gamma=0.9, num_envs=1)
    _push(acc, 0, 1.0)
    out = _push(acc, 1, 1.0, trunc=True)
    assert out["terminated"].tolist() == [0.0, 0.0]  # time limit is not a terminal state
    assert np.allclose(out["reward"], [1.9, 1.0])
    assert np.allclose(out["discount"], [0.81, 0.9])


def test_nstep_one_is_passthrough() -> None:
    acc = NStepAccumulator(n=1, gamma=0.9, num_envs=2)
    obs = np.zeros((2, 3), np.float32)
    out = acc.push(obs, np.array([0, 1]), np.array([1.0, 2.0]), obs, np.array([True, False]),
                   np.array([False, False]))
    assert out["discount"].tolist() == pytest.approx([0.9, 0.9])
    assert out["terminated"].tolist() == [1.0, 0.0]

import numpy as np
import pytest

from raydl.rl.replay import FrameReplayBuffer


def _frame(value: int) -> np.ndarray:
    return np.full((2, 2), value % 256, np.uint8)


def _ids(stacks: np.ndarray) -> list[list[int]]:
    return stacks[:, :, 0, 0].astype(int).tolist()


def _episode(buf: FrameReplayBuffer, stream: int, first: int, rewards: list[float],
             terminal: bool) -> None:
    """Frames first, first+1, ...; the last step ends the episode."""
    buf.start_episode(stream, _frame(first))
    for k, r in enumerate(rewards):
        last = k == len(rewards) - 1
        buf.add_step(stream, k % 3, r, _frame(first + k + 1), terminated=last and terminal,
                     ended=last)


def test_stacks_repeat_the_first_frame_and_next_obs_follows() -> None:
    buf = FrameReplayBuffer(64, (2, 2), stack=4, seed=0, n_step=1, gamma=0.5)
    _episode(buf, 0, 10, [1.0] * 5, terminal=True)  # frames 10..15
    g = np.arange(0, 5)
    assert _ids(buf._stacks(g)) == [
        [10, 10, 10, 10], [10, 10, 10, 11], [10, 10, 11, 12], [10, 11, 12, 13], [11, 12, 13, 14],
    ]
    s = buf.sample(256)
    first = s["obs"][:, -1, 0, 0].astype(int)
    assert np.all(s["next_obs"][:, -1, 0, 0] == first + 1)
    assert np.all(s["terminated"][first == 14] == 1) and np.all(s["terminated"][first < 14] == 0)
    assert np.all(s["discount"] == 0.5) and np.all(s["reward"] == 1.0)
    assert len(buf) == 5  # the final frame (15) is not a transition start


def test_nstep_folding_stops_at_episode_end() -> None:
    buf = FrameReplayBuffer(64, (2, 2), stack=2, seed=1, n_step=3, gamma=0.5)
    _episode(buf, 0, 0, [1.0, 2.0, 4.0], terminal=True)  # frames 0..3
    s = buf.sample(200)
    by_start = {int(o[-1, 0, 0]): (r, d, t, int(n[-1, 0, 0]))
                for o, r, d, t, n in zip(s["obs"], s["reward"], s["discount"],
                                         s["terminated"], s["next_obs"])}
    assert by_start[0] == (1.0 + 0.5 * 2.0 + 0.25 * 4.0, 0.125, 1.0, 3)
    assert by_start[1] == (2.0 + 0.5 * 4.0, 0.25, 1.0, 3)
    assert by_start[2] == (4.0, 0.5, 1.0, 3)


def test_truncated_end_bootstraps_and_open_window_stops_at_newest_frame() -> None:
    buf = FrameReplayBuffer(64, (2, 2), stack=2, seed=2, n_step=3, gamma=0.5)
    _episode(buf, 0, 0, [1.0, 1.0], terminal=False)  # truncated after 2 steps: frames 0..2
    buf.start_episode(1, _frame(50))
    buf.add_step(1, 0, 1.0, _frame(51), terminated=False, ended=False)  # 51 is newest
    s = buf.sample(300)
    start = s["obs"][:, -1, 0, 0].astype(int)
    assert np.all(s["terminated"] == 0)
    assert np.allclose(s["discount"][start == 0], 0.25)  # 2 steps, then the episode ended
    assert np.allclose(s["discount"][start == 50], 0.5)  # 1 step, then the newest frame
    assert np.all(s["next_obs"][start == 50][:, -1, 0, 0] == 51)
    assert set(start.tolist()) == {0, 1, 50}


def test_interleaved_streams_keep_their_own_stacks() -> None:
    buf = FrameReplayBuffer(64, (2, 2), stack=3, seed=3)
    buf.start_episode("a", _frame(100))
    buf.start_episode("b", _frame(200))
    for k in range(1, 4):
        buf.add_step("a", 0, 0.0, _frame(100 + k), False, False)
        buf.add_step("b", 1, 0.0, _frame(200 + k), False, False)
    s = buf.sample(300)
    for obs, nxt in zip(_ids(s["obs"]), _ids(s["next_obs"])):
        assert len({v // 100 for v in obs + nxt}) == 1  # never mixes streams
        assert nxt[-1] == obs[-1] + 1


def test_overwritten_history_is_never_sampled() -> None:
    buf = FrameReplayBuffer(8, (2, 2), stack=4, seed=4)
    buf.start_episode(0, _frame(0))
    for k in range(1, 20):
        buf.add_step(0, 0, 1.0, _frame(k), False, False)
    # ring holds frames 12..19; a start needs its 3 predecessors: only 15..18 qualify
    s = buf.sample(500)
    starts = set(s["obs"][:, -1, 0, 0].astype(int).tolist())
    assert starts == {15, 16, 17, 18}
    for row in _ids(s["obs"]):
        assert row == list(range(row[-1] - 3, row[-1] + 1))


def test_bytes_per_transition_of_an_atari_sized_buffer() -> None:
    capacity = 10_000
    buf = FrameReplayBuffer(capacity, (84, 84), stack=4)
    per_transition = buf.nbytes() / capacity
    assert per_transition <= 7_500, per_transition
    # the naive layout (obs + next_obs stacks) would need 8x the frame bytes
    assert per_transition < 2 * 4 * 84 * 84 / 7


def test_sampling_an_empty_buffer_fails_clearly() -> None:
    buf = FrameReplayBuffer(8, (2, 2))
    buf.start_episode(0, _frame(0))
    with pytest.raises(RuntimeError, match="too few complete transitions"):
        buf.sample(4)

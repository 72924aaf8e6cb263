"""DQN / Double DQN on real ALE games from pixels, a few hundred agent steps each."""

from pathlib import Path

import numpy as np
import pytest

from raydl.config import load_experiment
from raydl.rl.dqn import DQN
from raydl.rl.evaluate import evaluate
from raydl.rl.replay import FrameReplayBuffer
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

SHORT = [
    "algo.buffer_size=5000",
    "algo.learning_starts=200",
    "algo.steps_per_iteration=256",
    "algo.batch_size=8",
    "runners.envs_per_runner=2",
    "runners.rollout_length=16",
    "checkpoint.every=0",
    "log.tensorboard=false",
]


@pytest.mark.parametrize("experiment", ["dqn_pong", "ddqn_breakout"])
def test_atari_experiments_train_a_few_hundred_steps(experiment: str, tmp_path: Path) -> None:
    result = train(experiment, SHORT + ["stop.env_steps=512", "runners.num=1"],
                   out=tmp_path, progress=False, echo=False)
    m = result.metrics
    assert m["env_steps"] == 512 and m["learner_updates"] > 0 and np.isfinite(m["loss"])
    assert result.checkpoint is not None and (result.checkpoint / "buffer.npz").is_file()


def test_pixel_replay_stores_frames_once_and_resumes(tmp_path: Path) -> None:
    cfg = load_experiment("dqn_pong", SHORT + ["runners.num=0"])
    algo = DQN(cfg)
    try:
        assert isinstance(algo.buffer, FrameReplayBuffer)
        algo.step()
        m = algo.step()
        # one frame slot per agent step, plus each env's first frame
        assert algo.buffer.count == m["env_steps"] + cfg.runners.envs_per_runner
        batch = algo.buffer.sample(4)
        assert batch["obs"].shape == (4, 4, 84, 84) and batch["obs"].dtype == np.uint8
        algo.save(tmp_path)
        other = DQN(cfg)
        try:
            other.restore(tmp_path)
            assert other.buffer.count == algo.buffer.count
            np.testing.assert_array_equal(
                other.buffer.frames[: algo.buffer.count], algo.buffer.frames[: algo.buffer.count]
            )
            assert other.step()["env_steps"] == 768
        finally:
            other.close()
        # whole games, raw scores: Pong scores lie in [-21, 21]
        played = evaluate(algo.env, algo.q, 1, epsilon=0.05, gif=tmp_path / "pong.gif")
        assert -21 <= played.returns[0] <= 21 and played.lengths[0] > 200
        assert (tmp_path / "pong.gif").read_bytes()[:6] == b"GIF89a"
    finally:
        algo.close()

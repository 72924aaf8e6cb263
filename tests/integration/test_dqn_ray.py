import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt
from raydl.config import load_experiment
from raydl.rl.dqn import DQN
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = [
    "algo.steps_per_iteration=1000",
    "algo.learning_starts=500",
    "algo.hidden=[32, 32]",
    "runners.rollout_length=8",
]


def test_two_runner_actors_sample_in_parallel_and_keep_the_replay_ratio() -> None:
    cfg = load_experiment("ddqn_cartpole_parallel", SMALL)
    algo = DQN(cfg)
    try:
        infos = algo.pool.infos()  # type: ignore[union-attr]
        pids = {i["pid"] for i in infos}
        assert len(pids) == 2 and os.getpid() not in pids  # two separate actor processes
        for _ in range(3):
            metrics = algo.step()
        assert metrics["env_steps"] >= 3000
        assert metrics["episodes"] > 20 and metrics["episode_return_mean"] > 0
        # replay ratio: updates per env step after learning starts, whatever the runners
        chunk = cfg.runners.rollout_length * cfg.runners.envs_per_runner
        expected = (metrics["env_steps"] - cfg.algo.learning_starts) * cfg.algo.replay_ratio
        assert abs(metrics["learner_updates"] - expected) <= chunk * cfg.algo.replay_ratio + 1
        assert metrics["loss"] is not None and np.isfinite(metrics["loss"])
        assert "weights_staleness_mean" in metrics
        # the buffer holds every ingested transition (capacity not reached), except the
        # last n-1 steps of each env, still waiting in the n-step windows
        pending = (cfg.algo.n_step - 1) * cfg.runners.envs_per_runner * cfg.runners.num
        assert 0 <= metrics["env_steps"] - metrics["buffer_size"] <= pending
    finally:
        algo.close()


def test_replay_ratio_is_the_same_in_driver_mode() -> None:
    cfg = load_experiment("ddqn_cartpole_parallel", SMALL + ["runners.num=0"])
    algo = DQN(cfg)
    try:
        metrics = algo.step()
        metrics = algo.step()
        expected = (metrics["env_steps"] - cfg.algo.learning_starts) * cfg.algo.replay_ratio
        assert abs(metrics["learner_updates"] - expected) <= 8 * 4 * cfg.algo.replay_ratio + 1
    finally:
        algo.close()


def test_resume_continues_counters_buffer_and_metrics(tmp_path: Path) -> None:
    first = train(
        "ddqn_cartpole_parallel",
        SMALL + ["stop.iterations=2", "stop.env_steps=0"],
        out=tmp_path, progress=False, echo=False,
    )
    saved = ckpt.latest_checkpoint(first.run_dir)
    assert saved.name == "iter_000002"
    state = json.loads((saved / "state.json").read_text())
    assert state["env_steps"] == first.metrics["env_steps"]

    # restoring gives back exactly the saved counters, buffer and optimizer state
    cfg = load_experiment(first.run_dir / "config.yaml")
    algo = DQN(cfg)
    try:
        algo.restore(saved)
        assert (algo.env_steps, algo.updates, algo.episodes, algo.iteration) == (
            state["env_steps"], state["updates"], state["episodes"], 2
        )
        assert len(algo.buffer) == first.metrics["buffer_size"]
        saved_buffer = ckpt.load_arrays(saved / "buffer.npz")
        np.testing.assert_array_equal(algo.buffer.data["obs"][: len(algo.buffer)], saved_buffer["obs"])
        saved_model = ckpt.load_torch(saved / "model.pt")
        assert torch.equal(algo.q.state_dict()["advantage.weight"], saved_model["q"]["advantage.weight"])
        assert algo.optimizer.state_dict()["state"][0]["step"] == saved_model["optimizer"]["state"][0]["step"]
    finally:
        algo.close()

    second = train(resume=first.run_dir, overrides=["stop.iterations=3"], progress=False, echo=False)
    assert second.run_dir == first.run_dir
    assert second.metrics["iteration"] == 3
    assert second.metrics["env_steps"] >= 3 * 1000  # iteration goals are absolute
    assert second.metrics["learner_updates"] > first.metrics["learner_updates"]
    rows = [json.loads(line) for line in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]  # no duplicated or missing rows
    steps = [r["env_steps"] for r in rows]
    assert steps == sorted(steps)


def test_apex_epsilons_give_each_runner_its_own_rate() -> None:
    cfg = load_experiment("ddqn_cartpole_parallel", SMALL + ["algo.apex_epsilons=true"])
    algo = DQN(cfg)
    try:
        assert algo._epsilon_for(0) == 1.0  # warm-up: random until learning starts
        metrics = algo.step()
        assert algo._epsilon_for(0) == pytest.approx(0.4)
        assert algo._epsilon_for(1) == pytest.approx(0.4**8)
        assert metrics["epsilon"] == pytest.approx((0.4 + 0.4**8) / 2)
    finally:
        algo.close()

from pathlib import Path

import pytest

from raydl.config import StopConfig, dump_yaml, load_experiment
from raydl.errors import CheckpointError, ConfigError
from raydl.run import stop_reason, train


def test_stop_reason_first_criterion_wins() -> None:
    stop = StopConfig(env_steps=1000, episode_return_mean=450, iterations=0, time_s=60)
    assert stop_reason(stop, {"env_steps": 10, "episode_return_mean": 20}, 1.0) is None
    assert stop_reason(stop, {"env_steps": 10, "episode_return_mean": None}, 1.0) is None
    assert "episode_return_mean 451 >= 450" in stop_reason(
        stop, {"env_steps": 10, "episode_return_mean": 451.0}, 1.0
    )
    assert "env_steps 1,000 reached" in stop_reason(stop, {"env_steps": 1000}, 1.0)
    assert "time 60s reached" in stop_reason(stop, {"env_steps": 1}, 61.0)
    assert stop_reason(StopConfig(env_steps=0, iterations=3), {"iteration": 3}, 0) == (
        "iterations 3 reached"
    )


def test_resume_refuses_changing_what_the_run_is(tmp_path: Path) -> None:
    dump_yaml(load_experiment("dqn_cartpole"), tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"--set 'algo.lr=0.1': cannot change this on --resume"):
        train(resume=tmp_path, overrides=["algo.lr=0.1"], echo=False)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        train(resume=tmp_path, overrides=["stop.env_steps=5"], echo=False)
    with pytest.raises(ConfigError, match="not a run directory"):
        train(resume=tmp_path / "nope", echo=False)

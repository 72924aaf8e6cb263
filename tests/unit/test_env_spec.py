"""The env spec: every gymnasium observation space is fed to the learner or refused in
one line, before any run directory exists."""

from pathlib import Path

import numpy as np
import pytest

import tests.space_envs  # noqa: F401  (registers the toy envs)
from raydl import checkpoint as ckpt
from raydl.cli import main
from raydl.config import load_experiment
from raydl.envs.spec import probe_env
from raydl.errors import ConfigError
from raydl.rl.dqn import DQN
from raydl.rl.replay import ReplayBuffer


def _env(kind: str) -> str:
    return f"tests.space_envs:raydl_test/Space-{kind}-v0"


@pytest.mark.parametrize(
    ("env_id", "kind", "shape", "dtype"),
    [
        ("CartPole-v1", "vector", (4,), "float32"),
        ("FrozenLake-v1", "vector", (16,), "float32"),  # Discrete(16): one-hot
        ("Taxi-v3", "vector", (500,), "float32"),
        ("ALE/Pong-v5", "frames", (4, 84, 84), "uint8"),
        (_env("image_hwc"), "image", (3, 40, 48), "uint8"),  # channels moved first
        (_env("image_chw"), "image", (3, 40, 48), "uint8"),
        (_env("dict"), "vector", (22,), "float32"),  # one-hot(20) + Box(2)
        (_env("tuple"), "vector", (23,), "float32"),  # one-hot(20) + MultiBinary(3)
        (_env("multi_discrete"), "vector", (24,), "float32"),  # one-hot(20) + one-hot(4)
        (_env("multi_binary"), "vector", (6,), "float32"),
        (_env("box2d"), "vector", (6,), "float32"),  # a rank-2 float64 Box, flattened
    ],
)
def test_observation_spaces_become_what_the_learner_sees(env_id: str, kind: str,
                                                          shape: tuple, dtype: str) -> None:
    spec = probe_env(env_id)
    assert (spec.obs_kind, spec.obs_shape, spec.obs_dtype) == (kind, shape, dtype)
    env = spec.make()
    try:
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(1)
        assert obs.shape == shape and obs.dtype == np.dtype(dtype)
        assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_adapted_observations_keep_their_values() -> None:
    env = probe_env(_env("image_hwc")).make()
    env.reset(seed=0)
    obs, *_ = env.step(1)
    # channel 0 holds the step index, channel 1 100 + it, pixel (0, 0) of channel 2 is 200
    assert (obs[0] == 1).all() and (obs[1] == 101).all() and obs[2, 0, 0] == 200
    lake = probe_env("FrozenLake-v1").make()
    first, _ = lake.reset(seed=0)
    assert first.tolist() == [1.0] + [0.0] * 15  # state 0, one-hot
    obs, *_ = probe_env(_env("multi_discrete")).make().reset(seed=0)
    np.testing.assert_array_equal(np.flatnonzero(obs), [0, 20])  # [0, 0]: two one-hots


@pytest.mark.parametrize("kind", ["graph", "text"])
def test_spaces_without_a_fixed_size_are_refused_in_one_line(kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        probe_env(_env(kind))
    message = str(info.value)
    assert message.startswith(f"env: {_env(kind)} has a ") and "observation space" in message
    assert "allowed: Box, Discrete" in message and "\n" not in message


def test_check_and_run_refuse_the_same_line_before_any_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["dqn_cartpole", "--set", f"env={_env('graph')}", "--set", "runners.num=0"]
    assert main(["check", *args]) == 2
    checked = capsys.readouterr().err.strip().splitlines()
    assert main(["run", *args, "--out", str(tmp_path / "runs")]) == 2
    ran = capsys.readouterr().err.strip().splitlines()
    assert checked == ran and len(ran) == 1 and "Graph" in ran[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_env_that_cannot_be_made_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^env: unknown environment id 'Nope-v0'"):
        probe_env("Nope-v0")


def test_dqn_learns_from_hwc_images_with_the_cnn_and_plain_replay() -> None:
    cfg = load_experiment("dqn_cartpole", [
        f"env={_env('image_hwc')}", "runners.num=0", "runners.envs_per_runner=2",
        "algo.hidden=[16]", "algo.learning_starts=64", "algo.batch_size=16",
        "algo.steps_per_iteration=160", "algo.buffer_size=1000"])
    algo = DQN(cfg)
    try:
        m = algo.step()
        assert m["env_steps"] == 160 and m["learner_updates"] > 0 and np.isfinite(m["loss"])
        assert isinstance(algo.buffer, ReplayBuffer)  # no frame stack: whole observations
        assert algo.buffer.data["obs"].shape[1:] == (3, 40, 48)
        assert algo.buffer.data["obs"].dtype == np.uint8
        assert m["episode_return_mean"] is not None and m["episode_len_mean"] == 20
    finally:
        algo.close()


@pytest.mark.parametrize(("name", "inputs"), [("dqn_frozenlake", 16), ("dqn_taxi", 500)])
def test_shipped_discrete_observation_experiments_run(name: str, inputs: int, tmp_path: Path) -> None:
    """The shipped FrozenLake and Taxi experiments, cut to one short iteration: their
    one-hot observations reach the Q-network and the run ends on its stop criterion."""
    from raydl.run import train

    result = train(name, ["stop.env_steps=600", "algo.steps_per_iteration=600",
                          "algo.learning_starts=200", "log.tensorboard=false"],
                   out=tmp_path, progress=False, echo=False)
    assert result.stopped_by == "env_steps 600 reached"
    assert result.metrics["learner_updates"] > 0 and np.isfinite(result.metrics["loss"])
    saved = ckpt.load_torch(ckpt.latest_checkpoint(result.run_dir) / "model.pt")
    assert saved["q"]["trunk.0.weight"].shape[1] == inputs  # the one-hot width

"""Failures inside training: an env that raises in step/reset, a NaN loss.

The envs (tests/faulty_envs.py) have fixed 10-step episodes, reward 1 per step, the step
index in obs[1], and CrashEvery raises on the 25th step of each env instance: an instance
lives 24 steps (two whole episodes and 4 steps of a third), then the runner recreates it.
With one env, after S successful steps there were exactly (S - 1) // 24 crashes.
"""

import dataclasses
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from raydl.config import load_experiment
from raydl.errors import TrainingError
from raydl.rl.actor_critic import ActorCriticAlgorithm
from raydl.rl.runners.ac_worker import ACWorker
from raydl.rl.dqn import DQN
from raydl.rl.replay import FrameReplayBuffer
from raydl.envs.spec import probe_env
from raydl.rl.networks import ActorCritic
from raydl.rl.runners.env_runner import EnvRunner
from raydl.run import train

CRASH = "tests.faulty_envs:raydl_test/CrashEvery-v0"
ALWAYS = "tests.faulty_envs:raydl_test/AlwaysCrash-v0"
NAN = "tests.faulty_envs:raydl_test/NanReward-v0"
HANG = "tests.faulty_envs:raydl_test/HangOnce-v0"
LIFE = 24  # successful steps of one CrashEvery instance
EP = 10  # episode length of every faulty env
QUIET = {"log": {"progress": False, "tensorboard": False, "curve": False},
         "checkpoint": {"every": 0, "at_end": False}}


def _dqn(env: str, **sections: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "kind": "dqn", "env": env, "seed": 0, "stop": {"env_steps": 200},
        "algo": {"hidden": [16], "batch_size": 16, "learning_starts": 50, "buffer_size": 1000,
                 "steps_per_iteration": 200, "learner_threads": 1, "device": "cpu"},
        "runners": {"num": 0, "envs_per_runner": 1, "rollout_length": 8}, **QUIET,
    }
    for name, values in sections.items():
        exp[name] = {**exp.get(name, {}), **values}
    return exp


def _a2c(env: str, kind: str = "a2c", **sections: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "kind": kind, "env": env, "seed": 0, "stop": {"env_steps": 200},
        "algo": {"hidden": [16], "steps_per_iteration": 200, "learner_threads": 1, "device": "cpu"},
        "runners": {"num": 0, "envs_per_runner": 1, "rollout_length": 5}, **QUIET,
    }
    for name, values in sections.items():
        exp[name] = {**exp.get(name, {}), **values}
    return exp


def _crash_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "raydl" and "raised in step" in r.getMessage()]


# ----------------------------------------------------------------------------- env crashes


def test_dqn_in_driver_drops_the_open_episode_and_its_nstep_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="raydl")
    algo = DQN(load_experiment(_dqn(CRASH, algo={"n_step": 3})))
    try:
        m = algo.step()
    finally:
        algo.close()
    crashes = (200 - 1) // LIFE
    assert m["env_steps"] == 200 and m["env_errors"] == crashes == 8
    # every reported episode is whole: 2 per instance, none of the 4-step fragments
    assert m["episodes"] == 2 * crashes and m["episode_len_mean"] == EP == m["episode_return_mean"]
    # each crash drops the 2 steps waiting in its n-step window; 2 more wait in the live one
    assert m["buffer_size"] == 200 - 2 * crashes - 2
    # no stored transition spans a crash (or an episode end): next_obs is exactly k steps
    # after obs, where gamma^k is its discount, and terminal exactly at the episode's end
    data = algo.buffer.data
    n = len(algo.buffer)
    k = np.round(np.log(data["discount"][:n]) / np.log(algo.cfg.algo.gamma))
    np.testing.assert_array_equal(data["next_obs"][:n, 1] - data["obs"][:n, 1], k)
    np.testing.assert_array_equal(data["terminated"][:n] == 1, data["next_obs"][:n, 1] == EP)
    warnings = _crash_warnings(caplog)
    assert len(warnings) == crashes
    assert all("\n" not in w and CRASH in w and "RuntimeError: CrashEvery: step 25 failed" in w
               for w in warnings), warnings[0]


@pytest.mark.usefixtures("ray_session")
def test_dqn_runner_actor_recovers_from_env_crashes() -> None:
    algo = DQN(load_experiment(_dqn(CRASH, runners={"num": 1})))
    try:
        m = algo.step()
    finally:
        algo.close()
    # one runner with one env: its crashes are a function of the steps it delivered
    assert m["env_errors"] == (m["env_steps"] - 1) // LIFE > 0
    assert m["episode_len_mean"] == EP == m["episode_return_mean"]
    assert 2 * m["env_errors"] <= m["episodes"] <= 2 * m["env_errors"] + 2


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("kind", ["dqn", "a3c"])
def test_a_hung_runner_actor_is_replaced_after_the_request_timeout(kind: str) -> None:
    """An env that sleeps for an hour inside `step`: its runner used to stall the run
    forever. After runners.request_timeout_s it is replaced like a dead one, its request
    re-sent, and the run goes on to its end."""
    from tests.faulty_envs import arm_hang

    runners = {"num": 1, "request_timeout_s": 8.0}
    exp = _dqn(HANG, runners=runners, stop={"env_steps": 400}) if kind == "dqn" else \
        _a2c(HANG, kind="a3c", runners=runners, stop={"env_steps": 400})
    arm_hang()
    algo = (DQN if kind == "dqn" else ActorCriticAlgorithm)(load_experiment(exp))
    started = time.monotonic()
    try:
        while True:
            m = algo.step()
            if m["env_steps"] >= 400:
                break
    finally:
        algo.close()
    assert m["runner_restarts"] == 1  # the hung one, once: its successor runs on
    assert time.monotonic() - started < 90


def test_a2c_in_driver_drops_the_rollout_fragment_of_a_crash() -> None:
    algo = ActorCriticAlgorithm(load_experiment(_a2c(CRASH)))
    try:
        m = algo.step()
    finally:
        algo.close()
    # 5-step rollouts: an instance delivers 20 steps (two episodes); the 4 steps before
    # its crash are a fragment that never reaches the learner. The 10th instance ends
    # the iteration at exactly 200 steps, before its own crash.
    assert m["env_steps"] == 200 and m["learner_updates"] == 40
    assert m["env_errors"] == 9 and m["episodes"] == 20
    assert m["episode_len_mean"] == EP == m["episode_return_mean"]


def test_ac_worker_rollouts_never_span_a_crash() -> None:
    worker = ACWorker(probe_env(CRASH), 2, lambda: ActorCritic(4, 2, [8]), seed=0, returns="gae", gamma=0.9)
    try:
        errors: list[str] = []
        for _ in range(12):  # 7-step rollouts: a crash lands 3 steps into the 4th fragment
            rollout = worker._rollout(7)
            errors += worker._take_env_errors()
            assert rollout["env_steps"] == 14
            assert all(ep == (float(EP), EP) for ep in rollout["episodes"])
            # the step index advances by one, or restarts after an episode end: no row
            # comes from another env instance
            t = rollout["batch"]["obs"][:, :, 1]
            ended = rollout["batch"]["ended"].astype(bool)
            np.testing.assert_array_equal(t[1:], np.where(ended[:-1], 0, t[:-1] + 1))
        assert len(errors) == 3 and all("raised in step" in e for e in errors)
        out = worker.compute_gradients(7)  # the 4th fragment again: dropped, and reported
        assert len(out.env_errors) == 1 and np.isfinite(out.grads).all()
    finally:
        worker.close()


@pytest.mark.usefixtures("ray_session")
def test_a3c_worker_actor_recovers_from_env_crashes() -> None:
    algo = ActorCriticAlgorithm(load_experiment(_a2c(CRASH, kind="a3c", runners={"num": 1})))
    try:
        m = algo.step()
    finally:
        algo.close()
    assert m["env_steps"] >= 200 and m["env_errors"] >= 8
    assert m["episode_len_mean"] == EP == m["episode_return_mean"]
    assert m["episodes"] == 2 * m["env_errors"] + (m["env_steps"] - 20 * m["env_errors"]) // EP


def test_frame_mode_restarts_episodes_after_a_crash() -> None:
    """Pixel envs feed the frame replay: a crash starts new episode streams, so no n-step
    transition rebuilt from the frames crosses it."""
    # Its 4x8x8 frames are too small for the CNN, so the env spec would flatten them:
    # taken here as a frame stack, as Atari's are.
    spec = dataclasses.replace(probe_env("tests.faulty_envs:raydl_test/CrashEveryPixels-v0"),
                               obs_kind="frames", transform="none", obs_shape=(4, 8, 8),
                               obs_dtype="uint8")
    runner = EnvRunner(spec, 2, torch.nn.Identity, seed=0)
    buffer = FrameReplayBuffer(2000, (8, 8), 4, seed=0, n_step=3, gamma=0.5)
    try:
        errors = 0
        for _ in range(20):
            out = runner.sample(8, epsilon=1.0)  # epsilon 1: random actions, no network
            errors += len(out.env_errors)
            buffer.add(out.transitions, 0)
        assert errors == (160 - 1) // LIFE
        b = buffer.sample(500)
        k = np.round(np.log(b["discount"]) / np.log(0.5))
        # newest frame of each stack = step index; the n-step target lies k steps later
        np.testing.assert_array_equal(b["next_obs"][:, -1, 0, 0].astype(int) - b["obs"][:, -1, 0, 0], k)
    finally:
        runner.close()


def test_always_crashing_env_stops_the_run_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrainingError) as info:
        train(_dqn(ALWAYS), out=tmp_path, progress=False, echo=False)
    assert str(info.value) == (
        f"env {ALWAYS}: 5 failures in a row in reset: RuntimeError: AlwaysCrash: reset failed on purpose"
    )


@pytest.mark.usefixtures("ray_session")
def test_always_crashing_env_in_runner_actors_is_the_same_one_line(tmp_path: Path) -> None:
    exp = _a2c(ALWAYS, kind="a3c", runners={"num": 2, "max_env_errors": 2})
    with pytest.raises(TrainingError) as info:
        train(exp, out=tmp_path, progress=False, echo=False)
    assert str(info.value) == (
        f"env {ALWAYS}: 2 failures in a row in reset: RuntimeError: AlwaysCrash: reset failed on purpose"
    )


def test_cli_always_crash_exits_1_with_one_stderr_line(tmp_path: Path) -> None:
    """Two runner actors: both fail; the first error is the one line, and the second is
    read before exit (else Ray prints it as an "Unhandled error" traceback at exit)."""
    path = tmp_path / "always_crash.yaml"
    path.write_text(yaml.safe_dump(_dqn(ALWAYS, runners={"num": 2})))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-m", "raydl", "run", str(path), "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[2],
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert lines == [f"raydl: error: env {ALWAYS}: 5 failures in a row in reset: "
                     "RuntimeError: AlwaysCrash: reset failed on purpose"], proc.stderr


# ----------------------------------------------------------------------------- NaN losses


def _finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in module.parameters())


# An env that pays a NaN reward every 50th step (episodes of 10 steps, reward 1 otherwise).
def test_dqn_keeps_nan_rewards_out_of_replay_and_learns_on() -> None:
    """Used to: the NaN transitions stayed in replay, so 9,318 of 9,500 updates were
    skipped over 20k steps and the return window read nan for good. Now the runner drops
    them (and the n-step returns they reached), every update goes through, and the window
    holds the finite episodes."""
    algo = DQN(load_experiment(_dqn(NAN, algo={"nonfinite": "skip", "n_step": 3},
                                    stop={"env_steps": 2000})))
    try:
        for _ in range(10):
            m = algo.step()
    finally:
        algo.close()
    assert m["env_steps"] == 2000 and m["nonfinite_skipped"] == 0
    assert m["learner_updates"] == int((2000 - 50) * 0.25)
    # one NaN every 50 steps, each reaching the 3-step returns of up to 3 transitions
    assert 2000 // 50 <= m["nonfinite_dropped"] <= 3 * (2000 // 50)
    assert math.isfinite(m["episode_return_mean"]) and m["episode_return_mean"] == 10.0
    assert math.isfinite(m["loss"]) and _finite(algo.q) and _finite(algo.target)
    stored = {k: v[: len(algo.buffer)] for k, v in algo.buffer.data.items()}
    assert all(np.isfinite(v).all() for v in stored.values() if v.dtype.kind == "f")


def test_dqn_skips_and_stops_on_a_diverged_learner() -> None:
    """A learning rate of 1e30 makes the first Adam step overflow the Q-network: the loss
    of every later update is not finite. `skip` counts and skips them; `stop` ends the
    run in one line naming the update."""
    algo = DQN(load_experiment(_dqn("CartPole-v1", algo={"nonfinite": "skip", "lr": 1e30})))
    try:
        m = algo.step()
        assert m["nonfinite_skipped"] > 0
        assert m["learner_updates"] + m["nonfinite_skipped"] == int((200 - 50) * 0.25)
    finally:
        algo.close()
    algo = DQN(load_experiment(_dqn("CartPole-v1", algo={"lr": 1e30})))
    try:
        with pytest.raises(TrainingError) as info:
            algo.step()
    finally:
        algo.close()
    message = str(info.value)
    assert message.startswith("dqn: non-finite loss or gradient at iteration 1, learner update ")
    assert "algo.nonfinite: skip" in message and "\n" not in message


def test_a2c_keeps_nan_rewards_out_of_its_rollouts() -> None:
    """The env of a NaN reward is masked out of that rollout (its samples dropped and
    counted); no gradient is NaN, so nothing is skipped, and the window stays finite."""
    algo = ActorCriticAlgorithm(load_experiment(_a2c(NAN, algo={"nonfinite": "stop"})))
    try:
        m = algo.step()
    finally:
        algo.close()
    assert m["nonfinite_skipped"] == 0 and m["nonfinite_dropped"] > 0
    assert m["learner_updates"] > 0 and math.isfinite(m["pg_loss"]) and _finite(algo.net)
    assert math.isfinite(m["episode_return_mean"])


def test_a2c_skips_and_stops_on_a_diverged_learner() -> None:
    algo = ActorCriticAlgorithm(load_experiment(_a2c("CartPole-v1", algo={"nonfinite": "skip", "lr": 1e30,
                                                                         "optimizer": "adam"})))
    try:
        m = algo.step()
        assert m["nonfinite_skipped"] > 0 and m["learner_updates"] + m["nonfinite_skipped"] == 40
    finally:
        algo.close()
    algo = ActorCriticAlgorithm(load_experiment(_a2c("CartPole-v1", algo={"lr": 1e30, "optimizer": "adam"})))
    try:
        with pytest.raises(TrainingError, match=r"^a2c: non-finite loss or gradient at iteration 1, "
                                                r"learner update \d+ \(pg_loss "):
            algo.step()
    finally:
        algo.close()


@pytest.mark.usefixtures("ray_session")
def test_ddp_workers_stop_together_on_a_nonfinite_gradient(tmp_path: Path) -> None:
    """lr 1e30: Adam's first step makes the logits overflow. Both DDP ranks see the same
    all-reduced NaN gradient and stop at the same batch (ranks that disagreed would
    desynchronize or hang). One Ray Train fit: ~28 s on 2 shared cores."""
    with pytest.raises(TrainingError) as info:
        train("cnn_digits", ["log.tensorboard=false", "scaling.workers=2", "scaling.max_failures=0",
                             "train.epochs=1", "train.lr=1e30"], out=tmp_path, progress=False, echo=False)
    assert str(info.value).startswith("classify: non-finite loss or gradient at epoch 1, batch ")
    assert "(loss nan, grad_norm nan); set train.nonfinite: skip" in str(info.value)

"""SAC and TD3 on real envs: every shipped experiment runs (evaluation included), runner
actors keep the replay ratio and survive a kill, a driver SIGKILL resumes from the
newest checkpoint with its buffer, alpha and every optimizer, and SAC learns Pendulum."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt
from raydl import registry
from raydl.config import load_experiment
from raydl.metrics import read_metrics
from raydl.rl.sac import SAC
from raydl.run import train
from tests.e2e.test_cli import _group_alive
from tests.integration.test_dqn_ray import step_until_replaced

pytestmark = pytest.mark.usefixtures("ray_session")

QUICK = ["log.tensorboard=false", "log.curve=false", "checkpoint.at_end=false",
         "algo.hidden=[32, 32]", "algo.batch_size=32"]


@pytest.mark.parametrize("name", [p.stem for p in registry.experiment_files()
                                  if p.stem.startswith(("sac_", "td3_"))])
def test_every_continuous_experiment_runs(name: str, tmp_path: Path) -> None:
    run = train(name, QUICK + ["stop.env_steps=300", "runners.num=0", "algo.learning_starts=100",
                               "algo.steps_per_iteration=150", "eval.every=1", "eval.episodes=1"],
                out=tmp_path, progress=False, echo=False)
    m = run.metrics
    assert m["env_steps"] == 300 and m["learner_updates"] == 200  # replay ratio 1 past 100
    assert np.isfinite(m["critic_loss"]) and np.isfinite(m["actor_loss"])
    # greedy evaluation (the actor's deterministic action) of every action space
    assert all(np.isfinite(r["eval_return_mean"]) for r in run.history)


def test_runner_actors_keep_the_replay_ratio_and_a_killed_one_is_replaced() -> None:
    cfg = load_experiment("sac_pendulum", QUICK + [
        "runners.num=2", "runners.envs_per_runner=2", "runners.rollout_length=25",
        "algo.steps_per_iteration=200", "algo.learning_starts=100", "algo.replay_ratio=0.5",
        "eval.every=0", "stop.eval_return_mean=null"])
    algo = SAC(cfg)
    try:
        first = algo.step()
        assert {r["runner"] for r in algo.runner_infos()} == {0, 1}
        assert first["env_steps"] == 200 and first["learner_updates"] == 50
        _, metrics = step_until_replaced(algo, 1)
        assert metrics["runner_restarts"] >= 1
        # no sample lost or counted twice: every iteration is exactly 200 env steps, and
        # the learner paid 0.5 updates per step past learning_starts
        assert metrics["env_steps"] == 200 * metrics["iteration"]
        assert metrics["learner_updates"] == (metrics["env_steps"] - 100) // 2
        assert len(algo.buffer) == metrics["env_steps"]
    finally:
        algo.close()


def test_sac_learns_pendulum_in_the_driver(tmp_path: Path) -> None:
    run = train("sac_pendulum", ["stop.env_steps=5000", "algo.steps_per_iteration=1000",
                                 "eval.every=1", "eval.episodes=5", "stop.eval_return_mean=null",
                                 "algo.hidden=[64, 64]", "log.tensorboard=false"],
                out=tmp_path, progress=False, echo=False)
    evals = [r["eval_return_mean"] for r in run.history]  # weights after 0, 1k, ... 4k steps
    # the untrained policy spins at about -1200 to -1600; 4k updates swing it up (-77 here)
    assert evals[0] < -900 and max(evals[1:]) > -400, evals


def test_sac_resumes_exactly_after_the_driver_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the driver's process group after a checkpoint, then the checkpoint holds
    what the run had: buffer (its in-memory digest), alpha, all three optimizers at the
    run's update count; `raydl run --resume` continues the rows without a gap."""
    out, chunk, iterations = tmp_path / "runs", 100, 12
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    args = [f"stop.env_steps={chunk * iterations}", f"algo.steps_per_iteration={chunk}",
            "checkpoint.every=2", "eval.every=0", "stop.eval_return_mean=null",
            "algo.learning_starts=50", *QUICK[:2], "algo.hidden=[32, 32]", "algo.batch_size=32"]
    argv = [sys.executable, "-m", "raydl", "run", "sac_pendulum", "--no-progress",
            "--out", str(out)] + [x for a in args for x in ("--set", a)]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=log,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list(out.iterdir()) if out.is_dir() else []
            rows = read_metrics(runs[0]) if runs else []
            if rows and rows[-1]["iteration"] >= 5 and ckpt.checkpoint_dirs(runs[0] / "checkpoints"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    while _group_alive(proc.pid):
        time.sleep(0.1)
    (run_dir,) = list(out.iterdir())
    before = read_metrics(run_dir)
    newest = ckpt.latest_checkpoint(run_dir)
    state = ckpt.load_json(newest / "state.json")
    k = state["iteration"]
    at_ckpt = before[k - 1]
    algo = SAC(load_experiment(run_dir / "config.yaml"))
    try:
        algo.restore(newest)
        updates = at_ckpt["learner_updates"]
        assert (algo.iteration, algo.book.env_steps, algo.book.updates) == (
            k, at_ckpt["env_steps"], updates) and updates > 0
        assert ckpt.arrays_digest(algo.buffer.state_dict()) == state["buffer_sha256"]
        for opt in (algo.actor_opt, algo.critic_opt, algo.alpha_opt):
            assert {int(s["step"]) for s in opt.state_dict()["state"].values()} == {updates}
        saved = torch.load(newest / "model.pt", weights_only=True)
        assert torch.equal(algo.temperature.log_alpha.detach(), saved["temperature"]["log_alpha"])
        assert float(algo.temperature.log_alpha) != 0.0  # alpha moved from its initial 1
    finally:
        algo.close()
    resumed = subprocess.run([sys.executable, "-m", "raydl", "run", "--resume", str(run_dir),
                              "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_metrics(run_dir)
    assert [r["env_steps"] for r in rows] == [chunk * i for i in range(1, iterations + 1)]
    assert rows[:k] == before[:k]
    assert rows[-1]["learner_updates"] == chunk * iterations - 50

"""A3C / A2C with worker actors on a real Ray; checkpoint, resume and eval."""

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt
from raydl import registry
from raydl.config import load_experiment
from raydl.errors import TrainingError
from raydl.rl.actor_critic import ActorCriticAlgorithm
from raydl.rl.evaluate import evaluate
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = ["algo.steps_per_iteration=400", "log.tensorboard=false", "checkpoint.every=0"]


def kill_worker(algo: ActorCriticAlgorithm, index: int) -> tuple[int, float]:
    """SIGKILL worker `index`'s actor process; (its pid, when it was killed)."""
    pid = algo.runner_infos()[index]["pid"]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return pid, killed_at


def survive_three_kills(algo: ActorCriticAlgorithm) -> dict:
    """Kill a worker between iterations 3 times (0, 1, 0); the run goes on each time, the
    dead worker is replaced by a new process; returns the last iteration's metrics."""
    pool = algo.runners
    killed = []
    for index in (0, 1, 0):
        seen = len(pool.recoveries)
        pid, killed_at = kill_worker(algo, index)
        killed.append(pid)
        m = algo.step()
        # A3C sees the death when the dead worker's request fails, and the other worker
        # may fill whole iterations while the new process starts
        while len(pool.recoveries) == seen or pool.recoveries[seen]["first_result_at"] is None:
            m = algo.step()
        rec = pool.recoveries[seen]
        assert rec["runner"] == index
        print(f"\nworker {index} killed -> its replacement's first gradient after "
              f"{rec['first_result_at'] - killed_at:.2f}s (iteration {m['iteration']})")
    print(f"requests re-sent (their results dropped): {pool.requests_resent}")
    assert m["runner_restarts"] == 3 and pool.restarts == [2, 1]
    pids = {i["pid"] for i in algo.runner_infos()}
    assert len(pids) == 2 and not pids & set(killed) and os.getpid() not in pids
    # every env step counted comes from exactly one applied result, none from the dead
    chunk = algo.cfg.runners.envs_per_runner * algo.cfg.runners.rollout_length
    assert m["env_steps"] == pool.results_returned * chunk
    return m


def test_a3c_applies_gradients_as_they_arrive_from_two_worker_processes() -> None:
    algo = ActorCriticAlgorithm(load_experiment("a3c_cartpole", SMALL))
    try:
        pids = {i["pid"] for i in algo.runner_infos()}
        assert len(pids) == 2 and os.getpid() not in pids
        m = algo.step()
        m = survive_three_kills(algo)
        # one update per arriving gradient: 8 envs x 5 steps = 40 env steps each
        assert m["learner_updates"] == m["env_steps"] // 40
        assert m["worker0_env_steps_per_s"] > 0 and m["worker1_env_steps_per_s"] > 0
        # while one worker's gradient is applied the other one still acts on the weights
        # it had: with two workers, gradients arrive 0 or 1 (rarely more) updates stale
        assert 0 < m["staleness_mean"] <= m["staleness_max"]
        assert np.isfinite(m["pg_loss"]) and m["episodes"] > 0
    finally:
        algo.close()


def test_a2c_waits_for_every_worker_and_takes_one_averaged_step(tmp_path: Path) -> None:
    algo = ActorCriticAlgorithm(load_experiment("a2c_cartpole", SMALL + ["runners.max_restarts=2"]))
    try:
        m = algo.step()
        # 2 workers x 4 envs x 5 steps = 40 env steps per synchronous update
        assert m["learner_updates"] == m["env_steps"] // 40
        assert m["staleness_max"] == 0
        m = survive_three_kills(algo)
        # a replaced worker's result is waited for again: every step still averages both
        assert m["learner_updates"] == m["env_steps"] // 40 and m["staleness_max"] == 0
        algo.save(tmp_path)
        # past runners.max_restarts (2) deaths of one worker, the run fails in one line
        kill_worker(algo, 0)
        with pytest.raises(TrainingError) as err:
            algo.step()
        print(err.value)
        assert re.fullmatch(
            r"env runner 0 died 3 times \(runners.max_restarts: 2\); last error: .+", str(err.value)
        )
    finally:
        algo.close()
    again = ActorCriticAlgorithm(load_experiment("a2c_cartpole", SMALL))
    try:
        again.restore(tmp_path)  # the count is training state
        assert again.runners.total_restarts == 3 and again.runners.restarts == [2, 1]
    finally:
        again.close()


def test_resume_and_eval_of_an_a3c_run(tmp_path: Path) -> None:
    first = train("a3c_cartpole", SMALL + ["stop.iterations=2", "stop.env_steps=0"],
                  out=tmp_path, progress=False, echo=False)
    saved = ckpt.latest_checkpoint(first.run_dir)
    state = json.loads((saved / "state.json").read_text())
    assert state["env_steps"] == first.metrics["env_steps"] and len(state["runners"]) == 2
    cfg = load_experiment(first.run_dir / "config.yaml")
    assert cfg.algo.asynchronous is True  # the kind's default is written out resolved
    env = registry.check(cfg)
    net = ActorCriticAlgorithm.load_policy(saved, cfg, env)
    saved_model = ckpt.load_torch(saved / "model.pt")
    assert torch.equal(net.state_dict()["policy.weight"], saved_model["net"]["policy.weight"])
    result = evaluate(env, net, 2, gif=tmp_path / "play.gif")
    assert len(result.returns) == 2 and result.gif is not None

    second = train(resume=first.run_dir, overrides=["stop.iterations=3"], progress=False,
                   echo=False)
    assert second.metrics["iteration"] == 3
    assert second.metrics["learner_updates"] > first.metrics["learner_updates"]
    rows = [json.loads(x) for x in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]


def test_a3c_pong_trains_a_few_hundred_steps(tmp_path: Path) -> None:
    result = train(
        "a3c_pong",
        ["stop.env_steps=320", "algo.steps_per_iteration=160", "runners.num=1",
         "runners.envs_per_runner=2", "runners.rollout_length=8", "log.tensorboard=false"],
        out=tmp_path, progress=False, echo=False,
    )
    m = result.metrics
    assert m["env_steps"] == 320 and m["learner_updates"] == 20
    assert np.isfinite(m["value_loss"]) and m["entropy"] > 1.0  # 6 actions, near uniform
    assert result.checkpoint is not None

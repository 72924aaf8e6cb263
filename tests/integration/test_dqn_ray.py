import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from raydl import checkpoint as ckpt
from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.rl.dqn import DQN
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = [
    "algo.steps_per_iteration=1000",
    "algo.learning_starts=500",
    "algo.hidden=[32, 32]",
    "runners.rollout_length=8",
]


def kill_runner(algo: Any, index: int) -> tuple[int, float]:
    """SIGKILL runner `index`'s actor process; (its pid, when it was killed)."""
    pid = algo.runners.infos()[index]["pid"]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return pid, killed_at


def step_until_replaced(algo: Any, index: int) -> tuple[int, dict[str, Any]]:
    """Kill runner `index`, then step until its replacement has delivered a sample: the
    death is seen when its request fails, and the other runner may fill whole iterations
    while the new actor process starts. Prints the time from the kill to that first
    sample; returns (the killed pid, the last metrics)."""
    seen = len(algo.runners.recoveries)
    pid, killed_at = kill_runner(algo, index)
    metrics = algo.step()
    while len(algo.runners.recoveries) == seen or algo.runners.recoveries[seen]["first_result_at"] is None:
        metrics = algo.step()
    rec = algo.runners.recoveries[seen]
    assert rec["runner"] == index
    print(f"\nrunner {index} killed -> its replacement's first sample after "
          f"{rec['first_result_at'] - killed_at:.2f}s (iteration {metrics['iteration']})")
    return pid, metrics


def test_two_runner_actors_sample_in_parallel_and_keep_the_replay_ratio(tmp_path: Path) -> None:
    cfg = load_experiment("ddqn_cartpole_parallel", SMALL)
    algo = DQN(cfg)
    try:
        infos = algo.runners.infos()
        pids = {i["pid"] for i in infos}
        assert len(pids) == 2 and os.getpid() not in pids  # two separate actor processes
        metrics = algo.step()
        # SIGKILL a runner between iterations, 3 times: each is replaced, the run goes on
        killed = []
        for index in (0, 1, 0):
            pid, metrics = step_until_replaced(algo, index)
            killed.append(pid)
        assert metrics["runner_restarts"] == 3 and algo.runners.restarts == [2, 1]
        new_pids = {i["pid"] for i in algo.runners.infos()}
        assert len(new_pids) == 2 and not new_pids & set(killed) and os.getpid() not in new_pids
        print(f"requests re-sent (their samples dropped): {algo.runners.requests_resent}")
        assert metrics["env_steps"] >= 4000
        assert metrics["episodes"] > 20 and metrics["episode_return_mean"] > 0
        # every env step counted comes from exactly one accepted sample, none from the dead
        chunk = cfg.runners.rollout_length * cfg.runners.envs_per_runner
        assert metrics["env_steps"] == algo.runners.results_returned * chunk
        # replay ratio: updates per env step after learning starts, whatever the runners
        expected = (metrics["env_steps"] - cfg.algo.learning_starts) * cfg.algo.replay_ratio
        assert abs(metrics["learner_updates"] - expected) <= chunk * cfg.algo.replay_ratio + 1
        assert metrics["loss"] is not None and np.isfinite(metrics["loss"])
        assert "weights_staleness_mean" in metrics
        # the buffer holds every ingested transition (capacity not reached), except the
        # last n-1 steps of each env, still waiting in the n-step windows (those of a
        # killed runner are lost with it)
        window = (cfg.algo.n_step - 1) * cfg.runners.envs_per_runner
        pending = window * (cfg.runners.num + metrics["runner_restarts"])
        assert 0 <= metrics["env_steps"] - metrics["buffer_size"] <= pending

        # the count is training state: it survives save/restore
        algo.save(tmp_path)
        assert json.loads((tmp_path / "state.json").read_text())["runner_restarts"] == {
            "total": 3, "per_runner": [2, 1]
        }
    finally:
        algo.close()
    again = DQN(cfg)
    try:
        again.restore(tmp_path)
        assert again.runners.total_restarts == 3 and again.runners.restarts == [2, 1]
    finally:
        again.close()


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
        assert (algo.book.env_steps, algo.book.updates, algo.book.episodes, algo.iteration) == (
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


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("runners.resources={nope: 1}", "1 nope"),  # no node has it at all
        ("runners.cpus_per_runner=64", "64 CPU"),  # more than any node
        ("runners.num=5", "2.5 CPU"),  # each fits, all of them do not (0.5 CPU each)
    ],
)
def test_runners_the_cluster_can_never_hold_are_refused_at_once(
    tmp_path: Path, override: str, named: str
) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        train("ddqn_cartpole_parallel", SMALL + [override], out=tmp_path, progress=False, echo=False)
    print(f"\n{override}: refused in {time.monotonic() - start:.2f}s: {err.value}")
    message = str(err.value)
    assert "\n" not in message and message.startswith("runners:") and named in message
    assert "0 nope" in message if "nope" in named else "2 CPU" in message  # what it has
    assert list(tmp_path.iterdir()) == []  # no half-made run directory

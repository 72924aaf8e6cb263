"""The DQN learner with in-driver sampling (no Ray needed for runners.num: 0)."""

import torch

from raydl.config import load_experiment
from raydl.rl.dqn import DQN
from raydl.rl.offpolicy import polyak

TINY = ["runners.num=0", "algo.hidden=[16]", "algo.steps_per_iteration=200", "algo.learning_starts=100",
        "runners.envs_per_runner=2", "log.tensorboard=false"]


def test_polyak_and_hard_target_updates() -> None:
    algo = DQN(load_experiment("dqn_cartpole", TINY + ["algo.tau=0.5"]))
    try:
        online = algo.q.advantage.weight
        with torch.no_grad():
            online.fill_(1.0)
            algo.target.advantage.weight.fill_(0.0)
        polyak(algo.target, algo.q, algo.cfg.algo.tau)
        assert torch.allclose(algo.target.advantage.weight, torch.full_like(online, 0.5))
        polyak(algo.target, algo.q, 1.0)
        assert torch.equal(algo.target.advantage.weight, online)
    finally:
        algo.close()


def test_iteration_metrics_and_exact_step_counts() -> None:
    algo = DQN(load_experiment("dqn_cartpole", TINY + ["algo.n_step=3", "algo.dueling=true",
                                                        "algo.prioritized=true"]))
    try:
        m1 = algo.step()
        m2 = algo.step()
        assert (m1["env_steps"], m2["env_steps"]) == (200, 400)  # no drift per iteration
        assert m2["learner_updates"] == int((400 - 100) * algo.cfg.algo.replay_ratio)
        assert m2["episodes"] > 0 and m2["loss"] is not None
        assert 0 < m2["epsilon"] < 1
        # with n=3 a few transitions wait in the n-step windows
        assert 400 - 2 * 2 <= m2["buffer_size"] <= 400
    finally:
        algo.close()


def test_same_seed_same_run_other_seed_other_run() -> None:
    def one(seed: int) -> tuple:
        algo = DQN(load_experiment("dqn_cartpole", TINY + [f"seed={seed}"]))
        try:
            algo.step()
            m = algo.step()
            return m["episode_return_mean"], m["loss"], m["q_mean"]
        finally:
            algo.close()

    assert one(3) == one(3)
    assert one(3) != one(4)

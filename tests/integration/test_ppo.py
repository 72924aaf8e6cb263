"""PPO: synchronous updates act with the weights they learn from (ratio exactly 1), the
runners' normalizer statistics merged exactly, state saved and restored whole, a killed
runner's rollout redone and never counted twice, learning on CartPole, every shipped PPO
experiment running."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import registry
from raydl.config import load_experiment
from raydl.rl.normalize import PRIOR_COUNT
from raydl.rl.ppo import PPO
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL = ["stop.env_steps=2000", "algo.steps_per_iteration=512", "algo.epochs=4",
         "algo.minibatches=4", "runners.rollout_length=32", "runners.envs_per_runner=4"]


def test_synchronous_updates_start_from_ratio_one_and_normalizers_merge_exactly() -> None:
    cfg = load_experiment("ppo_cartpole", SMALL + [
        "runners.num=2", "algo.normalize_obs=true", "algo.normalize_reward=true"])
    algo = PPO(cfg)
    try:
        for _ in range(2):
            metrics = algo.step()
            # the batch was acted by the very weights the update starts from
            assert metrics["first_ratio_error"] == 0.0 and metrics["staleness_mean"] == 0.0
        # the learner's statistics hold every observation of every runner once: each
        # env's first observation, then one per step (the prior's count on top)
        envs = cfg.runners.num * cfg.runners.envs_per_runner
        assert algo.norm.obs.count == pytest.approx(PRIOR_COUNT + metrics["env_steps"] + envs)
        assert algo.norm.ret.count == pytest.approx(PRIOR_COUNT + metrics["env_steps"])
        assert metrics["learner_updates"] > 0 and np.isfinite(metrics["value_loss"])
    finally:
        algo.close()


def test_state_is_saved_and_restored_whole(tmp_path: Path) -> None:
    cfg = load_experiment("ppo_cartpole", SMALL + ["runners.num=0", "algo.normalize_obs=true"])
    algo = PPO(cfg)
    try:
        algo.step()
        algo.save(tmp_path)
        saved = (algo.book.state_dict(), algo.norm.state_dict(), algo.shuffle.get_state(),
                 {k: v.clone() for k, v in algo.net.state_dict().items()})
    finally:
        algo.close()
    again = PPO(cfg)
    try:
        again.restore(tmp_path)
        book = again.book.state_dict()
        assert book["env_steps"] == saved[0]["env_steps"] and book["updates"] == saved[0]["updates"]
        assert again.norm.state_dict() == saved[1]
        assert torch.equal(again.shuffle.get_state(), saved[2])
        assert all(torch.equal(v, saved[3][k]) for k, v in again.net.state_dict().items())
        # the evaluated / exported policy normalizes with the restored statistics
        policy = PPO.load_policy(tmp_path, cfg, again.env)
        obs = torch.randn(5, 4)
        _, live = again.policy_network()
        assert torch.equal(policy(obs), live(obs))
    finally:
        again.close()


def test_a_killed_runner_is_replaced_and_no_sample_counts_twice() -> None:
    cfg = load_experiment("ppo_cartpole", SMALL + ["runners.num=2"])
    algo = PPO(cfg)
    try:
        algo.step()
        os.kill(algo.runners.infos()[0]["pid"], signal.SIGKILL)
        metrics = algo.step()
        metrics = algo.step()
        assert metrics["runner_restarts"] == 1
        chunk = cfg.runners.rollout_length * cfg.runners.envs_per_runner
        assert metrics["env_steps"] == algo.runners.results_returned * chunk
        assert metrics["first_ratio_error"] == 0.0
    finally:
        algo.close()


def test_asynchronous_runners_act_one_policy_behind() -> None:
    cfg = load_experiment("ppo_cartpole", SMALL + ["runners.num=2", "algo.asynchronous=true"])
    algo = PPO(cfg)
    try:
        algo.step()
        metrics = algo.step()
        # each batch after the first was acted by the weights before the last update
        assert metrics["staleness_mean"] > 0 and metrics["first_ratio_error"] > 0
        chunk = cfg.runners.rollout_length * cfg.runners.envs_per_runner
        assert metrics["env_steps"] == algo.runners.results_returned * chunk
    finally:
        algo.close()


@pytest.mark.parametrize(("kind", "runners"), [("discrete_mask_info", 1),
                                               ("multi_discrete_mask_obs", 1), ("box", 0),
                                               ("multi_binary", 0)])
def test_every_action_space_and_masked_actions_never_taken(kind: str, runners: int,
                                                           tmp_path: Path) -> None:
    """A masked action costs -100 and a legal one earns 1 (tests/action_envs.py): every
    episode returning exactly 20 means PPO never sampled a masked action. The masked envs
    run in a runner actor (and evaluate in an eval actor): masks come through Ray."""
    run = train({"kind": "ppo", "env": f"tests.action_envs:raydl_test/Action-{kind}-v0"},
                [f"runners.num={runners}", "runners.envs_per_runner=2", "runners.rollout_length=40",
                 "stop.env_steps=400", "algo.steps_per_iteration=80", "algo.minibatches=2",
                 "eval.every=2", "eval.episodes=2", "log.tensorboard=false", "log.curve=false"],
                out=tmp_path, progress=False, echo=False)
    assert run.metrics["env_steps"] >= 400 and run.metrics["learner_updates"] > 0
    infos = json.loads((run.run_dir / "runners.json").read_text())
    # with runner actors, the runner and the eval runner are actors (their own processes)
    assert len(infos) == 1 + runners and all((i["pid"] != os.getpid()) == bool(runners) for i in infos)
    if "mask" in kind:
        assert run.metrics["episode_return_mean"] == 20.0
        assert all(r["eval_return_mean"] == 20.0 for r in run.history if "eval_return_mean" in r)


def test_eval_and_export_normalize_as_the_runners_did(tmp_path: Path) -> None:
    run = train("ppo_cartpole", SMALL + ["runners.num=1", "algo.normalize_obs=true",
                                         "eval.every=2", "eval.episodes=2", "eval.cpus=0.5",
                                         "log.tensorboard=false"],
                out=tmp_path, progress=False, echo=False)
    cfg = load_experiment(run.run_dir / "config.yaml")
    env = registry.check(cfg)
    best = PPO.load_policy(run.run_dir / "checkpoints" / "best", cfg, env)
    newest = PPO.load_policy(run.run_dir / "checkpoints" / "iter_000004", cfg, env)
    # the policies normalize with the statistics the run had gathered, not the prior's
    assert best.normalize and newest.normalize and float(newest.obs_var.sum()) != 4.0
    from raydl.rl.export import exportable

    exported = exportable(run.run_dir / "checkpoints" / "iter_000004", cfg)
    obs = torch.randn(64, 4)
    values, actions = exported.module(obs)
    assert torch.equal(values, newest(obs)) and torch.equal(actions, values.argmax(dim=1))


def test_ppo_learns_cartpole_in_the_driver(tmp_path: Path) -> None:
    run = train("ppo_cartpole", ["runners.num=0", "runners.envs_per_runner=8",
                                 "stop.env_steps=30000", "log.tensorboard=false"],
                out=tmp_path, progress=False, echo=False)
    first = run.history[0]["episode_return_mean"]
    assert first < 40 and run.metrics["episode_return_mean"] > 150, (first, run.metrics)


@pytest.mark.parametrize("name", [p.stem for p in registry.experiment_files()
                                  if p.stem.startswith("ppo_") or p.stem == "a2c_pendulum"])
def test_every_ppo_experiment_runs(name: str, tmp_path: Path) -> None:
    run = train(name, ["stop.env_steps=300", "runners.num=0", "algo.steps_per_iteration=100",
                       "log.tensorboard=false", "log.curve=false", "checkpoint.at_end=false"],
                out=tmp_path, progress=False, echo=False)
    assert run.metrics["env_steps"] >= 300

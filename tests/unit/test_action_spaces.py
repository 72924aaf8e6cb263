"""The actor-critic worker, greedy evaluation and the check step on every action space
and both forms of action masks (toy envs of tests.action_envs, no Ray)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from raydl import registry
from raydl.config import load_experiment
from raydl.envs.spec import probe_env
from raydl.errors import ConfigError
from raydl.rl.actions import action_spec
from raydl.rl.evaluate import evaluate
from raydl.rl.networks import ActorCritic
from raydl.rl.runners.ac_worker import ACWorker


def env_id(kind: str) -> str:
    return f"tests.action_envs:raydl_test/Action-{kind}-v0"


def worker_for(kind: str, squash: bool = False, num_envs: int = 2, keep_values: bool = False) -> ACWorker:
    spec = probe_env(env_id(kind))
    actions = action_spec(spec.action_space, squash)
    return ACWorker(spec, num_envs, lambda: ActorCritic(spec.obs_shape, actions, [16]),
                    seed=0, returns="gae", gamma=0.99, ent_coef=0.01, keep_values=keep_values)


@pytest.mark.parametrize("kind", ["discrete_mask_info", "discrete_mask_obs",
                                  "multi_discrete_mask_info", "multi_discrete_mask_obs"])
def test_masked_actions_are_never_taken_and_masks_reach_the_batch(kind: str) -> None:
    worker = worker_for(kind)
    try:
        out = worker.compute_gradients(100)  # 5 episodes of 20 steps per env
        assert len(out.episodes) == 10
        assert all(ret == 20.0 for ret, _ in out.episodes)  # a masked action costs -100
        batch = worker._rollout(20)["batch"]
        size = worker.policy.actions.size
        assert batch["mask"].shape == (20, 2, size) and not batch["mask"].all()
        assert batch["value"] is None  # A2C/A3C workers keep no acting-time values
        # the network sees the observation alone: step index and the env's copy of the mask
        assert batch["obs"].shape == (20, 2, 1 + size)
        assert np.array_equal(batch["obs"][:, :, 1:].astype(bool), batch["mask"])
        assert np.isfinite(out.grads).all() and np.abs(out.grads).sum() > 0
    finally:
        worker.close()


@pytest.mark.parametrize("kind,squash", [("box", False), ("box", True), ("box_unbounded", False),
                                         ("multi_discrete", False), ("multi_binary", False),
                                         ("discrete", False)])
def test_rollouts_keep_raw_actions_and_their_log_probs(kind: str, squash: bool) -> None:
    worker = worker_for(kind, squash, keep_values=True)
    try:
        out = worker.compute_gradients(40)
        assert all(ret == 20.0 for ret, _ in out.episodes)  # Box: every env action in bounds
        batch = worker._rollout(10)["batch"]
        assert batch["mask"] is None
        obs = torch.as_tensor(batch["obs"]).flatten(0, 1)
        with torch.no_grad():
            dist, values = worker.policy.distribution_and_value(obs)
            expected = dist.log_prob(torch.as_tensor(batch["action"]).flatten(0, 1))
        assert np.allclose(batch["log_prob"].reshape(-1), expected.numpy(), atol=1e-5)
        assert np.allclose(batch["value"].reshape(-1), values.numpy(), atol=1e-6)
        if kind == "box" and not squash:  # unit std around ~0 in [-2, 1]: some samples clipped
            assert (batch["action"] > 1.0).any() or (batch["action"] < -2.0).any()
        assert np.isfinite(out.grads).all() and np.abs(out.grads).sum() > 0
    finally:
        worker.close()


def test_the_gaussian_log_std_is_learned_and_starts_at_log_std_init() -> None:
    spec = probe_env(env_id("box"))
    net = ActorCritic(spec.obs_shape, action_spec(spec.action_space), [8], log_std_init=-1.5)
    assert net.log_std is not None and torch.equal(net.log_std.data, torch.full((2,), -1.5))
    assert any(p is net.log_std for p in net.parameters())
    assert ActorCritic(4, 2, [8]).log_std is None  # Discrete nets keep their parameters


@pytest.mark.parametrize("kind", ["discrete", "box", "multi_discrete", "multi_binary",
                                  "discrete_mask_info", "multi_discrete_mask_obs"])
def test_greedy_and_epsilon_evaluation_on_every_action_space(kind: str, tmp_path: Path) -> None:
    spec = probe_env(env_id(kind))
    net = ActorCritic(spec.obs_shape, action_spec(spec.action_space), [8])
    result = evaluate(spec, net, 2, epsilon=0.5, gif=tmp_path / "play.gif")
    assert result.returns == [20.0, 20.0]  # no masked or out-of-bounds action, random or greedy
    assert result.gif is not None and result.gif.stat().st_size > 0


def test_mean_action_is_the_greedy_box_action() -> None:
    spec = probe_env(env_id("box"))
    net = ActorCritic(spec.obs_shape, action_spec(spec.action_space), [8])
    with torch.no_grad():
        net.policy.bias.copy_(torch.tensor([5.0, -0.5]))  # above the high bound, inside
        net.policy.weight.zero_()
        action = net.greedy(torch.zeros(1, *spec.obs_shape))
    assert torch.allclose(action, torch.tensor([[1.0, -0.5]]))


def test_check_step_takes_every_action_space_and_refuses_in_one_line() -> None:
    for kind in ("box", "multi_discrete", "multi_binary", "discrete_mask_obs"):
        registry.check(load_experiment({"kind": "a2c", "env": env_id(kind)}))
    with pytest.raises(ConfigError, match="algo.squash: true needs finite action bounds"):
        registry.check(load_experiment({"kind": "a2c", "env": env_id("box_unbounded"),
                                        "algo": {"squash": True}}))
    with pytest.raises(ConfigError, match="algo.squash: true is for Box"):
        registry.check(load_experiment({"kind": "a2c", "env": "CartPole-v1", "algo": {"squash": True}}))
    with pytest.raises(ConfigError, match="DQN does not take them"):
        registry.check(load_experiment({"kind": "dqn", "env": env_id("discrete_mask_obs")}))
    with pytest.raises(ConfigError, match="Box action space; DQN needs a Discrete one"):
        registry.check(load_experiment({"kind": "dqn", "env": "Pendulum-v1"}))


def test_a2c_pendulum_runs_plays_and_exports_its_mean_action(tmp_path: Path) -> None:
    """The shipped continuous experiment, cut to a few hundred steps in the driver: it
    learns (finite losses, the log std moves), plays a GIF with its mean action, and its
    ONNX export answers the clipped mean."""
    from raydl.export import export
    from raydl.rl.actor_critic import ActorCriticAlgorithm
    from raydl.rl.export import exportable, onnx_policy, raw_env_spec

    cfg = load_experiment("a2c_pendulum", ["runners.num=0", "log.tensorboard=false",
                                           "algo.steps_per_iteration=200", "algo.device=cpu"])
    algo = ActorCriticAlgorithm(cfg)
    try:
        for _ in range(2):
            metrics = algo.step()
        assert metrics["env_steps"] >= 400 and np.isfinite(metrics["value_loss"])
        assert algo.net.log_std is not None and not torch.equal(algo.net.log_std.data,
                                                                torch.full((1,), -2.0))
        played = evaluate(algo.env, algo.net, 1, gif=tmp_path / "pendulum.gif", max_frames=20)
        assert played.lengths == [200] and played.gif is not None
        (tmp_path / "ckpt").mkdir()
        algo.save(tmp_path / "ckpt")
    finally:
        algo.close()
    item = exportable(tmp_path / "ckpt", cfg)
    assert item.output_names == ("mean", "action")
    with torch.no_grad():
        mean, action = item.module(*item.example)
    assert torch.equal(action, mean.clamp(-2.0, 2.0))
    assert export(item, "onnx", tmp_path / "pendulum.onnx") < 1e-4
    onnx = onnx_policy(tmp_path / "pendulum.onnx", algo.env)
    assert evaluate(raw_env_spec(algo.env), onnx, 1).returns == pytest.approx(played.returns, abs=1e-3)


def test_keeping_values_changes_no_sampled_action() -> None:
    """PPO's workers keep V(s) at acting time: the same seed still samples the same actions."""
    batches = []
    for keep in (False, True):
        torch.manual_seed(0)  # the same initial weights
        worker = worker_for("multi_discrete_mask_info", keep_values=keep)
        try:
            batches.append(worker._rollout(30)["batch"])
        finally:
            worker.close()
    assert np.array_equal(batches[0]["action"], batches[1]["action"])
    assert np.array_equal(batches[0]["log_prob"], batches[1]["log_prob"])
    assert batches[1]["value"].shape == (30, 2)

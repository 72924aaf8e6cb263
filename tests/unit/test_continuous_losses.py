"""SAC's and TD3's pure parts on hand-computed values (raydl.rl.offpolicy_losses,
raydl.rl.continuous), and the learners' update rules on tiny in-driver runs."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from raydl.config import load_experiment
from raydl.rl.actions import action_spec
from raydl.rl.continuous import (
    OUNoise, SquashedGaussianActor, tanh_gaussian_log_prob, to_bounds,
)
from raydl.rl.offpolicy_losses import (
    alpha_loss, bellman_target, critic_loss, deterministic_actor_loss, sac_actor_loss,
    smoothed_actions, soft_next_value,
)


def test_tanh_gaussian_log_prob_by_hand_and_against_torch() -> None:
    # u = 0.5, mean 0, std 1: log N = -0.5 * 0.25 - 0.5 log(2 pi) = -1.04394;
    # tanh(0.5) = 0.462117, log(1 - 0.213552) = -0.240229; log pi = -0.803710
    u, mean, log_std = torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[0.0]])
    assert float(tanh_gaussian_log_prob(u, mean, log_std)) == pytest.approx(-0.803710, abs=1e-5)
    gen = torch.Generator().manual_seed(0)
    # float64: torch's reference inverts tanh(u) (atanh), which float32 cannot near +-1
    mean = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    log_std = torch.randn(64, 3, generator=gen, dtype=torch.float64).clamp(-2, 1)
    u = mean + log_std.exp() * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(torch.tanh(u)).sum(-1)
    torch.testing.assert_close(tanh_gaussian_log_prob(u, mean, log_std), expected, atol=1e-6, rtol=1e-6)
    # where tanh(u) rounds to 1 the correction stays finite (torch's reference does not)
    assert torch.isfinite(tanh_gaussian_log_prob(torch.tensor([[30.0]]), torch.zeros(1, 1),
                                                 torch.zeros(1, 1))).all()


def test_critic_targets_by_hand() -> None:
    reward, discount = torch.tensor([1.0, 2.0]), torch.tensor([0.9, 0.81])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])  # (critics, batch): min = [3, 1]
    next_log_prob = torch.tensor([-1.0, 0.5])
    soft = soft_next_value(next_q, next_log_prob, alpha=0.2)  # [3 + 0.2, 1 - 0.1]
    torch.testing.assert_close(soft, torch.tensor([3.2, 0.9]))
    y = bellman_target(reward, discount, terminated, soft)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 3.2, 2.0]))  # terminal: r only
    q = torch.tensor([[4.0, 1.0], [3.0, 3.0]])
    loss, td = critic_loss(q, torch.tensor([3.0, 2.0]), scale=0.5)
    # critic 1: ((1)^2 + (-1)^2)/2 = 1; critic 2: (0 + 1)/2 = 0.5; 0.5 * 1.5
    assert float(loss) == pytest.approx(0.75)
    torch.testing.assert_close(td, torch.tensor([0.5, 1.0]))
    weighted, _ = critic_loss(q, torch.tensor([3.0, 2.0]), torch.tensor([0.0, 2.0]))
    assert float(weighted) == pytest.approx((0 + 2) / 2 + (0 + 2) / 2)


def test_actor_and_alpha_losses_by_hand() -> None:
    q_pi = torch.tensor([[1.0, 4.0], [2.0, 3.0]])  # min over critics: [1, 3]
    log_prob = torch.tensor([-0.5, 0.5])
    assert float(sac_actor_loss(q_pi, log_prob, 0.1)) == pytest.approx(((-0.05 - 1) + (0.05 - 3)) / 2)
    assert float(deterministic_actor_loss(torch.tensor([1.0, 3.0]))) == pytest.approx(-2.0)
    log_alpha = torch.tensor(0.0, requires_grad=True)
    loss = alpha_loss(log_alpha, log_prob, target_entropy=-1.0)
    loss.backward()
    # d/dlog_alpha = -mean(log_prob + target) = -(-1.5 - 0.5)/2 = 1.0
    assert float(log_alpha.grad) == pytest.approx(1.0)


def test_alpha_drives_the_entropy_toward_the_target() -> None:
    """Policy entropy above the target: alpha shrinks; below it: alpha grows."""
    for log_prob, direction in ((torch.full((32,), -3.0), -1), (torch.full((32,), 2.0), 1)):
        log_alpha = torch.zeros((), requires_grad=True)
        opt = torch.optim.Adam([log_alpha], lr=0.1)
        for _ in range(20):
            opt.zero_grad()
            alpha_loss(log_alpha, log_prob, target_entropy=-1.0).backward()
            opt.step()
        assert direction * float(log_alpha.detach()) > 1.0  # moved far the right way


def test_smoothing_noise_is_clipped_and_actions_stay_in_bounds() -> None:
    actions = torch.zeros(10_000, 2)
    gen = torch.Generator().manual_seed(0)
    smoothed = smoothed_actions(actions, noise_std=1.0, noise_clip=0.5, generator=gen)
    assert float(smoothed.abs().max()) == pytest.approx(0.5)  # N(0, 1) reaches the clip
    near_edge = smoothed_actions(torch.full((1000, 1), 0.9), 1.0, 0.5, gen)
    assert float(near_edge.max()) == 1.0 and float(near_edge.min()) == pytest.approx(0.4)
    assert torch.equal(smoothed_actions(actions, 0.0, 0.5), actions)  # DDPG: no smoothing


def test_actions_scale_into_the_box_and_ou_noise_resets() -> None:
    from gymnasium import spaces

    spec = action_spec(spaces.Box(np.array([-2, 0], np.float32), np.array([2, 10], np.float32)))
    out = to_bounds(np.array([[-1.0, -1.0], [0.0, 0.5], [1.0, 1.0]], np.float32), spec)
    np.testing.assert_allclose(out, [[-2, 0], [0, 7.5], [2, 10]])
    noise = OUNoise(0.5, num_envs=2, size=1)
    rng = np.random.default_rng(0)
    for _ in range(50):
        noise.sample(rng)
    assert np.all(noise.state != 0)
    noise.reset(np.array([1]))
    assert noise.state[1, 0] == 0 and noise.state[0, 0] != 0


def test_squashed_actor_samples_in_bounds_with_finite_log_probs() -> None:
    from gymnasium import spaces

    actor = SquashedGaussianActor(3, action_spec(spaces.Box(-2.0, 2.0, (2,))), [16])
    actions, log_prob = actor.sample(torch.randn(50, 3))
    assert actions.shape == (50, 2) and bool((actions.abs() <= 1).all())
    assert log_prob.shape == (50,) and bool(torch.isfinite(log_prob).all())
    explored = actor.explore(torch.randn(5, 3), np.random.default_rng(0))
    assert explored.shape == (5, 2) and np.all(np.abs(explored) <= 1)
    greedy = actor.greedy(torch.zeros(1, 3))
    assert greedy.shape == (1, 2) and bool((greedy.abs() <= 2).all())


TINY = ["runners.num=0", "algo.hidden=[16]", "algo.batch_size=8", "algo.learning_starts=20",
        "algo.steps_per_iteration=40", "eval.every=0", "stop.eval_return_mean=null",
        "log.tensorboard=false"]


def test_td3_updates_its_actor_every_policy_delay_critic_updates() -> None:
    from raydl.rl.td3 import TD3

    algo = TD3(load_experiment("td3_pendulum", TINY + ["algo.policy_delay=3",
                                                       "runners.rollout_length=1"]))
    try:
        before = [p.detach().clone() for p in algo.actor.parameters()]
        actor_steps, changes = 0, []
        for _ in range(3):
            algo.step()
        assert algo.book.updates == 120 - 20  # one per env step past learning_starts
        state = algo.actor_opt.state_dict()["state"]
        actor_steps = int(state[0]["step"])
        changes = [not torch.equal(a, b) for a, b in zip(before, algo.actor.parameters())]
        assert actor_steps == algo.book.updates // 3 and all(changes)
        assert int(algo.critic_opt.state_dict()["state"][0]["step"]) == algo.book.updates
    finally:
        algo.close()


def test_sac_with_fixed_alpha_keeps_it_and_tuned_alpha_moves() -> None:
    from raydl.rl.sac import SAC

    for extra, moves in ((["algo.alpha=0.3"], False), ([], True)):
        algo = SAC(load_experiment("sac_pendulum", TINY + extra))
        try:
            m = algo.step()
            assert m["learner_updates"] == 20 and m["critic_loss"] is not None
            alpha = math.exp(float(algo.temperature.log_alpha))
            assert (alpha != pytest.approx(1.0, abs=1e-3)) if moves else alpha == pytest.approx(0.3)
        finally:
            algo.close()


@pytest.mark.parametrize("kind", ["sac", "td3"])
def test_a_discrete_action_space_is_one_line_naming_the_kinds_that_take_it(kind: str) -> None:
    from raydl.errors import ConfigError
    from raydl.rl.continuous_experiment import check_continuous

    cfg = load_experiment(f"{kind}_pendulum", ["env=CartPole-v1"])
    with pytest.raises(ConfigError, match=rf"^env: CartPole-v1 has a Discrete action space; "
                                          rf"{kind.upper()} needs a Box one \(for discrete "
                                          r"actions use kind dqn or ppo\)$"):
        check_continuous(cfg)

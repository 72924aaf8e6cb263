"""Policy-gradient losses and returns on hand-computed values."""

import math

import torch

from raydl.rl.losses import (
    actor_critic_loss,
    discounted_returns,
    entropy,
    gae,
    nstep_returns,
    policy_gradient_loss,
    value_loss,
)


def col(*values: float) -> torch.Tensor:
    """A (T, 1) rollout of one env."""
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1)


def test_discounted_returns_restart_at_episode_end_without_bootstrap() -> None:
    g = discounted_returns(col(1, 2, 3), ended=col(0, 1, 0), gamma=0.5)
    # t=2: 3; t=1 ends its episode: 2; t=0: 1 + 0.5 * 2
    assert torch.allclose(g, col(2.0, 2.0, 3.0))


def test_nstep_returns_bootstrap_truncation_and_termination() -> None:
    rewards = torch.tensor([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    terminated = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    ended = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # env 1: truncated at t=1
    next_values = torch.tensor([[9.0, 9.0], [9.0, 4.0], [10.0, 8.0]])
    r = nstep_returns(rewards, next_values, terminated, ended, gamma=0.5)
    # env 0: no end, bootstrap V=10 after the last step: 6, 4, 3
    # env 1: t=2: 3 + 0.5*8 = 7; t=1 truncated: 2 + 0.5*V(final)=4 (not R_2);
    #        t=0 terminated: reward only
    assert torch.allclose(r, torch.tensor([[3.0, 1.0], [4.0, 4.0], [6.0, 7.0]]))


def test_gae_by_hand_and_its_limits() -> None:
    rewards, values = col(1, 1), col(0.5, 1.0)
    next_values, zeros = col(1.0, 2.0), col(0, 0)
    adv, ret = gae(rewards, values, next_values, zeros, zeros, gamma=0.5, lam=0.5)
    # deltas: 1 + 0.5*1 - 0.5 = 1, 1 + 0.5*2 - 1 = 1; A_1 = 1, A_0 = 1 + 0.25 * 1
    assert torch.allclose(adv, col(1.25, 1.0))
    assert torch.allclose(ret, col(1.75, 2.0))
    # lam = 1: the n-step advantages; lam = 0: the one-step TD errors
    rewards = torch.tensor([[1.0, 0.0], [0.5, 2.0], [2.0, 1.0]])
    values = torch.tensor([[0.3, 1.0], [0.2, 0.1], [0.7, 0.4]])
    # where no episode ends, V(s_{t+1}) is the next row's V(s_t), as in a real rollout
    next_values = torch.tensor([[0.2, 9.0], [0.7, 0.4], [1.5, 3.0]])
    terminated = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    ended = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    a1, _ = gae(rewards, values, next_values, terminated, ended, 0.9, 1.0)
    n = nstep_returns(rewards, next_values, terminated, ended, 0.9)
    assert torch.allclose(a1, n - values)
    a0, _ = gae(rewards, values, next_values, terminated, ended, 0.9, 0.0)
    assert torch.allclose(a0, rewards + 0.9 * (1 - terminated) * next_values - values)


def test_policy_gradient_loss_value_and_no_gradient_into_advantages() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)
    advantages = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = policy_gradient_loss(logits, torch.tensor([0, 1]), advantages)
    # probabilities 0.5 and 0.25 of the taken actions
    assert abs(loss.item() - -(math.log(0.5) * 1 + math.log(0.25) * 2) / 2) < 1e-6
    loss.backward()
    assert advantages.grad is None
    # raising a positive-advantage action's logit lowers the loss
    assert logits.grad is not None and logits.grad[0, 0] < 0


def test_value_loss_entropy_and_total() -> None:
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    assert abs(value_loss(values, torch.tensor([2.0, 4.0])).item() - 2.5) < 1e-6
    assert abs(entropy(torch.zeros(3, 4)).item() - math.log(4)) < 1e-6
    assert entropy(torch.tensor([[50.0, 0.0]])).item() < 1e-6
    logits = torch.zeros(2, 2)
    total, parts = actor_critic_loss(
        logits, values, torch.tensor([0, 1]), torch.tensor([1.0, 1.0]),
        torch.tensor([2.0, 4.0]), vf_coef=0.5, ent_coef=0.1,
    )
    expected = -math.log(0.5) + 0.5 * 2.5 - 0.1 * math.log(2)
    assert abs(total.item() - expected) < 1e-6
    assert parts["value_loss"] == 2.5

"""Action distributions: entropies on hand values, log-probs against torch.distributions,
masks, and the action-space factory's refusals."""

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions as td

from raydl.errors import ConfigError
from raydl.rl.actions import action_spec
from raydl.rl.distributions import (
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    make_distribution,
    mode_to_env,
)


def close(a: torch.Tensor, b: torch.Tensor | list[float], tol: float = 1e-5) -> bool:
    return torch.allclose(a.double(), torch.as_tensor(b, dtype=torch.float64), atol=tol)


def test_entropies_on_hand_values() -> None:
    assert close(Categorical(torch.zeros(2, 4)).entropy(), [math.log(4)] * 2)
    # a mask of two actions out of four: uniform over two
    masked = Categorical(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([[1, 1, 0, 0]]))
    assert close(masked.entropy(), [math.log(2)])
    # p = (0.75, 0.25)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert close(Categorical(torch.tensor([[math.log(3.0), 0.0]])).entropy(), [h])
    assert close(MultiCategorical(torch.zeros(1, 5), [2, 3]).entropy(), [math.log(2) + math.log(3)])
    assert close(Bernoulli(torch.tensor([[0.0, math.log(3.0)]])).entropy(), [math.log(2) + h])
    # sum over dims of log sigma + (1 + log 2 pi) / 2
    gauss = DiagGaussian(torch.zeros(3, 2), torch.tensor([0.0, math.log(2.0)]))
    assert close(gauss.entropy(), [math.log(2.0) + 1.0 + math.log(2 * math.pi)] * 3)


def test_log_probs_match_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen)
    actions = torch.randint(0, 5, (6,), generator=gen)
    assert close(Categorical(logits).log_prob(actions), td.Categorical(logits=logits).log_prob(actions))
    # masked: torch's categorical over the legal actions only
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[:, 0] = False
    legal = torch.randint(1, 5, (6,), generator=gen)
    ref = td.Categorical(logits=logits.masked_fill(~mask, -float("inf")))
    assert close(Categorical(logits, mask).log_prob(legal), ref.log_prob(legal))

    mean, log_std = torch.randn(6, 3, generator=gen), torch.randn(3, generator=gen) * 0.3
    u = torch.randn(6, 3, generator=gen) * 2
    normal = td.Independent(td.Normal(mean, log_std.exp()), 1)
    assert close(DiagGaussian(mean, log_std).log_prob(u), normal.log_prob(u))
    # squashed, in float64: torch inverts tanh(u) by atanh, which float32 cannot near +-1
    # (why raw actions are the pre-tanh u)
    mean64, log_std64, u64 = mean.double(), log_std.double(), u.double()
    squashed = td.TransformedDistribution(td.Independent(td.Normal(mean64, log_std64.exp()), 1),
                                          [td.TanhTransform()])
    assert close(DiagGaussian(mean64, log_std64, squash=True).log_prob(u64),
                 squashed.log_prob(torch.tanh(u64)), tol=1e-6)

    multi = torch.randn(6, 7, generator=gen)
    acts = torch.stack([torch.randint(0, 3, (6,), generator=gen),
                        torch.randint(0, 4, (6,), generator=gen)], dim=1)
    ref_multi = (td.Categorical(logits=multi[:, :3]).log_prob(acts[:, 0])
                 + td.Categorical(logits=multi[:, 3:]).log_prob(acts[:, 1]))
    assert close(MultiCategorical(multi, [3, 4]).log_prob(acts), ref_multi)

    bits = torch.randint(0, 2, (6, 3), generator=gen)
    bern_logits = torch.randn(6, 3, generator=gen) * 3
    ref_bern = td.Bernoulli(logits=bern_logits).log_prob(bits.float()).sum(-1)
    assert close(Bernoulli(bern_logits).log_prob(bits), ref_bern)
    assert close(Bernoulli(bern_logits).entropy(), td.Bernoulli(logits=bern_logits).entropy().sum(-1))


def test_numpy_samples_follow_the_distribution() -> None:
    rng = np.random.default_rng(0)
    gauss = DiagGaussian(torch.tensor([[1.0, -2.0]]).expand(20_000, 2), torch.tensor([0.0, math.log(0.5)]))
    draws = gauss.sample(rng)
    assert np.allclose(draws.mean(0), [1.0, -2.0], atol=0.03)
    assert np.allclose(draws.std(0), [1.0, 0.5], atol=0.03)
    bern = Bernoulli(torch.full((20_000, 1), math.log(3.0))).sample(rng)  # p = 0.75
    assert abs(bern.mean() - 0.75) < 0.02
    cat = Categorical(torch.log(torch.tensor([[0.2, 0.8]])).expand(20_000, 2)).sample(rng)
    assert abs(cat.mean() - 0.8) < 0.02


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=7, max_size=7), min_size=1, max_size=6),
       st.integers(0, 2**31 - 1))
def test_masked_actions_are_never_sampled_nor_greedy(rows: list[list[bool]], seed: int) -> None:
    mask = torch.tensor(rows)
    mask[:, 0] = mask[:, 0] | ~mask[:, :3].any(1)  # MultiDiscrete (3, 4): one legal per dimension
    mask[:, 3] = mask[:, 3] | ~mask[:, 3:].any(1)
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(len(rows), 7, generator=gen) * 5).requires_grad_()
    rng = np.random.default_rng(seed)
    multi = MultiCategorical(logits, [3, 4], mask)
    for actions in (multi.sample(rng), multi.mode().numpy()):
        assert mask[np.arange(len(rows)), actions[:, 0]].all()
        assert mask[np.arange(len(rows)), 3 + actions[:, 1]].all()
    flat = Categorical(logits, mask)  # as one Discrete(7)
    for action in (flat.sample(rng), flat.mode().numpy()):
        assert mask[np.arange(len(rows)), action].all()
    # masked logits get no gradient, through log-probs and entropy
    chosen = torch.as_tensor(flat.sample(rng))
    (flat.log_prob(chosen).sum() + flat.entropy().sum() + multi.entropy().sum()).backward()
    assert logits.grad is not None and bool((logits.grad[~mask] == 0).all())
    assert torch.isfinite(flat.entropy()).all()


def test_every_state_masked_is_an_error() -> None:
    with pytest.raises(ValueError, match="every action masked"):
        Categorical(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_action_spec_per_space_and_env_actions() -> None:
    box = action_spec(spaces.Box(-2.0, 1.0, (2,)))
    assert box.kind == "gaussian" and box.size == 2
    raw = np.array([[-5.0, 0.5], [3.0, -1.0]], np.float32)
    assert np.array_equal(box.to_env(raw), [[-2.0, 0.5], [1.0, -1.0]])  # clipped to the bounds
    squash = action_spec(spaces.Box(-2.0, 1.0, (2,)), squash=True)
    assert np.allclose(squash.to_env(np.zeros((1, 2), np.float32)), [[-0.5, -0.5]])  # tanh(0) -> mid
    assert np.allclose(squash.to_env(np.full((1, 2), 30.0, np.float32)), [[1.0, 1.0]])
    md = action_spec(spaces.MultiDiscrete([3, 4], start=[1, 0]))
    assert md.size == 7 and np.array_equal(md.to_env(np.array([[2, 3]])), [[3, 3]])
    assert action_spec(spaces.MultiBinary(3)).kind == "bernoulli"
    # greedy in torch: the mean clipped, per-dimension argmax, p > 0.5
    dist = make_distribution(box, torch.tensor([[-3.0, 0.25]]), torch.zeros(2))
    assert close(mode_to_env(box, dist.mode()), [[-2.0, 0.25]])
    bern = make_distribution(action_spec(spaces.MultiBinary(3)), torch.tensor([[1.0, -1.0, 0.2]]))
    assert bern.mode().tolist() == [[1, 0, 1]]


def test_action_spaces_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="Tuple action space.*take Discrete, Box"):
        action_spec(spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))))
    with pytest.raises(ConfigError, match="algo.squash: true is for Box"):
        action_spec(spaces.Discrete(3), squash=True)
    with pytest.raises(ConfigError, match="algo.squash: true needs finite action bounds"):
        action_spec(spaces.Box(-np.inf, np.inf, (2,)), squash=True)
    unbounded = action_spec(spaces.Box(-np.inf, np.inf, (2,)))  # no squash: taken, not clipped
    assert np.array_equal(unbounded.to_env(np.array([[-1e6, 7.0]], np.float32)), [[-1e6, 7.0]])
    with pytest.raises(ValueError, match="action masks are for Discrete"):
        make_distribution(action_spec(spaces.MultiBinary(2)), torch.zeros(1, 2), mask=torch.ones(1, 2))

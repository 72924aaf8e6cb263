"""PPO's pure parts: the clipped losses on hand-computed values, the minibatch order, the
running statistics (exact merge across runners) and SB3 VecNormalize parity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from raydl.errors import ConfigError
from raydl.rl.normalize import (
    PRIOR_COUNT,
    NormStats,
    ObsNormalizer,
    RewardScaler,
    RunningMeanStd,
    merge_deltas,
    sync,
    take_deltas,
)
from raydl.rl.ppo_losses import (
    clipped_surrogate,
    epoch_minibatches,
    kl_exceeded,
    normalize_advantages,
    ppo_minibatches,
    ppo_value_loss,
)

# ratio, advantage: both clipping sides with both advantage signs, plus one inside the range
RATIOS = [1.5, 0.5, 1.5, 0.5, 1.1]
ADVS = [1.0, 1.0, -1.0, -1.0, 2.0]


def surrogate_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    old = torch.tensor([-1.0, -2.0, -0.5, -0.7, -1.2], dtype=torch.float64)
    new = (old + torch.log(torch.tensor(RATIOS, dtype=torch.float64))).requires_grad_()
    return new, old, torch.tensor(ADVS, dtype=torch.float64)


def test_clipped_surrogate_on_hand_values() -> None:
    new, old, adv = surrogate_inputs()
    out = clipped_surrogate(new, old, adv, clip_range=0.2)
    # min(rho A, clip(rho) A): 1.5,+1 -> 1.2 (clipped above); 0.5,+1 -> 0.5 (unclipped
    # wins); 1.5,-1 -> -1.5 (unclipped wins); 0.5,-1 -> -0.8 (clipped below); 1.1,2 -> 2.2
    assert out.loss.item() == pytest.approx(-(1.2 + 0.5 - 1.5 - 0.8 + 2.2) / 5, rel=1e-12)
    assert out.clip_fraction.item() == pytest.approx(4 / 5)
    kl = sum((r - 1) - math.log(r) for r in RATIOS) / 5
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-12)
    out.loss.backward()
    # d loss / d log pi = -rho A / N where the unclipped term is the min, else 0
    expected = [0.0, -0.5 * 1 / 5, -1.5 * -1 / 5, 0.0, -1.1 * 2 / 5]
    assert torch.allclose(new.grad, torch.tensor(expected, dtype=torch.float64))


def test_ratio_one_gives_minus_mean_advantage_and_zero_diagnostics() -> None:
    logp = torch.tensor([-0.3, -1.7, -2.2, -0.01])
    adv = torch.tensor([0.5, -2.0, 3.0, 1.5])
    out = clipped_surrogate(logp.clone(), logp, adv, clip_range=0.1)
    assert out.loss.item() == pytest.approx(-adv.mean().item())
    assert out.clip_fraction.item() == 0.0
    assert out.approx_kl.item() == 0.0


def test_surrogate_sends_no_gradient_into_old_log_probs_or_advantages() -> None:
    new, old, adv = surrogate_inputs()
    old.requires_grad_()
    adv.requires_grad_()
    clipped_surrogate(new, old, adv, clip_range=0.2).loss.backward()
    assert old.grad is None and adv.grad is None


def test_value_loss_unclipped_and_clipped_on_hand_values() -> None:
    values = torch.tensor([1.0, -0.05, 1.5], requires_grad=True)
    returns = torch.tensor([2.0, 0.0, 0.0])
    old = torch.tensor([0.0, 0.0, 1.0])
    plain = ppo_value_loss(values, returns)
    assert plain.item() == pytest.approx((1.0 + 0.0025 + 2.25) / 3)
    clipped = ppo_value_loss(values, returns, old, clip_range_vf=0.2)
    # V' = old + clip(V - old, -0.2, 0.2) = 0.2, -0.05, 1.2
    assert clipped.item() == pytest.approx((1.8**2 + 0.05**2 + 1.2**2) / 3)
    clipped.backward()
    # clipped samples carry no gradient; the middle one: 2 (V - R) / 3
    assert torch.allclose(values.grad, torch.tensor([0.0, 2 * -0.05 / 3, 0.0]))
    with pytest.raises(ValueError, match="old values"):
        ppo_value_loss(values, returns, None, clip_range_vf=0.2)


def test_normalize_advantages_uses_the_unbiased_std_and_leaves_one_sample() -> None:
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    std = math.sqrt(5 / 3)
    assert torch.allclose(out, torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (std + 1e-8))
    one = torch.tensor([3.0])
    assert normalize_advantages(one).item() == 3.0


def test_kl_early_stop_has_sb3s_margin() -> None:
    assert not kl_exceeded(0.015, 0.01)
    assert kl_exceeded(0.0151, 0.01)
    assert not kl_exceeded(1e9, None)


@pytest.mark.parametrize("make_gen", [lambda: torch.Generator().manual_seed(3),
                                      lambda: np.random.default_rng(3)])
def test_minibatches_cover_each_epoch_once_and_repeat_with_the_seed(make_gen) -> None:
    order = list(ppo_minibatches(10, epochs=3, minibatches=4, generator=make_gen()))
    assert [e for e, _ in order] == [0] * 4 + [1] * 4 + [2] * 4
    for epoch in range(3):
        parts = [idx for e, idx in order if e == epoch]
        assert sorted(len(p) for p in parts) == [2, 2, 3, 3]
        assert sorted(torch.cat(parts).tolist()) == list(range(10))
        assert all(p.dtype == torch.int64 for p in parts)
    again = list(ppo_minibatches(10, epochs=3, minibatches=4, generator=make_gen()))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(order, again))
    # epochs draw fresh permutations
    assert not torch.equal(torch.cat([i for e, i in order if e == 0]),
                           torch.cat([i for e, i in order if e == 1]))


def test_minibatches_reject_more_minibatches_than_samples() -> None:
    with pytest.raises(ValueError, match="minibatches must be in 1..4"):
        epoch_minibatches(4, 5, torch.Generator())


# --------------------------------------------------------------------------- statistics


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2), min_size=1,
                  max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_merging_split_statistics_equals_the_concatenation(data, cuts) -> None:
    x = np.asarray(data, np.float64)
    parts = np.split(x, sorted(c % (len(x) + 1) for c in cuts))
    total = RunningMeanStd.empty((2,))
    for part in parts:  # empty parts included: they must change nothing
        total.merge(RunningMeanStd.of(part) if len(part) else RunningMeanStd.empty((2,)))
    scale = max(1.0, float(np.abs(x).max()))
    assert total.count == len(x)
    np.testing.assert_allclose(total.mean, x.mean(axis=0), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(total.var, x.var(axis=0), rtol=1e-9, atol=1e-9 * scale**2)


def test_runner_deltas_merge_exactly_and_survive_an_asynchronous_round() -> None:
    rng = np.random.default_rng(0)
    runners = [ObsNormalizer((3,)) for _ in range(3)]
    learner = NormStats(obs=RunningMeanStd.empty((3,), PRIOR_COUNT))
    seen = []
    for round_ in range(3):
        for k, runner in enumerate(runners):
            batch = rng.normal(k, 1 + k, size=(4 + k, 3))
            runner(batch)
            seen.append(batch)
        deltas = [take_deltas(r, None) for r in runners]
        late = rng.normal(5, 2, size=(2, 3))  # runner 0 samples on before the sync
        runners[0](late)
        seen.append(late)
        learner = merge_deltas(learner, deltas)
        for r in runners:
            sync(r, None, learner)
    all_data = RunningMeanStd.of(np.concatenate(seen))
    expected = RunningMeanStd.empty((3,), PRIOR_COUNT)
    expected.merge(all_data)
    # runner 0's late data is in its view and in its pending delta, not yet in the learner's
    view = runners[0].stats.view
    np.testing.assert_allclose(view.mean, expected.mean, rtol=1e-12)
    np.testing.assert_allclose(view.var, expected.var, rtol=1e-12)
    assert view.count == pytest.approx(expected.count)
    final = merge_deltas(learner, [take_deltas(r, None) for r in runners])
    np.testing.assert_allclose(final.obs.var, expected.var, rtol=1e-12)
    # the learner's totals round-trip a JSON checkpoint exactly
    back = NormStats.from_state_dict(json.loads(json.dumps(final.state_dict())))
    assert back.ret is None and back.obs.count == final.obs.count
    np.testing.assert_array_equal(back.obs.mean, final.obs.mean)
    np.testing.assert_array_equal(back.obs.var, final.obs.var)
    assert runners[1].stats.view.count == pytest.approx(expected.count - len(late))


def test_normalizer_state_round_trips_through_json_exactly() -> None:
    norm = ObsNormalizer((2,), clip=5.0)
    norm(np.random.default_rng(1).normal(size=(7, 2)))
    restored = ObsNormalizer((2,))
    restored.load_state_dict(json.loads(json.dumps(norm.state_dict())))
    assert restored.clip == 5.0
    obs = np.array([[0.3, -8.0]])
    np.testing.assert_array_equal(restored.normalize(obs), norm.normalize(obs))
    assert restored.stats.delta.count == 0
    scaler = RewardScaler(2, gamma=0.9)
    scaler(np.array([1.0, 2.0]), np.array([False, True]))
    other = RewardScaler(2, gamma=0.5)
    other.load_state_dict(json.loads(json.dumps(scaler.state_dict())))
    assert other.gamma == 0.9 and other.stats.view.var == scaler.stats.view.var


def test_obs_normalizer_and_reward_scaler_match_sb3_vecnormalize() -> None:
    pytest.importorskip("stable_baselines3", reason="SB3 is the reference (pip install "
                        "stable-baselines3, the bench extra)")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    n, gamma = 3, 0.9
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=n, seed=0), gamma=gamma, clip_obs=1.5)
    venv.action_space.seed(0)
    obs_norm = ObsNormalizer((3,), clip=1.5)
    scaler = RewardScaler(n, gamma=gamma)
    ref_obs = venv.reset()
    np.testing.assert_allclose(obs_norm(venv.get_original_obs()), ref_obs, rtol=1e-6)
    ends = 0
    for _ in range(230):  # Pendulum truncates at 200 steps: returns reset once
        ref_obs, ref_rew, dones, _ = venv.step(np.stack([venv.action_space.sample()] * n))
        ends += int(dones.sum())
        np.testing.assert_allclose(obs_norm(venv.get_original_obs()), ref_obs, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(scaler(venv.get_original_reward(), dones), ref_rew,
                                   rtol=1e-5, atol=1e-6)
    assert ends == n
    # SB3 takes a float32 batch's np.mean/np.var in float32; raydl in float64: hence 1e-6
    np.testing.assert_allclose(obs_norm.stats.view.mean, venv.obs_rms.mean, rtol=1e-6)
    np.testing.assert_allclose(obs_norm.stats.view.var, venv.obs_rms.var, rtol=1e-6)
    np.testing.assert_allclose(scaler.stats.view.var, venv.ret_rms.var, rtol=1e-6)
    assert obs_norm.stats.view.count == pytest.approx(venv.obs_rms.count, rel=1e-12)
    venv.close()


# --------------------------------------------------------------------------- box2d


def test_a_box2d_env_without_box2d_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from raydl.envs import box2d, make_env

    real = importlib.util.find_spec
    monkeypatch.setattr(box2d.importlib.util, "find_spec",
                        lambda name, *a: None if name == "Box2D" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        make_env("LunarLander-v3")
    expected = "env: LunarLander-v3 needs the box2d package; pip install 'raydl[box2d]'"
    assert str(err.value) == expected
    from raydl.envs.spec import probe_env

    with pytest.raises(ConfigError) as err:  # the check step passes the line on as it is
        probe_env("LunarLander-v3")
    assert str(err.value) == expected
    assert box2d.is_box2d("CarRacing-v3") and box2d.is_box2d("BipedalWalker-v3")
    assert not box2d.is_box2d("CartPole-v1")
    make_env("CartPole-v1").close()  # other envs never look for it

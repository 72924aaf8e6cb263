"""The tune: section and trial sizing, without Ray."""

import pytest

from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.tune import fit_check, trial_bundles
from raydl.tune_spec import load_tune_spec, trial_experiment


def test_run_ignores_the_tune_section_and_tune_reads_it() -> None:
    cfg = load_experiment("tune_dqn_cartpole")
    assert cfg.kind == "dqn" and not hasattr(cfg, "tune")
    spec = load_tune_spec("tune_dqn_cartpole", ["tune.num_samples=3", "tune.space.algo.gamma={choice: [0.9, 0.99]}"])
    assert spec.tune.num_samples == 3 and spec.metric == "episode_return_mean" and spec.mode == "max"
    assert set(spec.tune.space) == {"algo.lr", "algo.target_update", "algo.buffer_size", "algo.gamma"}
    trial = trial_experiment(spec.base, {"algo.lr": 0.0005, "algo.buffer_size": 5000})
    assert trial.algo.lr == 0.0005 and trial.algo.buffer_size == 5000 and trial.algo.target_update == 250


@pytest.mark.parametrize(("overrides", "message"), [
    (["tune.space.algo.lrr={uniform: [1.0e-4, 1.0e-3]}"], r"'algo\.lrr' is not a field of this experiment \(did you mean 'algo\.lr'\?\)"),
    (["tune.space.algo={uniform: [0, 1]}"], r"'algo' is a section"),
    (["tune.space.algo.gamma={uniform: [0.9, 1.5]}"], r"tune\.space\.algo\.gamma: value 1\.5 is refused: algo\.gamma: expected a number >= 0 and <= 1"),
    (["tune.space.algo.lr={uniform: [0.1]}"], r"tune\.space\.algo\.lr: uniform: expected \[low, high\]"),
    (["tune.space.algo.lr={uniform: [0.1, 0.2], choice: [1]}"], r"exactly one of"),
    (["tune.search=grid"], r"tune\.search: grid needs every space entry to be grid or choice"),
    (["tune.scheduler.type=pb2"], r"pb2 needs GPy"),
    (["tune.metrc=x"], r"tune\.metrc: unknown key \(did you mean 'metric'\?\)"),
])
def test_bad_tune_sections_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tune_spec("tune_dqn_cartpole", overrides)


def test_pbt_needs_checkpointable_trials_and_a_missing_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"tune\.scheduler\.type: pbt .* for classify use fifo or asha"):
        load_tune_spec("tune_cnn_digits", ["tune.scheduler.type=pbt"])
    with pytest.raises(ConfigError, match="this experiment has no tune section"):
        load_tune_spec("dqn_cartpole")


def test_trials_are_sized_by_the_cluster() -> None:
    two_cpus = [{"CPU": 2.0}]
    dqn = load_tune_spec("tune_dqn_cartpole")
    assert trial_bundles(dqn) == [{"CPU": 1.0}]
    assert fit_check(dqn, two_cpus, {"CPU": 2.0}) == 2
    # runner actors are part of the trial: 1 learner CPU + 2 runners
    with_runners = load_tune_spec("tune_dqn_cartpole", ["runners.num=2"])
    assert trial_bundles(with_runners) == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert fit_check(with_runners, [{"CPU": 4.0}, {"CPU": 4.0}], {"CPU": 8.0}) == 2
    with pytest.raises(ConfigError, match=r"a trial needs 3 CPU and the whole cluster has 2 CPU"):
        fit_check(with_runners, two_cpus, {"CPU": 2.0})
    # a Ray Train trial: its workers count, the trial's own bundle is empty
    cnn = load_tune_spec("tune_cnn_digits")
    assert fit_check(cnn, [{"CPU": 2.0}, {"CPU": 2.0}], {"CPU": 4.0}) == 2
    gpu = load_tune_spec("tune_dqn_cartpole", ["tune.gpus_per_trial=0.5"])
    assert fit_check(gpu, [{"CPU": 16.0, "GPU": 1.0}], {"CPU": 16.0, "GPU": 1.0}) == 2  # half a GPU each
    with pytest.raises(ConfigError, match=r"needs 1 CPU, 0\.5 GPU in one place and no node has that"):
        fit_check(gpu, two_cpus, {"CPU": 2.0})

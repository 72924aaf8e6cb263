from pathlib import Path

import pytest

from raydl import registry
from raydl.config import apply_overrides, load_experiment, parse_override
from raydl.errors import ConfigError


def _load(data: dict, overrides: list[str] | None = None):
    return load_experiment({"kind": "dqn", **data}, overrides)


def test_every_shipped_experiment_loads() -> None:
    files = registry.experiment_files()
    assert {p.stem for p in files} >= {"dqn_cartpole", "ddqn_cartpole_parallel"}
    for path in files:
        cfg = load_experiment(path)
        assert cfg.kind in registry.kinds()


def test_defaults_and_yaml_numbers() -> None:
    cfg = _load({"algo": {"lr": "1e-3", "buffer_size": "100_000"}, "stop": {"env_steps": 2e4}})
    assert cfg.algo.lr == 1e-3 and cfg.algo.buffer_size == 100_000
    assert cfg.stop.env_steps == 20_000 and isinstance(cfg.stop.env_steps, int)
    assert cfg.algo.double_q is True and cfg.runners.num == 0


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"^algo\.lrr: unknown key \(did you mean 'lr'\?\)"):
        _load({"algo": {"lrr": 1e-3}})
    with pytest.raises(ConfigError, match=r"^algoo: unknown key \(did you mean 'algo'\?\)"):
        _load({"algoo": {}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"algo": {"lr": -1}}, r"algo\.lr: expected a number > 0, got -1"),
        ({"algo": {"lr": "fast"}}, r"algo\.lr: expected a number, got 'fast'"),
        ({"algo": {"gamma": 1.5}}, r"algo\.gamma: expected a number >= 0 and <= 1"),
        ({"algo": {"double_q": "yes"}}, r"algo\.double_q: expected true or false"),
        ({"algo": {"batch_size": 3.5}}, r"algo\.batch_size: expected an integer"),
        ({"algo": {"optimizer": "adamw"}}, r"algo\.optimizer: 'adamw' is not allowed \(did you mean 'adam'\?\); allowed: 'adam', 'sgd', 'rmsprop'"),
        ({"algo": {"hidden": 64}}, r"algo\.hidden: expected a list of an integer"),
        ({"algo": {"hidden": [64, "x"]}}, r"algo\.hidden\[1\]: expected an integer"),
        ({"algo": 3}, r"algo: expected a mapping"),
        ({"algo": {"batch_size": 128, "buffer_size": 64}}, r"algo\.batch_size: 128 is larger"),
        ({"runners": {"num": -1}}, r"runners\.num: expected a number >= 0"),
        ({"algo": {"lr": float("nan")}}, r"algo\.lr: expected a finite number"),
        ({"stop": {"eval_return_mean": 400}}, r"stop\.eval_return_mean: needs evaluations; set eval\.every"),
        ({"eval": {"every": 2, "video_every": 3}}, r"eval\.video_every: 3 is not a multiple of eval\.every \(2\)"),
        ({"eval": {"epsilon": 2}}, r"eval\.epsilon: expected a number >= 0 and <= 1"),
    ],
)
def test_bad_values_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"env": "CartPol-v1"}, r"env: unknown environment id 'CartPol-v1' \(did you mean 'CartPole-v1'\?\)"),
        ({"env": "Pendulum-v1"}, r"env: Pendulum-v1 has a Box action space; DQN needs a Discrete one"),
    ],
)
def test_the_world_is_checked_by_the_check_step_not_by_loading(data: dict, message: str) -> None:
    cfg = _load(data)  # loading looks at the values only, and does not fail
    with pytest.raises(ConfigError, match=message) as info:
        registry.check(cfg)
    assert "\n" not in str(info.value)


def test_kind_defaults_are_filled_in_when_loading_and_never_changed_after() -> None:
    raw = {"kind": "a2c", "algo": {"lr": 1e-3}}
    cfg = load_experiment(raw)
    assert (cfg.algo.asynchronous, cfg.algo.returns) == (False, "nstep")
    assert raw == {"kind": "a2c", "algo": {"lr": 1e-3}}  # the caller's mapping is untouched
    assert load_experiment({"kind": "reinforce", "algo": {"returns": None}}).algo.returns == "episode"
    # an explicit value wins over the kind's default (and is then checked like any other)
    assert load_experiment({"kind": "a3c", "algo": {"returns": "gae"}}).algo.returns == "gae"
    cfg = load_experiment({"kind": "a3c"})
    before = repr(cfg)
    cfg.validate()  # validating twice changes nothing
    assert repr(cfg) == before


def test_unknown_kind_lists_allowed() -> None:
    with pytest.raises(ConfigError, match=r"kind: unknown kind 'dq' \(did you mean 'dqn'\?\); allowed: a2c, a3c, cf_rbm, classify, dbn, dqn, gan, language_model, ppo, rbm, reinforce, sac, td3, vae"):
        load_experiment({"kind": "dq"})
    with pytest.raises(ConfigError, match="kind: missing"):
        load_experiment({"env": "CartPole-v1"})


def test_overrides() -> None:
    cfg = _load({}, ["algo.lr=3e-4", "algo.hidden=[32, 32]", "runners.num=2", "stop.episode_return_mean=null"])
    assert cfg.algo.lr == 3e-4 and cfg.algo.hidden == [32, 32] and cfg.runners.num == 2
    assert cfg.stop.episode_return_mean is None
    assert parse_override("a.b=x") == (["a", "b"], "x")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("algo.lr")
    with pytest.raises(ConfigError, match="not a dotted key"):
        parse_override("algo..lr=1")
    with pytest.raises(ConfigError, match="env is a value, not a section"):
        apply_overrides({"env": "CartPole-v1"}, ["env.x=1"])
    with pytest.raises(ConfigError, match=r"algo\.nope: unknown key"):
        _load({}, ["algo.nope=1"])


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: dqn\nalgo: {lr: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+"):
        load_experiment(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections, got list"):
        load_experiment(listy)
    with pytest.raises(ConfigError, match=r"no such experiment file or name \(did you mean 'dqn_cartpole'\?\)"):
        load_experiment("dqn_cartpol")


def test_gpu_only_options_are_refused_on_a_cpu_learner() -> None:
    import torch

    if torch.cuda.is_available():  # on a GPU machine both are valid
        registry.check(_load({"algo": {"device": "cuda", "amp": True}}))
        return
    with pytest.raises(ConfigError, match=r"^algo\.device: 'cuda' but no CUDA device"):
        registry.check(_load({"algo": {"device": "cuda"}}))
    with pytest.raises(ConfigError, match=r"^algo\.amp: mixed precision needs a CUDA learner"):
        registry.check(_load({"algo": {"amp": True}}))

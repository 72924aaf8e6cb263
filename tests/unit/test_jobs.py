"""What `raydl submit` builds before it talks to a cluster (no Ray needed)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from raydl.errors import ConfigError
from raydl.jobs import build_request, jobs_address


def _experiment(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "exp.yaml"
    path.write_text("kind: dqn\nenv: CartPole-v1\nstop: {env_steps: 1000}\n")
    return path


def test_a_file_in_the_working_dir_is_sent_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _experiment(tmp_path / "project" / "exps")
    monkeypatch.chdir(tmp_path / "project")
    req = build_request("exps/exp.yaml", ["algo.lr=3e-4"], env=["WANDB_MODE=offline"], pip=["rich"])
    argv = shlex.split(req.entrypoint)
    assert argv[:6] == ["python", "-m", "raydl", "run", "exps/exp.yaml", "--address"]
    assert argv[argv.index("--set") + 1] == "algo.lr=3e-4" and "--no-progress" in argv
    assert req.entrypoint.endswith("--out ~/raydl_runs --no-progress")  # `~` left for the head's shell
    assert req.runtime_env["working_dir"] == str(tmp_path / "project")
    assert {"runs/", ".venv/", ".git/"} <= set(req.runtime_env["excludes"])
    assert req.runtime_env["env_vars"]["WANDB_MODE"] == "offline"
    assert req.runtime_env["pip"] == ["rich"]
    assert req.submission_id.startswith("raydl-exp-")


def test_tune_jobs_and_built_in_names(tmp_path: Path) -> None:
    req = build_request("tune_dqn_cartpole", [], tune=True, num_samples=32, working_dir=tmp_path,
                        out="/shared/runs dir")
    argv = shlex.split(req.entrypoint)
    assert argv[3:5] == ["tune", "tune_dqn_cartpole"]  # a name, for the cluster's raydl
    assert argv[argv.index("--num-samples") + 1] == "32"
    assert argv[argv.index("--out") + 1] == "/shared/runs dir" and "--no-progress" not in argv
    assert req.metadata == {"raydl_experiment": "tune_dqn_cartpole", "raydl_command": "tune"}


@pytest.mark.parametrize("kwargs, message", [
    ({"experiment": "dqn_cartpole", "overrides": ["algo.lr=-1"]}, "algo.lr: expected a number > 0"),
    ({"experiment": "dqn_cartpole", "overrides": [], "tune": True}, "tune"),
    ({"experiment": "tune_dqn_cartpole", "overrides": ["tune.space.algo.nope={choice: [1]}"],
      "tune": True}, "algo.nope"),
    ({"experiment": "dqn_cartpole", "overrides": [], "num_samples": 4}, "--num-samples: only with --tune"),
    ({"experiment": "tune_dqn_cartpole", "overrides": [], "tune": True, "num_samples": 0},
     "--num-samples: expected an integer >= 1"),
    ({"experiment": "dqn_cartpole", "overrides": [], "env": ["1BAD=x"]}, "--env '1BAD=x'"),
    ({"experiment": "dqn_cartpole", "overrides": [], "env": ["NOEQUALS"]}, "--env 'NOEQUALS'"),
    ({"experiment": "dqn_cartpole", "overrides": [], "working_dir": "/no/such/dir"}, "--working-dir"),
    ({"experiment": "dqn_cartpol", "overrides": []}, "did you mean 'dqn_cartpole'"),
])
def test_bad_input_is_refused_before_anything_is_sent(kwargs: dict, message: str, tmp_path: Path) -> None:
    kwargs.setdefault("working_dir", tmp_path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        build_request(**kwargs)
    assert "\n" not in str(err.value)


def test_a_file_outside_the_working_dir_is_refused(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "elsewhere")
    (tmp_path / "project").mkdir()
    with pytest.raises(ConfigError, match="must be inside the working directory"):
        build_request(str(path), [], working_dir=tmp_path / "project")


def test_jobs_address_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no Jobs API address"):
        jobs_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address is not the Jobs API
    with pytest.raises(ConfigError, match="no Jobs API address"):
        jobs_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.5:8265/")
    assert jobs_address(None) == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "10.0.0.6:8265")
    assert jobs_address(None) == "http://10.0.0.6:8265"
    assert jobs_address("https://ray.example.com") == "https://ray.example.com"
    with pytest.raises(ConfigError, match="dashboard"):
        jobs_address("auto")

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
    assert req.entrypoint.endswith("--out '~/raydl_runs' --no-progress")  # raydl expands ~/ on the head
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


def test_submit_uploads_no_credentials_and_nothing_for_a_built_in_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Used to: `--working-dir .` by default, with only outputs excluded, so .env files,
    keys, ~/.ssh-like folders and data went to the head node with every job."""
    from raydl.jobs import upload_size

    project = tmp_path / "project"
    _experiment(project)
    (project / "envs.py").write_text("x = 1\n")
    secrets = {".env": "KEY=1", "id_rsa": "k", "id_ed25519.pub": "k", "cert.pem": "c",
               ".ssh/config": "Host x", ".aws/credentials": "k", ".ray/auth_token": "t",
               "gcloud/credentials.db": "k", "api.token": "t", ".netrc": "m", "my_secret.txt": "s",
               "data/train.csv": "1,2", "runs/r/metrics.jsonl": "{}", ".git/config": "x"}
    for name, text in secrets.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    monkeypatch.chdir(project)
    built_in = build_request("dqn_cartpole", [])
    assert "working_dir" not in built_in.runtime_env  # the cluster's raydl knows the name
    from_file = build_request("exp.yaml", [])
    assert from_file.runtime_env["working_dir"] == str(project)
    files, size = upload_size(project, from_file.runtime_env["excludes"])
    assert files == 2 and size == len("x = 1\n") + (project / "exp.yaml").stat().st_size


@pytest.mark.parametrize("out", ["~/r;touch${IFS}pwned", "/tmp/x$(touch pwned)", "~/a b`touch pwned`"])
def test_out_reaches_raydl_as_one_word_and_runs_nothing(out: str, tmp_path: Path) -> None:
    """The entrypoint runs in a shell on the head: executed here by a real shell with a
    stand-in `python` that records its arguments. `~/r;touch${IFS}pwned` used to run the
    touch (the ~ value went in unquoted so the head's shell would expand it)."""
    import os
    import stat
    import subprocess

    req = build_request("dqn_cartpole", [], out=out)
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGS_FILE"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "ARGS_FILE": str(tmp_path / "args")}
    subprocess.run(["sh", "-c", req.entrypoint], cwd=tmp_path, env=env, check=True, timeout=30)
    argv = (tmp_path / "args").read_text().splitlines()
    assert argv[argv.index("--out") + 1] == out
    assert not (tmp_path / "pwned").exists()


def test_a_relative_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--out 'runs': give an absolute path or one under ~/"):
        build_request("dqn_cartpole", [], out="runs")


def test_the_token_is_not_sent_in_clear_to_another_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from raydl.jobs import PLAIN_HTTP_OPT_IN, refuse_token_in_clear

    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    monkeypatch.delenv(PLAIN_HTTP_OPT_IN, raising=False)
    for url in ("http://10.0.0.5:8265", jobs_address("ray-head.example.com:8265")):
        with pytest.raises(ConfigError, match="would be sent in clear text"):
            refuse_token_in_clear(url)
    for url in ("http://127.0.0.1:8265", "http://localhost:8265", "https://10.0.0.5:8265"):
        refuse_token_in_clear(url)  # loopback (a tunnel) or TLS
    monkeypatch.setenv(PLAIN_HTTP_OPT_IN, "1")
    refuse_token_in_clear("http://10.0.0.5:8265")  # the user said so


def test_a_users_own_env_module_goes_with_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`raydl submit dqn_cartpole --set env=my_envs:Maze-v0`: the cluster needs my_envs.py,
    so the current directory is uploaded (without credentials), not nothing."""
    monkeypatch.chdir(tmp_path)
    req = build_request("dqn_cartpole", ["env=my_envs:Maze-v0"])
    assert req.runtime_env["working_dir"] == str(tmp_path)
    assert "working_dir" not in build_request("dqn_cartpole", ["env=CartPole-v1"]).runtime_env


def test_a_path_named_env_module_is_uploaded_and_named_relative_to_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--set env=envs/my_envs.py:Maze-v0` (or the same in the experiment file): the file
    must be in the uploaded directory, and the job names it relative to that directory."""
    project = tmp_path / "project"
    (project / "envs").mkdir(parents=True)
    (project / "envs" / "my_envs.py").write_text("x = 1\n")
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    req = build_request("dqn_cartpole", ["env=../envs/my_envs.py:Maze-v0"], working_dir=project)
    argv = shlex.split(req.entrypoint)
    assert [a for a in argv if a.startswith("env=")] == ["env=envs/my_envs.py:Maze-v0"]
    monkeypatch.chdir(project)
    exp = project / "exp.yaml"
    exp.write_text("kind: dqn\nenv: envs/my_envs.py:Maze-v0\n")
    req = build_request("exp.yaml", [])  # no --set: the file's own env needs the upload
    assert req.runtime_env["working_dir"] == str(project) and "--set" not in req.entrypoint
    for overrides, message in ((["env=envs/nope.py:Maze-v0"], "env: envs/nope.py: no such file"),
                               ([f"env={tmp_path}/x.py:Maze-v0"], "must be inside the working directory")):
        (tmp_path / "x.py").write_text("x = 1\n")
        with pytest.raises(ConfigError, match=message):
            build_request("dqn_cartpole", overrides)


def test_raydl_itself_goes_with_the_job_unless_the_working_dir_is_its_checkout(tmp_path: Path) -> None:
    """A pip-installed raydl (or one run from elsewhere) is sent as the job's py_modules,
    so the cluster runs this raydl; a checkout uploaded as the working dir carries it."""
    import raydl

    package = Path(raydl.__file__).resolve().parent
    assert build_request("dqn_cartpole", []).runtime_env["py_modules"] == [str(package)]
    assert build_request("dqn_cartpole", [], working_dir=tmp_path).runtime_env["py_modules"] == [str(package)]
    assert "py_modules" not in build_request("dqn_cartpole", [], working_dir=package.parent).runtime_env

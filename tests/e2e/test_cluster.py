"""A real `ray start --head` on loopback: `raydl submit` through its Jobs API, `raydl jobs`,
token authentication, and a second node joined with a custom resource for runner actors."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
SUMMARY = "raydl: dqn on CartPole-v1 stopped"
# The test cluster's own token, set by the `head` fixture: the cluster runs in token mode
# whatever this machine's ~/.ray holds, and every client finds the token as a user's would.
TOKEN_ENV: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    """What a user's shell has after activating the venv: the cluster's job drivers run
    `python -m raydl` from PATH, as on a real head node where raydl is installed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           **TOKEN_ENV}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    return env


def _node_ports() -> list[str]:
    """Every port a node listens on, free ones: two nodes share this machine, and other Ray
    instances (an embedded test Ray, a benchmark) may run beside them."""
    return [
        "--node-manager-port", str(_free_port()), "--object-manager-port", str(_free_port()),
        "--dashboard-agent-listen-port", str(_free_port()),
        "--dashboard-agent-grpc-port", str(_free_port()),
        "--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
        "--object-store-memory", str(200 * 1024 * 1024),
    ]


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    """`ray start` in its own session: the daemons it forks stay in that process group,
    so teardown stops exactly this cluster (`ray stop` would kill every Ray on the machine,
    including other tests' or a user's)."""
    starter = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=_env())
    out, _ = starter.communicate(timeout=180)
    if starter.returncode != 0:
        _stop(starter)
        pytest.fail(f"{' '.join(cmd[:3])} failed:\n{out[-3000:]}")
    return starter


def _stop(starter: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(starter.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(3)


@dataclass
class Head:
    port: int
    dashboard: str
    temp_dir: str

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    temp = tempfile.mkdtemp(prefix="rdl-", dir="/tmp")  # short: unix socket paths
    port, dash = _free_port(), _free_port()
    token = Path(temp) / "auth_token"
    token.write_text(secrets.token_hex(32))
    TOKEN_ENV.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    starter = None
    try:
        starter = _start([
            RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--num-cpus", "3", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--ray-client-server-port", str(_free_port()),
            "--disable-usage-stats", "--temp-dir", temp, *_node_ports(),
        ])
        yield Head(port, f"http://127.0.0.1:{dash}", temp)
    finally:
        if starter is not None:
            _stop(starter)
        TOKEN_ENV.clear()
        shutil.rmtree(temp, ignore_errors=True)


def raydl(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raydl", *args], cwd=cwd, env=env or _env(),
                          text=True, capture_output=True, timeout=timeout)


def _tiny_dqn(folder: Path, runners: int = 2, env_steps: int = 1_000) -> Path:
    """A small experiment file of the user's own, in the working directory the job uploads."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_dqn.yaml"
    path.write_text(
        "kind: dqn\nenv: CartPole-v1\nseed: 3\n"
        f"stop: {{env_steps: {env_steps}}}\n"
        "algo: {steps_per_iteration: 500, learning_starts: 200, buffer_size: 5000}\n"
        f"runners: {{num: {runners}, cpus_per_runner: 0.5}}\n"
        "log: {progress: false, tensorboard: false}\n"
    )
    return path


def test_submit_runs_the_experiment_as_a_job_on_the_cluster(head: Head, tmp_path: Path) -> None:
    project = tmp_path / "project"
    _tiny_dqn(project)
    out = tmp_path / "outputs"
    proc = raydl("submit", "tiny_dqn.yaml", "--address", head.dashboard, "--out", str(out),
                 "--set", "algo.gamma=0.98", "--env", "RAYDL_TEST_MARK=1", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_id = re.search(r"job (\S+) submitted", proc.stdout).group(1)
    assert SUMMARY in proc.stdout  # the job's own output, tailed while it ran
    assert proc.stdout.strip().splitlines()[-1] == f"raydl submit: job {job_id} SUCCEEDED"

    # The job ran on the cluster (its runner actors in the head's GCS), from the uploaded
    # file, with the --set override applied.
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    runners = json.loads((run_dir / "runners.json").read_text())
    assert len(runners) == 2 and all(r["gcs_address"].endswith(f":{head.port}") for r in runners)
    assert "gamma: 0.98" in (run_dir / "config.yaml").read_text()

    listed = raydl("jobs", "list", "--address", head.dashboard, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert "SUCCEEDED" in row and "tiny_dqn.yaml" in row
    logs = raydl("jobs", "logs", job_id, "--address", head.dashboard, cwd=tmp_path)
    assert logs.returncode == 0 and SUMMARY in logs.stdout


def test_submit_a_users_env_module_named_by_path(head: Head, tmp_path: Path) -> None:
    """`raydl submit dqn_cartpole --set env=envs/my_envs.py:Maze-v0` from the user's own
    directory: the file goes up with it, the job's driver imports it and hands it to its
    runner actor; raydl goes with the job too (py_modules), and both arrive together."""
    from tests.e2e.test_cli import MY_ENVS

    project = tmp_path / "project"
    (project / "envs").mkdir(parents=True)
    (project / "envs" / "my_envs.py").write_text(MY_ENVS)
    out = tmp_path / "outputs"
    proc = raydl("submit", "dqn_cartpole", "--address", head.dashboard, "--out", str(out),
                 "--set", "env=envs/my_envs.py:Maze-v0", "--set", "runners.num=1",
                 "--set", "runners.cpus_per_runner=0.5", "--set", "stop.env_steps=500",
                 "--set", "log.tensorboard=false", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].endswith(" SUCCEEDED")
    assert "raydl: dqn on envs/my_envs.py:Maze-v0 stopped (env_steps" in proc.stdout
    assert "so the cluster runs this raydl" in proc.stdout
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    (runner,) = json.loads((run_dir / "runners.json").read_text())
    assert runner["gcs_address"].endswith(f":{head.port}")


def test_jobs_stop_and_job_status_exit_codes(head: Head, tmp_path: Path) -> None:
    project = tmp_path / "project"
    _tiny_dqn(project, runners=0, env_steps=10_000_000)
    proc = raydl("submit", "tiny_dqn.yaml", "--address", head.dashboard, "--no-wait",
                 "--out", str(tmp_path / "outputs"), cwd=project)
    assert proc.returncode == 0, proc.stderr
    job_id = re.search(r"job (\S+) submitted", proc.stdout).group(1)
    stopped = raydl("jobs", "stop", job_id, "--address", head.dashboard, cwd=tmp_path)
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    follow = raydl("jobs", "logs", job_id, "--follow", "--address", head.dashboard, cwd=tmp_path)
    assert follow.returncode == 130  # a stopped job's status, as `raydl submit` would exit

    # A job that fails on the cluster: submit exits 1 and says why.
    failing = raydl("submit", "tiny_dqn.yaml", "--address", head.dashboard,
                    "--out", "/proc/raydl-cannot-write", cwd=project)
    assert failing.returncode == 1, failing.stdout[-2000:] + failing.stderr[-2000:]
    last = failing.stdout.strip().splitlines()[-1]
    assert last.startswith("raydl submit: job ") and " FAILED: " in last and "exit code 2" in last
    assert "raydl: error: --out /proc/raydl-cannot-write" in failing.stdout  # tailed job output

    unknown = raydl("jobs", "logs", "raydl-no-such-job", "--address", head.dashboard, cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("raydl: error: job raydl-no-such-job: no such job on this "
                                      "cluster (raydl jobs list shows them)")


def test_submit_refuses_bad_input_and_a_wrong_token(head: Head, tmp_path: Path) -> None:
    _tiny_dqn(tmp_path)
    bad = raydl("submit", "tiny_dqn.yaml", "--address", head.dashboard, "--set", "algo.lr=-1",
                cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "raydl: error: algo.lr: expected a number > 0, got -1.0"
    outside = raydl("submit", str(tmp_path / "tiny_dqn.yaml"), "--address", head.dashboard,
                    "--working-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert outside.returncode == 2 and "--working-dir" in outside.stderr
    (tmp_path / "empty").mkdir()
    outside = raydl("submit", str(tmp_path / "tiny_dqn.yaml"), "--address", head.dashboard,
                    "--working-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert outside.returncode == 2
    assert "must be inside the working directory" in outside.stderr

    # Token authentication is on: the right token (found through RAY_AUTH_TOKEN_PATH, as
    # in every other call here) is accepted, a wrong one is refused in one line.
    wrong = raydl("jobs", "list", "--address", head.dashboard, cwd=tmp_path,
                  env={**_env(), "RAY_AUTH_TOKEN": "0" * 64})
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert "refused the authentication token" in line and "RAY_AUTH_TOKEN" in line


def _node_ids(gcs: str) -> dict[str, str]:
    """node id -> 'head' / 'worker', as the cluster reports them."""
    code = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR');"
        "print(json.dumps({n['NodeID']: ('worker' if 'runner_node' in n['Resources'] else 'head')"
        " for n in ray.nodes() if n['Alive']}))" % gcs
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(),
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_node_cluster_places_runners_by_custom_resource(head: Head, tmp_path: Path) -> None:
    worker = _start([
        RAY, "start", "--address", head.gcs, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
        "--resources", json.dumps({"runner_node": 2}), "--disable-usage-stats", *_node_ports(),
    ])
    try:
        nodes = _node_ids(head.gcs)
        assert sorted(nodes.values()) == ["head", "worker"]
        proc = raydl("run", "ddqn_cartpole_parallel", "--address", head.gcs, "--out", str(tmp_path),
                     "--set", "stop.env_steps=1000", "--set", "algo.steps_per_iteration=500",
                     "--set", "algo.learning_starts=200", "--set", "runners.resources={runner_node: 1}",
                     "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1].startswith("raydl: dqn on CartPole-v1 stopped")
        (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        runners = json.loads((run_dir / "runners.json").read_text())
        # Both runners on the node that has the resource; the learner (this driver) and the
        # head's CPUs were not used for them.
        assert len(runners) == 2
        assert {nodes[r["node_id"]] for r in runners} == {"worker"}
        assert all(r["gcs_address"].endswith(f":{head.port}") for r in runners)
    finally:
        _stop(worker)

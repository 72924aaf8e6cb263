"""`raydl run --address` against a real `ray start --head` on loopback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[int]:
    """A head node in its own process group, so teardown stops exactly it (a plain
    `ray stop` would also kill any other Ray on the machine)."""
    temp = tempfile.mkdtemp(prefix="rdl-", dir="/tmp")  # short: unix socket paths
    port = _free_port()
    cmd = [
        RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
        "--temp-dir", temp, "--ray-client-server-port", str(_free_port()),
        "--dashboard-port", str(_free_port()),
    ]
    starter = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = starter.communicate(timeout=120)
        assert starter.returncode == 0, out[-3000:]
        yield port
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(starter.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(3)
        shutil.rmtree(temp, ignore_errors=True)


def test_run_on_a_ray_start_head_cluster(ray_head: int, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "raydl", "run", "ddqn_cartpole_parallel",
         "--address", f"127.0.0.1:{ray_head}", "--out", str(tmp_path),
         "--set", "stop.env_steps=1000", "--set", "algo.steps_per_iteration=500",
         "--set", "algo.learning_starts=200", "--no-progress"],
        cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("raydl: dqn on CartPole-v1 stopped")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    runners = json.loads((run_dir / "runners.json").read_text())
    assert len(runners) == 2
    # the runners lived in the cluster we started, not in an embedded Ray
    assert all(r["gcs_address"].endswith(f":{ray_head}") for r in runners)
    assert len({r["node_id"] for r in runners}) == 1 and runners[0]["node_id"]

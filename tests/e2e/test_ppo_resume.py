"""PPO with observation and reward normalization survives a SIGKILL of its whole process
group: the newest checkpoint's statistics hold exactly the observations and returns the
run had counted, and `raydl run --resume` continues them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from raydl import checkpoint as ckpt
from raydl.metrics import read_metrics
from raydl.rl.normalize import PRIOR_COUNT
from tests.e2e.test_cli import _group_alive, _run_dir

CHUNK, ITERATIONS, ENVS = 128, 10, 4  # one runner actor, 4 envs x 32 steps per request


def _norm_counts(checkpoint: Path) -> tuple[int, float, float]:
    state = ckpt.load_json(checkpoint / "state.json")
    return state["env_steps"], state["norm"]["obs"]["count"], state["norm"]["ret"]["count"]


def test_ppo_resumes_its_normalizers_after_the_driver_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    args = ["--set", f"stop.env_steps={CHUNK * ITERATIONS}", "--set", f"algo.steps_per_iteration={CHUNK}",
            "--set", "runners.num=1", "--set", f"runners.envs_per_runner={ENVS}",
            "--set", "runners.rollout_length=32", "--set", "algo.minibatches=2",
            "--set", "algo.normalize_obs=true", "--set", "algo.normalize_reward=true",
            "--set", "checkpoint.every=2", "--set", "log.tensorboard=false", "--no-progress"]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "raydl", "run", "ppo_cartpole", *args,
                                 "--out", str(out)], cwd=tmp_path, env=env, stdout=log,
                                stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list(out.iterdir()) if out.is_dir() else []
            rows = read_metrics(runs[0]) if runs else []
            if rows and rows[-1]["iteration"] >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 60
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    run_dir = _run_dir(out)
    # the killed run's newest checkpoint: every observation counted once (each env's
    # first one, then one per step), every reward once, on top of the prior's count
    steps, obs_count, ret_count = _norm_counts(ckpt.latest_checkpoint(run_dir))
    assert steps > 0 and obs_count == PRIOR_COUNT + steps + ENVS and ret_count == PRIOR_COUNT + steps

    resumed = subprocess.run([sys.executable, "-m", "raydl", "run", "--resume", str(run_dir),
                              "--no-progress"], cwd=tmp_path, env=env, text=True,
                             capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, ITERATIONS + 1))
    # the resumed run went on from the checkpoint's statistics: its envs started fresh
    # episodes once more (ENVS more first observations), nothing else was lost or doubled
    end_steps, obs_count, ret_count = _norm_counts(ckpt.latest_checkpoint(run_dir))
    assert end_steps == CHUNK * ITERATIONS
    assert obs_count == PRIOR_COUNT + end_steps + 2 * ENVS and ret_count == PRIOR_COUNT + end_steps

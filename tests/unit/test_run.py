from pathlib import Path

import pytest

from raydl.config import StopConfig, dump_yaml, load_experiment
from raydl.errors import CheckpointError, ConfigError
from raydl.run import stop_reason, train


def test_stop_reason_first_criterion_wins() -> None:
    stop = StopConfig(env_steps=1000, episode_return_mean=450, iterations=0, time_s=60)
    assert stop_reason(stop, {"env_steps": 10, "episode_return_mean": 20}, 1.0) is None
    assert stop_reason(stop, {"env_steps": 10, "episode_return_mean": None}, 1.0) is None
    assert "episode_return_mean 451 >= 450" in stop_reason(
        stop, {"env_steps": 10, "episode_return_mean": 451.0}, 1.0
    )
    assert "env_steps 1,000 reached" in stop_reason(stop, {"env_steps": 1000}, 1.0)
    assert "time 60s reached" in stop_reason(stop, {"env_steps": 1}, 61.0)
    assert stop_reason(StopConfig(env_steps=0, iterations=3), {"iteration": 3}, 0) == (
        "iterations 3 reached"
    )


def test_resume_refuses_changing_what_the_run_is(tmp_path: Path) -> None:
    dump_yaml(load_experiment("dqn_cartpole"), tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match=r"--set 'algo.lr=0.1': cannot change this on --resume"):
        train(resume=tmp_path, overrides=["algo.lr=0.1"], echo=False)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        train(resume=tmp_path, overrides=["stop.env_steps=5"], echo=False)
    with pytest.raises(ConfigError, match="not a run directory"):
        train(resume=tmp_path / "nope", echo=False)


def test_one_writer_per_run_directory_and_a_killed_writer_leaves_no_lock(tmp_path: Path) -> None:
    """A `--resume` while the run still goes is refused in one line (both used to write
    checkpoints and metrics into the one directory); once the first process is SIGKILLed
    the kernel has dropped its lock and the resume goes through."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "runs"
    first = subprocess.Popen(
        [sys.executable, "-m", "raydl", "run", "dqn_cartpole", "--out", str(out), "--no-progress",
         "--set", "runners.num=0", "--set", "stop.env_steps=10000000", "--set", "log.tensorboard=false",
         "--set", "checkpoint.every=1", "--set", "algo.steps_per_iteration=500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*/checkpoints/iter_*/state.json")):
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        (run_dir,) = out.iterdir()
        second = subprocess.run([sys.executable, "-m", "raydl", "run", "--resume", str(run_dir), "--no-progress"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "in use by another raydl process" in second.stderr
        assert f"pid {first.pid}" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    third = subprocess.run([sys.executable, "-m", "raydl", "run", "--resume", str(run_dir), "--no-progress",
                            "--set", "stop.env_steps=1"], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr


def test_a_resume_leaves_no_step_twice_in_tensorboard(tmp_path: Path) -> None:
    """Rows after the last checkpoint are dropped on resume from metrics.jsonl and, with
    TensorBoard's purge_step, from what TensorBoard shows: every step once, the resumed
    values where the two runs overlap."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raydl.metrics import read_metrics

    base = ["runners.num=0", "algo.steps_per_iteration=500", "checkpoint.every=2",
            "checkpoint.at_end=false", "log.curve=false", "algo.learning_starts=200"]
    first = train("dqn_cartpole", base + ["stop.env_steps=2500"], out=tmp_path, progress=False, echo=False)
    assert [r["iteration"] for r in read_metrics(first.run_dir)] == [1, 2, 3, 4, 5]  # 5: after the checkpoint
    second = train(resume=first.run_dir, overrides=["stop.env_steps=3500"], progress=False, echo=False)
    rows = read_metrics(second.run_dir)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    events = EventAccumulator(str(first.run_dir / "tensorboard"), purge_orphaned_data=True)
    events.Reload()
    shown = events.Scalars("iteration")
    steps = [e.step for e in shown]
    assert steps == sorted(set(steps)) == [r["env_steps"] for r in rows]
    assert [e.value for e in shown] == [r["iteration"] for r in rows]


def test_run_and_search_folders_are_claimed_atomically(tmp_path: Path) -> None:
    """Two runs (or two `raydl tune`) started in the same second used to share a folder
    (check, then create); each claim is one mkdir now."""
    from raydl.run import make_unique_dir
    from raydl.tune import _claim_folder

    names = [make_unique_dir(tmp_path, "dqn_cartpole-20261202-070000").name for _ in range(3)]
    assert names == ["dqn_cartpole-20261202-070000", "dqn_cartpole-20261202-070000-2",
                     "dqn_cartpole-20261202-070000-3"]
    searches = [_claim_folder(tmp_path / "tune", "tune_dqn-tune-20261202-070000") for _ in range(2)]
    assert searches == ["tune_dqn-tune-20261202-070000", "tune_dqn-tune-20261202-070000-2"]
    assert all((tmp_path / "tune" / s).is_dir() for s in searches)


def test_out_under_home_is_expanded_by_raydl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`raydl submit` hands `--out '~/raydl_runs'` quoted, so no shell expands it: raydl does."""
    monkeypatch.setenv("HOME", str(tmp_path))
    result = train("dqn_cartpole", ["runners.num=0", "stop.env_steps=1", "log.tensorboard=false",
                                    "log.curve=false", "checkpoint.at_end=false"],
                   out="~/raydl_runs", progress=False, echo=False)
    assert result.run_dir.parent == tmp_path / "raydl_runs"

"""Ray Tune over real trials: ASHA on CartPole, PBT exploiting a checkpoint, a Ray Train
trial with 2 workers, and an interrupted search resumed without rerunning trials."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raydl.config import load_experiment
from raydl.run import train
from raydl.tune import BEST_YAML, TRIALS_CSV, TRIALS_PNG, tune_experiment

pytestmark = pytest.mark.usefixtures("ray_session")

TINY_DQN = ["stop.env_steps=4000", "algo.steps_per_iteration=500", "algo.learning_starts=200",
            "algo.hidden=[32]", "tune.scheduler.max_t=8", "tune.scheduler.grace_period=2",
            "tune.scheduler.reduction_factor=2"]


def _search_dir(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _trial_rows(folder: Path) -> dict[str, list[dict]]:
    rows = {}
    for trial in folder.iterdir():
        result = trial / "result.json"
        if trial.is_dir() and result.is_file():
            rows[trial.name] = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    return rows


def test_asha_on_cartpole_writes_a_best_config_that_raydl_run_accepts(tmp_path: Path) -> None:
    results = tune_experiment("tune_dqn_cartpole", TINY_DQN, num_samples=4, out=tmp_path / "tune", echo=False)
    assert len(results) == 4 and all(r.error is None for r in results)
    iterations = sorted(int(r.metrics["training_iteration"]) for r in results)
    assert iterations[-1] == 8  # the best trial ran to max_t...
    assert iterations[0] < 8  # ...and ASHA cut at least one early: fewer env steps spent
    folder = _search_dir(tmp_path / "tune")
    for name in (BEST_YAML, TRIALS_CSV, TRIALS_PNG):
        assert (folder / name).is_file()
    best = load_experiment(folder / BEST_YAML)
    winner = results.get_best_result(metric="episode_return_mean", mode="max", scope="all")
    assert best.algo.lr == pytest.approx(winner.config["algo.lr"])
    run = train(folder / BEST_YAML, ["stop.env_steps=1000", "runners.num=0"], out=tmp_path / "runs",
                progress=False, echo=False)
    assert run.metrics["env_steps"] >= 1000


def test_pbt_exploits_a_checkpoint_and_the_trial_continues_from_it(tmp_path: Path) -> None:
    results = tune_experiment("pbt_a2c_cartpole", [
        "stop.env_steps=8000", "algo.steps_per_iteration=1000", "tune.num_samples=2",
        "tune.scheduler.perturbation_interval=2", "tune.scheduler.quantile_fraction=0.5",
    ], out=tmp_path / "tune", echo=False)
    assert len(results) == 2 and all(r.error is None for r in results)
    folder = _search_dir(tmp_path / "tune")
    # PBT's own log: one line per exploit: [target tag, source tag, target iteration,
    # source iteration, source config, new config]; a tag starts with the trial's index
    policy = (folder / "pbt_global.txt").read_text().splitlines()
    assert policy, "PBT never exploited"
    target, source, _, source_iter, _, new_config = json.loads(policy[0])
    assert target.split("_")[0] != source.split("_")[0]
    rows = _trial_rows(folder)
    index = int(target.split("_")[0])
    target_rows = next(v for k, v in rows.items() if re.search(rf"_\d{{5}}_{index}_", k))
    # after the exploit the target carries on from the copied state: its iteration counter
    # keeps counting past the exploit instead of starting again from 1
    later = [r for r in target_rows if r["training_iteration"] > source_iter]
    assert later and later[-1]["iteration"] > source_iter
    assert later[-1]["env_steps"] >= source_iter * 1000


def test_a_trial_that_raises_is_retried_and_the_search_completes(tmp_path: Path) -> None:
    import pandas as pd

    # lr 1e30 drives the Q-network to inf within a few updates; `nonfinite: stop` turns
    # that into a TrainingError in the trial, every time it is tried.
    results = tune_experiment(
        "tune_dqn_cartpole",
        ["stop.env_steps=1500", "algo.steps_per_iteration=500", "algo.learning_starts=200",
         "algo.hidden=[16]", "algo.nonfinite=stop", "tune.scheduler.type=fifo",
         "tune.space={algo.lr: {grid: [1.0e-3, 1.0e+30]}}", "tune.max_failures=1"],
        num_samples=1, out=tmp_path / "tune", echo=False)
    assert len(results) == 2
    errored = [r for r in results if r.error is not None]
    assert len(errored) == 1 and errored[0].config["algo.lr"] == 1e30
    fine = [r for r in results if r.error is None]
    assert fine[0].metrics["env_steps"] == 1500  # the other trial was not disturbed
    # tried twice: once, and once more per tune.max_failures
    assert "Failure # 2" in (Path(errored[0].path) / "error.txt").read_text()
    table = pd.read_csv(_search_dir(tmp_path / "tune") / TRIALS_CSV)
    assert sorted(table["status"]) == ["ERROR", "TERMINATED"]
    (message,) = table.loc[table["status"] == "ERROR", "error"]
    assert message.startswith("TrainingError: ") and "algo.nonfinite" in message


# Runs after the RL searches on purpose: the session's embedded Ray has no State API, and
# a Ray Train trial ended by Tune can keep its workers' placement group on such a Ray (see
# raydl.tune: `raydl tune` starts the State API for these kinds; this shared session
# cannot). Tests that need the session's CPUs come before it.
def test_a_ray_train_trial_with_two_workers_inside_tune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = tune_experiment("tune_cnn_digits", ["train.epochs=2", "tune.scheduler.max_t=2",
                                                   "tune.scheduler.grace_period=1", "log.mlflow.enabled=true"],
                              num_samples=1, out=tmp_path / "tune", echo=False)
    (result,) = list(results)
    assert result.error is None
    assert result.metrics["workers"] == 2 and result.metrics["epoch"] == 2
    assert 0.3 < result.metrics["val_accuracy"] <= 1.0
    folder = _search_dir(tmp_path / "tune")
    assert load_experiment(folder / BEST_YAML).kind == "classify"
    # The trial's epochs reach MLflow once, through Ray's callback in the driver; the
    # trial's own rank-0 worker, which feeds the trackers in a `raydl run`, logs to none.
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("raydl").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epoch")] == [(1, 1), (2, 2)]
    assert list(folder.glob("*/run/metrics.jsonl"))  # the trial's run directory, synced here
    assert not list(folder.glob("*/run/trackers.json")) and not list(folder.glob("*/run/mlflow.db"))


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    env = {**os.environ, "RAY_ADDRESS": ""}
    # Eight short trials, one at a time: the search folder shows each finished trial
    # within RESULTS_SYNC_S (2 s), long before the eighth is done.
    args = [sys.executable, "-m", "raydl", "tune", "tune_dqn_cartpole", "--out", str(out), "--num-samples", "8",
            "--set", "tune.max_concurrent=1", "--set", "tune.scheduler.type=fifo",
            "--set", "stop.env_steps=1000", "--set", "algo.steps_per_iteration=500", "--set", "algo.hidden=[32]"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    finished: dict[str, list[dict]] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if out.is_dir() and any(out.iterdir()):
            rows = _trial_rows(_search_dir(out))
            finished = {k: v for k, v in rows.items() if v and v[-1].get("done")}
            # Interrupt as soon as one trial is done: trials are short and Tune writes
            # results in batches, so waiting for more can let the whole search end.
            if finished:
                proc.send_signal(signal.SIGINT)  # Tune saves its state and stops
                break
    proc.wait(timeout=120)
    assert finished, "the first trial never finished"
    folder = _search_dir(out)
    before = {k: len(v) for k, v in _trial_rows(folder).items() if v and v[-1].get("done")}
    print(f"\n{len(before)} of 8 trials done when the search was interrupted")
    assert len(before) < 8, "the search ended before it could be interrupted"

    resumed = subprocess.run([sys.executable, "-m", "raydl", "tune", "--resume", str(folder)],
                             capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _trial_rows(folder)
    done = {k: v for k, v in after.items() if v and v[-1].get("done")}
    assert len(done) == 8
    for name, count in before.items():
        assert len(after[name]) == count  # finished trials were not run again
    assert (folder / BEST_YAML).is_file()

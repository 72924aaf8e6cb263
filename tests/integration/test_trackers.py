"""Experiment trackers offline (W&B in offline mode, MLflow on a SQLite store): what they
hold, read back through their own files and client, is metrics.jsonl's rows exactly, also
across resumes that redo iterations."""

import shutil
from pathlib import Path

import pytest

from raydl.config import MlflowConfig
from raydl.run import train
from raydl.trackers import tracking_uri
from tests.tracker_readback import expected, held, tracker_ids

TINY = ["runners.num=0", "algo.steps_per_iteration=250", "algo.learning_starts=200",
        "algo.hidden=[32]", "checkpoint.every=1", "log.tensorboard=false", "log.curve=false",
        "log.wandb.enabled=true", "log.mlflow.enabled=true"]


@pytest.fixture(autouse=True)
def _default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # each run's own SQLite store


def test_dqn_trackers_hold_the_metrics_rows_across_resumes(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    first = train("dqn_cartpole", TINY + ["stop.env_steps=1500", "log.mlflow.log_checkpoints=true"],
                  out=tmp_path, progress=False, echo=False)
    run_dir = first.run_dir
    client = MlflowClient(tracking_uri(MlflowConfig(), run_dir))
    rows = expected(run_dir)
    assert [r["iteration"] for _, r in rows] == [1, 2, 3, 4, 5, 6]
    assert held(run_dir) == {"wandb": rows, "mlflow": rows}
    ids = tracker_ids(run_dir)
    run = client.get_run(ids["mlflow"])
    assert run.info.status == "FINISHED" and run.data.params["algo.steps_per_iteration"] == "250"
    saved = {a.path for a in client.list_artifacts(ids["mlflow"], "checkpoints")}
    assert saved == {f"checkpoints/iter_{i:06d}" for i in range(1, 7)}

    # As after a kill right after iteration 6: the newest checkpoint is iteration 4's, and
    # the trackers hold rows 5 and 6, which the resume redoes (with other values). Neither
    # tracker can take a step back: new tracker runs hold the kept rows, then the new ones.
    for name in ("iter_000005", "iter_000006"):
        shutil.rmtree(run_dir / "checkpoints" / name)
    train(resume=run_dir, overrides=["stop.env_steps=2500"], progress=False, echo=False)
    rows = expected(run_dir)
    assert [r["iteration"] for _, r in rows] == list(range(1, 11))
    forked = tracker_ids(run_dir)
    assert forked["wandb"] != ids["wandb"] and forked["mlflow"] != ids["mlflow"]
    assert held(run_dir) == {"wandb": rows, "mlflow": rows}
    assert client.get_run(forked["mlflow"]).data.tags["raydl.resumed_from"] == ids["mlflow"]
    assert client.get_run(ids["mlflow"]).data.tags["raydl.superseded_by"] == forked["mlflow"]

    # A run that ended at its checkpoint: the resume continues the same tracker runs.
    train(resume=run_dir, overrides=["stop.env_steps=3000"], progress=False, echo=False)
    rows = expected(run_dir)
    assert [r["iteration"] for _, r in rows] == list(range(1, 13))
    assert tracker_ids(run_dir) == forked
    assert held(run_dir) == {"wandb": rows, "mlflow": rows}
    steps = [step for step, _ in held(run_dir)["wandb"]]
    assert steps == sorted(set(steps))  # no step twice, none going back

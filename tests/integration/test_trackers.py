"""Experiment trackers offline (W&B in offline mode, MLflow on a SQLite store): what they
hold, read back through their own files and client, is metrics.jsonl's rows exactly, also
across resumes that redo iterations."""

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest

from raydl.cli import main
from raydl.config import MlflowConfig
from raydl.metrics import VIDEO_DIR, VIDEO_KEY, MetricsWriter, read_metrics
from raydl.run import train
from raydl.trackers import tracking_uri
from tests.tracker_readback import expected, held, tracker_ids, wandb_artifacts, wandb_history

TINY = ["runners.num=0", "algo.steps_per_iteration=250", "algo.learning_starts=200",
        "algo.hidden=[32]", "checkpoint.every=1", "log.tensorboard=false", "log.curve=false",
        "log.wandb.enabled=true", "log.mlflow.enabled=true"]


@pytest.fixture(autouse=True)
def _default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # each run's own SQLite store


def test_dqn_trackers_hold_the_metrics_rows_across_resumes(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    first = train("dqn_cartpole", TINY + ["stop.env_steps=1500", "log.mlflow.log_checkpoints=true",
                                          "log.wandb.log_checkpoints=true"],
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
    files = len(list((run_dir / "checkpoints" / "iter_000006").iterdir()))
    assert [(name, aliases - {"latest"}, n) for name, aliases, n in wandb_artifacts(run_dir, ids["wandb"])] == [
        (f"checkpoint-{ids['wandb']}", {f"iter_{i:06d}"}, files) for i in range(1, 7)]

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


def test_evaluation_videos_reach_both_trackers_at_their_rows_steps(tmp_path: Path) -> None:
    """W&B gets each MP4 as a wandb.Video in the row of its step; MLflow as an artifact
    under videos/, named as in the run directory."""
    from mlflow import MlflowClient

    run = train("dqn_cartpole", TINY + ["stop.env_steps=750", "eval.every=1", "eval.episodes=1",
                                        "eval.video_every=2", "eval.video_max_frames=20"],
                out=tmp_path, progress=False, echo=False)
    videos = {MetricsWriter.step(r): r[VIDEO_KEY] for r in read_metrics(run.run_dir) if VIDEO_KEY in r}
    assert len(videos) == 2  # iterations 1 and 3 (the weights after 0 and 2 iterations)
    ids = tracker_ids(run.run_dir)
    # W&B's history holds a media value as nested keys: eval_video/_type, eval_video/path...
    logged = {step: values for step, values in wandb_history(run.run_dir, ids["wandb"])
              if f"{VIDEO_KEY}/path" in values}
    assert sorted(logged) == sorted(videos)
    for step, values in logged.items():
        assert values[f"{VIDEO_KEY}/_type"] == "video-file"
        (copy,) = run.run_dir.glob(f"wandb/offline-run-*-{ids['wandb']}/files/{values[f'{VIDEO_KEY}/path']}")
        assert copy.read_bytes() == (run.run_dir / videos[step]).read_bytes()
    client = MlflowClient(tracking_uri(MlflowConfig(), run.run_dir))
    assert {a.path for a in client.list_artifacts(ids["mlflow"], VIDEO_DIR)} == set(videos.values())


@pytest.mark.usefixtures("ray_session")
def test_a_search_logs_each_trial_through_rays_own_callbacks(tmp_path: Path) -> None:
    """`raydl tune` hands the trackers to Ray's WandbLoggerCallback and
    MLflowLoggerCallback: one tracker run per trial, holding each of its results."""
    from mlflow import MlflowClient

    from raydl.tune import tune_experiment

    results = tune_experiment("tune_dqn_cartpole", [
        "stop.env_steps=1000", "algo.steps_per_iteration=500", "algo.learning_starts=200",
        "algo.hidden=[32]", "tune.scheduler.type=fifo", "log.wandb.enabled=true",
        "log.mlflow.enabled=true"], num_samples=2, out=tmp_path, echo=False)
    assert len(results) == 2 and all(r.error is None for r in results)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # Ray's callback set it; put back after the search
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    client = MlflowClient(tracking_uri(MlflowConfig(), folder))  # the search's own store
    runs = client.search_runs([client.get_experiment_by_name("raydl").experiment_id])
    assert len(runs) == 2 and all(r.data.tags["raydl.search"] == folder.name for r in runs)
    for result in results:
        trial_id = result.metrics["trial_id"]
        reported = [(int(i), int(e)) for i, e in zip(result.metrics_dataframe["training_iteration"],
                                                     result.metrics_dataframe["env_steps"])]
        assert [i for i, _ in reported] == [1, 2] and reported[-1][1] >= 1000
        (run,) = [r for r in runs if r.data.tags["trial_name"].endswith(trial_id)]
        logged = [(m.step, int(m.value)) for m in client.get_metric_history(run.info.run_id, "env_steps")]
        assert logged == reported
        wandb_rows = wandb_history(folder, trial_id)  # complete once the search returns
        assert [(step, row["env_steps"]) for step, row in wandb_rows] == reported


def test_a_tracker_that_cannot_start_its_run_is_one_line_before_the_first_iteration(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("a file, not a directory")
    err_out = io.StringIO()
    with contextlib.redirect_stderr(err_out), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "dqn_cartpole", "--out", str(tmp_path / "runs"), "--no-progress",
                     "--set", "runners.num=0", "--set", "log.tensorboard=false",
                     "--set", "log.mlflow.enabled=true",
                     "--set", f"log.mlflow.tracking_uri=sqlite:///{tmp_path}/store/mlflow.db"])
    err = err_out.getvalue()
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("raydl: error: log.mlflow: cannot start the mlflow run: ")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "metrics.jsonl").read_text() == ""  # no iteration ran

"""Experiment trackers: Weights & Biases and MLflow, each through its own library's API.

`log.wandb` / `log.mlflow` turn them on for every kind. The process that writes
metrics.jsonl (the driver for RL kinds, the rank-0 Ray Train worker for fit kinds) hands
each row it writes to `Trackers`, so a tracker run holds the rows of metrics.jsonl and
nothing else: the row's numbers, at the row's TensorBoard step (env steps, else the
iteration), the resolved config (W&B config, MLflow params and config.yaml), and each
checkpoint as an artifact when `log_checkpoints` is on. `raydl tune` uses Ray's own
callbacks instead (`tune_callbacks`).

Resume. RUN_DIR/trackers.json names each tracker's run and, once that run was closed,
the iteration of the last row it holds. A resume drops the rows written after the
checkpoint from metrics.jsonl. When the tracker run holds exactly the rows kept (it was
closed at the checkpoint's iteration: a run that stopped, or was stopped with Ctrl-C), it
is continued. Otherwise (a killed run, or rows logged after the checkpoint), the tracker
run holds steps that are being redone, and neither W&B nor MLflow can take a logged step
back: a new tracker run starts, gets the kept rows again, and names the one it replaces
(W&B config `raydl_resumed_from`; MLflow tags `raydl.resumed_from` / `raydl.superseded_by`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from raydl.errors import ConfigError, TrainingError, one_line
from raydl.files import write_atomic
from raydl.metrics import VIDEO_DIR, VIDEO_KEY, MetricsWriter

TRACKERS_FILE = "trackers.json"
NAMES = ("wandb", "mlflow")

# The sections are raydl.config's LogConfig, WandbConfig and MlflowConfig, typed loosely
# here: registry.check imports this module and raydl.config imports the registry.
LogConfig = MlflowConfig = WandbConfig = Any


def enabled(log: LogConfig) -> list[str]:
    """The trackers the `log:` section turns on."""
    return [name for name in NAMES if getattr(log, name).enabled]


def check(log: LogConfig) -> None:
    """Before any work: each enabled tracker's package is there (one line otherwise)."""
    for name in enabled(log):
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"log.{name}: needs the {name} package; pip install 'raydl[{name}]'")
    if log.wandb.enabled and not log.wandb.project.strip():
        raise ConfigError(f"log.wandb.project: expected a W&B project name, got {log.wandb.project!r}")
    if log.mlflow.enabled:
        uri = tracking_uri(log.mlflow, Path("."))
        if uri.startswith("sqlite:") and importlib.util.find_spec("sqlalchemy") is None:
            raise ConfigError(
                f"log.mlflow: the tracking store {uri.split('///')[0]}/// needs the full mlflow "
                "package (mlflow-skinny has no SQLAlchemy); pip install 'raydl[mlflow]', or set "
                "log.mlflow.tracking_uri to a tracking server")


def tracking_uri(section: MlflowConfig, folder: Path) -> str:
    """log.mlflow.tracking_uri, else $MLFLOW_TRACKING_URI, else a SQLite store in
    `folder` (MLflow 3 refuses plain file stores; SQLite is what its docs recommend)."""
    uri = section.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """What a tracker logs of a row: its finite numbers (as TensorBoard gets them)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Tracker(Protocol):
    """One tracker run: `run_id` names it in trackers.json."""

    run_id: str

    def log(self, values: dict[str, float], step: int) -> None:
        """One metrics row's numbers at `step`."""

    def video(self, path: Path, step: int) -> None:
        """An evaluation's video file (MP4) of the row at `step`; after that row's `log`."""

    def artifact(self, path: Path, name: str) -> None:
        """A checkpoint directory, kept under `name`."""

    def close(self, status: str) -> None:
        """End the run: status is finished, failed or killed."""


class WandbTracker:
    """A W&B run through wandb.init / Run.log / Run.log_artifact / Run.finish."""

    def __init__(self, section: WandbConfig, run_dir: Path, config: dict[str, Any],
                 run_id: str | None, resumed_from: str | None) -> None:
        import wandb

        self.wandb, self.section = wandb, section
        if resumed_from:
            config = {**config, "raydl_resumed_from": resumed_from}
        # reinit="create_new": each raydl run owns its Run object, whatever else this
        # process (a notebook, a test session) has open; the mode comes from WANDB_MODE.
        self.run = wandb.init(
            project=section.project, entity=section.entity, tags=list(section.tags) or None,
            name=run_dir.name, dir=str(run_dir), id=run_id, resume="allow" if run_id else None,
            config=config, allow_val_change=True, reinit="create_new",
        )
        self.run_id: str = self.run.id

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def video(self, path: Path, step: int) -> None:
        # A file path: W&B copies the MP4 as it is (frames would need moviepy to encode).
        # The same step as the row's numbers: W&B merges both into that row.
        self.run.log({VIDEO_KEY: self.wandb.Video(str(path))}, step=step)

    def artifact(self, path: Path, name: str) -> None:
        if self.section.log_checkpoints:
            art = self.wandb.Artifact(f"checkpoint-{self.run_id}", type="model")
            art.add_dir(str(path))
            self.run.log_artifact(art, aliases=[name])

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


class MlflowTracker:
    """An MLflow run through MlflowClient (explicit run ids, none of mlflow's global
    active-run state, so two runs in one process never mix)."""

    STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}

    def __init__(self, section: MlflowConfig, run_dir: Path, config: dict[str, Any],
                 run_id: str | None, resumed_from: str | None) -> None:
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # a new SQLite store's set-up lines
        self.section = section
        self.client = MlflowClient(tracking_uri(section, run_dir))
        if run_id is None:
            run_id = self._create(run_dir, config, resumed_from)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id: str = run_id
        if (run_dir / "config.yaml").is_file():  # the ready-to-run experiment
            self.client.log_artifact(run_id, str(run_dir / "config.yaml"))

    def _create(self, run_dir: Path, config: dict[str, Any], resumed_from: str | None) -> str:
        from mlflow.entities import Param

        tags = {"raydl.run_dir": str(run_dir)}
        if resumed_from:
            tags["raydl.resumed_from"] = resumed_from
        experiment = experiment_id(self.client, self.section.experiment)
        run_id: str = self.client.create_run(experiment, run_name=run_dir.name, tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flat(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[i:i + 100])
        if resumed_from:
            self._supersede(resumed_from, run_id)
        return run_id

    def _supersede(self, old: str, new: str) -> None:
        """Mark the run this one replaces (ended KILLED if it never ended)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_tag(old, "raydl.superseded_by", new)
            if self.client.get_run(old).info.status == "RUNNING":
                self.client.set_terminated(old, "KILLED")
        except MlflowException:
            pass  # the old run lives in another store (tracking_uri changed on resume)

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def artifact(self, path: Path, name: str) -> None:
        if self.section.log_checkpoints:
            self.client.log_artifacts(self.run_id, str(path), artifact_path=f"checkpoints/{name}")

    def video(self, path: Path, step: int) -> None:
        # MLflow has no video type: the MP4 is an artifact beside the run's metrics, under
        # the name the run directory gives it (videos/iteration_N.mp4).
        self.client.log_artifact(self.run_id, str(path), artifact_path=VIDEO_DIR)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, self.STATUS[status])


def experiment_id(client: Any, name: str) -> str:
    """The MLflow experiment `name`, created if new. In a SQLite store its artifacts go
    next to the database, not into the current directory (MLflow's default)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    uri = str(client.tracking_uri)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another process created it meanwhile
        return str(client.get_experiment_by_name(name).experiment_id)


OPENERS = {"wandb": WandbTracker, "mlflow": MlflowTracker}


def _open(name: str, section: Any, run_dir: Path, config: dict[str, Any], run_id: str | None,
          resumed_from: str | None) -> Tracker:
    """A tracker run; what stops the library from starting one (no login, a server that
    does not answer, a store it cannot open) is one line in the library's own words."""
    try:
        tracker: Tracker = OPENERS[name](section, run_dir, config, run_id, resumed_from)
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise TrainingError(f"log.{name}: cannot start the {name} run: "
                            f"{type(exc).__name__}: {one_line(first)}") from None
    return tracker


class Trackers:
    """The run's enabled trackers, fed by MetricsWriter: `start` once with the rows
    metrics.jsonl keeps, then `log` each new row, `artifact` each checkpoint, `close`."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.open: dict[str, Tracker] | None = None
        self.last_iteration = 0  # of the newest row the trackers hold

    def start(self, kept: list[dict[str, Any]]) -> None:
        """Open (or continue) each tracker run; a new one gets the kept rows first."""
        if self.open is not None:
            return
        self.open = {}
        state = read_state(self.run_dir)
        self.last_iteration = int(kept[-1].get("iteration", 0)) if kept else 0
        config = dataclasses.asdict(self.cfg)
        for name in enabled(self.cfg.log):
            prior = state.get(name) or {}
            same = prior.get("run_id") if prior.get("closed_at") == self.last_iteration else None
            resumed_from = None if same else prior.get("run_id")
            tracker = _open(name, getattr(self.cfg.log, name), self.run_dir, config, same, resumed_from)
            if same is None:
                for row in kept:
                    tracker.log(numbers(row), MetricsWriter.step(row))
            self.open[name] = tracker
            state[name] = {"run_id": tracker.run_id, "closed_at": None}
            write_state(self.run_dir, state)

    def log(self, row: dict[str, Any]) -> None:
        if self.open is None:
            self.start([])
        assert self.open is not None
        video = row.get(VIDEO_KEY)
        video_file: Path | None = self.run_dir / str(video)
        if not (isinstance(video, str) and video_file.is_file()):
            video_file = None
        step = MetricsWriter.step(row)
        for tracker in self.open.values():
            tracker.log(numbers(row), step)
            if video_file is not None:
                tracker.video(video_file, step)
        self.last_iteration = int(row.get("iteration", self.last_iteration))

    def artifact(self, path: Path, name: str) -> None:
        for tracker in (self.open or {}).values():
            tracker.artifact(path, name)

    def close(self) -> None:
        """End each run (failed or killed while an exception is on its way out, since
        close runs in the writer's `finally`) and note where it ended for a resume."""
        if not self.open:
            return
        error = sys.exc_info()[0]
        status = "finished" if error is None else (
            "failed" if issubclass(error, Exception) else "killed")
        state = read_state(self.run_dir)
        for name, tracker in self.open.items():
            tracker.close(status)
            state[name] = {"run_id": tracker.run_id, "closed_at": self.last_iteration}
        write_state(self.run_dir, state)
        self.open = None


def for_run(cfg: Any, run_dir: Path) -> Trackers | None:
    """The run's trackers, or None when `log:` enables none."""
    return Trackers(cfg, run_dir) if enabled(cfg.log) else None


def read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / TRACKERS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """trackers.json, replaced whole (a kill mid-write leaves the previous one)."""
    write_atomic(json.dumps(state, indent=1), run_dir / TRACKERS_FILE)


def tune_callbacks(log: LogConfig, folder: Path, name: str) -> list[Any]:
    """Ray's own tracker callbacks for a search in `folder`: one tracker run per trial,
    logged from the driver (the trials themselves then log to no tracker)."""
    callbacks: list[Any] = []
    if enabled(log):
        folder.mkdir(parents=True, exist_ok=True)
    if log.wandb.enabled:
        from ray.air.integrations.wandb import WandbLoggerCallback

        w = log.wandb
        # dir: W&B's files go straight into the search folder (SEARCH_DIR/wandb). Left in
        # each trial's directory, Tune copies that into the folder when the trial ends,
        # before the W&B logging actor has finished its run: the copy would be cut short.
        callbacks.append(WandbLoggerCallback(
            project=w.project, group=name, upload_checkpoints=w.log_checkpoints,
            entity=w.entity, tags=list(w.tags) or None, dir=str(folder.resolve())))
    if log.mlflow.enabled:
        from mlflow import MlflowClient
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = tracking_uri(log.mlflow, folder)
        experiment_id(MlflowClient(uri), log.mlflow.experiment)  # artifacts beside a SQLite store
        callbacks.append(MLflowLoggerCallback(
            tracking_uri=uri, experiment_name=log.mlflow.experiment,
            tags={"raydl.search": name}, save_artifact=log.mlflow.log_checkpoints))
    return callbacks


@contextmanager
def tracking_env_kept() -> Iterator[None]:
    """Around a search: Ray's MLflowLoggerCallback calls mlflow.set_tracking_uri, which
    also sets $MLFLOW_TRACKING_URI for the whole process; put both back after it, so a
    later run in this process logs to its own store, not the search's."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if "mlflow" in sys.modules and os.environ.get("MLFLOW_TRACKING_URI") != before:
            import mlflow

            mlflow.set_tracking_uri(before)  # None: unset, as before the search

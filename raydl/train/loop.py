"""The one epoch loop of every fit kind, run by each Ray Train worker over a task object.

The loop holds what every kind shares; a task (raydl.sl.tasks, raydl.gen.tasks) holds
what differs: its networks, optimizers and data, one training step, its metrics, what its
checkpoint keeps. Per worker:

    task = TaskClass(worker)                  # models prepared for DDP, loader sharded
    restore model.pt / state.json from ray.train.get_checkpoint(); task.start (seeds)
    for epoch:
        sampler.set_epoch; task.begin_epoch
        for batch: task.train_step(batch)     # the task steps its own optimizer(s)
            a non-finite update (the same on every rank): stop, or skip and count it
        all-reduce the sums; task.epoch_metrics (train means, validation)
        early stopping where the task watches a metric, or the time budget
          (cfg.time_budget_s, counted across restores); task.closing_metrics
        ray.train.report(metrics, checkpoint written by rank 0 every N epochs and last)

Rank 0 also appends each epoch's metrics to RUN_DIR/metrics.jsonl (and TensorBoard,
curve.png); the driver tails that file for the progress line. A restarted worker group
(FailureConfig) or `--resume` continues from the newest checkpoint and first drops any
metrics rows written after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from raydl.config import dump_yaml, to_dict
from raydl.errors import ConfigError
from raydl.nn import nonfinite_error
from raydl.profile import mark
from raydl.train.plumbing import (
    MODEL_FILE,
    STATE_FILE,
    all_reduce,
    check_resources,
    report_epoch,
    restore_epoch_checkpoint,
    run_torch_trainer,
    set_sampler_epoch,
    worker_setup,
)

if TYPE_CHECKING:
    from raydl.metrics import MetricsWriter


@dataclass(frozen=True)
class Worker:
    """Where a task runs: the experiment, the run directory, this worker's rank among
    `world`, its device, whether it trains in bfloat16, and the fit's other options.
    `group` is false for one process outside Ray Train (a task under test)."""

    cfg: Any
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    amp: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    group: bool = True

    def autocast(self) -> AbstractContextManager[Any]:
        """bfloat16 autocast when `train.amp` is on and the worker has a GPU."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def prepare_model(self, net: nn.Module) -> nn.Module:
        """`net` on this worker's device; in a worker group, wrapped in DDP (gloo on CPU,
        NCCL on GPU) so every backward all-reduces the gradients."""
        if not self.group:
            return net.to(self.device)
        import ray.train.torch

        return ray.train.torch.prepare_model(net)

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        """`loader` as this worker's shard: in a worker group, a DistributedSampler over
        the workers and batches placed on the device (GPU workers)."""
        if not self.group:
            return loader
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader)


@dataclass
class Step:
    """One training step: what it adds to the epoch's sums and, when its update was not
    applied (a NaN/inf gradient), the values `nonfinite: stop` names in its error."""

    sums: dict[str, float]
    nonfinite: dict[str, float] | None = None


@dataclass(frozen=True)
class Watched:
    """The metric a task is judged by between epochs: better is `mode`; `patience`
    epochs without improvement stop the run (0: never)."""

    metric: str
    mode: Literal["min", "max"]
    patience: int


class Task(Protocol):
    """What the epoch loop asks of a kind (one instance per worker)."""

    unit: str  # what `<unit>_per_s` counts: examples, tokens, images
    counted: str  # the key of the epoch's sums that counts them
    loader: Any  # the training loader whose sampler gets each epoch's number, or None
    watched: Watched | None  # early stopping and state.json's best/stale, or None

    def state(self) -> dict[str, Any]:
        """The tensors of model.pt: weights, optimizer (and schedule) states."""

    def load(self, saved: dict[str, Any], epoch: int) -> None:
        """Restore model.pt's tensors, saved at the end of `epoch`."""

    def start(self, epoch: int, restored: bool) -> None:
        """Once before the first epoch, after any restore from `epoch`."""

    def begin_epoch(self, epoch: int) -> None:
        """Before the epoch's first batch."""

    def new_sums(self) -> dict[str, float]:
        """The epoch's sums before its first batch (the same keys on every worker)."""

    def batches(self) -> Iterable[Any]:
        """This worker's training batches of one epoch."""

    def train_step(self, batch: Any) -> Step:
        """One update on a batch."""

    def epoch_metrics(self, totals: dict[str, float]) -> dict[str, Any]:
        """Training metrics from the sums over every worker, and validation (every
        worker calls it: it may all-reduce)."""

    def closing_metrics(self, epoch: int, last: bool) -> dict[str, Any]:
        """Metrics added once the epoch is judged (a test split on the last epoch, rank
        0's sample scores), and rank 0's per-epoch images."""

    def save_extra(self, directory: Path) -> None:
        """Files a checkpoint needs besides model.pt, state.json and config.yaml."""


@dataclass
class EarlyStop:
    """The best value of the watched metric so far and the epochs since it improved."""

    watched: Watched
    best: float | None = None
    stale: int = 0

    def update(self, metrics: dict[str, Any]) -> bool:
        """Take an epoch's metrics; whether the run should stop now."""
        value = metrics.get(self.watched.metric)
        if value is not None and self._improves(value):
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return bool(self.watched.patience) and self.stale >= self.watched.patience

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.watched.mode == "max" else value < self.best

    def state(self) -> dict[str, Any]:
        """state.json's early-stopping entries."""
        return {"best": self.best, "stale": self.stale}


@dataclass
class Counters:
    """What state.json carries across restores besides the task's own state."""

    epoch: int = 0
    restores: int = 0
    skipped: int = 0  # cumulative: batches whose update was not applied
    stopper: EarlyStop | None = None
    seconds: float = 0.0  # cumulative: the epochs' training and validation time

    def state(self) -> dict[str, Any]:
        early = self.stopper.state() if self.stopper is not None else {}
        return {"epoch": self.epoch, **early, "restores": self.restores, "nonfinite_skipped": self.skipped,
                "train_seconds": self.seconds}


# ----------------------------------------------------------------------------- worker side


def epoch_loop(config: dict[str, Any]) -> None:
    """The per-worker training function given to TorchTrainer for every fit kind:
    config holds the experiment (as a dict), the task class ("module:attr") and options."""
    import ray.train.torch

    from raydl import registry
    from raydl.metrics import MetricsWriter
    from raydl.trackers import for_run

    mark("worker: train function started")
    cls = registry.config_class(config["experiment"]["kind"])
    cfg, run_dir, rank, world = worker_setup(cls, config)
    device = ray.train.torch.get_device()
    worker = Worker(cfg, run_dir, rank, world, device, cfg.train.amp and device.type == "cuda",
                    {k: v for k, v in config.items() if k not in ("experiment", "task", "run_dir")})
    task: Task = registry.resolve(config["task"])(worker)
    mark("worker: task built (model, data)")
    counters = _restore(task, device)
    writer: MetricsWriter | None = None
    if rank == 0:
        writer = MetricsWriter(run_dir, cfg.log.tensorboard, cfg.log.curve, for_run(cfg, run_dir))
        writer.truncate_after(counters.epoch)
    mark("worker: first epoch starts")
    try:
        while counters.epoch < cfg.train.epochs:
            if _epoch(task, worker, counters, writer):
                break
    finally:
        if writer is not None:
            writer.close()
        mark("worker: train function ends")


def _restore(task: Task, device: torch.device) -> Counters:
    """The counters of the checkpoint Ray Train hands this group (fresh ones without),
    the task restored from it and started."""
    counters = Counters(stopper=EarlyStop(task.watched) if task.watched is not None else None)
    restored = restore_epoch_checkpoint(device)
    if restored is not None:
        saved, state = restored
        counters.epoch, counters.restores = state["epoch"], state["restores"]
        counters.skipped = state.get("nonfinite_skipped", 0)  # absent in older checkpoints
        counters.seconds = state.get("train_seconds", 0.0)
        if counters.stopper is not None:
            counters.stopper.best, counters.stopper.stale = state["best"], state["stale"]
        task.load(saved, counters.epoch)
    task.start(counters.epoch, restored is not None)
    return counters


def _train(task: Task, worker: Worker, counters: Counters) -> tuple[dict[str, float], float]:
    """One epoch's training steps: (the sums over every worker, this worker's seconds)."""
    cfg = worker.cfg
    sums = task.new_sums()
    start = time.perf_counter()
    for index, batch in enumerate(task.batches()):
        step = task.train_step(batch)
        if step.nonfinite is not None:  # the same on every rank: no worker applied it
            if cfg.train.nonfinite == "stop":
                raise nonfinite_error(cfg.kind, f"epoch {counters.epoch}, batch {index + 1}",
                                      step.nonfinite, "train.nonfinite")
            counters.skipped += 1
        for key, value in step.sums.items():
            sums[key] = sums.get(key, 0.0) + value
    train_time = time.perf_counter() - start
    return dict(zip(sums, all_reduce(list(sums.values()), worker.device))), train_time


def _epoch(task: Task, worker: Worker, counters: Counters, writer: MetricsWriter | None) -> bool:
    """Train, measure, report and (every N epochs, and last) checkpoint one epoch;
    whether early stopping or the time budget ends the run here."""
    from raydl import registry

    cfg = worker.cfg
    started = time.perf_counter()
    counters.epoch += 1
    epoch = counters.epoch
    set_sampler_epoch(task.loader, epoch)
    task.begin_epoch(epoch)
    totals, train_time = _train(task, worker, counters)
    mark(f"worker: epoch {epoch} trained")
    metrics: dict[str, Any] = {
        "iteration": epoch, "epoch": epoch, **task.epoch_metrics(totals),
        f"{task.unit}_per_s": totals[task.counted] / train_time if train_time > 0 else None,
        "epoch_time_s": train_time, "workers": worker.world, "restores": counters.restores,
        "nonfinite_skipped": counters.skipped,  # cumulative: batches whose update was skipped
    }
    stopper = counters.stopper
    stop = stopper is not None and stopper.update(metrics)
    if stopper is not None and stop and epoch < cfg.train.epochs:
        metrics["early_stopped"] = stopper.watched.metric  # the run's summary says why it ended
    # the workers' mean, so that every rank takes the same decision
    counters.seconds += all_reduce([time.perf_counter() - started], worker.device)[0] / worker.world
    if cfg.time_budget_s and counters.seconds >= cfg.time_budget_s and not stop and epoch < cfg.train.epochs:
        metrics["time_budget_reached"] = True
        stop = True
    last = stop or epoch == cfg.train.epochs
    metrics.update(task.closing_metrics(epoch, last))
    save = last or bool(cfg.checkpoint.every and epoch % cfg.checkpoint.every == 0)
    state = {**counters.state(), "metrics": metrics}
    report_epoch(metrics, epoch, save=save, rank=worker.rank, writer=writer,
                 write=lambda directory: _write_checkpoint(task, cfg, state, directory))
    if writer is not None and save:
        writer.plot(registry.headline(cfg), x="epoch")
    mark(f"worker: epoch {epoch} reported")
    return stop


def _write_checkpoint(task: Task, cfg: Any, state: dict[str, Any], directory: Path) -> None:
    """An epoch checkpoint: model.pt, the task's own files, config.yaml, state.json."""
    torch.save(task.state(), directory / MODEL_FILE)
    task.save_extra(directory)
    dump_yaml(cfg, directory / "config.yaml")
    (directory / STATE_FILE).write_text(json.dumps(state))


# ----------------------------------------------------------------------------- driver side


def run_fit(
    cfg: Any, run_dir: Path, task: str, *, resume: bool, progress: bool,
    callbacks: list[Any] | None = None, options: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One blocking Ray Train fit of the epoch loop over `task` ("module:attr" of the
    task class) after the driver-side checks; `options()`, run after them, gives what
    the workers find in `Worker.options`. Returns the last epoch's metrics."""
    from raydl import registry

    use_gpu = check_resources(cfg.scaling, run_dir, resume)
    if cfg.train.amp and not use_gpu:
        raise ConfigError("train.amp: mixed precision needs GPU workers and none are used here; allowed: false")
    loop_config = {"experiment": to_dict(cfg), "task": task, **(options() if options else {})}
    return run_torch_trainer(
        epoch_loop, loop_config, scaling=cfg.scaling, use_gpu=use_gpu, keep=cfg.checkpoint.keep,
        run_dir=run_dir, epochs=cfg.train.epochs, headline=registry.headline(cfg),
        progress=progress, callbacks=callbacks,
    )

"""Ray Train plumbing shared by every fit kind, on both sides of a fit.

Worker side: `worker_setup` (the experiment, rank and world size; threads and seeds),
`restore_epoch_checkpoint` (what Ray Train hands a restarted or resumed worker group),
`report_epoch` (the epoch's metrics, and rank 0's checkpoint, to Ray Train), `all_reduce`.

Driver side: `check_resources` (before any worker starts: the checkpoint a resume reads,
enough CPUs) and `run_torch_trainer`: a TorchTrainer (ScalingConfig from `scaling:`,
FailureConfig, checkpoints kept by Ray Train under RUN_DIR/checkpoints/epoch_NNNNNN) whose
progress line is fed by tailing RUN_DIR/metrics.jsonl, and whose failures come back as
one line.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from raydl import checkpoint as ckpt
from raydl.checkpoint import latest_epoch_checkpoint
from raydl.config import from_dict
from raydl.errors import ConfigError, TrainingError
from raydl.train.experiment import ScalingSection

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.pt"
STATE_FILE = "state.json"
DATA_FILE = "data.json"  # what a checkpoint's network was built for (shapes, classes)

# ----------------------------------------------------------------------------- worker side


def all_reduce(values: list[float], device: torch.device) -> list[float]:
    """The sums of `values` over every worker (the values themselves outside a group)."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def worker_setup(cls: type, config: dict[str, Any]) -> tuple[Any, Path, int, int]:
    """(experiment, run dir, rank, world size) at the start of a worker's loop: torch
    threads set and every generator seeded alike, so every worker builds the same weights."""
    import ray.train

    from raydl.seeding import seed_everything

    cfg = from_dict(cls, config["experiment"])
    ctx = ray.train.get_context()
    if cfg.train.threads_per_worker:
        torch.set_num_threads(cfg.train.threads_per_worker)
    seed_everything(cfg.seed)  # identical initial weights on every worker
    return cfg, Path(config["run_dir"]), ctx.get_world_rank(), ctx.get_world_size()


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Tell a prepared loader's DistributedSampler the epoch: a different shuffle each
    epoch, the same on every worker (a loader without one is left alone)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def restore_epoch_checkpoint(device: torch.device) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(tensors of model.pt, state.json) of the checkpoint Ray Train hands this worker
    group (after a restart or on --resume), or None on a fresh start. `restores` in the
    state already counts this restore."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / MODEL_FILE, map_location=device, weights_only=True)
        state = json.loads((Path(d) / STATE_FILE).read_text())
    state["restores"] = state.get("restores", 0) + 1
    return saved, state


def report_epoch(
    metrics: dict[str, Any], epoch: int, *, save: bool, rank: int, writer: Any,
    write: Callable[[Path], None],
) -> None:
    """Every worker reports the epoch; rank 0 also appends the metrics row and, when
    `save`, fills a checkpoint directory with `write(dir)` for Ray Train to keep as
    RUN_DIR/checkpoints/epoch_NNNNNN (committed once every worker has reported)."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        report_ckpt = None
        if save and rank == 0:
            write(Path(tmp))
            report_ckpt = Checkpoint.from_directory(tmp)
            if writer is not None:  # the trackers copy it now: tmp goes once reported
                writer.artifact(Path(tmp), f"epoch_{epoch:06d}")
        if writer is not None:
            writer.write(metrics)
        ray.train.report(metrics, checkpoint=report_ckpt,
                         checkpoint_dir_name=f"epoch_{epoch:06d}" if save else None)


# ----------------------------------------------------------------------------- driver side


def _use_gpu(choice: bool | str) -> bool:
    if choice == "auto":
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(choice)


class _Tail(threading.Thread):
    """Follows RUN_DIR/metrics.jsonl while training runs and feeds the progress line."""

    def __init__(self, run_dir: Path, on_row: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.path = run_dir / "metrics.jsonl"
        self.on_row = on_row
        self.done = threading.Event()
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.poll()
        self.poll()

    def poll(self) -> None:
        """Hand on every complete row written since the last poll."""
        if not self.path.exists():
            return
        with open(self.path) as fh:
            fh.seek(self.offset)
            for line in fh:
                if not line.endswith("\n"):  # rank 0 is still writing it
                    break
                self.offset += len(line.encode())
                try:
                    self.on_row(json.loads(line))
                except ValueError:
                    pass


def _one_line(exc: Exception) -> Exception:
    """The root error of a failed fit as one line (a ConfigError stays a ConfigError)."""
    failures = getattr(exc, "worker_failures", None) or {}
    for rank, error in sorted(failures.items()):
        root = getattr(error, "cause", None) or error
        text = str(root).strip().splitlines()
        message = text[-1] if text else type(root).__name__
        if isinstance(root, ConfigError):
            return ConfigError(message)
        if isinstance(root, TrainingError):  # already the one line meant for the user
            return TrainingError(message)
        return TrainingError(f"training failed on worker {rank}: {type(root).__name__}: {message}")
    text = str(exc).strip().splitlines()
    return TrainingError(f"training failed: {text[0] if text else type(exc).__name__}")


def check_resources(scaling: ScalingSection, run_dir: Path, resume: bool) -> bool:
    """Driver-side checks before a fit (one line each); returns whether workers use GPUs."""
    import ray

    if resume:
        newest = latest_epoch_checkpoint(run_dir)
        if newest is None:
            raise ConfigError(f"--resume {run_dir}: no epoch checkpoint to continue from")
        # Read here what every worker will read, so a truncated or tampered file is one
        # line naming it (exit 2), not an unpickling traceback from inside the fit.
        ckpt.load_torch(newest / MODEL_FILE)
        ckpt.load_json(newest / STATE_FILE)
    cpus = ray.cluster_resources().get("CPU", 0)
    need = scaling.workers * scaling.cpus_per_worker
    if need > cpus:
        raise ConfigError(
            f"scaling.workers: {scaling.workers} workers x {scaling.cpus_per_worker:g} "
            f"CPUs need {need:g} CPUs, the cluster has {cpus:g}"
        )
    return _use_gpu(scaling.use_gpu)


def run_torch_trainer(
    loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], *, scaling: ScalingSection,
    use_gpu: bool, keep: int, run_dir: Path, epochs: int, headline: str, progress: bool,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """One blocking Ray Train fit of `loop` on `scaling.workers` workers, checkpoints under
    RUN_DIR/checkpoints, a progress line fed from RUN_DIR/metrics.jsonl; a worker's
    error comes back as one line (ConfigError or TrainingError)."""
    import ray
    from ray.train import CheckpointConfig as RayCheckpointConfig
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raydl.metrics import Progress

    bar = Progress(epochs, "epochs", headline, enabled=progress, every_s=0.0)
    tail = _Tail(run_dir, lambda row: bar.update(int(row.get("epoch", 0)), row))
    trainer = TorchTrainer(
        loop,
        train_loop_config={**loop_config, "run_dir": str(run_dir)},
        scaling_config=ScalingConfig(
            num_workers=scaling.workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=CHECKPOINTS, storage_path=str(run_dir.resolve()),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=RayCheckpointConfig(num_to_keep=keep),
            callbacks=callbacks or None,  # e.g. Tune's TuneReportCallback inside a trial
        ),
    )
    tail.start()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise _one_line(exc) from None
    finally:
        tail.done.set()
        tail.join()
        bar.close()
    return dict(result.metrics or {})

"""Supervised training on Ray Train: `kind: classify` and `kind: language_model`.

The driver builds a `TorchTrainer` (ScalingConfig from `scaling:`, FailureConfig,
checkpoints kept by Ray Train under RUN_DIR/checkpoints/epoch_NNNNNN) and each worker
runs `train_loop`:

    model = prepare_model(net)               # DDP over gloo (CPU) or NCCL (GPU)
    loader = prepare_data_loader(loader)     # DistributedSampler, device placement
    restore model / optimizer / scheduler / epoch from ray.train.get_checkpoint()
    for epoch: sampler.set_epoch; train; exact sharded validation (all-reduced sums);
               scheduler step; early-stopping bookkeeping;
               ray.train.report(metrics, checkpoint written by rank 0)

Rank 0 also appends each epoch's metrics to RUN_DIR/metrics.jsonl (and TensorBoard,
curve.png); the driver tails that file for the progress line. A restarted worker group
(FailureConfig) or `--resume` continues from the newest checkpoint and first drops any
metrics rows written after it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from raydl import checkpoint as ckpt
from raydl import registry
from raydl.checkpoint import latest_epoch_checkpoint
from raydl.config import (
    CheckpointConfig,
    LogConfig,
    dump_yaml,
    from_dict,
    param,
    section,
    to_dict,
)
from raydl.errors import ConfigError, TrainingError
from raydl.nn import Nonfinite, Optimizer, guarded_step, make_optimizer, nonfinite_error
from raydl.sl.data import (
    DOCUMENT_SOURCES,
    CharVocab,
    DataConfig,
    WordVocab,
    bptt_batches,
    check_data,
    document_splits,
    image_splits,
    pad_batch,
    shard,
    text_splits,
)
from raydl.sl.models import ModelConfig, build_model, check_pretrained, set_backbone_trainable

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.pt"
STATE_FILE = "state.json"
VOCAB_FILE = "vocab.json"


@dataclass
class TrainConfig:
    """Optimization and stopping."""

    epochs: int = param(10, "training epochs", ge=1)
    batch_size: int = param(64, "examples (or BPTT rows) per batch per worker", ge=1)
    lr: float = param(1e-3, "learning rate", gt=0)
    optimizer: Optimizer = param("adam", "optimizer")
    momentum: float = param(0.9, "momentum (sgd, rmsprop)", ge=0, lt=1)
    weight_decay: float = param(0.0, "L2 weight decay", ge=0)
    schedule: Literal["constant", "cosine", "step"] = param("constant", "learning-rate schedule over epochs")
    step_size: int = param(10, "schedule step: epochs between decays", ge=1)
    step_gamma: float = param(0.1, "schedule step: decay factor", gt=0, le=1)
    grad_clip: float = param(0.0, "max global gradient norm (0: no clipping)", ge=0)
    amp: bool = param(False, "bfloat16 autocast (GPU workers only)")
    early_stop_patience: int = param(0, "stop after N epochs without improvement (0: off)", ge=0)
    early_stop_metric: str | None = param(None, "metric watched (none: val_accuracy, or val_loss for language models)")
    threads_per_worker: int = param(1, "torch threads per worker (0: torch's default)", ge=0)
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that batch's update "
        "(counted in nonfinite_skipped)")


@dataclass
class ScalingSection:
    """How many Ray Train workers, on what."""

    workers: int = param(2, "data-parallel workers", ge=1)
    use_gpu: bool | Literal["auto"] = param("auto", "GPU per worker: true, false, auto (if the cluster has GPUs)")
    cpus_per_worker: float = param(1.0, "CPUs per worker", gt=0)
    max_failures: int = param(0, "restart the worker group from the newest checkpoint up to N times", ge=0)


@dataclass
class SupervisedExperiment:
    """A classification or language-model experiment file."""

    kind: Literal["classify", "language_model"] = param("classify", "registry key")
    seed: int = param(0, "seed of model init and data order", ge=0)
    data: DataConfig = section(DataConfig, "dataset")
    model: ModelConfig = section(ModelConfig, "network")
    train: TrainConfig = section(TrainConfig, "optimization")
    scaling: ScalingSection = section(ScalingSection, "Ray Train workers")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpoints (every N epochs, keep N)")
    log: LogConfig = section(LogConfig, "outputs")

    def validate(self) -> None:
        lm = self.kind == "language_model"
        if lm != (self.model.arch == "lstm_lm"):
            allowed = "lstm_lm" if lm else "cnn, resnet18, resnet34, resnet50, lstm, textcnn"
            raise ConfigError(f"model.arch: {self.model.arch!r} does not fit kind {self.kind}; allowed: {allowed}")
        if lm != (self.data.source == "text"):
            raise ConfigError(
                f"data.source: {self.data.source!r} does not fit kind {self.kind}; allowed: "
                + ("text" if lm else "digits, mnist, fashion_mnist, cifar10, folder, text_folder, csv")
            )
        documents = self.data.source in DOCUMENT_SOURCES
        if self.model.arch == "textcnn" and not documents:
            raise ConfigError(
                f"model.arch: textcnn reads documents, data.source is {self.data.source!r}; "
                "allowed sources: text_folder, csv"
            )
        if self.model.arch in ("cnn", "resnet18", "resnet34", "resnet50") and documents:
            raise ConfigError(
                f"model.arch: {self.model.arch} needs images, data.source is {self.data.source!r}; "
                "allowed for documents: lstm, textcnn"
            )
        if self.model.arch == "lstm" and not documents and not self.data.sequence:
            raise ConfigError("model.arch: lstm reads images as rows; set data.sequence: true")
        if self.model.arch == "cnn" and self.data.sequence:
            raise ConfigError("data.sequence: true gives row sequences; model.arch cnn needs images (allowed: false)")
        if self.model.arch.startswith("resnet") and self.data.channels not in (0, 3):
            raise ConfigError("data.channels: ResNets take 3-channel images; allowed: 3 (or 0 for RGB sources)")
        if self.model.tie_weights and self.model.embedding != self.model.hidden:
            raise ConfigError(
                f"model.tie_weights: needs model.embedding == model.hidden, got "
                f"{self.model.embedding} and {self.model.hidden}"
            )

    @property
    def title(self) -> str:
        return f"{self.kind} {self.model.arch} on {self.data.source}"

    @property
    def watched(self) -> tuple[str, str]:
        """(metric, 'min' or 'max') for early stopping and the best checkpoint."""
        name = self.train.early_stop_metric or ("val_loss" if self.kind == "language_model" else "val_accuracy")
        return name, ("max" if "accuracy" in name else "min")


# ----------------------------------------------------------------------------- worker side


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class ClassifyTask:
    """Images (or image rows) -> class; accuracy is the headline."""

    unit = "examples"

    def __init__(self, cfg: SupervisedExperiment, rank: int, world: int) -> None:
        import ray.train.torch

        self.cfg, self.rank, self.world = cfg, rank, world
        self.documents = cfg.data.source in DOCUMENT_SOURCES
        self.collate = pad_batch if self.documents else None
        if self.documents:
            self.docs = document_splits(cfg.data)
            self.train_set, self.val_set, self.test_set = self.docs.train, self.docs.val, self.docs.test
            self.net = build_model(cfg.model, (), len(self.docs.labels), vocab_size=len(self.docs.vocab))
        else:
            self.splits = image_splits(cfg.data)
            self.train_set, self.val_set, self.test_set = self.splits.train, self.splits.val, self.splits.test
            self.net = build_model(cfg.model, self.splits.input_shape, self.splits.num_classes)
        generator = torch.Generator().manual_seed(cfg.seed)
        # A last batch of one example breaks BatchNorm (ResNets) and is noise anyway: drop
        # the remainder whenever each worker still gets a full batch.
        drop_last = len(self.train_set) // world > cfg.train.batch_size  # type: ignore[arg-type]
        loader = DataLoader(self.train_set, batch_size=cfg.train.batch_size, shuffle=True,
                            generator=generator, collate_fn=self.collate, drop_last=drop_last)
        # DistributedSampler over the workers (and device placement on GPU workers)
        self.loader = ray.train.torch.prepare_data_loader(loader)

    def set_epoch(self, epoch: int) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every worker

    def batches(self) -> Any:
        return iter(self.loader)

    def forward(self, model: nn.Module, batch: Any, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of a batch: images, or padded documents with their lengths."""
        if device is not None:
            batch = [t.to(device) for t in batch]
        if self.documents:
            x, lengths, y = batch
            return model(x, lengths), y
        x, y = batch
        return model(x), y

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        logits, y = self.forward(model, batch)
        loss = nn.functional.cross_entropy(logits.float(), y)
        return loss, {"n": len(y), "correct": float((logits.argmax(1) == y).sum())}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"train_loss": sums["loss"] / max(sums["n"], 1),
                "train_accuracy": sums["correct"] / max(sums["n"], 1)}

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        ds = self.val_set if split == "val" else self.test_set
        if ds is None or len(ds) == 0:  # type: ignore[arg-type]
            return {}
        loader = DataLoader(shard(ds, self.rank, self.world), batch_size=256, collate_fn=self.collate)
        loss_sum, correct, total = 0.0, 0.0, 0.0
        with torch.no_grad():
            for batch in loader:
                logits, y = self.forward(model, batch, device)
                logits = logits.float()
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                correct += float((logits.argmax(1) == y).sum())
                total += len(y)
        loss_sum, correct, total = _all_reduce([loss_sum, correct, total], device)
        return {f"{split}_loss": loss_sum / max(total, 1), f"{split}_accuracy": correct / max(total, 1)}

    def save_extra(self, directory: Path) -> None:
        if self.documents:
            self.docs.vocab.save(directory / VOCAB_FILE)
            info = {"num_classes": len(self.docs.labels), "labels": self.docs.labels,
                    "input_shape": [], "vocab_size": len(self.docs.vocab)}
        else:
            info = {"num_classes": self.splits.num_classes, "input_shape": list(self.splits.input_shape),
                    "mean": self.splits.mean, "std": self.splits.std, "vocab_size": 0}
        (directory / "data.json").write_text(json.dumps(info))


class LanguageModelTask:
    """Characters -> next character with truncated BPTT; bits per character is the
    headline (cross-entropy in nats / ln 2), perplexity is exp(loss)."""

    unit = "tokens"

    def __init__(self, cfg: SupervisedExperiment, rank: int, world: int) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world
        self.splits = text_splits(cfg.data)
        self.vocab: CharVocab | WordVocab = self.splits.vocab
        self.net = build_model(cfg.model, (), 0, vocab_size=len(self.vocab))
        # Each worker trains on its own contiguous slice of the stream.
        train = self.splits.train
        size = len(train) // world
        self.stream = train[rank * size : (rank + 1) * size]
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.device = torch.device("cpu")

    def set_epoch(self, epoch: int) -> None:
        self.state = None

    def batches(self) -> Any:
        import ray.train.torch

        self.device = ray.train.torch.get_device()
        for x, y in bptt_batches(self.stream, self.cfg.train.batch_size, self.cfg.data.seq_len):
            yield x.to(self.device), y.to(self.device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        state = self.state
        if state is not None and state[0].shape[1] != len(x):
            state = None
        logits, new_state = model(x, state)
        # Carry the state into the next window but cut the gradient there (truncated BPTT).
        self.state = (new_state[0].detach(), new_state[1].detach())
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, {"n": y.numel()}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss"] / max(sums["n"], 1)
        return {"train_loss": loss, "train_bpc": loss / math.log(2),
                "train_perplexity": math.exp(min(loss, 50.0))}

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        stream = self.splits.val if split == "val" else self.splits.test
        size = len(stream) // self.world
        mine = stream[self.rank * size : (self.rank + 1) * size]
        loss_sum, tokens = 0.0, 0.0
        state = None
        with torch.no_grad():
            for x, y in bptt_batches(mine, 16, self.cfg.data.seq_len):
                logits, state = model(x.to(device), state)
                loss_sum += float(nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum"))
                tokens += y.numel()
        loss_sum, tokens = _all_reduce([loss_sum, tokens], device)
        loss = loss_sum / max(tokens, 1)
        return {f"{split}_loss": loss, f"{split}_bpc": loss / math.log(2),
                f"{split}_perplexity": math.exp(min(loss, 50.0))}

    def save_extra(self, directory: Path) -> None:
        self.vocab.save(directory / VOCAB_FILE)


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


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
        if writer is not None:
            writer.write(metrics)
        ray.train.report(metrics, checkpoint=report_ckpt,
                         checkpoint_dir_name=f"epoch_{epoch:06d}" if save else None)


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


def train_loop(config: dict[str, Any]) -> None:
    """The per-worker training function given to TorchTrainer."""
    import ray.train.torch

    from raydl.metrics import MetricsWriter

    cfg: SupervisedExperiment
    cfg, run_dir, rank, world = worker_setup(SupervisedExperiment, config)
    task: ClassifyTask | LanguageModelTask = (
        LanguageModelTask(cfg, rank, world) if cfg.kind == "language_model" else ClassifyTask(cfg, rank, world)
    )
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(task.net)
    params = [p for p in model.parameters()]
    optimizer = make_optimizer(cfg.train.optimizer, params, cfg.train.lr,
                               momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
    scheduler = _scheduler(cfg.train, optimizer)
    watched, mode = cfg.watched
    epoch, best, stale, restores, skipped = 0, None, 0, 0, 0

    restored = restore_epoch_checkpoint(device)
    if restored is not None:
        saved, state = restored
        _unwrap(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        epoch, best, stale, restores = state["epoch"], state["best"], state["stale"], state["restores"]
        skipped = state.get("nonfinite_skipped", 0)  # absent in older checkpoints
        if cfg.model.unfreeze_after and epoch > cfg.model.unfreeze_after:
            set_backbone_trainable(_unwrap(model), True)
            model = ray.train.torch.prepare_model(_unwrap(model))
        torch.manual_seed(cfg.seed + 7919 * epoch)  # dropout masks differ from the first pass

    writer = None
    if rank == 0:
        writer = MetricsWriter(run_dir, cfg.log.tensorboard, cfg.log.curve)
        writer.truncate_after(epoch)
    amp = cfg.train.amp and device.type == "cuda"
    try:
        while epoch < cfg.train.epochs:
            epoch += 1
            if cfg.model.unfreeze_after and epoch == cfg.model.unfreeze_after + 1:
                # DDP fixes its gradient hooks at wrap time: unfreeze, then wrap again.
                set_backbone_trainable(_unwrap(model), True)
                model = ray.train.torch.prepare_model(_unwrap(model))
            task.set_epoch(epoch)
            model.train()
            sums = {"loss": 0.0, "n": 0.0, "correct": 0.0}
            start = time.perf_counter()
            for index, batch in enumerate(task.batches()):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, stats = task.loss(model, batch)
                (loss_value, norm_value), stepped = guarded_step(optimizer, params, loss, cfg.train.grad_clip)
                if not stepped:  # a NaN/inf gradient (the same on every rank): no update
                    if cfg.train.nonfinite == "stop":
                        raise nonfinite_error(cfg.kind, f"epoch {epoch}, batch {index + 1}", {
                            "loss": loss_value, "grad_norm": norm_value}, "train.nonfinite")
                    skipped += 1
                    continue
                sums["loss"] += loss_value * stats["n"]
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
            train_time = time.perf_counter() - start
            totals = dict(zip(sums, _all_reduce(list(sums.values()), device)))
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            model.eval()
            metrics: dict[str, Any] = {
                "iteration": epoch, "epoch": epoch, **task.train_metrics(totals),
                **task.evaluate(model, "val", device),
                f"{task.unit}_per_s": totals["n"] / train_time if train_time > 0 else None,
                "epoch_time_s": train_time, "lr": lr, "workers": world, "restores": restores,
                "nonfinite_skipped": skipped,  # cumulative: batches whose update was skipped
            }
            value = metrics.get(watched)
            if value is not None and _improved(value, best, mode):
                best, stale = value, 0
            else:
                stale += 1
            stop = bool(cfg.train.early_stop_patience) and stale >= cfg.train.early_stop_patience
            if stop and epoch < cfg.train.epochs:
                metrics["early_stopped"] = watched  # the run's summary says why it ended
            last = stop or epoch == cfg.train.epochs
            if last:
                metrics.update(task.evaluate(model, "test", device))
            save = last or bool(cfg.checkpoint.every and epoch % cfg.checkpoint.every == 0)

            def write(directory: Path) -> None:
                torch.save({"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict()}, directory / MODEL_FILE)
                task.save_extra(directory)
                dump_yaml(cfg, directory / "config.yaml")
                (directory / STATE_FILE).write_text(json.dumps(
                    {"epoch": epoch, "best": best, "stale": stale, "restores": restores,
                     "nonfinite_skipped": skipped, "metrics": metrics}))

            report_epoch(metrics, epoch, save=save, rank=rank, writer=writer, write=write)
            if writer is not None and (save or last):
                writer.plot(registry.headline(cfg), x="epoch")
            if stop:
                break
    finally:
        if writer is not None:
            writer.close()


# ----------------------------------------------------------------------------- driver side


def _use_gpu(choice: bool | str) -> bool:
    if choice == "auto":
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(choice)


class _Tail(threading.Thread):
    """Follows RUN_DIR/metrics.jsonl while training runs and feeds the progress line."""

    def __init__(self, run_dir: Path, on_row: Any) -> None:
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
        if not self.path.exists():
            return
        with open(self.path) as fh:
            fh.seek(self.offset)
            for line in fh:
                if not line.endswith("\n"):
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


def check(cfg: SupervisedExperiment) -> None:
    """The check step of kinds classify and language_model: the data files are there
    (or may be downloaded), pretrained weights are at hand."""
    check_data(cfg.data)
    check_pretrained(cfg.model.arch, cfg.model)


class SupervisedTrainer:
    """The registry's algorithm class for supervised kinds: `fit` runs a whole run."""

    @staticmethod
    def fit(cfg: SupervisedExperiment, run_dir: Path, *, resume: bool, progress: bool,
            callbacks: list[Any] | None = None) -> dict[str, Any]:
        use_gpu = check_resources(cfg.scaling, run_dir, resume)
        if cfg.train.amp and not use_gpu:
            raise ConfigError("train.amp: mixed precision needs GPU workers and none are used here; allowed: false")
        return run_torch_trainer(
            train_loop, {"experiment": to_dict(cfg)}, scaling=cfg.scaling, use_gpu=use_gpu,
            keep=cfg.checkpoint.keep, run_dir=run_dir, epochs=cfg.train.epochs,
            headline=registry.headline(cfg), progress=progress, callbacks=callbacks,
        )
